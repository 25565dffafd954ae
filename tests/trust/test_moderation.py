"""Moderation: the shipped policy on the project's own stories and keyframes, term matching against disguises,
policy files (complete, extending, broken), classifier mapping, and the per-figure skin-exposure heuristic.

Matching is tested with a made-up policy of harmless words, so the tests need no offensive vocabulary."""

import json

import cv2
import numpy as np
import pytest

from microdrama_assets.media.manifest import EpisodeManifest
from microdrama_assets.media.planner import plan_episode
from microdrama_assets.media.render import render_keyframe
from microdrama_assets.media.storyboard import plan_keyframes
from microdrama_assets.trust.moderation import (DEFAULT_POLICY_PATH, ModerationInputError, ModerationReport,
                                                PolicyError, TextItem, check_image, check_text, load_policy,
                                                manifest_text_items, measure_skin)

from conftest import build_manifest, sample_loglines

SPOILERS = {
    "name": "spoiler-watch",
    "categories": [
        {"id": "spoilers", "description": "Giving the ending away.", "action": "block",
         "terms": ["rosebud", "plot twist", "spoil*", "ass"], "regexes": [r"\bchapter\s+\d+\b"]},
        {"id": "chatter", "description": "Idle words a reviewer may want to see.", "action": "flag",
         "terms": ["gossip"]},
    ],
}


def write_policy(tmp_path, data, name="policy.json"):
    path = tmp_path / name
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


@pytest.fixture
def spoilers(tmp_path):
    return load_policy(write_policy(tmp_path, SPOILERS))


def findings(policy, text: str) -> list[tuple[str, str]]:
    return [(v.category, v.rule) for v in check_text(policy, [TextItem("logline", text)])]


# --- the shipped policy on the project's own material ---------------------------------------------------------


def test_the_shipped_policy_passes_every_sample_logline_and_its_planned_episodes():
    policy = load_policy(None)
    for logline in sample_loglines():
        assert check_text(policy, [TextItem("logline", logline)]) == [], logline
        for seed in (0, 1):
            manifest = plan_episode(logline, "mod-check", shots=6, seed=seed)
            report = ModerationReport(tuple(check_text(policy, manifest_text_items(manifest))))
            assert report.violations == (), report.summary()


def test_thriller_violence_passes_and_the_shipped_categories_fire():
    policy = load_policy(None)
    thriller = ("The detective finds blood on the gun after the murder. \"Kill the witness,\" he says, and a bomb "
                "ticks under the train.")
    assert findings(policy, thriller) == []
    assert findings(policy, "They watch p0rn in the back room.") == [("sexual_explicit", "porn*")]
    assert findings(policy, "The dismembered body lies in the trunk.") == [("graphic_violence", "dismember*")]
    assert [c for c, _ in findings(policy, "Here is how to build a pipe bomb at home.")] == ["weapons_instructions"]
    assert [c for c, _ in findings(policy, "You should just kill yourself.")] == ["self_harm"]
    assert findings(policy, "Don't kill yourself over a deadline.") == []
    assert {c for c, _ in findings(policy, "a 15-year-old in nude photos")} == {"sexual_minors", "sexual_reference"}
    assert findings(policy, "a 25-year-old nude model") == [("sexual_reference", "nude")]
    blocking = ModerationReport(tuple(check_text(policy, [TextItem("logline", "p0rn")])))
    flagged = ModerationReport(tuple(check_text(policy, [TextItem("logline", "a naked blade")])))
    assert blocking.blocked and not flagged.blocked and len(flagged.flagged) == 1


# --- where findings are -------------------------------------------------------------------------------------------


def test_manifest_text_items_name_every_piece_of_text():
    manifest = build_manifest(shot_seconds=(2.0, 2.0))
    items = {item.where: item.text for item in manifest_text_items(manifest)}
    assert items["logline"] == manifest.logline and items["title"] == manifest.title
    assert items["character maya: description"] == "a barista"
    assert items["character victor: name"] == "Victor" and items["character victor: role"] == "stranger"
    assert items["shot s01 action"] == manifest.shots[0].action
    assert items["shot s01 line 1 (maya)"] == "It is glowing."
    assert items["shot s02 line 1 (victor)"] == "It is glowing."
    assert len(items) == 2 + 3 * 2 + 2 * 2


def test_a_finding_names_the_shot_line_category_and_rule(spoilers):
    data = build_manifest(shot_seconds=(2.0, 2.0, 2.0)).model_dump(mode="json")
    data["shots"][2]["dialogue"][0]["text"] = "It was his sled all along: R0SEBUD!"
    report = ModerationReport(tuple(check_text(spoilers, manifest_text_items(EpisodeManifest.model_validate(data)))))
    assert report.blocked
    (violation,) = report.violations
    assert (violation.where, violation.category, violation.rule, violation.action, violation.score) == (
        "shot s03 line 1 (maya)", "spoilers", "rosebud", "block", 1.0)
    assert violation.matched == "R0SEBUD"
    assert report.summary() == ("1 blocking, 0 flagged: shot s03 line 1 (maya): spoilers — matched 'R0SEBUD' "
                                "(term 'rosebud')")
    assert report.records()[0]["where"] == "shot s03 line 1 (maya)"


def test_excerpts_are_short_and_show_the_match_in_context(spoilers):
    text = "At the very start of a long story about an old man, a single word — rosebud — " + "explains it all. " * 10
    (violation,) = check_text(spoilers, [TextItem("logline", text)])
    assert violation.excerpt.startswith("…") and violation.excerpt.endswith("…")
    assert "rosebud" in violation.excerpt and len(violation.excerpt) <= len("rosebud") + 2 * 24 + 2


def test_summary_puts_blocking_findings_first_and_counts_the_rest(spoilers):
    items = [TextItem("title", "gossip"), *(TextItem(f"shot s0{i} action", "rosebud") for i in range(1, 5))]
    summary = ModerationReport(tuple(check_text(spoilers, items))).summary(limit=2)
    assert summary.startswith("4 blocking, 1 flagged: shot s01 action: spoilers")
    assert summary.endswith("(+3 more)") and "gossip" not in summary
    assert ModerationReport().summary() == "no moderation findings" and not ModerationReport().blocked


# --- matching against disguises -------------------------------------------------------------------------------


@pytest.mark.parametrize("text", [
    "rosebud", "ROSEBUD", "R0S3BUD", "ro$ebud", "r.o.s.e.b.u.d", "r o s e b u d", "r-o-s-e-b-u-d", "roooosebud",
    "\uff32\uff4f\uff53\uff45\uff42\uff55\uff44",  # fullwidth letters (NFKC)
    "rósebúd", "rose\u200bbud", "rosebuds", "the word was 'Rosebud'.",
])
def test_terms_match_through_trivial_disguises(spoilers, text):
    assert findings(spoilers, text) == [("spoilers", "rosebud")]


@pytest.mark.parametrize("text", ["primrosebud", "rosebudding", "rose bud", "r os e bud"])
def test_terms_match_whole_words_only(spoilers, text):
    assert findings(spoilers, text) == []


def test_short_terms_do_not_trip_inside_longer_words(spoilers):
    assert findings(spoilers, "The class assistant passes the bass and the brass casserole.") == []
    assert findings(spoilers, "What an a$$.") == [("spoilers", "ass")]


def test_phrases_prefixes_and_regexes(spoilers):
    for text in ("a plot twist", "PLOT-TWIST", "plot\ntwist", "plottwist", "p l o t t w i s t"):
        assert findings(spoilers, text) == [("spoilers", "plot twist")], text
    assert findings(spoilers, "the plot, then a twist") == []
    assert findings(spoilers, "no spoilers, I am spoiling nothing") == [("spoilers", "spoil*")]
    assert findings(spoilers, "it was unspoiled") == []
    assert findings(spoilers, "see CHAPTER 12") == [("spoilers", r"\bchapter\s+\d+\b")]
    (violation,) = check_text(spoilers, [TextItem("logline", "see Chäpter 12 now")])
    assert violation.matched == "Chäpter 12" and violation.source == "regex"


def test_a_regex_that_can_match_nothing_reports_only_real_matches(tmp_path):
    policy = load_policy(write_policy(tmp_path, {"name": "loose", "categories": [
        {"id": "shouting", "description": "Runs of exclamation marks.", "action": "flag", "regexes": [r"(!{3})*"]}]}))
    assert check_text(policy, [TextItem("title", ""), TextItem("logline", "calm")]) == []
    (violation,) = check_text(policy, [TextItem("logline", "stop!!! now")])
    assert violation.matched == "!!!"


# --- policy files ---------------------------------------------------------------------------------------------


def test_the_default_policy_is_the_shipped_file():
    policy = load_policy(None)
    assert policy == load_policy(DEFAULT_POLICY_PATH)
    assert {"sexual_minors", "sexual_explicit", "hate", "self_harm", "weapons_instructions", "violent_extremism",
            "graphic_violence", "nudity", "nudity_suspected"} <= {c.id for c in policy.categories}
    assert policy.category("graphic_violence").action == "flag"


def test_a_complete_policy_replaces_the_default(spoilers):
    assert [c.id for c in spoilers.categories] == ["spoilers", "chatter"]
    assert spoilers.image.skin_exposure is None
    assert findings(spoilers, "p0rn") == []


def test_an_extending_policy_adds_to_the_default(tmp_path):
    policy = load_policy(write_policy(tmp_path, {
        "extends": "default",
        "name": "studio",
        "categories": [
            {"id": "hate", "terms": ["rosebud"]},
            {"id": "graphic_violence", "action": "off"},
            {"id": "spoilers", "description": "Endings.", "action": "flag", "terms": ["plot twist"]},
        ],
        "text": {"classifier_labels": {"toxic": {"category": "hate", "threshold": 0.7}}},
        "image": {"skin_exposure": {"max_skin_fraction": 0.9}},
    }))
    default = load_policy(None)
    assert policy.name == "studio"
    assert policy.category("hate").terms == default.category("hate").terms + ["rosebud"]
    assert policy.category("hate").action == "block"
    assert findings(policy, "rosebud") == [("hate", "rosebud")]
    assert findings(policy, "a plot twist") == [("spoilers", "plot twist")]
    assert findings(policy, "The dismembered body.") == []  # the category is off
    assert findings(policy, "p0rn") == [("sexual_explicit", "porn*")]  # the default's lists still apply
    assert set(policy.text.classifier_labels) == set(default.text.classifier_labels) | {"toxic"}
    assert policy.image.skin_exposure.max_skin_fraction == 0.9
    assert policy.image.skin_exposure.max_region_fraction == default.image.skin_exposure.max_region_fraction

    no_heuristic = load_policy(write_policy(tmp_path, {"extends": "default", "image": {"skin_exposure": None}}, "b.json"))
    assert no_heuristic.image.skin_exposure is None


@pytest.mark.parametrize("content, problem", [
    ("{not json", r"not valid JSON: .* at line 1 column 2"),
    ("[1, 2]", "top level must be a JSON object, got list"),
    (json.dumps({**SPOILERS, "extends": "strict"}), "\"extends\" must be \"default\", got 'strict'"),
    (json.dumps({**SPOILERS, "categories": SPOILERS["categories"] * 2}),
     "category ids appear more than once: chatter, spoilers"),
    (json.dumps({**SPOILERS, "text": {"classifier_labels": {"toxic": {"category": "rude", "threshold": 0.5}}}}),
     "text.classifier_labels.toxic names category 'rude', which the policy does not define"),
    (json.dumps({**SPOILERS, "categories": [{**SPOILERS["categories"][0], "action": "warn"}]}),
     r"categories\[spoilers\]\.action: Input should be 'block', 'flag' or 'off'"),
    (json.dumps({**SPOILERS, "categories": [{**SPOILERS["categories"][0], "term": ["x"]}]}),
     r"categories\[spoilers\]\.term: Extra inputs are not permitted"),
    (json.dumps({**SPOILERS, "categories": [{**SPOILERS["categories"][0], "regexes": ["(unclosed"]}]}),
     r"category spoilers: regex '\(unclosed' does not compile"),
    (json.dumps({**SPOILERS, "categories": [{**SPOILERS["categories"][0], "terms": ["--"]}]}),
     "category spoilers: term '--': has no letters or digits"),
    (json.dumps({**SPOILERS, "categories": [{**SPOILERS["categories"][0], "terms": ["a*b"]}]}),
     "term 'a\\*b': '\\*' may only end a term"),
    (json.dumps({"extends": "default", "categories": [{"id": "spoilers", "terms": ["x"]}]}),
     r"categories\[spoilers\]\.description: Field required"),
    (json.dumps({"extends": "default", "categories": "hate"}), "cannot be laid over the default policy"),
    (json.dumps({"extends": "default", "text": {"labels": {}}}), r"text\.labels: Extra inputs are not permitted"),
])
def test_bad_policy_files_name_the_file_and_the_problem(tmp_path, content, problem):
    path = tmp_path / "bad.json"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(PolicyError, match=problem) as raised:
        load_policy(path)
    assert str(path) in str(raised.value)


def test_a_missing_policy_file_is_named(tmp_path):
    with pytest.raises(PolicyError, match=r"missing\.json: no such file"):
        load_policy(tmp_path / "missing.json")


# --- classifiers through the protocol -------------------------------------------------------------------------


class FixedScores:
    """A classifier that gives every input the same label scores."""

    def __init__(self, scores: dict[str, float]):
        self.fixed = scores

    def scores(self, inputs):
        return [dict(self.fixed) for _ in inputs]


def test_classifier_labels_map_to_categories_by_threshold(tmp_path):
    policy = load_policy(write_policy(tmp_path, {**SPOILERS, "text": {"classifier_labels": {
        "spoiler": {"category": "spoilers", "threshold": 0.6}, "idle": {"category": "chatter", "threshold": 0.5}}}}))
    items = [TextItem("title", "The End"), TextItem("shot s01 action", "She leaves.")]
    violations = check_text(policy, items, FixedScores({"spoiler": 0.7, "idle": 0.2, "other": 0.99}))
    assert [(v.where, v.category, v.rule, v.score) for v in violations] == [
        ("title", "spoilers", "classifier:spoiler", 0.7), ("shot s01 action", "spoilers", "classifier:spoiler", 0.7)]
    assert violations[0].excerpt == "The End"
    assert check_text(policy, items, FixedScores({"spoiler": 0.59, "idle": 0.2})) == []
    with pytest.raises(PolicyError, match=r"none of the text classifier's labels \(neg, pos\)"):
        check_text(policy, items, FixedScores({"neg": 0.1, "pos": 0.9}))

    class Short:
        def scores(self, inputs):
            return [{"spoiler": 0.9}]

    with pytest.raises(ModerationInputError, match="returned 1 results for 2 inputs"):
        check_text(policy, items, Short())


# --- images ---------------------------------------------------------------------------------------------------

WARM_WALL = (200, 170, 140)  # beige: skin-coloured to any colour rule, which is why figures are measured alone
SKIN = (224, 172, 105)  # "#e0ac69", a skin tone from the planner's palette
HEIGHT, WIDTH = 1920, 1080


def figure_mask() -> np.ndarray:
    mask = np.zeros((HEIGHT, WIDTH), np.uint8)
    cv2.ellipse(mask, (540, 1150), (230, 650), 0, 0, 360, 255, -1)
    return mask


def frame_with_figure(dressed: bool) -> np.ndarray:
    rng = np.random.default_rng(3)
    frame = np.full((HEIGHT, WIDTH, 3), WARM_WALL, np.uint8)
    mask = figure_mask() > 0
    shading = np.linspace(0.8, 1.05, HEIGHT)[:, None, None]  # lit from above, like a figure under a lamp
    body = np.clip(np.array(SKIN) * shading + rng.normal(0, 4, (HEIGHT, WIDTH, 3)), 0, 255).astype(np.uint8)
    frame[mask] = body[mask]
    cv2.ellipse(frame, (540, 560), (150, 80), 0, 180, 360, (40, 28, 20), -1)  # hair
    if dressed:  # a blue coat from the neck down; face and hands stay bare
        coat = mask.copy()
        coat[:800] = False
        frame[coat] = (40, 70, 140)
        for x in (330, 750):
            cv2.circle(frame, (x, 1250), 40, SKIN, -1)
    return frame


def test_a_bare_figure_is_flagged_and_a_dressed_one_passes():
    policy = load_policy(None)
    bare = check_image(policy, frame_with_figure(dressed=False), "shot s02 keyframe 1", figures={"ivy": figure_mask()})
    (violation,) = bare
    assert (violation.where, violation.category, violation.rule, violation.action, violation.source) == (
        "shot s02 keyframe 1", "nudity_suspected", "nudity_suspected", "flag", "heuristic")
    assert violation.score > 0.9 and violation.excerpt.startswith("figure ivy: skin-coloured")
    assert "limit 80%" in violation.excerpt
    dressed = frame_with_figure(dressed=True)
    assert check_image(policy, dressed, "shot s02 keyframe 1", figures={"ivy": figure_mask()}) == []
    assert 0.05 < measure_skin(dressed, figure_mask()).skin_fraction < 0.3  # the face and hands are seen as skin


def test_a_warm_set_without_figures_passes_though_it_is_skin_coloured():
    wall = np.full((HEIGHT, WIDTH, 3), WARM_WALL, np.uint8)
    assert measure_skin(wall).skin_fraction == 1.0
    assert check_image(load_policy(None), wall, "shot s01 keyframe 0", figures={}) == []


def test_a_policy_can_make_the_heuristic_block_or_skip_small_figures(tmp_path):
    strict = load_policy(write_policy(tmp_path, {"extends": "default", "categories": [
        {"id": "nudity_suspected", "action": "block"}]}))
    report = ModerationReport(tuple(check_image(strict, frame_with_figure(dressed=False), "shot s01 keyframe 0",
                                                figures={"ivy": figure_mask()})))
    assert report.blocked and report.summary().startswith("1 blocking, 0 flagged: shot s01 keyframe 0: "
                                                          "nudity_suspected — nudity_suspected: figure ivy")
    tiny = np.zeros((HEIGHT, WIDTH), np.uint8)
    tiny[1100:1200, 500:600] = 255  # 0.5 % of the frame, under the default 1 %
    assert check_image(strict, frame_with_figure(dressed=False), "shot s01 keyframe 0", figures={"ivy": tiny}) == []


def test_embedded_keyframes_of_the_sample_stories_pass():
    policy = load_policy(None)
    skin_seen = []
    for index, logline in enumerate(sample_loglines()[:4]):
        manifest = plan_episode(logline, "mod-frames", shots=3, seed=index)
        shot = manifest.shots[index % 3]
        keyframe = render_keyframe(manifest, shot, plan_keyframes(shot, manifest)[0])
        assert check_image(policy, keyframe.image, f"shot {shot.id} keyframe 0", figures=keyframe.masks) == []
        skin_seen += [measure_skin(keyframe.image, mask).skin_fraction for mask in keyframe.masks.values()]
    assert max(skin_seen) > 0.02  # faces and hands are detected: the pass is not a blind detector's


def test_image_classifier_labels_block_through_the_policy():
    frame = frame_with_figure(dressed=True)
    (violation,) = check_image(load_policy(None), frame, "shot s01 keyframe 0", FixedScores({"normal": 0.1, "nsfw": 0.9}),
                               figures={})
    assert (violation.category, violation.rule, violation.action, violation.score) == (
        "nudity", "classifier:nsfw", "block", 0.9)
    assert violation.describe() == "shot s01 keyframe 0: nudity — classifier:nsfw scored 0.90"


@pytest.mark.parametrize("image, problem", [
    (np.zeros((64, 64, 3), np.float32), "uint8"),
    (np.zeros((64, 64), np.uint8), r"shape \(64, 64\)"),
    (np.zeros((4, 4, 3), np.uint8), "too small"),
])
def test_unreadable_images_are_refused(image, problem):
    with pytest.raises(ModerationInputError, match=problem):
        check_image(load_policy(None), image, "shot s01 keyframe 0", figures={})


def test_a_figure_mask_must_match_the_frame():
    with pytest.raises(ModerationInputError, match="does not match"):
        check_image(load_policy(None), frame_with_figure(dressed=True), "shot s01 keyframe 0",
                    figures={"ivy": np.zeros((100, 100), np.uint8)})

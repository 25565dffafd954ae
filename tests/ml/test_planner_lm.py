"""The transformers planner with a tiny, randomly initialised causal LM and a tokenizer the test trains itself,
saved with save_pretrained and loaded through the planner's own loading code."""

import json
import math

import pytest
import torch
from dagster import DagsterInstance, materialize
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from microdrama_assets.artifacts import EpisodeArtifacts
from microdrama_assets.assets import episode_manifest
from microdrama_assets.audit import weights_sha256
from microdrama_assets.backends import ModelSettings
from microdrama_assets.casting import load_card
from microdrama_assets.media.manifest import FPS, parse_manifest
from microdrama_assets.media.planner import shot_seed
from microdrama_assets.ml.json_decoding import SchemaDecoder, Steering, TokenTable
from microdrama_assets.ml.planner_lm import PlannerError, Request, TransformersPlanner, assemble
from microdrama_assets.ml.runtime import MissingModel, seeded_generator
from microdrama_assets.resources import ArtifactStoreResource, BackendSettings
from microdrama_assets.storage import ArtifactStore

LOGLINE = "A barista discovers a mysterious locket that signals danger."
CORPUS = [
    '{"title": "The Locket", "characters": [{"id": "c1", "name": "Maya", "role": "barista"}], "shots": []}',
    LOGLINE + " She hides it. He follows her into the night. Who sent this? Run!",
    "push_in pan_left tilt_up static handheld close_up two_shot over_shoulder wide medium",
    "cafe street hospital elevator office hotel rooftop park station night day dusk tense warm eerie",
    "hook setup turn escalation reveal cliffhanger 0.5 1.0 2.5 12.0 20.0",
]


def save_tiny_lm(directory, chat_template: str | None = None):
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.train_from_iterator(CORPUS * 10, trainers.BpeTrainer(
        vocab_size=400, special_tokens=["<eos>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    fast = PreTrainedTokenizerFast(tokenizer_object=tokenizer, eos_token="<eos>")
    if chat_template:
        fast.chat_template = chat_template
    fast.save_pretrained(directory)
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(fast), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=16384, eos_token_id=0)
    LlamaForCausalLM(config).save_pretrained(directory)
    return directory


@pytest.fixture(scope="module")
def tiny_lm(tmp_path_factory):
    return save_tiny_lm(tmp_path_factory.mktemp("tiny-lm"))


def planner(model_dir, **options) -> TransformersPlanner:
    return TransformersPlanner(ModelSettings(planner_model=str(model_dir), device="cpu"), **options)


def test_a_random_tiny_lm_yields_a_schema_valid_manifest_with_the_platform_fields(tiny_lm):
    backend = planner(tiny_lm)
    manifest = backend.plan(LOGLINE, "lm-ep", shots=4, seed=11, duration_s=24.0)
    assert parse_manifest(manifest.model_dump_json()) == manifest
    assert [s.id for s in manifest.shots] == ["s01", "s02", "s03", "s04"]
    assert [s.beat.value for s in manifest.shots] == ["hook", "turn", "reveal", "cliffhanger"]
    assert manifest.total_frames == 24 * FPS
    assert [s.seed for s in manifest.shots] == [shot_seed(11, i) for i in range(4)]
    assert manifest.shots[0].characters, "the hook opens on someone"
    for shot in manifest.shots:
        assert {line.speaker for line in shot.dialogue} <= set(shot.characters)
    on_screen = {cid for shot in manifest.shots for cid in shot.characters}
    assert on_screen == {c.id for c in manifest.characters}
    outfits = [c.appearance.outfit for c in manifest.characters]
    assert len(set(outfits)) == len(outfits)
    [call] = backend.take_calls()
    assert call.weights_sha256 == weights_sha256(tiny_lm) and call.model == str(tiny_lm)
    assert LOGLINE in call.prompt and call.params["attempt"] == 1 and call.params["problems"] == []
    assert call.params["tokens"] > 0
    assert backend.take_calls() == []


def test_the_same_seed_gives_the_same_manifest_and_another_seed_another(tiny_lm):
    first = planner(tiny_lm).plan(LOGLINE, "lm-ep", shots=2, seed=3, duration_s=12.0)
    again = planner(tiny_lm).plan(LOGLINE, "lm-ep", shots=2, seed=3, duration_s=12.0)
    other = planner(tiny_lm).plan(LOGLINE, "lm-ep", shots=2, seed=4, duration_s=12.0)
    assert first.model_dump_json() == again.model_dump_json()
    assert other.model_dump_json() != first.model_dump_json()


def test_cast_cards_are_kept_exactly_and_invented_characters_avoid_their_looks(tiny_lm, tmp_path):
    card = load_card(ArtifactStore(tmp_path), "mara")
    manifest = planner(tiny_lm).plan(LOGLINE, "lm-ep", shots=3, seed=5, duration_s=18.0, cast=[card])
    assert manifest.characters[0] == card
    for other in manifest.characters[1:]:
        assert other.appearance.outfit not in {card.appearance.outfit, card.appearance.accent}


def test_a_chat_template_shapes_the_prompt(tmp_path):
    model_dir = save_tiny_lm(tmp_path / "chat", chat_template="{% for m in messages %}<|{{ m['role'] }}|>"
                                                              "{{ m['content'] }}{% endfor %}<|assistant|>")
    backend = planner(model_dir)
    assert backend.plan(LOGLINE, "lm-ep", shots=1, seed=1, duration_s=6.0).shots[0].beat.value == "hook"


def test_the_repair_loop_is_bounded_and_fails_naming_the_problem(tiny_lm):
    backend = planner(tiny_lm, attempts=2, budget_tokens=40)
    with pytest.raises(PlannerError, match=r"in 2 attempts.*more than 40 tokens"):
        backend.plan(LOGLINE, "lm-ep", shots=3, seed=1, duration_s=18.0)
    calls = backend.take_calls()
    assert [c.params["attempt"] for c in calls] == [1, 2]
    assert calls[0].seed != calls[1].seed, "a repair attempt samples afresh"


def draft(lines_per_shot: list[list[str]], durations: list[float]) -> dict:
    return {
        "title": "T",
        "characters": [{"id": "c1", "name": "Ana Ruiz", "role": "lead", "description": "she runs"},
                       {"id": "c2", "name": "Bo", "role": "rival", "description": "he lies"}],
        "shots": [{"id": f"s{i + 1:02d}", "beat": beat, "duration_s": seconds, "camera": "static",
                   "action": f"Action {i}.", "mood": "tense", "framing": "wide", "location": "cafe",
                   "time_of_day": "night", "characters": ["c1", "c2"],
                   "dialogue": [{"speaker": "c1", "text": text} for text in lines]}
                  for i, (beat, seconds, lines) in enumerate(zip(["hook", "cliffhanger"], durations, lines_per_shot))],
    }


def request(duration_s: float) -> Request:
    from microdrama_assets.media.manifest import Beat

    return Request(LOGLINE, "lm-ep", 2, 9, duration_s, "en", (), (Beat.hook, Beat.cliffhanger))


def test_assemble_fits_durations_to_the_target_and_renames_characters():
    manifest, problems = assemble(draft([["Run."], []], [1.0, 3.0]), request(12.0))
    assert problems == []
    assert manifest.total_frames == 12 * FPS
    # The silent second shot asked for three times the first's time, and gets more of the spare time.
    assert manifest.shots[1].duration_s > manifest.shots[0].duration_s
    assert [c.id for c in manifest.characters] == ["ana-ruiz", "bo"]
    assert manifest.shots[0].dialogue[0].speaker == "ana-ruiz"


def test_assemble_names_what_only_the_model_can_fix():
    wordy = " ".join(["word"] * 30)
    _, problems = assemble(draft([[wordy], ["Again."]], [5.0, 5.0]), request(6.0))
    assert any("needs" in p and "shot s01" in p for p in problems), problems
    _, problems = assemble(draft([["Same line."], ["same line."]], [5.0, 5.0]), request(10.0))
    assert any("'same line.' appears more than once" in p for p in problems), problems


def test_the_decoder_keeps_to_enums_grids_lengths_and_counts(tiny_lm):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    schema = {"type": "object", "properties": {
        "mood": {"enum": ["calm", "tense", "eerie"], "type": "string"},
        "take": {"type": "integer", "minimum": 1, "maximum": 4},
        "gain": {"type": "integer", "exclusiveMinimum": 0, "exclusiveMaximum": 3},
        "speed": {"type": "number", "minimum": 1.0, "maximum": 3.0, "multipleOf": 0.5},
        "words": {"type": "array", "minItems": 1, "maxItems": 3,
                  "items": {"type": "string", "minLength": 2, "maxLength": 7}},
        "flag": {"type": "boolean"}}}
    tokenizer = AutoTokenizer.from_pretrained(tiny_lm)
    model = AutoModelForCausalLM.from_pretrained(tiny_lm).eval()
    decoder = SchemaDecoder(TokenTable(tokenizer), schema, Steering())
    for seed in range(6):
        doc = decoder.decode(model, tokenizer.encode("JSON:"), seeded_generator(torch.device("cpu"), seed))
        assert doc["mood"] in {"calm", "tense", "eerie"}
        assert doc["take"] in {1, 2, 3, 4}
        assert doc["gain"] in {1, 2}
        assert doc["speed"] in {1.0, 1.5, 2.0, 2.5, 3.0}
        assert 1 <= len(doc["words"]) <= 3 and all(2 <= len(w) <= 7 for w in doc["words"])
        assert isinstance(doc["flag"], bool)
        assert json.loads(json.dumps(doc)) == doc


def test_the_manifest_asset_runs_the_model_and_records_the_call(tiny_lm, tmp_path):
    store = ArtifactStore(tmp_path)
    episode = EpisodeArtifacts(store, "lm-asset")
    store.write_json(episode.request, {"logline": LOGLINE, "shots": 2, "seed": 21, "duration_s": 10.0})
    instance = DagsterInstance.ephemeral()
    instance.add_dynamic_partitions("episodes", ["lm-asset"])
    resources = {"store": ArtifactStoreResource(root=str(tmp_path)),
                 "backends": BackendSettings(planner="transformers", planner_model=str(tiny_lm), device="cpu")}
    result = materialize([episode_manifest], partition_key="lm-asset", instance=instance, resources=resources)
    [materialization] = result.asset_materializations_for_node("episode_manifest")
    metadata = materialization.metadata
    assert metadata["planner"].value == "transformers"
    digest = weights_sha256(tiny_lm)
    assert digest[:12] in metadata["models"].value
    [call] = metadata["model_calls"].value
    assert call["weights_sha256"] == digest and call["seed"] is not None and LOGLINE in call["prompt"]
    assert json.loads(episode.model_calls_path("episode_manifest", "lm-asset").read_text())[0]["weights_sha256"] == digest
    manifest = episode.manifest()
    assert math.isclose(manifest.duration_s, 10.0) and len(manifest.shots) == 2


def test_a_missing_model_directory_fails_naming_the_setting(tmp_path):
    with pytest.raises(MissingModel, match=r"planner model not found at .*MICRODRAMA_PLANNER_MODEL"):
        planner(tmp_path / "nowhere").plan(LOGLINE, "lm-ep", shots=2, seed=1, duration_s=10.0)
    with pytest.raises(MissingModel, match=r"set planner_model \(MICRODRAMA_PLANNER_MODEL\)"):
        planner("").plan(LOGLINE, "lm-ep", shots=2, seed=1, duration_s=10.0)

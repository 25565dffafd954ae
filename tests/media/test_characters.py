import numpy as np
import pytest

from microdrama_assets.media.characters import (
    DESCRIPTOR_LENGTH,
    build_character_bundle,
    descriptor_for_region,
    descriptor_similarity,
    score_characters,
)
from microdrama_assets.media.manifest import Character, EpisodeManifest
from microdrama_assets.media.render import render_keyframe
from microdrama_assets.media.storyboard import plan_keyframes

from .cast import CHARACTERS


def make_manifest(framing: str, mood: str, location: str, time_of_day: str, seed: int) -> EpisodeManifest:
    shot = {
        "id": "s01", "beat": "setup", "duration_s": 3.0, "camera": "static", "action": "They talk.", "mood": mood,
        "framing": framing, "location": location, "time_of_day": time_of_day, "characters": ["nora", "omar"],
        "dialogue": [{"speaker": "nora", "text": "Well?"}], "keyframes": 1, "seed": seed,
    }  # fmt: skip
    return EpisodeManifest.model_validate({"episode_id": "bundle-test", "title": "T", "logline": "L", "seed": 1,
                                           "characters": CHARACTERS, "shots": [shot]})  # fmt: skip


def character(index: int = 0, **appearance) -> Character:
    data = {**CHARACTERS[index], "appearance": {**CHARACTERS[index]["appearance"], **appearance}}
    return Character.model_validate(data)


@pytest.fixture(scope="module")
def bundles():
    return {c["id"]: build_character_bundle(Character.model_validate(c)) for c in CHARACTERS}


def test_bundle_contents(bundles):
    bundle = bundles["nora"]
    assert bundle.character_id == "nora"
    assert {"front", "full_body"} <= set(bundle.reference_images)
    for image in bundle.reference_images.values():
        assert image.shape == (768, 512, 3) and image.dtype == np.uint8
        assert image.std() > 20  # a figure on the backdrop, not a blank card
    assert bundle.descriptor.dtype == np.float32 and bundle.descriptor.shape == (DESCRIPTOR_LENGTH,)
    assert np.isfinite(bundle.descriptor).all()


def test_bundle_is_deterministic(bundles):
    again = build_character_bundle(character(0))
    assert again.version == bundles["nora"].version
    assert np.array_equal(again.descriptor, bundles["nora"].descriptor)
    for view, image in bundles["nora"].reference_images.items():
        assert image.tobytes() == again.reference_images[view].tobytes()


def test_version_follows_the_appearance_only(bundles):
    version = bundles["nora"].version
    assert len(version) == 16 and int(version, 16) >= 0
    assert build_character_bundle(character(0, outfit="#802020")).version != version
    assert build_character_bundle(character(0, hair_style="curly")).version != version
    renamed = Character.model_validate({**CHARACTERS[0], "name": "Nora V.", "voice": {"pitch": 70}})
    assert build_character_bundle(renamed).version == version


def test_similarity_bounds_and_symmetry(bundles):
    a, b = bundles["nora"].descriptor, bundles["omar"].descriptor
    assert descriptor_similarity(a, a) == pytest.approx(1.0)
    assert 0.0 <= descriptor_similarity(a, b) < 0.9
    assert descriptor_similarity(a, b) == pytest.approx(descriptor_similarity(b, a))
    with pytest.raises(ValueError):
        descriptor_similarity(a, b[:-1])


def test_descriptor_rejects_an_empty_region():
    image = np.zeros((64, 64, 3), np.uint8)
    with pytest.raises(ValueError, match="empty"):
        descriptor_for_region(image, np.zeros((64, 64), np.uint8))


@pytest.mark.parametrize("framing, mood, location, time_of_day", [
    ("wide", "warm", "street", "night"),
    ("two_shot", "tense", "cafe", "dusk"),
    ("medium", "eerie", "hospital", "night"),
    ("medium", "romantic", "park", "day"),
    ("two_shot", "mysterious", "hotel", "night"),
])  # fmt: skip
def test_keyframe_regions_match_their_own_bundle(bundles, framing, mood, location, time_of_day):
    manifest = make_manifest(framing, mood, location, time_of_day, seed=5)
    shot = manifest.shots[0]
    keyframe = render_keyframe(manifest, shot, plan_keyframes(shot, manifest)[0])
    for character_id, mask in keyframe.masks.items():
        region = descriptor_for_region(keyframe.image, mask)
        own = descriptor_similarity(region, bundles[character_id].descriptor)
        other = descriptor_similarity(region, bundles["omar" if character_id == "nora" else "nora"].descriptor)
        assert own > other, (character_id, own, other)


def _rendered(manifest):
    shot = manifest.shots[0]
    return render_keyframe(manifest, shot, plan_keyframes(shot, manifest)[0])


def test_faithful_keyframes_pass_the_consistency_check(bundles):
    descriptors = {cid: bundle.descriptor for cid, bundle in bundles.items()}
    for framing, mood in (("two_shot", "mysterious"), ("medium", "warm"), ("close_up", "eerie")):
        keyframe = _rendered(make_manifest(framing, mood, "cafe", "night", seed=3))
        scores = score_characters(0, keyframe.image, keyframe.masks, descriptors)
        assert scores and all(score.problem is None for score in scores), [s.problem for s in scores]


def test_a_recoloured_or_swapped_character_fails_the_check(bundles):
    descriptors = {cid: bundle.descriptor for cid, bundle in bundles.items()}
    manifest = make_manifest("two_shot", "tense", "cafe", "dusk", seed=5)
    # The keyframe backend drew Nora in other clothes and hair than her bundle says.
    drifted = manifest.model_dump(mode="json")
    drifted["characters"][0]["appearance"].update(outfit="#20c040", hair="#e0e0e0")
    keyframe = _rendered(EpisodeManifest.model_validate(drifted))
    problems = [s.problem for s in score_characters(0, keyframe.image, keyframe.masks, descriptors) if s.problem]
    assert problems and all("nora" in problem for problem in problems), problems
    # Nora's region labelled as Omar (the backend swapped who stands where).
    faithful = _rendered(manifest)
    swapped = {"omar": faithful.masks["nora"], "nora": faithful.masks["omar"]}
    problems = [s.problem for s in score_characters(0, faithful.image, swapped, descriptors) if s.problem]
    assert any("nora looks like omar" in problem for problem in problems), problems
    with pytest.raises(ValueError, match="no bundle for character 'zed'"):
        score_characters(0, faithful.image, {"zed": faithful.masks["nora"]}, descriptors)

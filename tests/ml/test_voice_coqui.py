"""The Coqui voice backend: tiny randomly initialised Glow-TTS models written in Coqui's checkpoint layout
(config.json + model.pth from ``trainer.io.save_model``) and loaded through Coqui's
Synthesizer, end to end through the dialogue asset."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import build_manifest
from scipy.io import wavfile

from microdrama_assets.assets import dialogue_audio
from microdrama_assets.audit import weights_sha256
from microdrama_assets.backends import ModelSettings
from microdrama_assets.media import speech
from microdrama_assets.media.audio_mix import SAMPLE_RATE
from microdrama_assets.media.manifest import FPS
from microdrama_assets.ml import voice_coqui
from microdrama_assets.ml.runtime import MissingModel
from microdrama_assets.ml.voice_coqui import CoquiVoice
from microdrama_assets.resources import BackendSettings

SPEAKERS = ["ana", "ben", "cy", "dee"]
MODEL_RATE = 22050  # LJSpeech's rate, as most Coqui English models: resampled 147 -> 160 to the mix
HOP = 256


def write_glow_tts(directory: Path, speakers: list[str], seed: int = 0) -> Path:
    """A tiny Glow-TTS over plain characters (no phonemizer, nothing to download), saved as Coqui's trainer
    saves it. Random durations are about one frame (12 ms) a token, so a short line stays well under a second."""
    # Imported here, after voice_coqui (above) has made torchaudio importable for Coqui's model modules.
    from trainer.io import save_model
    from TTS.config.shared_configs import BaseAudioConfig
    from TTS.tts.configs.glow_tts_config import GlowTTSConfig
    from TTS.tts.configs.shared_configs import CharactersConfig
    from TTS.tts.models.glow_tts import GlowTTS

    audio = BaseAudioConfig(sample_rate=MODEL_RATE, fft_size=1024, win_length=1024, hop_length=HOP, num_mels=20,
                            mel_fmin=0, mel_fmax=8000, griffin_lim_iters=10, do_trim_silence=False)
    config = GlowTTSConfig(
        audio=audio, use_phonemes=False, text_cleaner="basic_cleaners", add_blank=True,
        characters=CharactersConfig(pad="_", eos="", bos="", blank="^", characters="abcdefghijklmnopqrstuvwxyz",
                                    punctuations="!'(),-.:;? ", phonemes=None),
        hidden_channels_enc=16, hidden_channels_dec=16, hidden_channels_dp=16, out_channels=20,
        num_flow_blocks_dec=2, num_block_layers=1,
        encoder_params={"kernel_size": 3, "dropout_p": 0.1, "num_layers": 1, "num_heads": 2,
                        "hidden_channels_ffn": 16, "input_length": None},
        use_speaker_embedding=bool(speakers), speakers=speakers)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = GlowTTS(config)
    directory.mkdir(parents=True)
    config.save_json(str(directory / "config.json"))
    save_model(config, model, directory / "model.pth", current_step=1, epoch=0)
    return directory


@pytest.fixture(scope="module")
def multi_speaker(tmp_path_factory) -> Path:
    return write_glow_tts(tmp_path_factory.mktemp("coqui") / "glow", SPEAKERS)


@pytest.fixture(scope="module")
def characters():
    manifest = build_manifest()
    return manifest.character("maya"), manifest.character("victor")


def test_dialogue_audio_is_spoken_by_the_coqui_model(ml_episode, multi_speaker):
    result = ml_episode.materialize([dialogue_audio], BackendSettings(voice="coqui", voice_model=str(multi_speaker)))
    shot = ml_episode.episode.manifest().shot("s01")
    rate, track = wavfile.read(ml_episode.shot.dialogue_wav)
    assert rate == SAMPLE_RATE and track.dtype == np.float32
    assert len(track) == round(shot.duration_s * FPS) * SAMPLE_RATE // FPS
    [line] = json.loads(ml_episode.shot.dialogue_json.read_text())["lines"]
    assert line["text"] == "It is glowing." and json.loads(ml_episode.shot.dialogue_json.read_text())[
        "voice_backend"] == "coqui"

    # The placed samples are the model's rendering of the line, not espeak-ng's.
    maya = ml_episode.episode.manifest().character("maya")
    expected = CoquiVoice(ModelSettings(voice_model=str(multi_speaker))).synthesize("It is glowing.", maya)
    start = round(line["start_s"] * SAMPLE_RATE)
    np.testing.assert_array_equal(track[start:start + len(expected.samples)], expected.samples)
    assert not np.any(track[:start]) and not np.any(track[start + len(expected.samples):])
    assert line["samples"] != len(speech.synthesize("It is glowing.", maya.voice).samples)
    # Lip-sync phonemes: espeak-ng's for the line, inside the model's audio.
    assert [p[2] for p in line["phonemes"]] == [p.symbol for p in expected.phonemes] and len(line["phonemes"]) >= 6
    assert line["phonemes"][-1][1] <= line["duration_s"] + 1e-9

    metadata = result.asset_materializations_for_node("dialogue_audio")[0].metadata
    [call] = metadata["model_calls"].value
    assert call["backend"] == "coqui" and call["stage"] == "voice" and call["prompt"] == "It is glowing."
    assert call["model"] == str(multi_speaker) and call["weights_sha256"] == weights_sha256(multi_speaker)
    assert call["params"]["speaker"] in SPEAKERS and call["params"]["model_sample_rate"] == MODEL_RATE
    assert weights_sha256(multi_speaker)[:12] in metadata["models"].value
    audit = json.loads(ml_episode.episode.model_calls_path("dialogue_audio", "s01").read_text())
    assert audit == [call]


def test_characters_get_their_own_speakers_deterministically(multi_speaker, characters):
    maya, victor = characters
    voice = CoquiVoice(ModelSettings(voice_model=str(multi_speaker)))
    first = voice.synthesize("It is glowing.", maya)
    again = voice.synthesize("It is glowing.", maya)
    other = voice.synthesize("It is glowing.", victor)
    calls = voice.take_calls()
    assert [c.params["speaker"] for c in calls] == ["dee", "dee", "ben"]  # sha256 of the ids over 4 speakers
    assert voice.take_calls() == []
    np.testing.assert_array_equal(first.samples, again.samples)
    # espeak-ng's own event times jitter by a millisecond or so between identical calls.
    assert [p.symbol for p in first.phonemes] == [p.symbol for p in again.phonemes]
    assert [p.end_s for p in first.phonemes] == pytest.approx([p.end_s for p in again.phonemes], abs=5e-3)
    assert len(first.samples) != len(other.samples) or not np.allclose(first.samples, other.samples)
    assert calls[0].seed == calls[1].seed != calls[2].seed


def test_speaker_map_file_picks_speakers(multi_speaker, characters, tmp_path):
    maya, victor = characters
    mapped = tmp_path / "mapped"
    shutil.copytree(multi_speaker, mapped)
    (mapped / "speakers.json").write_text(json.dumps({"maya": "cy", "victor": "cy"}))
    voice = CoquiVoice(ModelSettings(voice_model=str(mapped)))
    voice.synthesize("Run.", maya)
    voice.synthesize("Run.", victor)
    assert [c.params["speaker"] for c in voice.take_calls()] == ["cy", "cy"]
    (mapped / "speakers.json").write_text(json.dumps({"maya": "zed"}))
    with pytest.raises(ValueError, match="speakers the model does not have: zed"):
        voice.synthesize("Run.", maya)


def test_single_speaker_model(tmp_path, characters):
    model = write_glow_tts(tmp_path / "single", [], seed=2)
    voice = CoquiVoice(ModelSettings(voice_model=str(model), device="cpu"))
    spoken = voice.synthesize("Hello there.", characters[0])
    [call] = voice.take_calls()
    assert call.params["speaker"] is None and call.params["vocoder"] == "griffin-lim"
    assert call.params["model"] == "glow_tts" and call.params["checkpoint"] == "model.pth"
    assert spoken.sample_rate == SAMPLE_RATE and spoken.samples.dtype == np.float32
    assert 0.05 < spoken.duration_s < 1.0 and np.abs(spoken.samples).max() <= 1.0
    # An unpronounceable line stays a silent beat, without a model call.
    assert not np.any(voice.synthesize("...", characters[0]).samples) and voice.take_calls() == []


def test_missing_model_directory_names_the_setting(ml_episode, tmp_path):
    result = ml_episode.materialize([dialogue_audio], BackendSettings(voice="coqui", voice_model=""),
                                    raise_on_error=False)
    assert not result.success
    assert "MICRODRAMA_VOICE_MODEL" in str(result.all_events)
    with pytest.raises(MissingModel, match=f"not found at {tmp_path / 'nope'}.*voice_model"):
        voice_coqui.model_files(tmp_path / "nope")
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(MissingModel, match="no checkpoint: expected one of model.pth, best_model.pth"):
        voice_coqui.model_files(tmp_path)
    (tmp_path / "model.pth").write_bytes(b"")
    (tmp_path / "vocoder").mkdir()
    (tmp_path / "vocoder" / "config.json").write_text("{}")
    with pytest.raises(MissingModel, match="the vocoder at .* has no checkpoint"):
        voice_coqui.model_files(tmp_path)


def test_model_speech_trims_resamples_and_stretches_phonemes():
    rate = 22050
    t = np.arange(rate // 2) / rate
    wav = np.concatenate([np.zeros(rate // 10), 1.5 * np.sin(2 * np.pi * 220 * t), np.zeros(rate // 5)])
    reference = speech.Speech(np.ones(SAMPLE_RATE, np.float32), SAMPLE_RATE,
                              (speech.Phoneme(0.0, 0.5, "h"), speech.Phoneme(0.5, 1.0, "a")))
    spoken = voice_coqui.model_speech(wav, rate, reference)
    assert spoken.sample_rate == SAMPLE_RATE
    assert spoken.duration_s == pytest.approx(0.5 + 2 * 0.01, abs=2e-3)  # voiced span plus margins
    assert np.abs(spoken.samples).max() == pytest.approx(1.0)  # scaled down, not clipped
    assert spoken.phonemes[0].end_s == pytest.approx(spoken.duration_s / 2)
    assert spoken.phonemes[-1].end_s == pytest.approx(spoken.duration_s)
    with pytest.raises(ValueError, match="silence"):
        voice_coqui.model_speech(np.zeros(100), rate, reference)
    with pytest.raises(ValueError, match="non-finite"):
        voice_coqui.model_speech(np.full(100, np.nan), rate, reference)


def test_speaker_and_language_choice():
    assert voice_coqui.pick_speaker("maya", ["solo"], {}) is None
    assert voice_coqui.pick_speaker("maya", SPEAKERS, {"maya": "ana"}) == "ana"
    assert voice_coqui.pick_speaker("maya", SPEAKERS, {}) == voice_coqui.pick_speaker("maya", SPEAKERS[::1], {})
    assert voice_coqui.pick_language(["en"], "fr") is None
    assert voice_coqui.pick_language(["en", "fr-fr"], "en-us") == "en"
    with pytest.raises(ValueError, match="not the character's 'de'"):
        voice_coqui.pick_language(["en", "fr-fr"], "de")
    assert voice_coqui.line_seed("maya", "Hi.") == voice_coqui.line_seed("maya", "Hi.") != \
        voice_coqui.line_seed("victor", "Hi.")

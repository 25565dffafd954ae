"""Voice stage (dialogue per shot) and the episode mix."""

import json
from pathlib import Path

import numpy as np
from dagster import (AssetCheckExecutionContext, AssetCheckResult, AssetExecutionContext, Failure, MaterializeResult,
                     MetadataValue, asset)
from scipy.io import wavfile

from ..execution import GPU_POOL, GPU_STEP_TAGS, MODEL_RETRY_POLICY, placement_for_attempt
from ..artifacts import EpisodeArtifacts
from ..cache import STAGES, episode_audio_sources, episode_stage_key, shot_stage_key
from ..media.audio_mix import (SAMPLE_RATE, AudioFileError, DialogueDoesNotFit, decode_audio_file,
                               delivery_loudness_problems, encode_delivery_mix, measure_loudness, music_bed_from_file,
                               place_lines, render_music_bed)
from ..media.hls import decode_audio, encode_audio_m4a
from ..media.manifest import FPS, EpisodeManifest
from ..media.sfx import CUES, SfxLayer, render_sfx_layer
from ..partitions import episode_partitions, shot_partitions
from ..resources import ArtifactStoreResource, BackendSettings
from ..storage import StorageError
from .common import (audit_restored, cached, cached_result, code_version, episode_artifacts,
                     model_calls_metadata, partitioned_check, per_episode, shot_context)
from .planning import episode_manifest

SAMPLES_PER_FRAME = SAMPLE_RATE // FPS


def read_wav(path) -> np.ndarray:
    rate, samples = wavfile.read(path)
    if rate != SAMPLE_RATE:
        raise ValueError(f"{path}: sample rate {rate}, expected {SAMPLE_RATE}")
    return samples.astype(np.float32)


@asset(partitions_def=shot_partitions, group_name="voice", deps=[per_episode(episode_manifest)],
       output_required=False, code_version=code_version("voice"), pool=GPU_POOL, op_tags=GPU_STEP_TAGS,
       retry_policy=MODEL_RETRY_POLICY)
def dialogue_audio(context: AssetExecutionContext, store: ArtifactStoreResource, backends: BackendSettings):
    """Each line spoken in its character's voice and placed on the shot timeline (mono 48 kHz, shot length)."""
    located = shot_context(context, store)
    if located is None:
        return
    episode, manifest, shot, artifacts = located
    voice = backends.voice_backend(placement_for_attempt(context, backends.device))

    def build():
        speeches = [voice.synthesize(line.text, manifest.character(line.speaker)) for line in shot.dialogue]
        try:
            starts = place_lines(shot.frames, [s.duration_s for s in speeches])
        except DialogueDoesNotFit as exc:
            raise Failure(f"shot {shot.id}: {exc}. Lengthen duration_s or shorten its dialogue.",
                          allow_retries=False) from None
        track = np.zeros(shot.frames * SAMPLES_PER_FRAME, np.float32)
        lines = []
        for line, speech, start_s in zip(shot.dialogue, speeches, starts):
            offset = round(start_s * SAMPLE_RATE)
            track[offset : offset + len(speech.samples)] += speech.samples
            lines.append({
                "speaker": line.speaker, "text": line.text, "start_s": offset / SAMPLE_RATE,
                "duration_s": speech.duration_s, "samples": len(speech.samples),
                "phonemes": [[p.start_s, p.end_s, p.symbol] for p in speech.phonemes],
            })
        with episode.store.writing_dir(artifacts.dialogue_dir) as staging:
            wavfile.write(staging / artifacts.dialogue_wav.name, SAMPLE_RATE, track)
            (staging / artifacts.dialogue_json.name).write_text(
                json.dumps({"voice_backend": voice.name, "lines": lines}, indent=2, ensure_ascii=False),
                encoding="utf-8")
        return model_calls_metadata(context, episode, shot.id, voice)

    outcome = cached(context, store, shot_stage_key("voice", episode, manifest, shot, backends, None),
                     artifacts.directory, STAGES["voice"].paths(artifacts), build)
    audit_restored(context, episode, shot.id, voice, outcome)
    lines = shot_dialogue(artifacts)["lines"]
    track = read_wav(artifacts.dialogue_wav)
    yield cached_result(outcome, {
        "lines": len(lines),
        "speech_s": round(sum(l["duration_s"] for l in lines), 3),
        "shot_s": round(shot.frames / FPS, 3),
        "peak": float(np.abs(track).max()) if len(track) else 0.0,
        "voice_backend": voice.name,
        **(outcome.value or {}),
        "path": MetadataValue.path(str(artifacts.dialogue_wav)),
    })


def shot_dialogue(artifacts) -> dict:
    return json.loads(artifacts.store.require(artifacts.dialogue_json, "dialogue_audio").read_text(encoding="utf-8"))


def _episode_lines(episode: EpisodeArtifacts, manifest: EpisodeManifest) -> list[tuple[float, float]]:
    """Every spoken line as (start_s, end_s) on the episode timeline."""
    lines = []
    for shot in manifest.shots:
        offset_s = manifest.start_frame(shot.id) / FPS
        for line in shot_dialogue(episode.shot(shot.id))["lines"]:
            lines.append((offset_s + line["start_s"], offset_s + line["start_s"] + line["duration_s"]))
    return lines


def _sound_plan(layer: SfxLayer, music_file: str | None, library_files: dict[str, Path]) -> dict:
    return {
        "music": {"source": "file", "file": music_file} if music_file else {"source": "procedural"},
        "sfx_library": {cue: str(path) for cue, path in sorted(library_files.items())},
        "cues": [placement.as_json() for placement in layer.placements],
        "skipped": [{"cue": cue, "shot": shot, "reason": reason} for cue, shot, reason in layer.skipped],
    }


@asset(partitions_def=episode_partitions, group_name="voice", deps=[per_episode(dialogue_audio)],
       code_version=code_version("episode_audio"))
def episode_audio(context: AssetExecutionContext, store: ArtifactStoreResource) -> MaterializeResult:
    """Dialogue of every shot on the episode timeline over a music bed (mood-following, or the request's own
    file) and an SFX layer (spot effects, ambience, transition accents; files in ``sounds/sfx/`` replace
    procedural cues), both ducked under the lines, normalised and limited."""
    episode = episode_artifacts(context, store)
    manifest = episode.manifest()
    parts = []
    for shot in manifest.shots:
        path = episode.store.require(episode.shot(shot.id).dialogue_wav, f"dialogue_audio for shot {shot.id}")
        samples = read_wav(path)
        if len(samples) != shot.frames * SAMPLES_PER_FRAME:
            raise Failure(f"shot {shot.id}: dialogue audio is out of date with the manifest; re-render the shot")
        parts.append(samples)
    try:
        music_path, library_files = episode_audio_sources(episode, manifest)  # also fetches the SFX library
        key = episode_stage_key("episode_audio", episode, manifest, None)
    except (AudioFileError, StorageError) as exc:
        raise Failure(f"episode {episode.episode_id}: {exc}") from None
    library_dir = episode.store.path("sounds", "sfx")
    if library_dir.is_dir():
        strays = sorted(p.name for p in library_dir.iterdir() if not p.name.startswith(".") and p.stem not in CUES)
        if strays:
            context.log.warning(f"{library_dir}: {', '.join(strays)} name no SFX cue and are not used")
    outcome = cached(context, store, key, episode.directory, STAGES["episode_audio"].paths(episode),
                     lambda: _mix_episode(episode, manifest, np.concatenate(parts), music_path, library_files))
    mix = read_wav(episode.mix_wav)
    plan = json.loads(episode.sound_plan.read_text(encoding="utf-8"))
    loudness, true_peak = measure_loudness(mix)
    return cached_result(outcome, {
        "duration_s": round(len(mix) / SAMPLE_RATE, 3),
        "integrated_lufs": round(loudness, 2),
        "true_peak_dbtp": round(true_peak, 2),
        "sample_rate": SAMPLE_RATE,
        "channels": 2,
        "music": f"file: {plan['music']['file']}" if plan["music"]["source"] == "file" else "procedural",
        "sfx_cues": sum(p["kind"] != "ambience" for p in plan["cues"]),
        "sfx": MetadataValue.md(
            "| cue | shot | kind | start s | duration s | source |\n|---|---|---|---|---|---|\n"
            + "\n".join(f"| {p['cue']} | {p['shot']} | {p['kind']} | {p['start_s']:.3f} | {p['duration_s']:.3f} "
                        f"| {p['source']} |" for p in plan["cues"])),
        "sfx_skipped": "; ".join(f"{s['cue']} in {s['shot']}: {s['reason']}" for s in plan["skipped"]) or "none",
        "sound_plan": MetadataValue.path(str(episode.sound_plan)),
        "path": MetadataValue.path(str(episode.mix_wav)),
    })


def _mix_episode(episode: EpisodeArtifacts, manifest: EpisodeManifest, dialogue: np.ndarray,
                 music_path: Path | None, library_files: dict[str, Path]) -> None:
    # Every user file is decoded before the audio directory is touched: a bad one fails the step and the
    # earlier mix stays in place.
    try:
        if music_path is None:
            music = render_music_bed([(s.mood.value, s.frames / FPS) for s in manifest.shots], manifest.seed)
            music = np.pad(music, ((0, max(0, len(dialogue) - len(music))), (0, 0)))[:len(dialogue)]
        else:
            music = music_bed_from_file(music_path, len(dialogue))
        library = {cue: decode_audio_file(path, max_samples=len(dialogue)) for cue, path in library_files.items()}
    except AudioFileError as exc:
        raise Failure(f"episode {episode.episode_id}: {exc}") from None
    layer = render_sfx_layer(manifest, _episode_lines(episode, manifest), library)
    plan = _sound_plan(layer, music_path.name if music_path else None, library_files)
    with episode.store.writing_dir(episode.audio_dir) as staging:
        m4a = staging / episode.mix_m4a.name

        # The last mix encoded is the one returned, so its .m4a is already in place.
        def encode_and_decode(candidate: np.ndarray) -> np.ndarray:
            encode_audio_m4a(candidate, SAMPLE_RATE, m4a)
            return decode_audio(m4a)[0]

        mix = encode_delivery_mix(dialogue, music, encode_and_decode, sfx=layer.audio)
        wavfile.write(staging / episode.mix_wav.name, SAMPLE_RATE, mix.astype(np.float32))
        (staging / episode.sound_plan.name).write_text(json.dumps(plan, indent=2, ensure_ascii=False), encoding="utf-8")


@partitioned_check(episode_audio, episode_partitions, blocking=True)
def episode_mix_meets_loudness_targets(context: AssetCheckExecutionContext,
                                       store: ArtifactStoreResource) -> AssetCheckResult:
    """The encoded episode mix (mix.m4a, decoded as a player would) measured to ITU-R BS.1770: integrated
    loudness -16 LUFS +/- 1 and true peak at most -1 dBTP, stereo at 48 kHz. A mix that misses blocks the
    master and the HLS package."""
    episode = episode_artifacts(context, store)
    audio, rate = decode_audio(episode.store.require(episode.mix_m4a, "episode_audio"))
    loudness, true_peak, problems = delivery_loudness_problems(audio, rate)
    return AssetCheckResult(passed=not problems, metadata={
        "integrated_lufs": round(loudness, 2), "true_peak_dbtp": round(true_peak, 2),
        "problems": "; ".join(problems) or "none"})

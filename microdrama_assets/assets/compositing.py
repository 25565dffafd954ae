"""Compositing stage: lip sync on the speaking characters, the mood grade and burned captions, per shot."""

import json

import numpy as np
from dagster import (AssetCheckExecutionContext, AssetCheckResult, AssetExecutionContext, MetadataValue, asset)

from ..execution import GPU_POOL, GPU_STEP_TAGS, MODEL_RETRY_POLICY, placement_for_attempt
from ..cache import STAGES, shot_stage_key
from ..media.captions import (LEGIBLE_CONTRAST, Cue, adapt_to_background, caption_opacity, composite_overlay,
                              line_cues, measure_caption_legibility, render_caption)
from ..media.grade import grade_frame
from ..media.lipsync import MouthPath, measure_lip_sync, mouth_opening_from_pixels, speech_envelope
from ..media.manifest import FPS, EpisodeManifest, Shot
from ..media.speech import Phoneme, Speech
from ..media.video_io import decode_frames, read_rgb_frames, write_mezzanine
from ..media.ai_label import AILabel
from ..partitions import shot_partitions
from ..resources import ArtifactStoreResource, BackendSettings, EncodeSettings
from .audio import SAMPLES_PER_FRAME, dialogue_audio, read_wav, shot_dialogue
from .common import (audit_restored, cached, cached_result, code_version, exactly, model_calls_metadata,
                     partitioned_check, shot_context)
from .motion import shot_clip



def shot_cues(manifest: EpisodeManifest, shot: Shot, dialogue: dict, offset_s: float = 0.0) -> list[Cue]:
    """Caption cues for a shot's lines, shot-relative unless ``offset_s`` places them on the episode timeline."""
    return line_cues([(line["start_s"], line["duration_s"], manifest.character(line["speaker"]).name, line["text"])
                      for line in dialogue["lines"]], shot.frames / FPS, offset_s)


def _placed_speech(dialogue: dict, samples: np.ndarray) -> dict[str, list[tuple[float, Speech]]]:
    """Each speaker's lines as (start, Speech) rebuilt from the shot's dialogue track (lines never overlap)."""
    placed: dict[str, list[tuple[float, Speech]]] = {}
    for line in dialogue["lines"]:
        start = round(line["start_s"] * SAMPLES_PER_FRAME * FPS)
        speech = Speech(samples[start : start + line["samples"]], SAMPLES_PER_FRAME * FPS,
                        tuple(Phoneme(*p) for p in line["phonemes"]))
        placed.setdefault(line["speaker"], []).append((line["start_s"], speech))
    return placed


@asset(partitions_def=shot_partitions, group_name="compositing", deps=[shot_clip, dialogue_audio],
       output_required=False, code_version=code_version("composite"), pool=GPU_POOL, op_tags=GPU_STEP_TAGS,
       retry_policy=MODEL_RETRY_POLICY)
def composited_shot(context: AssetExecutionContext, store: ArtifactStoreResource, backends: BackendSettings,
                    encode: EncodeSettings):
    """The finished shot: mouths follow the speech, the mood grade, captions inside the 9:16 title-safe area
    (over a dark scrim in the frames where the picture behind them is too bright to read them against)."""
    located = shot_context(context, store)
    if located is None:
        return
    episode, manifest, shot, artifacts = located
    lipsync = backends.lipsync_backend(placement_for_attempt(context, backends.device))
    key = shot_stage_key("composite", episode, manifest, shot, backends, encode)
    track = json.loads(artifacts.store.require(artifacts.clip_track, "shot_clip").read_text(encoding="utf-8"))["mouths"]
    dialogue = shot_dialogue(artifacts)
    speakers = {line["speaker"] for line in dialogue["lines"]}
    untracked = sorted(speakers - set(track))
    if untracked:
        # Expected when the speaker is off screen or seen from behind (close-ups, over-the-shoulder shots).
        context.log.info(f"shot {shot.id}: {untracked} speak off camera; no mouth to animate")
    cues = shot_cues(manifest, shot, dialogue)

    def build():
        voices = _placed_speech(dialogue, read_wav(artifacts.dialogue_wav))
        mouths = {character_id: MouthPath.from_track(entry) for character_id, entry in track.items()}
        overlays = [render_caption(cue.text, manifest.width, manifest.height, manifest.caption_style.value)
                    for cue in cues]
        label = AILabel(manifest.width, manifest.height) if manifest.ai_label else None

        def finished_frames():
            synced = lipsync.animate(read_rgb_frames(artifacts.clip), mouths, voices, shot.frames)
            for index, frame in enumerate(synced):
                graded = grade_frame(frame, shot.mood)
                time_s = index / FPS
                for cue, overlay in zip(cues, overlays):
                    if cue.start_s <= time_s < cue.end_s:
                        composite_overlay(graded, adapt_to_background(overlay, graded), caption_opacity(time_s, cue))
                if label is not None:
                    label.apply(graded)
                yield graded

        frames = exactly(finished_frames(), shot.frames, f"shot {shot.id} clip (re-render the shot)")
        with episode.store.writing(artifacts.composited) as tmp:
            write_mezzanine(tmp, frames, manifest.width, manifest.height, encode.mezzanine())
        return model_calls_metadata(context, episode, shot.id, lipsync)

    outcome = cached(context, store, key, artifacts.directory, STAGES["composite"].paths(artifacts), build)
    audit_restored(context, episode, shot.id, lipsync, outcome)
    yield cached_result(outcome, {
        "frames": shot.frames,  # counted as they were written (``exactly``)
        "lip_synced": ", ".join(sorted(speakers & set(track))) or "nobody speaks",
        "captions": len(cues),
        "grade": shot.mood.value,
        "lipsync_backend": lipsync.name,
        **(outcome.value or {}),
        "bytes": artifacts.composited.stat().st_size,
        "path": MetadataValue.path(str(artifacts.composited)),
    })


def _voice_track(placed: list[tuple[float, Speech]], n_samples: int) -> np.ndarray:
    """One speaker's lines (``_placed_speech``) alone on the shot's timeline."""
    track = np.zeros(n_samples, np.float32)
    for start_s, speech in placed:
        start = round(start_s * speech.sample_rate)
        track[start:start + len(speech.samples)] = speech.samples
    return track


@partitioned_check(composited_shot, shot_partitions, blocking=True)
def composited_shot_lip_sync(context: AssetCheckExecutionContext, store: ArtifactStoreResource) -> AssetCheckResult:
    """Lip sync measured on the finished shot's pixels: each on-screen speaker's mouth opening (dark area
    at its tracked mouth) must follow the loudness of its own voice (r >= 0.6, best lag within one frame:
    audio and picture no more than a frame apart), and on-screen characters who do not speak keep their
    mouths closed. A shot that fails is not encoded."""
    located = shot_context(context, store)
    if located is None:
        return AssetCheckResult(passed=True, metadata={"skipped": "the episode has no such shot"})
    _, _, shot, artifacts = located
    track = json.loads(artifacts.store.require(artifacts.clip_track, "shot_clip").read_text(encoding="utf-8"))["mouths"]
    dialogue = shot_dialogue(artifacts)
    samples = read_wav(artifacts.dialogue_wav)
    openings = {character_id: [] for character_id in track}
    for index, frame in enumerate(decode_frames(artifacts.store.require(artifacts.composited, "composited_shot"))):
        gray = frame.to_ndarray(format="gray")
        for character_id, mouth in track.items():
            openings[character_id].append(
                mouth_opening_from_pixels(gray, tuple(mouth["xy"][index]), mouth["width"][index]))
    placed = _placed_speech(dialogue, samples)
    measures = [measure_lip_sync(character_id, np.array(values),
                                 speech_envelope(_voice_track(placed.get(character_id, []), len(samples)),
                                                 SAMPLES_PER_FRAME * FPS, len(values), FPS))
                for character_id, values in sorted(openings.items())]
    problems = [m.problem for m in measures if m.problem]
    return AssetCheckResult(passed=not problems, metadata={
        "problems": "; ".join(problems) or "none",
        "measures": MetadataValue.md("| character | voiced frames | r at lag 0 | best lag (frames) | opening range |\n"
                                     "|---|---|---|---|---|\n" + "\n".join(
            f"| {m.character_id} | {m.speech_frames} | {'-' if m.correlation is None else f'{m.correlation:.2f}'} "
            f"| {'-' if m.best_lag_frames is None else m.best_lag_frames} | {m.opening_range:.3f} |"
            for m in measures)),
    })


@partitioned_check(composited_shot, shot_partitions, blocking=True)
def composited_shot_captions_legible(context: AssetCheckExecutionContext,
                                     store: ArtifactStoreResource) -> AssetCheckResult:
    """Burned captions measured on the finished shot's pixels, on the frame in the middle of each cue: the WCAG
    contrast between the glyph fill and the ring around its strokes, at the worst-lit 5 % of the glyph edges,
    must reach LEGIBLE_CONTRAST (4.5:1), and the caption must keep inside the 9:16 title-safe area. A shot that
    fails is not encoded."""
    located = shot_context(context, store)
    if located is None:
        return AssetCheckResult(passed=True, metadata={"skipped": "the episode has no such shot"})
    _, manifest, shot, artifacts = located
    cues = shot_cues(manifest, shot, shot_dialogue(artifacts))
    style = manifest.caption_style.value
    # The middle frame of each cue: clear of its fades, so the caption is at full opacity.
    targets = [(int((cue.start_s + cue.end_s) / 2 * FPS), cue,
                render_caption(cue.text, manifest.width, manifest.height, style)) for cue in cues]
    wanted = {index for index, _, _ in targets}
    frames = {}
    for index, frame in enumerate(decode_frames(artifacts.store.require(artifacts.composited, "composited_shot"))):
        if index in wanted:
            frames[index] = frame.to_ndarray(format="rgb24")
            if len(frames) == len(wanted):
                break
    measures = [(index, cue, measure_caption_legibility(frames[index], overlay))
                for index, cue, overlay in targets if index in frames]
    problems = [m.problem for _, _, m in measures if m.problem]
    problems += [f"{cue.text!r}: its middle frame {index} is past the video's end"
                 for index, cue, _ in targets if index not in frames]
    metadata = {
        "problems": "; ".join(problems) or "none",
        "caption_style": style,
        "captions": len(cues),
        "measures": MetadataValue.md(
            f"WCAG contrast at the worst-lit 5 % of glyph edges (the bar is {LEGIBLE_CONTRAST:g}:1) and at a typical "
            "edge; relative luminance of the text and of the ring around its strokes where brightest.\n\n"
            "| frame | caption | contrast | median contrast | text luminance | surround luminance | title-safe |\n"
            "|---|---|---|---|---|---|---|\n" + "\n".join(
                f"| {index} | {' '.join(cue.text.split()).replace('|', '&#124;')} | {m.contrast:.2f}:1 "
                f"| {m.median_contrast:.2f}:1 | {m.text_luminance:.3f} | {m.surround_luminance:.3f} "
                f"| {'yes' if m.inside_title_safe else 'no'} |"
                for index, cue, m in measures)),
    }
    if measures:
        metadata["lowest_contrast"] = round(min(m.contrast for _, _, m in measures), 2)
    return AssetCheckResult(passed=not problems, metadata=metadata)

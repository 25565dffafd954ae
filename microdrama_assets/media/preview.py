"""A fast draft of an episode: a 360x640 HLS stream a player can start while later shots are still rendering.

Each shot is drawn from one keyframe (its first storyboard plan), moved by the shot's camera (a slow push where the
camera is static) instead of optical-flow in-betweens, with its dialogue spoken by espeak-ng and captioned as the
full pipeline places it, and a small "PREVIEW" mark so the draft is never taken for the final.

One H.264 encoder (x264 "ultrafast", zero latency, so every frame's packet is out as soon as it is encoded) and one
AAC encoder run for the whole episode: timestamps are continuous across shots and the audio has no priming gap at
the cuts. Every line is spoken and placed before the first frame is drawn (espeak-ng takes tens of milliseconds an
episode), so each 1-2 s segment is muxed on its own (fragmented MP4 from a fresh muxer fed the encoders' packets)
with all of its picture and sound the moment its last frame is encoded, rather than when the next segment begins
as with a streaming muxer. Every segment starts with an IDR; video and audio are muxed in one rendition.

After each shot the ``EVENT`` media playlist is rewritten to list that shot's segments; ``EXT-X-ENDLIST`` closes it
after the last shot. Segment files are written before the playlist that names them, every file atomically.
"""

from __future__ import annotations

import io
import math
import struct
import time
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Callable, Iterator

import av
import cv2
import m3u8
import numpy as np
from PIL import Image, ImageDraw, ImageFont

from ..storage import ArtifactStore
from .audio_mix import SAMPLE_RATE, DialogueDoesNotFit, place_lines
from .captions import (CaptionOverlay, Cue, adapt_to_background, caption_font_for, caption_glyphs, caption_opacity,
                       composite_overlay, line_cues, render_caption, safe_area)
from .grade import grade_frame
from .hls import (INIT_SEGMENT, MEDIA_PLAYLIST, PRESETS, VIDEO_CODECS, Rung, VideoVariant, encoder_setup,
                  segment_plan)
from .manifest import FPS, CameraMove, EpisodeManifest, Shot
from .motion import camera_matrix
from .render import render_keyframe
from .speech import Speech, synthesize
from .storyboard import plan_keyframes

PREVIEW_WIDTH, PREVIEW_HEIGHT = 360, 640
VIDEO_KBPS = 400
AUDIO_KBPS = 48  # mono speech, no music
PREVIEW_RUNG = Rung("preview", PREVIEW_WIDTH, PREVIEW_HEIGHT, VIDEO_KBPS, round(VIDEO_KBPS * 1.25))
PRESET = PRESETS["draft"]  # x264 ultrafast, segments of at most 2 s (split evenly within each shot)
SOURCE_SCALE = 1.25  # the keyframe is kept this much larger than the output, so a push-in stays sharp
STATIC_DRIFT = 0.35  # a static shot drifts in by this share of a full push-in: a still frame reads as a freeze
WATERMARK = "PREVIEW"
SAMPLES_PER_FRAME = SAMPLE_RATE // FPS
AAC_PRIMING_SAMPLES = 1024  # FFmpeg's AAC encoder emits one frame of priming ahead of the first input sample
_AAC_LOOKAHEAD_SAMPLES = 4 * 1024  # what the AAC encoder must be given past a point to have its packets out
_MUXER_OPTIONS = {
    # Fragmented MP4 with an empty moov (the init segment) and no edit list, so every segment's moov is the same;
    # frag_discont plus no timestamp shifting keeps each segment's tfdt at its place on the episode timeline.
    "movflags": "empty_moov+default_base_moof+frag_discont",
    "use_editlist": "0",
    "avoid_negative_ts": "disabled",
}
_INIT_BOXES = (b"ftyp", b"moov")
_MEDIA_BOXES = (b"moof", b"mdat")


class PreviewError(ValueError):
    """A manifest the preview cannot be made from (a shot whose dialogue does not fit it)."""


@dataclass(frozen=True)
class PreviewSegment:
    """One media segment of the preview, as its playlist lists it."""

    uri: str  # relative to the playlist
    shot_id: str
    start_s: float  # on the episode timeline
    duration_s: float


@dataclass(frozen=True)
class PreviewResult:
    """The finished preview: its playlist (closed with EXT-X-ENDLIST), segments and timings."""

    playlist: Path
    segments: tuple[PreviewSegment, ...]
    duration_s: float
    first_playable_s: float  # from the call until the playlist first listed a segment
    elapsed_s: float  # from the call until the playlist was closed with EXT-X-ENDLIST


def build_preview(manifest: EpisodeManifest, out_dir: Path,
                  on_segment: Callable[[PreviewSegment], None] | None = None, *,
                  store: ArtifactStore | None = None) -> PreviewResult:
    """Render ``manifest`` as a draft 360x640 HLS stream in ``out_dir`` (``index.m3u8``, ``init.mp4`` and one
    ``<shot>_<n>.m4s`` per segment), shots in order. ``on_segment`` is called for every segment once a playlist
    listing it is in place. ``store`` writes the files (the episode's store: an S3 store uploads each file as it is
    written); by default they are plain local files, each written atomically."""
    started = time.perf_counter()
    out_dir = Path(out_dir)
    store = store or ArtifactStore(out_dir)
    # Speech is quick (tens of ms an episode): every line is placed before anything is written, so a shot whose
    # dialogue does not fit fails the preview up front, and each segment can be muxed with all of its sound.
    lines = {shot.id: _placed_lines(manifest, shot) for shot in manifest.shots}
    dialogue = np.concatenate([_dialogue_track(shot, lines[shot.id]) for shot in manifest.shots])
    playlist_path = out_dir / MEDIA_PLAYLIST
    # A player must never read an earlier preview's playlist while its segments are being overwritten.
    playlist_path.unlink(missing_ok=True)
    watermark = _watermark_overlay(PREVIEW_WIDTH, PREVIEW_HEIGHT)
    published: list[PreviewSegment] = []
    first_playable_s = None
    with _PreviewEncoder(dialogue) as encoder:
        store.write_bytes(out_dir / INIT_SEGMENT, encoder.init_segment)
        for shot in manifest.shots:
            frames = _shot_frames(manifest, shot, _shot_cues(manifest, shot, lines[shot.id]), watermark)
            segment_start = manifest.start_frame(shot.id)
            new_segments = []
            for number, length in enumerate(segment_plan(shot.frames, round(PRESET.segment_s * FPS))):
                for offset in range(length):
                    encoder.add_frame(next(frames), starts_segment=offset == 0)
                uri = f"{shot.id}_{number:03d}.m4s"
                store.write_bytes(out_dir / uri, encoder.segment(segment_start, segment_start + length))
                new_segments.append(PreviewSegment(uri, shot.id, segment_start / FPS, length / FPS))
                segment_start += length
            published.extend(new_segments)
            store.write_text(playlist_path, _event_playlist(published, done=segment_start == manifest.total_frames))
            if first_playable_s is None:
                first_playable_s = time.perf_counter() - started
            if on_segment is not None:
                for segment in new_segments:
                    on_segment(segment)
    return PreviewResult(
        playlist=playlist_path,
        segments=tuple(published),
        duration_s=manifest.total_frames / FPS,
        first_playable_s=first_playable_s,
        elapsed_s=time.perf_counter() - started,
    )


# --- picture ------------------------------------------------------------------------------------------------------
def _draft_keyframe(manifest: EpisodeManifest, shot: Shot) -> np.ndarray:
    """The shot's first keyframe, rendered directly at ``SOURCE_SCALE`` times the preview size and graded like the
    finished shot, as RGBA: OpenCV warps four channels in about half the time of three."""
    size = (round(PREVIEW_WIDTH * SOURCE_SCALE), round(PREVIEW_HEIGHT * SOURCE_SCALE))
    keyframe = render_keyframe(manifest, shot, plan_keyframes(shot, manifest)[0], size=size).image
    return cv2.cvtColor(grade_frame(keyframe, shot.mood), cv2.COLOR_RGB2RGBA)


def _preview_camera(manifest: EpisodeManifest, shot: Shot, frame_index: int,
                    source_size: tuple[int, int]) -> np.ndarray:
    """2x3 affine from preview pixels to ``source_size`` (width, height) pixels on the shot's frame
    ``frame_index``: the shot's camera move as the full pipeline's motion stage makes it (worked out on the full
    frame, so hand-held shake keeps its size), or a slow push where the camera is static."""
    move, parallax = (CameraMove.push_in, STATIC_DRIFT) if shot.camera is CameraMove.static else (shot.camera, 1.0)
    last = max(shot.frames - 1, 1)
    on_full_frame = camera_matrix(move, frame_index / last, manifest.width, manifest.height, shot.seed, last / FPS,
                                  parallax)
    to_full = _pixel_scale(manifest.width / PREVIEW_WIDTH, manifest.height / PREVIEW_HEIGHT)
    to_source = _pixel_scale(source_size[0] / manifest.width, source_size[1] / manifest.height)
    return (to_source @ np.vstack([on_full_frame, [0.0, 0.0, 1.0]]) @ to_full)[:2]


def _pixel_scale(x: float, y: float) -> np.ndarray:
    """3x3 scaling between two sizes of one picture that keeps pixel centres on pixel centres."""
    return np.array([[x, 0.0, (x - 1.0) / 2], [0.0, y, (y - 1.0) / 2], [0.0, 0.0, 1.0]])


def _shot_frames(manifest: EpisodeManifest, shot: Shot, cues: list[Cue],
                 watermark: CaptionOverlay) -> Iterator[np.ndarray]:
    """The shot's frames (RGBA) at the preview size: camera move, burned captions (fading in and out) and
    watermark."""
    source = _draft_keyframe(manifest, shot)
    source_size = (source.shape[1], source.shape[0])

    def picture(index: int) -> np.ndarray:
        return cv2.warpAffine(source, _preview_camera(manifest, shot, index, source_size),
                              (PREVIEW_WIDTH, PREVIEW_HEIGHT), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                              borderMode=cv2.BORDER_REPLICATE)

    # Legibility is adapted once per caption, against the frame in the middle of its cue: the draft's picture
    # changes only by the slow camera move.
    captions = [adapt_to_background(render_caption(cue.text, PREVIEW_WIDTH, PREVIEW_HEIGHT,
                                                   manifest.caption_style.value),
                                    picture(min(round((cue.start_s + cue.end_s) / 2 * FPS), shot.frames - 1))[..., :3])
                for cue in cues]
    for index in range(shot.frames):
        frame = picture(index)
        rgb = frame[..., :3]  # overlays are blended into the colour channels in place
        time_s = index / FPS
        for cue, caption in zip(cues, captions):
            opacity = caption_opacity(time_s, cue)
            if opacity > 0.0:
                composite_overlay(rgb, caption, opacity)
        composite_overlay(rgb, watermark)
        yield frame


def _watermark_overlay(width: int, height: int) -> CaptionOverlay:
    """A small "PREVIEW" mark, white with a dark outline, in the top-left corner of the title-safe area."""
    size = max(10, round(width * 0.04))
    stroke = max(1, size // 8)
    font = ImageFont.truetype(str(caption_font_for(WATERMARK)), size)
    left, top, right, bottom = font.getbbox(WATERMARK, stroke_width=stroke)
    box = (right - left + 2 * stroke, bottom - top + 2 * stroke)
    fill, outline = Image.new("L", box, 0), Image.new("L", box, 0)
    origin = (stroke - left, stroke - top)
    ImageDraw.Draw(fill).text(origin, WATERMARK, font=font, fill=255)
    ImageDraw.Draw(outline).text(origin, WATERMARK, font=font, fill=255, stroke_width=stroke, stroke_fill=255)
    fill_alpha, outline_alpha = np.asarray(fill, np.float32) / 255.0, np.asarray(outline, np.float32) / 255.0
    white = np.repeat(np.round(255.0 * fill_alpha)[..., None], 3, axis=2)
    # Mostly opaque: legible over any picture, yet the frame shows through.
    rgba = np.dstack([white, np.round(200.0 * np.maximum(fill_alpha, outline_alpha))]).astype(np.uint8)
    area = safe_area(width, height)
    return CaptionOverlay(rgba=rgba, x=area.left, y=area.top, glyphs=caption_glyphs(np.asarray(fill)),
                          lines=(WATERMARK,))


# --- sound --------------------------------------------------------------------------------------------------------
def _placed_lines(manifest: EpisodeManifest, shot: Shot) -> list[tuple[float, Speech]]:
    """(start in the shot, speech) of each line in its character's voice, placed by ``place_lines`` as the full
    pipeline's dialogue stage places them."""
    speeches = [synthesize(line.text, manifest.character(line.speaker).voice) for line in shot.dialogue]
    try:
        starts = place_lines(shot.frames, [speech.duration_s for speech in speeches])
    except DialogueDoesNotFit as exc:
        raise PreviewError(f"shot {shot.id}: {exc}") from None
    return list(zip(starts, speeches))


def _dialogue_track(shot: Shot, lines: list[tuple[float, Speech]]) -> np.ndarray:
    """The shot's placed lines on its timeline: mono float32 at ``SAMPLE_RATE``, exactly the shot's length."""
    track = np.zeros(shot.frames * SAMPLES_PER_FRAME, np.float32)
    for start_s, speech in lines:
        offset = round(start_s * SAMPLE_RATE)
        track[offset:offset + len(speech.samples)] += speech.samples
    return track


def _shot_cues(manifest: EpisodeManifest, shot: Shot, lines: list[tuple[float, Speech]]) -> list[Cue]:
    """Caption cues for the shot's placed lines (shot-relative), timed as the full pipeline's."""
    return line_cues([(start_s, speech.duration_s, manifest.character(line.speaker).name, line.text)
                      for line, (start_s, speech) in zip(shot.dialogue, lines)], shot.frames / FPS)


# --- encoding and segmenting ---------------------------------------------------------------------------------------
def _split_boxes(data: bytes) -> tuple[bytes, bytes]:
    """(init boxes, media boxes) of a fragmented MP4: ftyp+moov, and moof+mdat; anything else (mfra) is dropped."""
    init, media, offset = [], [], 0
    while offset + 8 <= len(data):
        size, kind = struct.unpack_from(">I4s", data, offset)
        if size < 8 or offset + size > len(data):
            raise RuntimeError(f"muxer wrote a malformed MP4 box {kind!r} at byte {offset}")
        if kind in _INIT_BOXES:
            init.append(data[offset:offset + size])
        elif kind in _MEDIA_BOXES:
            media.append(data[offset:offset + size])
        offset += size
    return b"".join(init), b"".join(media)


class _PreviewEncoder:
    """The episode's two encoders, fed frame by frame and (ahead of each segment) with the episode's sound, and
    the packets they have made that no segment has taken yet.

    The encoders live in an MP4 muxer that never receives a packet: opening it opens them (with global headers)
    and writes the init segment, and its streams are the templates every segment's own muxer copies."""

    def __init__(self, sound: np.ndarray) -> None:
        self._sound = sound  # mono float32 at SAMPLE_RATE, the whole episode
        self._buffer = io.BytesIO()
        self._container = av.open(self._buffer, "w", format="mp4", options=_MUXER_OPTIONS)
        segment_frames = round(PRESET.segment_s * FPS)
        bit_rate, options = encoder_setup(VideoVariant(VIDEO_CODECS["h264"], PREVIEW_RUNG), PRESET, segment_frames)
        self._video = self._container.add_stream("libx264", rate=FPS)
        self._video.width, self._video.height, self._video.pix_fmt = PREVIEW_WIDTH, PREVIEW_HEIGHT, "yuv420p"
        self._video.codec_context.time_base = Fraction(1, FPS)
        self._video.bit_rate = bit_rate
        # Zero latency: no lookahead or frame threads, so each frame's packet is out before the next frame.
        self._video.options = {**options, "tune": "zerolatency"}
        self._audio = self._container.add_stream("aac", rate=SAMPLE_RATE, layout="mono")
        self._audio.bit_rate = AUDIO_KBPS * 1000
        self._container.start_encoding()
        self.init_segment, _ = _split_boxes(self._buffer.getvalue())
        self._video_packets: list[av.Packet] = []
        self._audio_packets: list[av.Packet] = []
        self._frames = 0
        # The episode's first AAC_PRIMING_SAMPLES are left out: the priming frame the encoder puts first takes
        # their place, so the packets start at 0 and the sound is in sync with the picture without an edit list
        # (the episode opens on a lead-in's silence).
        self._sound_fed = AAC_PRIMING_SAMPLES

    def __enter__(self) -> "_PreviewEncoder":
        return self

    def __exit__(self, *_) -> None:
        self._container.close()

    def add_frame(self, rgba: np.ndarray, starts_segment: bool) -> None:
        """Encode the next frame; the first frame of a segment is forced to be an IDR."""
        # OpenCV's I420 conversion, as the mezzanine writer's (video_io.FrameSink).
        frame = av.VideoFrame.from_ndarray(cv2.cvtColor(rgba, cv2.COLOR_RGBA2YUV_I420), format="yuv420p")
        frame.pts, frame.time_base = self._frames, Fraction(1, FPS)
        frame.pict_type = av.video.frame.PictureType.I if starts_segment else av.video.frame.PictureType.NONE
        self._video_packets.extend(self._video.encode(frame))
        self._frames += 1

    def _feed_sound(self, until_sample: int) -> None:
        """Encode the episode's sound up to ``until_sample``; reaching its end drains the encoder."""
        until_sample = min(until_sample, len(self._sound))
        if until_sample <= self._sound_fed:
            return
        chunk = np.clip(self._sound[self._sound_fed:until_sample], -1.0, 1.0).astype(np.float32).reshape(1, -1)
        frame = av.AudioFrame.from_ndarray(chunk, format="fltp", layout="mono")
        frame.sample_rate, frame.pts, frame.time_base = SAMPLE_RATE, self._sound_fed, Fraction(1, SAMPLE_RATE)
        self._audio_packets.extend(self._audio.encode(frame))
        self._sound_fed = until_sample
        if self._sound_fed == len(self._sound):
            self._audio_packets.extend(self._audio.encode(None))

    def segment(self, start_frame: int, end_frame: int) -> bytes:
        """The media segment (moof+mdat) of the frames [start_frame, end_frame), whose first frame must have been
        sent as the first of its segment, with the sound whose AAC frames start before its end."""
        frames = end_frame - start_frame
        end_sample = end_frame * SAMPLES_PER_FRAME
        last = end_sample >= len(self._sound)
        if last:
            self._video_packets.extend(self._video.encode(None))
        video = self._video_packets
        if len(video) != frames or video[0].pts != start_frame or not video[0].is_keyframe:
            raise RuntimeError(f"segment at frame {start_frame}: the encoder gave {len(video)} packets for {frames} "
                               "frames, or they do not open on a keyframe")
        # The AAC encoder holds a few frames back: feeding sound a little past the segment gets all of its own out.
        self._feed_sound(end_sample + _AAC_LOOKAHEAD_SAMPLES)
        audio = [packet for packet in self._audio_packets if last or packet.pts < end_sample]
        if not last and (not self._audio_packets or self._audio_packets[-1].pts < end_sample):
            raise RuntimeError(f"segment at frame {start_frame}: the AAC encoder has not reached its end")
        if start_frame == 0 and audio[0].pts != 0:
            raise RuntimeError(f"the AAC encoder's first packet is at {audio[0].pts}, not 0: its priming is not "
                               f"{AAC_PRIMING_SAMPLES} samples and the sound would be out of sync")
        self._audio_packets = self._audio_packets[len(audio):]
        self._video_packets = []
        buffer = io.BytesIO()
        with av.open(buffer, "w", format="mp4", options=_MUXER_OPTIONS) as container:
            video_stream = container.add_stream_from_template(self._video)
            audio_stream = container.add_stream_from_template(self._audio)
            timed = [(float(p.pts * p.time_base), 0, p, video_stream) for p in video]
            timed += [(float(p.pts * p.time_base), 1, p, audio_stream) for p in audio]
            for _, _, packet, stream in sorted(timed, key=lambda item: item[:2]):
                packet.stream = stream
                container.mux(packet)
        init, media = _split_boxes(buffer.getvalue())
        if init != self.init_segment:
            raise RuntimeError(f"segment at frame {start_frame} was muxed with a different init segment")
        return media


# --- playlist -----------------------------------------------------------------------------------------------------
def _event_playlist(segments: list[PreviewSegment], done: bool) -> str:
    """The media playlist listing ``segments``: an EVENT playlist (segments are only ever added), closed with
    EXT-X-ENDLIST when ``done``."""
    playlist = m3u8.M3U8()
    playlist.version = 7
    playlist.playlist_type = "event"
    playlist.is_independent_segments = True
    playlist.media_sequence = 0
    # Fixed for the whole event (it may not change while the playlist grows): no segment is longer than this.
    playlist.target_duration = math.ceil(PRESET.segment_s)
    playlist.is_endlist = done
    for segment in segments:
        playlist.add_segment(m3u8.Segment(uri=segment.uri, duration=segment.duration_s,
                                          init_section={"uri": INIT_SEGMENT}))
    return playlist.dumps()

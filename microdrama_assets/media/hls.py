"""ABR renditions per shot and the episode's CMAF (fMP4) HLS package.

Each shot is encoded on its own into every rung: one decode of the shot, every rung's encoder fed from it. Shots
are cut into segments that never cross a shot boundary, every segment starts with an IDR, and the fragments'
decode times are shifted onto the episode timeline, so the episode playlists are assembled from shots and a
changed shot re-encodes only its own segments. Encoders use no B-frames, so decode time equals presentation time
and a shot's timeline offset is a plain shift of ``tfdt``.
"""

from __future__ import annotations

import hashlib
import math
import os
import shutil
import struct
from dataclasses import asdict, dataclass
from fractions import Fraction
from pathlib import Path
from typing import Iterable

import av
import m3u8
from av.video.reformatter import VideoReformatter
import numpy as np

from .video_io import FPS, SYNTHETIC_ORIGIN_METADATA

MEDIA_PLAYLIST = "index.m3u8"
IFRAME_PLAYLIST = "iframes.m3u8"
MASTER_PLAYLIST = "master.m3u8"
INIT_SEGMENT = "init.mp4"


@dataclass(frozen=True)
class Rung:
    name: str
    width: int
    height: int
    bitrate_kbps: int
    maxrate_kbps: int
    bufsize_kbps: int | None = None  # VBV buffer; defaults to one second at maxrate
    audio_group: str = "audio"


@dataclass(frozen=True)
class AudioRendition:
    group: str  # EXT-X-MEDIA GROUP-ID, also the package folder
    bitrate_kbps: int
    name: str


AUDIO_RENDITIONS: tuple[AudioRendition, ...] = (
    AudioRendition("audio", 128, "Main"),
    AudioRendition("audio-low", 48, "Main (cellular)"),
)
CELLULAR_PEAK_BPS = 192_000  # Apple: offer a variant peaking at or under this, audio included

# 9:16 transposition of Apple's authoring ladder (see DESIGN-NOTES): peaks capped by maxrate. The cellular rung
# pairs with its own 48 kb/s audio and a half-second VBV buffer: a segment's peak is bounded by
# maxrate + bufsize / segment length (85 kb/s + 40 kb / 1.33 s = 115 kb/s) before container overhead, leaving
# room for the audio's ~50 kb/s peak under 192 kb/s. (At 100 kb/s with a 50 kb buffer, the 30-s sample episode
# measured 195 kb/s and failed validation.)
LADDER: tuple[Rung, ...] = (
    Rung("1080p", 1080, 1920, 5000, 6500),
    Rung("720p", 720, 1280, 2500, 3200),
    Rung("540p", 540, 960, 1400, 1800),
    Rung("360p", 360, 640, 550, 700),
    Rung("234p", 234, 416, 75, 85, bufsize_kbps=40, audio_group="audio-low"),
)


@dataclass(frozen=True)
class VideoCodec:
    name: str  # configuration name and package folder
    encoder: str  # the FFmpeg encoder PyAV bundles
    sample_entry: str  # ISO BMFF sample entry, also the RFC 6381 codec prefix
    rate_scale: float  # bitrate against the H.264 ladder for a like picture: HEVC and AV1 need less


VIDEO_CODECS: dict[str, VideoCodec] = {
    "h264": VideoCodec("h264", "libx264", "avc1", 1.0),
    "hevc": VideoCodec("hevc", "libx265", "hvc1", 0.7),
    "av1": VideoCodec("av1", "libsvtav1", "av01", 0.6),
}
AV1_CRF = 34  # SVT-AV1 caps bitrate only in CRF mode: quality target, peak capped at the rung's maxrate


def video_codecs(names: Iterable[str]) -> tuple[VideoCodec, ...]:
    """The codecs named, H.264 first (every rung must have it), each checked against this FFmpeg build."""
    names = list(dict.fromkeys(["h264", *names]))
    unknown = [name for name in names if name not in VIDEO_CODECS]
    if unknown:
        raise ValueError(f"unknown video codec {unknown[0]!r}; choose from {sorted(VIDEO_CODECS)}")
    missing = [VIDEO_CODECS[n].encoder for n in names if VIDEO_CODECS[n].encoder not in av.codecs_available]
    if missing:
        raise ValueError(f"this PyAV/FFmpeg build has no {', '.join(missing)} encoder; drop that codec")
    return tuple(VIDEO_CODECS[name] for name in names)


@dataclass(frozen=True)
class VideoVariant:
    """One rung of the ladder in one codec: a variant stream of the master playlist."""

    codec: VideoCodec
    rung: Rung

    @property
    def key(self) -> str:
        return f"{self.codec.name}/{self.rung.name}"

    def kbps(self, rate: int) -> int:
        return max(1, round(rate * self.codec.rate_scale))


def ladder_variants(codecs: tuple[VideoCodec, ...], ladder: tuple[Rung, ...] = LADDER) -> tuple[VideoVariant, ...]:
    return tuple(VideoVariant(codec, rung) for codec in codecs for rung in ladder)


@dataclass(frozen=True)
class EncodePreset:
    name: str
    x264_preset: str
    x265_preset: str
    svtav1_preset: int
    segment_s: float = 2.0


PRESETS = {
    "final": EncodePreset("final", "veryfast", "veryfast", 9),
    "draft": EncodePreset("draft", "ultrafast", "ultrafast", 11),
}


def segment_plan(n_frames: int, segment_frames: int) -> list[int]:
    """Frames per segment for one shot: as few segments as fit ``segment_frames``, split evenly, so a shot never
    ends in a sliver of a segment and no segment crosses a shot boundary."""
    count = max(1, math.ceil(n_frames / segment_frames))
    base, extra = divmod(n_frames, count)
    return [base + (1 if index < extra else 0) for index in range(count)]


@dataclass(frozen=True)
class Segment:
    uri: str
    frames: int
    bytes: int

    @property
    def duration_s(self) -> float:
        return self.frames / FPS


@dataclass(frozen=True)
class ShotRendition:
    codec: str
    rung: str
    width: int
    height: int
    codecs: str
    init_sha256: str
    start_frame: int
    segments: tuple[Segment, ...]

    def to_json(self) -> dict:
        return asdict(self)

    @staticmethod
    def from_json(payload: dict) -> "ShotRendition":
        return ShotRendition(**{**payload, "segments": tuple(Segment(**s) for s in payload["segments"])})


def encoder_setup(variant: VideoVariant, preset: EncodePreset, segment_frames: int) -> tuple[int | None, dict]:
    """(bit_rate, encoder options) for capped VBR with a closed GOP, no B-frames and IDRs only where forced."""
    bitrate, maxrate = variant.kbps(variant.rung.bitrate_kbps), variant.kbps(variant.rung.maxrate_kbps)
    bufsize = variant.kbps(variant.rung.bufsize_kbps or variant.rung.maxrate_kbps)
    gop = str(segment_frames)
    if variant.codec.name == "h264":
        return bitrate * 1000, {
            "preset": preset.x264_preset, "profile": "high", "g": gop, "keyint_min": gop, "sc_threshold": "0",
            "bf": "0", "forced-idr": "1", "maxrate": f"{maxrate}k", "bufsize": f"{bufsize}k",
            "x264-params": "open-gop=0",
        }
    if variant.codec.name == "hevc":
        return bitrate * 1000, {
            "preset": preset.x265_preset, "profile": "main", "forced-idr": "1",
            "x265-params": f"keyint={gop}:min-keyint={gop}:scenecut=0:bframes=0:open-gop=0:"
                           f"vbv-maxrate={maxrate}:vbv-bufsize={bufsize}:log-level=error",
        }
    if variant.codec.name == "av1":
        return None, {
            "preset": str(preset.svtav1_preset), "crf": str(AV1_CRF), "g": gop,
            # irefresh-type=2: key frames, not intra-only frames, so every segment is independently decodable.
            "svtav1-params": f"keyint={gop}:scd=0:irefresh-type=2:mbr={maxrate}:enable-overlays=0",
        }
    raise ValueError(f"no encoder settings for {variant.codec.name}")


def _open_variant_output(directory: Path, variant: VideoVariant, preset: EncodePreset, segment_frames: int):
    directory.mkdir(parents=True, exist_ok=True)
    container = av.open(
        str(directory / MEDIA_PLAYLIST),
        "w",
        format="hls",
        options={
            # Cut at every keyframe; keyframes are forced exactly where segment_plan says.
            "hls_time": "0.1",
            "hls_segment_type": "fmp4",
            "hls_playlist_type": "vod",
            "hls_fmp4_init_filename": INIT_SEGMENT,
            "hls_segment_filename": str(directory / "seg_%03d.m4s"),
            "hls_flags": "independent_segments",
            # Without edit lists every shot's init segment is byte-identical, so one serves the whole episode.
            "hls_segment_options": "use_editlist=0",
        },
    )
    container.metadata.update(SYNTHETIC_ORIGIN_METADATA)  # the hls muxer hands it on to the init segment
    if variant.codec.name == "av1":
        # SVT-AV1 prints its whole configuration to stderr for every encoder it opens, and warns that containers
        # refuse it thread priorities: errors only (a user's own SVT_LOG wins).
        os.environ.setdefault("SVT_LOG", "1")
    stream = container.add_stream(variant.codec.encoder, rate=FPS)
    stream.width, stream.height, stream.pix_fmt = variant.rung.width, variant.rung.height, "yuv420p"
    stream.codec_context.time_base = Fraction(1, FPS)
    # hvc1 (parameter sets in the init segment), not hev1: what Apple players require.
    stream.codec_tag = variant.codec.sample_entry
    # PyAV defaults encoders to slice threads, which makes every x264 encode call block this loop; frame threads
    # let the encoder work behind it while the next frame is decoded and scaled.
    stream.codec_context.thread_type = "FRAME"
    bit_rate, stream.options = encoder_setup(variant, preset, segment_frames)
    if bit_rate:
        stream.bit_rate = bit_rate
    return container, stream


def encode_shot_renditions(
    frames: Iterable[av.VideoFrame],
    n_frames: int,
    start_frame: int,
    out_root: Path,
    preset: EncodePreset,
    variants: tuple[VideoVariant, ...],
) -> dict[str, ShotRendition]:
    """Encode one shot into every variant from a single pass over its decoded frames; each frame is scaled once
    per rung and that picture feeds every codec's encoder. Results are keyed by ``VideoVariant.key``, each
    variant's files under ``out_root / key``."""
    segment_frames = round(preset.segment_s * FPS)
    plan = segment_plan(n_frames, segment_frames)
    segment_starts = set(np.cumsum([0] + plan[:-1]).tolist())
    rungs = list(dict.fromkeys(variant.rung for variant in variants))
    # One scaler per rung, kept for the whole shot: a fresh one per frame would rebuild its filters every time.
    scalers = {rung: VideoReformatter() for rung in rungs}
    outputs = {}
    try:
        for variant in variants:
            outputs[variant.key] = _open_variant_output(out_root / variant.key, variant, preset, segment_frames)
        written = 0
        for frame in frames:
            if written >= n_frames:
                raise ValueError(f"shot has more than the {n_frames} frames its manifest says")
            picture_type = (av.video.frame.PictureType.I if written in segment_starts
                            else av.video.frame.PictureType.NONE)
            for rung in rungs:
                scaled = frame if (frame.width, frame.height) == (rung.width, rung.height) else scalers[rung].reformat(
                    frame, width=rung.width, height=rung.height, format="yuv420p", interpolation="AREA"
                )
                # Set on every frame: a decoded frame carries its own picture type, which would force extra IDRs.
                scaled.pts, scaled.time_base, scaled.pict_type = written, Fraction(1, FPS), picture_type
                for variant in variants:
                    if variant.rung == rung:
                        container, stream = outputs[variant.key]
                        container.mux(stream.encode(scaled))
            written += 1
        for container, stream in outputs.values():
            container.mux(stream.encode(None))
    finally:
        for container, _ in outputs.values():
            container.close()
    if written != n_frames:
        raise ValueError(f"shot decoded to {written} frames, manifest says {n_frames}")
    return {variant.key: _finish_rendition(out_root / variant.key, variant, plan, start_frame) for variant in variants}


def _finish_rendition(directory: Path, variant: VideoVariant, plan: list[int], start_frame: int) -> ShotRendition:
    playlist = m3u8.load(str(directory / MEDIA_PLAYLIST))
    if len(playlist.segments) != len(plan):
        raise RuntimeError(f"{variant.key}: muxer cut {len(playlist.segments)} segments, planned {len(plan)}")
    timescale = media_timescale(directory / INIT_SEGMENT)
    ticks_per_frame = Fraction(timescale, FPS)
    if ticks_per_frame.denominator != 1:
        raise RuntimeError(f"{variant.key}: timescale {timescale} does not hold whole frames at {FPS} fps")
    segments = []
    for segment, frames in zip(playlist.segments, plan):
        path = directory / segment.uri
        shift_fragment_times(path, start_frame * int(ticks_per_frame))
        segments.append(Segment(segment.uri, frames, path.stat().st_size))
    (directory / MEDIA_PLAYLIST).unlink()  # the episode playlist is assembled from rendition.json, not this
    return ShotRendition(
        codec=variant.codec.name,
        rung=variant.rung.name,
        width=variant.rung.width,
        height=variant.rung.height,
        codecs=codecs_string(directory / INIT_SEGMENT),
        init_sha256=hashlib.sha256((directory / INIT_SEGMENT).read_bytes()).hexdigest(),
        start_frame=start_frame,
        segments=tuple(segments),
    )


# --- fMP4 box surgery: only fixed-size fields are rewritten, so no box changes size --------------------------
_CONTAINER_BOXES = {b"moof", b"traf"}


def _boxes(data: bytearray, start: int, end: int):
    offset = start
    while offset + 8 <= end:
        size, kind = struct.unpack_from(">I4s", data, offset)
        header = 8
        if size == 1:
            size, header = struct.unpack_from(">Q", data, offset + 8)[0], 16
        elif size == 0:
            size = end - offset
        if size < header or offset + size > end:
            raise ValueError(f"malformed MP4 box {kind!r} at byte {offset}")
        yield kind, offset, header, size
        offset += size


def _shift_field(data: bytearray, offset: int, version: int, shift: int, what: str) -> None:
    fmt = ">Q" if version == 1 else ">I"
    value = struct.unpack_from(fmt, data, offset)[0] + shift
    if value < 0:
        raise ValueError(f"{what} would become negative after shifting by {shift}")
    if version == 0 and value >= 2**32:
        raise ValueError(f"{what} overflows its 32-bit field after shifting")
    struct.pack_into(fmt, data, offset, value)


def _fragment_boxes(data: bytearray):
    """(kind, box offset, body offset) of every box in a segment, descending into moof and traf, in file order."""

    def walk(start: int, end: int):
        for kind, offset, header, size in _boxes(data, start, end):
            yield kind, offset, offset + header
            if kind in _CONTAINER_BOXES:
                yield from walk(offset + header, offset + size)

    return walk(0, len(data))


def shift_fragment_times(path: Path, shift_ticks: int) -> None:
    """Move a CMAF segment along the timeline: add ``shift_ticks`` to every tfdt and to sidx's earliest time."""
    data = bytearray(path.read_bytes())
    for kind, _, body in _fragment_boxes(data):
        if kind == b"tfdt":
            _shift_field(data, body + 4, data[body], shift_ticks, "tfdt")
        elif kind == b"sidx":
            # version, flags, reference_ID, timescale, then earliest_presentation_time
            _shift_field(data, body + 12, data[body], shift_ticks, "sidx earliest_presentation_time")
    tmp = path.with_name(path.name + ".part")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def fragment_decode_times(path: Path) -> list[int]:
    """Every tfdt in a segment (the validator and tests read timelines back with this)."""
    data = bytearray(path.read_bytes())
    return [struct.unpack_from(">Q" if data[body] == 1 else ">I", data, body + 4)[0]
            for kind, _, body in _fragment_boxes(data) if kind == b"tfdt"]


_TFHD_OPTIONAL = ((0x1, 8), (0x2, 4), (0x8, 4), (0x10, 4), (0x20, 4))  # flag, field size, in box order
_TRUN_SAMPLE_FIELDS = (0x100, 0x200, 0x400, 0x800)  # duration, size, flags, composition offset


def first_sample_range(path: Path) -> tuple[int, int]:
    """(offset, length) of what a player needs to show a segment's first (IDR) frame: from the start of the first
    movie fragment through the end of its first sample. I-frame playlists point at these bytes."""
    data = bytearray(path.read_bytes())
    moof_offset, default_size = None, None
    for kind, offset, body in _fragment_boxes(data):
        if kind == b"moof":
            moof_offset = offset
            continue
        flags = struct.unpack_from(">I", data, body)[0] & 0xFFFFFF if kind in (b"tfhd", b"trun") else 0
        if kind == b"tfhd":
            if flags & 0x1:
                raise ValueError(f"{path}: explicit base data offsets are not supported")
            field = body + 8
            for flag, width in _TFHD_OPTIONAL:
                if flags & flag:
                    if flag == 0x10:  # default_sample_size
                        default_size = struct.unpack_from(">I", data, field)[0]
                    field += width
        elif kind == b"trun":
            if moof_offset is None or not flags & 0x1:
                raise ValueError(f"{path}: first fragment does not say where its first sample is")
            data_offset = struct.unpack_from(">i", data, body + 8)[0]
            field = body + 12 + (4 if flags & 0x4 else 0)
            first_size = default_size
            for flag in _TRUN_SAMPLE_FIELDS:
                if flags & flag:
                    if flag == 0x200:
                        first_size = struct.unpack_from(">I", data, field)[0]
                    field += 4
            if first_size is None:
                raise ValueError(f"{path}: first fragment gives no sample size")
            return moof_offset, data_offset + first_size
    raise ValueError(f"{path}: no movie fragment")


# --- probing -----------------------------------------------------------------------------------------------
def media_timescale(init_path: Path) -> int:
    with av.open(str(init_path)) as container:
        return container.streams[0].time_base.denominator


_AAC_OBJECT_TYPES = {"LC": 2, "HE-AAC": 5, "HE-AACv2": 29}


def codecs_string(init_path: Path) -> str:
    """RFC 6381 codec string read from the init segment's own decoder configuration."""
    with av.open(str(init_path)) as container:
        stream = container.streams[0]
        context = stream.codec_context
        config = bytes(context.extradata or b"")
        if context.name == "h264":
            if len(config) < 4 or config[0] != 1:
                raise ValueError(f"{init_path}: no avcC decoder configuration")
            return f"avc1.{config[1]:02X}{config[2]:02X}{config[3]:02X}"
        if context.name == "hevc":
            return _hevc_codecs(config, init_path)
        if context.name in ("av1", "libdav1d"):
            return _av1_codecs(config, init_path)
        if context.name == "aac":
            return f"mp4a.40.{_AAC_OBJECT_TYPES.get(context.profile or 'LC', 2)}"
        raise ValueError(f"{init_path}: no codec string known for {context.name}")


def _hevc_codecs(hvcc: bytes, where: Path) -> str:
    """ISO/IEC 14496-15 annex E: hvc1.<space><profile>.<compatibility, bit-reversed>.<tier><level>[.<constraints>]."""
    if len(hvcc) < 23 or hvcc[0] != 1:
        raise ValueError(f"{where}: no hvcC decoder configuration")
    space = ("", "A", "B", "C")[hvcc[1] >> 6]
    tier = "H" if hvcc[1] & 0x20 else "L"
    compatibility = int(f"{int.from_bytes(hvcc[2:6], 'big'):032b}"[::-1], 2)
    constraints = hvcc[6:12].rstrip(b"\0")
    return (f"hvc1.{space}{hvcc[1] & 0x1F}.{compatibility:X}.{tier}{hvcc[12]}"
            + "".join(f".{byte:X}" for byte in constraints))


def _av1_codecs(av1c: bytes, where: Path) -> str:
    """AV1 codec ISO media file format binding: av01.<profile>.<level><tier>.<bit depth>."""
    if len(av1c) < 4 or av1c[0] != 0x81:
        raise ValueError(f"{where}: no av1C decoder configuration")
    profile, level = av1c[1] >> 5, av1c[1] & 0x1F
    tier = "H" if av1c[2] & 0x80 else "M"
    high_bitdepth, twelve_bit = bool(av1c[2] & 0x40), bool(av1c[2] & 0x20)
    depth = 12 if twelve_bit else 10 if high_bitdepth else 8
    return f"av01.{profile}.{level:02d}{tier}.{depth:02d}"


def nal_length_size(init_path: Path) -> int | None:
    """Bytes in each NAL unit's length prefix for AVC/HEVC samples (None for other codecs)."""
    with av.open(str(init_path)) as container:
        context = container.streams[0].codec_context
        config = bytes(context.extradata or b"")
    if context.name == "h264" and len(config) > 4:
        return (config[4] & 3) + 1
    if context.name == "hevc" and len(config) > 21:
        return (config[21] & 3) + 1
    return None


# --- audio ---------------------------------------------------------------------------------------------------
def encode_audio_m4a(stereo: np.ndarray, sample_rate: int, output: Path, bitrate_kbps: int = 128) -> None:
    """The episode mix as AAC-LC in an .m4a (for the master file)."""
    with av.open(str(output), "w", format="mp4") as container:
        _encode_audio(container, stereo, sample_rate, bitrate_kbps)


def decode_audio(path: Path) -> tuple[np.ndarray, int]:
    """An audio file's first stream as float32 (n, channels) and its sample rate: what a player will hear."""
    with av.open(str(path)) as container:
        stream = container.streams.audio[0]
        resampler = av.AudioResampler(format="fltp", layout=stream.layout.name, rate=stream.rate)
        chunks = [resampled.to_ndarray() for frame in container.decode(stream) for resampled in resampler.resample(frame)]
        rate = stream.rate
    if not chunks:
        raise ValueError(f"{path} has no decodable audio")
    return np.concatenate(chunks, axis=1).T.astype(np.float32), rate


def encode_audio_hls(stereo: np.ndarray, sample_rate: int, directory: Path, segment_s: float, bitrate_kbps: int = 128) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    with av.open(
        str(directory / MEDIA_PLAYLIST),
        "w",
        format="hls",
        options={
            "hls_time": str(segment_s),
            "hls_segment_type": "fmp4",
            "hls_playlist_type": "vod",
            "hls_fmp4_init_filename": INIT_SEGMENT,
            "hls_segment_filename": str(directory / "seg_%03d.m4s"),
            "hls_flags": "independent_segments",
        },
    ) as container:
        container.metadata.update(SYNTHETIC_ORIGIN_METADATA)  # the hls muxer hands it on to the init segment
        _encode_audio(container, stereo, sample_rate, bitrate_kbps)
    _merge_trailing_sliver(directory, segment_s)


def _merge_trailing_sliver(directory: Path, segment_s: float) -> None:
    """Fold a last segment of a few milliseconds into the one before it (a CMAF segment may hold several
    fragments). AAC's encoder delay adds a frame at the end of the stream, so audio that ends on or just past a
    segment boundary leaves its final packets in a segment of their own, whose few hundred bytes over some
    milliseconds read as a peak far above the rendition's: a 10-s episode's 48 kb/s audio peaked at 120 kb/s
    and pushed the cellular variant over 192 kb/s."""
    playlist = m3u8.load(str(directory / MEDIA_PLAYLIST))
    if len(playlist.segments) < 2:
        return
    previous, last = playlist.segments[-2], playlist.segments[-1]
    if last.duration >= segment_s / 4 or round(previous.duration + last.duration) > playlist.target_duration:
        return
    with open(directory / previous.uri, "ab") as merged:
        merged.write((directory / last.uri).read_bytes())
    previous.duration = round(previous.duration + last.duration, 6)
    playlist.segments.remove(last)
    (directory / MEDIA_PLAYLIST).write_text(playlist.dumps(), encoding="utf-8")
    (directory / last.uri).unlink()


def _encode_audio(container, stereo: np.ndarray, sample_rate: int, bitrate_kbps: int) -> None:
    if stereo.ndim != 2 or stereo.shape[1] != 2:
        raise ValueError(f"expected stereo audio shaped (n, 2), got {stereo.shape}")
    stream = container.add_stream("aac", rate=sample_rate, layout="stereo")
    stream.bit_rate = bitrate_kbps * 1000
    planar = np.ascontiguousarray(np.clip(stereo, -1.0, 1.0).T.astype(np.float32))
    chunk = 1024 * 16
    for start in range(0, planar.shape[1], chunk):
        frame = av.AudioFrame.from_ndarray(planar[:, start : start + chunk], format="fltp", layout="stereo")
        frame.sample_rate, frame.pts, frame.time_base = sample_rate, start, Fraction(1, sample_rate)
        container.mux(stream.encode(frame))
    container.mux(stream.encode(None))


# --- package assembly ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class VariantFigures:
    codec: str
    rung: str
    width: int
    height: int
    codecs: str
    average_bps: int
    peak_bps: int
    playlist: str
    iframe_playlist: str
    iframe_average_bps: int
    iframe_peak_bps: int
    audio_group: str


def _link_or_copy(source: Path, target: Path) -> None:
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)


def _media_playlist(segments: list[tuple[str, float]], init_uri: str | None,
                    byteranges: list[str] | None = None) -> str:
    """A VOD media playlist; with ``byteranges`` it is an I-frame playlist (one IDR per entry)."""
    playlist = m3u8.M3U8()
    playlist.version = 7
    playlist.playlist_type = "vod"
    playlist.is_independent_segments = True
    playlist.is_endlist = True
    playlist.is_i_frames_only = byteranges is not None
    playlist.media_sequence = 0
    playlist.target_duration = max(1, math.ceil(max(duration for _, duration in segments) - 1e-9))
    init = {"uri": init_uri} if init_uri else None
    for index, (uri, duration) in enumerate(segments):
        byterange = byteranges[index] if byteranges is not None else None
        playlist.add_segment(m3u8.Segment(uri=uri, duration=duration, init_section=init, byterange=byterange))
    return playlist.dumps()


def segment_bitrates(sizes_and_durations: list[tuple[int, float]]) -> tuple[int, int]:
    """(average, peak) bits per second over a media playlist's segments."""
    total_bytes = sum(size for size, _ in sizes_and_durations)
    total_s = sum(duration for _, duration in sizes_and_durations)
    peak = max(size * 8 / duration for size, duration in sizes_and_durations)
    return round(total_bytes * 8 / total_s), round(peak)


def assemble_video_rendition(
    shots: list[tuple[str, Path, ShotRendition]], package_dir: Path, variant: VideoVariant
) -> VariantFigures:
    """Link every shot's segments of one variant into the package and write its media playlist."""
    directory = package_dir / "video" / variant.key
    directory.mkdir(parents=True, exist_ok=True)
    init_hashes = {rendition.init_sha256 for _, _, rendition in shots}
    if len(init_hashes) != 1:
        raise ValueError(
            f"{variant.key}: shots were encoded with different settings (init segments differ); re-render them together"
        )
    first_dir = shots[0][1]
    _link_or_copy(first_dir / INIT_SEGMENT, directory / INIT_SEGMENT)
    entries, figures, iframe_ranges, iframe_figures = [], [], [], []
    expected_start = 0
    ticks_per_frame = media_timescale(first_dir / INIT_SEGMENT) // FPS
    for shot_id, shot_dir, rendition in shots:
        # An earlier shot changed length: move this shot's fragments along the timeline instead of re-encoding.
        shift_frames = expected_start - rendition.start_frame
        for segment in rendition.segments:
            name = f"{shot_id}_{segment.uri}"
            if shift_frames:
                shutil.copyfile(shot_dir / segment.uri, directory / name)
                shift_fragment_times(directory / name, shift_frames * ticks_per_frame)
            else:
                _link_or_copy(shot_dir / segment.uri, directory / name)
            entries.append((name, segment.duration_s))
            figures.append((segment.bytes, segment.duration_s))
            # Every segment starts with its only IDR, so an I-frame entry lasts as long as its segment.
            offset, length = first_sample_range(directory / name)
            iframe_ranges.append(f"{length}@{offset}")
            iframe_figures.append((length, segment.duration_s))
            expected_start += segment.frames
    (directory / MEDIA_PLAYLIST).write_text(_media_playlist(entries, INIT_SEGMENT), encoding="utf-8")
    (directory / IFRAME_PLAYLIST).write_text(_media_playlist(entries, INIT_SEGMENT, iframe_ranges), encoding="utf-8")
    average, peak = segment_bitrates(figures)
    iframe_average, iframe_peak = segment_bitrates(iframe_figures)
    rung = variant.rung
    return VariantFigures(variant.codec.name, rung.name, rung.width, rung.height, shots[0][2].codecs, average, peak,
                          f"video/{variant.key}/{MEDIA_PLAYLIST}", f"video/{variant.key}/{IFRAME_PLAYLIST}",
                          iframe_average, iframe_peak, rung.audio_group)


def audio_rendition_figures(directory: Path) -> tuple[str, int, int]:
    """(codecs, average bps, peak bps) of an audio HLS rendition written by ``encode_audio_hls``."""
    playlist = m3u8.load(str(directory / MEDIA_PLAYLIST))
    figures = [((directory / s.uri).stat().st_size, s.duration) for s in playlist.segments]
    average, peak = segment_bitrates(figures)
    return codecs_string(directory / INIT_SEGMENT), average, peak


def package_audio(stereo: np.ndarray, sample_rate: int, package_dir: Path, segment_s: float,
                  ladder: tuple[Rung, ...]) -> dict[str, tuple[str, int, int]]:
    """Encode every audio rendition the ladder's rungs refer to; (codecs, average, peak) per group."""
    wanted = {rung.audio_group for rung in ladder}
    unknown = wanted - {audio.group for audio in AUDIO_RENDITIONS}
    if unknown:
        raise ValueError(f"rungs refer to unknown audio groups {sorted(unknown)}")
    figures = {}
    for audio in AUDIO_RENDITIONS:
        if audio.group in wanted:
            encode_audio_hls(stereo, sample_rate, package_dir / audio.group, segment_s, audio.bitrate_kbps)
            figures[audio.group] = audio_rendition_figures(package_dir / audio.group)
    return figures


# Cue times are media times: the fMP4 timeline starts at 0, so local 0 is presentation time 0 (in 90 kHz units).
HLS_TIMESTAMP_MAP = "X-TIMESTAMP-MAP=MPEGTS:0,LOCAL:00:00:00.000"


def _vtt_ms(stamp: str) -> int:
    hours, minutes, seconds = stamp.split(":")
    whole, millis = seconds.split(".")
    return ((int(hours) * 60 + int(minutes)) * 60 + int(whole)) * 1000 + int(millis)


def segment_webvtt(vtt_text: str, duration_s: float, segment_s: float) -> list[tuple[str, float]]:
    """Cut a WebVTT document (as ``build_webvtt`` writes it) into HLS subtitle segments of ``segment_s``: each
    one a WebVTT document with the HLS timestamp map and every cue that overlaps its window (a cue that spans
    a boundary is repeated; players drop the duplicate). Returns (text, duration) per segment."""
    blocks = vtt_text.strip().split("\n\n")
    if not blocks[0].startswith("WEBVTT"):
        raise ValueError("not a WebVTT document (no WEBVTT header)")
    cues = []
    for block in blocks[1:]:
        timing = block.split("\n", 1)[0]
        start, _, rest = timing.partition(" --> ")
        cues.append((_vtt_ms(start), _vtt_ms(rest.split(" ", 1)[0]), block))
    total_ms, step_ms = round(duration_s * 1000), round(segment_s * 1000)
    segments = []
    for window_start in range(0, total_ms, step_ms):
        window_end = min(window_start + step_ms, total_ms)
        inside = [block for start, end, block in cues if start < window_end and end > window_start]
        segments.append(("\n\n".join([f"WEBVTT\n{HLS_TIMESTAMP_MAP}", *inside]) + "\n",
                         (window_end - window_start) / 1000))
    return segments


def write_subtitles_playlist(vtt_text: str, duration_s: float, directory: Path, segment_s: float) -> None:
    """The WebVTT rendition, segmented like the media so its target duration matches theirs."""
    directory.mkdir(parents=True, exist_ok=True)
    entries = []
    for index, (text, seconds) in enumerate(segment_webvtt(vtt_text, duration_s, segment_s)):
        name = f"seg_{index:03d}.vtt"
        (directory / name).write_text(text, encoding="utf-8")
        entries.append((name, seconds))
    (directory / MEDIA_PLAYLIST).write_text(_media_playlist(entries, None), encoding="utf-8")


def write_master_playlist(
    package_dir: Path,
    variants: list[VariantFigures],
    audio: dict[str, tuple[str, int, int]],
    language: str,
    has_subtitles: bool,
) -> Path:
    """``audio`` is ``package_audio``'s figures per group."""
    master = m3u8.M3U8()
    master.version = 7
    master.is_independent_segments = True
    for rendition in AUDIO_RENDITIONS:
        if rendition.group in audio:
            master.add_media(m3u8.Media(uri=f"{rendition.group}/{MEDIA_PLAYLIST}", type="AUDIO", group_id=rendition.group,
                                        language=language, name=rendition.name, default="YES", autoselect="YES",
                                        channels="2"))
    if has_subtitles:
        # Captions are burned into the picture already: the WebVTT track is there for players and accessibility
        # tools that want text, and must not switch on by itself and show every line twice.
        master.add_media(m3u8.Media(uri=f"subs/{MEDIA_PLAYLIST}", type="SUBTITLES", group_id="subs",
                                    language=language, name="Captions", default="NO", autoselect="NO", forced="NO"))
    # H.264 first: a player that stops at the first variant it can decode still gets the widest-supported codec.
    codec_order = list(VIDEO_CODECS)
    for variant in sorted(variants, key=lambda v: (codec_order.index(v.codec), v.peak_bps)):
        audio_codecs, audio_average, audio_peak = audio[variant.audio_group]
        stream_info = {
            "bandwidth": variant.peak_bps + audio_peak,
            "average_bandwidth": variant.average_bps + audio_average,
            "codecs": f"{variant.codecs},{audio_codecs}",
            "resolution": f"{variant.width}x{variant.height}",
            "frame_rate": float(FPS),
            "audio": variant.audio_group,
        }
        if has_subtitles:
            stream_info["subtitles"] = "subs"
        master.add_playlist(m3u8.Playlist(uri=variant.playlist, stream_info=stream_info, media=master.media,
                                          base_uri=None))
        # I-frame variants (trick play, scrubbing thumbnails) carry no audio: their rates are video alone.
        master.add_iframe_playlist(m3u8.IFramePlaylist(base_uri=None, uri=variant.iframe_playlist, iframe_stream_info={
            "bandwidth": variant.iframe_peak_bps, "average_bandwidth": variant.iframe_average_bps,
            "codecs": variant.codecs, "resolution": f"{variant.width}x{variant.height}"}))
    path = package_dir / MASTER_PLAYLIST
    path.write_text(master.dumps(), encoding="utf-8")
    return path


"""Checks an HLS package the way a streaming engineer would: by parsing its playlists and probing its segments.

Everything is read back from the files (m3u8 for playlists, PyAV and the fragments' own boxes for media), never
from what the packager meant to write, so the checks catch packaging bugs rather than repeat them.
"""

from __future__ import annotations

import math
import tempfile
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import av
import m3u8

from .hls import (CELLULAR_PEAK_BPS, MASTER_PLAYLIST, codecs_string, fragment_decode_times, media_timescale,
                  nal_length_size, segment_bitrates)

SEGMENT_OVERRUN_S = 0.5  # Apple HLS authoring spec: no segment longer than the target duration + 0.5 s
BITRATE_TOLERANCE = 0.10  # declared vs measured BANDWIDTH / AVERAGE-BANDWIDTH


@dataclass
class PackageReport:
    problems: list[str] = field(default_factory=list)
    variants: int = 0
    segments: int = 0
    duration_s: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.problems


@dataclass(frozen=True)
class _MediaFigures:
    boundaries: tuple[Fraction, ...]  # cumulative segment ends in seconds, exact, comparable across codecs
    average_bps: float
    peak_bps: float
    codecs: str
    resolution: tuple[int, int] | None
    duration_s: float


def _probe_file(scratch: Path, init: bytes, media: bytes) -> Path:
    """An init segment followed by media bytes, as a file PyAV can open: what a player would be handed."""
    scratch.write_bytes(init + media)
    return scratch


def _check_media_playlist(directory: Path, playlist_name: str, kind: str, report: PackageReport) -> _MediaFigures | None:
    label = f"{directory.name}/{playlist_name}"
    path = directory / playlist_name
    if not path.exists():
        report.problems.append(f"{label}: media playlist missing")
        return None
    playlist = m3u8.load(str(path))
    if not playlist.is_endlist or (playlist.playlist_type or "").lower() != "vod":
        report.problems.append(f"{label}: not a complete VOD playlist (EXT-X-ENDLIST / PLAYLIST-TYPE:VOD)")
    if not playlist.segments:
        report.problems.append(f"{label}: no segments")
        return None
    maps = {segment.init_section.uri for segment in playlist.segments if segment.init_section}
    if len(maps) != 1:
        report.problems.append(f"{label}: expected one EXT-X-MAP init segment, found {sorted(maps) or 'none'}")
        return None
    init = directory / maps.pop()
    if not init.exists():
        report.problems.append(f"{label}: init segment {init.name} missing")
        return None
    limit = playlist.target_duration + SEGMENT_OVERRUN_S
    timescale = media_timescale(init)
    init_bytes = init.read_bytes()
    length_size = nal_length_size(init) if kind == "video" else None
    boundaries, sizes, expected_tfdt, total_s = [], [], 0, 0.0
    with tempfile.TemporaryDirectory() as scratch_dir:
        scratch = Path(scratch_dir) / "probe.mp4"
        for index, segment in enumerate(playlist.segments):
            where = f"{label} segment {index} ({segment.uri})"
            file = directory / segment.uri
            if not file.exists():
                report.problems.append(f"{where}: file missing")
                return None
            if segment.duration > limit:
                report.problems.append(f"{where}: {segment.duration:.3f}s exceeds target {playlist.target_duration}s + 0.5s")
            decode_times = fragment_decode_times(file)
            if not decode_times or decode_times[0] != expected_tfdt:
                report.problems.append(f"{where}: starts at tfdt {decode_times[:1]}, timeline expects {expected_tfdt}")
            with av.open(str(_probe_file(scratch, init_bytes, file.read_bytes()))) as container:
                stream = container.streams[0]
                packets = [p for p in container.demux(stream) if p.size]
            if not packets:
                report.problems.append(f"{where}: no media samples")
                return None
            if kind == "video" and not _starts_with_idr(packets[0], length_size):
                report.problems.append(f"{where}: does not start with an IDR frame")
            ticks = sum(p.duration or 0 for p in packets)
            measured_s = ticks / timescale
            if abs(measured_s - segment.duration) > (0.002 if kind == "video" else 0.05):
                report.problems.append(f"{where}: EXTINF {segment.duration:.4f}s but samples last {measured_s:.4f}s")
            expected_tfdt = (decode_times[0] if decode_times else expected_tfdt) + ticks
            boundaries.append(Fraction(expected_tfdt, timescale))
            sizes.append((file.stat().st_size, segment.duration))
            total_s += segment.duration
    report.segments += len(playlist.segments)
    with av.open(str(init)) as container:
        stream = container.streams[0]
        resolution = (stream.width, stream.height) if kind == "video" else None
    average_bps, peak_bps = segment_bitrates(sizes)
    return _MediaFigures(
        boundaries=tuple(boundaries),
        average_bps=average_bps,
        peak_bps=peak_bps,
        codecs=codecs_string(init),
        resolution=resolution,
        duration_s=total_s,
    )


_IDR_NAL_TYPES = {"h264": {5}, "hevc": {19, 20}}  # IDR_W_RADL, IDR_N_LP; not CRA, which opens a GOP


def _starts_with_idr(packet: av.Packet, length_size: int | None) -> bool:
    """A sync sample whose first picture NAL is an IDR (AVC/HEVC; for AV1 the sync flag marks a key frame)."""
    if not packet.is_keyframe:
        return False
    codec = packet.stream.codec_context.name
    if length_size is None or codec not in _IDR_NAL_TYPES:
        return True
    data, offset = bytes(packet), 0
    while offset + length_size < len(data):
        size = int.from_bytes(data[offset:offset + length_size], "big")
        header = data[offset + length_size]
        nal_type = header & 0x1F if codec == "h264" else (header >> 1) & 0x3F
        is_picture = nal_type <= 5 if codec == "h264" else nal_type <= 31
        if is_picture:
            return nal_type in _IDR_NAL_TYPES[codec]
        offset += length_size + size
    return False


def _check_iframe_playlist(package_dir: Path, iframe: m3u8.IFramePlaylist, report: PackageReport) -> None:
    label = iframe.uri
    path = package_dir / iframe.uri
    if not path.exists():
        report.problems.append(f"{label}: I-frame playlist missing")
        return
    playlist = m3u8.load(str(path))
    if not playlist.is_i_frames_only:
        report.problems.append(f"{label}: lacks EXT-X-I-FRAMES-ONLY")
    if not playlist.segments:
        report.problems.append(f"{label}: no I-frames")
        return
    init_bytes = (path.parent / playlist.segments[0].init_section.uri).read_bytes()
    ranges = []
    with tempfile.TemporaryDirectory() as scratch_dir:
        scratch = Path(scratch_dir) / "iframe.mp4"
        for index, entry in enumerate(playlist.segments):
            where = f"{label} entry {index} ({entry.uri})"
            if not entry.byterange or "@" not in entry.byterange:
                report.problems.append(f"{where}: no EXT-X-BYTERANGE with an offset")
                return
            length, offset = (int(part) for part in entry.byterange.split("@"))
            if not (path.parent / entry.uri).exists():
                report.problems.append(f"{where}: file missing")
                continue
            with open(path.parent / entry.uri, "rb") as media:
                media.seek(offset)
                chunk = media.read(length)
            # Only the bytes the range names: enough for a player to decode the I-frame, nothing more.
            try:
                with av.open(str(_probe_file(scratch, init_bytes, chunk))) as container:
                    frames = list(container.decode(video=0))
            except av.error.FFmpegError as exc:
                report.problems.append(f"{where}: byte range does not decode ({exc})")
                continue
            if len(frames) != 1 or not frames[0].key_frame:
                report.problems.append(f"{where}: byte range does not hold exactly one IDR frame")
            ranges.append((length, entry.duration))
    if not ranges:
        return
    _, peak = segment_bitrates(ranges)
    if not _within(iframe.iframe_stream_info.bandwidth, peak):
        report.problems.append(f"{label}: BANDWIDTH {iframe.iframe_stream_info.bandwidth} vs measured peak {peak:.0f}")


def _within(declared: float, measured: float) -> bool:
    return abs(declared - measured) <= BITRATE_TOLERANCE * measured


def validate_package(package_dir: Path) -> PackageReport:
    """Every problem found in the package at ``package_dir`` (empty when it is sound)."""
    report = PackageReport()
    master_path = package_dir / MASTER_PLAYLIST
    if not master_path.exists():
        report.problems.append(f"{MASTER_PLAYLIST} missing")
        return report
    master = m3u8.load(str(master_path))
    if not master.is_variant or not master.playlists:
        report.problems.append(f"{MASTER_PLAYLIST}: lists no variant streams")
        return report

    audio_groups: dict[str, _MediaFigures | None] = {}
    for media in master.media:
        if media.type == "AUDIO":
            playlist = package_dir / media.uri
            audio_groups[media.group_id] = _check_media_playlist(playlist.parent, playlist.name, "audio", report)
        elif media.type == "SUBTITLES" and not (package_dir / media.uri).exists():
            report.problems.append(f"subtitles playlist {media.uri} missing")

    video_boundaries: dict[str, tuple[int, ...]] = {}
    aspect_ratios = set()
    for variant in master.playlists:
        info, label = variant.stream_info, variant.uri
        missing = [name for name in ("bandwidth", "average_bandwidth", "codecs", "resolution", "frame_rate")
                   if getattr(info, name) in (None, "")]
        if missing:
            report.problems.append(f"{label}: EXT-X-STREAM-INF lacks {', '.join(a.upper().replace('_', '-') for a in missing)}")
            continue
        playlist = package_dir / variant.uri
        video = _check_media_playlist(playlist.parent, playlist.name, "video", report)
        audio = audio_groups.get(info.audio) if info.audio else None
        if info.audio and info.audio not in audio_groups:
            report.problems.append(f"{label}: AUDIO group {info.audio!r} is not declared by EXT-X-MEDIA")
        if video is None:
            continue
        report.variants += 1
        declared_codecs = [c.strip() for c in info.codecs.split(",")]
        actual_codecs = [video.codecs] + ([audio.codecs] if audio else [])
        if sorted(declared_codecs) != sorted(actual_codecs):
            report.problems.append(f"{label}: CODECS {info.codecs} but the bitstreams say {','.join(actual_codecs)}")
        if tuple(info.resolution) != video.resolution:
            report.problems.append(f"{label}: RESOLUTION {info.resolution} but the stream is {video.resolution}")
        aspect_ratios.add(round(video.resolution[0] / video.resolution[1], 2))
        average = video.average_bps + (audio.average_bps if audio else 0)
        peak = video.peak_bps + (audio.peak_bps if audio else 0)
        if not _within(info.average_bandwidth, average):
            report.problems.append(f"{label}: AVERAGE-BANDWIDTH {info.average_bandwidth} vs measured {average:.0f}")
        if not _within(info.bandwidth, peak):
            report.problems.append(f"{label}: BANDWIDTH {info.bandwidth} vs measured peak {peak:.0f}")
        video_boundaries[label] = video.boundaries
        report.duration_s = max(report.duration_s, video.duration_s)
        if audio and not math.isclose(audio.duration_s, video.duration_s, abs_tol=0.1):
            report.problems.append(f"{label}: video lasts {video.duration_s:.2f}s, audio {audio.duration_s:.2f}s")

    peaks = [variant.stream_info.bandwidth for variant in master.playlists if variant.stream_info.bandwidth]
    if peaks and min(peaks) > CELLULAR_PEAK_BPS:
        report.problems.append(f"no variant for cellular: the lowest peaks at {min(peaks)} b/s, "
                               f"over {CELLULAR_PEAK_BPS} b/s with audio")
    if len(master.iframe_playlists) != report.variants:
        report.problems.append(f"{len(master.iframe_playlists)} I-frame playlists for {report.variants} variants")
    for iframe in master.iframe_playlists:
        _check_iframe_playlist(package_dir, iframe, report)

    if len(set(video_boundaries.values())) > 1:
        report.problems.append("video renditions' segment boundaries are not aligned: "
                               + "; ".join(f"{k}: {len(v)} segments" for k, v in video_boundaries.items()))
    if len(aspect_ratios) > 1:
        report.problems.append(f"variants have different aspect ratios: {sorted(aspect_ratios)}")
    return report

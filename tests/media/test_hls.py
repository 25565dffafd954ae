import re
from dataclasses import replace

import av
import m3u8
import pytest

import numpy as np

from microdrama_assets.media.hls import (INIT_SEGMENT, LADDER, MASTER_PLAYLIST, MEDIA_PLAYLIST,
                                         assemble_video_rendition, codecs_string, fragment_decode_times,
                                         package_audio, segment_plan, segment_webvtt, video_codecs)

from .conftest import SMALL_VARIANTS



def test_segment_plan_never_leaves_slivers():
    assert segment_plan(150, 60) == [50, 50, 50]
    assert segment_plan(121, 60) == [41, 40, 40]
    assert segment_plan(60, 60) == [60]
    assert segment_plan(20, 60) == [20]
    for frames in range(1, 400):
        plan = segment_plan(frames, 60)
        assert sum(plan) == frames and max(plan) <= 60
        if frames >= 60:
            assert min(plan) >= 30


@pytest.mark.parametrize("seconds", [10.0, 10.0 + 1 / 30, 9.5])
def test_audio_ending_on_a_segment_boundary_leaves_no_sliver_segment(tmp_path, seconds):
    """AAC's end padding once left a last audio segment of ~20 ms whose bytes read as a 120 kb/s peak on the
    48 kb/s cellular audio, failing the 192 kb/s cellular variant on a 10-s episode."""
    stereo = (np.random.default_rng(0).standard_normal((round(seconds * 48000), 2)) * 0.1).astype(np.float32)
    figures = package_audio(stereo, 48000, tmp_path, 2.0, LADDER)
    for group, nominal_kbps in (("audio-low", 48), ("audio", 128)):
        playlist = m3u8.load(str(tmp_path / group / MEDIA_PLAYLIST))
        durations = [segment.duration for segment in playlist.segments]
        assert min(durations) > 0.5 and max(round(d) for d in durations) <= playlist.target_duration
        assert abs(sum(durations) - seconds) < 0.05
        assert figures[group][2] < nominal_kbps * 1000 * 1.15  # peak
        with open(tmp_path / group / "whole.mp4", "wb") as whole:
            whole.write((tmp_path / group / INIT_SEGMENT).read_bytes())
            for segment in playlist.segments:
                whole.write((tmp_path / group / segment.uri).read_bytes())
        with av.open(str(tmp_path / group / "whole.mp4")) as container:
            decoded = sum(frame.samples for frame in container.decode(audio=0))
        assert abs(decoded / 48000 - seconds) < 0.05


def test_timeline_is_continuous_across_shots(two_shot_package):
    root, package, renditions = two_shot_package
    playlist = m3u8.load(str(package / "video" / "h264" / "360p" / "index.m3u8"))
    assert [round(s.duration * 30) for s in playlist.segments] == [38, 37, 50]
    times = [fragment_decode_times(package / "video" / "h264" / "360p" / s.uri)[0] for s in playlist.segments]
    ticks_per_frame = 512  # timescale 15360 at 30 fps
    assert times == [0, 38 * ticks_per_frame, 75 * ticks_per_frame]


def test_assembled_rendition_decodes_frame_exact_with_idr_per_segment(two_shot_package, tmp_path):
    _, package, _ = two_shot_package
    directory = package / "video" / "h264" / "234p"
    playlist = m3u8.load(str(directory / "index.m3u8"))
    joined = tmp_path / "joined.mp4"
    joined.write_bytes((directory / INIT_SEGMENT).read_bytes()
                       + b"".join((directory / s.uri).read_bytes() for s in playlist.segments))
    with av.open(str(joined)) as container:
        frames = list(container.decode(video=0))
    assert len(frames) == 125
    assert (frames[0].width, frames[0].height) == (234, 416)
    pts = [round(float(f.pts * f.time_base) * 30) for f in frames]
    assert pts == list(range(125))
    assert [i for i, f in enumerate(frames) if f.key_frame] == [0, 38, 75]


def test_master_playlist_declares_measured_rates_and_bitstream_codecs(two_shot_package):
    _, package, _ = two_shot_package
    master = m3u8.load(str(package / MASTER_PLAYLIST))
    assert len(master.playlists) == 6  # two rungs in each of H.264, HEVC and AV1
    prefixes = []
    for variant in master.playlists:
        info = variant.stream_info
        video_codec, audio_codec = info.codecs.split(",")
        assert video_codec == codecs_string(package / variant.uri.replace("index.m3u8", INIT_SEGMENT))
        assert audio_codec == "mp4a.40.2"
        prefixes.append(video_codec.split(".")[0])
        assert info.frame_rate == 30
        assert info.bandwidth >= info.average_bandwidth > 0
        assert variant.media[0].type == "AUDIO"
    # H.264 variants come first, for players that take the first variant they can decode.
    assert prefixes == ["avc1", "avc1", "hvc1", "hvc1", "av01", "av01"]


def test_codec_strings_follow_the_decoder_configuration_records(two_shot_package):
    _, package, _ = two_shot_package
    h264 = codecs_string(package / "video" / "h264" / "360p" / INIT_SEGMENT)
    hevc = codecs_string(package / "video" / "hevc" / "360p" / INIT_SEGMENT)
    av1 = codecs_string(package / "video" / "av1" / "360p" / INIT_SEGMENT)
    # The draft preset (ultrafast) needs no High-profile tools, so x264 signals Constrained Baseline.
    assert h264.startswith("avc1.42C0"), h264
    # Main profile (1), compatibility flags 0x60000000 bit-reversed (6), Main tier, a level, progressive + frame-only.
    assert re.fullmatch(r"hvc1\.1\.6\.L\d+\.90", hevc), hevc
    assert re.fullmatch(r"av01\.0\.\d\dM\.08", av1), av1  # Main profile, Main tier, 8-bit


def test_every_codec_keeps_segments_and_resolution_aligned(two_shot_package, tmp_path):
    _, package, _ = two_shot_package
    for codec in ("hevc", "av1"):
        directory = package / "video" / codec / "234p"
        playlist = m3u8.load(str(directory / "index.m3u8"))
        joined = tmp_path / f"{codec}.mp4"
        joined.write_bytes((directory / INIT_SEGMENT).read_bytes()
                           + b"".join((directory / s.uri).read_bytes() for s in playlist.segments))
        with av.open(str(joined)) as container:
            frames = list(container.decode(video=0))
        assert len(frames) == 125
        assert {(f.width, f.height) for f in frames} == {(234, 416)}
        assert [i for i, f in enumerate(frames) if f.key_frame] == [0, 38, 75], codec


def test_unknown_or_missing_codec_is_refused():
    with pytest.raises(ValueError, match="unknown video codec 'vp8'"):
        video_codecs(["vp8"])
    assert [c.name for c in video_codecs(["av1"])] == ["h264", "av1"]  # H.264 is always in the ladder


def test_shift_moves_a_shot_without_reencoding(two_shot_package, tmp_path):
    root, _, renditions = two_shot_package
    # The same s02 segments assembled as if s01 were 10 frames longer: copies shifted, sources untouched.
    variant = next(v for v in SMALL_VARIANTS if v.key == "h264/360p")
    shifted = renditions["s02"][variant.key]
    before = (root / "s02" / variant.key / shifted.segments[0].uri).read_bytes()
    s01 = renditions["s01"][variant.key]
    s01_longer = replace(s01, segments=s01.segments[:-1] + (replace(s01.segments[-1], frames=s01.segments[-1].frames + 10),))
    assemble_video_rendition([("s01", root / "s01" / variant.key, s01_longer), ("s02", root / "s02" / variant.key, shifted)],
                             tmp_path, variant)
    first_s02 = tmp_path / "video" / variant.key / f"s02_{shifted.segments[0].uri}"
    assert fragment_decode_times(first_s02)[0] == 85 * 512
    assert (root / "s02" / variant.key / shifted.segments[0].uri).read_bytes() == before


def test_webvtt_is_segmented_with_the_timestamp_map_and_spanning_cues_repeated():
    vtt = ("WEBVTT\n\n00:00:00.500 --> 00:00:01.000\n<v Maya>Look.</v>\n\n"
           "00:00:01.800 --> 00:00:02.600\n<v Victor>It glows.</v>\n\n00:00:04.000 --> 00:00:04.900\nRun!\n")
    segments = segment_webvtt(vtt, 4.9, 2.0)
    assert [duration for _, duration in segments] == [2.0, 2.0, 0.9]
    assert all(text.startswith("WEBVTT\nX-TIMESTAMP-MAP=MPEGTS:0,LOCAL:00:00:00.000\n") for text, _ in segments)
    assert [text.count("-->") for text, _ in segments] == [2, 1, 1]  # "It glows." spans 2 s: in both
    assert "00:00:01.800 --> 00:00:02.600\n<v Victor>It glows.</v>" in segments[1][0]
    assert "Run!" in segments[2][0] and "Run!" not in segments[1][0]
    with pytest.raises(ValueError, match="no WEBVTT header"):
        segment_webvtt("1\n00:00:00.000 --> 00:00:01.000\nhi\n", 1.0, 2.0)

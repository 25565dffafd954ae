import av
import m3u8

from microdrama_assets.media.hls import (INIT_SEGMENT, MASTER_PLAYLIST, Rung, assemble_video_rendition,
                                         codecs_string, fragment_decode_times, segment_plan)



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


def test_timeline_is_continuous_across_shots(two_shot_package):
    root, package, renditions = two_shot_package
    playlist = m3u8.load(str(package / "video" / "360p" / "index.m3u8"))
    assert [round(s.duration * 30) for s in playlist.segments] == [38, 37, 50]
    times = [fragment_decode_times(package / "video" / "360p" / s.uri)[0] for s in playlist.segments]
    ticks_per_frame = 512  # timescale 15360 at 30 fps
    assert times == [0, 38 * ticks_per_frame, 75 * ticks_per_frame]


def test_assembled_rendition_decodes_frame_exact_with_idr_per_segment(two_shot_package, tmp_path):
    _, package, _ = two_shot_package
    directory = package / "video" / "234p"
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
    assert len(master.playlists) == 2
    for variant in master.playlists:
        info = variant.stream_info
        video_codec, audio_codec = info.codecs.split(",")
        assert video_codec == codecs_string(package / variant.uri.replace("index.m3u8", INIT_SEGMENT))
        assert video_codec.startswith("avc1.") and audio_codec == "mp4a.40.2"
        assert info.frame_rate == 30
        assert info.bandwidth >= info.average_bandwidth > 0
        assert variant.media[0].type == "AUDIO"


def test_shift_moves_a_shot_without_reencoding(two_shot_package, tmp_path):
    root, _, renditions = two_shot_package
    # The same s02 segments assembled as if s01 were 10 frames longer: copies shifted, sources untouched.
    shifted = renditions["s02"]["360p"]
    before = (root / "s02" / "360p" / shifted.segments[0].uri).read_bytes()
    moved = Rung("360p", 360, 640, 550, 700)
    from dataclasses import replace

    s01 = replace(renditions["s01"]["360p"])
    s01_longer = replace(s01, segments=s01.segments[:-1] + (replace(s01.segments[-1], frames=s01.segments[-1].frames + 10),))
    assemble_video_rendition([("s01", root / "s01" / "360p", s01_longer), ("s02", root / "s02" / "360p", shifted)],
                             tmp_path, moved)
    first_s02 = tmp_path / "video" / "360p" / f"s02_{shifted.segments[0].uri}"
    assert fragment_decode_times(first_s02)[0] == 85 * 512
    assert (root / "s02" / "360p" / shifted.segments[0].uri).read_bytes() == before

import shutil

import pytest

from microdrama_assets.media.hls import MASTER_PLAYLIST
from microdrama_assets.media.validate import validate_package


@pytest.fixture
def package(two_shot_package, tmp_path):
    _, built, _ = two_shot_package
    copy = tmp_path / "package"
    shutil.copytree(built, copy)
    return copy


def _edit(path, old, new):
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))


def test_sound_package_passes(package):
    report = validate_package(package)
    assert report.ok, report.problems
    # Video segments of two rungs in three codecs, plus both audio renditions' two 2-s segments (AAC's end
    # padding folded into the last, not a segment of its own).
    assert report.variants == 6 and report.segments == 3 * 6 + 2 * 2


def test_wrong_codecs_are_caught(package):
    master = package / MASTER_PLAYLIST
    _edit(master, "mp4a.40.2", "mp4a.40.5")
    assert any("CODECS" in p for p in validate_package(package).problems)


def test_overstated_bandwidth_is_caught(package):
    master = package / MASTER_PLAYLIST
    line = next(l for l in master.read_text().splitlines() if l.startswith("#EXT-X-STREAM-INF"))
    declared = int(line.split("BANDWIDTH=")[1].split(",")[0])
    _edit(master, f"BANDWIDTH={declared},", f"BANDWIDTH={round(declared * 1.2)},")
    assert any("BANDWIDTH" in p and "measured peak" in p for p in validate_package(package).problems)


def test_missing_segment_and_broken_timeline_are_caught(package):
    playlist = package / "video" / "h264" / "360p" / "index.m3u8"
    lines = playlist.read_text().splitlines()
    first, second = [i for i, line in enumerate(lines) if line.endswith(".m4s")][:2]
    # Swap two segments: both files exist, but the timeline jumps back.
    lines[first], lines[second] = lines[second], lines[first]
    playlist.write_text("\n".join(lines) + "\n")
    segments = [line for line in lines if line.endswith(".m4s")]
    problems = validate_package(package).problems
    assert any("tfdt" in p for p in problems)
    (package / "video" / "h264" / "234p" / segments[-1].split("/")[-1]).unlink()
    assert any("file missing" in p for p in validate_package(package).problems)


def test_declared_duration_must_match_samples(package):
    playlist = package / "video" / "h264" / "234p" / "index.m3u8"
    first_extinf = next(l for l in playlist.read_text().splitlines() if l.startswith("#EXTINF"))
    _edit(playlist, first_extinf, "#EXTINF:1.9,")
    assert any("EXTINF" in p for p in validate_package(package).problems)


def test_misaligned_renditions_are_caught(package):
    playlist = package / "video" / "h264" / "234p" / "index.m3u8"
    lines = playlist.read_text().splitlines()
    last = max(i for i, l in enumerate(lines) if l.endswith(".m4s"))
    del lines[last - 1 : last + 1]  # drop the last segment of one rung only
    playlist.write_text("\n".join(lines) + "\n")
    assert any("not aligned" in p for p in validate_package(package).problems)


def test_iframe_playlists_point_at_decodable_idrs(package):
    import m3u8

    master = m3u8.load(str(package / MASTER_PLAYLIST))
    assert len(master.iframe_playlists) == len(master.playlists) == 6
    iframes = m3u8.load(str(package / master.iframe_playlists[0].uri))
    assert iframes.is_i_frames_only and all("@" in entry.byterange for entry in iframes.segments)
    # A range cut one byte short no longer holds the whole IDR.
    playlist = package / master.iframe_playlists[0].uri
    length, offset = iframes.segments[1].byterange.split("@")
    _edit(playlist, f"{length}@{offset}", f"{int(length) - 1}@{offset}")
    problems = validate_package(package).problems
    assert any("entry 1" in p and ("IDR" in p or "decode" in p) for p in problems), problems


def test_a_ladder_without_a_cellular_variant_is_caught(package):
    master = package / MASTER_PLAYLIST
    lines = master.read_text().splitlines()
    cellular = [i for i, line in enumerate(lines) if "RESOLUTION=234x416" in line and line.startswith("#EXT-X-STREAM-INF:")]
    assert len(cellular) == 3  # one per codec
    for index in reversed(cellular):
        del lines[index : index + 2]  # the variant and its URI line
    master.write_text("\n".join(lines) + "\n")
    assert any("no variant for cellular" in p for p in validate_package(package).problems)

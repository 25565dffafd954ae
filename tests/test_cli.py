import os
import subprocess
import sys

import pytest


def _cli(*args, cwd):
    # Data and instance inside the test's folder, whatever the caller's environment points at.
    env = {**os.environ, "MICRODRAMA_DATA": str(cwd / "microdrama_data"), "DAGSTER_HOME": str(cwd / "dagster_home")}
    return subprocess.run([sys.executable, "-m", "microdrama_assets.cli", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize(
    "args, message",
    [
        (["episode", "   "], "logline is empty"),
        (["episode", "A logline", "--episode-id", "../escape"], "invalid episode id"),
        (["episode", "A logline", "--episode-id", "a/b"], "invalid episode id"),
        (["rerender", "..", "--shot", "s01"], "invalid episode id"),
        (["rerender", "ep", "--shot", "../s01"], "invalid shot id"),
        (["episode", "A logline", "--episode-id", "abc\n"], "invalid episode id"),
        (["episode", "A logline", "--shots", "0"], "shots must be between 1 and 40"),
        (["episode", "A logline", "--duration", "0.5"], "duration must be between"),
        (["episode", "A logline", "--seed", "-1"], "seed must be between"),
        (["episode", "A logline", "--codecs", "h264,vp9"], "unknown video codec 'vp9'"),
        (["episode", "A logline", "--caption-style", "comic"], "unknown caption style 'comic'"),
        (["episode", "A logline", "--lighting", "neon"], "unknown lighting mood 'neon'"),
        (["episode", "A logline", "--cast", "mara,nobody"], "unknown character card 'nobody'; available: ines, kofi"),
        (["episode", "A logline", "--cast", "mara,mara"], "named twice"),
        (["episode", "A logline", "--cast", "mara,theo,ines,kofi"], "at most 3 character cards"),
        (["episode", "A logline", "--cast", "../mara"], "invalid card id"),
        (["episode", "A logline", "--series", "Night Shift"], "invalid series id"),
        (["episode", "A logline", "--music", "missing.mp3"], "music file missing.mp3: no such file"),
        (["episode", "A logline", "--music", "."], "music file .: no such file"),
        (["rerender", "ep", "--shot", "s01", "--publish-to", "ftp://host/dir"], "use file:///path"),
        (["episode", "A logline", "--publish-to", "s3:///no-bucket"], "names no bucket"),
    ],
)
def test_bad_input_exits_nonzero_with_one_line(tmp_path, args, message):
    result = _cli(*args, cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and message in result.stderr
    assert not (tmp_path / "microdrama_data").exists() and not (tmp_path / "dagster_home").exists()


def test_rerender_of_unknown_episode_fails_cleanly(tmp_path):
    result = _cli("rerender", "never-made", "--shot", "s01", cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr.strip().count("\n") == 0
    assert "never-made" in result.stderr and "episode_manifest" in result.stderr


def test_prune_cache_removes_only_entries_unused_for_longer_than_asked(tmp_path):
    cache = tmp_path / "microdrama_data" / "cache" / "voice"
    for name, age_days in (("old", 40), ("recent", 2)):
        (cache / name).mkdir(parents=True)
        entry = cache / name / "entry.json"
        entry.write_text("{}")
        stamp = entry.stat().st_mtime - age_days * 86400
        os.utime(entry, (stamp, stamp))
    result = _cli("prune-cache", "--older-than-days", "30", cwd=tmp_path)
    assert result.returncode == 0 and "removed 1 cache entries" in result.stdout
    assert not (cache / "old").exists() and (cache / "recent" / "entry.json").exists()
    assert _cli("prune-cache", "--older-than-days", "-1", cwd=tmp_path).returncode == 2

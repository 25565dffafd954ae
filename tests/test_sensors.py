import json

from dagster import DagsterInstance, build_sensor_context

from microdrama_assets.artifacts import EpisodeArtifacts
from microdrama_assets.resources import ArtifactStoreResource
from microdrama_assets.sensors import LoglineInbox, logline_sensor
from microdrama_assets.storage import ArtifactStore


def _evaluate(instance, folder, store_root, cursor=None):
    context = build_sensor_context(
        instance=instance, cursor=cursor,
        resources={"loglines": LoglineInbox(path=str(folder)), "store": ArtifactStoreResource(root=str(store_root))},
    )
    return logline_sensor(context), context


def test_new_file_adds_partition_and_requests_one_run_then_never_again(tmp_path):
    folder, data = tmp_path / "loglines", tmp_path / "data"
    folder.mkdir()
    (folder / "locket-ep1.txt").write_text("A barista discovers a mysterious locket.\nshots: 4\nseed: 9\n")
    instance = DagsterInstance.ephemeral()
    result, _ = _evaluate(instance, folder, data)
    assert [r.partition_key for r in result.run_requests] == ["locket-ep1"]
    assert result.run_requests[0].job_name in (None, "plan_episode")
    assert result.dynamic_partitions_requests[0].partition_keys == ["locket-ep1"]
    request = json.loads(EpisodeArtifacts(ArtifactStore(data), "locket-ep1").request.read_text())
    assert request["shots"] == 4 and request["seed"] == 9 and request["duration_s"] == 20.0

    instance.add_dynamic_partitions("episodes", ["locket-ep1"])
    again, _ = _evaluate(instance, folder, data, cursor=result.cursor)
    assert again.run_requests == [] and again.dynamic_partitions_requests == []

    # A second file is picked up; the first is still not restarted.
    (folder / "nurse.txt").write_text("A night-shift nurse realizes the patient checked out thirty years ago.")
    third, _ = _evaluate(instance, folder, data, cursor=again.cursor)
    assert [r.partition_key for r in third.run_requests] == ["nurse"]


def test_malformed_files_are_logged_once_and_do_not_stop_good_ones(tmp_path, capfd):
    folder, data = tmp_path / "loglines", tmp_path / "data"
    folder.mkdir()
    (folder / "empty.txt").write_text("   \n")
    (folder / "Bad Name.txt").write_text("A logline with a file name that is not an episode id.")
    (folder / "binary.txt").write_bytes(b"\xff\xfe\x00bad")
    (folder / "options.txt").write_text("A fine logline.\nshots: many\n")
    (folder / "preset.txt").write_text("A fine logline.\nlighting: neon\n")
    (folder / "good.txt").write_text("Two rival food-truck owners get stuck in the same elevator.\n"
                                     "caption_style: minimal\nlighting: eerie\n")
    instance = DagsterInstance.ephemeral()
    result, _ = _evaluate(instance, folder, data)
    assert [r.partition_key for r in result.run_requests] == ["good"]
    request = json.loads((data / "episodes" / "good" / "request.json").read_text())
    assert (request["caption_style"], request["lighting"]) == ("minimal", "eerie")
    warnings = [line for line in capfd.readouterr().err.splitlines() if "skipping logline file" in line]
    assert len(warnings) == 5
    assert any("preset.txt: unknown lighting mood 'neon'" in w for w in warnings)
    assert any("empty.txt: logline is empty" in w for w in warnings)
    assert any("Bad Name.txt: invalid episode id" in w for w in warnings)
    assert any("not UTF-8" in w for w in warnings)
    again, _ = _evaluate(instance, folder, data, cursor=result.cursor)
    assert again.run_requests == []
    assert "skipping logline file" not in capfd.readouterr().err


def test_missing_folder_skips_with_a_reason(tmp_path):
    result, _ = _evaluate(DagsterInstance.ephemeral(), tmp_path / "nope", tmp_path / "data")
    assert "does not exist" in result.skip_message


def test_directories_oversized_and_fractional_files_do_not_break_the_sensor(tmp_path, capfd):
    folder, data = tmp_path / "loglines", tmp_path / "data"
    folder.mkdir()
    (folder / "folder.txt").mkdir()
    (folder / "huge.txt").write_text("A" * 10_000)
    (folder / "half.txt").write_text("A logline.\nshots: 4.5\n")
    (folder / "fine.txt").write_text("A ghostwriter finds her own obituary in the draft she was hired to finish.")
    result, _ = _evaluate(DagsterInstance.ephemeral(), folder, data)
    assert [r.partition_key for r in result.run_requests] == ["fine"]
    err = capfd.readouterr().err
    assert "huge.txt: file is larger than 4096 bytes" in err
    assert "half.txt: unexpected line 'shots: 4.5'" in err
    assert "folder.txt" not in err

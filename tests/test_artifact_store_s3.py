"""The artifact store on S3, against a real S3 HTTP endpoint (moto's server on 127.0.0.1): round trips, another
machine's empty working copy, multipart and ranged transfers, directories that appear whole or not at all,
retries, keys that stay under the prefix, and a chain of assets whose steps each run on a fresh machine."""

import hashlib
import json
import os
import uuid

import boto3
import pytest
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from botocore.exceptions import ConnectionClosedError
from dagster import DagsterInstance, materialize

from microdrama_assets.artifacts import EpisodeArtifacts
from microdrama_assets.assets import character_bundles, episode_manifest, keyframes, storyboard
from microdrama_assets.assets.keyframes import keyframes_keep_their_characters
from microdrama_assets.episodes import write_request
from microdrama_assets.partitions import shot_partition_key
from microdrama_assets.resources import ArtifactStoreResource, BackendSettings
from microdrama_assets.storage import (ArtifactStore, RetryPolicy, S3ArtifactStore, StorageError, TransferError,
                                       open_artifact_store)

FAST_RETRY = RetryPolicy(attempts=3, base_delay_s=0.01, max_delay_s=0.02)


@pytest.fixture
def bucket(s3_endpoint, s3_credentials):
    """A fresh bucket on the shared endpoint."""
    name = f"artifacts-{uuid.uuid4().hex[:12]}"
    boto3.client("s3", endpoint_url=s3_endpoint).create_bucket(Bucket=name)
    return name


def _client(endpoint):
    """Without botocore's own retries, so what is retried below is the store's doing."""
    return boto3.client("s3", endpoint_url=endpoint, config=Config(retries={"total_max_attempts": 1}))


def _store(endpoint, bucket, cache, **kwargs):
    return S3ArtifactStore(_client(endpoint), bucket, "studio/prod", cache, retry=FAST_RETRY, **kwargs)


def _keys(endpoint, bucket, prefix=""):
    pages = boto3.client("s3", endpoint_url=endpoint).get_paginator("list_objects_v2").paginate(Bucket=bucket,
                                                                                                  Prefix=prefix)
    return sorted(item["Key"] for page in pages for item in page.get("Contents", []))


def _write_tree(store, path, files: dict[str, bytes]):
    with store.writing_dir(path) as staging:
        for name, data in files.items():
            (staging / name).parent.mkdir(parents=True, exist_ok=True)
            (staging / name).write_bytes(data)


def test_files_and_directories_round_trip_and_another_machine_reads_them(s3_endpoint, bucket, tmp_path):
    writer = _store(s3_endpoint, bucket, tmp_path / "machine-a")
    episode = EpisodeArtifacts(writer, "ep1")
    writer.write_json(episode.manifest_path, {"title": "The Locket"})
    shot = episode.shot("s01")
    _write_tree(writer, shot.keyframes_dir, {"layout.json": b'{"keyframes": []}', "keyframe_0.png": b"png 0",
                                             "masks/mask_0_maya.png": b"mask"})

    reader = _store(s3_endpoint, bucket, tmp_path / "machine-b")
    assert not reader.root.exists()
    assert reader.read_json(EpisodeArtifacts(reader, "ep1").manifest_path, "episode_manifest") == {"title": "The Locket"}
    # A file inside a directory artifact brings the whole directory, as its writer left it.
    other = EpisodeArtifacts(reader, "ep1").shot("s01")
    mask = reader.require(other.keyframes_dir / "masks" / "mask_0_maya.png", "keyframes")
    assert mask.read_bytes() == b"mask" and (other.keyframes_dir / "keyframe_0.png").read_bytes() == b"png 0"
    assert reader.location_of(mask) == f"s3://{bucket}/studio/prod/episodes/ep1/shots/s01/keyframes/masks/mask_0_maya.png"
    keyframes_key = "studio/prod/episodes/ep1/shots/s01/keyframes"
    [generation] = {key.split("/")[8] for key in _keys(s3_endpoint, bucket, f"{keyframes_key}/.gen/")}
    assert _keys(s3_endpoint, bucket, keyframes_key) == sorted(
        [f"{keyframes_key}/.index.json"] + [f"{keyframes_key}/.gen/{generation}/{name}"
                                            for name in ("keyframe_0.png", "layout.json", "masks/mask_0_maya.png")])

    # A rewrite on the first machine: the second one's copy is stale and is replaced whole; the old generation goes.
    _write_tree(writer, shot.keyframes_dir, {"layout.json": b'{"keyframes": [1]}', "keyframe_1.png": b"png 1"})
    writer.write_json(episode.manifest_path, {"title": "The Locket, take 2"})
    assert reader.require(other.keyframe_layout_path, "keyframes").read_bytes() == b'{"keyframes": [1]}'
    assert sorted(p.name for p in other.keyframes_dir.iterdir()) == ["keyframe_1.png", "layout.json"]
    assert reader.read_json(EpisodeArtifacts(reader, "ep1").manifest_path, "x")["title"] == "The Locket, take 2"
    assert not any(generation in key for key in _keys(s3_endpoint, bucket, keyframes_key))

    with pytest.raises(StorageError, match=rf"missing artifact s3://{bucket}/studio/prod/episodes/ep1/captions.vtt: "
                                           r"materialize episode_captions first"):
        reader.require(EpisodeArtifacts(reader, "ep1").captions_vtt, "episode_captions")
    assert not reader.available(other.keyframes_dir / "keyframe_0.png")  # not in the current generation


def test_a_current_copy_is_read_without_downloading_again(s3_endpoint, bucket, tmp_path):
    writer = _store(s3_endpoint, bucket, tmp_path / "a")
    path = writer.path("episodes", "ep1", "audio")
    _write_tree(writer, path, {"mix.wav": b"riff" * 1000})
    reader = _store(s3_endpoint, bucket, tmp_path / "b")
    sent = []
    reader.client.meta.events.register("before-call.s3.*", lambda model, **_: sent.append(model.name))
    reader.require(reader.path("episodes", "ep1", "audio", "mix.wav"), "episode_audio")
    assert "GetObject" in sent
    sent.clear()
    reader.require(reader.path("episodes", "ep1", "audio", "mix.wav"), "episode_audio")
    assert sent == ["GetObject"]  # one request: the directory's index, which says the copy is current


def test_a_large_file_goes_up_in_parts_and_comes_down_in_ranges(s3_endpoint, bucket, tmp_path):
    five_mib = 5 * 2**20
    parts = TransferConfig(multipart_threshold=five_mib, multipart_chunksize=five_mib)
    writer = _store(s3_endpoint, bucket, tmp_path / "a", transfer=parts)
    data = os.urandom(2 * five_mib + 12345)
    path = writer.path("episodes", "ep1", "master.mp4")
    with writer.writing(path) as tmp:
        tmp.write_bytes(data)
    head = boto3.client("s3", endpoint_url=s3_endpoint).head_object(Bucket=bucket, Key=writer.key(path))
    assert head["ETag"].strip('"').endswith("-3")  # three parts
    assert head["Metadata"]["sha256"] == hashlib.sha256(data).hexdigest()

    reader = _store(s3_endpoint, bucket, tmp_path / "b", transfer=parts)
    ranges = []
    reader.client.meta.events.register("provide-client-params.s3.GetObject",
                                       lambda params, **_: ranges.append(params.get("Range")))
    assert reader.require(reader.path("episodes", "ep1", "master.mp4"), "episode_master").read_bytes() == data
    assert len(ranges) == 3 and all(r and r.startswith("bytes=") for r in ranges)


def test_a_directory_without_its_index_is_not_there_and_a_failed_write_keeps_the_previous_one(
        s3_endpoint, bucket, tmp_path):
    client = boto3.client("s3", endpoint_url=s3_endpoint)
    half_written = "studio/prod/episodes/ep1/shots/s01/clip"
    client.put_object(Bucket=bucket, Key=f"{half_written}/.gen/0123/clip.mp4", Body=b"half")
    reader = _store(s3_endpoint, bucket, tmp_path / "reader")
    clip_dir = EpisodeArtifacts(reader, "ep1").shot("s01").clip_dir
    assert not reader.available(clip_dir) and not reader.available(clip_dir / "clip.mp4")
    with pytest.raises(StorageError, match=f"missing artifact s3://{bucket}/{half_written}/clip.mp4"):
        reader.require(clip_dir / "clip.mp4", "shot_clip")

    writer = _store(s3_endpoint, bucket, tmp_path / "writer")
    audio = writer.path("episodes", "ep1", "audio")
    _write_tree(writer, audio, {"mix.wav": b"take 1", "sfx.json": b"{}"})

    def drop_the_connection(params, **_):
        if params["Key"].endswith("sfx.json"):
            raise ConnectionClosedError(endpoint_url=s3_endpoint)
    writer.client.meta.events.register("provide-client-params.s3.PutObject", drop_the_connection)
    with pytest.raises(TransferError, match=r"uploading s3://.*/audio/\.gen/\w+/sfx\.json failed after 3 attempts"):
        _write_tree(writer, audio, {"mix.wav": b"take 2", "sfx.json": b"{}"})
    assert (audio / "mix.wav").read_bytes() == b"take 1"  # the working copy too
    fresh = _store(s3_endpoint, bucket, tmp_path / "another")
    assert fresh.require(fresh.path("episodes", "ep1", "audio", "mix.wav"), "episode_audio").read_bytes() == b"take 1"


def test_transient_errors_are_retried_and_persistent_ones_fail_naming_the_key(s3_endpoint, bucket, tmp_path):
    store = _store(s3_endpoint, bucket, tmp_path / "a")
    attempts = []

    def flaky(params, **_):
        attempts.append(params["Key"])
        if len(attempts) <= 2:
            raise ConnectionClosedError(endpoint_url=s3_endpoint)
    store.client.meta.events.register("provide-client-params.s3.PutObject", flaky)
    store.write_text(store.path("episodes", "ep1", "captions.vtt"), "WEBVTT\n")
    assert len(attempts) == 3
    fresh = _store(s3_endpoint, bucket, tmp_path / "b")
    assert fresh.require(fresh.path("episodes", "ep1", "captions.vtt"), "x").read_text() == "WEBVTT\n"

    def unreachable(**_):
        raise ConnectionClosedError(endpoint_url=s3_endpoint)
    fresh.client.meta.events.register("before-call.s3.HeadObject", unreachable)
    with pytest.raises(TransferError, match=rf"reading s3://{bucket}/studio/prod/episodes/ep1/master.mp4 failed "
                                            r"after 3 attempts: Connection was closed"):
        fresh.require(fresh.path("episodes", "ep1", "master.mp4"), "episode_master")

    # A refusal is not retried: it fails at once, naming the key.
    missing_bucket = S3ArtifactStore(_client(s3_endpoint), "no-such-bucket", "", tmp_path / "c", retry=FAST_RETRY)
    calls = []
    missing_bucket.client.meta.events.register("before-call.s3.PutObject", lambda **_: calls.append(1))
    with pytest.raises(TransferError, match=r"uploading s3://no-such-bucket/episodes/ep1/manifest.json failed: "
                                            r".*NoSuchBucket"):
        missing_bucket.write_text(missing_bucket.path("episodes", "ep1", "manifest.json"), "{}")
    assert len(calls) == 1


def test_keys_never_leave_the_prefix(s3_endpoint, bucket, tmp_path):
    store = _store(s3_endpoint, bucket, tmp_path / "a")
    for escape in (tmp_path / "elsewhere.json", store.root / ".." / "files-sibling" / "x.json", store.root):
        with pytest.raises(StorageError, match="escapes the artifact store's working copy"):
            store.write_text(escape, "{}")
        with pytest.raises(StorageError, match="escapes"):
            store.require(escape, "anything")
    with pytest.raises(StorageError, match="invalid storage path component"):
        store.path("episodes", "..", "x")
    with pytest.raises(StorageError, match="names the store keeps for itself"):
        store.write_text(store.path("episodes", "ep1", "hls", ".index.json"), "{}")
    for prefix in ("a/../b", "a//b"):
        with pytest.raises(StorageError, match="invalid storage path component"):
            S3ArtifactStore(None, bucket, prefix, tmp_path / "b")
    with pytest.raises(StorageError, match="invalid S3 bucket name"):
        S3ArtifactStore(None, "../up", "", tmp_path / "b")
    for location in ("http://host/bucket", "s3:///prefix", "/local/path"):
        with pytest.raises(StorageError, match="use s3://bucket/prefix"):
            open_artifact_store(tmp_path, location, lambda: None)
    assert _keys(s3_endpoint, bucket) == []

    # An index naming files outside its directory is refused, and nothing is written outside the copy.
    index_key = "studio/prod/episodes/ep1/hls/.index.json"
    boto3.client("s3", endpoint_url=s3_endpoint).put_object(Bucket=bucket, Key=index_key, Body=json.dumps(
        {"generation": "g", "files": {"../../../../escaped.txt": {"size": 1, "sha256": "0" * 64}}}))
    with pytest.raises(StorageError, match=r"hls lists '\.\./\.\./\.\./\.\./escaped\.txt', which is not a relative path"):
        store.require(store.path("episodes", "ep1", "hls"), "hls_package")
    assert not any(tmp_path.rglob("escaped.txt"))


def test_a_folder_users_fill_themselves_is_mirrored(s3_endpoint, bucket, tmp_path):
    client = boto3.client("s3", endpoint_url=s3_endpoint)
    for name in ("rain.wav", "door.flac", ".DS_Store"):
        client.put_object(Bucket=bucket, Key=f"studio/prod/sounds/sfx/{name}", Body=name.encode())
    store = _store(s3_endpoint, bucket, tmp_path / "a")
    library = store.mirror_folder(store.path("sounds", "sfx"))
    assert sorted(p.name for p in library.iterdir()) == ["door.flac", "rain.wav"]
    client.delete_object(Bucket=bucket, Key="studio/prod/sounds/sfx/door.flac")
    client.put_object(Bucket=bucket, Key="studio/prod/sounds/sfx/rain.wav", Body=b"heavier rain")
    store.mirror_folder(library)
    assert sorted(p.name for p in library.iterdir()) == ["rain.wav"]
    assert (library / "rain.wav").read_bytes() == b"heavier rain"
    assert not store.mirror_folder(store.path("cards")).exists()  # a folder nobody filled is simply absent


def test_the_resource_picks_the_store_by_configuration(s3_endpoint, bucket, tmp_path, monkeypatch):
    monkeypatch.delenv("MICRODRAMA_ARTIFACTS", raising=False)
    assert type(ArtifactStoreResource(root=str(tmp_path)).store()) is ArtifactStore
    monkeypatch.setenv("MICRODRAMA_ARTIFACTS", f"s3://{bucket}/studio/prod")
    store = ArtifactStoreResource(root=str(tmp_path), endpoint_url=s3_endpoint).store()
    assert isinstance(store, S3ArtifactStore) and store.location_of(store.path("x")) == f"s3://{bucket}/studio/prod/x"
    assert store.root == (tmp_path / "s3-cache" / bucket / "studio" / "prod" / "files").resolve()


def test_asset_steps_run_on_different_machines(s3_endpoint, bucket, tmp_path, monkeypatch):
    """episode_manifest, character_bundles, storyboard and keyframes (with its check), each on a machine whose
    working copy is empty: everything a step reads comes from the bucket."""
    monkeypatch.setenv("MICRODRAMA_ARTIFACTS", f"s3://{bucket}/studio/prod")
    instance = DagsterInstance.ephemeral()
    instance.add_dynamic_partitions("episodes", ["s3-ep"])

    def machine(name):
        return {"store": ArtifactStoreResource(root=str(tmp_path / name), endpoint_url=s3_endpoint, retry_delay_s=0.01),
                "backends": BackendSettings()}

    write_request(machine("submitter")["store"].store(), "s3-ep", "A barista finds a locket that hums at night.",
                  shots=1, seed=3, source="test", duration_s=2.0)
    shot_key = shot_partition_key("s3-ep", "s01")
    for name, assets, partition in [("planner", [episode_manifest], "s3-ep"),
                                    ("bundler", [character_bundles], "s3-ep"),
                                    ("storyboarder", [storyboard], shot_key),
                                    ("renderer", [keyframes, keyframes_keep_their_characters], shot_key)]:
        assert not (tmp_path / name).exists()
        result = materialize(assets, partition_key=partition, instance=instance, resources=machine(name))
        assert result.success, name
    [check] = result.get_asset_check_evaluations()
    assert check.passed, check.metadata

    renderer = machine("renderer")["store"].store()
    shot = EpisodeArtifacts(renderer, "s3-ep").shot("s01")
    assert shot.keyframe_layout()["keyframes"] and (shot.storyboard_dir / "poses.json").is_file()
    prefix = "studio/prod/episodes/s3-ep/"
    keys = _keys(s3_endpoint, bucket, prefix)
    for artifact in ("manifest.json", "shots/s01/storyboard/.index.json", "shots/s01/keyframes/.index.json"):
        assert prefix + artifact in keys, artifact
    assert any(key.startswith(f"{prefix}characters/") and key.endswith("/.index.json") for key in keys)

"""Publishing to object storage: upload order, entry points that always resolve, versions, retention, S3."""

import json
import posixpath

import boto3
import m3u8
import pytest

from microdrama_assets.publishing import (IMMUTABLE, REVALIDATE, LocalObjectStore, PublishError, S3ObjectStore,
                                          fetch_published, open_object_store, package_files, publish_episode)

MASTER = """#EXTM3U
#EXT-X-VERSION:7
#EXT-X-INDEPENDENT-SEGMENTS
#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID="audio",NAME="Main",LANGUAGE="en",DEFAULT=YES,AUTOSELECT=YES,CHANNELS="2",URI="audio/index.m3u8"
#EXT-X-MEDIA:TYPE=SUBTITLES,GROUP-ID="subs",NAME="Captions",LANGUAGE="en",DEFAULT=NO,AUTOSELECT=NO,URI="subs/index.m3u8"
#EXT-X-STREAM-INF:BANDWIDTH=900000,AVERAGE-BANDWIDTH=700000,CODECS="avc1.64001e,mp4a.40.2",RESOLUTION=360x640,FRAME-RATE=30.000,AUDIO="audio",SUBTITLES="subs"
video/h264/360p/index.m3u8
#EXT-X-I-FRAME-STREAM-INF:BANDWIDTH=200000,CODECS="avc1.64001e",RESOLUTION=360x640,URI="video/h264/360p/iframes.m3u8"
"""


def _media_playlist(segments: list[str], init: str | None) -> str:
    lines = ["#EXTM3U", "#EXT-X-VERSION:7", "#EXT-X-TARGETDURATION:2", "#EXT-X-PLAYLIST-TYPE:VOD"]
    if init:
        lines.append(f'#EXT-X-MAP:URI="{init}"')
    for segment in segments:
        lines += ["#EXTINF:2.000,", segment]
    return "\n".join(lines + ["#EXT-X-ENDLIST", ""])


def _write_episode(directory, marker: str):
    """An episode folder shaped like the pipeline's output; ``marker`` changes the segment bytes (a re-render)."""
    files = {
        "hls/master.m3u8": MASTER,
        "hls/video/h264/360p/index.m3u8": _media_playlist(["seg_00000.m4s", "seg_00001.m4s"], "init.mp4"),
        "hls/video/h264/360p/iframes.m3u8": _media_playlist(["seg_00000.m4s"], "init.mp4"),
        "hls/video/h264/360p/init.mp4": "init",
        "hls/video/h264/360p/seg_00000.m4s": f"video 0 {marker}",
        "hls/video/h264/360p/seg_00001.m4s": f"video 1 {marker}",
        "hls/audio/index.m3u8": _media_playlist(["seg_00000.m4s"], "init.mp4"),
        "hls/audio/init.mp4": "audio init",
        "hls/audio/seg_00000.m4s": "audio 0",
        "hls/subs/index.m3u8": _media_playlist(["captions.vtt"], None),
        "hls/subs/captions.vtt": "WEBVTT\n",
        "captions.vtt": "WEBVTT\n",
        "poster.jpg": "jpeg",
        "master.mp4": f"mp4 {marker}",
        "delivery.json": json.dumps({"master_playlist": "hls/master.m3u8", "poster": "poster.jpg",
                                     "download": "master.mp4",
                                     "renditions": [{"uri": "hls/video/h264/360p/index.m3u8"}],
                                     "captions": [{"uri": "captions.vtt"}]}),
    }
    for key, text in files.items():
        (directory / key).parent.mkdir(parents=True, exist_ok=True)
        (directory / key).write_text(text)
    (directory / "hls" / ".master.m3u8.tmp.part").write_text("an in-flight temp file is never published")
    return package_files(directory, ["hls", "master.mp4", "poster.jpg", "captions.vtt", "delivery.json"])


class RecordingStore(LocalObjectStore):
    """A local store that records the order of writes and can fail on one key (a dropped upload)."""

    def __init__(self, root, fail_on: str | None = None):
        super().__init__(root)
        self.writes, self.fail_on = [], fail_on

    def put_file(self, key, path, cache_control):
        if self.fail_on and key.endswith(self.fail_on):
            raise OSError(f"connection reset while uploading {key}")
        self.writes.append((key, cache_control))
        super().put_file(key, path, cache_control)

    def put_bytes(self, key, data, cache_control):
        self.writes.append((key, cache_control))
        super().put_bytes(key, data, cache_control)


def _resolve_everything(read, master_key: str) -> list[str]:
    """Follow the master like a player: every rendition, I-frame and media-group playlist, its init segment and
    every segment must exist. Returns the keys read."""
    base = posixpath.dirname(master_key)
    master = m3u8.loads(read(master_key).decode())
    read_keys = [master_key]
    for item in [*master.playlists, *master.iframe_playlists, *master.media]:
        playlist_key = posixpath.normpath(posixpath.join(base, item.uri))
        media = m3u8.loads(read(playlist_key).decode())
        read_keys.append(playlist_key)
        uris = [segment.uri for segment in media.segments] + [m.uri for m in media.segment_map]
        for uri in uris:
            key = posixpath.normpath(posixpath.join(posixpath.dirname(playlist_key), uri))
            assert read(key) is not None, f"{playlist_key} lists {uri}, which is not in the store"
            read_keys.append(key)
    return read_keys


def test_master_goes_last_and_everything_it_names_is_there(tmp_path):
    files = _write_episode(tmp_path / "episode", "take 1")
    assert not any(".part" in key for key in files)
    store = RecordingStore(tmp_path / "cdn")
    result = publish_episode(store, "ep1", files)
    keys = [key for key, _ in store.writes]
    assert keys[-1] == "episodes/ep1/master.m3u8" == result.master_key
    assert keys[-2] == "episodes/ep1/delivery.json"
    version_master = f"episodes/ep1/v/{result.version}/hls/master.m3u8"
    assert keys.index(version_master) == len(files) - 1  # the version's own master after all its files
    playlists = [i for i, key in enumerate(keys) if key.endswith(".m3u8")]
    media = [i for i, key in enumerate(keys) if not key.endswith((".m3u8", ".json"))]
    assert max(media) < min(playlists)  # no playlist is up before every segment it could name
    assert dict(store.writes)[version_master] == IMMUTABLE and dict(store.writes)[result.master_key] == REVALIDATE

    read_keys = _resolve_everything(store.get_bytes, result.master_key)
    assert f"episodes/ep1/v/{result.version}/hls/video/h264/360p/seg_00001.m4s" in read_keys
    assert f"episodes/ep1/v/{result.version}/hls/subs/captions.vtt" in read_keys
    delivery = json.loads(store.get_bytes("episodes/ep1/delivery.json"))
    assert delivery["version"] == result.version
    for uri in [delivery["master_playlist"], delivery["poster"], delivery["download"],
                *(r["uri"] for r in delivery["renditions"]), *(c["uri"] for c in delivery["captions"])]:
        assert store.get_bytes(f"episodes/ep1/{uri}") is not None, uri


def test_republishing_reuses_the_version_and_new_takes_are_kept_up_to_the_limit(tmp_path):
    store = LocalObjectStore(tmp_path / "cdn")
    first = publish_episode(store, "ep1", _write_episode(tmp_path / "a", "take 1"), keep_versions=2)
    again = publish_episode(store, "ep1", _write_episode(tmp_path / "b", "take 1"), keep_versions=2)
    assert again.version == first.version and again.uploaded == 0 and first.uploaded > 0
    versions = [publish_episode(store, "ep1", _write_episode(tmp_path / f"take{n}", f"take {n}"), keep_versions=2)
                for n in (2, 3)]
    assert len({first.version, *(v.version for v in versions)}) == 3
    assert versions[-1].removed_versions == (first.version,)
    remaining = sorted((tmp_path / "cdn" / "episodes" / "ep1" / "v").iterdir())
    assert [p.name for p in remaining] == sorted(v.version for v in versions)
    _resolve_everything(store.get_bytes, versions[-1].master_key)
    assert versions[-1].version in store.get_bytes("episodes/ep1/master.m3u8").decode()


def test_a_failed_upload_leaves_the_published_episode_as_it_was(tmp_path):
    store = LocalObjectStore(tmp_path / "cdn")
    published = publish_episode(store, "ep1", _write_episode(tmp_path / "a", "take 1"))
    master_before = store.get_bytes(published.master_key)
    failing = RecordingStore(tmp_path / "cdn", fail_on="seg_00001.m4s")
    with pytest.raises(OSError, match="connection reset"):
        publish_episode(failing, "ep1", _write_episode(tmp_path / "b", "take 2"))
    assert not any(key.endswith(".m3u8") for key, _ in failing.writes)
    assert store.get_bytes(published.master_key) == master_before
    _resolve_everything(store.get_bytes, published.master_key)
    retried = publish_episode(store, "ep1", _write_episode(tmp_path / "c", "take 2"))  # the retry completes it
    assert retried.version != published.version and retried.uploaded > 0
    _resolve_everything(store.get_bytes, retried.master_key)


@pytest.mark.parametrize("episode_id", ["../escape", "a/b", ""])
def test_episode_ids_and_keys_never_leave_the_store(tmp_path, episode_id):
    files = _write_episode(tmp_path / "episode", "x")
    with pytest.raises(ValueError):
        publish_episode(LocalObjectStore(tmp_path / "cdn"), episode_id, files)
    with pytest.raises(PublishError, match="invalid object key"):
        LocalObjectStore(tmp_path / "cdn").put_bytes("episodes/../../etc/passwd", b"", REVALIDATE)
    assert not (tmp_path / "cdn").exists() or not any((tmp_path / "cdn").rglob("*.m3u8"))


def test_missing_package_parts_and_bad_destinations_are_named(tmp_path):
    with pytest.raises(PublishError, match="nothing to publish at .*poster.jpg"):
        package_files(tmp_path, ["poster.jpg"])
    files = _write_episode(tmp_path / "episode", "x")
    del files["delivery.json"]
    with pytest.raises(PublishError, match="no delivery.json"):
        publish_episode(LocalObjectStore(tmp_path / "cdn"), "ep1", files)
    with pytest.raises(PublishError, match="names no bucket"):
        open_object_store("s3:///prefix", lambda: None)
    with pytest.raises(PublishError, match="use file:///path"):
        open_object_store("ftp://host/dir", lambda: None)
    assert isinstance(open_object_store((tmp_path / "cdn").as_uri(), lambda: None), LocalObjectStore)


def test_publishing_to_s3_serves_every_object_with_its_type_and_caching(tmp_path, s3_endpoint, s3_credentials):
    client = boto3.client("s3", endpoint_url=s3_endpoint)
    client.create_bucket(Bucket="cdn-origin")
    files = _write_episode(tmp_path / "episode", "take 1")
    # Larger than the multipart threshold: the download goes up in parts.
    (tmp_path / "episode" / "master.mp4").write_bytes(bytes(range(256)) * (70 * 2**12))
    store = S3ObjectStore(client, "cdn-origin", "/shows/season-1/")
    result = publish_episode(store, "ep1", files)
    assert store.location == "s3://cdn-origin/shows/season-1/"

    def read(key):
        return client.get_object(Bucket="cdn-origin", Key=f"shows/season-1/{key}")["Body"].read()

    read_keys = _resolve_everything(read, result.master_key)
    segment = client.head_object(Bucket="cdn-origin", Key=f"shows/season-1/{read_keys[-1]}")
    assert segment["CacheControl"] == IMMUTABLE
    master = client.head_object(Bucket="cdn-origin", Key=f"shows/season-1/{result.master_key}")
    assert master["ContentType"] == "application/vnd.apple.mpegurl" and master["CacheControl"] == REVALIDATE
    download = client.head_object(Bucket="cdn-origin", Key=f"shows/season-1/episodes/ep1/v/{result.version}/master.mp4")
    assert download["ContentLength"] == 70 * 2**20 and download["ETag"].strip('"').endswith("-5")  # 16 MiB parts

    second = publish_episode(store, "ep1", _write_episode(tmp_path / "take2", "take 2"), keep_versions=1)
    assert second.removed_versions == (result.version,)
    listed = [o.key for o in store.list("episodes/ep1")]
    assert listed and all(result.version not in key for key in listed)
    _resolve_everything(read, second.master_key)


def test_fetching_the_published_package_follows_the_entry_master(tmp_path):
    store = LocalObjectStore(tmp_path / "cdn")
    with pytest.raises(PublishError, match="ep1 is not published"):
        fetch_published(store, "ep1", tmp_path / "nothing")
    files = _write_episode(tmp_path / "episode", "take 1")
    result = publish_episode(store, "ep1", files)
    fetched = fetch_published(store, "ep1", tmp_path / "fetched")
    assert sorted(p.relative_to(fetched).as_posix() for p in fetched.rglob("*") if p.is_file()) == sorted(
        key[len("hls/"):] for key in files if key.startswith("hls/"))
    store.delete([f"episodes/ep1/v/{result.version}/hls/subs/index.m3u8"])
    with pytest.raises(PublishError, match="missing objects: v/.*/hls/subs/index.m3u8"):
        fetch_published(store, "ep1", tmp_path / "fetched-again")

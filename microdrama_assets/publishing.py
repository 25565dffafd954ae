"""Publishing a finished episode to object storage (a local folder or S3) in an order players can trust.

An episode's files go under an immutable, content-addressed version prefix first::

    <prefix>/<episode>/v/<version>/hls/...        segments, init segments, media playlists, then master.m3u8
    <prefix>/<episode>/v/<version>/delivery.json  poster.jpg  captions.vtt  master.mp4

and only then are the episode's entry points replaced: ``<prefix>/<episode>/delivery.json`` and, last of all,
``<prefix>/<episode>/master.m3u8``, both with their URIs pointing into the new version. A player that fetches the
master therefore never finds a playlist whose segments are not yet there, a player that is mid-episode keeps
reading the version it started on, and the previous versions stay until retention removes the oldest.

Each object write is atomic on its own (S3 PUTs are; the local store writes a temp file and renames it).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol
from urllib.parse import urlparse

import m3u8
from boto3.s3.transfer import TransferConfig

from .media.hls import MASTER_PLAYLIST
from .storage import sha256_of
from .media.manifest import check_id

DELIVERY_JSON = "delivery.json"
VERSIONS_DIR = "v"
# Versioned objects never change (their key holds their content hash); entry points must be revalidated.
IMMUTABLE = "public, max-age=31536000, immutable"
REVALIDATE = "no-cache"
CONTENT_TYPES = {
    ".m3u8": "application/vnd.apple.mpegurl",
    ".m4s": "video/iso.segment",
    ".mp4": "video/mp4",
    ".m4a": "audio/mp4",
    ".vtt": "text/vtt; charset=utf-8",
    ".json": "application/json",
    ".jpg": "image/jpeg",
}
UPLOAD_THREADS = 8  # segments are small: uploads are latency-bound, not CPU-bound


class PublishError(ValueError):
    """A destination, key or package that cannot be published."""


def check_key(key: str) -> str:
    """An object key: '/'-separated plain names, so a key can never leave the store's root or prefix."""
    parts = key.split("/")
    if not key or any(part in ("", ".", "..") or "\\" in part or "\x00" in part for part in parts):
        raise PublishError(f"invalid object key {key!r}")
    return key


def content_type(key: str) -> str:
    return CONTENT_TYPES.get(os.path.splitext(key)[1], "application/octet-stream")


@dataclass(frozen=True)
class StoredObject:
    key: str
    modified: float  # POSIX seconds


class ObjectStore(Protocol):
    location: str  # where keys resolve, for messages and metadata (file:///... or s3://bucket/prefix)

    def put_file(self, key: str, path: Path, cache_control: str) -> None: ...

    def put_bytes(self, key: str, data: bytes, cache_control: str) -> None: ...

    def get_bytes(self, key: str) -> bytes | None: ...

    def list(self, prefix: str) -> list[StoredObject]: ...

    def delete(self, keys: list[str]) -> None: ...


class LocalObjectStore:
    """Objects as files under ``root`` (served by any static web server); each write is temp file + rename."""

    def __init__(self, root: str | os.PathLike[str]):
        self.root = Path(root).expanduser().resolve()
        self.location = self.root.as_uri()

    def _path(self, key: str) -> Path:
        path = self.root.joinpath(*check_key(key).split("/"))
        if self.root not in path.resolve().parents:
            raise PublishError(f"object key {key!r} escapes {self.root}")
        return path

    def _write(self, key: str, fill) -> None:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
        os.close(fd)
        try:
            fill(Path(tmp))
            os.chmod(tmp, 0o644)
            os.replace(tmp, path)
        finally:
            Path(tmp).unlink(missing_ok=True)

    def put_file(self, key: str, path: Path, cache_control: str) -> None:
        self._write(key, lambda tmp: shutil.copyfile(path, tmp))

    def put_bytes(self, key: str, data: bytes, cache_control: str) -> None:
        self._write(key, lambda tmp: tmp.write_bytes(data))

    def get_bytes(self, key: str) -> bytes | None:
        path = self._path(key)
        return path.read_bytes() if path.is_file() else None

    def list(self, prefix: str) -> list[StoredObject]:
        base = self._path(prefix)
        if not base.is_dir():
            return []
        return [StoredObject(f"{prefix}/{path.relative_to(base).as_posix()}", path.stat().st_mtime)
                for path in base.rglob("*") if path.is_file() and not path.name.startswith(".")]

    def delete(self, keys: list[str]) -> None:
        for key in keys:
            path = self._path(key)
            path.unlink(missing_ok=True)
            # Prune folders the deletions emptied, up to (not including) the root.
            for parent in path.parents:
                if parent == self.root or any(parent.iterdir()):
                    break
                parent.rmdir()


class S3ObjectStore:
    """Objects in an S3 (or S3-compatible) bucket under ``prefix``, through a boto3 client (dagster-aws's
    ``S3Resource.get_client()``). Large files go up as multipart uploads."""

    def __init__(self, client, bucket: str, prefix: str = ""):
        self.client, self.bucket = client, bucket
        self.prefix = check_key(prefix.strip("/")) + "/" if prefix.strip("/") else ""
        self.location = f"s3://{bucket}/{self.prefix}"
        self.transfer = TransferConfig(multipart_threshold=16 * 2**20, multipart_chunksize=16 * 2**20)

    def put_file(self, key: str, path: Path, cache_control: str) -> None:
        self.client.upload_file(str(path), self.bucket, self.prefix + check_key(key), Config=self.transfer,
                                ExtraArgs={"ContentType": content_type(key), "CacheControl": cache_control})

    def put_bytes(self, key: str, data: bytes, cache_control: str) -> None:
        self.client.put_object(Bucket=self.bucket, Key=self.prefix + check_key(key), Body=data,
                               ContentType=content_type(key), CacheControl=cache_control)

    def get_bytes(self, key: str) -> bytes | None:
        try:
            return self.client.get_object(Bucket=self.bucket, Key=self.prefix + check_key(key))["Body"].read()
        except self.client.exceptions.NoSuchKey:
            return None

    def list(self, prefix: str) -> list[StoredObject]:
        found = []
        for page in self.client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=self.prefix + check_key(prefix) + "/"):
            found.extend(StoredObject(item["Key"][len(self.prefix):], item["LastModified"].timestamp())
                         for item in page.get("Contents", []))
        return found

    def delete(self, keys: list[str]) -> None:
        for start in range(0, len(keys), 1000):  # DeleteObjects takes at most 1000 keys
            batch = [{"Key": self.prefix + check_key(key)} for key in keys[start:start + 1000]]
            response = self.client.delete_objects(Bucket=self.bucket, Delete={"Objects": batch, "Quiet": True})
            if response.get("Errors"):
                error = response["Errors"][0]
                raise PublishError(f"could not delete {error['Key']}: {error.get('Message', error.get('Code'))}")


def open_object_store(destination: str, s3_client_factory) -> ObjectStore:
    """``file:///dir`` (or a plain path) or ``s3://bucket/prefix``; the factory makes a boto3 S3 client."""
    parsed = urlparse(destination)
    if parsed.scheme == "s3":
        if not parsed.netloc:
            raise PublishError(f"publish destination {destination!r} names no bucket (s3://bucket/prefix)")
        return S3ObjectStore(s3_client_factory(), parsed.netloc, parsed.path)
    if parsed.scheme == "file":
        return LocalObjectStore(parsed.path)
    if parsed.scheme == "":
        return LocalObjectStore(destination)
    raise PublishError(f"publish destination {destination!r}: use file:///path/to/dir or s3://bucket/prefix")


@dataclass(frozen=True)
class PublishResult:
    version: str
    master_key: str  # the entry point players load
    uploaded: int  # objects written under the version prefix (0 when that version was already complete)
    removed_versions: tuple[str, ...]


def package_files(episode_dir: Path, names: list[str]) -> dict[str, Path]:
    """Relative key -> file for the named files and folders of an episode directory (dot-files skipped: they
    are in-flight temp files)."""
    files = {}
    for name in names:
        path = episode_dir / name
        if path.is_dir():
            for file in sorted(path.rglob("*")):
                relative = file.relative_to(episode_dir)
                if file.is_file() and not any(part.startswith(".") for part in relative.parts):
                    files[relative.as_posix()] = file
        elif path.is_file():
            files[name] = path
        else:
            raise PublishError(f"nothing to publish at {path}")
    return files


def content_version(files: dict[str, Path]) -> str:
    """A hash of every key and its bytes: the same package always publishes to the same version prefix."""
    digest = hashlib.sha256()
    for key in sorted(files):
        digest.update(key.encode("utf-8") + b"\0")
        digest.update(bytes.fromhex(sha256_of(files[key])))
    return digest.hexdigest()[:16]


def _upload_order(key: str) -> int:
    """Media before the playlists that list it; each version's own master.m3u8 last (it marks the version
    complete); the delivery JSON just before it."""
    if key == f"hls/{MASTER_PLAYLIST}":
        return 3
    if key == DELIVERY_JSON:
        return 2
    return 1 if key.endswith(".m3u8") else 0


def rebased_master(master_text: str, base: str) -> str:
    """The master playlist with every rendition, I-frame and media-group URI prefixed by ``base``."""
    master = m3u8.loads(master_text)
    for item in [*master.playlists, *master.iframe_playlists, *master.media]:
        if item.uri:
            item.uri = f"{base}/{item.uri}"
    return master.dumps()


def rebased_delivery(payload: dict, base: str, version: str) -> dict:
    """The delivery manifest with its file URIs (master playlist, download, poster, renditions, captions)
    prefixed by ``base``."""
    rebased = dict(payload, version=version)
    for field in ("master_playlist", "download", "poster"):
        if field in rebased:
            rebased[field] = f"{base}/{rebased[field]}"
    for listing in ("renditions", "captions"):
        rebased[listing] = [dict(item, uri=f"{base}/{item['uri']}") for item in payload.get(listing, [])]
    return rebased


def publish_episode(store: ObjectStore, episode_id: str, files: dict[str, Path], keep_versions: int = 3,
                    prefix: str = "episodes", expected_version: str | None = None) -> PublishResult:
    """Upload ``files`` (relative key -> local file; must hold ``hls/master.m3u8`` and ``delivery.json``) as a
    new version of the episode, switch the entry points to it, then drop versions beyond the newest
    ``keep_versions`` (the one just published always stays). With ``expected_version`` (the approved one),
    files whose bytes are another version are refused before anything is uploaded."""
    if keep_versions < 1:
        raise PublishError(f"keep_versions must be at least 1, got {keep_versions}")
    for required in (f"hls/{MASTER_PLAYLIST}", DELIVERY_JSON):
        if required not in files:
            raise PublishError(f"episode {episode_id}: the package has no {required}")
    episode_prefix = f"{check_key(prefix)}/{check_id(episode_id, 'episode id')}"
    version = content_version(files)
    if expected_version is not None and version != expected_version:
        raise PublishError(f"episode {episode_id}: the package changed to version {version} while version "
                           f"{expected_version} was being published; nothing was published")
    version_prefix = f"{episode_prefix}/{VERSIONS_DIR}/{version}"
    uploaded = 0
    # A version whose own master exists was uploaded completely before (the master goes up last): reuse it.
    if store.get_bytes(f"{version_prefix}/hls/{MASTER_PLAYLIST}") is None:
        ordered = sorted(files, key=lambda key: (_upload_order(key), key))
        with ThreadPoolExecutor(UPLOAD_THREADS) as pool:
            for stage in sorted({_upload_order(key) for key in ordered}):
                batch = [key for key in ordered if _upload_order(key) == stage]
                # list() waits for the whole stage and re-raises its first failure before the next stage starts.
                list(pool.map(lambda key: store.put_file(f"{version_prefix}/{key}", files[key], IMMUTABLE), batch))
                uploaded += len(batch)

    relative_base = f"{VERSIONS_DIR}/{version}"
    delivery = json.loads(files[DELIVERY_JSON].read_text(encoding="utf-8"))
    store.put_bytes(f"{episode_prefix}/{DELIVERY_JSON}",
                    (json.dumps(rebased_delivery(delivery, relative_base, version), indent=2, sort_keys=True,
                                ensure_ascii=False) + "\n").encode("utf-8"), REVALIDATE)
    master_key = f"{episode_prefix}/{MASTER_PLAYLIST}"
    store.put_bytes(master_key, rebased_master(files[f"hls/{MASTER_PLAYLIST}"].read_text(encoding="utf-8"),
                                               f"{relative_base}/hls").encode("utf-8"), REVALIDATE)
    return PublishResult(version, master_key, uploaded,
                         _apply_retention(store, episode_prefix, version, keep_versions))


def fetch_published(store: ObjectStore, episode_id: str, destination: Path, prefix: str = "episodes") -> Path:
    """Download the HLS package the episode's entry master points at, as a player would find it, into
    ``destination``; returns the local package folder. Fails naming any URI of the entry master that does not
    resolve to a published object."""
    episode_prefix = f"{check_key(prefix)}/{check_id(episode_id, 'episode id')}"
    entry = store.get_bytes(f"{episode_prefix}/{MASTER_PLAYLIST}")
    if entry is None:
        raise PublishError(f"episode {episode_id} is not published at {store.location}")
    master = m3u8.loads(entry.decode("utf-8"))
    uris = [item.uri for item in [*master.playlists, *master.iframe_playlists, *master.media] if item.uri]
    versions = {uri.split("/")[1] for uri in uris if uri.startswith(f"{VERSIONS_DIR}/")}
    if len(versions) != 1 or not all(uri.startswith(f"{VERSIONS_DIR}/") for uri in uris):
        raise PublishError(f"episode {episode_id}: the entry master names {len(versions)} versions; expected one")
    package_prefix = f"{episode_prefix}/{VERSIONS_DIR}/{versions.pop()}/hls"
    for item in store.list(package_prefix):
        local = destination.joinpath(*item.key[len(package_prefix) + 1:].split("/"))
        local.parent.mkdir(parents=True, exist_ok=True)
        local.write_bytes(store.get_bytes(item.key))
    missing = [uri for uri in uris if not destination.joinpath(*uri.split("/")[3:]).is_file()]
    if missing:
        raise PublishError(f"episode {episode_id}: the entry master names missing objects: {', '.join(missing[:5])}")
    return destination


def _apply_retention(store: ObjectStore, episode_prefix: str, current: str, keep_versions: int) -> tuple[str, ...]:
    versions: dict[str, list[StoredObject]] = {}
    for item in store.list(f"{episode_prefix}/{VERSIONS_DIR}"):
        version = item.key[len(episode_prefix) + len(VERSIONS_DIR) + 2:].split("/", 1)[0]
        versions.setdefault(version, []).append(item)
    newest_first = sorted((v for v in versions if v != current),
                          key=lambda v: max(item.modified for item in versions[v]), reverse=True)
    removed = newest_first[keep_versions - 1:]
    store.delete([item.key for version in removed for item in versions[version]])
    return tuple(removed)


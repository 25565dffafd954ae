"""Artifact storage: one tree per episode, atomic writes, IDs confined to the root; on the local filesystem
(``ArtifactStore``) or in an S3 bucket (``S3ArtifactStore``) that steps on any machine share.

Media functions take and return paths, so this module hands out paths inside the root and makes every write
atomic (temp file + rename; whole directories are built aside and swapped in), so a failed step never leaves a
half-written artifact where an earlier good one stood. Every read goes through ``require``/``available``: on S3
they bring the artifact into the local working copy first.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import logging
import os
import random
import re
import shutil
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, TypeVar
from urllib.parse import urlparse

from boto3.exceptions import Boto3Error
from boto3.s3.transfer import TransferConfig
from botocore.exceptions import BotoCoreError, ClientError, HTTPClientError, IncompleteReadError
from botocore.exceptions import ConnectionError as BotoConnectionError

from .media.manifest import check_id


def _read_umask() -> int:
    current = os.umask(0o022)
    os.umask(current)
    return current


# Read once at import: os.umask can only be read by setting it, which would race with other threads later.
_UMASK = _read_umask()


def _umasked(mode: int) -> int:
    return mode & ~_UMASK


DEFAULT_DATA_ROOT = "microdrama_data"


def default_data_root() -> str:
    return os.environ.get("MICRODRAMA_DATA", str(Path(DEFAULT_DATA_ROOT).resolve()))


class StorageError(ValueError):
    """A key that would leave the storage root, or an artifact that is not there."""


class TransferError(StorageError):
    """The object store refused a request, or kept failing after the retries (a step retry may succeed)."""


def _check_component(part: str) -> str:
    if not part or part in (".", "..") or "/" in part or "\\" in part or "\x00" in part:
        raise StorageError(f"invalid storage path component {part!r}")
    return part


class ArtifactStore:
    def __init__(self, root: str | os.PathLike[str]):
        self.root = Path(root).expanduser().resolve()

    # --- locating -------------------------------------------------------------------------------------------
    def path(self, *parts: str) -> Path:
        """A path under the root; every part must be a plain name (no separators, no '..')."""
        for part in parts:
            _check_component(part)
        candidate = self.root.joinpath(*parts).resolve()
        if candidate != self.root and self.root not in candidate.parents:
            raise StorageError(f"path {'/'.join(parts)!r} escapes the storage root {self.root}")
        return candidate

    def episode_dir(self, episode_id: str) -> Path:
        return self.path("episodes", check_id(episode_id, "episode id"))

    def episode_path(self, episode_id: str, *parts: str) -> Path:
        return self.path("episodes", check_id(episode_id, "episode id"), *parts)

    def shot_path(self, episode_id: str, shot_id: str, *parts: str) -> Path:
        return self.episode_path(episode_id, "shots", check_id(shot_id, "shot id"), *parts)

    def location_of(self, path: Path) -> str:
        """Where ``path`` is kept, for messages and metadata."""
        return str(path)

    # --- reading --------------------------------------------------------------------------------------------
    def available(self, path: Path) -> bool:
        """Whether the artifact at ``path`` (or a file inside a directory artifact) exists, ready to read locally."""
        return path.exists()

    def require(self, path: Path, produced_by: str) -> Path:
        if not self.available(path):
            raise StorageError(f"missing artifact {self.location_of(path)}: materialize {produced_by} first")
        return path

    def mirror_folder(self, path: Path) -> Path:
        """A folder of loose files users put in the store themselves (an SFX library, character cards), ready to
        read locally; it may be absent."""
        return path

    def read_json(self, path: Path, produced_by: str) -> dict:
        return json.loads(self.require(path, produced_by).read_text(encoding="utf-8"))

    # --- atomic writing -------------------------------------------------------------------------------------
    @contextlib.contextmanager
    def writing(self, path: Path) -> Iterator[Path]:
        """Yield a temp path beside ``path``; on success it is renamed over ``path``, on failure removed."""
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part" + path.suffix, dir=path.parent)
        os.close(fd)
        tmp_path = Path(tmp)
        try:
            yield tmp_path
            # mkstemp makes private files; artifacts are served (HLS) and shared, so give them normal modes.
            os.chmod(tmp_path, _umasked(0o666))
            os.replace(tmp_path, path)
        finally:
            tmp_path.unlink(missing_ok=True)

    def write_bytes(self, path: Path, data: bytes) -> Path:
        with self.writing(path) as tmp:
            tmp.write_bytes(data)
        return path

    def write_text(self, path: Path, text: str) -> Path:
        return self.write_bytes(path, text.encode("utf-8"))

    def write_json(self, path: Path, payload: object) -> Path:
        return self.write_text(path, json.dumps(payload, indent=2, sort_keys=True, ensure_ascii=False) + "\n")

    @contextlib.contextmanager
    def writing_dir(self, path: Path) -> Iterator[Path]:
        """Yield an empty temp directory; on success it replaces ``path`` whole, on failure it is removed."""
        path.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent))
        try:
            yield staging
            os.chmod(staging, _umasked(0o777))
            retired = path.with_name(f".{path.name}.old-{uuid.uuid4().hex[:8]}")
            had_previous = path.exists()
            if had_previous:
                os.replace(path, retired)
            # Between these two renames the directory is briefly absent; readers retry. If the second rename
            # fails (another writer got there first), the previous artifact goes back where it was.
            try:
                os.replace(staging, path)
            except OSError:
                if had_previous and not path.exists():
                    os.replace(retired, path)
                raise
            shutil.rmtree(retired, ignore_errors=True)
        finally:
            shutil.rmtree(staging, ignore_errors=True)


# --- S3 ---------------------------------------------------------------------------------------------------------

log = logging.getLogger(__name__)
T = TypeVar("T")

DIRECTORY_INDEX = ".index.json"  # written last: a directory artifact exists for readers once its index does
GENERATIONS = ".gen"  # a directory's files live under <key>/.gen/<generation>/ so a rewrite never touches them
TRANSFER_THREADS = 8  # directory files (HLS segments, keyframes) are small: transfers are latency-bound
_BUCKET_RE = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
# Besides 5xx and 429: the error codes S3 and S3-compatible stores use for "try again".
_TRANSIENT_CODES = {"RequestTimeout", "RequestTimeoutException", "SlowDown", "Throttling", "ThrottlingException",
                    "TooManyRequestsException", "InternalError", "ServiceUnavailable", "OperationAborted"}


@dataclass(frozen=True)
class RetryPolicy:
    """Whole-operation retries on transient errors, on top of botocore's per-request retries (S3Resource's
    ``max_attempts``): they also cover a transfer that failed part-way and a response cut off while streaming."""

    attempts: int = 4
    base_delay_s: float = 0.5
    max_delay_s: float = 8.0

    def __post_init__(self):
        if self.attempts < 1 or self.base_delay_s < 0 or self.max_delay_s < 0:
            raise ValueError(f"a retry policy needs at least one attempt and no negative delay: {self}")

    def delay(self, attempt: int) -> float:
        """Exponential backoff with jitter, so machines retrying together spread out."""
        return min(self.max_delay_s, self.base_delay_s * 2 ** (attempt - 1)) * random.uniform(0.5, 1.0)


class _Superseded(Exception):
    """A directory was rewritten while it was being read: read its new index and start again."""


def _not_found(exc: ClientError) -> bool:
    error = exc.response.get("Error", {})
    return error.get("Code") in ("404", "NoSuchKey", "NotFound") or \
        exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") == 404


def is_transient(exc: BaseException) -> bool:
    """Whether an S3 failure is worth retrying: connection trouble, timeouts, throttling and 5xx, also when boto3
    wraps it (S3UploadFailedError keeps the original as its context)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, (BotoConnectionError, HTTPClientError, IncompleteReadError, ConnectionError,
                                TimeoutError)):
            return True
        if isinstance(current, ClientError):
            status = current.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0
            return current.response.get("Error", {}).get("Code") in _TRANSIENT_CODES or status >= 500 or status == 429
        current = current.__cause__ or current.__context__
    return False


def sha256_of(path: Path) -> str:
    """The SHA-256 of a file's bytes (hex)."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:  # in chunks: media files can be hundreds of megabytes
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass(frozen=True)
class _Remote:
    kind: str  # "file" (one object) or "dir" (an index and its generation's objects)
    version: str  # the object's ETag, or the directory's generation
    size: int = 0  # of a file
    sha256: str | None = None  # of a file, when it was uploaded by this store
    index: dict | None = None


class S3ArtifactStore(ArtifactStore):
    """Artifacts in an S3 (or S3-compatible: MinIO, Ceph, R2...) bucket under ``prefix``, through a boto3 client
    (dagster-aws's ``S3Resource.get_client()``). Steps work on a local working copy under ``cache_root``:
    ``require`` fetches an artifact when the copy is missing or older than the bucket's, ``writing`` and
    ``writing_dir`` upload on success, so a step can run on a machine whose copy is empty.

    Layout and atomicity, from a reader's point of view:

    - a file artifact is one object at its key: a PUT, or a multipart upload's completion, replaces it whole;
    - a directory artifact's files go under ``<key>/.gen/<generation>/`` (the generation hashes the contents),
      then ``<key>/.index.json`` listing them with sizes and SHA-256 is written last. Readers go by the index
      only, so a directory is there whole or not at all, and a write that fails part-way leaves the previous
      index and its files as they were. Older generations are deleted once the new index is in place.

    Large files go up as multipart uploads and come down as parallel ranged GETs (boto3's managed transfer).
    Transient errors are retried with backoff (``RetryPolicy``), then fail with a ``TransferError`` naming the key.
    """

    def __init__(self, client, bucket: str, prefix: str, cache_root: str | os.PathLike[str],
                 transfer: TransferConfig | None = None, retry: RetryPolicy = RetryPolicy()):
        if not _BUCKET_RE.fullmatch(bucket):
            raise StorageError(f"invalid S3 bucket name {bucket!r}")
        prefix_parts = [_check_component(part) for part in prefix.strip("/").split("/")] if prefix.strip("/") else []
        if any(part in (DIRECTORY_INDEX, GENERATIONS) for part in prefix_parts):
            raise StorageError(f"invalid S3 prefix {prefix!r}: {DIRECTORY_INDEX} and {GENERATIONS} are reserved")
        self.client, self.bucket, self.retry = client, bucket, retry
        self.prefix = "".join(f"{part}/" for part in prefix_parts)
        self.transfer = transfer or TransferConfig(multipart_threshold=16 * 2**20, multipart_chunksize=16 * 2**20)
        # One working copy per bucket and prefix, so stores of several deployments can share a cache root.
        cache = Path(cache_root).expanduser().resolve().joinpath(bucket, *prefix_parts)
        super().__init__(cache / "files")
        self.records_root = cache / "synced"  # which version of each artifact the working copy holds

    # --- keys -----------------------------------------------------------------------------------------------
    def _parts(self, path: Path) -> tuple[str, ...]:
        """The path's names below the working copy's root; refuses paths outside it and the names the store
        keeps for its directory indexes and generations."""
        resolved = Path(path).resolve()
        if self.root not in resolved.parents:
            raise StorageError(f"path {path} escapes the artifact store's working copy {self.root}")
        parts = resolved.relative_to(self.root).parts
        if any(part in (DIRECTORY_INDEX, GENERATIONS) for part in parts):
            raise StorageError(f"path {path}: {DIRECTORY_INDEX} and {GENERATIONS} are names the store keeps for itself")
        return parts

    def key(self, path: Path) -> str:
        return self.prefix + "/".join(self._parts(path))

    def location_of(self, path: Path) -> str:
        return f"s3://{self.bucket}/{self.key(path)}"

    # --- requests, retried --------------------------------------------------------------------------------
    def _call(self, action: str, key: str, operation: Callable[[], T]) -> T:
        uri = f"s3://{self.bucket}/{key}"
        for attempt in range(1, self.retry.attempts + 1):
            try:
                return operation()
            except (BotoCoreError, ClientError, Boto3Error, OSError) as exc:
                if not is_transient(exc):
                    raise TransferError(f"{action} {uri} failed: {exc}") from exc
                if attempt == self.retry.attempts:
                    raise TransferError(f"{action} {uri} failed after {attempt} attempts: {exc}") from exc
                delay = self.retry.delay(attempt)
                log.warning("%s %s failed (%s); retrying in %.2f s", action, uri, exc, delay)
                time.sleep(delay)
        raise AssertionError("unreachable: the last attempt returns or raises")

    def _head(self, key: str) -> dict | None:
        def head():
            try:
                return self.client.head_object(Bucket=self.bucket, Key=key)
            except ClientError as exc:
                if _not_found(exc):
                    return None
                raise
        return self._call("reading", key, head)

    def _read_index(self, directory_key: str) -> dict | None:
        key = f"{directory_key}/{DIRECTORY_INDEX}"

        def get():
            try:
                return self.client.get_object(Bucket=self.bucket, Key=key)["Body"].read()
            except ClientError as exc:
                if _not_found(exc):
                    return None
                raise
        body = self._call("reading", key, get)
        if body is None:
            return None
        try:
            index = json.loads(body)
            files = index["files"]
            if not isinstance(index["generation"], str) or not all(
                    isinstance(entry["size"], int) and isinstance(entry["sha256"], str) for entry in files.values()):
                raise TypeError("unexpected field types")
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise StorageError(f"s3://{self.bucket}/{key} is not a directory index ({exc}); "
                               f"rewrite the artifact") from None
        return index

    def _probe(self, parts: tuple[str, ...], kind: str) -> _Remote | None:
        key = self.prefix + "/".join(parts)
        if kind == "file":
            head = self._head(key)
            return None if head is None else _Remote("file", head["ETag"], head["ContentLength"],
                                                     head.get("Metadata", {}).get("sha256"))
        index = self._read_index(key)
        return None if index is None else _Remote("dir", index["generation"], index=index)

    # --- what the working copy holds -----------------------------------------------------------------------
    def _record_path(self, parts: tuple[str, ...]) -> Path:
        return self.records_root.joinpath(*parts[:-1], f"{parts[-1]}.json")

    def _read_record(self, parts: tuple[str, ...]) -> dict | None:
        try:
            record = json.loads(self._record_path(parts).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return record if isinstance(record, dict) else None

    def _write_record(self, parts: tuple[str, ...], kind: str, version: str) -> None:
        # The base class's local write: atomic, and never uploaded.
        with ArtifactStore.writing(self, self._record_path(parts)) as tmp:
            tmp.write_text(json.dumps({"kind": kind, "version": version}), encoding="utf-8")

    def _is_current(self, parts: tuple[str, ...], remote: _Remote) -> bool:
        local = self.root.joinpath(*parts)
        present = local.is_file() if remote.kind == "file" else local.is_dir()
        return present and self._read_record(parts) == {"kind": remote.kind, "version": remote.version}

    # --- reading --------------------------------------------------------------------------------------------
    def available(self, path: Path) -> bool:
        parts = self._parts(path)
        # The artifact is the path itself (a file or a directory) or a directory holding it.
        candidates = [parts[:length] for length in range(len(parts), 0, -1)]
        # A copy synced before says which artifact it came from: one request checks that it is still current.
        for candidate in candidates:
            record = self._read_record(candidate)
            if record is not None:
                remote = self._probe(candidate, record.get("kind"))
                if remote is not None:
                    return self._bring(path, candidate, remote)
                break
        for candidate in candidates:
            for kind in ("file", "dir") if candidate == parts else ("dir",):
                remote = self._probe(candidate, kind)
                if remote is not None:
                    return self._bring(path, candidate, remote)
        return False

    def _bring(self, path: Path, parts: tuple[str, ...], remote: _Remote) -> bool:
        """Make the working copy of artifact ``parts`` match ``remote``; then whether ``path`` is in it."""
        if not self._is_current(parts, remote):
            local = self.root.joinpath(*parts)
            if remote.kind == "file":
                self._fetch_file(local, self.prefix + "/".join(parts), remote.size, remote.sha256)
                version = remote.version
            else:
                version = self._fetch_dir(local, self.prefix + "/".join(parts), remote.index)
            self._write_record(parts, remote.kind, version)
        return path.exists()

    def _download(self, key: str, target: Path, size: int, expected_sha256: str | None) -> None:
        def download():
            try:
                if size >= self.transfer.multipart_threshold:  # parallel ranged GETs
                    self.client.download_file(self.bucket, key, str(target), Config=self.transfer)
                    return
                # Small files (most of a directory's): one streamed GET, without the managed transfer's HEAD.
                body = self.client.get_object(Bucket=self.bucket, Key=key)["Body"]
                with target.open("wb") as handle:
                    for chunk in body.iter_chunks(1 << 20):
                        handle.write(chunk)
            except ClientError as exc:
                if _not_found(exc):
                    raise _Superseded(key) from exc
                raise
        self._call("downloading", key, download)
        if expected_sha256 is not None and sha256_of(target) != expected_sha256:
            raise _Superseded(key)

    def _fetch_file(self, local: Path, key: str, size: int, expected_sha256: str | None) -> None:
        with ArtifactStore.writing(self, local) as tmp:
            try:
                self._download(key, tmp, size, expected_sha256)
            except _Superseded:
                raise TransferError(f"s3://{self.bucket}/{key} changed or went away while it was downloaded; "
                                    f"run the step again") from None

    def _fetch_dir(self, local: Path, key: str, index: dict) -> str:
        """Download the directory ``index`` lists, verified against it; returns the generation fetched."""
        for attempt in range(1, self.retry.attempts + 1):
            try:
                with ArtifactStore.writing_dir(self, local) as staging:
                    listed = sorted(index["files"].items())
                    with ThreadPoolExecutor(TRANSFER_THREADS) as pool:
                        list(pool.map(functools.partial(self._fetch_listed, staging,
                                                        f"{key}/{GENERATIONS}/{index['generation']}"),
                                      [relative for relative, _ in listed], [entry for _, entry in listed]))
                return index["generation"]
            except _Superseded:
                if attempt == self.retry.attempts:
                    break
                time.sleep(self.retry.delay(attempt))
                index = self._read_index(key)
                if index is None:
                    raise StorageError(f"s3://{self.bucket}/{key} was deleted while it was downloaded") from None
        raise TransferError(f"s3://{self.bucket}/{key} kept changing while it was downloaded "
                            f"({self.retry.attempts} attempts)")

    def _fetch_listed(self, staging: Path, base: str, relative: str, entry: dict) -> None:
        names = relative.split("/")
        if any(name in ("", ".", "..") or "\\" in name for name in names):
            raise StorageError(f"the index of s3://{self.bucket}/{base.rsplit('/', 2)[0]} lists {relative!r}, "
                               f"which is not a relative path")
        target = staging.joinpath(*names)
        target.parent.mkdir(parents=True, exist_ok=True)
        self._download(f"{base}/{relative}", target, entry["size"], entry["sha256"])

    def mirror_folder(self, path: Path) -> Path:
        parts = self._parts(path)
        directory = self._probe(parts, "dir")
        if directory is not None:  # written by the pipeline: take it whole
            self._bring(path, parts, directory)
            return path
        prefix = self.key(path) + "/"

        def listing() -> dict[str, tuple[str, int]]:
            found = {}
            for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix):
                for item in page.get("Contents", []):
                    relative = item["Key"][len(prefix):]
                    if relative and not any(name.startswith(".") or not name for name in relative.split("/")):
                        found[relative] = (item["ETag"], item["Size"])
            return found
        objects = self._call("listing", prefix, listing)
        for relative, (etag, size) in objects.items():
            file_parts = parts + tuple(relative.split("/"))
            remote = _Remote("file", etag, size)
            if not self._is_current(file_parts, remote):
                self._fetch_file(self.root.joinpath(*file_parts), prefix + relative, size, None)
                self._write_record(file_parts, "file", etag)
        if path.is_dir():  # files removed from the bucket leave the copy too
            for local in [p for p in path.rglob("*") if p.is_file()]:
                relative = local.relative_to(path).as_posix()
                if relative not in objects and not any(name.startswith(".") for name in relative.split("/")):
                    local.unlink()
                    self._record_path(parts + tuple(relative.split("/"))).unlink(missing_ok=True)
        return path

    # --- atomic writing -------------------------------------------------------------------------------------
    def _upload(self, local: Path, key: str, metadata: dict[str, str]) -> None:
        self._call("uploading", key, lambda: self.client.upload_file(
            str(local), self.bucket, key, Config=self.transfer, ExtraArgs={"Metadata": metadata}))

    @contextlib.contextmanager
    def writing(self, path: Path) -> Iterator[Path]:
        """As the local store's; the file is uploaded before it replaces the working copy's, so a failed upload
        fails the step with both copies as they were."""
        parts = self._parts(path)
        key = self.prefix + "/".join(parts)
        with super().writing(path) as tmp:
            yield tmp
            self._upload(tmp, key, {"sha256": sha256_of(tmp)})
            head = self._head(key)
            if head is None:
                raise TransferError(f"s3://{self.bucket}/{key} is not there right after its upload")
        self._write_record(parts, "file", head["ETag"])

    @contextlib.contextmanager
    def writing_dir(self, path: Path) -> Iterator[Path]:
        """As the local store's; the directory is uploaded (files, then its index) before it replaces the working
        copy's."""
        parts = self._parts(path)
        key = self.prefix + "/".join(parts)
        with super().writing_dir(path) as staging:
            yield staging
            generation = self._upload_dir(staging, key)
        self._write_record(parts, "dir", generation)

    def _upload_dir(self, staging: Path, key: str) -> str:
        files = {file.relative_to(staging).as_posix(): file for file in sorted(staging.rglob("*")) if file.is_file()}
        with ThreadPoolExecutor(TRANSFER_THREADS) as pool:
            digests = dict(zip(files, pool.map(sha256_of, files.values()), strict=True))
        entries = {relative: {"size": files[relative].stat().st_size, "sha256": digests[relative]}
                   for relative in files}
        generation = hashlib.sha256(json.dumps(entries, sort_keys=True).encode("utf-8")).hexdigest()[:20]
        current = self._read_index(key)
        if current is not None and current["generation"] == generation:
            return generation  # the same contents are there already, whole (their index came last)
        base = f"{key}/{GENERATIONS}/{generation}"
        with ThreadPoolExecutor(TRANSFER_THREADS) as pool:
            list(pool.map(lambda relative: self._upload(files[relative], f"{base}/{relative}", {}), files))
        index = json.dumps({"generation": generation, "files": entries}, indent=1, sort_keys=True).encode("utf-8")
        index_key = f"{key}/{DIRECTORY_INDEX}"
        self._call("uploading", index_key, lambda: self.client.put_object(
            Bucket=self.bucket, Key=index_key, Body=index, ContentType="application/json"))
        self._drop_generations(key, keep=generation)
        return generation

    def _drop_generations(self, key: str, keep: str) -> None:
        """Delete the directory's other generations (superseded, or left by failed writes). The new one is
        already in place, so a failure here is only logged: the next write of the directory retries it."""
        prefix = f"{key}/{GENERATIONS}/"

        def drop() -> None:
            stale = [item["Key"]
                     for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket,
                                                                                       Prefix=prefix)
                     for item in page.get("Contents", []) if not item["Key"].startswith(f"{prefix}{keep}/")]
            for start in range(0, len(stale), 1000):  # DeleteObjects takes at most 1000 keys
                response = self.client.delete_objects(Bucket=self.bucket, Delete={
                    "Objects": [{"Key": k} for k in stale[start:start + 1000]], "Quiet": True})
                if response.get("Errors"):
                    error = response["Errors"][0]
                    raise OSError(f"could not delete {error['Key']}: {error.get('Message', error.get('Code'))}")
        try:
            self._call("cleaning up", prefix, drop)
        except TransferError as exc:
            log.warning("old versions stay until the next write: %s", exc)


def open_artifact_store(root: str | os.PathLike[str], location: str = "", s3_client_factory=None,
                        transfer: TransferConfig | None = None, retry: RetryPolicy = RetryPolicy()) -> ArtifactStore:
    """The local store under ``root`` when ``location`` is empty; for ``s3://bucket/prefix``, the S3 store (the
    factory makes its boto3 client) with its working copy under ``root``."""
    if not location:
        return ArtifactStore(root)
    parsed = urlparse(location)
    if parsed.scheme != "s3" or not parsed.netloc or parsed.query or parsed.fragment:
        raise StorageError(f"artifact location {location!r}: use s3://bucket/prefix, or leave it empty for the "
                           f"local filesystem")
    return S3ArtifactStore(s3_client_factory(), parsed.netloc, parsed.path, Path(root) / "s3-cache", transfer, retry)

"""The creator's preview app: a small Starlette site over the artifact store and the Dagster instance.

It lists the episodes, plays an episode's HLS package (or, while that is not assembled yet, the growing draft
preview) with hls.js, shows its keyframe contact sheet, manifest and check results, and lets a creator edit one
shot's action and dialogue, re-render just that shot and approve the package, every render and publish going
through the asset graph (jobs.py). Reads and the analytics collector are open; every request that changes state
needs the preview token (``Authorization: Bearer <token>``), which is printed with the URL at start-up like
Jupyter's. It binds to 127.0.0.1 unless told otherwise.

hls.js is never fetched by the server: it is served from a file (``--hls-js``, ``MICRODRAMA_HLS_JS``, or the
browser test's npm install), or else the page is redirected to the pinned CDN build, which the viewer's browser
fetches.
"""

from __future__ import annotations

import contextlib
import io
import ipaddress
import json
import os
import secrets
import sys
from dataclasses import asdict
from pathlib import Path, PurePosixPath
from typing import Callable, Sequence

import uvicorn
from dagster import DagsterInstance
# Dagster exports neither the partition filter nor the status enum of get_asset_check_execution_history.
from dagster._core.event_api import PartitionKeyFilter
from dagster._core.storage.asset_check_execution_record import AssetCheckExecutionRecordStatus
from PIL import Image
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from .. import analytics
from ..analytics.collector import collector_routes
from ..analytics.event_store import EventStore, open_event_store
from ..artifacts import EpisodeArtifacts
from ..audit import AuditLog
from ..assets import ASSET_CHECKS
from ..cache import published_master_key, stale_shot_stage, still_published
from ..media.hls import MASTER_PLAYLIST, MEDIA_PLAYLIST
from ..media.manifest import DialogueLine, EpisodeManifest, InvalidId, ManifestError, Shot, Slug, parse_manifest
from ..media.stills import contact_sheet
from ..partitions import shot_partition_key, shot_partitions
from ..publishing import PublishError
from ..resources import ArtifactStoreResource
from ..runner import EpisodeRunner, instance_for
from ..storage import StorageError, default_data_root
from ..trust.release_gate import (ApprovalError, approval_for, approve, manifest_subject, moderation_blockers,
                                  package_version)
from .jobs import JobConflict, JobQueue, RunnerFactory, UnknownJob

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8765
TOKEN_ENV = "MICRODRAMA_PREVIEW_TOKEN"
HLS_JS_ENV = "MICRODRAMA_HLS_JS"
HLS_JS_CDN = "https://cdn.jsdelivr.net/npm/hls.js@1.7.4/dist/hls.min.js"
# The browser test installs hls.js here (npm ci, pinned): a checkout that ran it serves hls.js offline.
REPO_HLS_JS = Path(__file__).resolve().parents[2] / "tests" / "browser" / "node_modules" / "hls.js" / "dist" / \
    "hls.min.js"
STATIC_DIR = Path(__file__).with_name("static")
PLAYER_EVENTS_JS = Path(analytics.__file__).with_name("player_events.js")

# What a page may fetch from an episode's directory: the package, the draft preview and what a player shows.
# Everything else there (requests, approvals, audit logs, cache records) stays private.
SERVED_PARTS = ("hls", "preview", "poster.jpg", "captions.vtt", "delivery.json")
MEDIA_TYPES = {".m3u8": "application/vnd.apple.mpegurl", ".m4s": "video/iso.segment", ".mp4": "video/mp4",
               ".m4a": "audio/mp4", ".vtt": "text/vtt", ".jpg": "image/jpeg", ".json": "application/json"}
# A re-render rewrites segments under the same names: the browser must revalidate, not reuse its copy.
REVALIDATE = {"Cache-Control": "no-cache"}
CONTACT_SHEET_TILE = 180
CONTACT_SHEET_COLUMNS = 6
EVALUATED = {AssetCheckExecutionRecordStatus.SUCCEEDED, AssetCheckExecutionRecordStatus.FAILED}
MAX_RENDER_SHOTS = 40  # the manifest's own limit


class PreviewConfigError(ValueError):
    """A preview setting that cannot work (an hls.js file that is not there)."""


class RequestProblem(Exception):
    """A request the app refuses: ``status`` is the HTTP status, the message names the problem."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


class ShotEdit(BaseModel):
    """What the edit form sends for one shot; the shot as a whole is then validated by the manifest's model."""

    model_config = ConfigDict(extra="forbid")
    action: str
    dialogue: list[DialogueLine]


class RenderRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    shots: list[str] = Field(min_length=1, max_length=MAX_RENDER_SHOTS)


class ApprovalRequest(BaseModel):
    """``version`` is the package version the page showed: a newer package is not approved by an older view."""

    model_config = ConfigDict(extra="forbid")
    approved_by: str
    version: Slug  # a content version is a hex digest: anything else is refused before it names a file
    note: str = ""


def problems_of(exc: ValidationError, subject: str = "") -> str:
    """Each pydantic error as ``<subject> <field>: <message>``; an error about the whole object already names
    its subject."""
    problems = []
    for error in exc.errors():
        message = error["msg"].removeprefix("Value error, ")
        field_path = ".".join(str(part) for part in error["loc"])
        problems.append(f"{subject} {field_path}: {message}".strip() if field_path else message)
    return "; ".join(problems)


def resolve_hls_js(explicit: str | os.PathLike[str] | None = None) -> Path | None:
    """The hls.js file to serve: ``explicit``, else $MICRODRAMA_HLS_JS, else the browser test's npm install when
    the checkout has it; None: the page loads the pinned CDN build."""
    chosen = explicit or os.environ.get(HLS_JS_ENV)
    if chosen:
        path = Path(chosen).expanduser().resolve()
        if not path.is_file():
            raise PreviewConfigError(f"hls.js file {path} does not exist")
        return path
    return REPO_HLS_JS if REPO_HLS_JS.is_file() else None


def check_results(instance: DagsterInstance, episode_id: str, shot_ids: Sequence[str]
                  ) -> tuple[dict[str, list[dict]], list[dict]]:
    """The latest evaluation of every asset check in the code location: per shot for the shot-partitioned ones,
    and for the episode. Each result: check, asset, status (passed / failed / not run), problems, run_id."""
    per_shot: dict[str, list[dict]] = {shot_id: [] for shot_id in shot_ids}
    per_episode: list[dict] = []
    for check_def in ASSET_CHECKS:
        for check_key in check_def.check_keys:
            if check_def.partitions_def == shot_partitions:
                for shot_id in shot_ids:
                    partition = str(shot_partition_key(episode_id, shot_id))
                    per_shot[shot_id].append(_latest_evaluation(instance, check_key, partition))
            else:
                per_episode.append(_latest_evaluation(instance, check_key, episode_id))
    return per_shot, per_episode


def _latest_evaluation(instance: DagsterInstance, check_key, partition: str) -> dict:
    result = {"check": check_key.name, "asset": check_key.asset_key.to_user_string(), "status": "not run",
              "problems": "", "run_id": None, "evaluated_at": None}
    records = instance.event_log_storage.get_asset_check_execution_history(
        check_key, limit=1, status=EVALUATED, partition_filter=PartitionKeyFilter(key=partition))
    if not records or records[0].evaluation is None:
        return result
    record, evaluation = records[0], records[0].evaluation
    problems = evaluation.metadata.get("problems")
    result.update(status="passed" if evaluation.passed else "failed", run_id=record.run_id,
                  evaluated_at=record.create_timestamp,
                  problems="" if problems is None or problems.value == "none" else str(problems.value))
    return result


class PreviewService:
    """What the routes do, as plain blocking methods (the routes call them on Starlette's thread pool)."""

    def __init__(self, data_root: str | os.PathLike[str], instance: DagsterInstance, runner_factory: RunnerFactory):
        self.store = ArtifactStoreResource(root=str(Path(data_root).expanduser().resolve())).store()
        self.instance = instance
        self.jobs = JobQueue(runner_factory, instance)
        # The code location's resources as the jobs see them: where publishing goes, the encode and backend
        # settings the cache keys depend on.
        self.resources = runner_factory(lambda message: None).defs.resources

    # --- reads ----------------------------------------------------------------------------------------------
    def episode(self, episode_id: str) -> EpisodeArtifacts:
        try:
            episode = EpisodeArtifacts(self.store, episode_id)
        except InvalidId as exc:
            raise RequestProblem(404, str(exc)) from None
        if not self.store.available(episode.manifest_path):
            raise RequestProblem(404, f"episode {episode_id} has no manifest (not planned yet, or no such episode)")
        return episode

    def manifest(self, episode: EpisodeArtifacts) -> EpisodeManifest:
        try:
            return episode.manifest()
        except ManifestError as exc:
            raise RequestProblem(500, f"episode {episode.episode_id}'s manifest.json is invalid: {exc}") from None

    def list_episodes(self) -> list[dict]:
        """Every planned episode, newest manifest first."""
        folder = self.store.path("episodes")
        if not folder.is_dir():
            return []
        found = []
        for directory in folder.iterdir():
            try:
                episode = self.episode(directory.name)
            except RequestProblem:
                continue  # not an episode folder, or planning has not written its manifest yet
            found.append((episode.manifest_path.stat().st_mtime, self.summary(episode)))
        return [summary for _, summary in sorted(found, key=lambda item: item[0], reverse=True)]

    def summary(self, episode: EpisodeArtifacts) -> dict:
        manifest = self.manifest(episode)
        version = self._version(episode)
        return {"episode_id": episode.episode_id, "title": manifest.title, "logline": manifest.logline,
                "duration_s": round(manifest.duration_s, 3), "shots": len(manifest.shots),
                "state": self._state(episode, version), "version": version}

    def detail(self, episode_id: str) -> dict:
        """Everything the episode page shows, but the manifest, contact sheet and media (their own routes)."""
        episode = self.episode(episode_id)
        manifest = self.manifest(episode)
        version = self._version(episode)
        shot_checks, episode_checks = check_results(self.instance, episode.episode_id, manifest.shot_ids)
        backends, encode = self.resources["backends"], self.resources["encode"]
        approval = approval_for(self.store, episode.episode_id, version) if version else None
        objects = self.resources["publish"].object_store()
        published_key = published_master_key(episode.episode_id)
        published = None
        if self._published_entry(objects, published_key):
            published = {"master_url": f"{objects.location.rstrip('/')}/{published_key}",
                         "current": bool(version) and still_published(objects, episode.episode_id, version)}
        shots = []
        for shot in manifest.shots:
            shots.append({
                **shot.model_dump(mode="json", include={"id", "beat", "duration_s", "action", "characters",
                                                        "dialogue"}),
                "checks": shot_checks[shot.id],
                # The first stage a re-render would run (None: the shot is current, a re-render does nothing).
                "stale_stage": stale_shot_stage(episode, manifest, shot, backends, encode),
            })
        return {
            "episode_id": episode.episode_id, "title": manifest.title, "logline": manifest.logline,
            "duration_s": round(manifest.duration_s, 3), "version": version,
            "state": self._state(episode, version),
            "characters": [{"id": c.id, "name": c.name} for c in manifest.characters],
            "shots": shots, "checks": episode_checks,
            "player": self._player(episode, version),
            "approval": asdict(approval) if approval else None,
            "moderation_blockers": (moderation_blockers(episode, manifest,
                                                        self.resources["trust"].moderation_fingerprint())
                                    if version else []),
            "published": published,
            "job": self.jobs.latest(episode.episode_id),
        }

    def contact_sheet_jpeg(self, episode_id: str, shot_id: str | None) -> bytes:
        """The keyframes of every shot (or of one) side by side, as a JPEG."""
        episode = self.episode(episode_id)
        manifest = self.manifest(episode)
        shot_ids = manifest.shot_ids if shot_id is None else [self._shot(manifest, shot_id).id]
        try:
            images = [image for sid in shot_ids for image in episode.shot(sid).keyframe_images()]
        except (StorageError, OSError) as exc:
            raise RequestProblem(404, f"no keyframes to show yet: {exc}") from None
        buffer = io.BytesIO()
        Image.fromarray(contact_sheet(images, CONTACT_SHEET_TILE, CONTACT_SHEET_COLUMNS)).save(
            buffer, format="JPEG", quality=85)
        return buffer.getvalue()

    def episode_file(self, episode_id: str, relative: str) -> Path:
        """A served file inside the episode directory (SERVED_PARTS only; never a directory, never outside)."""
        episode = self.episode(episode_id)
        parts = PurePosixPath(relative).parts
        if not parts or parts[0] not in SERVED_PARTS or any(part.startswith(".") for part in parts):
            raise RequestProblem(404, f"{relative!r} is not served")
        root = episode.directory.resolve()
        candidate = (root / relative).resolve()
        if not candidate.is_relative_to(root) or not candidate.is_file():
            raise RequestProblem(404, f"{relative!r} is not served")
        return candidate

    def duration_of(self, episode_id: str) -> float | None:
        """The assembled episode's duration, for the collector to reject positions past its end."""
        try:
            delivery = EpisodeArtifacts(self.store, episode_id).delivery_json
            return float(json.loads(delivery.read_text(encoding="utf-8"))["duration_s"])
        except (InvalidId, OSError, ValueError, KeyError):
            return None

    # --- changes (the routes check the token first) ---------------------------------------------------------
    def edit_shot(self, episode_id: str, shot_id: str, edit: ShotEdit) -> dict:
        """Replace one shot's action and dialogue in manifest.json, validated as the manifest validates it."""
        episode = self.episode(episode_id)
        with self.jobs.while_idle(episode.episode_id):
            manifest = self.manifest(episode)
            shot = self._shot(manifest, shot_id)
            try:
                edited = Shot.model_validate({**shot.model_dump(mode="json"), "action": edit.action.strip(),
                                              "dialogue": [line.model_dump() for line in edit.dialogue]})
            except ValidationError as exc:
                raise RequestProblem(400, problems_of(exc, f"shot {shot_id}")) from None
            data = manifest.model_dump(mode="json")
            data["shots"] = [edited.model_dump(mode="json") if s.id == shot_id else s.model_dump(mode="json")
                             for s in manifest.shots]
            try:
                updated = parse_manifest(data)
            except ManifestError as exc:
                raise RequestProblem(400, str(exc)) from None
            changed = updated != manifest
            if changed:
                before = manifest_subject(episode)
                self.store.write_text(episode.manifest_path, updated.model_dump_json(indent=2))
                AuditLog(self.store, episode.episode_id).append(
                    "edit", "preview", shot=shot_id, manifest_sha256_before=before,
                    content_hash=manifest_subject(episode), action=edited.action,
                    dialogue=[line.model_dump() for line in edited.dialogue])
        return {"shot": edited.model_dump(mode="json"), "changed": changed}

    def render(self, episode_id: str, request: RenderRequest) -> dict:
        episode = self.episode(episode_id)
        manifest = self.manifest(episode)
        shot_ids = [self._shot(manifest, shot_id).id for shot_id in request.shots]
        return self.jobs.submit_render(episode.episode_id, shot_ids)

    def approve(self, episode_id: str, request: ApprovalRequest) -> dict:
        """Record the approval of the version the page showed, then queue the publish job."""
        episode = self.episode(episode_id)
        with self.jobs.while_idle(episode.episode_id):
            try:
                approval = approve(episode, request.approved_by, via="preview", reviewed_version=request.version,
                                   note=request.note, fingerprint=self.resources["trust"].moderation_fingerprint())
            except ApprovalError as exc:
                raise RequestProblem(409, str(exc)) from None
            job = self.jobs.submit_publish(episode.episode_id)
        return {"approval": asdict(approval), "job": job}

    # --- helpers ----------------------------------------------------------------------------------------------
    @staticmethod
    def _shot(manifest: EpisodeManifest, shot_id: str) -> Shot:
        try:
            return manifest.shot(shot_id)
        except KeyError as exc:
            raise RequestProblem(404, exc.args[0]) from None

    def _version(self, episode: EpisodeArtifacts) -> str | None:
        try:
            return package_version(episode)
        except (ApprovalError, OSError):
            return None  # not assembled yet, or being assembled right now (a file went while it was hashed)

    @staticmethod
    def _published_entry(objects, key: str) -> bool:
        try:
            return objects.get_bytes(key) is not None
        except PublishError:
            return False  # the object store cannot be read now: the page shows nothing published

    def _state(self, episode: EpisodeArtifacts, version: str | None) -> str:
        if self.jobs.busy(episode.episode_id):
            return "rendering"
        if version is None:
            return "planned"
        if still_published(self.resources["publish"].object_store(), episode.episode_id, version):
            return "published"
        if approval_for(self.store, episode.episode_id, version) is not None:
            return "approved"
        return "ready for review"

    @staticmethod
    def _player(episode: EpisodeArtifacts, version: str | None) -> dict | None:
        """What the page plays: the assembled package, else the draft preview while the render runs."""
        base = f"/media/{episode.episode_id}"
        if version is not None:
            return {"kind": "package", "url": f"{base}/hls/{MASTER_PLAYLIST}?v={version}",
                    "poster": f"{base}/{episode.poster.name}"}
        if (episode.preview_dir / MEDIA_PLAYLIST).is_file():
            return {"kind": "draft", "url": f"{base}/{episode.preview_dir.name}/{MEDIA_PLAYLIST}", "poster": None}
        return None


# --- routes ---------------------------------------------------------------------------------------------------

def _problem(status: int, message: str, headers: dict | None = None) -> JSONResponse:
    return JSONResponse({"error": message}, status, headers=headers)


async def _body(request: Request, model: type[BaseModel]) -> BaseModel:
    try:
        raw = await request.json()
    except ValueError as exc:
        raise RequestProblem(400, f"the body is not JSON: {exc}") from None
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        raise RequestProblem(400, problems_of(exc)) from None


def create_app(data_root: str | os.PathLike[str], instance: DagsterInstance, token: str, events_store: EventStore,
               hls_js_path: str | os.PathLike[str] | None = None, runner_factory: RunnerFactory | None = None,
               allowed_hosts: Sequence[str] | None = None) -> Starlette:
    """The preview app over the episodes under ``data_root`` and the runs of ``instance``. Requests that change
    state need ``token``; playback events go to ``events_store`` (the caller closes it). ``runner_factory(progress)``
    makes the EpisodeRunner a job uses (default: one on ``instance``). ``allowed_hosts`` limits the Host header
    (serve passes the loopback names, which keeps DNS-rebinding pages out)."""
    if not token:
        raise PreviewConfigError("the preview token is empty")
    hls_js = resolve_hls_js(hls_js_path)
    factory = runner_factory or (lambda progress: EpisodeRunner(data_root, instance, progress=progress))
    service = PreviewService(data_root, instance, factory)
    expected_token = token.encode("utf-8")

    def authorized(request: Request) -> None:
        scheme, _, supplied = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not supplied.strip():
            raise RequestProblem(401, "this request changes the episode: send the preview token as "
                                      "'Authorization: Bearer <token>'")
        if not secrets.compare_digest(supplied.strip().encode("utf-8"), expected_token):
            raise RequestProblem(403, "the preview token is wrong")

    def handled(endpoint: Callable) -> Callable:
        """Turn RequestProblem and a busy episode into JSON errors."""
        async def wrapped(request: Request) -> Response:
            try:
                return await endpoint(request)
            except RequestProblem as exc:
                headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
                return _problem(exc.status, str(exc), headers)
            except JobConflict as exc:
                return _problem(409, str(exc))
        return wrapped

    async def index_page(request: Request) -> Response:
        return FileResponse(STATIC_DIR / "index.html", media_type="text/html", headers=REVALIDATE)

    async def episode_page(request: Request) -> Response:
        await run_in_threadpool(service.episode, request.path_params["episode_id"])  # 404 for no such episode
        return FileResponse(STATIC_DIR / "episode.html", media_type="text/html", headers=REVALIDATE)

    async def hls_js_file(request: Request) -> Response:
        if hls_js is None:
            return RedirectResponse(HLS_JS_CDN, 307)
        return FileResponse(hls_js, media_type="text/javascript")

    async def player_events_js(request: Request) -> Response:
        if not PLAYER_EVENTS_JS.is_file():
            raise RequestProblem(404, "the analytics player script is not installed")
        return FileResponse(PLAYER_EVENTS_JS, media_type="text/javascript", headers=REVALIDATE)

    async def episodes(request: Request) -> Response:
        return JSONResponse({"episodes": await run_in_threadpool(service.list_episodes)})

    async def episode_detail(request: Request) -> Response:
        return JSONResponse(await run_in_threadpool(service.detail, request.path_params["episode_id"]))

    async def manifest(request: Request) -> Response:
        episode = await run_in_threadpool(service.episode, request.path_params["episode_id"])
        return FileResponse(episode.manifest_path, media_type="application/json", headers=REVALIDATE)

    async def contact_sheet_image(request: Request) -> Response:
        image = await run_in_threadpool(service.contact_sheet_jpeg, request.path_params["episode_id"],
                                        request.query_params.get("shot"))
        return Response(image, media_type="image/jpeg", headers=REVALIDATE)

    async def media(request: Request) -> Response:
        path = await run_in_threadpool(service.episode_file, request.path_params["episode_id"],
                                       request.path_params["path"])
        return FileResponse(path, media_type=MEDIA_TYPES.get(path.suffix, "application/octet-stream"),
                            headers=REVALIDATE)

    async def job(request: Request) -> Response:
        try:
            return JSONResponse(service.jobs.get(request.path_params["job_id"]))
        except UnknownJob:
            raise RequestProblem(404, f"no job {request.path_params['job_id']!r}") from None

    async def edit_shot(request: Request) -> Response:
        authorized(request)
        edit = await _body(request, ShotEdit)
        return JSONResponse(await run_in_threadpool(service.edit_shot, request.path_params["episode_id"],
                                                    request.path_params["shot_id"], edit))

    async def render(request: Request) -> Response:
        authorized(request)
        body = await _body(request, RenderRequest)
        return JSONResponse(await run_in_threadpool(service.render, request.path_params["episode_id"], body), 202)

    async def approve_episode(request: Request) -> Response:
        authorized(request)
        body = await _body(request, ApprovalRequest)
        return JSONResponse(await run_in_threadpool(service.approve, request.path_params["episode_id"], body), 202)

    routes = [
        Route("/", handled(index_page)),
        Route("/episodes/{episode_id}", handled(episode_page)),
        Route("/vendor/hls.min.js", handled(hls_js_file)),
        Route("/vendor/player_events.js", handled(player_events_js)),
        Mount("/static", StaticFiles(directory=STATIC_DIR), name="static"),
        Route("/api/episodes", handled(episodes)),
        Route("/api/episodes/{episode_id}", handled(episode_detail)),
        Route("/api/episodes/{episode_id}/manifest", handled(manifest)),
        Route("/api/episodes/{episode_id}/contact-sheet.jpg", handled(contact_sheet_image)),
        Route("/api/episodes/{episode_id}/shots/{shot_id}", handled(edit_shot), methods=["PUT"]),
        Route("/api/episodes/{episode_id}/render", handled(render), methods=["POST"]),
        Route("/api/episodes/{episode_id}/approve", handled(approve_episode), methods=["POST"]),
        Route("/api/jobs/{job_id}", handled(job)),
        Route("/media/{episode_id}/{path:path}", handled(media)),
        *collector_routes(events_store, duration_of=service.duration_of),
    ]
    middleware = [Middleware(TrustedHostMiddleware, allowed_hosts=list(allowed_hosts))] if allowed_hosts else []

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette):
        yield
        await run_in_threadpool(service.jobs.shutdown)

    app = Starlette(routes=routes, middleware=middleware, lifespan=lifespan)
    app.state.preview = service
    return app


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def serve(host: str = DEFAULT_HOST, port: int = DEFAULT_PORT, token: str | None = None,
          data_root: str | os.PathLike[str] | None = None, hls_js_path: str | os.PathLike[str] | None = None,
          events_location: str | None = None, project_dir: Path | None = None) -> None:
    """Serve the preview app with uvicorn until interrupted, on the persistent Dagster instance
    (``instance_for(project_dir)``). The token is ``token``, else $MICRODRAMA_PREVIEW_TOKEN, else a new random
    one; the URL with it is printed at start-up."""
    if not 0 < port < 65536:
        raise PreviewConfigError(f"port {port} is not a TCP port (1-65535)")
    token = token or os.environ.get(TOKEN_ENV) or secrets.token_urlsafe(24)
    instance = instance_for(project_dir or Path.cwd())
    events_store = open_event_store(events_location)
    # Bound to loopback, only loopback names may reach it: a DNS-rebinding page cannot read the episodes.
    allowed_hosts = ["127.0.0.1", "localhost", "::1", host] if _is_loopback(host) else None
    try:
        app = create_app(data_root or default_data_root(), instance, token, events_store, hls_js_path,
                         allowed_hosts=allowed_hosts)
        url_host = f"[{host}]" if ":" in host else host
        print(f"microdrama preview: http://{url_host}:{port}/?token={token}", flush=True)
        uvicorn.run(app, host=host, port=port, log_level="warning")
    finally:
        events_store.close()


def run_preview(args) -> int:
    """``microdrama preview``: serve with the parsed ``--host``, ``--port``, ``--token`` and ``--hls-js``."""
    try:
        serve(host=args.host, port=args.port, token=args.token, hls_js_path=args.hls_js)
    except PreviewConfigError as exc:
        print(f"microdrama: error: {exc}", file=sys.stderr)
        return 2
    return 0

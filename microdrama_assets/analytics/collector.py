"""The collector endpoint players send playback events to: ``POST /api/events``.

The body is a JSON array of events (analytics/events.py), sent as ``application/json`` by fetch or as
``text/plain`` by ``navigator.sendBeacon`` (the only types a beacon sends without a CORS preflight). Every event
is validated on its own; the valid ones are stored before the collector answers, so a 2xx means they are in the
store, and anything else means the client may send the same batch again (events are keyed by
(session_id, seq), so a repeat is stored once). Answers, all JSON:

- 200 ``{"accepted": n, "rejected": []}``: every event stored.
- 207 ``{"accepted": n, "rejected": [{"index": i, "reason": "..."}]}``: the valid events stored, the listed
  ones refused for the reason given; sending those again will not help.
- 400 ``{"accepted": 0, "rejected": [...]}`` when no event is valid, or ``{"error": "..."}`` for a body that
  is not a JSON array.
- 403 ``{"error": ...}``: a browser page from an origin that is not allowed.
- 413: a body over ``max_body_bytes`` (Starlette's plain "Content Too Large") or more than MAX_BATCH_EVENTS
  events (JSON ``{"error": ...}``): send smaller batches.
- 415: a content type other than JSON or plain text.
- 503 with ``Retry-After``: the store is busy or failed to write; nothing was lost, send the batch again.

Players served from another origin need that origin in ``allowed_origins`` (CORS headers and the preflight
come from Starlette's CORSMiddleware); pages served by the same host are always allowed, and requests without
an Origin header (the simulator, apps) are not browser requests and are accepted.
"""

from __future__ import annotations

import asyncio
import json
from typing import Callable, Sequence
from urllib.parse import urlsplit

import uvicorn
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import BaseRoute, Route

from .event_store import EventStore, EventStoreError, StoreBusy
from .events import BatchTooLarge, EventBatchError, ValidatedBatch, validate_batch

EVENTS_PATH = "/api/events"
MAX_BODY_BYTES = 256 * 1024  # a full batch of 500 events is about 150 KB
WRITE_TIMEOUT_S = 15.0
DEFAULT_PORT = 8765
_BODY_TYPES = ("application/json", "text/plain")


class _EventsEndpoint:
    def __init__(self, store: EventStore, allowed_origins: Sequence[str],
                 duration_of: Callable[[str], float | None] | None, write_timeout_s: float):
        self.store = store
        self.allowed_origins = frozenset(allowed_origins)
        self.duration_of = duration_of
        self.write_timeout_s = write_timeout_s

    def _origin_allowed(self, request: Request) -> bool:
        origin = request.headers.get("origin")
        if origin is None or "*" in self.allowed_origins or origin in self.allowed_origins:
            return True
        # Browsers send Origin on every POST, same-origin ones included: the page the collector's host served.
        return urlsplit(origin).netloc == request.headers.get("host")

    async def receive(self, request: Request) -> JSONResponse:
        """Validate and store one batch of events (the answers are listed in the module docstring)."""
        if request.method != "POST":
            return JSONResponse({"error": f"{request.method} is not supported: POST a batch"}, 405,
                                headers={"Allow": "POST"})
        if not self._origin_allowed(request):
            return JSONResponse({"error": f"origin {request.headers['origin']} is not allowed to send events"}, 403)
        content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if content_type not in _BODY_TYPES:
            return JSONResponse({"error": f"content type {content_type or 'missing'}: send {' or '.join(_BODY_TYPES)}"},
                                415)
        body = await request.body()
        try:
            raw = json.loads(body)
        except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError both are
            return JSONResponse({"error": f"the body is not JSON: {exc}"}, 400)
        try:
            # Validating hundreds of events is CPU work: off the event loop, so other requests keep flowing.
            batch: ValidatedBatch = await run_in_threadpool(validate_batch, raw, self.duration_of)
        except BatchTooLarge as exc:
            return JSONResponse({"error": str(exc)}, 413)
        except EventBatchError as exc:
            return JSONResponse({"error": str(exc)}, 400)
        rejected = [{"index": r.index, "reason": r.reason} for r in batch.rejected]
        if not batch.accepted:
            return JSONResponse({"accepted": 0, "rejected": rejected}, 400)
        try:
            await asyncio.wait_for(asyncio.wrap_future(self.store.add(batch.accepted)), self.write_timeout_s)
        except StoreBusy as exc:
            return JSONResponse({"error": str(exc)}, 503, headers={"Retry-After": "1"})
        except (EventStoreError, asyncio.TimeoutError) as exc:
            reason = str(exc) or f"the store did not commit within {self.write_timeout_s} s"
            return JSONResponse({"error": reason}, 503, headers={"Retry-After": "2"})
        return JSONResponse({"accepted": len(batch.accepted), "rejected": rejected}, 207 if rejected else 200)


def collector_routes(store: EventStore, allowed_origins: Sequence[str] = (),
                     duration_of: Callable[[str], float | None] | None = None,
                     max_body_bytes: int = MAX_BODY_BYTES, write_timeout_s: float = WRITE_TIMEOUT_S) -> list[BaseRoute]:
    """The collector's routes, to mount in any Starlette app (the preview app): ``POST /api/events`` with its CORS
    preflight. ``allowed_origins`` lists the other origins whose pages may send events ("*" for any);
    ``duration_of(episode_id)`` gives an episode's duration, or None when it is not known (it must not raise),
    to reject positions past its end."""
    endpoint = _EventsEndpoint(store, allowed_origins, duration_of, write_timeout_s)
    cors = Middleware(CORSMiddleware, allow_origins=list(allowed_origins), allow_methods=["POST"],
                      allow_headers=["Content-Type"], max_age=600)
    return [Route(EVENTS_PATH, endpoint.receive, methods=["POST", "OPTIONS"], middleware=[cors],
                  max_body_size=max_body_bytes)]


def collector_app(store: EventStore, **options) -> Starlette:
    """A Starlette app serving only the collector (``options`` as for collector_routes). The caller owns the
    store: close it after the app stops."""
    return Starlette(routes=collector_routes(store, **options))


def serve_collector(store: EventStore, host: str = "127.0.0.1", port: int = DEFAULT_PORT, **options) -> None:
    """Serve collector_app(store) with uvicorn until interrupted, then commit what is queued and close the store.
    Binds to the loopback interface unless told otherwise."""
    try:
        uvicorn.run(collector_app(store, **options), host=host, port=port, log_level="info")
    finally:
        store.close()

"""Tests of the playback analytics (microdrama_assets/analytics); helpers shared by them."""

import contextlib
import json
import socket
import threading
import time
import urllib.error
import urllib.request
from datetime import datetime, timezone
from typing import Iterator

import pandas as pd
import uvicorn

from microdrama_assets.analytics.events import EVENT_COLUMNS, MAX_BATCH_EVENTS, event_row, validate_batch
from microdrama_assets.media.hls import LADDER
from microdrama_assets.media.manifest import FPS, EpisodeManifest

# The package's H.264 ladder as delivery.json lists it (bandwidths as measured on a sample episode).
_MEASURED_KBPS = {"1080p": 4932, "720p": 2483, "540p": 1418, "360p": 620, "234p": 112}


def delivery_for(manifest: EpisodeManifest) -> dict:
    """The delivery.json assets/delivery.py writes for ``manifest``, with the default H.264 ladder."""
    shots, start = [], 0
    for shot in manifest.shots:
        shots.append({"id": shot.id, "beat": shot.beat.value, "start_frame": start, "frames": shot.frames,
                      "start_s": round(start / FPS, 4), "end_s": round((start + shot.frames) / FPS, 4)})
        start += shot.frames
    return {
        "episode_id": manifest.episode_id, "title": manifest.title, "duration_s": round(manifest.duration_s, 3),
        "master_playlist": "hls/master.m3u8", "shots": shots,
        "renditions": [{"uri": f"hls/video/h264/{rung.name}/index.m3u8", "resolution": f"{rung.width}x{rung.height}",
                        "codecs": "avc1.64001F,mp4a.40.2", "bandwidth": int(_MEASURED_KBPS[rung.name] * 1100),
                        "average_bandwidth": _MEASURED_KBPS[rung.name] * 1000, "frame_rate": 30.0}
                       for rung in LADDER],
    }


def session_events(episode_id: str, session_id: str, exit_s: float, duration_s: float, *,
                   rendition: str = "h264/720p", stalls: tuple[tuple[float, float], ...] = (),
                   simulated: bool = False, beacon_lost: bool = False) -> list[dict]:
    """One hand-made session as a player reports it: start, progress every whole second, (position, seconds)
    stalls, then end when ``exit_s`` reaches the duration, else an abandon at ``exit_s`` (none when
    ``beacon_lost``)."""
    moments = [(0.0, "start", {})] + [(float(t), "progress", {}) for t in range(1, int(min(exit_s, duration_s)) + 1)
                                       if t < duration_s]
    moments += [(at, "stall", {"stall_s": seconds}) for at, seconds in stalls]
    moments.sort(key=lambda moment: moment[0])
    if exit_s >= duration_s:
        moments.append((duration_s, "end", {}))
    elif not beacon_lost:
        moments.append((exit_s, "abandon", {}))
    return [{"episode_id": episode_id, "session_id": session_id, "viewer_id": f"v-{session_id}", "seq": seq,
             "type": kind, "client_ts": f"2025-03-01T10:00:{min(seq, 59):02d}+00:00", "position_s": position,
             "rendition": rendition, "simulated": simulated, **fields}
            for seq, (position, kind, fields) in enumerate(moments)]


def events_frame(events: list[dict]) -> pd.DataFrame:
    """``events`` as a store's events() frame, validated as the collector does (in batches it accepts)."""
    received = datetime(2025, 3, 1, 10, 5, tzinfo=timezone.utc)
    rows = []
    for start in range(0, len(events), MAX_BATCH_EVENTS):
        batch = validate_batch(events[start:start + MAX_BATCH_EVENTS])
        assert not batch.rejected, batch.rejected
        rows += [event_row(event, received) for event in batch.accepted]
    return pd.DataFrame(rows, columns=list(EVENT_COLUMNS))


@contextlib.contextmanager
def serving(app) -> Iterator[str]:
    """``app`` served by uvicorn on a free loopback port in a thread; yields its base URL."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


def post(url: str, body: bytes, content_type: str = "application/json", **headers) -> tuple[int, dict, object]:
    """POST ``body``; the status, the response headers (lower-case names) and the body (decoded JSON when it
    is JSON)."""
    request = urllib.request.Request(url, data=body, method="POST", headers={"Content-Type": content_type, **headers})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            status, answer_headers, payload = response.status, response.headers, response.read()
    except urllib.error.HTTPError as exc:
        status, answer_headers, payload = exc.code, exc.headers, exc.read()
    is_json = answer_headers.get("content-type", "").startswith("application/json")
    return status, {k.lower(): v for k, v in answer_headers.items()}, json.loads(payload) if is_json else payload

"""The collector over real HTTP (uvicorn on a loopback port): answers, limits, origins, and bursts from many
clients landing in the store exactly once."""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request
from concurrent.futures import Future

import pytest
from starlette.applications import Starlette

from microdrama_assets.analytics.collector import EVENTS_PATH, collector_app, collector_routes
from microdrama_assets.analytics.event_store import DuckDBEventStore, EventStoreError, StoreBusy

from . import post, serving, session_events

EPISODE = "ep-1"


@pytest.fixture
def store(tmp_path):
    with DuckDBEventStore(tmp_path / "events.duckdb") as events:
        yield events


def _body(events) -> bytes:
    return json.dumps(events).encode("utf-8")


def _session(name: str, exit_s: float = 4.0) -> list[dict]:
    return session_events(EPISODE, name, exit_s, 10.0)


def test_a_valid_batch_is_stored_before_the_answer(store):
    events = _session("s-1")
    with serving(collector_app(store)) as base:
        status, _, answer = post(base + EVENTS_PATH, _body(events))
    assert (status, answer) == (200, {"accepted": len(events), "rejected": []})
    # No flush: a 200 means the events are committed.
    assert store.events(EPISODE)["seq"].tolist() == list(range(len(events)))


def test_a_partly_valid_batch_stores_the_valid_events_and_names_the_others(store):
    events = _session("s-1")
    events[1] = {**events[1], "position_s": -3}
    events[2] = {**events[2], "extra": 1}
    with serving(collector_app(store)) as base:
        status, _, answer = post(base + EVENTS_PATH, _body(events))
        assert status == 207 and answer["accepted"] == len(events) - 2
        assert [r["index"] for r in answer["rejected"]] == [1, 2]
        assert answer["rejected"][0]["reason"].startswith("position_s:")
        assert answer["rejected"][1]["reason"].startswith("extra:")
        status, _, answer = post(base + EVENTS_PATH, _body(events[1:3]))
        assert status == 400 and answer["accepted"] == 0 and len(answer["rejected"]) == 2
    assert sorted(store.events(EPISODE)["seq"]) == [0] + list(range(3, len(events)))


@pytest.mark.parametrize("body, content_type, status, message", [
    (b"{not json", "application/json", 400, "not JSON"),
    (b'{"events": []}', "application/json", 400, "JSON array"),
    (b"\xff\xfe", "application/json", 400, "not JSON"),
    (b"[]", "application/xml", 415, "content type application/xml"),
    (b"[]", "", 415, "content type missing"),
])
def test_unreadable_bodies_are_refused(store, body, content_type, status, message):
    with serving(collector_app(store)) as base:
        got, _, answer = post(base + EVENTS_PATH, body, content_type)
    assert got == status and message in answer["error"]


def test_beacons_send_plain_text(store):
    events = _session("s-1")
    with serving(collector_app(store)) as base:
        status, _, _ = post(base + EVENTS_PATH, _body(events), "text/plain;charset=UTF-8")
    assert status == 200 and len(store.events(EPISODE)) == len(events)


def test_oversized_batches_are_refused_with_413(store):
    many = session_events(EPISODE, "s-long", 600.0, 900.0)[:501]
    assert 64 * 1024 < len(_body(many)) < 256 * 1024
    with serving(collector_app(store, max_body_bytes=64 * 1024)) as base:
        status, _, answer = post(base + EVENTS_PATH, _body(many))
    assert status == 413 and answer == b"Content Too Large"  # by size, before it is parsed
    with serving(collector_app(store)) as base:
        status, _, answer = post(base + EVENTS_PATH, _body(many))
    assert status == 413 and "at most 500 events" in answer["error"]  # by count
    assert store.events(EPISODE).empty


def test_positions_past_the_episode_end_are_rejected(store):
    events = _session("s-1", exit_s=10.0)
    events[-1] = {**events[-1], "position_s": 12.0}
    with serving(collector_app(store, duration_of={EPISODE: 10.0}.get)) as base:
        status, _, answer = post(base + EVENTS_PATH, _body(events))
    assert status == 207 and answer["rejected"][0]["index"] == len(events) - 1
    assert "past the end of episode ep-1" in answer["rejected"][0]["reason"]


def test_only_allowed_origins_may_send_from_a_browser(store):
    app = collector_app(store, allowed_origins=["https://player.example"])
    with serving(app) as base:
        url = base + EVENTS_PATH
        status, headers, _ = post(url, _body(_session("s-1")), Origin="https://player.example")
        assert status == 200 and headers["access-control-allow-origin"] == "https://player.example"
        status, _, answer = post(url, _body(_session("s-2")), Origin="https://evil.example")
        assert status == 403 and "https://evil.example" in answer["error"]
        status, _, _ = post(url, _body(_session("s-3")), Origin=base)  # the collector's own pages
        assert status == 200
    assert set(store.events(EPISODE)["session_id"]) == {"s-1", "s-3"}


def test_cors_preflight_names_the_allowed_origin(store):
    with serving(collector_app(store, allowed_origins=["https://player.example"])) as base:
        def preflight(origin):
            request = urllib.request.Request(base + EVENTS_PATH, method="OPTIONS", headers={
                "Origin": origin, "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "content-type"})
            try:
                with urllib.request.urlopen(request, timeout=10) as response:
                    return response.status, response.headers
            except urllib.error.HTTPError as exc:
                return exc.code, exc.headers

        status, headers = preflight("https://player.example")
        assert status == 200 and headers["access-control-allow-origin"] == "https://player.example"
        assert "POST" in headers["access-control-allow-methods"]
        status, headers = preflight("https://evil.example")
        assert status == 400 and "access-control-allow-origin" not in headers


class _RefusingStore:
    """A store that cannot take events: busy, or failing to write."""

    def __init__(self, busy: bool):
        self.busy = busy

    def add(self, events):
        if self.busy:
            raise StoreBusy("1000 batches are waiting to be written")
        failed = Future()
        failed.set_exception(EventStoreError("cannot open the events database: held too long"))
        return failed


@pytest.mark.parametrize("busy, retry_after, message", [(True, "1", "batches are waiting"),
                                                        (False, "2", "held too long")])
def test_a_store_that_cannot_take_events_asks_the_client_to_retry(busy, retry_after, message):
    with serving(collector_app(_RefusingStore(busy))) as base:
        status, headers, answer = post(base + EVENTS_PATH, _body(_session("s-1")))
    assert status == 503 and headers["retry-after"] == retry_after and message in answer["error"]


def test_routes_mount_in_another_app_and_take_only_post(store):
    app = Starlette(routes=[*collector_routes(store)])
    with serving(app) as base:
        status, _, _ = post(base + EVENTS_PATH, _body(_session("s-1")))
        assert status == 200
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(base + EVENTS_PATH, timeout=10)
        assert refused.value.code == 405
        plain_options = urllib.request.Request(base + EVENTS_PATH, method="OPTIONS")  # not a CORS preflight
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(plain_options, timeout=10)
        assert refused.value.code == 405 and refused.value.headers["allow"] == "POST"
    assert len(store.events(EPISODE)) == len(_session("s-1"))


def test_a_burst_from_many_clients_is_stored_exactly_once(store):
    """20 clients each send 50 batches of 20 events at once; every client also repeats every tenth batch, as
    a client does when an answer is lost. Every event must be stored, once."""
    clients, batches, per_batch = 20, 50, 20
    failures: list[str] = []

    def client(number: int, base: str) -> None:
        for batch in range(batches):
            events = [{"episode_id": EPISODE, "session_id": f"c{number:02d}-b{batch:02d}", "viewer_id": f"v{number}",
                       "seq": seq, "type": "progress", "client_ts": "2025-03-01T10:00:00Z", "position_s": float(seq),
                       "rendition": "h264/540p"} for seq in range(per_batch)]
            for _ in range(2 if batch % 10 == 0 else 1):
                status, _, answer = post(base + EVENTS_PATH, _body(events))
                if status != 200 or answer["accepted"] != per_batch:
                    failures.append(f"client {number} batch {batch}: {status} {answer}")

    with serving(collector_app(store)) as base:
        threads = [threading.Thread(target=client, args=(n, base)) for n in range(clients)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert failures == []
    frame = store.events(EPISODE)
    assert len(frame) == clients * batches * per_batch
    assert not frame.duplicated(["session_id", "seq"]).any()
    assert frame.groupby("session_id")["seq"].apply(list).map(lambda seqs: seqs == list(range(per_batch))).all()

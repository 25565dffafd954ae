"""Event stores: batching through one writer, idempotent inserts, DuckDB shared with other processes, and the
same interface on PostgreSQL."""

from __future__ import annotations

import os
import pwd
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from concurrent.futures import CancelledError
from pathlib import Path

import pandas as pd
import pytest

from microdrama_assets.analytics.event_store import (
    BatchingEventStore,
    DuckDBEventStore,
    EventStoreError,
    PostgresEventStore,
    StoreBusy,
    StoreClosed,
    open_event_store,
)
from microdrama_assets.analytics.events import PlaybackEvent, validate_batch

from . import session_events


def _events(session: str, exit_s: float = 5.0, episode: str = "ep-1", **options) -> list[PlaybackEvent]:
    batch = validate_batch(session_events(episode, session, exit_s, 10.0, **options))
    assert not batch.rejected
    return batch.accepted


class _GatedStore(BatchingEventStore):
    """Rows kept in memory; each write waits for the gate and may be told to fail."""

    def __init__(self, **batching):
        self.writing = threading.Event()  # set once a write has begun
        self.gate = threading.Event()
        self.gate.set()
        self.writes: list[list[dict]] = []
        self.fail_next = False
        super().__init__(**batching)

    def _write(self, rows):
        self.writing.set()
        self.gate.wait(10)
        if self.fail_next:
            self.fail_next = False
            raise OSError("disk full")
        self.writes.append(rows)

    def _read(self, episode_id):
        rows = [row for write in self.writes for row in write if row["episode_id"] == episode_id]
        return pd.DataFrame(rows).sort_values(["session_id", "seq"]) if rows else pd.DataFrame()

    def _release(self):
        self.released = True


def test_batches_queued_during_a_write_go_out_together():
    store = _GatedStore(linger_s=0.0)
    store.gate.clear()
    first = store.add(_events("a"))
    assert store.writing.wait(5)  # the writer has taken the first batch and waits at the gate
    waiting = [store.add(_events(name)) for name in "bcde"]
    store.gate.set()
    for future in [first, *waiting]:
        assert future.result(timeout=5) is None
    assert [len({row["session_id"] for row in rows}) for rows in store.writes] == [1, 4]
    store.close()
    assert store.released


def test_a_full_queue_answers_busy_and_a_failed_write_reaches_its_callers_only():
    store = _GatedStore(linger_s=0.0, max_pending_batches=2)
    store.gate.clear()
    failing = store.add(_events("a"))
    assert store.writing.wait(5)
    queued = [store.add(_events("b")), store.add(_events("c"))]
    with pytest.raises(StoreBusy, match="2 batches are waiting"):
        store.add(_events("d"))
    store.fail_next = True
    store.gate.set()
    # "a" failed with the disk; "b" and "c" were written in the next batch: the writer kept going.
    with pytest.raises(EventStoreError, match="disk full"):
        failing.result(timeout=5)
    for future in queued:
        assert future.result(timeout=5) is None
    assert store.events("ep-1")["session_id"].unique().tolist() == ["b", "c"]


def test_a_caller_that_gave_up_does_not_stop_the_writer():
    store = _GatedStore(linger_s=0.0)
    store.gate.clear()
    store.add(_events("a"))
    assert store.writing.wait(5)
    abandoned = store.add(_events("b"))
    assert abandoned.cancel()
    later = store.add(_events("c"))
    store.gate.set()
    assert later.result(timeout=5) is None
    with pytest.raises(CancelledError):
        abandoned.result()
    store.flush(timeout_s=5)
    assert set(store.events("ep-1")["session_id"]) == {"a", "b", "c"}  # the abandoned batch is stored anyway


def test_close_commits_what_is_queued_then_refuses_more():
    store = _GatedStore(linger_s=0.5)
    pending = store.add(_events("a"))
    store.close()
    assert pending.done() and len(store.events("ep-1")) == len(_events("a"))
    with pytest.raises(StoreClosed):
        store.add(_events("b"))
    store.flush()  # nothing left to wait for
    store.close()


def _check_round_trip(store) -> None:
    """What every store must do: keep each field, store a repeated (session_id, seq) once, order and type the
    frame, and keep episodes apart."""
    first = _events("s-1", stalls=((2.0, 1.25),), simulated=True)
    store.add(first).result(timeout=10)
    store.add(first[:3] + _events("s-2", exit_s=10.0)).result(timeout=10)  # a client retry plus a new session
    store.add(_events("s-3", episode="ep-2")).result(timeout=10)
    store.flush()
    frame = store.events("ep-1")
    assert len(frame) == len(first) + len(_events("s-2", exit_s=10.0))
    assert frame[["session_id", "seq"]].apply(tuple, axis=1).tolist() == \
        sorted(frame[["session_id", "seq"]].apply(tuple, axis=1).tolist())
    assert frame["seq"].dtype == "int64" and frame["position_s"].dtype == "float64"
    assert str(frame["client_ts"].dt.tz) == "UTC" and frame["simulated"].dtype == bool
    session = frame[frame["session_id"] == "s-1"]
    assert session["type"].tolist() == [e.type for e in first]
    assert session["position_s"].tolist() == [e.position_s for e in first]
    stall = session[session["type"] == "stall"].iloc[0]
    assert stall["stall_s"] == 1.25 and stall["rendition"] == "h264/720p" and bool(stall["simulated"])
    assert session["client_ts"].iloc[0] == pd.Timestamp("2025-03-01T10:00:00Z")
    assert (frame["received_at"] > pd.Timestamp("2025-03-01T10:00:00Z")).all()
    assert frame[frame["session_id"] == "s-2"]["type"].iloc[-1] == "end"
    assert store.events("ep-2")["session_id"].unique().tolist() == ["s-3"]
    assert store.events("ep-3").empty


def test_duckdb_store_round_trip(tmp_path):
    with DuckDBEventStore(tmp_path / "events.duckdb") as store:
        _check_round_trip(store)


def test_concurrent_adds_are_each_stored_once(tmp_path):
    with DuckDBEventStore(tmp_path / "events.duckdb") as store:
        sessions = [_events(f"s-{i}") for i in range(40)]

        def client(i):
            for _ in range(2):  # every client sends its batch twice, as after a lost answer
                store.add(sessions[i]).result(timeout=20)

        threads = [threading.Thread(target=client, args=(i,)) for i in range(40)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        frame = store.events("ep-1")
    assert len(frame) == sum(len(s) for s in sessions)
    assert not frame.duplicated(["session_id", "seq"]).any()


_READER = textwrap.dedent("""
    import sys
    from microdrama_assets.analytics.event_store import DuckDBEventStore
    store = DuckDBEventStore(sys.argv[1])
    print(len(store.events("ep-1")))
    store.close()
""")

_HOLDER = textwrap.dedent("""
    import sys, time, duckdb
    connection = duckdb.connect(sys.argv[1])
    print("holding", flush=True)
    time.sleep(float(sys.argv[2]))
    connection.close()
""")


def test_another_process_reads_while_the_store_is_open(tmp_path):
    path = tmp_path / "events.duckdb"
    with DuckDBEventStore(path) as store:
        store.add(_events("s-1")).result(timeout=10)
        result = subprocess.run([sys.executable, "-c", _READER, str(path)], capture_output=True, text=True,
                                timeout=60)
        assert result.returncode == 0, result.stderr
        assert int(result.stdout) == len(_events("s-1"))


def test_a_file_held_by_another_process_delays_the_write_not_loses_it(tmp_path):
    path = tmp_path / "events.duckdb"
    with DuckDBEventStore(path, lock_timeout_s=20) as store:
        holder = subprocess.Popen([sys.executable, "-c", _HOLDER, str(path), "1.0"], stdout=subprocess.PIPE, text=True)
        assert holder.stdout.readline().strip() == "holding"
        began = time.monotonic()
        store.add(_events("s-1")).result(timeout=30)
        assert time.monotonic() - began > 0.3  # it waited for the other process
        holder.wait(timeout=30)
        assert len(store.events("ep-1")) == len(_events("s-1"))


def test_a_file_held_too_long_fails_naming_it(tmp_path):
    path = tmp_path / "events.duckdb"
    with DuckDBEventStore(path, lock_timeout_s=0.3) as store:
        holder = subprocess.Popen([sys.executable, "-c", _HOLDER, str(path), "3"], stdout=subprocess.PIPE, text=True)
        assert holder.stdout.readline().strip() == "holding"
        with pytest.raises(EventStoreError, match="cannot open the events database"):
            store.add(_events("s-1")).result(timeout=10)
        holder.kill()
        holder.wait()


def test_open_event_store_picks_the_backend_from_the_location(tmp_path, monkeypatch):
    monkeypatch.setenv("MICRODRAMA_EVENTS", str(tmp_path / "env" / "events.duckdb"))
    with open_event_store() as store:
        assert isinstance(store, DuckDBEventStore) and store.path == tmp_path / "env" / "events.duckdb"
    assert (tmp_path / "env" / "events.duckdb").exists()
    monkeypatch.delenv("MICRODRAMA_EVENTS")
    monkeypatch.setenv("MICRODRAMA_DATA", str(tmp_path / "data"))
    with open_event_store() as store:
        assert store.path == tmp_path / "data" / "analytics" / "events.duckdb"
    with pytest.raises(EventStoreError, match="unsupported events location s3://"):
        open_event_store("s3://bucket/events")


# --- PostgreSQL ------------------------------------------------------------------------------------------------
def _postgres_binaries() -> Path | None:
    initdb = shutil.which("initdb")
    return Path(initdb).resolve().parent if initdb and shutil.which("pg_ctl") else None


@pytest.fixture(scope="module")
def postgres_url():
    """A throwaway PostgreSQL server on 127.0.0.1 (as tests/test_postgres_instance.py starts one, without
    installing it: this test is skipped where the server binaries are not on PATH)."""
    binaries = _postgres_binaries()
    if binaries is None:
        pytest.skip("the PostgreSQL server binaries (initdb, pg_ctl) are not on PATH")
    as_user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []  # PostgreSQL refuses root
    work = Path(tempfile.mkdtemp(prefix="microdrama-events-pg-"))
    password = secrets.token_hex(16)
    (work / "password").write_text(password, encoding="utf-8")
    if as_user:
        owner = pwd.getpwnam("postgres")
        for path in (work, work / "password"):
            os.chown(path, owner.pw_uid, owner.pw_gid)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    subprocess.run([*as_user, str(binaries / "initdb"), "-D", str(work / "data"), "-U", "events",
                    f"--pwfile={work / 'password'}", "--auth=scram-sha-256", "--no-instructions", "--no-sync"],
                   check=True, capture_output=True, timeout=120)
    subprocess.run([*as_user, str(binaries / "pg_ctl"), "-D", str(work / "data"), "-l", str(work / "log"), "-w",
                    "-o", f"-c listen_addresses=127.0.0.1 -p {port} -k {work} -c fsync=off", "start"],
                   check=True, capture_output=True, timeout=120)
    try:
        yield f"postgresql://events:{password}@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run([*as_user, str(binaries / "pg_ctl"), "-D", str(work / "data"), "-w", "-m", "fast", "stop"],
                       capture_output=True, timeout=120)
        shutil.rmtree(work, ignore_errors=True)


def test_postgres_store_round_trip(postgres_url):
    with open_event_store(postgres_url) as store:
        assert isinstance(store, PostgresEventStore)
        assert "***" in repr(store) and postgres_url.split(":")[2].split("@")[0] not in repr(store)
        _check_round_trip(store)


def test_postgres_that_cannot_be_reached_is_named(postgres_url):
    unreachable = postgres_url.rsplit(":", 1)[0] + ":1/postgres"
    reason = r"cannot prepare the events table at postgresql\+psycopg2://events:\*\*\*@127\.0\.0\.1:1/"
    with pytest.raises(EventStoreError, match=reason):
        PostgresEventStore(unreachable)

"""Where playback events are kept: an embedded DuckDB file by default, PostgreSQL when a URL names one.

Every store writes through one writer thread. Callers (the collector's requests, many at once) queue validated
events and get a future that resolves once the batch holding them is committed; the writer gathers whatever is
queued (up to ``batch_rows`` events, waiting ``linger_s`` for more) and commits it in one transaction. So a burst
from many clients becomes a few large inserts, DuckDB sees a single writer, and a collector answers a client
only once its events are stored. Inserts are keyed by (session_id, seq), so a batch a client sends again (its
request timed out after the commit) is stored once.

The DuckDB file is opened for each batch and each read, not held: DuckDB lets one process at a time open a
file, and the engagement asset reads it from a Dagster run process while the collector keeps writing. A store
that finds the file held by another process retries for ``lock_timeout_s``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import threading
import time
from abc import ABC, abstractmethod
from concurrent.futures import Future
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator, Protocol, Sequence

import duckdb
import pandas as pd
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from ..media.manifest import check_id
from ..storage import default_data_root
from .events import EVENT_COLUMNS, PlaybackEvent, event_row

log = logging.getLogger(__name__)

EVENTS_ENV = "MICRODRAMA_EVENTS"
TABLE = "playback_events"
_POSTGRES_SCHEMES = ("postgresql://", "postgresql+psycopg2://")


class EventStoreError(RuntimeError):
    """The event store cannot take or give events (a database error, a file held too long, a bad location)."""


class StoreBusy(EventStoreError):
    """More batches are waiting to be written than the store queues: the client should retry shortly."""


class StoreClosed(EventStoreError):
    """Events added to a store that was closed."""


class EventStore(Protocol):
    """What the collector and the engagement asset need from a store."""

    def add(self, events: Sequence[PlaybackEvent]) -> Future:
        """Queue events for the writer; the future resolves (to None) once they are committed."""

    def flush(self, timeout_s: float | None = None) -> None:
        """Block until everything added so far is committed."""

    def events(self, episode_id: str) -> pd.DataFrame:
        """The episode's stored events (EVENT_COLUMNS), ordered by session and sequence number."""

    def close(self) -> None:
        """Commit what is queued, stop the writer and release the database."""


@dataclass
class _Pending:
    rows: list[dict]
    future: Future = field(default_factory=Future)


_STOP = object()


class BatchingEventStore(ABC):
    """The queue and the single writer thread; subclasses say how a batch of rows is inserted and read."""

    def __init__(self, batch_rows: int = 5000, linger_s: float = 0.02, max_pending_batches: int = 1000):
        self.batch_rows = batch_rows
        self.linger_s = linger_s
        self._queue: queue.Queue = queue.Queue(maxsize=max_pending_batches)
        self._closed = False
        self._closing = threading.Lock()
        self._writer = threading.Thread(target=self._write_batches, name=f"{type(self).__name__}-writer",
                                        daemon=True)
        self._writer.start()

    # --- the public interface ------------------------------------------------------------------------------
    def add(self, events: Sequence[PlaybackEvent]) -> Future:
        """Queue ``events``; the returned future resolves once they are committed (or fails with the database's
        error). Raises StoreBusy when the queue is full and StoreClosed after close()."""
        received_at = datetime.now(timezone.utc)
        pending = _Pending([event_row(event, received_at) for event in events])
        with self._closing:
            if self._closed:
                raise StoreClosed(f"{self!r} is closed")
            try:
                self._queue.put_nowait(pending)
            except queue.Full:
                raise StoreBusy(f"{self._queue.maxsize} batches are waiting to be written") from None
        return pending.future

    def flush(self, timeout_s: float | None = None) -> None:
        """Block until everything added before this call is committed: the queue is first in, first out, so an
        empty batch resolves after every batch ahead of it."""
        marker = _Pending([])
        with self._closing:
            if self._closed:  # close() committed everything
                return
            self._queue.put(marker, timeout=timeout_s)
        marker.future.result(timeout=timeout_s)

    def events(self, episode_id: str) -> pd.DataFrame:
        """The episode's stored events, one row per event (EVENT_COLUMNS), ordered by session_id and seq;
        timestamps are UTC."""
        check_id(episode_id, "episode id")
        frame = self._read(episode_id).reindex(columns=list(EVENT_COLUMNS))
        for column in ("client_ts", "received_at"):
            frame[column] = pd.to_datetime(frame[column], utc=True)
        return frame.astype({"seq": "int64", "position_s": "float64", "stall_s": "float64",
                             "simulated": "bool"}).reset_index(drop=True)

    def close(self) -> None:
        """Commit what is queued, then stop the writer. Closing twice is harmless."""
        with self._closing:
            if self._closed:
                return
            self._closed = True
        self._queue.put(_STOP)
        self._writer.join()
        self._release()

    def __enter__(self):
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    # --- the writer thread -------------------------------------------------------------------------------------
    def _write_batches(self) -> None:
        stopping = False
        while not stopping:
            first = self._queue.get()
            if first is _STOP:
                return
            batch, rows = [first], len(first.rows)
            deadline = time.monotonic() + self.linger_s
            while rows < self.batch_rows:
                try:
                    more = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
                except queue.Empty:
                    break
                if more is _STOP:
                    stopping = True
                    break
                batch.append(more)
                rows += len(more.rows)
            self._commit(batch)

    def _commit(self, batch: list[_Pending]) -> None:
        # A caller that stopped waiting (its request timed out) cancelled its future; its rows are written all
        # the same (its client retries, and the retry is a no-op). Marking the rest running makes cancelling
        # them fail from here on, so setting their results below cannot race a cancel.
        waiting = [pending for pending in batch if pending.future.set_running_or_notify_cancel()]
        rows = [row for pending in batch for row in pending.rows]
        try:
            if rows:
                self._write(rows)
        except Exception as exc:  # every waiting caller gets the error; the writer keeps serving the next batch
            log.warning("writing %d playback events failed: %s", len(rows), exc)
            error = exc if isinstance(exc, EventStoreError) else EventStoreError(f"writing events failed: {exc}")
            for pending in waiting:
                pending.future.set_exception(error)
            return
        for pending in waiting:
            pending.future.set_result(None)

    # --- the database ------------------------------------------------------------------------------------------
    @abstractmethod
    def _write(self, rows: list[dict]) -> None:
        """Insert rows (EVENT_COLUMNS) in one transaction, skipping any whose (session_id, seq) is stored."""

    @abstractmethod
    def _read(self, episode_id: str) -> pd.DataFrame:
        """The episode's rows, ordered by session_id and seq."""

    @abstractmethod
    def _release(self) -> None:
        """Release the database once the writer has stopped."""


_DUCKDB_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS {TABLE} (
    episode_id VARCHAR NOT NULL,
    session_id VARCHAR NOT NULL,
    viewer_id VARCHAR NOT NULL,
    seq INTEGER NOT NULL,
    type VARCHAR NOT NULL,
    client_ts TIMESTAMPTZ NOT NULL,
    received_at TIMESTAMPTZ NOT NULL,
    position_s DOUBLE NOT NULL,
    rendition VARCHAR,
    stall_s DOUBLE,
    simulated BOOLEAN NOT NULL,
    user_agent VARCHAR,
    app_version VARCHAR,
    PRIMARY KEY (session_id, seq)
)"""


class DuckDBEventStore(BatchingEventStore):
    """Events in one table of a DuckDB file (created with its schema on open)."""

    def __init__(self, path: str | os.PathLike[str], lock_timeout_s: float = 10.0, **batching):
        self.path = Path(path).expanduser().resolve()
        self.lock_timeout_s = lock_timeout_s
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._connection() as connection:
            connection.execute(_DUCKDB_SCHEMA)
        super().__init__(**batching)

    def __repr__(self) -> str:
        return f"DuckDBEventStore({str(self.path)!r})"

    @contextlib.contextmanager
    def _connection(self) -> Iterator[duckdb.DuckDBPyConnection]:
        deadline = time.monotonic() + self.lock_timeout_s
        delay = 0.01
        while True:
            try:
                connection = duckdb.connect(str(self.path))
                break
            except duckdb.IOException as exc:
                # Another process (a reader, a second collector) has the file open: wait for it to let go.
                if "lock" not in str(exc).lower() or time.monotonic() + delay > deadline:
                    raise EventStoreError(f"cannot open the events database {self.path}: {exc}") from None
                time.sleep(delay)
                delay = min(delay * 2, 0.5)
        try:
            yield connection
        finally:
            connection.close()

    def _write(self, rows: list[dict]) -> None:
        batch = pd.DataFrame(rows, columns=list(EVENT_COLUMNS))
        columns = ", ".join(EVENT_COLUMNS)
        with self._connection() as connection:
            connection.register("batch", batch)
            connection.execute(f"INSERT INTO {TABLE} ({columns}) SELECT {columns} FROM batch ON CONFLICT DO NOTHING")

    def _read(self, episode_id: str) -> pd.DataFrame:
        with self._connection() as connection:
            return connection.execute(f"SELECT * FROM {TABLE} WHERE episode_id = ? ORDER BY session_id, seq",
                                      [episode_id]).fetchdf()

    def _release(self) -> None:
        """Nothing is held between batches."""


_metadata = sa.MetaData()
_events_table = sa.Table(
    TABLE, _metadata,
    sa.Column("episode_id", sa.String(64), nullable=False, index=True),
    sa.Column("session_id", sa.String(64), primary_key=True),
    sa.Column("viewer_id", sa.String(64), nullable=False),
    sa.Column("seq", sa.Integer, primary_key=True),
    sa.Column("type", sa.String(32), nullable=False),
    sa.Column("client_ts", sa.DateTime(timezone=True), nullable=False),
    sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("position_s", sa.Float, nullable=False),
    sa.Column("rendition", sa.String(32)),
    sa.Column("stall_s", sa.Float),
    sa.Column("simulated", sa.Boolean, nullable=False),
    sa.Column("user_agent", sa.String(256)),
    sa.Column("app_version", sa.String(32)),
)


class PostgresEventStore(BatchingEventStore):
    """Events in one table of a PostgreSQL database (created if missing), through SQLAlchemy and psycopg2."""

    def __init__(self, url: str, **batching):
        parsed = sa.engine.make_url(url)
        if parsed.drivername == "postgresql":  # SQLAlchemy 2.1 would pick psycopg 3; dagster-postgres brings psycopg2
            parsed = parsed.set(drivername="postgresql+psycopg2")
        self._url = parsed.render_as_string(hide_password=True)
        try:
            self._engine = sa.create_engine(parsed, pool_pre_ping=True)
        except ModuleNotFoundError as exc:
            raise EventStoreError(f"PostgreSQL needs {exc.name}: pip install -e '.[postgres]'") from None
        try:
            _metadata.create_all(self._engine)
        except sa.exc.SQLAlchemyError as exc:
            self._engine.dispose()
            raise EventStoreError(f"cannot prepare the events table at {self._url}: {exc}") from None
        super().__init__(**batching)

    def __repr__(self) -> str:
        return f"PostgresEventStore({self._url!r})"

    def _write(self, rows: list[dict]) -> None:
        statement = postgresql.insert(_events_table).on_conflict_do_nothing(index_elements=["session_id", "seq"])
        with self._engine.begin() as connection:
            connection.execute(statement, rows)

    def _read(self, episode_id: str) -> pd.DataFrame:
        query = (sa.select(_events_table).where(_events_table.c.episode_id == episode_id)
                 .order_by(_events_table.c.session_id, _events_table.c.seq))
        with self._engine.connect() as connection:
            return pd.read_sql(query, connection)

    def _release(self) -> None:
        self._engine.dispose()


def default_events_location() -> str:
    """$MICRODRAMA_EVENTS (a DuckDB file path or a postgresql:// URL), else analytics/events.duckdb under the
    data root."""
    return os.environ.get(EVENTS_ENV) or str(Path(default_data_root()) / "analytics" / "events.duckdb")


def open_event_store(location: str | os.PathLike[str] | None = None, **batching) -> BatchingEventStore:
    """The store at ``location`` (default: default_events_location()): PostgreSQL for a postgresql:// URL, else
    a DuckDB file at that path."""
    location = str(location if location is not None else default_events_location())
    if location.startswith(_POSTGRES_SCHEMES):
        return PostgresEventStore(location, **batching)
    if "://" in location:
        raise EventStoreError(f"unsupported events location {location.split('://')[0]}://...: give a DuckDB file "
                              f"path or a postgresql:// URL")
    return DuckDBEventStore(location, **batching)

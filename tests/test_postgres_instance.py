"""The PostgreSQL instance of deploy/dagster.yaml, against a real PostgreSQL server this module starts on
127.0.0.1 (initdb into a temporary folder, pg_ctl start, stopped afterwards): the planning job runs on the
multiprocess executor, its steps writing to PostgreSQL from their own processes, and its materializations are
read back, also by a second instance made from the same file.

Debian's postgresql package is installed with apt-get where its binaries are missing (as root; elsewhere the
test is skipped on a developer's machine and fails under CI, which must run it)."""

from __future__ import annotations

import glob
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

import pytest
from dagster import AssetKey, DagsterInstance, execute_job
from dagster._core.definitions.reconstruct import ReconstructableRepository

from microdrama_assets.artifacts import EpisodeArtifacts
from microdrama_assets.episodes import write_request
from microdrama_assets.execution import GPU_POOL
from microdrama_assets.partitions import episode_partitions
from microdrama_assets.storage import ArtifactStore

pytest.importorskip("dagster_postgres", reason="dagster-postgres is not installed (pip install -e '.[postgres]')")
import psycopg2  # noqa: E402 - dagster-postgres brings it

DEPLOY_CONFIG = Path(__file__).resolve().parents[1] / "deploy" / "dagster.yaml"
EPISODE = "pg-episode"
DATABASE = "microdrama_dagster"
ROLE = "microdrama"


def _unavailable(reason: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"PostgreSQL test cannot run on CI: {reason}", pytrace=False)
    pytest.skip(reason)


def _run(args: list[str], as_user: str | None = None, timeout: float = 120) -> None:
    if as_user:  # PostgreSQL refuses to run as root
        args = ["runuser", "-u", as_user, "--", *args]
    result = subprocess.run(args, capture_output=True, text=True, timeout=timeout,
                            env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} exited {result.returncode}:\n{result.stderr[-3000:]}")


def _server_binaries() -> Path:
    """The folder holding initdb, pg_ctl and postgres: on PATH, else Debian's, installed when missing."""
    def find() -> Path | None:
        if all(shutil.which(name) for name in ("initdb", "pg_ctl", "postgres")):
            return Path(shutil.which("initdb")).resolve().parent
        found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
        return Path(found[-1]).parent if found else None

    if (binaries := find()) is None:
        if shutil.which("apt-get") is None or os.geteuid() != 0:
            _unavailable("the PostgreSQL server binaries are missing and installing them needs apt-get as root")
        install = ["apt-get", "install", "-y", "-qq", "--no-install-recommends", "-o", "DPkg::Lock::Timeout=300",
                   "postgresql"]
        try:
            _run(install, timeout=600)
        except RuntimeError:
            # A fresh machine has empty or stale package lists: refresh them once and try again.
            _run(["apt-get", "update", "-qq", "-o", "DPkg::Lock::Timeout=300"], timeout=600)
            _run(install, timeout=600)
        binaries = find()
    return binaries


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def postgres_server():
    """A PostgreSQL server on 127.0.0.1 (and a unix socket in its temporary folder) with password
    authentication and an empty database; its connection settings as DAGSTER_PG_* variables."""
    binaries = _server_binaries()
    # The server runs as an unprivileged user when the tests run as root (Debian's package creates `postgres`).
    as_user = "postgres" if os.geteuid() == 0 else None
    # Not under pytest's tmp_path: that is private to root, and the server's user must reach its folder.
    work = Path(tempfile.mkdtemp(prefix="microdrama-pg-"))
    password = secrets.token_hex(16)
    (work / "password").write_text(password, encoding="utf-8")
    (work / "socket").mkdir()
    if as_user:
        owner = pwd.getpwnam(as_user)
        for path in (work, work / "password", work / "socket"):
            os.chown(path, owner.pw_uid, owner.pw_gid)
    data = work / "data"
    port = _free_port()
    _run([str(binaries / "initdb"), "-D", str(data), "-U", ROLE, f"--pwfile={work / 'password'}",
          "--auth=scram-sha-256", "-E", "UTF8", "--no-instructions", "--no-sync"], as_user)
    options = f"-c listen_addresses=127.0.0.1 -p {port} -k {work / 'socket'} -c fsync=off"
    _run([str(binaries / "pg_ctl"), "-D", str(data), "-l", str(work / "server.log"), "-w", "-t", "60",
          "-o", options, "start"], as_user)
    try:
        conn = psycopg2.connect(host="127.0.0.1", port=port, user=ROLE, password=password, dbname="postgres")
        conn.autocommit = True  # CREATE DATABASE refuses to run in a transaction
        with conn.cursor() as cursor:
            cursor.execute(f"CREATE DATABASE {DATABASE}")
        conn.close()
        yield {"DAGSTER_PG_HOST": "127.0.0.1", "DAGSTER_PG_PORT": str(port), "DAGSTER_PG_DB": DATABASE,
               "DAGSTER_PG_USERNAME": ROLE, "DAGSTER_PG_PASSWORD": password}
    finally:
        _run([str(binaries / "pg_ctl"), "-D", str(data), "-w", "-m", "fast", "stop"], as_user)
        shutil.rmtree(work, ignore_errors=True)


@pytest.fixture
def postgres_home(postgres_server, tmp_path, monkeypatch) -> Path:
    """A DAGSTER_HOME holding deploy/dagster.yaml as it ships, its credentials in the environment."""
    for name, value in postgres_server.items():
        monkeypatch.setenv(name, value)
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copyfile(DEPLOY_CONFIG, home / "dagster.yaml")
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    return home


def _query(settings: dict, sql: str, *params) -> list[tuple]:
    with psycopg2.connect(host=settings["DAGSTER_PG_HOST"], port=int(settings["DAGSTER_PG_PORT"]),
                          dbname=settings["DAGSTER_PG_DB"], user=settings["DAGSTER_PG_USERNAME"],
                          password=settings["DAGSTER_PG_PASSWORD"]) as conn, conn.cursor() as cursor:
        cursor.execute(sql, params)
        rows = cursor.fetchall()
    conn.close()
    return rows


def test_deploy_config_puts_every_storage_in_postgres(postgres_home):
    from dagster._core.run_coordinator import QueuedRunCoordinator
    from dagster_postgres import PostgresEventLogStorage, PostgresRunStorage, PostgresScheduleStorage

    with DagsterInstance.from_config(str(postgres_home)) as instance:
        assert isinstance(instance.run_storage, PostgresRunStorage)
        assert isinstance(instance.event_log_storage, PostgresEventLogStorage)
        assert isinstance(instance.schedule_storage, PostgresScheduleStorage)
        assert isinstance(instance.run_coordinator, QueuedRunCoordinator)
        assert instance.run_retries_enabled and instance.run_retries_max_retries == 2
        assert not instance.run_retries_retry_on_asset_or_op_failure


def test_missing_credentials_are_named(postgres_home, monkeypatch):
    monkeypatch.delenv("DAGSTER_PG_PASSWORD")
    with pytest.raises(Exception, match="DAGSTER_PG_PASSWORD"):
        DagsterInstance.from_config(str(postgres_home)).run_storage  # noqa: B018 - loading it is the test


def test_planning_run_on_the_multiprocess_executor_round_trips_through_postgres(postgres_server, postgres_home,
                                                                                 tmp_path, monkeypatch):
    data_root = tmp_path / "data"
    # Each step's process loads the code location (microdrama_assets.definitions) as a deployment does, its
    # resources and executor from the environment.
    monkeypatch.setenv("MICRODRAMA_DATA", str(data_root))
    monkeypatch.setenv("MICRODRAMA_EXECUTOR", "multiprocess")
    store = ArtifactStore(data_root)
    write_request(store, EPISODE, "A courier delivers a letter that has not been written yet.", shots=2, seed=3,
                  source="test", duration_s=4.0)

    with DagsterInstance.from_config(str(postgres_home)) as instance:
        instance.add_dynamic_partitions(episode_partitions.name, [EPISODE])
        instance.event_log_storage.set_concurrency_slots(GPU_POOL, 1)
        job = ReconstructableRepository.for_module("microdrama_assets.definitions", "defs").get_reconstructable_job(
            "plan_episode")
        with execute_job(job, instance, tags={"dagster/partition": EPISODE}) as result:
            assert result.success, [e.message for e in result.all_events if e.is_failure]
            run_id = result.run_id
            step_processes = {e.pid for e in result.all_events if e.is_step_start}
        # Each step (manifest, its moderation check, the draft preview, the bundles) in its own process.
        assert len(step_processes) == 4 and os.getpid() not in step_processes
        # The pool slot the planner's step held (gpu) is back once the run is over.
        assert instance.event_log_storage.get_concurrency_info(GPU_POOL).active_slot_count == 0

    # A second instance from the same file (another process, another machine) sees the run and the assets.
    with DagsterInstance.from_config(str(postgres_home)) as instance:
        assert instance.get_run_by_id(run_id).is_success
        assert EPISODE in instance.get_dynamic_partitions(episode_partitions.name)
        assert instance.event_log_storage.get_concurrency_info(GPU_POOL).slot_count == 1
        manifest = EpisodeArtifacts(store, EPISODE).manifest()
        records = instance.fetch_materializations(AssetKey("episode_manifest"), limit=10).records
        assert [r.partition_key for r in records] == [EPISODE]
        metadata = records[0].asset_materialization.metadata
        assert metadata["shots"].value == len(manifest.shots) == 2
        assert metadata["title"].value == manifest.title
        assert instance.get_latest_materialization_event(AssetKey("character_bundles")).run_id == run_id

    # And the rows are PostgreSQL's, not a SQLite file's.
    rows = _query(postgres_server, "SELECT asset_key, partition FROM event_logs WHERE dagster_event_type = %s "
                                   "AND run_id = %s ORDER BY id", "ASSET_MATERIALIZATION", run_id)
    assert sorted((AssetKey.from_db_string(key).path[-1], partition) for key, partition in rows) == [
        ("character_bundles", EPISODE), ("episode_manifest", EPISODE), ("episode_preview", EPISODE)]
    assert not list(postgres_home.glob("**/*.db"))

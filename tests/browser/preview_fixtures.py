"""Helpers for the preview app's tests (tests/test_preview_api.py and tests/browser/test_preview_app.py): a real
two-shot episode made through the asset graph (moderated by its checks) on a persistent temporary Dagster
instance, moderation of a manifest edited since, the app served by uvicorn on 127.0.0.1, and file fingerprints."""

from __future__ import annotations

import hashlib
import shutil
import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import uvicorn
from dagster import DagsterInstance

from microdrama_assets.artifacts import EpisodeArtifacts
from microdrama_assets.resources import ArtifactStoreResource, TrustSettings
from microdrama_assets.runner import EpisodeRunner
from microdrama_assets.storage import ArtifactStore
from microdrama_assets.trust.moderation import ModerationReport, check_text, manifest_text_items
from microdrama_assets.trust.release_gate import ModerationVerdict, manifest_subject, record_verdict

EPISODE_ID = "preview-test"
LOGLINE = "A barista discovers a mysterious locket that signals danger."
SHOTS = 2
DURATION_S = 4.0  # the planner lengthens shots to fit their lines: about 3.3 s each
TOKEN = "preview-test-token"
SERVER_START_TIMEOUT_S = 15.0

_TEMPLATES: dict[str, Path] = {}  # episode id -> the folder of the session's first copy of it


@dataclass(frozen=True)
class PreviewEpisode:
    data_root: Path
    instance: DagsterInstance
    store: ArtifactStore
    episode_id: str

    @property
    def artifacts(self) -> EpisodeArtifacts:
        return EpisodeArtifacts(self.store, self.episode_id)


def temporary_instance(directory: Path) -> DagsterInstance:
    """A persistent (SQLite) Dagster instance in ``directory``, as ``microdrama preview`` uses one."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "dagster.yaml").write_text("telemetry:\n  enabled: false\n", encoding="utf-8")
    return DagsterInstance.local_temp(tempdir=str(directory))


def make_preview_episode(tmp_path_factory: pytest.TempPathFactory, name: str) -> PreviewEpisode:
    """A real episode (plan, two shot runs, assembly, made by the EpisodeRunner; its moderation checks ran, so it
    is ready for review) in a folder of its own, data and Dagster instance, so a test module may change it freely.
    The first call in a test session makes it (tens of seconds); later calls copy that one."""
    template = _TEMPLATES.get(EPISODE_ID)
    if template is None:
        template = tmp_path_factory.mktemp("preview-template")
        instance = temporary_instance(template / "dagster_home")
        EpisodeRunner(template / "data", instance).make_episode(EPISODE_ID, LOGLINE, shots=SHOTS, seed=11,
                                                                 duration_s=DURATION_S)
        instance.dispose()  # its SQLite files are copied next: nothing may be left to write
        _TEMPLATES[EPISODE_ID] = template
    work = tmp_path_factory.mktemp(name)
    shutil.copytree(template / "data", work / "data", symlinks=True)
    shutil.copytree(template / "dagster_home", work / "dagster_home")
    store = ArtifactStoreResource(root=str(work / "data")).store()
    return PreviewEpisode(store.root, DagsterInstance.local_temp(tempdir=str(work / "dagster_home")), store,
                          EPISODE_ID)


def moderate_manifest(store: ArtifactStore, episode_id: str) -> ModerationReport:
    """Moderate the manifest as it is now with the shipped policy and record the verdict the release gate reads,
    as the graph's ``episode_manifest_passes_moderation`` check does: it puts back the real verdict after a test
    forged a blocked one."""
    episode = EpisodeArtifacts(store, episode_id)
    trust = TrustSettings(moderation_policy="")
    report = ModerationReport(tuple(check_text(trust.policy(), manifest_text_items(episode.manifest()))))
    record_verdict(episode, ModerationVerdict("manifest", manifest_subject(episode), not report.blocked,
                                              report.summary(), report.records(), trust.moderation_fingerprint()),
                   actor="tests/preview")
    return report


class PreviewServer:
    """An app served by uvicorn on 127.0.0.1 (a free port) in a background thread; ``url`` once entered."""

    def __init__(self, app):
        self.app = app
        self.url = ""
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    def __enter__(self) -> "PreviewServer":
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.bind(("127.0.0.1", 0))
        self._server = uvicorn.Server(uvicorn.Config(self.app, log_level="warning", lifespan="on"))
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [listener]}, daemon=True)
        self._thread.start()
        deadline = time.monotonic() + SERVER_START_TIMEOUT_S
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the preview server did not start")
            time.sleep(0.05)
        self.url = f"http://127.0.0.1:{listener.getsockname()[1]}"
        return self

    def __exit__(self, *exc_info) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=30)


def fingerprints(directory: Path) -> dict[str, tuple[int, str]]:
    """Every file under ``directory``: (mtime in ns, SHA-256), by relative path."""
    return {str(path.relative_to(directory)): (path.stat().st_mtime_ns, hashlib.sha256(path.read_bytes()).hexdigest())
            for path in sorted(directory.rglob("*")) if path.is_file()}

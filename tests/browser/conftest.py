"""Fixtures for the browser playback test: headless Chromium (Debian's package), hls.js (npm), a small HLS
package built by the real encoder and packager, and a local web server for it.

What is missing is installed here, so a fresh CI machine runs the test with nothing set up by hand. Where it
cannot be installed (not root, no apt-get or npm) the test is skipped on a developer's machine and fails under
CI, which must run it.
"""

from __future__ import annotations

import functools
import http.server
import os
import shutil
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest

from microdrama_assets.media.captions import Cue, build_webvtt
from microdrama_assets.media.hls import (LADDER, PRESETS, Rung, assemble_video_rendition, encode_shot_renditions,
                                         ladder_variants, package_audio, video_codecs, write_master_playlist,
                                         write_subtitles_playlist)
from microdrama_assets.media.validate import validate_package
from microdrama_assets.media.video_io import FPS, MezzanineSettings, decode_frames, write_mezzanine

HERE = Path(__file__).resolve().parent
CHROMIUM = Path("/usr/bin/chromium")
HLS_JS = HERE / "node_modules" / "hls.js" / "dist" / "hls.min.js"
PLAYER_PAGE = HERE / "player.html"
PACKAGE_DIR = "hls"  # where the page finds the package: hls/master.m3u8

# A plain rung and the real cellular rung: a forced switch between them also switches audio group.
RUNGS = (Rung("360p", 360, 640, 550, 700), LADDER[-1])
# Every codec the packager makes: the test shows which of them Chromium's hls.js keeps.
VARIANTS = ladder_variants(video_codecs(["h264", "hevc", "av1"]), RUNGS)
SHOTS = (("s01", 0, 75), ("s02", 75, 50))  # (id, start frame, frames): 125 frames, about 4.2 s
TOTAL_FRAMES = sum(frames for _, _, frames in SHOTS)
CUES = (Cue(0.2, 1.8, "Maya", "It is glowing."), Cue(2.6, 3.9, "Victor", "Put it down."))

CHROMIUM_ARGS = [
    "--no-sandbox",  # CI runs as root, where Chromium's sandbox refuses to start
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-quic",
    "--no-first-run",
    "--disable-component-update",
    "--disable-sync",
    "--autoplay-policy=no-user-gesture-required",
]

MIME_TYPES = {
    ".m3u8": "application/vnd.apple.mpegurl",
    ".m4s": "video/iso.segment",
    ".mp4": "video/mp4",
    ".vtt": "text/vtt",
    ".js": "text/javascript",
    ".html": "text/html",
}


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "browser: plays the HLS package in headless Chromium with hls.js")


def _unavailable(reason: str) -> None:
    """Skip on a developer's machine; fail under CI, which must run the browser test."""
    if os.environ.get("CI"):
        pytest.fail(f"browser test cannot run on CI: {reason}", pytrace=False)
    pytest.skip(reason)


def _run(args: list[str], cwd: Path | None = None, timeout: float = 600) -> None:
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    result = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} exited {result.returncode}:\n{result.stderr[-3000:]}")


@pytest.fixture(scope="session")
def chromium_executable() -> Path:
    """Debian's Chromium, installed with apt-get when it is missing."""
    if not CHROMIUM.exists():
        if shutil.which("apt-get") is None or os.geteuid() != 0:
            _unavailable(f"{CHROMIUM} is missing and installing it needs apt-get as root")
        install = ["apt-get", "install", "-y", "-qq", "--no-install-recommends", "-o", "DPkg::Lock::Timeout=300",
                   "chromium"]
        try:
            _run(install)
        except RuntimeError:
            # A fresh machine has empty or stale package lists: refresh them once and try again.
            _run(["apt-get", "update", "-qq", "-o", "DPkg::Lock::Timeout=300"])
            _run(install)
    return CHROMIUM


@pytest.fixture(scope="session")
def hls_js() -> Path:
    """hls.js at the version package-lock.json pins, installed with npm ci when it is missing."""
    if not HLS_JS.exists():
        if shutil.which("npm") is None:
            _unavailable("hls.js is not installed and npm is missing")
        _run(["npm", "ci", "--no-audit", "--no-fund", "--silent"], cwd=HERE, timeout=300)
    return HLS_JS


@pytest.fixture(scope="session")
def sync_playwright():
    """Playwright's entry point, looked up before anything is installed for it."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _unavailable("the playwright Python package is missing (pip install -e '.[test]')")
    return sync_playwright


# Module scope: Playwright's sync API keeps an asyncio loop running while it is open, which Dagster's runs in
# later test modules would find and trip over.
@pytest.fixture(scope="module")
def playwright_chromium(sync_playwright, chromium_executable: Path, tmp_path_factory: pytest.TempPathFactory):
    """A browser context in headless Chromium with a fresh profile. Playwright drives the system Chromium; it
    never downloads a browser of its own."""
    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            user_data_dir=tmp_path_factory.mktemp("chromium-profile"),
            executable_path=chromium_executable,
            headless=True,
            args=CHROMIUM_ARGS,
        )
        try:
            yield context
        finally:
            context.close()


@pytest.fixture(scope="session")
def hls_package(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A two-shot package (H.264, HEVC and AV1 at two rungs, both audio groups, WebVTT subtitles) made by the
    encoder and packager the pipeline uses, and passing the pipeline's own validator."""
    work = tmp_path_factory.mktemp("browser-hls")
    rng = np.random.default_rng(5)
    base = cv2.GaussianBlur(rng.integers(0, 255, (640, 360, 3), dtype=np.uint8), (0, 0), 4)
    renditions = {}
    for shot_id, start, frames in SHOTS:
        mezzanine = work / f"{shot_id}.mp4"
        # A picture that moves, so a frozen decoder would show as a stalled clock rather than pass unnoticed.
        write_mezzanine(mezzanine, (np.roll(base, 3 * (start + i), axis=1) for i in range(frames)), 360, 640,
                        MezzanineSettings())
        renditions[shot_id] = encode_shot_renditions(decode_frames(mezzanine), frames, start, work / shot_id,
                                                     PRESETS["draft"], VARIANTS)
    package = work / "site" / PACKAGE_DIR
    variants = [assemble_video_rendition([(s, work / s / v.key, renditions[s][v.key]) for s, _, _ in SHOTS],
                                         package, v) for v in VARIANTS]
    t = np.arange(round(48000 * TOTAL_FRAMES / FPS)) / 48000
    tone = np.stack([0.3 * np.sin(2 * np.pi * 330 * t)] * 2, 1).astype(np.float32)
    audio = package_audio(tone, 48000, package, 2.0, RUNGS)
    write_subtitles_playlist(build_webvtt(list(CUES)), TOTAL_FRAMES / FPS, package / "subs", 2.0)
    write_master_playlist(package, variants, audio, "en", True)
    report = validate_package(package)
    assert report.ok, report.problems
    return package


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    extensions_map = {**http.server.SimpleHTTPRequestHandler.extensions_map, **MIME_TYPES}

    def log_message(self, format: str, *args) -> None:  # noqa: A002 - the base class names it so
        pass


@pytest.fixture(scope="session")
def site_url(hls_package: Path, hls_js: Path) -> Iterator[str]:
    """The page, hls.js and the package served on 127.0.0.1 from one folder, as a web player would see them."""
    site = hls_package.parent
    shutil.copyfile(hls_js, site / HLS_JS.name)
    shutil.copyfile(PLAYER_PAGE, site / PLAYER_PAGE.name)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_QuietHandler, directory=str(site)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()

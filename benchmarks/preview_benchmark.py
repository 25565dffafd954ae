"""Preview benchmark: from a logline to a playable draft (360x640 HLS) while the full render has not started.

For each sample logline: the embedded planner's time, the time until the preview playlist first lists a segment
(a player can start), and until it is closed with EXT-X-ENDLIST, all counted from the logline, with their ratios
to the targets (first segment <= 3 s, whole preview <= 10 s on a 2-core machine), the CPU time it took (all
threads: a figure that other load on the machine hardly inflates) and the stream's bitrate.
Interpreter start and module imports, paid once per process (a Dagster step process has most of them already),
are timed apart in a fresh process; the first logline also pays the one-time set-up (espeak-ng, fonts, tables).

Then the same through the asset graph, as a creator gets it: the request written, the plan run started (planning,
the manifest's moderation check, the preview step), and the preview playlist watched from another thread until it
lists a segment and until it is closed.

    python benchmarks/preview_benchmark.py [--loglines 3] [--samples FILE] [--shots 6] [--duration 30]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import m3u8
from dagster import DagsterInstance

from microdrama_assets.artifacts import EpisodeArtifacts
from microdrama_assets.episodes import write_request
from microdrama_assets.jobs import plan_episode_job
from microdrama_assets.media.planner import plan_episode
from microdrama_assets.media.preview import build_preview
from microdrama_assets.runner import QUIET_LOGS, EpisodeRunner

SAMPLES = Path(__file__).resolve().parents[2] / "shared" / "loglines" / "samples.txt"
DEFAULT_LOGLINE = "A barista discovers a mysterious locket that signals danger."
FIRST_SEGMENT_TARGET_S, TOTAL_TARGET_S = 3.0, 10.0


def sample_loglines(path: Path, count: int) -> list[str]:
    """The first ``count`` loglines of ``path`` (one a line), or the default logline where there is no such file."""
    lines = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()] if path.is_file() else []
    return [line for line in lines if line][:count] or [DEFAULT_LOGLINE]


def cold_import_seconds() -> float:
    """A fresh interpreter's start plus the planner and preview imports (what a new process pays first)."""
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import microdrama_assets.media.planner, microdrama_assets.media.preview"],
                   check=True)
    return time.perf_counter() - started


def through_dagster(logline: str, workdir: Path, shots: int, duration_s: float) -> tuple[float, float, float]:
    """(first playable, whole preview, plan run) seconds from writing the request, through the plan run on an
    ephemeral instance; the playlist is polled every 20 ms from another thread."""
    runner = EpisodeRunner(workdir / "dagster-data", DagsterInstance.ephemeral())
    playlist = EpisodeArtifacts(runner.store, "through-dagster").preview_dir / "index.m3u8"
    seen: dict[str, float] = {}
    done = threading.Event()

    def watch(started: float) -> None:
        while not done.is_set() and "closed" not in seen:
            if playlist.is_file():
                listed = m3u8.load(str(playlist))
                if listed.segments:
                    seen.setdefault("first", time.perf_counter() - started)
                if listed.is_endlist:
                    seen["closed"] = time.perf_counter() - started
            time.sleep(0.02)

    started = time.perf_counter()
    write_request(runner.store, "through-dagster", logline, shots, 0, source="benchmark", duration_s=duration_s)
    runner.instance.add_dynamic_partitions("episodes", ["through-dagster"])
    watcher = threading.Thread(target=watch, args=(started,), daemon=True)
    watcher.start()
    result = runner.defs.resolve_job_def(plan_episode_job.name).execute_in_process(
        instance=runner.instance, partition_key="through-dagster", run_config=QUIET_LOGS, raise_on_error=True)
    plan_s = time.perf_counter() - started
    done.set()
    watcher.join()
    if not result.success or "closed" not in seen:
        raise SystemExit("the plan run did not produce a closed preview playlist")
    return seen["first"], seen["closed"], plan_s


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--loglines", type=int, default=3, help="how many sample loglines to preview")
    parser.add_argument("--samples", type=Path, default=SAMPLES, help="file of loglines, one a line")
    parser.add_argument("--shots", type=int, default=6)
    parser.add_argument("--duration", type=float, default=30.0)
    args = parser.parse_args()

    print(f"interpreter start and module imports (once per process): {cold_import_seconds():.2f} s\n")
    print(f"{'logline':<44}{'episode s':>10}{'plan s':>8}{'first s':>9}{'ratio':>7}{'total s':>9}{'ratio':>7}"
          f"{'cpu s':>7}{'kb/s':>7}")
    worst_first, worst_total = 0.0, 0.0
    with tempfile.TemporaryDirectory(prefix="microdrama-preview-bench-") as workdir:
        for index, logline in enumerate(sample_loglines(args.samples, args.loglines)):
            first_listed: list[float] = []
            started, cpu_started = time.perf_counter(), time.process_time()
            manifest = plan_episode(logline, f"preview-{index}", args.shots, seed=0, target_duration_s=args.duration)
            planned_s = time.perf_counter() - started
            out_dir = Path(workdir) / manifest.episode_id
            result = build_preview(manifest, out_dir,
                                   on_segment=lambda _: first_listed.append(time.perf_counter() - started))
            total_s, cpu_s = time.perf_counter() - started, time.process_time() - cpu_started
            first_s = first_listed[0]
            kbps = sum((out_dir / s.uri).stat().st_size for s in result.segments) * 8 / result.duration_s / 1000
            worst_first, worst_total = max(worst_first, first_s), max(worst_total, total_s)
            label = logline if len(logline) <= 42 else logline[:41] + "…"
            print(f"{label:<44}{result.duration_s:>10.1f}{planned_s:>8.3f}{first_s:>9.2f}"
                  f"{first_s / FIRST_SEGMENT_TARGET_S:>7.2f}{total_s:>9.2f}{total_s / TOTAL_TARGET_S:>7.2f}"
                  f"{cpu_s:>7.2f}{kbps:>7.0f}")
        print(f"\nworst first playable segment {worst_first:.2f} s (target {FIRST_SEGMENT_TARGET_S:.0f} s, ratio "
              f"{worst_first / FIRST_SEGMENT_TARGET_S:.2f}); worst whole preview {worst_total:.2f} s (target "
              f"{TOTAL_TARGET_S:.0f} s, ratio {worst_total / TOTAL_TARGET_S:.2f})")
        first_s, closed_s, plan_s = through_dagster(sample_loglines(args.samples, 1)[0], Path(workdir), args.shots,
                                                    args.duration)
        print(f"through the asset graph (request, plan run with moderation and the preview step): first playable "
              f"{first_s:.2f} s (ratio {first_s / FIRST_SEGMENT_TARGET_S:.2f}), whole preview {closed_s:.2f} s "
              f"(ratio {closed_s / TOTAL_TARGET_S:.2f}), plan run done {plan_s:.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())

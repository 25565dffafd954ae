"""End-to-end benchmark: a logline to a playable HLS ladder (assembled, ready for review) through the asset graph.

Prints wall time per stage (summed over shots), the total from logline to master playlist, and the process's
peak resident memory. Targets (2-core machine): playable <= 90 s after the logline, peak memory <= 2 GB.

    python benchmarks/episode_benchmark.py [--shots 6] [--duration 30] [--preset final] [--codecs h264,hevc,av1]
                                           [--logline "..."]
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import m3u8
from dagster import DagsterEventType, DagsterInstance

from microdrama_assets.artifacts import EpisodeArtifacts
from microdrama_assets.runner import EpisodeRunner, instance_for

DEFAULT_LOGLINE = "A barista discovers a mysterious locket that signals danger."
TARGET_S, TARGET_MB = 90.0, 2048.0


def step_seconds(instance: DagsterInstance, run_ids: list[str] | None = None) -> dict[str, float]:
    """Wall time per step key, summed over the runs ``run_ids`` (default: every run on the instance), start to
    success."""
    totals: dict[str, float] = defaultdict(float)
    for run_id in [run.run_id for run in instance.get_runs()] if run_ids is None else run_ids:
        started = {}
        for record in instance.all_logs(run_id):
            event = record.dagster_event
            if event is None:
                continue
            if event.event_type == DagsterEventType.STEP_START:
                started[event.step_key] = record.timestamp
            elif event.event_type == DagsterEventType.STEP_SUCCESS and event.step_key in started:
                totals[event.step_key] += record.timestamp - started[event.step_key]
    return dict(totals)


def episode_options(description: str) -> argparse.ArgumentParser:
    """The options of an episode benchmark: the episode to make and how."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--logline", default=DEFAULT_LOGLINE)
    parser.add_argument("--shots", type=int, default=6)
    parser.add_argument("--duration", type=float, default=30.0)
    parser.add_argument("--preset", default="final", choices=["final", "draft"])
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="shots rendered in parallel")
    return parser


def main() -> int:
    parser = episode_options(__doc__.splitlines()[0])
    parser.add_argument("--codecs", default="h264", help="video codecs of the ladder, comma-separated (h264, hevc, av1)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="microdrama-bench-") as workdir:
        # A persistent (temporary) instance, as the CLI uses: worker processes share it.
        os.environ["DAGSTER_HOME"] = str(Path(workdir) / "dagster_home")
        instance = instance_for(Path(workdir))
        runner = EpisodeRunner(Path(workdir) / "data", instance, encode_preset=args.preset, workers=args.workers,
                               video_codecs=[c.strip() for c in args.codecs.split(",") if c.strip()],
                               progress=lambda message: print(f"  {message}", flush=True))
        store = runner.store
        started = time.perf_counter()
        playlist = runner.make_episode("benchmark", args.logline, args.shots, seed=0, duration_s=args.duration)
        total = time.perf_counter() - started
        playable = playlist.exists()
        # Worker processes are children: the larger of this process and any one worker is the peak per process.
        peak_mb = max(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
                      resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss) / 1024
        per_step = step_seconds(instance)
        episode_seconds = EpisodeArtifacts(store, "benchmark").manifest().duration_s
        print(f"\nepisode: {args.shots} shots, {episode_seconds:.1f} s of 1080x1920 video, preset {args.preset}, "
              f"codecs {args.codecs}, "
              f"{runner.workers} worker(s)")
        print(f"{'stage (summed over shots)':<26}{'seconds':>6}{'share':>8}")
        for step, seconds in sorted(per_step.items(), key=lambda item: -item[1]):
            print(f"{step:<26}{seconds:>6.2f}{seconds / total:>8.0%}")
        print(f"{'total (logline->HLS)':<22}{total:>10.2f}   target {TARGET_S:.0f} s, ratio {total / TARGET_S:.2f}")
        print(f"{'realtime factor':<22}{total / episode_seconds:>10.2f}   (wall seconds per episode second)")
        print(f"{'peak memory (MB)':<22}{peak_mb:>10.0f}   target {TARGET_MB:.0f} MB, ratio {peak_mb / TARGET_MB:.2f}")
        print(f"master playlist: {playlist.relative_to(store.root)} ({'playable' if playable else 'MISSING'})")
        # BANDWIDTH / AVERAGE-BANDWIDTH are measured from the segments (video + its audio group).
        for variant in m3u8.load(str(playlist)).playlists:
            info = variant.stream_info
            print(f"  {info.resolution[0]}x{info.resolution[1]:<6} peak {info.bandwidth / 1000:7.0f} kb/s   "
                  f"average {info.average_bandwidth / 1000:7.0f} kb/s   {info.codecs}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Re-render benchmark: what content-addressed caching saves after an edit, against a cold run.

On a 6-shot 30-s episode (persistent temporary instance, as the CLI uses): a cold run from the logline, then,
editing ``episodes/<id>/manifest.json`` the way a user would and re-rendering every shot (``microdrama rerender
<id> --shot s01 ... --shot s06``, through the runner):

- nothing changed (in this process, and as a fresh ``microdrama rerender`` process, whose start-up counts);
- one shot's action changed (its picture: storyboard, keyframes, motion, compositing, encode, then assembly);
- one shot's line of dialogue changed (its voice, compositing and encode, then assembly).

Targets: an edited shot re-renders in <= 30 % of the cold run, nothing changed in <= 5 %. Each phase prints its
time, the ratio, the Dagster steps it ran and the cache hits and misses the assets reported; every result is
validated (the assembled package, ready for review, and the edit present in it).

    python benchmarks/rerender_benchmark.py [--shots 6] [--duration 30] [--preset final] [--workers N]
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from dagster import DagsterEventType, DagsterInstance

from microdrama_assets.artifacts import EpisodeArtifacts
from microdrama_assets.media.validate import validate_package
from microdrama_assets.runner import EpisodeRunner, instance_for

from episode_benchmark import episode_options, step_seconds  # beside this script

EPISODE = "benchmark"
EDIT_TARGET, NOOP_TARGET = 0.30, 0.05


def phase_report(instance: DagsterInstance, known_runs: set[str]) -> tuple[dict[str, float], Counter]:
    """Step seconds (summed over shots) and cache outcomes per stage of the runs not in ``known_runs``."""
    new_runs = [run.run_id for run in instance.get_runs() if run.run_id not in known_runs]
    known_runs.update(new_runs)
    outcomes: Counter = Counter()
    for run_id in new_runs:
        for record in instance.get_records_for_run(run_id, of_type=DagsterEventType.ASSET_MATERIALIZATION).records:
            materialization = record.event_log_entry.dagster_event.event_specific_data.materialization
            status = materialization.metadata.get("cache")
            if status is not None:
                source = materialization.metadata["cache_source"].value
                outcomes[(materialization.asset_key.path[-1], f"{status.value} ({source})")] += 1
    return step_seconds(instance, new_runs), outcomes


def edit_manifest(episode: EpisodeArtifacts, edit) -> str:
    """Apply ``edit`` to manifest.json as a user would (a text edit of the file); returns the new text."""
    manifest = json.loads(episode.manifest_path.read_text(encoding="utf-8"))
    text = edit(manifest)
    episode.manifest_path.write_text(json.dumps(manifest, indent=2, ensure_ascii=False), encoding="utf-8")
    return text


def new_action(manifest: dict) -> str:
    shot = manifest["shots"][len(manifest["shots"]) // 2]
    shot["action"] = shot["action"].rstrip(".") + ", then glances at the door."
    print(f"\n   edit: {shot['id']} action -> {shot['action']!r}")
    return shot["action"]


def new_line(manifest: dict) -> str:
    spoken = [shot for shot in manifest["shots"] if shot["dialogue"]]
    shot = spoken[len(spoken) // 2 - 1] if len(spoken) > 1 else spoken[0]
    words = shot["dialogue"][0]["text"].rstrip(".!?").split()
    # Shorter than before, so it still fits the shot's length.
    shot["dialogue"][0]["text"] = " ".join(words[: max(1, len(words) - 2)]) + "?"
    print(f"\n   edit: {shot['id']} line -> {shot['dialogue'][0]['text']!r}")
    return shot["dialogue"][0]["text"]


def main() -> int:
    args = episode_options(__doc__.splitlines()[0]).parse_args()

    with tempfile.TemporaryDirectory(prefix="microdrama-rerender-") as workdir:
        os.environ["DAGSTER_HOME"] = str(Path(workdir) / "dagster_home")
        os.environ["MICRODRAMA_ENCODE_PRESET"] = args.preset
        instance = instance_for(Path(workdir))
        data = Path(workdir) / "data"
        runner = EpisodeRunner(data, instance, encode_preset=args.preset, workers=args.workers,
                               progress=lambda message: print(f"    {message}", flush=True))
        episode = EpisodeArtifacts(runner.store, EPISODE)
        known_runs: set[str] = set()
        results = []

        def phase(name: str, run, target: float | None) -> None:
            print(f"\n== {name}", flush=True)
            started = time.perf_counter()
            playlist = run()
            seconds = time.perf_counter() - started
            report = validate_package(playlist.parent)
            if not report.ok:
                raise SystemExit(f"{name}: the package does not validate: {report.problems[:5]}")
            steps, outcomes = phase_report(instance, known_runs)
            results.append((name, seconds, target, steps, outcomes))
            print(f"   {seconds:.2f} s", flush=True)

        phase("cold: logline -> assembled ladder",
              lambda: runner.make_episode(EPISODE, args.logline, args.shots, seed=0, duration_s=args.duration), None)
        shots = episode.manifest().shot_ids
        rerender = lambda: runner.render_and_assemble(EPISODE, shots)  # noqa: E731

        phase("nothing changed (rerender every shot, in process)", rerender, NOOP_TARGET)

        cli = [sys.executable, "-m", "microdrama_assets.cli", "rerender", EPISODE, *[a for s in shots for a in ("--shot", s)]]

        def cli_rerender() -> Path:
            subprocess.run(cli, check=True, cwd=workdir, env={**os.environ, "MICRODRAMA_DATA": str(data)},
                           stdout=subprocess.DEVNULL)
            return episode.hls_dir / "master.m3u8"

        phase("nothing changed (microdrama rerender, a fresh process)", cli_rerender, NOOP_TARGET)

        edit_manifest(episode, new_action)
        phase("one shot's action changed (rerender every shot)", rerender, EDIT_TARGET)

        line = edit_manifest(episode, new_line)
        phase("one shot's dialogue changed (rerender every shot)", rerender, EDIT_TARGET)
        if " ".join(line.split()) not in " ".join(episode.captions_vtt.read_text(encoding="utf-8").split()):
            raise SystemExit("the edited line is not in the episode's captions")

        cold = results[0][1]
        manifest = episode.manifest()
        print(f"\nepisode: {len(manifest.shots)} shots, {manifest.duration_s:.1f} s, preset {args.preset}, "
              f"{runner.workers} worker(s)")
        print(f"{'phase':<58}{'seconds':>8}{'of cold':>9}{'target':>8}")
        for name, seconds, target, _, _ in results:
            verdict = "" if target is None else f"{target:>7.0%} {'met' if seconds / cold <= target else 'MISSED'}"
            print(f"{name:<58}{seconds:>8.2f}{seconds / cold:>9.1%} {verdict}")
        for name, seconds, _, steps, outcomes in results[1:]:
            print(f"\n{name}: Dagster steps run (summed over shots)")
            for step, step_s in sorted(steps.items(), key=lambda item: -item[1]):
                print(f"  {step:<40}{step_s:>7.2f}")
            if not steps:
                print("  none (every shot and the assembled package were current: key checks only)")
            for (asset, status), count in sorted(outcomes.items()):
                print(f"  cache {asset:<32}{status:<22}x{count}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

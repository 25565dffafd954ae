"""Ladder encode benchmark: the project's one-decode fan-out against one FFmpeg process per rendition.

On one master (a 1080x1920 30 fps mezzanine made here with the project's own writer, or ``--master``) it times
(a) ``encode_shot_renditions`` over the whole master as one shot: one decode, each frame scaled once per rung and
fed to every variant's encoder, all in this process; and (b) the equivalent FFmpeg command lines run one after
another, one process per variant, each decoding the master itself, with the project's encoder options (taken
from ``hls.encoder_setup``), AREA scaling, IDRs forced at the same segment starts and the same HLS fMP4 muxer
options. Both sides use their libraries' default threading. It prints every variant's FFmpeg time, both totals,
the ratio ffmpeg/project against the goal (>= 1.3x), and checks that both sides wrote the same segments, frame
count, IDR positions and resolutions, with their bitrates side by side.

Needs the ``ffmpeg`` command line tool (Debian: ``apt-get install ffmpeg``).

    python benchmarks/ladder_benchmark.py [--codecs h264,hevc,av1] [--preset final] [--seconds 30]
                                          [--repeat 1] [--master PATH]
"""

from __future__ import annotations

import argparse
import io
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import av
import cv2
import m3u8
import numpy as np

from microdrama_assets.media.hls import (
    INIT_SEGMENT,
    MEDIA_PLAYLIST,
    PRESETS,
    EncodePreset,
    VideoVariant,
    encoder_setup,
    encode_shot_renditions,
    ladder_variants,
    segment_plan,
    video_codecs,
)
from microdrama_assets.media.video_io import FPS, MezzanineSettings, decode_frames, probe_video, write_mezzanine

GOAL_RATIO = 1.3
MASTER_WIDTH, MASTER_HEIGHT = 1080, 1920


@dataclass(frozen=True)
class Timing:
    wall_s: float
    cpu_s: float  # user + system: shows how well each side keeps the cores busy


@dataclass(frozen=True)
class OutputFacts:
    """What a variant's output looks like from the outside, read back by demuxing init + segments."""

    segments: int
    frames: int
    keyframe_indices: tuple[int, ...]
    width: int
    height: int
    kbps: float


def synthetic_frames(n_frames: int, width: int, height: int, seed: int = 0) -> Iterator[np.ndarray]:
    """A panning texture of blurred colour noise with filled circles drifting across it: detail and motion over the
    whole picture, so neither side is flattered by a static or flat master."""
    rng = np.random.default_rng(seed)
    noise = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    texture = cv2.normalize(cv2.GaussianBlur(noise, (0, 0), sigmaX=4.0), None, 0, 255, cv2.NORM_MINMAX)
    circles = [
        (rng.uniform(0, width), rng.uniform(0, height), rng.uniform(-15, 15), rng.uniform(-15, 15),
         int(rng.integers(40, 220)), tuple(int(c) for c in rng.integers(0, 256, 3)))
        for _ in range(8)
    ]
    for index in range(n_frames):
        frame = np.roll(texture, (index * 6, index * 3), axis=(0, 1))  # a copy, so drawing leaves the texture alone
        for x, y, dx, dy, radius, colour in circles:
            cv2.circle(frame, (int((x + dx * index) % width), int((y + dy * index) % height)), radius, colour, -1)
        yield frame


def segment_starts(plan: list[int]) -> tuple[int, ...]:
    return tuple(np.cumsum([0] + plan[:-1]).tolist())


def ffmpeg_encoders(ffmpeg: str) -> set[str]:
    listing = subprocess.run([ffmpeg, "-hide_banner", "-encoders"], capture_output=True, text=True, check=True).stdout
    return {line.split()[1] for line in listing.splitlines() if line.startswith(" V")}


def ffmpeg_command(ffmpeg: str, master: Path, master_size: tuple[int, int], variant: VideoVariant,
                   preset: EncodePreset, plan: list[int], directory: Path) -> list[str]:
    """One variant as an FFmpeg command line with the options ``encode_shot_renditions`` gives PyAV."""
    segment_frames = round(preset.segment_s * FPS)
    # The project's own helper, so these command lines follow any change to its encoder options.
    bit_rate, options = encoder_setup(variant, preset, segment_frames)
    rung = variant.rung
    command = [ffmpeg, "-hide_banner", "-loglevel", "error", "-nostdin", "-y", "-i", str(master), "-map", "0:v:0"]
    # The project scales only when the master is not already at the rung's size.
    if master_size != (rung.width, rung.height):
        command += ["-vf", f"scale={rung.width}:{rung.height}:flags=area"]
    command += ["-pix_fmt", "yuv420p", "-c:v", variant.codec.encoder, "-tag:v", variant.codec.sample_entry]
    if bit_rate:
        command += ["-b:v", str(bit_rate)]
    for name, value in options.items():
        command += [f"-{name}", value]
    command += ["-force_key_frames", ",".join(f"{start / FPS:.6f}" for start in segment_starts(plan))]
    # The muxer options of hls._open_variant_output.
    command += [
        "-f", "hls", "-hls_time", "0.1", "-hls_segment_type", "fmp4", "-hls_playlist_type", "vod",
        "-hls_fmp4_init_filename", INIT_SEGMENT, "-hls_segment_filename", str(directory / "seg_%03d.m4s"),
        "-hls_flags", "independent_segments", "-hls_segment_options", "use_editlist=0",
        str(directory / MEDIA_PLAYLIST),
    ]
    return command


def cpu_seconds(who: int) -> float:
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


def run_project(master: Path, n_frames: int, preset: EncodePreset, variants: tuple[VideoVariant, ...],
                out_root: Path) -> tuple[Timing, dict[str, list[str]]]:
    """Time the fan-out; segment file names per variant key."""
    started, cpu_started = time.perf_counter(), cpu_seconds(resource.RUSAGE_SELF)
    renditions = encode_shot_renditions(decode_frames(master), n_frames, 0, out_root, preset, variants)
    timing = Timing(time.perf_counter() - started, cpu_seconds(resource.RUSAGE_SELF) - cpu_started)
    return timing, {key: [segment.uri for segment in rendition.segments] for key, rendition in renditions.items()}


def run_ffmpeg(commands: dict[str, list[str]], out_root: Path) -> dict[str, Timing]:
    """Run the variants' command lines one after another, timing each."""
    # hls._open_variant_output sets this in its own process: SVT-AV1 prints errors only.
    environment = {"SVT_LOG": "1", **os.environ}
    timings = {}
    for key, command in commands.items():
        (out_root / key).mkdir(parents=True)
        started, cpu_started = time.perf_counter(), cpu_seconds(resource.RUSAGE_CHILDREN)
        result = subprocess.run(command, check=False, capture_output=True, text=True, env=environment)
        timings[key] = Timing(time.perf_counter() - started, cpu_seconds(resource.RUSAGE_CHILDREN) - cpu_started)
        if result.returncode:
            sys.exit(f"ffmpeg failed on {key} (exit {result.returncode}):\n{' '.join(command)}\n{result.stderr}")
    return timings


def output_facts(directory: Path, segment_uris: list[str], n_frames: int) -> OutputFacts:
    segments = [(directory / uri).read_bytes() for uri in segment_uris]
    with av.open(io.BytesIO((directory / INIT_SEGMENT).read_bytes() + b"".join(segments)), format="mp4") as container:
        stream = container.streams.video[0]
        packets = [packet for packet in container.demux(stream) if packet.size]
        width, height = stream.codec_context.width, stream.codec_context.height
    keyframes = tuple(index for index, packet in enumerate(packets) if packet.is_keyframe)
    kbps = sum(len(segment) for segment in segments) * 8 / (n_frames / FPS) / 1000
    return OutputFacts(len(segments), len(packets), keyframes, width, height, kbps)


def mismatches(facts: OutputFacts, variant: VideoVariant, plan: list[int]) -> list[str]:
    """How an output departs from the plan: segment count, frames, an IDR at every segment start only, size.
    (FFmpeg 5.1's libsvtav1 ignores forced keyframes, so its AV1 IDRs follow keyint alone: they match the plan only
    when the master is a whole number of segments long, as the generated one is.)"""
    expected_keyframes = segment_starts(plan)
    problems = []
    if facts.segments != len(plan):
        problems.append(f"{facts.segments} segments, planned {len(plan)}")
    if facts.frames != sum(plan):
        problems.append(f"{facts.frames} frames, master has {sum(plan)}")
    if facts.keyframe_indices != expected_keyframes:
        stray = sorted(set(facts.keyframe_indices) ^ set(expected_keyframes))
        problems.append(f"IDRs off the segment starts at frames {stray[:6]}")
    if (facts.width, facts.height) != (variant.rung.width, variant.rung.height):
        problems.append(f"{facts.width}x{facts.height}")
    return problems


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--codecs", default="h264", help="comma-separated: h264, hevc, av1 (h264 is always in)")
    parser.add_argument("--preset", default="final", choices=sorted(PRESETS))
    parser.add_argument("--seconds", type=float, default=30.0, help="length of the generated master")
    parser.add_argument("--repeat", type=int, default=1, help="runs of each side; the fastest of each is reported")
    parser.add_argument("--master", type=Path, help="an existing mp4 to encode instead of a generated one")
    args = parser.parse_args()
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    if args.master is not None and not args.master.is_file():
        parser.error(f"no master file at {args.master}")

    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg is None:
        sys.exit("no `ffmpeg` on PATH: install Debian's package (`apt-get install ffmpeg`) and run again")
    try:
        variants = ladder_variants(video_codecs(name.strip() for name in args.codecs.split(",") if name.strip()))
    except ValueError as error:
        parser.error(str(error))
    available = ffmpeg_encoders(ffmpeg)
    for encoder in sorted({variant.codec.encoder for variant in variants} - available):
        # The ratio only means something when both sides do the same work: the codec leaves both.
        print(f"note: this ffmpeg has no {encoder} encoder; that codec is left out of the comparison")
    variants = tuple(variant for variant in variants if variant.codec.encoder in available)
    preset = PRESETS[args.preset]

    version = subprocess.run([ffmpeg, "-version"], capture_output=True, text=True, check=True).stdout.splitlines()[0]
    print(version)
    # Other work on the machine skews both sides: the load average says whether it was quiet.
    print(f"PyAV {av.__version__} (libavcodec {'.'.join(map(str, av.library_versions['libavcodec']))}), "
          f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}")

    with tempfile.TemporaryDirectory(prefix="microdrama-ladder-bench-") as workdir:
        master = args.master
        if master is None:
            master = Path(workdir) / "master.mp4"
            n_generated = round(args.seconds * FPS)
            print(f"writing a {args.seconds:g} s {MASTER_WIDTH}x{MASTER_HEIGHT} synthetic mezzanine...", flush=True)
            write_mezzanine(master, synthetic_frames(n_generated, MASTER_WIDTH, MASTER_HEIGHT), MASTER_WIDTH,
                            MASTER_HEIGHT, MezzanineSettings())
        probe = probe_video(master)
        plan = segment_plan(probe.frames, round(preset.segment_s * FPS))
        master_mbps = master.stat().st_size * 8 / probe.duration_s / 1e6
        print(f"master: {probe.width}x{probe.height} {probe.codec}, {probe.frames} frames ({probe.duration_s:.1f} s, "
              f"{master_mbps:.1f} Mb/s), {len(plan)} segments; preset {preset.name}; "
              f"{len(variants)} variants: {', '.join(variant.key for variant in variants)}")

        project_runs: list[Timing] = []
        ffmpeg_runs: list[dict[str, Timing]] = []
        checks: dict[str, tuple[OutputFacts, OutputFacts]] = {}  # variant key: (project, ffmpeg)
        for run in range(args.repeat):
            run_dir = Path(workdir) / f"run{run}"
            commands = {variant.key: ffmpeg_command(ffmpeg, master, (probe.width, probe.height), variant, preset,
                                                    plan, run_dir / "ffmpeg" / variant.key) for variant in variants}
            if run == 0:
                for codec in dict.fromkeys(variant.codec.name for variant in variants):
                    key = next(variant.key for variant in variants if variant.codec.name == codec)
                    print(f"ffmpeg command line ({key}):\n  {' '.join(commands[key])}")
            print(f"run {run + 1}/{args.repeat}: project fan-out...", flush=True)
            project, project_segments = run_project(master, probe.frames, preset, variants, run_dir / "project")
            project_runs.append(project)
            print(f"run {run + 1}/{args.repeat}: sequential ffmpeg...", flush=True)
            ffmpeg_runs.append(run_ffmpeg(commands, run_dir / "ffmpeg"))
            if run == 0:
                # Checked once: later runs repeat the same work.
                for variant in variants:
                    ffmpeg_dir = run_dir / "ffmpeg" / variant.key
                    ffmpeg_uris = [segment.uri for segment in m3u8.load(str(ffmpeg_dir / MEDIA_PLAYLIST)).segments]
                    checks[variant.key] = (
                        output_facts(run_dir / "project" / variant.key, project_segments[variant.key], probe.frames),
                        output_facts(ffmpeg_dir, ffmpeg_uris, probe.frames),
                    )
            shutil.rmtree(run_dir)

    best_project = min(project_runs, key=lambda timing: timing.wall_s)
    best_ffmpeg = min(ffmpeg_runs, key=lambda timings: sum(timing.wall_s for timing in timings.values()))
    print(f"\n{'variant':<13}{'ffmpeg s':>9}{'cpu s':>8}{'kb/s ffmpeg':>13}{'kb/s project':>14}  check")
    all_sane = True
    for variant in variants:
        project_facts, ffmpeg_facts = checks[variant.key]
        problems = [f"project: {p}" for p in mismatches(project_facts, variant, plan)]
        problems += [f"ffmpeg: {p}" for p in mismatches(ffmpeg_facts, variant, plan)]
        all_sane &= not problems
        timing = best_ffmpeg[variant.key]
        print(f"{variant.key:<13}{timing.wall_s:>9.2f}{timing.cpu_s:>8.2f}{ffmpeg_facts.kbps:>13.0f}"
              f"{project_facts.kbps:>14.0f}  {'; '.join(problems) or 'ok'}")
    ffmpeg_wall = sum(timing.wall_s for timing in best_ffmpeg.values())
    ffmpeg_cpu = sum(timing.cpu_s for timing in best_ffmpeg.values())
    ratio = ffmpeg_wall / best_project.wall_s
    best_of = f" (best of {args.repeat})" if args.repeat > 1 else ""
    print(f"{'sequential ffmpeg total':<24}{ffmpeg_wall:>8.2f} s   cpu {ffmpeg_cpu:7.2f} s{best_of}")
    print(f"{'project fan-out':<24}{best_project.wall_s:>8.2f} s   cpu {best_project.cpu_s:7.2f} s{best_of}")
    verdict = "met" if ratio >= GOAL_RATIO else "NOT met"
    print(f"{'ratio ffmpeg/project':<24}{ratio:>8.2f}x   goal >= {GOAL_RATIO}x: {verdict}")
    if not all_sane:
        print("outputs differ from the plan (see check column): the comparison is not like for like")
    return 0 if all_sane else 1


if __name__ == "__main__":
    sys.exit(main())

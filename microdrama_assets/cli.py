"""``microdrama episode "LOGLINE"`` and ``microdrama rerender EPISODE --shot SHOT``."""

from __future__ import annotations

import argparse
import getpass
import json
import os
import sys
from pathlib import Path

from .artifacts import ShotArtifacts
from .episodes import BadRequest, Presets, check_options, clean_logline, episode_id_for, parse_cast
from .media.hls import video_codecs
from .media.manifest import FPS, InvalidId, ManifestError, check_id
from .publishing import open_object_store
from .cache import ArtifactCache
from .resources import ArtifactStoreResource
from .storage import ArtifactStore, StorageError, default_data_root


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="microdrama", description="Logline in, vertical HLS episode out.")
    commands = parser.add_subparsers(dest="command", required=True)
    episode = commands.add_parser("episode", help="make an episode from a logline")
    episode.add_argument("logline")
    episode.add_argument("--episode-id", help="partition key / folder name (default: from the logline)")
    episode.add_argument("--shots", type=int, default=6)
    episode.add_argument("--seed", type=int, default=0)
    episode.add_argument("--duration", type=float, help="target length in seconds (default: 5 per shot)")
    episode.add_argument("--caption-style", help="caption style preset: default, emphasis (yellow highlight) or "
                                                 "minimal (no plate)")
    episode.add_argument("--lighting", help="one lighting mood for every shot (grade, palette and music): tense, "
                                            "mysterious, warm, romantic, eerie, hopeful, somber, playful "
                                            "(default: the planner's mood per shot)")
    episode.add_argument("--cast", help="character cards to cast, comma-separated, protagonist first (built-in: "
                                        "mara, theo, ines, victor, priya, kofi; your own: cards/<id>.json under "
                                        "the data root)")
    episode.add_argument("--series", help="series the episode belongs to: its first episode's characters come "
                                          "back in every later one (same looks, voices and bundles)")
    episode.add_argument("--learn-from", help="an earlier episode whose next_episode_suggestions guide the plan "
                                              "(shorter shots where viewers left, a target length)")
    episode.add_argument("--ai-label", action="store_true", help="draw a visible 'AI-generated' label on every frame")
    episode.add_argument("--music", type=Path, help="an audio file of your own for the music bed (any format "
                                                    "FFmpeg reads), looped or trimmed to the episode, ducked")
    rerender = commands.add_parser("rerender", help="re-render shots of an episode and re-assemble it")
    stills = commands.add_parser("stills", help="write a keyframe contact sheet and frame grabs of a made episode")
    prune = commands.add_parser("prune-cache", help="remove cached stage results (cache/ under the data root) that "
                                                    "no run has made or restored for a while")
    prune.add_argument("--older-than-days", type=float, default=30.0,
                       help="remove entries unused for this many days (default 30)")
    stills.add_argument("episode_id")
    approve = commands.add_parser("approve", help="approve an assembled episode's package for publishing, then "
                                                  "publish it")
    approve.add_argument("episode_id")
    approve.add_argument("--by", dest="approver", help="who approves (default: your user name)")
    approve.add_argument("--version", help="the package version you reviewed (printed when the episode was "
                                           "assembled); approval fails if the package has changed since")
    approve.add_argument("--note", default="", help="a note kept with the approval in the audit log")
    approve.add_argument("--no-publish", action="store_true",
                         help="only record the approval (the approval sensor publishes it when the daemon runs)")
    audit = commands.add_parser("audit", help="show an episode's audit log: models, prompts, seeds, moderation, "
                                              "approvals and publications")
    audit.add_argument("episode_id")
    audit.add_argument("--sql", help="DuckDB SQL over the log, which the query names `audit`, e.g. "
                                     "\"select asset, backend, model, seed from audit where kind = 'render'\"")
    audit.add_argument("--csv", action="store_true", help="print CSV instead of a table")
    simulate = commands.add_parser("simulate-viewers", help="generate simulated viewer sessions of an assembled "
                                                            "episode (labelled simulated) for demos and tests")
    simulate.add_argument("episode_id")
    simulate.add_argument("--viewers", type=int, default=500)
    simulate.add_argument("--seed", type=int, default=0)
    simulate.add_argument("--weak-shot", action="append", default=[], dest="weak_shots",
                          help="a shot viewers leave three times as often (repeatable), e.g. s03")
    simulate.add_argument("--endpoint", help="a collector's /api/events URL to send them to (default: straight "
                                             "into the event store)")
    engagement = commands.add_parser("engagement", help="measure engagement by shot from the stored playback events "
                                                        "and print the suggestions for the next episode")
    engagement.add_argument("episode_id")
    preview = commands.add_parser("preview", help="serve the creator's preview app: play, check, edit, re-render "
                                                  "and approve episodes")
    preview.add_argument("--token", help="the token edits, re-renders and approvals need (default: "
                                         "$MICRODRAMA_PREVIEW_TOKEN, else a new random one, printed with the URL)")
    preview.add_argument("--hls-js", help="hls.js file to serve (default: $MICRODRAMA_HLS_JS, else the browser "
                                          "test's npm install, else the pinned CDN build)")
    collect = commands.add_parser("collect", help="serve the playback-event collector (POST /api/events)")
    for command in (preview, collect):
        command.add_argument("--host", default="127.0.0.1", help="interface to bind (default: loopback only)")
        command.add_argument("--port", type=int, default=8765)
    collect.add_argument("--allow-origin", action="append", default=[], dest="origins",
                         help="an origin whose players may send events (repeatable), e.g. https://app.example")
    stills.add_argument("--out", type=Path, help="folder for the JPEGs (default: the episode's stills/ folder)")
    for command in (episode, rerender):
        command.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                             help="shots rendered in parallel (default: one per CPU core)")
        command.add_argument("--codecs", help="video codecs of the ladder, comma-separated: h264 (always), hevc, "
                                              "av1 (default: MICRODRAMA_VIDEO_CODECS or h264)")
        command.add_argument("--publish-to", help="object store for the finished episode: file:///dir or "
                                                  "s3://bucket/prefix (default: MICRODRAMA_PUBLISH or "
                                                  "published/ under the data root)")
    approve.add_argument("--publish-to", help="object store to publish to (as for episode)")
    rerender.add_argument("episode_id")
    rerender.add_argument("--shot", action="append", required=True, dest="shots", help="shot id, e.g. s03 (repeatable)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    store = ArtifactStoreResource(root=default_data_root()).store()
    if args.command == "prune-cache":
        return _prune_cache(store, args.older_than_days)
    if args.command == "preview":
        from .preview import run_preview

        return run_preview(args)
    if args.command == "collect":
        return _collect(args)
    try:
        if args.command == "episode":
            logline = clean_logline(args.logline)
            _moderate_logline(logline)
            episode_id = check_id(args.episode_id, "episode id") if args.episode_id else episode_id_for(logline)
            check_options(args.shots, args.seed, args.duration)
            presets = Presets(args.caption_style, args.lighting, parse_cast(args.cast or ""), args.series,
                              args.music, args.ai_label,
                              check_id(args.learn_from, "episode id") if args.learn_from else None)
            presets.check(store)
        else:
            episode_id = check_id(args.episode_id, "episode id")
            for shot_id in getattr(args, "shots", []):
                check_id(shot_id, "shot id")
        if getattr(args, "workers", 1) < 1:
            raise BadRequest(f"--workers must be at least 1, got {args.workers}")
        codecs = [name.strip() for name in args.codecs.split(",")] if getattr(args, "codecs", None) else None
        if codecs:
            video_codecs(codecs)
        if getattr(args, "publish_to", None):
            open_object_store(args.publish_to, lambda: None)
    except (BadRequest, InvalidId, ValueError) as exc:
        print(f"microdrama: error: {exc}", file=sys.stderr)
        return 2
    if args.command == "stills":
        return _stills(store, episode_id, args.out)
    if args.command == "audit":
        return _audit(store, episode_id, args.sql, args.csv)
    if args.command == "simulate-viewers":
        return _simulate_viewers(store, episode_id, args)

    # Dagster is imported only once the input is known to be good: bad input fails fast.
    from dagster import DagsterError
    from .runner import EpisodeRunner, PipelineFailed, instance_for
    from .trust.provenance import ProvenanceError

    runner = EpisodeRunner(default_data_root(), instance_for(Path.cwd()), workers=getattr(args, "workers", 1),
                           video_codecs=codecs, publish_to=getattr(args, "publish_to", None),
                           progress=lambda message: print(f"microdrama: {message}", flush=True))
    try:
        if args.command == "approve":
            return _approve(runner, store, episode_id, args)
        if args.command == "engagement":
            return _engagement(runner, store, episode_id)
        if args.command == "episode":
            print(f"microdrama: episode {episode_id} -> {store.episode_dir(episode_id)}", flush=True)
            playlist = runner.make_episode(episode_id, logline, args.shots, args.seed, args.duration, presets)
        else:
            playlist = runner.render_and_assemble(episode_id, args.shots)
    except (BadRequest, ManifestError, StorageError, KeyError, PipelineFailed, DagsterError, ProvenanceError) as exc:
        print(f"microdrama: error: {str(exc).strip(chr(39))}", file=sys.stderr)
        return 1
    print(playlist)
    return 0


def _moderate_logline(logline: str) -> None:
    """Refuse a logline the moderation policy blocks before anything runs (the manifest check would stop it
    after planning; this says so at once)."""
    from .resources import TrustSettings
    from .trust.moderation import ModerationReport, TextItem, check_text

    report = ModerationReport(tuple(check_text(TrustSettings().policy(), [TextItem("logline", logline)])))
    if report.blocked:
        raise BadRequest(f"the logline is blocked by the moderation policy: {report.summary()}")


def _approve(runner, store: ArtifactStore, episode_id: str, args: argparse.Namespace) -> int:
    from .artifacts import EpisodeArtifacts
    from .trust.release_gate import ApprovalError, approve

    try:
        approval = approve(EpisodeArtifacts(store, episode_id), args.approver or getpass.getuser(), "cli",
                           args.version, args.note, runner.defs.resources["trust"].moderation_fingerprint())
    except (ApprovalError, ManifestError, StorageError) as exc:
        print(f"microdrama: error: {exc}", file=sys.stderr)
        return 1
    print(f"microdrama: {episode_id} version {approval.version} approved by {approval.approved_by}", flush=True)
    if args.no_publish:
        return 0
    print(runner.publish(episode_id))
    return 0


def _audit(store: ArtifactStore, episode_id: str, sql: str | None, as_csv: bool) -> int:
    from .audit import AuditError, AuditLog, query_audit

    log = AuditLog(store, episode_id)
    try:
        frame = log.frame()
        if sql:
            frame = query_audit(frame, sql)
    except (AuditError, StorageError, OSError, ValueError) as exc:
        print(f"microdrama: error: {exc}", file=sys.stderr)
        return 1
    for problem in log.verify():
        print(f"microdrama: warning: {problem}", file=sys.stderr)
    print(frame.to_csv(index=False) if as_csv else frame.to_string(index=False, max_colwidth=60))
    return 0


def _simulate_viewers(store: ArtifactStore, episode_id: str, args: argparse.Namespace) -> int:
    from .analytics.event_store import EventStoreError, open_event_store
    from .analytics.simulator import CollectorError, post_sessions, simulate_sessions, store_sessions
    from .artifacts import EpisodeArtifacts
    from .resources import AnalyticsSettings

    try:
        episode = EpisodeArtifacts(store, episode_id)
        delivery = store.read_json(episode.delivery_json, "delivery_manifest")
        events = simulate_sessions(delivery, args.viewers, args.seed, {shot: 3.0 for shot in args.weak_shots})
        if args.endpoint:
            result = post_sessions(events, args.endpoint)
        else:
            event_store = open_event_store(AnalyticsSettings().events)
            try:
                result = store_sessions(events, event_store)
            finally:
                event_store.close()
    except (StorageError, CollectorError, EventStoreError, ValueError) as exc:
        print(f"microdrama: error: {exc}", file=sys.stderr)
        return 1
    print(f"microdrama: {args.viewers} simulated sessions of {episode_id}: {result.accepted} events stored"
          + (f", {len(result.rejected)} rejected" if result.rejected else ""))
    return 0


def _collect(args: argparse.Namespace) -> int:
    from .analytics.collector import serve_collector
    from .analytics.event_store import open_event_store
    from .resources import AnalyticsSettings

    location = AnalyticsSettings().events
    print(f"microdrama: collecting playback events into {location} at http://{args.host}:{args.port}/api/events",
          flush=True)
    serve_collector(open_event_store(location), args.host, args.port, allowed_origins=tuple(args.origins))
    return 0


def _engagement(runner, store: ArtifactStore, episode_id: str) -> int:
    from .artifacts import EpisodeArtifacts

    runner.analyze(episode_id)
    payload = json.loads(EpisodeArtifacts(store, episode_id).suggestions_json.read_text(encoding="utf-8"))
    print(f"microdrama: {payload['sessions']} sessions ({payload['data_source']})")
    for number, suggestion in enumerate(payload["suggestions"], 1):
        print(f"{number}. {suggestion['message']}")
    if not payload["suggestions"]:
        print("no suggestions: too few sessions, or nothing stands out")
    return 0


def _prune_cache(store: ArtifactStore, older_than_days: float) -> int:
    if not older_than_days >= 0:
        print(f"microdrama: error: --older-than-days must be 0 or more, got {older_than_days}", file=sys.stderr)
        return 2
    removed = ArtifactCache(store).prune(older_than_days * 86400)
    print(f"microdrama: removed {removed} cache entries unused for {older_than_days:g} days")
    return 0


def _stills(store: ArtifactStore, episode_id: str, out: Path | None) -> int:
    """Contact sheet of every keyframe and one frame grab per shot from the master (mid-line, caption showing,
    when the shot has dialogue)."""
    from PIL import Image

    from .artifacts import EpisodeArtifacts
    from .media.stills import contact_sheet, grab_frames

    try:
        episode = EpisodeArtifacts(store, episode_id)
        manifest = episode.manifest()
        master = episode.store.require(episode.master_mp4, "episode_master")
        keyframes = [image for shot in manifest.shots for image in episode.shot(shot.id).keyframe_images()]
        grabs = grab_frames(master, [manifest.start_frame(s.id) + _telling_frame(episode.shot(s.id), s.frames)
                                     for s in manifest.shots])
    except (ManifestError, StorageError, ValueError, OSError) as exc:
        print(f"microdrama: error: {exc}", file=sys.stderr)
        return 1
    out = out or episode.directory / "stills"
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name, image in (("contact_sheet.jpg", contact_sheet(keyframes, tile_width=180, columns=6)),
                        ("frame_grabs.jpg", contact_sheet(grabs, tile_width=270, columns=len(grabs)))):
        path = out / name
        with episode.store.writing(path) as tmp:
            Image.fromarray(image).save(tmp, format="JPEG", quality=88)
        written.append(path)
    for path in written:
        print(path)
    return 0


def _telling_frame(shot: ShotArtifacts, frames: int) -> int:
    """The middle of the shot's first line (its caption on screen, its speaker mid-word), else the middle frame."""
    if shot.dialogue_json.is_file():
        lines = json.loads(shot.dialogue_json.read_text(encoding="utf-8"))["lines"]
        if lines:
            return min(frames - 1, round((lines[0]["start_s"] + lines[0]["duration_s"] / 2) * FPS))
    return frames // 2


if __name__ == "__main__":
    sys.exit(main())

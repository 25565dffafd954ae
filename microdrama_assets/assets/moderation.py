"""Moderation as blocking asset checks: the manifest's text before anything is drawn, each shot's keyframes before
they move. A blocked check stops the run's downstream steps, and its verdict (kept per subject, with the hash of
what was judged) is what the release gate reads, so a blocked or unchecked episode is never published."""

from dagster import AssetCheckExecutionContext, AssetCheckResult, MetadataValue

from ..artifacts import EpisodeArtifacts, read_gray, read_rgb
from ..partitions import episode_partitions, shot_partitions
from ..resources import ArtifactStoreResource, TrustSettings
from ..trust.moderation import ModerationReport, check_image, check_text, manifest_text_items
from ..trust.release_gate import ModerationVerdict, keyframes_subject, manifest_subject, record_verdict
from .common import partitioned_check, shot_context
from .keyframes import keyframes
from .planning import episode_manifest


def _verdict(context: AssetCheckExecutionContext, episode: EpisodeArtifacts, trust: TrustSettings, scope: str,
             subject_sha256: str, report: ModerationReport) -> AssetCheckResult:
    policy = trust.policy()
    # Which policy and classifiers judged: the same words under another policy may not pass, so a change of
    # either makes this verdict stale for the release gate.
    fingerprint = trust.moderation_fingerprint()
    record_verdict(episode, ModerationVerdict(scope, subject_sha256, not report.blocked, report.summary(),
                                              report.records(), fingerprint), f"run:{context.run.run_id}")
    return AssetCheckResult(passed=not report.blocked, metadata={
        "problems": report.summary() if report.blocked else "none",
        "flagged": "; ".join(v.describe() for v in report.flagged) or "none",
        "findings": MetadataValue.json(report.records()),
        "policy": f"{policy.name} (moderation fingerprint {fingerprint[:12]})",
    })


@partitioned_check(episode_manifest, episode_partitions, blocking=True)
def episode_manifest_passes_moderation(context: AssetCheckExecutionContext, store: ArtifactStoreResource,
                                       trust: TrustSettings) -> AssetCheckResult:
    """The logline, title, characters, every shot's action and every line of dialogue against the moderation
    policy's word lists and patterns, and its text classifier when one is configured. A blocking finding names
    where it is (``shot s03 line 2 (ivy)``) and the rule, and stops the episode before anything is drawn."""
    episode = EpisodeArtifacts(store.store(), context.partition_key)
    items = manifest_text_items(episode.manifest())
    report = ModerationReport(tuple(check_text(trust.policy(), items, trust.text_classifier())))
    return _verdict(context, episode, trust, "manifest", manifest_subject(episode), report)


@partitioned_check(keyframes, shot_partitions, blocking=True)
def keyframes_pass_moderation(context: AssetCheckExecutionContext, store: ArtifactStoreResource,
                              trust: TrustSettings) -> AssetCheckResult:
    """Every keyframe of the shot against the policy's image rules (the weights-free skin-exposure measure of each
    figure, and the image classifier when one is configured); a blocking finding names the keyframe and the rule
    and stops the shot's motion and everything after it."""
    located = shot_context(context, store)
    if located is None:
        return AssetCheckResult(passed=True, metadata={"skipped": "the episode has no such shot"})
    episode, _, shot, artifacts = located
    policy, classifier = trust.policy(), trust.image_classifier()
    violations = []
    for entry in artifacts.keyframe_layout()["keyframes"]:
        figures = {cid: read_gray(artifacts.keyframe_mask_path(entry["index"], cid)) for cid in entry["characters"]}
        violations += check_image(policy, read_rgb(artifacts.keyframe_path(entry["index"])),
                                  f"shot {shot.id} keyframe {entry['index']}", classifier, figures=figures)
    return _verdict(context, episode, trust, f"keyframes-{shot.id}", keyframes_subject(episode, shot.id),
                    ModerationReport(tuple(violations)))

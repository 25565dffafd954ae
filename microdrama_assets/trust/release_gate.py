"""The release gate: an episode is published only when moderation passed on exactly the manifest and keyframes it
is made from, and a person approved exactly the package being published (its content version, the same hash the
published version is named by). Approving a package approves those bytes, not the episode: after a re-render the
new package needs its own approval. Plain functions over the artifact store, free of Dagster."""

from __future__ import annotations

import hashlib
import json
import time
import unicodedata
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

from ..artifacts import EpisodeArtifacts
from ..audit import AuditLog
from ..media.manifest import EpisodeManifest, check_id
from ..publishing import PublishError, content_version, package_files
from ..storage import ArtifactStore, StorageError, sha256_of

APPROVAL_CHANNELS = ("cli", "preview")
MAX_APPROVER_CHARS = 80
MAX_NOTE_CHARS = 500


class ApprovalError(ValueError):
    """An approval that cannot be recorded; the message says why and what to do."""


@dataclass(frozen=True)
class Approval:
    episode_id: str
    version: str  # the package's content version (publishing.content_version)
    approved_by: str
    approved_at: float  # Unix time
    via: str  # cli or preview
    note: str = ""


@dataclass(frozen=True)
class ModerationVerdict:
    """What one moderation check decided about one subject (the manifest, or one shot's keyframes)."""
    scope: str  # "manifest" or "keyframes-<shot>"
    subject_sha256: str  # the bytes that were judged
    passed: bool
    summary: str
    violations: list[dict]
    policy_sha256: str  # what judged them: the policy and the classifiers (TrustSettings.moderation_fingerprint)


def package_version(episode: EpisodeArtifacts) -> str:
    """The content version of the package publishing would upload now (every published part's bytes)."""
    try:
        for part in episode.published_parts:
            episode.store.require(episode.directory / part, "delivery_manifest")
        return content_version(package_files(episode.directory, episode.published_parts))
    except (StorageError, PublishError) as exc:
        raise ApprovalError(f"episode {episode.episode_id} has no assembled package to review yet: {exc}") from None


# --- moderation verdicts ----------------------------------------------------------------------------------------

def manifest_subject(episode: EpisodeArtifacts) -> str:
    """What the text moderation judges: the manifest file's bytes."""
    return sha256_of(episode.store.require(episode.manifest_path, "episode_manifest"))


def keyframes_subject(episode: EpisodeArtifacts, shot_id: str) -> str:
    """What the image moderation judges: the shot's keyframe images, in order."""
    shot = episode.shot(shot_id)
    digest = hashlib.sha256()
    for keyframe in shot.keyframe_layout()["keyframes"]:
        path = episode.store.require(shot.keyframe_path(keyframe["index"]), "keyframes")
        digest.update(bytes.fromhex(sha256_of(path)))
    return digest.hexdigest()


def _verdict_path(episode: EpisodeArtifacts, scope: str) -> Path:
    return episode.directory / "moderation" / f"{check_id(scope, 'moderation scope')}.json"


def record_verdict(episode: EpisodeArtifacts, verdict: ModerationVerdict, actor: str) -> Path:
    """Keep the latest verdict per scope (what the gate reads) and append it to the audit log (the history)."""
    path = episode.store.write_json(_verdict_path(episode, verdict.scope), asdict(verdict))
    AuditLog(episode.store, episode.episode_id).append(
        "moderation", actor, scope=verdict.scope, passed=verdict.passed, content_hash=verdict.subject_sha256,
        summary=verdict.summary, violations=verdict.violations, policy_sha256=verdict.policy_sha256)
    return path


def verdict_state(episode: EpisodeArtifacts, scope: str, subject_sha256: str,
                  fingerprint: str | None = None) -> tuple[str, str]:
    """(state, summary) of moderation's latest verdict on a subject as it is now: ``unchecked``, ``stale`` (the
    subject changed since, or, given the current moderation ``fingerprint``, another policy or classifier judged
    it), ``blocked`` or ``passed``."""
    path = _verdict_path(episode, scope)
    if not episode.store.available(path):
        return "unchecked", ""
    verdict = json.loads(path.read_text(encoding="utf-8"))
    if verdict["subject_sha256"] != subject_sha256 or fingerprint not in (None, verdict["policy_sha256"]):
        return "stale", verdict["summary"]
    return ("passed" if verdict["passed"] else "blocked"), verdict["summary"]


def moderation_subjects(manifest: EpisodeManifest) -> list[tuple[str, str, Callable[[EpisodeArtifacts], str]]]:
    """(scope, what, how to hash it now) of everything moderation judges: the manifest and each shot's
    keyframes."""
    return [("manifest", "the manifest", manifest_subject)] + [
        (f"keyframes-{shot.id}", f"shot {shot.id}'s keyframes",
         lambda episode, shot_id=shot.id: keyframes_subject(episode, shot_id)) for shot in manifest.shots]


def moderation_blockers(episode: EpisodeArtifacts, manifest: EpisodeManifest,
                        fingerprint: str | None = None) -> list[str]:
    """Why moderation does not clear the episode as it is now: a subject never checked, changed since its check
    (or judged under another policy than ``fingerprint``), or blocked (empty: cleared)."""
    blockers = []
    for scope, what, subject in moderation_subjects(manifest):
        state, summary = verdict_state(episode, scope, subject(episode), fingerprint)
        if state == "unchecked":
            blockers.append(f"moderation has not checked {what}")
        elif state == "stale":
            blockers.append(f"{what} changed (or the moderation policy did) since moderation checked them")
        elif state == "blocked":
            blockers.append(f"moderation blocked {what}: {summary}")
    return blockers


# --- approvals --------------------------------------------------------------------------------------------------

def _approval_path(store: ArtifactStore, episode_id: str, version: str) -> Path:
    # One flat folder for every episode, so the publishing sensor finds new approvals with one listing.
    return store.path("approvals", f"{check_id(episode_id, 'episode id')}.{check_id(version, 'package version')}.json")


def _clean_text(value: str, what: str, limit: int, required: bool) -> str:
    value = unicodedata.normalize("NFC", value or "").strip()
    if required and not value:
        raise ApprovalError(f"{what} is empty: say who approves")
    if len(value) > limit:
        raise ApprovalError(f"{what} is longer than {limit} characters")
    if any(unicodedata.category(char) == "Cc" for char in value):
        raise ApprovalError(f"{what} contains control characters")
    return value


def approve(episode: EpisodeArtifacts, approved_by: str, via: str, reviewed_version: str | None = None,
            note: str = "", fingerprint: str | None = None) -> Approval:
    """Record a person's approval of the episode's current package. ``reviewed_version`` is the version they
    looked at (the preview page sends it): if the package has changed since, nothing is approved. A package
    moderation does not clear (under the moderation ``fingerprint``, when given) cannot be
    approved. Approving an approved version again returns the first
    approval."""
    approved_by = _clean_text(approved_by, "the approver's name", MAX_APPROVER_CHARS, required=True)
    note = _clean_text(note, "the note", MAX_NOTE_CHARS, required=False)
    if via not in APPROVAL_CHANNELS:
        raise ApprovalError(f"unknown approval channel {via!r}; expected one of {', '.join(APPROVAL_CHANNELS)}")
    version = package_version(episode)
    if reviewed_version is not None and reviewed_version != version:
        raise ApprovalError(f"episode {episode.episode_id} changed since it was reviewed: the reviewed package is "
                            f"version {reviewed_version}, the package now is {version}; review it again")
    blockers = moderation_blockers(episode, episode.manifest(), fingerprint)
    if blockers:
        raise ApprovalError(f"episode {episode.episode_id} cannot be approved: " + "; ".join(blockers))
    existing = approval_for(episode.store, episode.episode_id, version)
    if existing is not None:
        return existing
    approval = Approval(episode.episode_id, version, approved_by, time.time(), via, note)
    episode.store.write_json(_approval_path(episode.store, episode.episode_id, version), asdict(approval))
    AuditLog(episode.store, episode.episode_id).append(
        "approval", approved_by, content_hash=version, via=via, note=note)
    return approval


def approval_for(store: ArtifactStore, episode_id: str, version: str) -> Approval | None:
    path = _approval_path(store, episode_id, version)
    if not store.available(path):
        return None
    return Approval(**json.loads(path.read_text(encoding="utf-8")))


def approvals(store: ArtifactStore, episode_id: str | None = None) -> list[Approval]:
    """Every recorded approval (of one episode, or of all), oldest first."""
    folder = store.mirror_folder(store.path("approvals"))
    pattern = f"{check_id(episode_id, 'episode id')}.*.json" if episode_id else "*.json"
    found = [Approval(**json.loads(path.read_text(encoding="utf-8"))) for path in folder.glob(pattern)]
    return sorted(found, key=lambda approval: approval.approved_at)


def publish_blockers(episode: EpisodeArtifacts, manifest: EpisodeManifest, version: str,
                     fingerprint: str | None = None) -> list[str]:
    """Why the package at ``version`` may not be published (empty: it may)."""
    blockers = moderation_blockers(episode, manifest, fingerprint)
    if approval_for(episode.store, episode.episode_id, version) is None:
        approved = [a.version for a in approvals(episode.store, episode.episode_id)]
        blockers.append(
            f"package version {version} is not approved"
            + (f" (approved: {', '.join(approved)}, which the package no longer is)" if approved else "")
            + f"; review it and run `microdrama approve {episode.episode_id}` or approve it on the preview page")
    return blockers

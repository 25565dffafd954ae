"""From an episode's engagement to concrete changes for the next episode, and guidance the planner can take.

Each rule looks for one problem a viewer feels and proposes one change; a suggestion is made only when the data
is strong enough that chance is an unlikely explanation:

- **A shot that loses viewers** (any shot after the first): its leave rate (leavers per second watched) against
  the rate of the other later shots, tested as a Poisson count (the p-value split over the shots tested). A
  shot flagged at least SHOT_EXCESS_RATIO times the baseline, losing at least MIN_EXCESS_SHARE of all viewers
  beyond it, is *shortened* when its leavers stay for most of it (half of them leave in its second half: it
  drags), to the half second before half of them had gone but never below what its dialogue needs; otherwise
  it is *re-hooked* (viewers leave soon after the cut: the shot opens weakly).
- **A weak opening**: the first shot always loses the most (viewers swiping away), so it is held to a
  benchmark instead: more than HOOK_DROP_BENCHMARK of the audience leaving during it (a one-sided binomial
  test) means a stronger hook: open on the first line, and keep the hook short.
- **Rebuffering** above REBUFFER_BENCHMARK of watch time: shorter segments, naming the rendition that stalls.
- **Low completion** below COMPLETION_BENCHMARK: a shorter episode, ending at the last whole second at which
  half the viewers were still watching.

Suggestions are ranked by ``impact``: the estimated share of all viewers the change would keep.
"""

from __future__ import annotations

import math
from typing import Iterator, Literal, Optional, Union

from pydantic import BaseModel, ConfigDict, Field
from scipy.stats import binomtest, poisson

from ..media.manifest import Beat, EpisodeManifest, Shot, parse_manifest
from ..media.planner import estimate_dialogue_s
from .engagement import EngagementReport, ShotEngagement

MIN_SESSIONS = 30  # below this, every share moves by several points with one viewer
SIGNIFICANCE = 0.01
SHOT_EXCESS_RATIO = 1.75
MIN_EXCESS_SHARE = 0.02
HOOK_DROP_BENCHMARK = 0.25
HOOK_MAX_S = 3.0
REBUFFER_BENCHMARK = 0.01
MIN_STALLED_SESSIONS = 5
COMPLETION_BENCHMARK = 0.5
SHORTER_SEGMENT_S = 1.0  # the shortest segment the encode settings allow (resources.EncodeSettings)
MIN_SHOT_S = 1.0  # the manifest's shortest shot

SuggestionKind = Literal["stronger_opening", "rehook_shot", "shorten_shot", "reduce_rebuffering", "shorter_episode"]


class SuggestionError(ValueError):
    """A report and a manifest that are not of the same episode."""


class Suggestion(BaseModel):
    """One change for the next episode. ``change`` holds the planner-facing settings (see planner_guidance):
    ``beat`` with ``max_duration_s`` / ``rehook`` / ``open_with_dialogue`` for a shot, ``hook_first_line``,
    ``target_duration_s``; or the encoding settings ``segment_duration_s`` and ``stall_rendition``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: SuggestionKind
    shot_id: Optional[str] = None
    beat: Optional[Beat] = None
    impact: float = Field(ge=0.0, le=1.0)
    evidence: dict[str, float]
    change: dict[str, Union[bool, float, str]]
    message: str


def _half_up(seconds: float) -> float:
    return math.ceil(seconds * 2 - 1e-9) / 2


def _half_down(seconds: float) -> float:
    return math.floor(seconds * 2 + 1e-9) / 2


def _line(shot: Shot) -> str | None:
    return f"\u201c{shot.dialogue[0].text}\u201d" if shot.dialogue else None


def _weak_opening(report: EngagementReport, manifest: EpisodeManifest) -> Iterator[Suggestion]:
    engaged, shot = report.shots[0], manifest.shots[0]
    if engaged.drop_off is None or engaged.drop_off <= HOOK_DROP_BENCHMARK:
        return
    p_value = binomtest(engaged.leavers, engaged.entered, HOOK_DROP_BENCHMARK, alternative="greater").pvalue
    if p_value >= SIGNIFICANCE:
        return
    # Short, unless its dialogue needs longer.
    hook_s = max(HOOK_MAX_S, _half_up(estimate_dialogue_s(shot.dialogue, manifest.characters)))
    change: dict = {"beat": shot.beat.value, "hook_first_line": True}
    keep_short = ""
    if hook_s < shot.duration_s:
        change["max_duration_s"] = hook_s
        keep_short = f" and keep it to {hook_s:.1f} s (now {shot.duration_s:.1f} s)"
    opening = f"on its line {_line(shot)}" if shot.dialogue else "on the episode's most striking line or image"
    yield Suggestion(
        kind="stronger_opening", shot_id=shot.id, beat=shot.beat,
        impact=(engaged.drop_off - HOOK_DROP_BENCHMARK) * engaged.entered / report.sessions,
        evidence={"drop_off": engaged.drop_off, "benchmark": HOOK_DROP_BENCHMARK, "leavers": engaged.leavers,
                  "p_value": p_value, "median_leave_offset_s": engaged.median_leave_offset_s or 0.0},
        change=change,
        message=(f"Open stronger: {engaged.drop_off:.0%} of viewers leave during the hook {shot.id} (a good hook "
                 f"loses under {HOOK_DROP_BENCHMARK:.0%}), half of them within {engaged.median_leave_offset_s:.1f} s; "
                 f"start {shot.id} {opening} rather than easing in{keep_short}."),
    )


def _fix_for(engaged: ShotEngagement, shot: Shot, manifest: EpisodeManifest, report: EngagementReport,
             baseline: float, expected: float, p_value: float) -> Suggestion:
    offset = engaged.median_leave_offset_s or 0.0
    ratio = engaged.leave_rate_per_s / baseline if baseline else math.inf
    evidence = {"drop_off": engaged.drop_off, "leave_rate_per_s": engaged.leave_rate_per_s,
                "baseline_leave_rate_per_s": baseline, "leavers": engaged.leavers, "expected_leavers": expected,
                "p_value": p_value, "median_leave_offset_s": offset, "duration_s": shot.duration_s}
    impact = (engaged.leavers - expected) / report.sessions
    how_much = (f"{engaged.drop_off:.0%} of the viewers who reach {shot.id} ({shot.beat.value}) leave during it, "
                + (f"{ratio:.1f}x the rate of the other shots" if baseline else "where the other shots lose nobody"))
    shortened = max(MIN_SHOT_S, _half_up(estimate_dialogue_s(shot.dialogue, manifest.characters)), _half_down(offset))
    if offset >= shot.duration_s / 2 and shortened <= shot.duration_s - 0.5:
        return Suggestion(
            kind="shorten_shot", shot_id=shot.id, beat=shot.beat, impact=impact, evidence=evidence,
            change={"beat": shot.beat.value, "max_duration_s": shortened},
            message=(f"Shorten {shot.id} from {shot.duration_s:.1f} s to {shortened:.1f} s: {how_much}, half of "
                     f"them only after {offset:.1f} s, as it drags."))
    opening = f"on its line {_line(shot)}" if shot.dialogue else "on a stronger beat (an action, a reveal, a face)"
    return Suggestion(
        kind="rehook_shot", shot_id=shot.id, beat=shot.beat, impact=impact, evidence=evidence,
        change={"beat": shot.beat.value, "rehook": True, "open_with_dialogue": bool(shot.dialogue)},
        message=(f"Re-hook {shot.id}: {how_much}, half of them within its first {offset:.1f} s; open it {opening} "
                 f"instead of a slow build-up."))


def _shots_that_lose_viewers(report: EngagementReport, manifest: EpisodeManifest) -> Iterator[Suggestion]:
    later = [(engaged, shot) for engaged, shot in zip(report.shots[1:], manifest.shots[1:]) if engaged.exposure_s > 0]
    if len(later) < 2:  # no other shot to compare with
        return
    threshold = SIGNIFICANCE / len(later)
    for engaged, shot in later:
        others = [e for e, _ in later if e is not engaged]
        baseline = sum(e.leavers for e in others) / sum(e.exposure_s for e in others)
        expected = baseline * engaged.exposure_s
        # P(at least this many leavers) were this shot no worse than the others
        p_value = float(poisson.sf(engaged.leavers - 1, expected)) if expected > 0 else float(engaged.leavers == 0)
        if (engaged.leavers >= SHOT_EXCESS_RATIO * expected and p_value < threshold
                and (engaged.leavers - expected) / report.sessions >= MIN_EXCESS_SHARE):
            yield _fix_for(engaged, shot, manifest, report, baseline, expected, p_value)


def _rebuffering(report: EngagementReport) -> Iterator[Suggestion]:
    if (report.rebuffer_ratio is None or report.rebuffer_ratio <= REBUFFER_BENCHMARK
            or report.sessions_with_stalls < MIN_STALLED_SESSIONS):
        return
    stalled_share = report.sessions_with_stalls / report.sessions
    with_stalls, without = report.completion_with_stalls or 0.0, report.completion_without_stalls or 0.0
    worst = max(report.stall_s_by_rendition, key=report.stall_s_by_rendition.get)
    yield Suggestion(
        kind="reduce_rebuffering", impact=stalled_share * max(0.0, without - with_stalls),
        evidence={"rebuffer_ratio": report.rebuffer_ratio, "benchmark": REBUFFER_BENCHMARK,
                  "stalled_share": stalled_share, "completion_with_stalls": with_stalls,
                  "completion_without_stalls": without},
        change={"segment_duration_s": SHORTER_SEGMENT_S, "stall_rendition": worst},
        message=(f"Cut rebuffering: {report.rebuffer_ratio:.1%} of watch time is spent stalled (aim under "
                 f"{REBUFFER_BENCHMARK:.0%}); {stalled_share:.0%} of sessions stall and complete {with_stalls:.0%} "
                 f"against {without:.0%}; most stall time is on {worst}. Encode {SHORTER_SEGMENT_S:.0f}-second "
                 f"segments so the player steps down a rung sooner."),
    )


def _low_completion(report: EngagementReport, manifest: EpisodeManifest) -> Iterator[Suggestion]:
    if report.completion_rate is None or report.completion_rate >= COMPLETION_BENCHMARK:
        return
    half_gone = next((p.t_s for p in report.retention if p.watching < COMPLETION_BENCHMARK), report.duration_s)
    # End at the last whole second at which at least half the viewers were still watching (retention starts at 1).
    half_left = max(p.t_s for p in report.retention if p.watching >= COMPLETION_BENCHMARK)
    target = max(MIN_SHOT_S * len(manifest.shots), float(math.floor(half_left)))
    yield Suggestion(
        kind="shorter_episode", impact=COMPLETION_BENCHMARK - report.completion_rate,
        evidence={"completion_rate": report.completion_rate, "benchmark": COMPLETION_BENCHMARK,
                  "half_gone_at_s": half_gone, "duration_s": report.duration_s},
        change={"target_duration_s": target},
        message=(f"Make the next episode shorter: {report.completion_rate:.0%} finish this "
                 f"{report.duration_s:.0f}-second episode and half the viewers are gone by {half_gone:.0f} s; "
                 f"aim for about {target:.0f} s."),
    )


def next_episode_suggestions(report: EngagementReport, manifest: EpisodeManifest | dict) -> list[Suggestion]:
    """Concrete changes for the next episode from this one's engagement, most valuable first (the rules are in
    the module docstring). Empty when nothing stands out, or with fewer than MIN_SESSIONS sessions."""
    manifest = manifest if isinstance(manifest, EpisodeManifest) else parse_manifest(manifest)
    if report.episode_id != manifest.episode_id or [s.shot_id for s in report.shots] != manifest.shot_ids:
        raise SuggestionError(f"the report of {report.episode_id} (shots {[s.shot_id for s in report.shots]}) does "
                              f"not match the manifest of {manifest.episode_id} (shots {manifest.shot_ids})")
    if report.sessions < MIN_SESSIONS:
        return []
    found = [*_weak_opening(report, manifest), *_shots_that_lose_viewers(report, manifest),
             *_rebuffering(report), *_low_completion(report, manifest)]
    return sorted(found, key=lambda suggestion: suggestion.impact, reverse=True)


class BeatGuidance(BaseModel):
    """What to change about the shot(s) of one beat."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    max_duration_s: Optional[float] = Field(default=None, ge=MIN_SHOT_S, le=20.0)
    rehook: bool = False  # open the shot on a stronger moment than a slow build-up
    open_with_dialogue: bool = False  # start the shot on its line


class PlannerGuidance(BaseModel):
    """What the planner should do differently in the next episode. Keyed by beat, not shot ID: the next
    episode's shots are new, but it follows the same arc."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    schema_version: Literal[1] = 1
    hook_first_line: bool = False  # open the episode on its first line of dialogue
    target_duration_s: Optional[float] = Field(default=None, gt=0.0)
    beats: dict[Beat, BeatGuidance] = Field(default_factory=dict)
    reasons: list[str] = Field(default_factory=list)  # the suggestions behind it, for people


def planner_guidance(suggestions: list[Suggestion]) -> dict:
    """The planner's share of ``suggestions`` as a PlannerGuidance dict (JSON-ready; PlannerGuidance parses it
    back). Encoding suggestions (rebuffering) are left out; several for one beat merge to the strictest."""
    guidance = PlannerGuidance()
    for suggestion in suggestions:
        change = suggestion.change
        if suggestion.kind == "reduce_rebuffering":
            continue
        guidance.hook_first_line |= bool(change.get("hook_first_line", False))
        if "target_duration_s" in change:
            guidance.target_duration_s = min(filter(None, [guidance.target_duration_s, change["target_duration_s"]]))
        if "beat" in change:
            beat = guidance.beats.setdefault(Beat(change["beat"]), BeatGuidance())
            if "max_duration_s" in change:
                beat.max_duration_s = min(filter(None, [beat.max_duration_s, change["max_duration_s"]]))
            beat.rehook |= bool(change.get("rehook", False))
            beat.open_with_dialogue |= bool(change.get("open_with_dialogue", False))
        guidance.reasons.append(suggestion.message)
    return guidance.model_dump(mode="json")


def apply_guidance(manifest: EpisodeManifest, guidance: PlannerGuidance) -> tuple[EpisodeManifest, list[str]]:
    """A plan with the guidance's shot-length caps applied, and what was changed or left: each shot of a beat
    with ``max_duration_s`` is cut to it, never below what its dialogue needs. Re-hooks and dialogue-first
    openings are choices about a shot's content, which only the planner that wrote it can make: they are
    reported as left to the planner."""
    shots, notes = [], []
    for shot in manifest.shots:
        beat = guidance.beats.get(shot.beat)
        cap = beat.max_duration_s if beat is not None else None
        if cap is not None and shot.duration_s > cap:
            needed = estimate_dialogue_s(shot.dialogue, manifest.characters)
            shortened = round(max(cap, needed, MIN_SHOT_S), 2)
            if shortened < shot.duration_s:
                notes.append(f"{shot.id} ({shot.beat.value}) shortened from {shot.duration_s:.1f}s to "
                             f"{shortened:.1f}s")
                shot = shot.model_copy(update={"duration_s": shortened})
        shots.append(shot)
    left = [f"{beat.value}: {what}" for beat, rule in guidance.beats.items()
            for what, wanted in (("re-hook", rule.rehook), ("open with dialogue", rule.open_with_dialogue)) if wanted]
    if guidance.hook_first_line:
        left.append("open the episode on its first line")
    notes += [f"left to the planner: {item}" for item in left]
    return EpisodeManifest.model_validate(manifest.model_copy(update={"shots": shots}).model_dump()), notes

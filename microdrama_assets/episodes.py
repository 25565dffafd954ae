"""Episode requests: a logline waiting to become an episode, written by the CLI and the loglines sensor."""

from __future__ import annotations

import hashlib
import re
import unicodedata

from .artifacts import EpisodeArtifacts
from .media.manifest import CaptionLook, Mood, check_id
from .storage import ArtifactStore

MAX_LOGLINE_CHARS = 500
MAX_SHOTS = 40
SECONDS_PER_SHOT = 5.0
MAX_DURATION_S = 600.0


class BadRequest(ValueError):
    """A logline, episode ID or option that cannot become an episode."""


def clean_logline(text: str) -> str:
    # Control characters (other than whitespace) never belong in a logline; they would reach captions and prompts.
    cleaned = "".join(ch for ch in text if unicodedata.category(ch)[0] != "C" or ch in "\t\n")
    cleaned = " ".join(cleaned.split())
    if not cleaned:
        raise BadRequest("logline is empty")
    if len(cleaned) > MAX_LOGLINE_CHARS:
        raise BadRequest(f"logline is {len(cleaned)} characters; the limit is {MAX_LOGLINE_CHARS}")
    return cleaned


def episode_id_for(logline: str) -> str:
    """A readable, stable ID: the logline's first words as a slug plus a short hash of the whole logline."""
    ascii_words = unicodedata.normalize("NFKD", logline).encode("ascii", "ignore").decode().lower()
    slug = "-".join(re.findall(r"[a-z0-9]+", ascii_words)[:5])[:40].strip("-") or "episode"
    digest = hashlib.sha256(logline.encode("utf-8")).hexdigest()[:6]
    return f"{slug}-{digest}"


def check_options(shots: int, seed: int, duration_s: float | None) -> float:
    """Validate episode options; returns the target duration (default: 5 s per shot)."""
    if not 1 <= shots <= MAX_SHOTS:
        raise BadRequest(f"shots must be between 1 and {MAX_SHOTS}, got {shots}")
    if not 0 <= seed < 2**31:
        raise BadRequest(f"seed must be between 0 and {2**31 - 1}, got {seed}")
    duration_s = SECONDS_PER_SHOT * shots if duration_s is None else duration_s
    if not shots * 1.0 <= duration_s <= MAX_DURATION_S:
        raise BadRequest(f"duration must be between {shots} s (1 s per shot) and {MAX_DURATION_S:g} s, got {duration_s:g}")
    return duration_s


def check_presets(caption_style: str | None, lighting: str | None) -> None:
    """Named presets: a caption style and a lighting mood for the whole episode."""
    if caption_style is not None and caption_style not in {c.value for c in CaptionLook}:
        raise BadRequest(f"unknown caption style {caption_style!r}; choose one of {', '.join(c.value for c in CaptionLook)}")
    if lighting is not None and lighting not in {m.value for m in Mood}:
        raise BadRequest(f"unknown lighting mood {lighting!r}; choose one of {', '.join(m.value for m in Mood)}")


def write_request(store: ArtifactStore, episode_id: str, logline: str, shots: int, seed: int, source: str,
                  duration_s: float | None = None, caption_style: str | None = None,
                  lighting: str | None = None) -> dict:
    try:
        check_id(episode_id, "episode id")
    except ValueError as exc:
        raise BadRequest(str(exc)) from None
    duration_s = check_options(shots, seed, duration_s)
    check_presets(caption_style, lighting)
    request = {"logline": clean_logline(logline), "shots": shots, "seed": seed, "duration_s": duration_s,
               "caption_style": caption_style, "lighting": lighting, "source": source}
    store.write_json(EpisodeArtifacts(store, episode_id).request, request)
    return request

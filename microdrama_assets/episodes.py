"""Episode requests: a logline waiting to become an episode, written by the CLI and the loglines sensor."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import unicodedata
from dataclasses import dataclass
from pathlib import Path

from .audit import AuditLog
from .artifacts import EpisodeArtifacts
from .casting import CastingError, check_cast
from .media.manifest import CaptionLook, Mood, check_id
from .storage import ArtifactStore

MAX_LOGLINE_CHARS = 500
MAX_SHOTS = 40
SECONDS_PER_SHOT = 5.0
MAX_DURATION_S = 600.0
MAX_MUSIC_BYTES = 200 * 2**20


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


@dataclass(frozen=True)
class Presets:
    """Named choices for an episode: caption style, one lighting mood, character cards, a series to belong to,
    a music file of the user's own, whether every frame carries a visible "AI-generated" label, and an earlier
    episode whose viewers' behaviour guides the plan."""

    caption_style: str | None = None
    lighting: str | None = None
    cast: tuple[str, ...] = ()
    series: str | None = None
    music: Path | None = None
    ai_label: bool = False
    learn_from: str | None = None  # an earlier episode whose next_episode_suggestions guide the plan

    def check(self, store: ArtifactStore) -> None:
        """BadRequest naming the first choice that cannot be honoured."""
        _guidance_from(store, self.learn_from)
        if self.caption_style is not None and self.caption_style not in {c.value for c in CaptionLook}:
            raise BadRequest(f"unknown caption style {self.caption_style!r}; choose one of "
                             f"{', '.join(c.value for c in CaptionLook)}")
        if self.lighting is not None and self.lighting not in {m.value for m in Mood}:
            raise BadRequest(f"unknown lighting mood {self.lighting!r}; choose one of "
                             f"{', '.join(m.value for m in Mood)}")
        try:
            if self.series is not None:
                check_id(self.series, "series id")
            check_cast(store, list(self.cast))
        except (CastingError, ValueError) as exc:
            raise BadRequest(str(exc)) from None
        if self.music is not None:
            check_music_file(self.music)


def parse_cast(text: str) -> tuple[str, ...]:
    """``"mara, theo"`` -> ("mara", "theo")."""
    return tuple(part.strip().lower() for part in text.split(",") if part.strip())


def check_music_file(path: Path) -> None:
    """The file must hold audio the mix can decode (its first second is decoded the same way the mix will)."""
    from .media.audio_mix import SAMPLE_RATE, AudioFileError, decode_audio_file

    if path.is_file() and path.stat().st_size > MAX_MUSIC_BYTES:
        raise BadRequest(f"music file {path} is larger than {MAX_MUSIC_BYTES // 2**20} MiB")
    try:
        decode_audio_file(path, max_samples=SAMPLE_RATE)
    except AudioFileError as exc:
        raise BadRequest(f"music file {exc}") from None


def _music_input_name(path: Path) -> str:
    # The stored copy keeps the extension (a hint for FFmpeg's probe) only when it is a plain one.
    suffix = path.suffix.lower()
    return "music" + (suffix if re.fullmatch(r"\.[a-z0-9]{1,5}", suffix) else "")


def _guidance_from(store: ArtifactStore, episode_id: str | None) -> dict | None:
    """The planner guidance of an earlier episode's next_episode_suggestions, with where it came from."""
    if episode_id is None:
        return None
    path = EpisodeArtifacts(store, episode_id).suggestions_json
    if not store.available(path):
        raise BadRequest(f"episode {episode_id} has no next_episode_suggestions yet: run `microdrama engagement "
                         f"{episode_id}` once it has viewers")
    suggestions = json.loads(path.read_text(encoding="utf-8"))
    return {"from_episode": episode_id, **suggestions["planner_guidance"]}


def write_request(store: ArtifactStore, episode_id: str, logline: str, shots: int, seed: int, source: str,
                  duration_s: float | None = None, presets: Presets = Presets()) -> dict:
    try:
        check_id(episode_id, "episode id")
    except ValueError as exc:
        raise BadRequest(str(exc)) from None
    duration_s = check_options(shots, seed, duration_s)
    presets.check(store)
    episode = EpisodeArtifacts(store, episode_id)
    music = None
    if presets.music is not None:
        # Copied in, so the episode re-renders the same even if the user's file moves or changes.
        music = _music_input_name(presets.music)
        with store.writing(episode.input_file(music)) as tmp:
            shutil.copyfile(presets.music, tmp)
    request = {"logline": clean_logline(logline), "shots": shots, "seed": seed, "duration_s": duration_s,
               "caption_style": presets.caption_style, "lighting": presets.lighting, "cast": list(presets.cast),
               "series": presets.series, "music": music, "ai_label": presets.ai_label,
               "guidance": _guidance_from(store, presets.learn_from), "source": source}
    store.write_json(episode.request, request)
    AuditLog(store, episode_id).append("request", source, request=request)
    return request

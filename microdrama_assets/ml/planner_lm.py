"""The planner on a local causal language model (transformers), decoding under the manifest's JSON Schema.

The model writes the story: title, characters (name, role, description) and, per shot, duration, camera, action,
mood, framing, location, time of day, who is on screen and what they say. The platform keeps what it owns: IDs,
seeds, the beat arc (hook first, cliffhanger last), and each invented character's look and voice (drawn like the
embedded planner's, so characters stay distinguishable). Speakers can only be characters on screen in that shot,
because the decoder offers nothing else.

After decoding, semantic checks run with deterministic repairs where the platform can make them (durations fitted to
the target in whole frames, a reply too long for any shot dropped, characters never seen dropped); what only the
model can fix (lines that need more time than the episode has, repeated lines) goes back to it with the problems
named, for at most ``attempts`` tries, then fails saying what was wrong.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from pydantic import ValidationError
from transformers import AutoModelForCausalLM, AutoTokenizer

from ..audit import ModelCall, weights_sha256
from ..backends import ModelSettings
from ..media.manifest import (FPS, MAX_CHARACTERS, Beat, Character, DialogueLine, EpisodeManifest, check_id,
                              validation_problems)
from ..media.planner import (LEAD_IN_S, MAX_SHOT_FRAMES, MIN_SHOT_FRAMES, SPEECH_MARGIN, TAIL_S, arc_beats,
                             clean_logline, detect_language, dress_characters, estimate_dialogue_s, shot_seed,
                             within_longest_shot)
from ..media.storyboard import stable_seed
from .json_decoding import NOT_PINNED, DecodingBudgetExceeded, SchemaDecoder, Steering, TokenTable
from .runtime import load_once, pick_device, pick_dtype, require_model, seeded_generator

# Properties the platform fills in; the model never writes them.
_PLATFORM_OWNED = {
    (): {"schema_version", "episode_id", "logline", "language", "seed", "fps", "width", "height", "caption_style"},
    ("characters", "*"): {"appearance", "voice"},
    ("shots", "*"): {"keyframes", "seed"},
}
# Tighter than the schema's limits: a vertical episode's captions are read on a phone, and a short budget keeps a
# weak model from rambling to the limit.
_TEXT_LIMITS = {
    ("title",): 60,
    ("characters", "*", "name"): 24,
    ("characters", "*", "role"): 24,
    ("characters", "*", "description"): 160,
    ("shots", "*", "action"): 160,
}
_MAX_LINES_PER_SHOT = 2
_SLOWEST_WPM = 150  # the slowest espeak rate the planner gives a voice
_CHARS_PER_WORD = 6  # with the space after it
_DURATION_STEP_S = 0.5
_OVERRUN = 1.1  # dialogue may stretch the episode by 10 % past its target, as the embedded planner allows
_LANGUAGE_NAMES = {"en": "English", "es": "Spanish"}
_SETTING = "planner_model (MICRODRAMA_PLANNER_MODEL)"


class PlannerError(RuntimeError):
    """The model gave no usable shot list within the allowed attempts; the message lists the last problems."""


@dataclass(frozen=True)
class _Loaded:
    model: object
    tokenizer: object
    table: TokenTable


@dataclass(frozen=True)
class Request:
    logline: str
    episode_id: str
    shots: int
    seed: int
    duration_s: float
    language: str
    cast: tuple[Character, ...]
    beats: tuple[Beat, ...]


class TransformersPlanner:
    name = "transformers"

    def __init__(self, settings: ModelSettings, attempts: int = 3, temperature: float = 0.8, budget_tokens: int = 8000):
        self.settings = settings
        self.attempts = attempts
        self.temperature = temperature
        self.budget_tokens = budget_tokens
        self._calls: list[ModelCall] = []

    def take_calls(self) -> list[ModelCall]:
        calls, self._calls = self._calls, []
        return calls

    def _load(self) -> tuple[_Loaded, Path, object]:
        path = require_model(self.settings.planner_model, "planner", _SETTING,
                             "a transformers causal LM directory (config.json, weights, tokenizer files)",
                             needs=("config.json",))
        device = pick_device(self.settings.device)

        def load() -> _Loaded:
            tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
            model = AutoModelForCausalLM.from_pretrained(path, dtype=pick_dtype(device), local_files_only=True)
            return _Loaded(model.to(device).eval(), tokenizer, TokenTable(tokenizer))

        return load_once("planner-lm", path, device, load), path, device

    def plan(self, logline: str, episode_id: str, shots: int, seed: int, duration_s: float,
             cast: Sequence[Character] = ()) -> EpisodeManifest:
        check_id(episode_id, "episode id")
        if not duration_s > 0:
            raise ValueError(f"duration_s must be a positive number of seconds, got {duration_s!r}")
        if len(cast) > MAX_CHARACTERS:
            raise ValueError(f"cast must be at most {MAX_CHARACTERS} characters, got {[c.id for c in cast]}")
        text = clean_logline(logline)
        request = Request(text, episode_id, shots, seed, duration_s, detect_language(text), tuple(cast),
                          tuple(arc_beats(shots)))
        loaded, path, device = self._load()
        decoder = SchemaDecoder(loaded.table, EpisodeManifest.model_json_schema(), _steering(request))
        problems: list[str] = []
        for attempt in range(1, self.attempts + 1):
            prompt = build_prompt(request, problems)
            attempt_seed = stable_seed(seed, "planner", attempt) % 2**31
            try:
                draft = decoder.decode(loaded.model, _prompt_ids(loaded.tokenizer, prompt),
                                       seeded_generator(device, attempt_seed), self.temperature, self.budget_tokens)
                manifest, problems = assemble(draft, request)
            except DecodingBudgetExceeded as exc:
                manifest, problems = None, [str(exc)]
            self._calls.append(ModelCall(
                stage="planner", backend=self.name, model=str(path), weights_sha256=weights_sha256(path),
                device=str(device), seed=attempt_seed, prompt=prompt,
                params={"attempt": attempt, "temperature": self.temperature, "budget_tokens": self.budget_tokens,
                        "tokens": decoder.session.generated, "problems": problems}))
            if manifest is not None and not problems:
                return manifest
        raise PlannerError(f"the planner model gave no usable shot list in {self.attempts} attempts; last problems: "
                           + "; ".join(problems))


def _shape(path: tuple) -> tuple:
    return tuple("*" if isinstance(p, int) else p for p in path)


def _line_chars(duration_s: float) -> int:
    """Characters a line can have and still be spoken in a shot of ``duration_s`` at the slowest voice."""
    words = (duration_s / SPEECH_MARGIN - LEAD_IN_S - TAIL_S) * _SLOWEST_WPM / 60
    return max(8, min(120, int(words * _CHARS_PER_WORD)))


def _steering(request: Request) -> Steering:
    cast = request.cast

    def skipped(path: tuple) -> bool:
        return path[-1] in _PLATFORM_OWNED.get(_shape(path[:-1]), set())

    def pinned(path: tuple, doc: dict):
        shape = _shape(path)
        if shape == ("characters", "*") and path[1] < len(cast):
            card = cast[path[1]]
            return {"id": card.id, "name": card.name, "role": card.role, "description": card.description}
        if shape == ("characters", "*", "id"):
            return f"c{path[1] + 1}"  # renamed after the name the model writes
        if shape == ("shots", "*", "id"):
            return f"s{path[1] + 1:02d}"
        if shape == ("shots", "*", "beat"):
            return request.beats[path[1]].value
        return NOT_PINNED

    def choices(path: tuple, doc: dict) -> list | None:
        shape = _shape(path)
        if shape == ("shots", "*", "characters", "*"):
            on_screen = doc["shots"][path[1]]["characters"]
            return [c["id"] for c in doc["characters"] if c["id"] not in on_screen]
        if shape == ("shots", "*", "dialogue", "*", "speaker"):
            return list(doc["shots"][path[1]]["characters"])
        return None

    def limits(path: tuple, doc: dict) -> dict:
        shape = _shape(path)
        if shape == ("characters",):
            return {"minItems": max(1, len(cast)), "maxItems": MAX_CHARACTERS}
        if shape == ("shots",):
            return {"minItems": request.shots, "maxItems": request.shots}
        if shape == ("shots", "*", "characters"):
            # The hook opens on someone; no shot lists more people than the episode has.
            return {"minItems": 1 if path[1] == 0 else 0, "maxItems": min(3, len(doc["characters"]))}
        if shape == ("shots", "*", "dialogue"):
            return {"maxItems": _MAX_LINES_PER_SHOT if doc["shots"][path[1]]["characters"] else 0}
        if shape == ("shots", "*", "dialogue", "*", "text"):
            return {"maxLength": _line_chars(doc["shots"][path[1]]["duration_s"])}
        if shape == ("shots", "*", "duration_s"):
            return {"multipleOf": _DURATION_STEP_S}
        if shape in _TEXT_LIMITS:
            return {"maxLength": _TEXT_LIMITS[shape]}
        return {}

    return Steering(pinned=pinned, skipped=skipped, choices=choices, limits=limits)


def build_prompt(request: Request, problems: Sequence[str]) -> str:
    beats = ", ".join(f"s{i + 1:02d} {beat.value}" for i, beat in enumerate(request.beats))
    lines = [
        "You are a showrunner writing a vertical (9:16) microdrama episode as a JSON shot list.",
        f"Logline: {request.logline}",
        f"Write {request.shots} shots, about {request.duration_s:g} seconds in all, in "
        f"{_LANGUAGE_NAMES.get(request.language, request.language)}. Beats in order: {beats}.",
        "Each shot: a concrete visible action, who is on screen, and at most two short spoken lines by them. "
        "Open on a hook, end on a cliffhanger. Characters: 1 to 3, each with a name, a role and a one-line "
        "visual description.",
    ]
    if request.cast:
        lines.append("Cast (keep them as given): " + "; ".join(f"{c.name}, {c.role}: {c.description}"
                                                              for c in request.cast))
    if problems:
        lines.append("Your previous shot list had these problems; fix them: " + "; ".join(problems))
    lines.append("JSON:")
    return "\n".join(lines)


def _prompt_ids(tokenizer, prompt: str) -> list[int]:
    """The prompt as the model expects it: through its chat template when it has one."""
    if getattr(tokenizer, "chat_template", None):
        ids = tokenizer.apply_chat_template([{"role": "user", "content": prompt}], add_generation_prompt=True,
                                            tokenize=True)
        return list(ids["input_ids"] if isinstance(ids, dict) or hasattr(ids, "keys") else ids)
    return tokenizer.encode(prompt)


def assemble(draft: dict, request: Request) -> tuple[EpisodeManifest | None, list[str]]:
    """The manifest from the decoded draft, after the platform's repairs; and the problems only the model can
    fix (none when the manifest is good)."""
    sketches = [(c["name"], c["role"], c["description"]) for c in draft["characters"][len(request.cast):]]
    characters = dress_characters(sketches, request.language, request.seed, request.cast)
    renamed = {drafted["id"]: final.id for drafted, final in zip(draft["characters"], characters)}
    problems = _repeats([c.name.casefold() for c in characters], "character name")
    problems += _repeats([s["action"].casefold() for s in draft["shots"]], "action")
    problems += _repeats([line["text"].casefold() for s in draft["shots"] for line in s["dialogue"]], "line")

    shots = []
    for index, drafted in enumerate(draft["shots"]):
        lines = [DialogueLine(**{**line, "speaker": renamed[line["speaker"]]}) for line in drafted["dialogue"]]
        shot = {**drafted, "characters": [renamed[c] for c in drafted["characters"]],
                "dialogue": [line.model_dump() for line in within_longest_shot(lines, characters)],
                "seed": shot_seed(request.seed, index)}
        shots.append(shot)
    frames, timing_problem = _fit_frames(shots, characters, request.duration_s)
    if timing_problem:
        problems.append(timing_problem)
    for shot, shot_frames in zip(shots, frames):
        shot["duration_s"] = shot_frames / FPS
        shot["keyframes"] = 1 if shot["duration_s"] <= 2.0 else 3 if shot["duration_s"] >= 7.0 else 2
    on_screen = {cid for shot in shots for cid in shot["characters"]}
    try:
        manifest = EpisodeManifest.model_validate({
            "episode_id": request.episode_id, "title": draft["title"], "logline": request.logline,
            "language": request.language, "seed": request.seed,
            "characters": [c.model_dump(mode="json") for c in characters if c.id in on_screen],
            "shots": shots,
        })
    except ValidationError as exc:
        return None, problems + [validation_problems(exc, "manifest")]
    return manifest, problems


def _repeats(values: list[str], what: str) -> list[str]:
    seen, repeated = set(), []
    for value in values:
        if value in seen and value not in repeated:
            repeated.append(value)
        seen.add(value)
    return [f"the {what} {value!r} appears more than once; make each one different" for value in repeated]


def _fit_frames(shots: list[dict], characters: list[Character], target_s: float) -> tuple[list[int], str | None]:
    """Whole-frame durations that sum to the target: each shot gets the time its dialogue needs, the rest is
    shared in proportion to the durations the model chose. Dialogue that needs more than the target allows (plus
    10 %) is a problem for the model."""
    needs = [max(MIN_SHOT_FRAMES, math.ceil(estimate_dialogue_s([DialogueLine(**line) for line in shot["dialogue"]],
                                                                characters) * FPS))
             for shot in shots]
    target = round(target_s * FPS)
    if sum(needs) > target * _OVERRUN:
        heavy = max(range(len(shots)), key=lambda i: needs[i])
        return needs, (f"the dialogue needs {sum(needs) / FPS:.1f} s but the episode has {target_s:g} s; write "
                       f"fewer and shorter lines (shot {shots[heavy]['id']} alone needs {needs[heavy] / FPS:.1f} s)")
    spare = max(0, target - sum(needs))
    weights = [max(shot["duration_s"], _DURATION_STEP_S) for shot in shots]
    frames = [min(MAX_SHOT_FRAMES, need + math.floor(spare * w / sum(weights))) for need, w in zip(needs, weights)]
    # Whole frames left by rounding go to the first shots with room.
    for index in range(len(frames)):
        short = target - sum(frames)
        if short <= 0:
            break
        frames[index] += min(short, MAX_SHOT_FRAMES - frames[index])
    return frames, None

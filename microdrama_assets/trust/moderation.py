"""Content moderation: an episode's text and keyframes checked against a configurable policy.

A policy (``policy/default.json`` ships with the project) lists categories, each with an action (``block`` stops
the pipeline, ``flag`` is reported without stopping it, ``off`` disables a category an extending policy inherits)
and the words, phrases and regexes that signal it. Text is matched after normalisation, so trivial disguises do not
slip through: compatibility forms and accents are folded (NFKD, marks dropped), case is folded, invisible format
characters are removed, a term's letters also match common leetspeak (``s3x``, ``p@rn``), repeated letters
(``seeex``) and letters spelled out with separators (``s.e.x``, ``s e x``), always on whole words, so ``class`` or
``Scunthorpe`` never trip a shorter term. Optional classifiers (``ml/moderation_classifiers.py``) add model scores,
mapped to categories through the policy's ``classifier_labels``.

Keyframes get a weights-free skin-exposure heuristic, per figure (the keyframe stage's character masks): a
classic YCrCb + HSV skin-colour detector measures the share of each figure that is skin-coloured and the share in
its largest connected skin region. A colour rule cannot tell skin from skin-coloured hair or clothes, so the
default policy only flags what it finds; the optional image classifier is what blocks.

A microdrama is fiction: murder, guns and blood belong in a thriller, so the default policy blocks explicit sexual
content, sexualised minors, slurs, encouragement of self-harm, weapon-making instructions and extremist slogans,
and only flags graphic gore and mentions of sex or nudity. Plain code, free of Dagster and torch.
"""

from __future__ import annotations

import json
import re
import unicodedata
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal, Mapping, Protocol, Sequence

import cv2
import numpy as np
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, model_validator

from ..media.manifest import EpisodeManifest

DEFAULT_POLICY_PATH = Path(__file__).with_name("policy") / "default.json"

Action = Literal["block", "flag", "off"]
Source = Literal["term", "regex", "classifier", "heuristic"]


class PolicyError(ValueError):
    """A moderation policy that cannot be used: the message names the file and the problem."""


class ModerationInputError(ValueError):
    """An image or classifier result that the checks cannot read."""


# ---------------------------------------------------------------------------------------------------------------
# The policy


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Category(_Strict):
    """One kind of content the policy acts on. ``terms`` are words or phrases (a trailing ``*`` matches any word
    that starts with the term; otherwise an optional plural ``s`` is allowed); ``regexes`` are Python regular
    expressions matched, case-insensitively, against the normalised text (accents stripped, case folded)."""

    id: str = Field(pattern=r"^[a-z][a-z0-9_]{0,63}$")
    description: str = Field(min_length=1)
    action: Action
    terms: list[str] = Field(default_factory=list)
    regexes: list[str] = Field(default_factory=list)


class ClassifierLabel(_Strict):
    """A classifier label counted as ``category`` when its score reaches ``threshold``."""

    category: str
    threshold: float = Field(gt=0.0, le=1.0)


class SkinExposure(_Strict):
    """The skin-exposure heuristic: a figure is reported under ``category`` when skin-coloured pixels cover more
    than ``max_skin_fraction`` of it and its largest connected skin region more than ``max_region_fraction``;
    figures covering less than ``min_figure_fraction`` of the frame are not judged."""

    category: str
    max_skin_fraction: float = Field(gt=0.0, le=1.0)
    max_region_fraction: float = Field(gt=0.0, le=1.0)
    min_figure_fraction: float = Field(default=0.01, ge=0.0, lt=1.0)


class TextRules(_Strict):
    classifier_labels: dict[str, ClassifierLabel] = Field(default_factory=dict)


class ImageRules(_Strict):
    skin_exposure: SkinExposure | None = None
    classifier_labels: dict[str, ClassifierLabel] = Field(default_factory=dict)


@dataclass(frozen=True)
class _Matcher:
    category: Category
    rule: str  # the term or the regex as the policy wrote it
    source: Source
    pattern: re.Pattern


class ModerationPolicy(_Strict):
    """Categories and the rules that detect them in text (word lists, regexes, a classifier's labels) and in
    images (the skin-exposure heuristic, an image classifier's labels)."""

    name: str = Field(min_length=1)
    description: str = ""
    categories: list[Category] = Field(min_length=1)
    text: TextRules = Field(default_factory=TextRules)
    image: ImageRules = Field(default_factory=ImageRules)
    _matchers: list[_Matcher] = PrivateAttr(default_factory=list)

    @model_validator(mode="after")
    def _consistent(self) -> "ModerationPolicy":
        ids = [category.id for category in self.categories]
        duplicates = sorted({i for i in ids if ids.count(i) > 1})
        if duplicates:
            raise ValueError(f"category ids appear more than once: {', '.join(duplicates)}")
        references = [(f"text.classifier_labels.{label}", rule.category)
                      for label, rule in self.text.classifier_labels.items()]
        references += [(f"image.classifier_labels.{label}", rule.category)
                       for label, rule in self.image.classifier_labels.items()]
        if self.image.skin_exposure is not None:
            references.append(("image.skin_exposure", self.image.skin_exposure.category))
        for where, category in references:
            if category not in ids:
                raise ValueError(f"{where} names category {category!r}, which the policy does not define "
                                 f"(categories: {', '.join(ids)})")
        self._matchers = [matcher for category in self.categories if category.action != "off"
                          for matcher in _category_matchers(category)]
        return self

    def category(self, category_id: str) -> Category:
        return next(c for c in self.categories if c.id == category_id)


def _category_matchers(category: Category) -> list[_Matcher]:
    matchers = []
    for term in category.terms:
        try:
            matchers.append(_Matcher(category, term, "term", term_pattern(term)))
        except ValueError as problem:
            raise ValueError(f"category {category.id}: term {term!r}: {problem}") from None
    for regex in category.regexes:
        try:
            matchers.append(_Matcher(category, regex, "regex", re.compile(regex, re.IGNORECASE)))
        except re.error as problem:
            raise ValueError(f"category {category.id}: regex {regex!r} does not compile: {problem}") from None
    return matchers


def load_policy(path: str | Path | None = None) -> ModerationPolicy:
    """The moderation policy in the JSON file at ``path``; ``None`` (or an empty string) is the shipped default.

    A file is a complete policy, unless it says ``"extends": "default"``: then it is laid over the default.
    Its categories with a new ``id`` are added; one with a default ``id`` adds its ``terms`` and ``regexes`` to
    the default's and replaces ``description`` or ``action`` where it gives them (``"action": "off"`` turns the
    category off). ``text.classifier_labels`` and ``image.classifier_labels`` entries are added or replaced by
    label; ``image.skin_exposure`` fields replace the default's, and ``null`` turns the heuristic off.
    ``name`` and ``description`` replace the default's. Anything unusable raises PolicyError naming the file."""
    if not path:
        return _validated(_read_json(DEFAULT_POLICY_PATH), DEFAULT_POLICY_PATH)
    source = Path(path).expanduser()
    data = _read_json(source)
    base = data.pop("extends", None)
    if base is None:
        return _validated(data, source)
    if base != "default":
        raise PolicyError(f"moderation policy {source}: \"extends\" must be \"default\", got {base!r}")
    try:
        merged = _extend(_read_json(DEFAULT_POLICY_PATH), data)
    except (TypeError, KeyError, AttributeError) as problem:
        raise PolicyError(f"moderation policy {source}: cannot be laid over the default policy: {problem}") from None
    return _validated(merged, source)


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise PolicyError(f"moderation policy {path}: no such file") from None
    except (OSError, UnicodeDecodeError) as problem:
        raise PolicyError(f"moderation policy {path}: cannot be read ({problem})") from None
    except json.JSONDecodeError as problem:
        raise PolicyError(f"moderation policy {path}: not valid JSON: {problem.msg} at line {problem.lineno} "
                          f"column {problem.colno}") from None
    if not isinstance(data, dict):
        raise PolicyError(f"moderation policy {path}: the top level must be a JSON object, got "
                          f"{type(data).__name__}")
    return data


def _extend(default: dict[str, Any], extension: dict[str, Any]) -> dict[str, Any]:
    # name, description and any unknown key (which validation then reports) come from the extension as given
    merged = {**default, **{key: value for key, value in extension.items()
                            if key not in ("categories", "text", "image")}}
    categories = {category["id"]: dict(category) for category in default["categories"]}
    for category in extension.get("categories", []):
        known = categories.get(category.get("id"))
        if known is None:
            categories[category.get("id")] = category
            continue
        for key in ("terms", "regexes"):
            known[key] = known.get(key, []) + [rule for rule in category.get(key, []) if rule not in known.get(key, [])]
        known.update({key: value for key, value in category.items() if key not in ("terms", "regexes")})
    merged["categories"] = list(categories.values())
    for section in ("text", "image"):
        given = extension.get(section, {})
        # unknown keys are kept, so validation names them rather than dropping a misspelt section silently
        rules = {**default.get(section, {}),
                 **{key: value for key, value in given.items() if key not in ("classifier_labels", "skin_exposure")}}
        rules["classifier_labels"] = {**rules.get("classifier_labels", {}), **given.get("classifier_labels", {})}
        if "skin_exposure" in given:
            heuristic = given["skin_exposure"]
            rules["skin_exposure"] = None if heuristic is None else {**(rules.get("skin_exposure") or {}), **heuristic}
        merged[section] = rules
    return merged


def _validated(data: dict[str, Any], source: Path) -> ModerationPolicy:
    try:
        return ModerationPolicy.model_validate(data)
    except ValidationError as exc:
        raise PolicyError(f"moderation policy {source}: {_problems(exc, data)}") from None


def _problems(exc: ValidationError, data: dict[str, Any]) -> str:
    """Each pydantic error as ``path: message``, naming categories by their id rather than their position."""
    problems = []
    for error in exc.errors():
        location = [str(part) for part in error["loc"]]
        if len(location) >= 2 and location[0] == "categories" and location[1].isdigit():
            category = data["categories"][int(location[1])]
            name = category.get("id") if isinstance(category, dict) else None
            location[1] = f"[{name or location[1]}]"
        path = ".".join(location).replace(".[", "[") or "policy"
        message = error["msg"].removeprefix("Value error, ")
        problems.append(f"{path}: {message}")
    return "; ".join(problems)


# ---------------------------------------------------------------------------------------------------------------
# Normalisation and term patterns

# What each letter of a term also matches in text: the leetspeak stand-ins people type to dodge word lists.
_LOOKALIKES = {"a": "a4@", "e": "e3", "i": "i1!|", "l": "l1|", "o": "o0", "s": "s5$", "t": "t7+"}
_SPELLED_OUT = r"[\W_]{1,3}"  # between letters written out one by one: "s.e.x", "s e x", "s - e - x"
_BETWEEN_WORDS = r"[\W_]*"  # between a phrase's words: any punctuation or spacing, or none ("sex tape", "sextape")
_WORD_START = r"(?<![^\W_])"  # not preceded by a letter or digit
_WORD_END = r"(?![^\W_])"


def normalize_text(text: str) -> tuple[str, list[int]]:
    """``text`` folded for matching (compatibility forms and accents folded, case folded, invisible format
    characters dropped) and, for each character of the result, the index of the character it came from in
    ``text``, so a match can be shown in the original."""
    folded: list[str] = []
    origins: list[int] = []
    for index, char in enumerate(text):
        # decomposed again after case folding: folding can yield a letter plus a combining mark ("İ" -> "i̇")
        decomposed = unicodedata.normalize("NFKD", unicodedata.normalize("NFKD", char).casefold())
        for part in decomposed:
            if unicodedata.category(part) in ("Mn", "Me", "Cf"):
                continue
            folded.append(part)
            origins.append(index)
    return "".join(folded), origins


def _letter(char: str) -> str:
    lookalikes = _LOOKALIKES.get(char)
    return (f"[{re.escape(lookalikes)}]" if lookalikes else re.escape(char)) + "+"


def _word(word: str) -> str:
    letters = [_letter(char) for char in word]
    if len(letters) == 1:
        return letters[0]
    return f"(?:{''.join(letters)}|{_SPELLED_OUT.join(letters)})"


def term_pattern(term: str) -> re.Pattern:
    """The compiled pattern for one policy term (see the module docstring for what it tolerates)."""
    folded = normalize_text(term)[0].strip()
    prefix = folded.endswith("*")
    if "*" in folded.rstrip("*"):
        raise ValueError("'*' may only end a term")
    words = re.findall(r"[^\W_]+", folded.rstrip("*"))
    if not words:
        raise ValueError("has no letters or digits")
    ending = r"[^\W_]*" if prefix else r"(?:[s5$]+)?"
    return re.compile(_WORD_START + _BETWEEN_WORDS.join(_word(word) for word in words) + ending + _WORD_END)


# ---------------------------------------------------------------------------------------------------------------
# Findings


@dataclass(frozen=True)
class TextItem:
    """One piece of text to check, and where it is (``shot s03 line 2 (ivy)``)."""

    where: str
    text: str


@dataclass(frozen=True)
class Violation:
    """One finding: where it is, the category, the rule that fired (the policy's term or regex,
    ``classifier:<label>`` or ``nudity_suspected`` for the skin heuristic), what the policy does about it, the text
    that matched (as written), a short excerpt (the match with a little context, the start of a classified text,
    or the heuristic's measurements), a score (1.0 for a term or regex, the label's probability for a classifier,
    the figure's skin fraction for the heuristic) and the kind of rule."""

    where: str
    category: str
    rule: str
    action: Action
    excerpt: str
    score: float
    source: Source
    matched: str = ""

    def describe(self) -> str:
        """One line, e.g. ``shot s03 line 2 (ivy): sexual_explicit — matched 'p0rn' (term 'porn*')``."""
        if self.source == "term":
            finding = f"matched {self.matched!r}" + ("" if self.matched.casefold() == self.rule.casefold() else
                                                     f" (term {self.rule!r})")
        elif self.source == "regex":
            finding = f"matched {self.matched!r} (a {self.category} pattern)"
        elif self.source == "classifier":
            finding = f"{self.rule} scored {self.score:.2f}" + (f" on “{self.excerpt}”" if self.excerpt else "")
        else:
            finding = f"{self.rule}: {self.excerpt}"
        return f"{self.where}: {self.category} — {finding}"


@dataclass(frozen=True)
class ModerationReport:
    """The findings of one check; ``blocked`` when any finding's category blocks."""

    violations: tuple[Violation, ...] = ()

    @property
    def blocking(self) -> tuple[Violation, ...]:
        return tuple(v for v in self.violations if v.action == "block")

    @property
    def flagged(self) -> tuple[Violation, ...]:
        return tuple(v for v in self.violations if v.action == "flag")

    @property
    def blocked(self) -> bool:
        return bool(self.blocking)

    def summary(self, limit: int = 3) -> str:
        """One line for a check's description or metadata: the counts, then the first ``limit`` findings,
        blocking ones first."""
        if not self.violations:
            return "no moderation findings"
        ordered = self.blocking + self.flagged
        shown = "; ".join(v.describe() for v in ordered[:limit])
        more = f" (+{len(ordered) - limit} more)" if len(ordered) > limit else ""
        return f"{len(self.blocking)} blocking, {len(self.flagged)} flagged: {shown}{more}"

    def records(self) -> list[dict[str, Any]]:
        """Every finding as a plain dict (for JSON metadata)."""
        return [asdict(v) for v in self.violations]


class TextClassifier(Protocol):
    def scores(self, texts: Sequence[str]) -> list[dict[str, float]]:
        """For each text, every label's probability."""
        ...


class ImageClassifier(Protocol):
    def scores(self, images: Sequence[np.ndarray]) -> list[dict[str, float]]:
        """For each RGB uint8 image, every label's probability."""
        ...


# ---------------------------------------------------------------------------------------------------------------
# Text

_EXCERPT_CONTEXT = 24  # characters of context either side of a match
_CLASSIFIED_EXCERPT = 60  # characters of a classified text quoted in its finding


def manifest_text_items(manifest: EpisodeManifest) -> list[TextItem]:
    """Every piece of an episode manifest's text a viewer may see or hear, each named by where it is."""
    items = [TextItem("logline", manifest.logline), TextItem("title", manifest.title)]
    for character in manifest.characters:
        items += [TextItem(f"character {character.id}: name", character.name),
                  TextItem(f"character {character.id}: role", character.role),
                  TextItem(f"character {character.id}: description", character.description)]
    for shot in manifest.shots:
        items.append(TextItem(f"shot {shot.id} action", shot.action))
        items += [TextItem(f"shot {shot.id} line {number} ({line.speaker})", line.text)
                  for number, line in enumerate(shot.dialogue, start=1)]
    return items


def check_text(policy: ModerationPolicy, items: Sequence[TextItem],
               classifier: TextClassifier | None = None) -> list[Violation]:
    """Every finding of ``policy``'s word lists and regexes in ``items`` (each rule at most once per item), then
    of ``classifier``'s labels that the policy maps to a category."""
    violations = []
    for item in items:
        folded, origins = normalize_text(item.text)
        for matcher in policy._matchers:
            # the first match that covers some text: a policy regex may also match the empty string somewhere
            match = next((m for m in matcher.pattern.finditer(folded) if m.end() > m.start()), None)
            if match is None:
                continue
            start, end = origins[match.start()], origins[match.end() - 1] + 1
            violations.append(Violation(item.where, matcher.category.id, matcher.rule, matcher.category.action,
                                        _excerpt(item.text, start, end), 1.0, matcher.source,
                                        " ".join(item.text[start:end].split())))
    if classifier is not None and items:
        texts = [item.text for item in items]
        excerpts = [_excerpt(text, 0, min(len(text), _CLASSIFIED_EXCERPT), context=0) for text in texts]
        scored = classifier.scores(texts)
        violations += _classified(policy, policy.text.classifier_labels, "text", [i.where for i in items],
                                  excerpts, scored)
    return violations


def _excerpt(text: str, start: int, end: int, context: int = _EXCERPT_CONTEXT) -> str:
    left, right = max(0, start - context), min(len(text), end + context)
    snippet = " ".join(text[left:right].split())
    return ("…" if left else "") + snippet + ("…" if right < len(text) else "")


def _classified(policy: ModerationPolicy, labels: dict[str, ClassifierLabel], kind: str, wheres: list[str],
                excerpts: list[str], scored: list[dict[str, float]]) -> list[Violation]:
    if len(scored) != len(wheres):
        raise ModerationInputError(f"the {kind} classifier returned {len(scored)} results for {len(wheres)} inputs")
    known = set().union(*(scores.keys() for scores in scored))
    if known and not known & labels.keys():
        raise PolicyError(f"moderation policy {policy.name!r}: none of the {kind} classifier's labels "
                          f"({', '.join(sorted(known))}) is mapped to a category; add them under "
                          f"{kind}.classifier_labels")
    violations = []
    for where, excerpt, scores in zip(wheres, excerpts, scored):
        for label, score in scores.items():
            rule = labels.get(label)
            if rule is None or score < rule.threshold:
                continue
            category = policy.category(rule.category)
            if category.action != "off":
                violations.append(Violation(where, category.id, f"classifier:{label}", category.action, excerpt,
                                            float(score), "classifier"))
    return violations


# ---------------------------------------------------------------------------------------------------------------
# Images

_ANALYSIS_WIDTH = 270  # frames are measured at this width: a quarter of 1080, plenty for region fractions
# Skin colour, as in the classic detectors: Chai & Ngan's YCrCb box, and in HSV a hue within 0-50 degrees (OpenCV
# hue is halved) with moderate saturation, which keeps out greys, whites and fully saturated paints.
_CR_RANGE, _CB_RANGE = (133, 173), (77, 127)
_MAX_HUE = 25
_SATURATION_RANGE = (40, 190)
_MIN_VALUE = 50


@dataclass(frozen=True)
class SkinMeasure:
    """How skin-coloured one measured area (a figure, or the whole frame) is."""

    skin_fraction: float  # skin-coloured pixels / the measured area
    region_fraction: float  # the largest connected skin region / the measured area
    area_fraction: float  # the measured area / the frame


def _checked_image(image: np.ndarray) -> np.ndarray:
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        shape = getattr(image, "shape", None)
        dtype = getattr(image, "dtype", type(image).__name__)
        raise ModerationInputError(f"expected an RGB image as a (height, width, 3) uint8 array, got shape {shape} "
                                   f"of {dtype}")
    if image.shape[0] < 8 or image.shape[1] < 8:
        raise ModerationInputError(f"image {image.shape[1]}x{image.shape[0]} is too small to check")
    return image


def _analysis_size(image: np.ndarray) -> tuple[int, int]:
    return _ANALYSIS_WIDTH, max(1, round(image.shape[0] * _ANALYSIS_WIDTH / image.shape[1]))


def skin_mask(image: np.ndarray) -> np.ndarray:
    """Where ``image`` (RGB uint8) is skin-coloured, at the analysis width, as a 0/255 mask without specks."""
    image = _checked_image(image)
    small = cv2.resize(image, _analysis_size(image), interpolation=cv2.INTER_AREA)
    ycrcb = cv2.inRange(cv2.cvtColor(small, cv2.COLOR_RGB2YCrCb),
                        (0, _CR_RANGE[0], _CB_RANGE[0]), (255, _CR_RANGE[1], _CB_RANGE[1]))
    hsv = cv2.inRange(cv2.cvtColor(small, cv2.COLOR_RGB2HSV),
                      (0, _SATURATION_RANGE[0], _MIN_VALUE), (_MAX_HUE, _SATURATION_RANGE[1], 255))
    return cv2.morphologyEx(cv2.bitwise_and(ycrcb, hsv), cv2.MORPH_OPEN, np.ones((3, 3), np.uint8))


def measure_skin(image: np.ndarray, area: np.ndarray | None = None) -> SkinMeasure:
    """How much of ``area`` (a 0/255 mask the size of ``image``; the whole frame when None) is skin-coloured, in
    all and in its largest connected skin region."""
    skin = skin_mask(image)
    if area is None:
        inside = np.full(skin.shape, 255, np.uint8)
    else:
        if area.shape != image.shape[:2]:
            raise ModerationInputError(f"a figure mask of shape {area.shape} does not match the image's "
                                       f"{image.shape[:2]}")
        inside = cv2.resize((area > 0).astype(np.uint8) * 255, _analysis_size(image),
                            interpolation=cv2.INTER_NEAREST)
    measured = np.count_nonzero(inside)
    if measured == 0:
        return SkinMeasure(0.0, 0.0, 0.0)
    skin = cv2.bitwise_and(skin, inside)
    count, _, stats, _ = cv2.connectedComponentsWithStats(skin, connectivity=8)
    largest = int(stats[1:, cv2.CC_STAT_AREA].max()) if count > 1 else 0
    return SkinMeasure(np.count_nonzero(skin) / measured, largest / measured, measured / inside.size)


def check_image(policy: ModerationPolicy, image: np.ndarray, where: str, classifier: ImageClassifier | None = None,
                *, figures: Mapping[str, np.ndarray]) -> list[Violation]:
    """The findings of ``policy``'s image rules in one RGB uint8 frame.

    ``figures`` are the frame's people as 0/255 masks the size of the frame, by character id (the keyframe
    stage's per-character masks). The skin-exposure heuristic measures each figure on its own: over a whole frame
    a skin-colour rule fires on warm sets (wood, beige walls), and a figure's share of skin is what tells bare
    from dressed. Figures smaller than the policy's ``min_figure_fraction`` of the frame are too small to judge.
    Then ``classifier``, when given, scores the whole frame."""
    image = _checked_image(image)
    violations = []
    heuristic = policy.image.skin_exposure
    if heuristic is not None and policy.category(heuristic.category).action != "off":
        category = policy.category(heuristic.category)
        for figure, mask in figures.items():
            measure = measure_skin(image, mask)
            if (measure.area_fraction < heuristic.min_figure_fraction
                    or measure.skin_fraction <= heuristic.max_skin_fraction
                    or measure.region_fraction <= heuristic.max_region_fraction):
                continue
            excerpt = (f"figure {figure}: skin-coloured {measure.skin_fraction:.0%} (limit "
                       f"{heuristic.max_skin_fraction:.0%}), largest skin region {measure.region_fraction:.0%} "
                       f"(limit {heuristic.max_region_fraction:.0%})")
            violations.append(Violation(where, category.id, "nudity_suspected", category.action, excerpt,
                                        measure.skin_fraction, "heuristic"))
    if classifier is not None:
        violations += _classified(policy, policy.image.classifier_labels, "image", [where], [""],
                                  classifier.scores([image]))
    return violations

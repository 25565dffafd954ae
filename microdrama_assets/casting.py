"""Character cards and series casts: named characters an episode is cast from instead of inventing new ones.

A card is a character definition (the manifest's ``Character``: name, role, description, look, voice) in a JSON
file named after its ID. The project ships a few (``microdrama_assets/cards/``); a user's own cards live in
``cards/`` under the data root and take precedence over a built-in card of the same ID.

A series is a name episodes share. The first episode of a series records its characters as the series cast
(``series/<series>/cast.json``); later episodes are cast from it, so the same people come back looking and
sounding the same, and their character bundles (content-addressed) are reused rather than rebuilt.
"""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import ValidationError

from .media.manifest import MAX_CHARACTERS, Character, check_id, validation_problems
from .storage import ArtifactStore

BUILTIN_CARDS_DIR = Path(__file__).with_name("cards")
MAX_CARD_BYTES = 16 * 1024


class CastingError(ValueError):
    """A card that does not exist or does not validate, or a cast the manifest cannot hold."""


def user_cards_dir(store: ArtifactStore) -> Path:
    """The user's own cards, fetched from the artifact store when it is remote."""
    return store.mirror_folder(store.path("cards"))


def series_cast_path(store: ArtifactStore, series: str) -> Path:
    return store.path("series", check_id(series, "series id"), "cast.json")


def available_cards(store: ArtifactStore) -> list[str]:
    folders = [BUILTIN_CARDS_DIR, user_cards_dir(store)]
    return sorted({file.stem for folder in folders if folder.is_dir() for file in folder.glob("*.json")})


def load_card(store: ArtifactStore, card_id: str) -> Character:
    """The user's card of that ID if there is one, else the built-in card; errors name the file and field."""
    check_id(card_id, "card id")
    for folder in (user_cards_dir(store), BUILTIN_CARDS_DIR):
        file = folder / f"{card_id}.json"
        if file.is_file():
            return _parse_card(file, card_id)
    raise CastingError(f"unknown character card {card_id!r}; available: {', '.join(available_cards(store))} "
                       f"(add your own as {user_cards_dir(store)}/{card_id}.json)")


def _parse_card(file: Path, card_id: str) -> Character:
    if file.stat().st_size > MAX_CARD_BYTES:
        raise CastingError(f"character card {file} is larger than {MAX_CARD_BYTES} bytes")
    try:
        card = Character.model_validate_json(file.read_bytes())
    except ValidationError as exc:
        raise CastingError(f"character card {file} is invalid: {validation_problems(exc, 'card')}") from None
    if card.id != card_id:
        raise CastingError(f"character card {file} has id {card.id!r}; a card's id must match its file name")
    return card


def check_cast(store: ArtifactStore, card_ids: list[str]) -> None:
    if len(card_ids) > MAX_CHARACTERS:
        raise CastingError(f"at most {MAX_CHARACTERS} character cards per episode, got {len(card_ids)}")
    if len(set(card_ids)) != len(card_ids):
        raise CastingError(f"a character card is named twice in {', '.join(card_ids)}")
    for card_id in card_ids:
        load_card(store, card_id)


def series_cast(store: ArtifactStore, series: str) -> list[Character]:
    path = series_cast_path(store, series)
    if not store.available(path):
        return []
    try:
        return [Character.model_validate(entry) for entry in json.loads(path.read_text(encoding="utf-8"))["cast"]]
    except (ValueError, KeyError, TypeError) as exc:
        raise CastingError(f"series cast {path} is unreadable ({exc}); fix or delete it") from None


def cast_for_episode(store: ArtifactStore, card_ids: list[str], series: str | None) -> list[Character]:
    """Who the planner must use: the named cards, else the series' regulars (none for a new series)."""
    if card_ids:
        return [load_card(store, card_id) for card_id in card_ids]
    return series_cast(store, series)[:MAX_CHARACTERS] if series else []


def remember_series_cast(store: ArtifactStore, series: str, characters: list[Character]) -> list[Character]:
    """Add the episode's characters to the series cast: a returning character's definition is replaced by this
    episode's (a card edited since), newcomers join at the end; the first ``MAX_CHARACTERS`` are the regulars the
    next episode is cast from."""
    cast = {c.id: c for c in series_cast(store, series)}
    cast.update({c.id: c for c in characters})
    store.write_json(series_cast_path(store, series), {"series": series,
                                                       "cast": [c.model_dump(mode="json") for c in cast.values()]})
    return list(cast.values())

"""JSON-Schema-constrained decoding for a causal language model.

The decoder walks the schema and writes the JSON itself: keys, braces, commas and every value the caller pins are
fed to the model as forced text; the model only chooses where the schema leaves a choice, and only among tokens the
schema allows there. An enum (or a number, taken on a grid between its bounds) is chosen token by token along the
options' spellings; a free string takes any token that keeps it a plain, unescaped JSON string within its length
limits; an array's length is the model's choice between "," and "]" within minItems/maxItems. So even an
untrained model's output is a document of the schema's shape, and the walk always ends within a bounded number of
tokens.

Callers steer the walk by path (a tuple of keys and indexes, e.g. ``("shots", 2, "dialogue", 0, "speaker")``):
``Steering.pinned`` fixes a value, ``skipped`` leaves a property out (the caller fills it in after), ``choices``
gives a string its options at that moment (references to values decoded earlier), and ``limits`` tightens a length
or count.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import torch

Path = tuple  # keys and indexes from the document root
NOT_PINNED = object()  # what Steering.pinned returns where the model decides


class DecodingBudgetExceeded(RuntimeError):
    """The model used more tokens than the decoding budget allows."""


@dataclass
class Steering:
    pinned: Callable[[Path, dict], Any] = lambda path, doc: NOT_PINNED
    skipped: Callable[[Path], bool] = lambda path: False
    choices: Callable[[Path, dict], list | None] = lambda path, doc: None
    limits: Callable[[Path, dict], dict] = lambda path, doc: {}


class TokenTable:
    """Each vocabulary entry's text as it reads inside a string, and which entries may appear in a JSON string."""

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer
        size = len(tokenizer)
        # Decoding a token after an anchor keeps the leading space SentencePiece and byte-level BPE put in it.
        anchor = tokenizer.encode("a", add_special_tokens=False)[-1:]
        prefix = tokenizer.decode(anchor)
        texts = tokenizer.batch_decode([anchor + [i] for i in range(size)], clean_up_tokenization_spaces=False)
        special = set(tokenizer.all_special_ids)
        self.texts = [None if i in special or not t.startswith(prefix) else t[len(prefix):]
                      for i, t in enumerate(texts)]
        self.lengths = np.array([len(t) if t else 0 for t in self.texts], np.int64)
        self.in_string = np.array([bool(t) and _plain(t) for t in self.texts], bool)
        self.quote = self._single('"')

    def _single(self, text: str) -> int:
        exact = [i for i, t in enumerate(self.texts) if t == text]
        if exact:
            return exact[0]
        ids = self.encode(text)
        if len(ids) != 1:
            raise ValueError(f"the tokenizer has no single token for {text!r}")
        return ids[0]

    def encode(self, text: str) -> list[int]:
        return self.tokenizer.encode(text, add_special_tokens=False)


def _plain(text: str) -> bool:
    """Text that can sit inside a JSON string as is: no quote, backslash, control character or broken byte."""
    return not any(c in '"\\\ufffd' or ord(c) < 0x20 or 0x7f <= ord(c) < 0xa0 for c in text)


class _Session:
    """The model reading the prompt and the forced text, and choosing the rest with seeded sampling."""

    def __init__(self, model, prompt_ids: list[int], generator: torch.Generator, temperature: float, budget: int):
        self.model = model
        self.device = next(model.parameters()).device
        self.generator = generator
        self.temperature = temperature
        self.budget = budget
        self.generated = 0
        self.cache = None
        self.logits: torch.Tensor | None = None
        self.feed(prompt_ids)

    @torch.inference_mode()
    def feed(self, ids: list[int]) -> None:
        if not ids:
            return
        self.generated += len(ids) if self.logits is not None else 0
        if self.generated > self.budget:
            raise DecodingBudgetExceeded(f"decoding used more than {self.budget} tokens")
        out = self.model(input_ids=torch.tensor([ids], device=self.device), cache=self.cache, use_cache=True)
        self.cache = out.cache
        self.logits = out.logits[0, -1].float()

    def sample(self, allowed: np.ndarray) -> int:
        """One token among the ``allowed`` (a boolean mask or id list), sampled from the model's distribution
        (the most likely one at temperature 0), without reading it."""
        ids = np.flatnonzero(allowed) if allowed.dtype == bool else np.asarray(allowed)
        logits = self.logits[torch.as_tensor(ids, device=self.logits.device)]
        if self.temperature <= 0:
            return int(ids[int(torch.argmax(logits))])
        probs = torch.softmax(logits / self.temperature, dim=0).cpu()
        return int(ids[int(torch.multinomial(probs, 1, generator=self.generator))])

    def pick(self, allowed: np.ndarray) -> int:
        token = self.sample(allowed)
        self.feed([token])
        return token


class SchemaDecoder:
    def __init__(self, table: TokenTable, schema: dict, steering: Steering):
        self.table = table
        self.schema = schema
        self.steer = steering

    def decode(self, model, prompt_ids: list[int], generator: torch.Generator, temperature: float = 0.8,
               budget: int = 6000) -> dict:
        self.session = _Session(model, prompt_ids, generator, temperature, budget)
        self.doc: dict = {}
        self._object(self.schema, (), self.doc)
        return self.doc

    # ---------------------------------------------------------------------------------------------------- walk
    def _resolve(self, node: dict) -> dict:
        while "$ref" in node:
            name = node["$ref"].rsplit("/", 1)[-1]
            node = {**self.schema["$defs"][name], **{k: v for k, v in node.items() if k != "$ref"}}
        return node

    def _value(self, node: dict, path: Path, container: dict | list, key) -> None:
        node = self._resolve(node)
        pinned = self.steer.pinned(path, self.doc)
        if pinned is not NOT_PINNED:
            self._force(json.dumps(pinned, ensure_ascii=False))
            _store(container, key, pinned)
            return
        kind = node.get("type")
        if kind == "object":
            _store(container, key, {})
            self._object(node, path, _load(container, key))
        elif kind == "array":
            _store(container, key, [])
            self._array(node, path, _load(container, key))
        elif kind == "string":
            _store(container, key, self._string(node, path))
        elif kind in ("number", "integer"):
            _store(container, key, self._number(node, path))
        elif kind == "boolean":
            _store(container, key, self._choose(["true", "false"]) == "true")
        else:
            raise ValueError(f"{_where(path)}: cannot decode schema node {node}")

    def _object(self, node: dict, path: Path, out: dict) -> None:
        self._force("{")
        first = True
        for name, child in node["properties"].items():
            if self.steer.skipped(path + (name,)):
                continue
            self._force(("" if first else ", ") + json.dumps(name) + ": ")
            first = False
            self._value(child, path + (name,), out, name)
        self._force("}")

    def _array(self, node: dict, path: Path, out: list) -> None:
        limits = {"minItems": node.get("minItems", 0), "maxItems": node.get("maxItems", 64),
                  **self.steer.limits(path, self.doc)}
        low, high = limits["minItems"], limits["maxItems"]
        self._force("[")
        close = self.table.encode("]")[0]
        while len(out) < high:
            # Another item or the end: the model's choice between the first tokens of the two continuations.
            first = "{" if self._resolve(node["items"]).get("type") == "object" else '"'
            more = self.table.encode(", " if out else first)[0]
            if len(out) >= low and self.session.sample(np.array([close, more])) == close:
                break
            if out:
                self._force(", ")
            self._value(node["items"], path + (len(out),), out, len(out))
        self._force("]")

    def _string(self, node: dict, path: Path) -> str:
        options = self.steer.choices(path, self.doc)
        if options is None and "enum" in node:
            options = node["enum"]
        if options is not None:
            if not options:
                raise ValueError(f"{_where(path)}: no value is allowed here")
            return json.loads(self._choose([json.dumps(o, ensure_ascii=False) for o in options]))
        if "pattern" in node:
            raise ValueError(f"{_where(path)}: a patterned string must be pinned or given choices")
        limits = {"minLength": node.get("minLength", 0), "maxLength": node.get("maxLength", 200),
                  **self.steer.limits(path, self.doc)}
        return self._free_text(max(1, limits["minLength"]), limits["maxLength"])

    def _number(self, node: dict, path: Path) -> float | int:
        low = node.get("minimum", node.get("exclusiveMinimum", 0))
        high = node.get("maximum", node.get("exclusiveMaximum", low + 100))
        step = {**node, **self.steer.limits(path, self.doc)}.get("multipleOf", 1 if node["type"] == "integer" else 0.5)
        grid = [round(low + i * step, 6) for i in range(int(math.floor((high - low) / step + 1e-9)) + 1)]
        grid = [g for g in grid if g <= high and ("exclusiveMaximum" not in node or g < node["exclusiveMaximum"])
                and ("exclusiveMinimum" not in node or g > node["exclusiveMinimum"])]
        text = self._choose([str(int(g)) if node["type"] == "integer" else f"{g:g}" for g in grid])
        return int(text) if node["type"] == "integer" else float(text)

    # ------------------------------------------------------------------------------------------------ tokens
    def _force(self, text: str) -> None:
        self.session.feed(self.table.encode(text))

    def _choose(self, options: list[str]) -> str:
        """One of ``options`` (literal texts), chosen token by token along their spellings."""
        spellings = [self.table.encode(o) for o in options]
        alive = list(range(len(options)))
        position = 0
        while True:
            if len(alive) == 1:
                self.session.feed(spellings[alive[0]][position:])
                return options[alive[0]]
            finished = [i for i in alive if len(spellings[i]) == position]
            if finished:
                return options[finished[0]]
            token = self.session.pick(np.array(sorted({spellings[i][position] for i in alive})))
            alive = [i for i in alive if spellings[i][position] == token]
            position += 1

    def _free_text(self, min_len: int, max_len: int) -> str:
        table = self.table
        self.session.feed([table.quote])
        text = ""
        while True:
            room = max_len - len(text)
            allowed = table.in_string & (table.lengths <= room)
            closable = len(text.strip()) >= min_len
            if closable:
                allowed = allowed.copy()
                allowed[table.quote] = True
            if not allowed.any():
                raise ValueError(f"the tokenizer cannot write a string of {min_len} to {max_len} characters")
            token = self.session.pick(allowed)
            if token == table.quote and closable:
                return text.strip()
            text += table.texts[token]
            if len(text) >= max_len and len(text.strip()) >= min_len:
                self.session.feed([table.quote])
                return text.strip()


def _store(container: dict | list, key, value) -> None:
    if isinstance(container, list):
        container.append(value)
    else:
        container[key] = value


def _load(container: dict | list, key):
    return container[-1] if isinstance(container, list) else container[key]


def _where(path: Path) -> str:
    return ".".join(str(p) for p in path) or "document"

"""Moderation classifiers on local transformers models: one for text (a sequence-classification model, e.g.
KoalaAI/Text-Moderation) and one for images (an image-classification model, e.g. Falconsai/nsfw_image_detection).

Each gives every label of the model's ``config.id2label`` a probability per input: sigmoid scores when the model
was trained multi-label (``problem_type == "multi_label_classification"``), a softmax over the labels otherwise.
The moderation policy maps labels to its categories and thresholds (``trust/moderation.py``); these classes only
score. Nothing downloads: each loads a local model directory, once per process.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from transformers import (AutoImageProcessor, AutoModelForImageClassification, AutoModelForSequenceClassification,
                          AutoTokenizer)

from .runtime import load_once, pick_device, pick_dtype, require_model

TEXT_SETTING = "moderation_text_model (MICRODRAMA_MODERATION_TEXT_MODEL)"
IMAGE_SETTING = "moderation_image_model (MICRODRAMA_MODERATION_IMAGE_MODEL)"
_DEFAULT_MAX_TOKENS = 512  # when neither the tokenizer nor the config says how long an input may be


class UnusableClassifier(ValueError):
    """A model directory that loads but cannot score labels (a regression head, or no labels)."""


def label_probabilities(logits: torch.Tensor, config) -> list[dict[str, float]]:
    """Each row of ``logits`` as ``{label: probability}`` under the model's ``config``: sigmoid per label for a
    multi-label model, softmax across labels otherwise."""
    if config.problem_type == "multi_label_classification":
        probabilities = torch.sigmoid(logits.float())
    else:
        probabilities = torch.softmax(logits.float(), dim=-1)
    labels = [config.id2label[index] for index in range(probabilities.shape[-1])]
    return [dict(zip(labels, row)) for row in probabilities.cpu().tolist()]


def _check_classifier(model, path: Path, setting: str) -> None:
    config = model.config
    if config.problem_type == "regression" or config.num_labels < 2:
        raise UnusableClassifier(f"the model at {path} ({setting}) is not a classifier: it has "
                                 f"{config.num_labels} output(s) and problem_type {config.problem_type!r}; a "
                                 f"moderation model needs a label per output")


class TransformersTextModeration:
    """Scores texts with a local sequence-classification model (``AutoModelForSequenceClassification`` and its
    tokenizer); inputs longer than the model accepts are truncated."""

    def __init__(self, model_dir: str | Path | None, device: str = "auto", batch_size: int = 16):
        self.path = require_model(model_dir, "moderation text", TEXT_SETTING,
                                  "a transformers sequence-classification model directory (config.json, weights, "
                                  "tokenizer files)", needs=("config.json",))
        self.device = pick_device(device)
        self.batch_size = batch_size

        def load():
            tokenizer = AutoTokenizer.from_pretrained(self.path, local_files_only=True)
            model = AutoModelForSequenceClassification.from_pretrained(self.path, dtype=pick_dtype(self.device),
                                                                       local_files_only=True)
            _check_classifier(model, self.path, TEXT_SETTING)
            return tokenizer, model.to(self.device).eval()

        self._tokenizer, self._model = load_once("moderation-text", self.path, self.device, load)
        limits = [self._tokenizer.model_max_length, getattr(self._model.config, "max_position_embeddings", None)]
        # Tokenizers without a configured limit report a huge sentinel (about 1e30) as model_max_length.
        self._max_tokens = min([limit for limit in limits if limit and limit < 1e9] or [_DEFAULT_MAX_TOKENS])

    @property
    def labels(self) -> list[str]:
        config = self._model.config
        return [config.id2label[index] for index in range(config.num_labels)]

    def scores(self, texts: Sequence[str]) -> list[dict[str, float]]:
        """For each text, every label's probability."""
        results: list[dict[str, float]] = []
        for start in range(0, len(texts), self.batch_size):
            batch = list(texts[start:start + self.batch_size])
            inputs = self._tokenizer(batch, padding=True, truncation=True, max_length=self._max_tokens,
                                     return_tensors="pt").to(self.device)
            with torch.inference_mode():
                logits = self._model(**inputs).logits
            results += label_probabilities(logits, self._model.config)
        return results


class TransformersImageModeration:
    """Scores RGB uint8 frames with a local image-classification model (``AutoModelForImageClassification`` and
    its ``AutoImageProcessor``, which resizes and normalises each frame as the model was trained)."""

    def __init__(self, model_dir: str | Path | None, device: str = "auto", batch_size: int = 8):
        self.path = require_model(model_dir, "moderation image", IMAGE_SETTING,
                                  "a transformers image-classification model directory (config.json, weights, "
                                  "preprocessor_config.json)", needs=("config.json", "preprocessor_config.json"))
        self.device = pick_device(device)
        self.batch_size = batch_size
        self._dtype = pick_dtype(self.device)

        def load():
            processor = AutoImageProcessor.from_pretrained(self.path, local_files_only=True)
            model = AutoModelForImageClassification.from_pretrained(self.path, dtype=self._dtype,
                                                                    local_files_only=True)
            _check_classifier(model, self.path, IMAGE_SETTING)
            return processor, model.to(self.device).eval()

        self._processor, self._model = load_once("moderation-image", self.path, self.device, load)

    @property
    def labels(self) -> list[str]:
        config = self._model.config
        return [config.id2label[index] for index in range(config.num_labels)]

    def scores(self, images: Sequence[np.ndarray]) -> list[dict[str, float]]:
        """For each (H, W, 3) uint8 RGB image, every label's probability."""
        results: list[dict[str, float]] = []
        for start in range(0, len(images), self.batch_size):
            batch = list(images[start:start + self.batch_size])
            pixels = self._processor(images=batch, return_tensors="pt")["pixel_values"]
            with torch.inference_mode():
                logits = self._model(pixel_values=pixels.to(self.device, self._dtype)).logits
            results += label_probabilities(logits, self._model.config)
        return results

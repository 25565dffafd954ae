"""The moderation classifiers on tiny, randomly initialised models (a BERT with a word-level tokenizer, a ViT)
whose classification heads are set by hand: zero weights and a bias that favours one label, so the expected
probabilities are known exactly. Each is saved with save_pretrained and loaded through the classifiers' own code."""

import json
import math

import numpy as np
import pytest
import torch

import microdrama_assets.ml  # noqa: F401  (first: it makes an installed torchaudio importable, see there)

from tokenizers import Tokenizer, models, pre_tokenizers, processors
from transformers import (BertConfig, BertForSequenceClassification, PreTrainedTokenizerFast, ViTConfig,
                          ViTForImageClassification, ViTImageProcessorPil)

from microdrama_assets.ml.moderation_classifiers import (TransformersImageModeration, TransformersTextModeration,
                                                         UnusableClassifier)
from microdrama_assets.ml.runtime import MissingModel
from microdrama_assets.trust.moderation import (ModerationReport, PolicyError, TextItem, check_image, check_text,
                                                load_policy)

WORDS = ["the", "barista", "finds", "a", "locket", "you", "are", "nothing", "run"]
BLOCKED_TEXT = TextItem("shot s02 line 1 (ivy)", "You are nothing.")


def save_tiny_text_model(directory, labels: list[str], bias: list[float], problem_type: str | None = None):
    vocab = {token: index for index, token in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]", *WORDS])}
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])])
    PreTrainedTokenizerFast(tokenizer_object=tokenizer, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]",
                            sep_token="[SEP]").save_pretrained(directory)
    torch.manual_seed(0)
    config = BertConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=64, problem_type=problem_type,
                        id2label=dict(enumerate(labels)), label2id={label: i for i, label in enumerate(labels)})
    model = BertForSequenceClassification(config)
    with torch.no_grad():  # the head ignores the text: every input gets exactly these logits
        model.classifier.weight.zero_()
        model.classifier.bias.copy_(torch.tensor(bias))
    model.save_pretrained(directory)
    return directory


def save_tiny_image_model(directory, labels: list[str], bias: list[float]):
    ViTImageProcessorPil(size={"height": 32, "width": 32}).save_pretrained(directory)
    torch.manual_seed(0)
    config = ViTConfig(image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                       intermediate_size=64, id2label=dict(enumerate(labels)),
                       label2id={label: i for i, label in enumerate(labels)})
    model = ViTForImageClassification(config)
    with torch.no_grad():
        model.classifier.weight.zero_()
        model.classifier.bias.copy_(torch.tensor(bias))
    model.save_pretrained(directory)
    return directory


def softmax(logits: list[float]) -> list[float]:
    exps = [math.exp(x) for x in logits]
    return [e / sum(exps) for e in exps]


@pytest.fixture
def hate_policy(tmp_path):
    """The default policy with the tiny text model's labels mapped: "hate" to the hate category."""
    path = tmp_path / "policy.json"
    path.write_text(json.dumps({"extends": "default", "text": {"classifier_labels": {
        "hate": {"category": "hate", "threshold": 0.5}}}}))
    return load_policy(path)


def test_text_classifier_blocks_the_favoured_label_and_passes_when_reversed(tmp_path, hate_policy):
    blocking = TransformersTextModeration(save_tiny_text_model(tmp_path / "hate", ["ok", "hate"], [0.0, 4.0]),
                                          device="cpu")
    assert blocking.labels == ["ok", "hate"]
    scores = blocking.scores([BLOCKED_TEXT.text, "the barista finds a locket"])
    expected = softmax([0.0, 4.0])
    for row in scores:
        assert row["ok"] == pytest.approx(expected[0], abs=1e-5) and row["hate"] == pytest.approx(expected[1], abs=1e-5)

    report = ModerationReport(tuple(check_text(hate_policy, [BLOCKED_TEXT], blocking)))
    assert report.blocked
    (violation,) = report.violations
    assert (violation.where, violation.category, violation.rule, violation.action) == (
        "shot s02 line 1 (ivy)", "hate", "classifier:hate", "block")
    assert violation.score == pytest.approx(expected[1], abs=1e-5)
    assert report.summary().startswith("1 blocking, 0 flagged: shot s02 line 1 (ivy): hate — classifier:hate scored 0.98")

    passing = TransformersTextModeration(save_tiny_text_model(tmp_path / "ok", ["ok", "hate"], [4.0, 0.0]),
                                         device="cpu")
    assert check_text(hate_policy, [BLOCKED_TEXT], passing) == []


def test_multi_label_text_model_scores_each_label_with_a_sigmoid(tmp_path, hate_policy):
    model_dir = save_tiny_text_model(tmp_path / "multi", ["hate", "S"], [2.0, 1.0],
                                     problem_type="multi_label_classification")
    (row,) = TransformersTextModeration(model_dir, device="cpu").scores(["run"])
    assert row["hate"] == pytest.approx(1 / (1 + math.exp(-2.0)), abs=1e-5)
    assert row["S"] == pytest.approx(1 / (1 + math.exp(-1.0)), abs=1e-5)  # independent: they sum past 1
    violations = check_text(hate_policy, [BLOCKED_TEXT], TransformersTextModeration(model_dir, device="cpu"))
    # "hate" (0.88) passes its 0.5 threshold; the default maps "S" to sexual_explicit at 0.9, which 0.73 misses.
    assert [(v.category, v.rule) for v in violations] == [("hate", "classifier:hate")]


def test_long_texts_are_truncated_to_the_model_limit(tmp_path):
    model_dir = save_tiny_text_model(tmp_path / "long", ["ok", "hate"], [1.0, 0.0])
    (row,) = TransformersTextModeration(model_dir, device="cpu").scores(["run " * 500])
    assert row["ok"] == pytest.approx(softmax([1.0, 0.0])[0], abs=1e-5)


def test_labels_the_policy_does_not_map_are_an_error(tmp_path):
    model_dir = save_tiny_text_model(tmp_path / "unmapped", ["LABEL_0", "LABEL_1"], [0.0, 1.0])
    with pytest.raises(PolicyError, match=r"LABEL_0, LABEL_1.*text.classifier_labels"):
        check_text(load_policy(None), [BLOCKED_TEXT], TransformersTextModeration(model_dir, device="cpu"))


def test_image_classifier_blocks_the_favoured_label_and_passes_when_reversed(tmp_path):
    policy = load_policy(None)  # the default maps "nsfw" to the blocking nudity category at 0.8
    frame = np.random.default_rng(0).integers(0, 256, (64, 36, 3), dtype=np.uint8)
    blocking = TransformersImageModeration(save_tiny_image_model(tmp_path / "nsfw", ["normal", "nsfw"], [0.0, 3.0]),
                                           device="cpu")
    (row,) = blocking.scores([frame])
    assert row["nsfw"] == pytest.approx(softmax([0.0, 3.0])[1], abs=1e-5)
    report = ModerationReport(tuple(check_image(policy, frame, "shot s01 keyframe 0", blocking, figures={})))
    assert report.blocked
    assert [(v.where, v.category, v.rule) for v in report.violations] == [
        ("shot s01 keyframe 0", "nudity", "classifier:nsfw")]

    passing = TransformersImageModeration(save_tiny_image_model(tmp_path / "normal", ["normal", "nsfw"], [3.0, 0.0]),
                                          device="cpu")
    assert check_image(policy, frame, "shot s01 keyframe 0", passing, figures={}) == []
    assert len(passing.scores([frame] * 3)) == 3


def test_missing_or_unusable_models_name_the_setting(tmp_path):
    with pytest.raises(MissingModel, match="MICRODRAMA_MODERATION_TEXT_MODEL"):
        TransformersTextModeration("", device="cpu")
    with pytest.raises(MissingModel, match=r"MICRODRAMA_MODERATION_IMAGE_MODEL.*preprocessor_config.json"):
        TransformersImageModeration(save_tiny_text_model(tmp_path / "text-only", ["ok", "hate"], [0.0, 0.0]),
                                    device="cpu")
    regression = save_tiny_text_model(tmp_path / "regression", ["score"], [0.0], problem_type="regression")
    with pytest.raises(UnusableClassifier, match="not a classifier"):
        TransformersTextModeration(regression, device="cpu")

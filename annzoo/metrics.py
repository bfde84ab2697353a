"""Metrics the sequence tasks need beyond Keras' own.

* :class:`TokenAccuracy`: per-token accuracy that skips padding, for models
  trained with teacher forcing (a Keras metric, backend-agnostic).
* :func:`bio_spans` and :func:`entity_scores`: entity-level precision, recall
  and F1 of BIO-tagged sequences, the CoNLL-2003 convention: an entity counts
  as found only when its type, first and last token all match.
* :func:`exact_match`: the share of decoded sequences equal to their target.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any

import keras

from annzoo.errors import AnnzooError

__all__ = ["TokenAccuracy", "bio_spans", "entity_scores", "exact_match"]


@keras.saving.register_keras_serializable(package="annzoo")
class TokenAccuracy(keras.metrics.Metric):
    """Share of non-padding steps whose most probable token is the label.

    Args:
        ignore_class: the label id that marks padding (0 in annzoo).
        name: the metric's name in logs.
    """

    def __init__(self, ignore_class: int = 0, name: str = "token_accuracy", **kwargs):
        super().__init__(name=name, **kwargs)
        self.ignore_class = int(ignore_class)
        self.correct = self.add_variable((), initializer="zeros", name="correct")
        self.count = self.add_variable((), initializer="zeros", name="count")

    def update_state(self, y_true, y_pred, sample_weight=None):
        y_true = keras.ops.cast(y_true, "int32")
        if len(y_true.shape) == len(y_pred.shape):
            y_true = keras.ops.squeeze(y_true, axis=-1)
        predicted = keras.ops.cast(keras.ops.argmax(y_pred, axis=-1), "int32")
        valid = keras.ops.not_equal(y_true, self.ignore_class)
        valid = keras.ops.cast(valid, "float32")
        if sample_weight is not None:
            weight = keras.ops.cast(sample_weight, "float32")
            while len(weight.shape) < len(valid.shape):
                weight = keras.ops.expand_dims(weight, -1)
            valid = valid * weight
        hits = keras.ops.cast(keras.ops.equal(predicted, y_true), "float32") * valid
        self.correct.assign_add(keras.ops.sum(hits))
        self.count.assign_add(keras.ops.sum(valid))

    def result(self):
        return keras.ops.divide_no_nan(self.correct, self.count)

    def reset_state(self):
        self.correct.assign(0.0)
        self.count.assign(0.0)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "ignore_class": self.ignore_class}


def bio_spans(tags: Sequence[str]) -> set[tuple[str, int, int]]:
    """Entities of one BIO tag sequence as ``(type, first, last)`` token spans.

    An ``I-X`` that does not continue an ``X`` entity starts a new one (the
    conlleval rule), so malformed predictions are still scored.
    """
    spans: set[tuple[str, int, int]] = set()
    kind, first = None, None
    for i, tag in enumerate([*tags, "O"]):
        prefix, _, label = tag.partition("-")
        continues = prefix == "I" and label == kind
        if kind is not None and not continues:
            spans.add((kind, first, i - 1))
            kind = None
        if prefix in ("B", "I") and not continues:
            kind, first = label, i
    return spans


def entity_scores(
    true_tags: Iterable[Sequence[str]], predicted_tags: Iterable[Sequence[str]]
) -> dict[str, Any]:
    """Entity-level precision, recall and F1 over sentences, overall and per type.

    Args:
        true_tags: the gold BIO tag names of each sentence.
        predicted_tags: the predicted tag names, sentence by sentence, of the
            same lengths.

    Returns:
        ``{"precision", "recall", "f1", "support", "per_type": {type: {...}}}``
        where support counts gold entities.
    """
    found: Counter[str] = Counter()
    gold: Counter[str] = Counter()
    correct: Counter[str] = Counter()
    for truth, guess in zip(true_tags, predicted_tags, strict=True):
        if len(truth) != len(guess):
            raise AnnzooError(
                "Each predicted tag sequence must be as long as its gold sequence. "
                f"Received lengths {len(guess)} and {len(truth)}."
            )
        true_spans, guessed = bio_spans(truth), bio_spans(guess)
        gold.update(s[0] for s in true_spans)
        found.update(s[0] for s in guessed)
        correct.update(s[0] for s in true_spans & guessed)

    def scores(c: int, f: int, g: int) -> dict[str, float]:
        precision = c / f if f else 0.0
        recall = c / g if g else 0.0
        f1 = 2 * precision * recall / (precision + recall) if c else 0.0
        return {"precision": precision, "recall": recall, "f1": f1, "support": g}

    result: dict[str, Any] = scores(
        sum(correct.values()), sum(found.values()), sum(gold.values())
    )
    result["per_type"] = {
        t: scores(correct[t], found[t], gold[t]) for t in sorted(gold | found)
    }
    return result


def exact_match(predicted: Iterable[Sequence], targets: Iterable[Sequence]) -> float:
    """Share of predicted sequences exactly equal to their target."""
    pairs = [(list(p), list(t)) for p, t in zip(predicted, targets, strict=True)]
    return sum(p == t for p, t in pairs) / len(pairs) if pairs else 0.0

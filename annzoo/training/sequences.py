"""What the runner does for text, token, tagging and sequence-target datasets.

* Raw text (``tfds:imdb_reviews``): words are tokenized, a vocabulary is built
  from the train split only (``data.text.max_tokens`` most frequent words) and
  every split becomes padded token ids (``data.text.sequence_length``).
* Token inputs fill the builder's ``vocabulary_size`` and ``sequence_length``
  (or ``input_shape``); sequence targets fill ``target_vocabulary_size`` and
  ``target_sequence_length`` (or, for a captioner, ``vocabulary_size`` and
  ``sequence_length``) and ``task="sequence"``.
* Taggers get one tag per token (-1 at padding, as the CRF loss expects);
  sequence models get the teacher-forcing input ``decoder_tokens``.
* After training, taggers are scored by entity-level F1 and sequence models by
  the exact match of greedy decoding on the test split, with an attention
  picture when the model has an ``"attention"`` layer.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np

from annzoo import plots, registry
from annzoo._checks import check_positive_int
from annzoo.datasets import ArrayDataset
from annzoo.decode import decode, source_name
from annzoo.errors import AnnzooError
from annzoo.layers.crf import CRF
from annzoo.metrics import entity_scores, exact_match
from annzoo.tasks import get_task
from annzoo.text import PAD_ID, Vocabulary, shift_right, tokenize_words

__all__ = [
    "TEXT_DEFAULTS",
    "check_targets",
    "dataset_arguments",
    "model_inputs",
    "prepare_text",
    "report",
    "vocabularies",
]

TEXT_DEFAULTS = {"max_tokens": 20000, "sequence_length": 200}
DECODER_INPUT = "decoder_tokens"
EXAMPLES = 10  # decoded test examples written to results.json


def _is_text(x: np.ndarray) -> bool:
    return x.dtype.kind in "US" or (x.dtype == object and x.ndim == 1)


def prepare_text(
    splits: dict[str, ArrayDataset], settings: dict
) -> dict[str, ArrayDataset]:
    """Token ids instead of raw text, with the train split's word vocabulary."""
    if not _is_text(splits["train"].x):
        return splits
    settings = {**TEXT_DEFAULTS, **(settings or {})}
    max_tokens = check_positive_int("data.text.max_tokens", settings["max_tokens"])
    length = check_positive_int(
        "data.text.sequence_length", settings["sequence_length"]
    )
    if max_tokens < 3:
        raise AnnzooError(
            "`data.text.max_tokens` must be >= 3 (padding, unknown and one word). "
            f"Received: data.text.max_tokens={max_tokens}"
        )
    vocabulary = Vocabulary.build(
        (tokenize_words(t) for t in splits["train"].x), max_size=max_tokens
    )
    vocabulary.tokenizer = "lowercase_words"  # annzoo.text.tokenize_words
    out = {}
    for name, split in splits.items():
        ids = vocabulary.encode_batch(
            (tokenize_words(t) for t in split.x), length=length
        )
        out[name] = dataclasses.replace(split, x=ids, vocabulary=vocabulary)
    return out


def dataset_arguments(name: str, train: ArrayDataset) -> dict[str, Any]:
    """The builder arguments a dataset determines, as the family declares them
    (``FamilySpec.dataset_arguments``), for preset or family ``name``."""
    return registry.family_spec(name).dataset_arguments(train)


def check_targets(split: ArrayDataset, *, num_outputs: int, where: str) -> None:
    """Tags and target tokens must be valid ids, checked before training by the
    split's task (:class:`annzoo.tasks.Tagging` or :class:`annzoo.tasks.Sequence`)."""
    task = get_task("tagging" if split.structure == "tagging" else "sequence")
    task.check_labels(split.y, num_outputs=num_outputs, where=where, **(
        {"x": split.x} if split.structure == "tagging" else {}
    ))  # fmt: skip


def _source_name(model) -> str:
    return source_name(
        model, why="A dataset of target sequences needs a sequence-to-sequence model: "
    )


def _has_crf(model) -> bool:
    return any(isinstance(layer, CRF) for layer in model.layers)


def model_inputs(split: ArrayDataset, model) -> tuple[Any, np.ndarray]:
    """``(x, y)`` as the model trains on them."""
    if split.structure == "sequence":
        start = split.target_vocabulary.start_id
        x = {_source_name(model): split.x, DECODER_INPUT: shift_right(split.y, start)}
        return x, split.y
    if split.structure == "tagging" and not _has_crf(model):
        # Padded steps are masked out of the loss; their label only has to be
        # a valid class id.
        return split.x, np.where(split.y < 0, 0, split.y).astype(np.int32)
    return split.x, split.y


def _tokenizer(vocabulary: Vocabulary) -> str:
    """How raw text becomes this vocabulary's tokens (see annzoo.predict)."""
    if getattr(vocabulary, "tokenizer", None):
        return vocabulary.tokenizer
    ordinary = [t for t in vocabulary.tokens if not t.startswith("<")]
    return "characters" if all(len(t) == 1 for t in ordinary) else "words"


def vocabularies(train: ArrayDataset) -> dict[str, Any] | None:
    """``vocabulary.json`` of a run: the token lists a user needs to predict."""
    found: dict[str, Any] = {}
    if train.vocabulary is not None:
        found["inputs"] = list(train.vocabulary.tokens)
        found["tokenizer"] = _tokenizer(train.vocabulary)
        if train.structure == "sample" and train.class_names:
            found["classes"] = list(train.class_names)
    if train.target_vocabulary is not None:
        found["targets"] = list(train.target_vocabulary.tokens)
    if train.structure == "tagging":
        found["tags"] = list(train.class_names)
    return found or None


def report(
    model,
    test: ArrayDataset,
    run_dir: Path,
    *,
    title: str,
    drawn: tuple[str, ...] = ("confusion_matrix", "attention"),
) -> dict[str, Any]:
    """Scores a tagger or sequence model on the test split; writes its PNGs.

    ``drawn`` is what the family's report draws (``FamilySpec.report``): the
    tag confusion matrix and the attention picture only when it names them.
    """
    if test.structure == "tagging":
        return _report_tagging(model, test, run_dir, title, drawn)
    return _report_sequence(model, test, run_dir, title, drawn)


def _report_tagging(model, test, run_dir, title, drawn):
    predicted = get_task("tagging").predict(model, test.x)
    names = list(test.class_names)
    lengths = (test.x != PAD_ID).sum(axis=1)
    gold = [[names[t] for t in row[:n]] for row, n in zip(test.y, lengths, strict=True)]
    guess = [
        [names[t] for t in row[:n]] for row, n in zip(predicted, lengths, strict=True)
    ]
    scores = entity_scores(gold, guess)
    valid = test.y >= 0
    matrix = np.zeros((len(names), len(names)), dtype=int)
    np.add.at(matrix, (test.y[valid], predicted[valid]), 1)
    if "confusion_matrix" in drawn:
        plots.plot_confusion_matrix(
            matrix,
            run_dir / "confusion.png",
            class_names=names,
            title=f"{title}: test tags",
        )
    return {
        "test": {
            "entity_f1": scores["f1"],
            "entity_precision": scores["precision"],
            "entity_recall": scores["recall"],
        },
        "entities": scores["per_type"],
        "confusion_matrix": matrix.tolist(),
    }


def _report_sequence(model, test, run_dir, title, drawn):
    target_vocabulary = test.target_vocabulary
    with_attention = "attention" in drawn and any(
        layer.name == "attention" for layer in model.layers
    )
    result = decode(
        model,
        test.x,
        vocabulary=target_vocabulary,
        return_attention=with_attention,
    )
    targets = [target_vocabulary.decode(row, join=None) for row in test.y]
    predicted = [
        [target_vocabulary.tokens[i] for i in result.tokens(k)]
        for k in range(len(test.x))
    ]
    join = "" if all(len(t) == 1 for row in targets for t in row) else " "
    examples = []
    for k in range(min(EXAMPLES, len(test.x))):
        example = {
            "target": join.join(targets[k]),
            "predicted": join.join(predicted[k]),
        }
        if test.vocabulary is not None:
            example["source"] = test.vocabulary.decode(test.x[k], join=join)
        examples.append(example)
    out: dict[str, Any] = {
        "test": {"exact_match": exact_match(predicted, targets)},
        "examples": examples,
    }
    if with_attention and len(test.x):
        out["attention_png"] = _plot_attention(
            model, test, result, predicted[0], run_dir, title
        ).name
    return out


def _plot_attention(model, test, result, words, run_dir, title):
    steps = len(words) + 1  # the end token's attention too, when produced
    targets = [*words, "<end>"][: min(steps, result.attention.shape[1])]
    weights = result.attention[0, : len(targets)]
    path = run_dir / "attention.png"
    if test.vocabulary is None:  # an image: regions of the encoder's feature map
        grid = tuple(model.get_layer("encoder_features").output.shape[1:3])
        return plots.plot_attention_overlay(
            test.x[0], weights, path, words=targets, grid=grid, title=title
        )
    length = int((test.x[0] != PAD_ID).sum())
    sources = [test.vocabulary.tokens[i] for i in test.x[0, :length]]
    return plots.plot_attention(
        weights[:, :length],
        path,
        source_tokens=sources,
        target_tokens=targets,
        title=title,
    )

"""What a language model's run reports: bits per character, names, texts.

`annzoo.training.generative.report` hands a ``"generation"`` run to
`names_report`: the test bits per character beside a smoothed character
bigram's (`bigram_bits`); of names, ``names.txt`` (names per class), the
share of generated names not in the training split and, for a model
conditioned on the class, the share the surnames classifier assigns to the
class asked for (`class_share`, with the classifier of `train_classifier`);
of running text cut into windows (the ``"kjv"`` dataset), ``samples.txt``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import keras
import numpy as np

from annzoo import datasets, recipes
from annzoo import io as aio
from annzoo.errors import AnnzooError
from annzoo.generation import bits_per_character, generate_text
from annzoo.registry import create_model
from annzoo.text import PAD_ID
from annzoo.training.recipe import load_recipe

__all__ = [
    "bigram_bits",
    "class_share",
    "names_report",
    "train_classifier",
]

# --- language models: names per class, bits per character -----------------

NAMES_PER_CLASS = 20  # shown per class in names.txt and results.json
# Names drawn per class for `new_names` and `class_share` (the first
# NAMES_PER_CLASS are the ones shown): about +-5 points on one class's share.
MEASURED_NAMES_PER_CLASS = 100
BIGRAM_SMOOTHING = (0.01, 0.03, 0.1, 0.3, 1.0)  # chosen on the validation split
# The packaged classifier recipe whose network and settings `class_share`
# trains (annzoo/recipes/surnames_char_rnn.yaml: the char_rnn preset).
CLASSIFIER_RECIPE = "surnames_char_rnn"
# Running text (a dataset whose `dataset_info` has "window"): texts written
# from <start> and each of these prompts, as long as the model reads (one
# step per character: each prompt costs as much as the next).
TEXT_PROMPTS = ("And God said", "Blessed are the")
TEXTS_PER_PROMPT = 3
TEXT_LENGTH = None  # characters, prompt included; None: the model's length
TEXT_TEMPERATURE = 0.8


def _texts(split) -> list[str]:
    """The texts of a split made by the language model's training_split."""
    tokens = split.vocabulary.tokens
    return [
        "".join(tokens[i] for i in row[1:] if i != PAD_ID)
        for row in np.asarray(split.x)
    ]


def bigram_bits(train_y_pairs, test_y_pairs, vocabulary_size: int, alpha: float):
    """Bits per target of an add-``alpha`` bigram model: ``p(b | a) = (n(a, b)
    + alpha) / (n(a) + alpha * K)`` over the ``K = vocabulary_size - 2`` ids a
    target can be (all but padding and ``<start>``), counted on the training
    (previous, next) pairs; the mean of ``-log2 p`` over the test pairs."""
    counts = np.zeros((vocabulary_size, vocabulary_size))
    np.add.at(counts, (train_y_pairs[:, 0], train_y_pairs[:, 1]), 1)
    k = vocabulary_size - 2
    totals = counts.sum(axis=1)
    a, b = test_y_pairs[:, 0], test_y_pairs[:, 1]
    p = (counts[a, b] + alpha) / (totals[a] + alpha * k)
    return float(-np.log2(p).mean())


def _pairs(x, y) -> np.ndarray:
    """(input token, next token) at every target that is not padding."""
    x = x["tokens"] if isinstance(x, dict) else x
    keep = y != PAD_ID
    return np.stack([np.asarray(x)[keep], y[keep]], axis=1)


def _window(split) -> int | None:
    """The window length of a dataset of running text cut into windows (its
    `dataset_info` says ``"window"``), else None."""
    try:
        return datasets.dataset_info(split.name).get("window")
    except AnnzooError:  # a name that needs options to describe itself
        return None


def _scored(split, model, feed, window) -> tuple[Any, np.ndarray]:
    """A split's inputs and the targets that count in bits per character:
    every target but, for windows cut from a running text, the ``<end>`` the
    family's labels put after each window (it ends no text; scoring it would
    reward a model for counting to the window's length)."""
    x, y = feed(split, model)
    if window:
        y = np.where(y == split.vocabulary.end_id, PAD_ID, y)
    return x, y


def names_report(model, splits, run_dir: Path, *, seed: int, feed) -> dict:
    """A language model's measures: test bits per character beside a smoothed
    character bigram's, then, for a dataset of names, ``names.txt`` (a row of
    names per class, also in results.json), the share of new names and, for
    a model conditioned on the class, `class_share`; for running text
    (`_window`), ``samples.txt``: texts written from a few prompts."""
    train, val, test = splits["train"], splits["validation"], splits["test"]
    window = _window(train)
    x_test, y_test = _scored(test, model, feed, window)
    bits = bits_per_character(model, x_test, y_test)
    train_pairs = _pairs(*_scored(train, model, feed, window))
    val_pairs = _pairs(*_scored(val, model, feed, window))
    size = len(train.vocabulary)
    alpha = min(
        BIGRAM_SMOOTHING,
        key=lambda a: bigram_bits(train_pairs, val_pairs, size, a),
    )
    baseline = bigram_bits(train_pairs, _pairs(x_test, y_test), size, alpha)
    measures = {
        "bits_per_character": bits,
        "bigram_bits_per_character": baseline,
    }
    if window:
        return {
            "test": measures,
            "bigram_smoothing": alpha,
            **_text_samples(model, train.vocabulary, run_dir, seed=seed),
        }
    conditional = len(model.inputs) == 2
    classes = list(train.class_names) if conditional else ["all"]
    # Names no longer than the longest training name (the rows' width).
    longest = int(np.shape(train.x)[1]) - 1
    names: dict[str, list[str]] = {}
    for k, name in enumerate(classes):
        names[name] = generate_text(
            model,
            train.vocabulary,
            num=MEASURED_NAMES_PER_CLASS,
            labels=k if conditional else None,
            max_length=longest,
            seed=seed + k,
        )
    known = set(_texts(train))
    drawn = [n for row in names.values() for n in row]
    measures["new_names"] = float(np.mean([n not in known for n in drawn]))
    out: dict[str, Any] = {"bigram_smoothing": alpha}
    shares = None
    if conditional:
        classifier, accuracy = train_classifier(train, val, test, seed=seed)
        shares = class_share(classifier, names, train.vocabulary)
        measures["class_share"] = shares["overall"]
        measures["classifier_test_accuracy"] = accuracy
        out["class_share"] = shares["per_class"]
        out["classifier"] = {
            "recipe": CLASSIFIER_RECIPE,
            "test_accuracy": accuracy,
        }
    shown = {name: row[:NAMES_PER_CLASS] for name, row in names.items()}
    lines = []
    for name, row in shown.items():
        share = (
            f" ({shares['per_class'][name]:.0%} classified {name})" if shares else ""
        )
        lines.append(f"{name}{share}: {', '.join(row)}")
    if shares:
        lines.append(
            f"Classified as the language asked for: {shares['overall']:.1%} of "
            f"{len(drawn)} names ({MEASURED_NAMES_PER_CLASS} per language); the "
            f"classifier's accuracy on real test names: {accuracy:.1%}."
        )
    aio.write_text(run_dir / "names.txt", "\n".join(lines) + "\n")
    return {"test": measures, **out, "names": shown, "names_txt": "names.txt"}


def _text_samples(model, vocabulary, run_dir: Path, *, seed: int) -> dict:
    """``samples.txt``: `TEXTS_PER_PROMPT` texts per prompt of `TEXT_PROMPTS`,
    `TEXT_LENGTH` characters long, at temperature `TEXT_TEMPERATURE`."""
    samples: dict[str, list[str]] = {}
    for k, prompt in enumerate(TEXT_PROMPTS):
        samples[prompt] = generate_text(
            model,
            vocabulary,
            prompt=prompt,
            num=TEXTS_PER_PROMPT,
            temperature=TEXT_TEMPERATURE,
            max_length=TEXT_LENGTH,
            seed=seed + k,
        )
    blocks = [
        f"--- prompt {prompt!r}, temperature {TEXT_TEMPERATURE} ---\n{text}\n"
        for prompt, texts in samples.items()
        for text in texts
    ]
    aio.write_text(run_dir / "samples.txt", "\n".join(blocks))
    return {"samples": samples, "samples_txt": "samples.txt"}


def train_classifier(train, validation, test, *, seed: int) -> tuple[Any, float]:
    """The classifier `class_share` judges names with, and its test accuracy.

    The network and settings of the packaged `CLASSIFIER_RECIPE` recipe
    (``char_rnn``: a 32-d character embedding, a GRU of 128, softmax over the
    classes; its optimizer, learning rate, batch size, epochs and early
    stopping, keeping the weights of the best validation loss), seeded with
    ``seed``, trained on the language model's training split: the same texts
    with the same labels, characters numbered as the language model numbers
    them (``x`` without its ``<start>``).
    """
    recipe = load_recipe(recipes.path(CLASSIFIER_RECIPE))
    keras.utils.set_random_seed(seed)
    optimizer = {
        key: recipe.compile[key]
        for key in ("optimizer", "learning_rate")
        if recipe.compile[key] is not None
    }
    classifier = create_model(
        recipe.model["name"],
        vocabulary_size=len(train.vocabulary),
        num_outputs=int(train.num_classes),
        compile=optimizer,
    )
    stop = recipe.callbacks["early_stopping"] or {}
    callbacks = [
        keras.callbacks.EarlyStopping(
            monitor="val_loss",
            patience=stop.get("patience", 10),
            restore_best_weights=True,
        )
    ]
    classifier.fit(
        _characters(train),
        np.asarray(train.y),
        validation_data=(_characters(validation), np.asarray(validation.y)),
        batch_size=recipe.data["batch_size"],
        epochs=recipe.fit["epochs"],
        callbacks=callbacks,
        verbose=0,
    )
    predicted = classifier.predict(_characters(test), verbose=0).argmax(axis=-1)
    return classifier, float(np.mean(predicted == np.asarray(test.y).reshape(-1)))


def _characters(split) -> np.ndarray:
    """A language-model split's texts as a classifier reads them."""
    return np.asarray(split.x)[:, 1:]


def class_share(classifier, names, vocabulary) -> dict[str, Any]:
    """The share of names a classifier assigns to the class they were asked for.

    Args:
        classifier: a model whose ``predict`` gives class probabilities for
            rows of character ids (padded with 0 at the end).
        names: ``{class name: [names]}``, the classes in id order (the first
            key is class 0).
        vocabulary: the ids of the characters.

    Returns:
        ``{"per_class": {class name: share}, "overall": share}``: the share of
        each class's names whose most probable class is that class, and the
        share over every name.
    """
    texts = [text for row in names.values() for text in row]
    asked = np.concatenate(
        [np.full(len(row), k) for k, row in enumerate(names.values())]
    )
    width = max([1, *map(len, texts)])
    x = vocabulary.encode_batch(texts, length=width)
    predicted = np.asarray(classifier.predict(x, verbose=0)).argmax(axis=-1)
    right = predicted == asked
    per_class = {name: float(right[asked == k].mean()) for k, name in enumerate(names)}
    return {"per_class": per_class, "overall": float(right.mean())}

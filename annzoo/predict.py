"""Predictions from a run directory's model for inputs a user has at hand.

`predict_files` reads ``.npy`` (an array of samples), ``.npz`` (its ``x``
array, or its only array), ``.csv`` (numeric columns, a header row; a column
named like the recipe's label column is ignored) and images (``.png``,
``.jpg``, ``.jpeg``, ``.bmp``, ``.gif``), resized to the model's input and
scaled to [0, 1]. `predict_texts` takes raw text for runs trained on token
data (classifiers, taggers, translators).
"""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from annzoo import io as aio
from annzoo import registry
from annzoo.decode import decode
from annzoo.errors import AnnzooError
from annzoo.tasks import get_task
from annzoo.text import Vocabulary, tokenize_words

__all__ = ["load_inputs", "predict_files", "predict_texts"]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif")


def _model_path(run_dir: Path, which: str) -> Path:
    path = run_dir / f"{which}.keras"
    if not path.is_file():
        raise AnnzooError(
            f"`run_dir` must be an annzoo run directory containing {which}.keras. "
            f"Received: {str(run_dir)!r}"
        )
    return path


def _saved_recipe(run_dir: Path) -> dict:
    path = run_dir / "recipe.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def _check_reads(recipe: dict, kind: str, run_dir: Path) -> None:
    """The run's family must say that ``annzoo predict`` reads ``kind`` for it."""
    name = recipe.get("model", {}).get("name")
    if name is None:
        return
    family = registry.resolve(name)[0]
    kinds = registry.family_spec(name).predict
    if kind not in kinds:
        takes = " or ".join(repr(k) for k in kinds) or "no raw input"
        raise AnnzooError(
            f"`run_dir` {str(run_dir)!r} holds a {family!r} model, for which "
            f"`annzoo predict` reads {takes}. Received: {kind!r} input."
        )


def _load_image(path: Path, shape: tuple) -> np.ndarray:
    # Deferred: Pillow (installed with matplotlib) only for image inputs.
    from PIL import Image

    height, width, channels = shape
    with Image.open(path) as image:
        image = image.convert("L" if channels == 1 else "RGB")
        if (height, width) != (None, None):
            image = image.resize((width or image.width, height or image.height))
        array = np.asarray(image, dtype="float32") / 255.0
    return array.reshape(array.shape[0], array.shape[1], channels)


def load_inputs(paths: Sequence[str | os.PathLike], input_shape: tuple) -> np.ndarray:
    """Reads ``paths`` into one float32 batch shaped like the model's input."""
    batches = []
    images = []
    for raw in paths:
        path = Path(raw)
        if not path.is_file():
            raise AnnzooError(f"`inputs` file {str(path)!r} does not exist.")
        suffix = path.suffix.lower()
        if suffix in IMAGE_SUFFIXES:
            if len(input_shape) != 3:
                raise AnnzooError(
                    f"`inputs` {str(path)!r} is an image but the model takes inputs of "
                    f"shape {tuple(input_shape)}. Received an image file."
                )
            images.append(_load_image(path, tuple(input_shape)))
            continue
        if suffix == ".npy":
            array = np.load(path, allow_pickle=False)
        elif suffix == ".npz":
            with np.load(path, allow_pickle=False) as archive:
                keys = list(archive.keys())
                key = "x" if "x" in keys else (keys[0] if len(keys) == 1 else None)
                if key is None:
                    raise AnnzooError(
                        f"`inputs` {str(path)!r} must hold an array named 'x' or a "
                        f"single array. Received arrays {keys}."
                    )
                array = archive[key]
        elif suffix == ".csv":
            array = _read_csv(path)
        else:
            raise AnnzooError(
                "`inputs` must be .npy, .npz, .csv or image files "
                f"({', '.join(IMAGE_SUFFIXES)}). Received: {str(path)!r}"
            )
        array = np.asarray(array, dtype="float32")
        if array.shape[1:] != tuple(input_shape):
            if array.shape == tuple(input_shape):
                array = array[None]
            elif array.ndim >= 1 and int(np.prod(array.shape[1:])) == int(
                np.prod(input_shape)
            ):
                array = array.reshape(len(array), *input_shape)
            else:
                raise AnnzooError(
                    f"`inputs` {str(path)!r} must hold samples of shape "
                    f"{tuple(input_shape)}. Received an array of shape {array.shape}."
                )
        batches.append(array)
    if images:
        batches.append(np.stack(images))
    return np.concatenate(batches) if len(batches) > 1 else batches[0]


def _read_csv(path: Path) -> np.ndarray:
    with open(path, newline="", encoding="utf-8") as handle:
        rows = list(csv.reader(handle))
    if not rows:
        raise AnnzooError(f"`inputs` {str(path)!r} is an empty CSV file.")
    header, body = rows[0], rows[1:]
    try:
        values = [[float(cell) for cell in row] for row in body]
    except ValueError as error:
        raise AnnzooError(
            f"`inputs` {str(path)!r} must contain only numbers below its header row. "
            f"Received: {error}"
        ) from None
    if not values:
        raise AnnzooError(f"`inputs` {str(path)!r} has a header but no rows.")
    del header
    return np.asarray(values, dtype="float32")


def predict_files(
    run_dir: str | os.PathLike,
    inputs: Sequence[str | os.PathLike],
    *,
    output: str | os.PathLike | None = None,
    which: str = "best",
) -> Path:
    """Predicts ``inputs`` with ``RUN_DIR/best.keras`` and writes a CSV.

    The CSV has one row per sample: ``source``, ``prediction`` (the class id
    for classifiers, the value for regression) and the model's raw outputs.
    A ``.npy`` with the raw outputs is written beside it.

    Returns:
        The CSV's path (default ``RUN_DIR/predictions/predictions.csv``).
    """
    run_dir = Path(run_dir)
    recipe = _saved_recipe(run_dir)
    _check_reads(recipe, "arrays", run_dir)
    model = aio.load_model(_model_path(run_dir, which))
    input_shape = tuple(model.input_shape[1:])
    sources: list[str] = []
    batches = []
    for path in inputs:
        batch = load_inputs([path], input_shape)
        batches.append(batch)
        sources += [
            f"{path}[{i}]" if len(batch) > 1 else str(path) for i in range(len(batch))
        ]
    x = np.concatenate(batches)
    outputs = np.asarray(model.predict(x, verbose=0))
    task = get_task(recipe.get("model", {}).get("task", "multiclass"))
    predictions = task.predictions(outputs)
    if predictions.ndim > 1:  # several regression targets: the first, as a column
        predictions = predictions[:, 0]
    output = Path(output) if output else run_dir / "predictions" / "predictions.csv"
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(
        ["source", "prediction", *[f"output_{i}" for i in range(outputs.shape[-1])]]
    )
    for source, prediction, row in zip(sources, predictions, outputs, strict=True):
        writer.writerow([source, prediction, *[f"{v:.6g}" for v in np.ravel(row)]])
    aio.write_text(output, buffer.getvalue())
    with aio.atomic_path(output.with_suffix(".npy")) as tmp:
        np.save(tmp, outputs)
    return output


# --------------------------------------------------------------------------
# Text: token classifiers, taggers and sequence-to-sequence models


def _tokens(text: str, tokenizer: str) -> list[str]:
    if tokenizer == "characters":
        return list(text)
    if tokenizer == "lowercase_words":
        return tokenize_words(text)
    return text.split()


def predict_texts(
    run_dir: str | os.PathLike,
    texts: Sequence[str],
    *,
    which: str = "best",
    beam_width: int = 1,
    output: str | os.PathLike | None = None,
) -> tuple[Path, list[str]]:
    """Predicts raw ``texts`` with a run trained on token data.

    The run's ``vocabulary.json`` says how text becomes tokens (characters,
    words as written, or lower-cased words without punctuation). A
    sequence-to-sequence run decodes each text (``beam_width`` 1 is greedy); a
    tagger returns ``word/TAG`` pairs; a classifier returns the class name.

    Returns:
        The CSV written (``source``, ``prediction``; default
        ``RUN_DIR/predictions/texts.csv``) and the predictions.
    """
    run_dir = Path(run_dir)
    _check_reads(_saved_recipe(run_dir), "text", run_dir)
    path = run_dir / "vocabulary.json"
    if not path.is_file():
        raise AnnzooError(
            "`run_dir` must be a run trained on token data (it has a "
            f"vocabulary.json). Received: {str(run_dir)!r}, which has none."
        )
    texts = [texts] if isinstance(texts, str) else list(texts)
    if not texts or not all(isinstance(t, str) and t.strip() for t in texts):
        raise AnnzooError(f"`texts` must be non-empty strings. Received: {texts!r:.80}")
    saved = json.loads(path.read_text())
    model = aio.load_model(_model_path(run_dir, which))
    inputs = Vocabulary(saved["inputs"])
    tokenized = [_tokens(t, saved.get("tokenizer", "words")) for t in texts]
    source = next(t for t in model.inputs if t.name != "decoder_tokens")
    length = source.shape[1] or max(len(t) for t in tokenized)
    x = inputs.encode_batch(tokenized, length=length)
    if "targets" in saved:
        targets = Vocabulary(saved["targets"])
        join = "" if all(len(t) == 1 for t in targets.tokens[4:]) else " "
        result = decode(model, x, beam_width=beam_width, vocabulary=targets)
        predictions = result.texts(targets, join=join)
    elif "tags" in saved:
        tags = get_task("tagging").predict(model, x)
        predictions = [
            " ".join(
                f"{word}/{saved['tags'][tag]}"
                for word, tag in zip(words[:length], row, strict=False)
            )
            for words, row in zip(tokenized, tags, strict=True)
        ]
    else:
        outputs = np.asarray(model.predict(x, verbose=0))
        classes = saved.get("classes")
        task = "binary" if outputs.shape[-1] == 1 else "multiclass"
        ids = get_task(task).predictions(outputs)
        predictions = [classes[i] if classes else str(i) for i in ids]
    output = Path(output) if output else run_dir / "predictions" / "texts.csv"
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["source", "prediction"])
    writer.writerows(zip(texts, predictions, strict=True))
    aio.write_text(output, buffer.getvalue())
    return output, predictions

"""Predictions from a run directory's model for inputs a user has at hand.

`predict_files` reads ``.npy`` (an array of samples), ``.npz`` (its ``x``
array, or its only array), ``.csv`` (a header row of column names, then one
row of numbers per sample) and images (``.png``, ``.jpg``, ``.jpeg``,
``.bmp``, ``.gif``), resized to the model's input and scaled to [0, 1].
`predict_texts` takes raw text for runs trained on token data (classifiers,
taggers, translators).

Arrays are taken as they are only when their layout is unambiguous: samples
of the model's input shape (channels last), one such sample, flat rows of a
sample's values in that order, or one-channel samples without their channel
axis. Anything else is refused rather than reshaped, and so are non-numeric
or non-finite values, empty arrays and files that cannot be read: each is an
`AnnzooError` naming the file.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from annzoo import io as aio
from annzoo import registry
from annzoo._checks import (
    all_finite,
    channels_first_hint,
    check_positive_int,
    first_value,
    looks_channels_first,
    non_finite_summary,
)
from annzoo.decode import decode
from annzoo.errors import AnnzooError, CheckpointError
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


def _read_run_json(path: Path, what: str) -> dict:
    """A JSON object annzoo wrote into a run directory; a damaged one is refused."""
    where = f"{str(path)!r} must be the {what} annzoo wrote, a JSON object"
    data = path.read_bytes()
    if not data.strip():
        raise CheckpointError(
            f"{where}. Received: an empty file (the run directory is damaged)."
        )
    try:
        parsed = json.loads(data.decode("utf-8"))
    except UnicodeDecodeError as error:
        raise CheckpointError(
            f"{where}. Received: bytes that are not UTF-8 text (at byte "
            f"{error.start}), so the run directory is damaged."
        ) from None
    except ValueError as error:
        raise CheckpointError(
            f"{where}. Received: text that is not valid JSON ({error}), so the "
            "run directory is damaged (a truncated write?)."
        ) from None
    if not isinstance(parsed, dict):
        raise CheckpointError(f"{where}. Received: a JSON {type(parsed).__name__}.")
    return parsed


def _saved_recipe(run_dir: Path) -> dict:
    path = run_dir / "recipe.json"
    if not path.is_file():
        return {}
    recipe = _read_run_json(path, "recipe")
    if not isinstance(recipe.get("model", {}), dict):
        raise CheckpointError(
            f"{str(path)!r} must have a `model` mapping. Received: "
            f"model={recipe['model']!r:.80}"
        )
    return recipe


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
    try:
        with Image.open(path) as image:
            image = image.convert("L" if channels == 1 else "RGB")
            if (height, width) != (None, None):
                image = image.resize((width or image.width, height or image.height))
            array = np.asarray(image, dtype="float32") / 255.0
    except Exception as error:  # Pillow raises OSError, SyntaxError,
        # ValueError, DecompressionBombError... for files it cannot decode.
        raise AnnzooError(
            f"`inputs` file {str(path)!r} must be an image Pillow can read "
            f"({', '.join(IMAGE_SUFFIXES)}). Received: a file that does not decode "
            f"({type(error).__name__}: {str(error)[:120]})."
        ) from None
    return array.reshape(array.shape[0], array.shape[1], channels)


def _read_npy(path: Path) -> np.ndarray:
    """The array of a ``.npy`` file; its header is read first so that an object
    array, a truncated file or another format is named as such."""
    with open(path, "rb") as handle:
        try:
            version = np.lib.format.read_magic(handle)
            header = (
                np.lib.format.read_array_header_1_0
                if version == (1, 0)
                else np.lib.format.read_array_header_2_0
            )
            _, _, dtype = header(handle)
        except Exception as error:  # ValueError, EOFError...: not a
            # .npy header, whatever numpy says.
            raise AnnzooError(
                f"`inputs` file {str(path)!r} must be a NumPy .npy array (as "
                "written by np.save). Received: a file without a valid .npy header "
                f"({str(error)[:120]})."
            ) from None
    if dtype.hasobject:
        raise AnnzooError(
            f"`inputs` file {str(path)!r} must hold an array of numbers. Received: "
            f"an array of Python objects (dtype {dtype}), which annzoo does not "
            "unpickle; save numbers, e.g. np.save(path, x.astype('float32'))."
        )
    try:
        return np.load(path, allow_pickle=False)
    except Exception as error:  # EOF, reshape, memory errors
        raise AnnzooError(
            f"`inputs` file {str(path)!r} must be a complete NumPy .npy array. "
            f"Received: a file whose data cannot be read ({str(error)[:120]}); "
            "was it truncated?"
        ) from None


def _read_npz(path: Path) -> np.ndarray:
    try:
        with np.load(path, allow_pickle=False) as archive:
            keys = list(archive.keys())
            key = "x" if "x" in keys else (keys[0] if len(keys) == 1 else None)
            if key is None:
                raise AnnzooError(
                    f"`inputs` {str(path)!r} must hold an array named 'x' or a "
                    f"single array. Received arrays {keys}."
                )
            return archive[key]
    except AnnzooError:
        raise
    except Exception as error:  # BadZipFile, ValueError (object
        # arrays), EOFError, zlib.error...: the archive cannot be read.
        raise AnnzooError(
            f"`inputs` file {str(path)!r} must be a NumPy .npz archive of numeric "
            f"arrays (as written by np.savez). Received: a file that cannot be "
            f"read as one ({type(error).__name__}: {str(error)[:120]})."
        ) from None


def _fits(shape: tuple, expected: tuple) -> bool:
    """Whether ``shape`` is ``expected``, a None in ``expected`` matching any size."""
    return len(shape) == len(expected) and all(
        e is None or s == e for s, e in zip(shape, expected, strict=True)
    )


def _as_samples(array: np.ndarray, input_shape: tuple, path: Path) -> np.ndarray:
    """``array`` as a batch of samples of ``input_shape``.

    Only unambiguous layouts are accepted: samples of exactly ``input_shape``;
    one such sample without the batch axis; flat rows of as many values as a
    sample, read in the sample's own (channels-last, row-major) order, as a CSV
    row is; and, for one-channel inputs, samples without that channel axis.
    Anything else with the right number of values (channels-first images, a
    ``(16, 4)`` sample for an ``(8, 8, 1)`` input) is refused: reshaping it would
    scramble the values without a word.
    """
    name = f"`inputs` file {str(path)!r}"
    if array.ndim == 0:
        raise AnnzooError(
            f"{name} must hold samples of shape {input_shape}. Received: a scalar."
        )
    size = None if None in input_shape else math.prod(input_shape)
    if _fits(array.shape[1:], input_shape):
        samples = array
    elif _fits(array.shape, input_shape):
        samples = array[None]
    elif size is not None and array.ndim == 2 and array.shape[1] == size:
        samples = array.reshape(len(array), *input_shape)
    elif input_shape[-1] == 1 and _fits(array.shape[1:], input_shape[:-1]):
        samples = array[..., None]
    else:
        hint = ""
        sample = array.shape[1:]
        if looks_channels_first(sample) and _fits(sample[1:] + sample[:1], input_shape):
            hint = " " + channels_first_hint(array.shape[1:])
        flat = f", or flat rows of {size} values" if size is not None else ""
        raise AnnzooError(
            f"{name} must hold samples of shape {input_shape} (channels last"
            f"{flat}).{hint} Received: an array of shape {array.shape}, which is "
            "not reshaped because its layout is ambiguous."
        )
    if not len(samples):
        raise AnnzooError(
            f"{name} must hold at least one sample of shape {input_shape}. "
            f"Received: an array of shape {array.shape}."
        )
    return samples


def load_inputs(paths: Sequence[str | os.PathLike], input_shape: tuple) -> np.ndarray:
    """Reads ``paths`` into one float32 batch shaped like the model's input.

    Arrays must have an unambiguous layout (see `_as_samples`) and finite
    values; every failure is an `AnnzooError` naming the file.
    """
    input_shape = tuple(input_shape)
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
                    f"shape {input_shape}. Received an image file."
                )
            images.append(_load_image(path, input_shape))
            continue
        if suffix == ".npy":
            array = _read_npy(path)
        elif suffix == ".npz":
            array = _read_npz(path)
        elif suffix == ".csv":
            array = _read_csv(path)
        else:
            raise AnnzooError(
                "`inputs` must be .npy, .npz, .csv or image files "
                f"({', '.join(IMAGE_SUFFIXES)}). Received: {str(path)!r}"
            )
        if array.dtype.kind not in "biuf":
            raise AnnzooError(
                f"`inputs` file {str(path)!r} must hold numbers (bool, int or float). "
                f"Received: an array of dtype {array.dtype}"
                + (f", such as {first_value(array)!r}." if array.size else ".")
            )
        array = _as_samples(array, input_shape, path)
        with np.errstate(over="ignore"):
            array = array.astype("float32")
        if not all_finite(array):
            raise AnnzooError(
                f"`inputs` file {str(path)!r} must hold finite numbers (the model "
                "would return confident-looking outputs for NaN or infinity). "
                f"Received: {non_finite_summary(array)} (as float32)."
            )
        batches.append(array)
    if images:
        batches.append(np.stack(images))
    if not batches:
        raise AnnzooError("`inputs` must name at least one file. Received: none.")
    return np.concatenate(batches) if len(batches) > 1 else batches[0]


def _read_csv(path: Path) -> np.ndarray:
    """Numbers under a header row of column names.

    A first row of numbers would be taken for a header and lost, so it is
    refused, except ``0,1,...,k-1`` (the column names pandas writes for an
    unnamed frame).
    """
    name = f"`inputs` file {str(path)!r}"
    try:
        text = path.read_bytes().decode("utf-8-sig")
        rows = [row for row in csv.reader(io.StringIO(text, newline="")) if row]
    except UnicodeDecodeError as error:
        raise AnnzooError(
            f"{name} must be a UTF-8 CSV file. Received: bytes that are not UTF-8 "
            f"text (at byte {error.start})."
        ) from None
    except csv.Error as error:
        raise AnnzooError(
            f"{name} must be a CSV file of numbers. Received: {error}."
        ) from None
    if not rows:
        raise AnnzooError(
            f"{name} must have a header row and rows of numbers. "
            "Received: an empty CSV file."
        )
    header, body = rows[0], rows[1:]
    if _numbers(header) is not None and header != [str(i) for i in range(len(header))]:
        raise AnnzooError(
            f"{name} must start with a header row of column names; its first row "
            f"is numbers ({', '.join(header[:4])}{', ...' if len(header) > 4 else ''}"
            "), which would be read as the header and lost. Received: a CSV file "
            "without a header; add one, e.g. x0,x1,..."
        )
    values = []
    for number, row in enumerate(body, start=2):
        if len(row) != len(header):
            raise AnnzooError(
                f"{name} must have as many values in every row as its header has "
                f"columns ({len(header)}). Received: {len(row)} values in data row "
                f"{number - 1} (line {number}, counting non-empty lines)."
            )
        parsed = _numbers(row)
        if parsed is None:
            bad = next(cell for cell in row if _numbers([cell]) is None)
            raise AnnzooError(
                f"{name} must contain only numbers below its header row. Received: "
                f"{bad!r} in data row {number - 1}."
            )
        values.append(parsed)
    if not values:
        raise AnnzooError(
            f"{name} must have rows of numbers below its header. Received: a "
            "header but no rows."
        )
    return np.asarray(values, dtype="float64")


def _numbers(cells: list[str]) -> list[float] | None:
    try:
        return [float(cell) for cell in cells]
    except ValueError:
        return None


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
    beam_width = check_positive_int("beam_width", beam_width)
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
    saved = _read_run_json(path, "vocabulary")
    if not isinstance(saved.get("inputs"), list):
        raise CheckpointError(
            f"{str(path)!r} must list the input tokens under 'inputs'. Received: "
            f"keys {sorted(saved)}."
        )
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

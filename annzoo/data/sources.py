"""Sources: image folders (``tf.data``) and CSV files (NumPy) -> arrays or batches.

`image_folder` imports TensorFlow and Keras when called (deferred optional
dependencies); `load_csv` needs neither.
"""

from __future__ import annotations

import csv
import math
import numbers
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from annzoo._checks import (
    check_choice,
    check_non_negative_int,
    check_positive_int,
    is_int,
)
from annzoo.data._validation import _check_bool, _import_tf
from annzoo.errors import AnnzooError

IMAGE_EXTENSIONS = (".bmp", ".gif", ".jpeg", ".jpg", ".png")


def _check_image_size(image_size: Any) -> tuple[int, int]:
    if is_int(image_size):
        image_size = (image_size, image_size)
    if (
        not isinstance(image_size, Sequence)
        or len(image_size) != 2
        or not all(is_int(v) and v > 0 for v in image_size)
    ):
        raise AnnzooError(
            "`image_size` must be (height, width), two positive integers. "
            f"Received: image_size={image_size!r}"
        )
    return int(image_size[0]), int(image_size[1])


def image_folder(
    directory: str | os.PathLike,
    *,
    image_size: int | tuple[int, int],
    batch_size: int,
    validation_split: float | None = None,
    seed: int = 0,
    color_mode: str = "rgb",
    shuffle: bool = True,
):
    """Images in one subfolder per class, as ``tf.data`` batches in [0, 1].

    ``directory/CLASS_NAME/*.png`` (or .jpg, .jpeg, .bmp, .gif): the sorted
    subfolder names are the classes, labelled 0, 1, ... Images are resized to
    ``image_size`` (bilinear), channels last, float32 divided by 255; labels
    int32. Built on ``keras.utils.image_dataset_from_directory`` (TensorFlow).

    Args:
        directory: The folder holding the class subfolders.
        image_size: ``(height, width)`` after resizing, or one int for squares.
        batch_size: Images per batch.
        validation_split: ``None`` for one dataset of every image, or a
            fraction in (0, 1): a seeded ``(train, validation)`` pair.
        seed: Non-negative seed of the shuffle and of the split.
        color_mode: ``"grayscale"`` (1 channel), ``"rgb"`` (3) or ``"rgba"`` (4).
        shuffle: Shuffle the images (the split is seeded either way).

    Returns:
        A ``tf.data.Dataset`` of ``(images, labels)``, or ``(train,
        validation)``; each has a ``class_names`` attribute.

    Example:

    >>> train, val = image_folder("flowers/", image_size=64, batch_size=32,
    ...                           validation_split=0.2, seed=0)
    """
    path = Path(directory)
    if not path.is_dir():
        raise AnnzooError(
            f"`directory` must be an existing folder of class subfolders; "
            f"{str(path)!r} does not exist. Received: directory={directory!r}"
        )
    classes = sorted(p for p in path.iterdir() if p.is_dir())
    if not classes:
        raise AnnzooError(
            f"`directory` must hold one subfolder per class (e.g. {path}/cats/"
            f"001.png); {str(path)!r} has none. Received: directory={directory!r}"
        )
    num_images = sum(
        1
        for c in classes
        for f in c.rglob("*")
        if f.is_file() and f.suffix.lower() in IMAGE_EXTENSIONS
    )
    if num_images == 0:
        raise AnnzooError(
            f"`directory` has class subfolders {[c.name for c in classes]} but no "
            f"images ({', '.join(IMAGE_EXTENSIONS)}) in them. "
            f"Received: directory={directory!r}"
        )
    image_size = _check_image_size(image_size)
    batch_size = check_positive_int("batch_size", batch_size)
    seed = check_non_negative_int("seed", seed)
    color_mode = check_choice("color_mode", color_mode, ("grayscale", "rgb", "rgba"))
    _check_bool("shuffle", shuffle)
    if validation_split is not None and not (
        isinstance(validation_split, numbers.Real)
        and not isinstance(validation_split, bool)
        and 0.0 < float(validation_split) < 1.0
    ):
        raise AnnzooError(
            "`validation_split` must be None or a float in (0, 1). "
            f"Received: validation_split={validation_split!r}"
        )
    tf = _import_tf()
    import keras  # deferred, as TensorFlow (module docstring)

    loaded = keras.utils.image_dataset_from_directory(
        os.fspath(path),
        label_mode="int",
        color_mode=color_mode,
        batch_size=batch_size,
        image_size=image_size,
        shuffle=shuffle,
        seed=seed,
        validation_split=None if validation_split is None else float(validation_split),
        subset=None if validation_split is None else "both",
        verbose=False,
    )

    def scaled(ds):
        names = ds.class_names
        ds = ds.map(
            lambda images, labels: (images / 255.0, tf.cast(labels, tf.int32)),
            num_parallel_calls=tf.data.AUTOTUNE,
        ).prefetch(tf.data.AUTOTUNE)
        ds.class_names = names
        return ds

    if validation_split is None:
        return scaled(loaded)
    return scaled(loaded[0]), scaled(loaded[1])


def _parse_label_column(values: list[str]) -> np.ndarray:
    try:
        as_int = [int(v) for v in values]
    except ValueError:
        pass
    else:
        # Class ids fit int32; larger integers (ids, counts) stay exact as int64.
        fits = all(-(2**31) <= v < 2**31 for v in as_int)
        return np.asarray(as_int, dtype=np.int32 if fits else np.int64)
    try:
        return np.asarray([float(v) for v in values], dtype=np.float32)
    except ValueError:
        out = np.empty(len(values), dtype=object)
        out[:] = values
        return out


def load_csv(
    path: str | os.PathLike,
    *,
    label_column: str,
    feature_columns: Sequence[str] | None = None,
    delimiter: str = ",",
) -> tuple[np.ndarray, np.ndarray]:
    """Reads a CSV file with a header row into ``(x, y)`` NumPy arrays.

    Args:
        path: The CSV file; the first line names the columns.
        label_column: The column holding the targets.
        feature_columns: The feature columns, in this order; ``None`` takes
            every column but ``label_column``, in file order.
        delimiter: The field separator.

    Returns:
        ``x`` float32 ``(num_rows, num_features)``; ``y`` int32 when every label
        is an integer, float32 when every label is a number, else an object
        array of ``str`` (encode those before training).

    Raises:
        AnnzooError: The file is missing or empty, a column is not in the
            header (the message lists those that are), a row has the wrong
            number of fields, or a feature value is empty, non-numeric or not
            finite (the message names the column and the row).

    Example:

    >>> x, y = load_csv("iris.csv", label_column="species_id")
    """
    file = Path(path)
    if not file.is_file():
        raise AnnzooError(
            f"`path` must be an existing CSV file; {str(file)!r} does not exist. "
            f"Received: path={path!r}"
        )
    with open(file, newline="", encoding="utf-8-sig") as handle:
        rows = [row for row in csv.reader(handle, delimiter=delimiter)]
    rows = [r for r in rows if any(v.strip() for v in r)]  # skip blank lines
    if not rows:
        raise AnnzooError(f"CSV file {str(file)!r} is empty: it needs a header row.")
    header = [h.strip() for h in rows[0]]
    if len(rows) == 1:
        raise AnnzooError(f"CSV file {str(file)!r} has a header but no data rows.")

    def column(name: str, argument: str) -> int:
        if not isinstance(name, str) or name not in header:
            raise AnnzooError(
                f"`{argument}` {name!r} is not a column of {str(file)!r}; its "
                f"columns are {header}. Received: {argument}={name!r}"
            )
        return header.index(name)

    label_index = column(label_column, "label_column")
    if feature_columns is None:
        feature_indices = [i for i in range(len(header)) if i != label_index]
    else:
        if isinstance(feature_columns, str) or not feature_columns:
            raise AnnzooError(
                "`feature_columns` must be a non-empty sequence of column names or "
                f"None. Received: feature_columns={feature_columns!r}"
            )
        feature_indices = [column(c, "feature_columns") for c in feature_columns]
        if label_index in feature_indices:
            raise AnnzooError(
                f"`feature_columns` must not contain the label column "
                f"{label_column!r}. Received: feature_columns={feature_columns!r}"
            )
    if not feature_indices:
        raise AnnzooError(f"CSV file {str(file)!r} has no feature columns.")
    x = np.empty((len(rows) - 1, len(feature_indices)), dtype=np.float32)
    labels: list[str] = []
    for r, row in enumerate(rows[1:], start=1):
        if len(row) != len(header):
            raise AnnzooError(
                f"Row {r} of {str(file)!r} has {len(row)} fields but the header "
                f"has {len(header)}."
            )
        for j, i in enumerate(feature_indices):
            text = row[i].strip()
            try:
                value = float(text)
            except ValueError:
                what = "an empty value" if not text else f"a non-numeric value {text!r}"
                raise AnnzooError(
                    f"Column {header[i]!r} of {str(file)!r} has {what} in row {r} "
                    "(row 1 is the first line after the header). Feature columns "
                    "must be numbers; choose others with feature_columns=."
                ) from None
            if not math.isfinite(value):
                raise AnnzooError(
                    f"Column {header[i]!r} of {str(file)!r} has a non-finite value "
                    f"{text!r} in row {r}."
                )
            x[r - 1, j] = value
        labels.append(row[label_index].strip())
    return x, _parse_label_column(labels)

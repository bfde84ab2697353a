"""``"csv:PATH"`` datasets: a CSV file with a header row, split like the rest.

The features are parsed by `annzoo.data.load_csv`; the labels here, where the
task is chosen (see `annzoo.datasets.files` for the options). A fixed test
file (``test_file``) is parsed with the main file's columns, its samples
follow the main file's in the parsed source, and its labels share the main
file's classes.
"""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from annzoo._checks import check_choice, check_input_shape
from annzoo.data import load_csv
from annzoo.datasets import _split
from annzoo.datasets._base import ArrayDataset
from annzoo.datasets._parsed import (
    _cached,
    _dataset,
    _info,
    _Parsed,
    _path_of,
    _splits,
    _stat_key,
)
from annzoo.errors import AnnzooError

CSV_PREFIX = "csv:"
# task="auto": integer labels with at most this many distinct values are classes.
MAX_AUTO_CLASSES = 50
CSV_TASKS: tuple[str, ...] = ("auto", "multiclass", "binary", "regression")


def _check_csv_options(
    name: str,
    label_column: Any,
    feature_columns: Any,
    task: Any,
    standardize: Any,
    test_file: Any = None,
) -> tuple[Path, tuple[str, ...] | None, str, Path | None]:
    path = _path_of(name, CSV_PREFIX)
    if not path.is_file():
        what = "is a folder" if path.is_dir() else "does not exist"
        raise AnnzooError(
            f"Dataset {name!r} must name an existing CSV file; {str(path)!r} {what}. "
            f"Received: name={name!r}"
        )
    test_path = None
    if test_file is not None:
        if not isinstance(test_file, (str, os.PathLike)):
            raise AnnzooError(
                "`test_file` must be the path of a CSV file or None. "
                f"Received: test_file={test_file!r}"
            )
        test_path = Path(os.path.expanduser(os.fspath(test_file)))
        if not test_path.is_file():
            what = "is a folder" if test_path.is_dir() else "does not exist"
            raise AnnzooError(
                "`test_file` must be an existing CSV file with the columns of "
                f"{str(path)!r}; {str(test_path)!r} {what}. "
                f"Received: test_file={test_file!r}"
            )
    if label_column is not None and (not isinstance(label_column, str)):
        raise AnnzooError(
            "`label_column` must be the name of a column (a string). "
            f"Received: label_column={label_column!r}"
        )
    if feature_columns is not None:
        if (
            isinstance(feature_columns, str)
            or not isinstance(feature_columns, Sequence)
            or not feature_columns
            or not all(isinstance(c, str) for c in feature_columns)
        ):
            raise AnnzooError(
                "`feature_columns` must be a non-empty list of column names or "
                f"None. Received: feature_columns={feature_columns!r}"
            )
        feature_columns = tuple(feature_columns)
    task = check_choice("task", task, CSV_TASKS)
    if not isinstance(standardize, bool):
        raise AnnzooError(
            "`standardize` must be True or False. "
            f"Received: standardize={standardize!r}"
        )
    return path, feature_columns, task, test_path


def _read_rows(path: Path) -> list[list[str]]:
    """The non-blank rows of a CSV file, as `annzoo.data.load_csv` reads them."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            rows = list(csv.reader(handle))
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise AnnzooError(
            f"Could not read the CSV file {str(path)!r}: {type(error).__name__}: "
            f"{error}"
        ) from None
    rows = [r for r in rows if any(v.strip() for v in r)]
    if not rows:
        raise AnnzooError(f"CSV file {str(path)!r} is empty: it needs a header row.")
    return rows


def _number(text: str) -> int | float | None:
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        return None


def _check_filled(texts: list[str], where: str) -> None:
    for r, text in enumerate(texts, start=1):
        if not text:
            raise AnnzooError(
                f"{where} has an empty label in row {r} (row 1 is the first line "
                "after the header). Fill it in or remove the row."
            )


def _labels(
    texts: list[str], column: str, path: Path, task: str, where: str | None = None
) -> tuple[np.ndarray, str, tuple[str, ...] | None]:
    """``(y, task, class_names)`` for the label column's text values."""
    where = where or f"Column {column!r} of {str(path)!r}"
    _check_filled(texts, where)
    numbers = [_number(t) for t in texts]
    numeric = all(v is not None for v in numbers)
    if numeric:
        bad = next(
            (t for t, v in zip(texts, numbers, strict=True) if not math.isfinite(v)),
            None,
        )
        if bad is not None:
            raise AnnzooError(f"{where} has a non-finite label {bad!r}.")
    integers = numeric and all(isinstance(v, int) for v in numbers)
    if task == "auto":
        if not numeric:
            task = "classes"
        elif integers and len(set(numbers)) <= MAX_AUTO_CLASSES:
            task = "classes"
        else:
            task = "regression"
    if task == "regression":
        if not numeric:
            bad = next(t for t, v in zip(texts, numbers, strict=True) if v is None)
            raise AnnzooError(
                f"{where} holds text labels such as {bad!r}, not regression "
                "targets. Use task='multiclass' or 'binary' (or 'auto'), or choose "
                "another `label_column`. Received: task='regression'"
            )
        return np.asarray(numbers, dtype=np.float32), "regression", None

    # Classification: ids are the positions of the sorted distinct labels.
    if numeric and not integers:
        bad = next(
            (t for t, v in zip(texts, numbers, strict=True) if float(v) != int(v)), None
        )
        if bad is not None:
            raise AnnzooError(
                f"{where} holds non-integer numbers such as {bad!r}, which are not "
                "class labels. Use task='regression' or 'auto'. "
                f"Received: task={task!r}"
            )
        numbers = [int(v) for v in numbers]
    values = numbers if numeric else texts
    classes = sorted(set(values))
    if len(classes) < 2:
        raise AnnzooError(
            f"`label_column` must name a column of at least two classes for "
            f"classification; {where} has a single label value {texts[0]!r}. "
            f"Received: label_column={column!r}"
        )
    if task == "binary" and len(classes) != 2:
        raise AnnzooError(
            f"{where} has {len(classes)} distinct labels, but task='binary' needs "
            "exactly two. Use task='multiclass'. Received: task='binary'"
        )
    if task == "classes":  # chosen by "auto"
        two = len(classes) == 2 and (not numeric or classes == [0, 1])
        task = "binary" if two else "multiclass"
    ids = {value: i for i, value in enumerate(classes)}
    y = np.asarray([ids[v] for v in values], dtype=np.int32)
    return y, task, tuple(str(c) for c in classes)


def _features_and_texts(
    path: Path, label_column: str, feature_columns: tuple[str, ...] | None
) -> tuple[np.ndarray, list[str], list[str]]:
    """``(x, label texts, header)`` of one CSV file."""
    rows = _read_rows(path)
    header = [h.strip() for h in rows[0]]
    if len(rows) == 1:
        raise AnnzooError(
            f"`name` {CSV_PREFIX + str(path)!r} must be a CSV file with data rows "
            f"below its header, one per sample; {str(path)!r} has only the header "
            f"{header}, an empty dataset. Received: name={CSV_PREFIX + str(path)!r}"
        )
    if label_column is None:
        raise AnnzooError(
            f"`label_column` is required for 'csv:PATH' datasets: the column of "
            f"{str(path)!r} holding the targets, one of {header} (in a recipe, "
            "data.options.label_column). Received: label_column=None"
        )
    # load_csv checks the columns and every row and parses the features.
    try:
        x, _ = load_csv(
            path,
            label_column=label_column,
            feature_columns=None if feature_columns is None else list(feature_columns),
        )
    except OverflowError:  # load_csv parses integer labels as int32
        raise AnnzooError(
            f"Column {label_column!r} of {str(path)!r} holds integers too large for "
            "int32, which annzoo.data.load_csv cannot read. Write them as decimals "
            "(e.g. 3000000000.0) for a regression target. "
            f"Received: label_column={label_column!r}"
        ) from None
    # Labels are parsed here, keeping text labels and Python ints as they are.
    label_index = header.index(label_column)
    return x, [row[label_index].strip() for row in rows[1:]], header


def _parse_csv(
    path: Path,
    label_column: str | None,
    feature_columns: tuple[str, ...] | None,
    task: str,
    test_path: Path | None = None,
) -> _Parsed:
    x, texts, header = _features_and_texts(path, label_column, feature_columns)
    if feature_columns is None:
        feature_columns = tuple(h for h in header if h != label_column)
    fixed: tuple[tuple[str, int], ...] = ()
    where = None
    if test_path is not None:
        # The main file's columns, in its order (load_csv names a missing one).
        x_test, test_texts, _ = _features_and_texts(
            test_path, label_column, feature_columns
        )
        _check_filled(texts, f"Column {label_column!r} of {str(path)!r}")
        _check_filled(test_texts, f"Column {label_column!r} of {str(test_path)!r}")
        where = (
            f"Column {label_column!r} of {str(path)!r} and of the test file "
            f"{str(test_path)!r}"
        )
        x = np.concatenate([x, x_test])
        texts = texts + test_texts
        fixed = (("test", len(x_test)),)
    y, task, class_names = _labels(texts, label_column, path, task, where)
    n = len(y) - sum(count for _, count in fixed)
    unseen = sorted(set(y[n:].tolist()) - set(y[:n].tolist()))
    if task != "regression" and unseen:
        raise AnnzooError(
            f"Column {label_column!r} of the test file {str(test_path)!r} must hold "
            f"only labels of {str(path)!r}, which the model learns from. Received: "
            f"{[class_names[i] for i in unseen]}, found only in the test file."
        )
    what = (
        f"regression target {label_column!r}"
        if task == "regression"
        else f"{task} label {label_column!r} ({len(class_names)} classes)"
    )
    test = "" if test_path is None else f" Test split: {str(test_path)!r}"
    test += f" ({len(y) - n} rows)." if test_path is not None else ""
    return _Parsed(
        x=x,
        y=y,
        task=task,
        class_names=class_names,
        feature_names=tuple(feature_columns),
        description=(
            f"CSV file {str(path)!r}: {n} rows, {x.shape[1]} numeric "
            f"features, {what}.{test}"
        ),
        fixed=fixed,
    )


def _csv(
    name: str, label_column, feature_columns, task, standardize, test_file, input_shape
) -> tuple[_Parsed, bool, tuple[int, ...] | None]:
    path, feature_columns, task, test_path = _check_csv_options(
        name, label_column, feature_columns, task, standardize, test_file
    )
    if input_shape is not None:
        input_shape = check_input_shape("input_shape", input_shape)
        if None in input_shape:
            raise AnnzooError(
                "`input_shape` must be the shape of one sample, positive integers "
                f"such as [28, 28, 1]. Received: input_shape={list(input_shape)!r}"
            )
    test_key = None
    if test_path is not None:
        test_key = (str(test_path.resolve()), _stat_key(test_path))
    key = (
        CSV_PREFIX,
        str(path.resolve()),
        _stat_key(path),
        label_column,
        feature_columns,
        task,
        test_key,
    )
    parsed = _cached(
        key,
        lambda: _parse_csv(path, label_column, feature_columns, task, test_path),
    )
    if input_shape is not None and math.prod(input_shape) != parsed.x.shape[1]:
        raise AnnzooError(
            f"`input_shape` {list(input_shape)} must hold one value per feature "
            f"column of {str(path)!r} ({math.prod(input_shape)} values), but the "
            f"file has {parsed.x.shape[1]} feature columns. "
            f"Received: input_shape={list(input_shape)!r}"
        )
    return parsed, standardize, input_shape


def _load_csv(
    name: str,
    split: str,
    seed: int,
    *,
    label_column: str | None = None,
    feature_columns: Sequence[str] | None = None,
    task: str = "auto",
    standardize: bool = True,
    test_file: str | os.PathLike | None = None,
    input_shape: Sequence[int] | None = None,
) -> ArrayDataset:
    parsed, scale, shape = _csv(
        name, label_column, feature_columns, task, standardize, test_file, input_shape
    )
    rows = _splits(parsed, seed)
    idx = rows[split]
    if scale:  # with the train split's statistics only
        x = _split.standardize(parsed.x, rows["train"])[idx]
    else:
        x = np.array(parsed.x[idx], dtype=np.float32)
    if shape is not None:  # columns fill each sample in C order
        x = x.reshape(len(x), *shape)
    return _dataset(parsed, name, split, seed, x, idx)


def _info_csv(
    name: str,
    *,
    label_column: str | None = None,
    feature_columns: Sequence[str] | None = None,
    task: str = "auto",
    standardize: bool = True,
    test_file: str | os.PathLike | None = None,
    input_shape: Sequence[int] | None = None,
) -> dict[str, Any]:
    parsed, scale, shape = _csv(
        name, label_column, feature_columns, task, standardize, test_file, input_shape
    )
    info = _info(parsed, f"CSV file {str(_path_of(name, CSV_PREFIX))!r}")
    if shape is not None:
        info["input_shape"] = shape
    if scale:
        info["description"] += (
            " Features standardized with the train split's mean and std."
        )
    return info

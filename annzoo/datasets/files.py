"""A user's own files as datasets: ``"csv:PATH"`` and ``"images:DIR"``.

>>> from annzoo import datasets
>>> train = datasets.load("csv:data/houses.csv", "train", seed=0,
...                       label_column="price")
>>> test = datasets.load("images:data/flowers", "test", seed=0,
...                      image_size=[64, 64], color_mode="rgb")

In a recipe the options go in ``data.options``::

    data: {dataset: "csv:data/houses.csv", options: {label_column: price}}

Both sources split the same way as the embedded datasets (see
`annzoo.datasets.split_indices`): 70% ``"train"``, 15% ``"validation"``, 15%
``"test"``, drawn with ``numpy.random.default_rng(seed)``, stratified by class
for classification. ``indices`` are positions in the source: data rows of the
CSV file (0 is the first line after the header; blank lines are skipped), or
positions in `image_files`'s sorted list of images.

``"csv:PATH"``, a CSV file with a header row (parsed by `annzoo.data.load_csv`).
Options:

- ``label_column`` (required): the column holding the targets.
- ``feature_columns``: the feature columns, in this order; ``None`` (default)
  takes every other column, in file order. Features must be numbers.
- ``task``: ``"auto"`` (default), ``"multiclass"``, ``"binary"`` or
  ``"regression"``. ``"auto"``: integer labels with at most
  `MAX_AUTO_CLASSES` distinct values are classes (``"binary"`` when they are
  exactly 0 and 1), other numbers are regression targets, and text labels are
  classes (``"binary"`` when there are exactly two).
- ``standardize``: scale the features with the mean and standard deviation of
  the train split only (default ``True``).

Class ids are the positions of the sorted distinct labels (numbers sorted as
numbers, text as text) and ``class_names`` their text, so labels 0..K-1 keep
their values. Classification ``y`` is int32, regression ``y`` float32, ``x``
float32 ``(N, num_features)``.

``"images:DIR"``, one subfolder of ``DIR`` per class (sorted names are the
classes; hidden folders and files are skipped), images ``.png``, ``.jpg``,
``.jpeg``, ``.bmp`` or ``.gif`` anywhere below them, decoded with Pillow (no
TensorFlow, so any Keras backend works). Options:

- ``image_size`` (required): ``[height, width]`` after a bilinear resize.
- ``color_mode``: ``"rgb"`` (default, 3 channels) or ``"grayscale"`` (1).

``x`` is float32 in [0, 1], ``(N, height, width, channels)``; ``y`` int32
class ids; the task is ``"binary"`` for two classes, else ``"multiclass"``.

Files are parsed once per process: the result is cached, keyed by the path,
the files' modification times and sizes and the options, so loading the
three splits reads them once and editing a file is picked up.
`dataset_info` reads the files too (through the same cache).
"""

from __future__ import annotations

import collections
import csv
import dataclasses
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from annzoo._checks import check_choice, is_int
from annzoo.datasets import _split
from annzoo.datasets._base import ArrayDataset, register_dataset_prefix
from annzoo.errors import AnnzooError

__all__ = [
    "CSV_PREFIX",
    "IMAGES_PREFIX",
    "MAX_AUTO_CLASSES",
    "clear_cache",
    "image_files",
]

CSV_PREFIX = "csv:"
IMAGES_PREFIX = "images:"
# task="auto": integer labels with at most this many distinct values are classes.
MAX_AUTO_CLASSES = 50
CSV_TASKS: tuple[str, ...] = ("auto", "multiclass", "binary", "regression")
COLOR_MODES: tuple[str, ...] = ("rgb", "grayscale")
IMAGE_EXTENSIONS: tuple[str, ...] = (".bmp", ".gif", ".jpeg", ".jpg", ".png")
# Parsed files kept per process (the least recently used is dropped first).
_CACHE_SIZE = 4


@dataclasses.dataclass(frozen=True, eq=False)
class _Parsed:
    """One source, parsed: every sample, before splitting. Arrays are read-only."""

    x: np.ndarray  # CSV: float32 features; images: uint8 (N, H, W, C)
    y: np.ndarray  # int32 class ids or float32 targets
    task: str
    class_names: tuple[str, ...] | None
    feature_names: tuple[str, ...] | None
    description: str

    @property
    def num_classes(self) -> int | None:
        return None if self.class_names is None else len(self.class_names)


_CACHE: collections.OrderedDict[tuple, _Parsed] = collections.OrderedDict()


def clear_cache() -> None:
    """Forgets every parsed file, so the next `load` reads the files again."""
    _CACHE.clear()


def _cached(key: tuple, parse) -> _Parsed:
    if key in _CACHE:
        _CACHE.move_to_end(key)
        return _CACHE[key]
    parsed = parse()
    for array in (parsed.x, parsed.y):
        array.setflags(write=False)
    _CACHE[key] = parsed
    while len(_CACHE) > _CACHE_SIZE:
        _CACHE.popitem(last=False)
    return parsed


def _stat_key(path: Path) -> tuple[int, int]:
    stat = path.stat()
    return stat.st_mtime_ns, stat.st_size


def _path_of(name: str, prefix: str) -> Path:
    return Path(os.path.expanduser(name[len(prefix) :]))


def _dataset(
    parsed: _Parsed, name: str, split: str, seed: int, x: np.ndarray, idx
) -> ArrayDataset:
    return ArrayDataset(
        x=x,
        y=parsed.y[idx],
        name=name,
        split=split,
        task=parsed.task,
        num_classes=parsed.num_classes,
        class_names=parsed.class_names,
        feature_names=parsed.feature_names,
        seed=seed,
        indices=np.asarray(idx, dtype=np.int64),
    )


def _splits(parsed: _Parsed, seed: int) -> dict[str, np.ndarray]:
    labels = None if parsed.task == "regression" else parsed.y
    return _split.split_indices(len(parsed.y), seed, labels=labels)


def _info(parsed: _Parsed, source: str) -> dict[str, Any]:
    return {
        "task": parsed.task,
        "num_classes": parsed.num_classes,
        "input_shape": tuple(parsed.x.shape[1:]),
        "class_names": parsed.class_names,
        "feature_names": parsed.feature_names,
        "num_samples": _split.split_sizes(len(parsed.y)),
        "source": source,
        "description": parsed.description,
    }


# --------------------------------------------------------------------------
# CSV files


def _check_csv_options(
    name: str, label_column: Any, feature_columns: Any, task: Any, standardize: Any
) -> tuple[Path, tuple[str, ...] | None, str]:
    path = _path_of(name, CSV_PREFIX)
    if not path.is_file():
        what = "is a folder" if path.is_dir() else "does not exist"
        raise AnnzooError(
            f"Dataset {name!r} must name an existing CSV file; {str(path)!r} {what}. "
            f"Received: name={name!r}"
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
    return path, feature_columns, task


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


def _labels(
    texts: list[str], column: str, path: Path, task: str
) -> tuple[np.ndarray, str, tuple[str, ...] | None]:
    """``(y, task, class_names)`` for the label column's text values."""
    where = f"Column {column!r} of {str(path)!r}"
    for r, text in enumerate(texts, start=1):
        if not text:
            raise AnnzooError(
                f"{where} has an empty label in row {r} (row 1 is the first line "
                "after the header). Fill it in or remove the row."
            )
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


def _parse_csv(
    path: Path,
    label_column: str | None,
    feature_columns: tuple[str, ...] | None,
    task: str,
) -> _Parsed:
    from annzoo.data import load_csv

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
    label_index = header.index(label_column)
    if feature_columns is None:
        feature_columns = tuple(h for i, h in enumerate(header) if i != label_index)
    # Labels are parsed here, keeping text labels and Python ints as they are.
    texts = [row[label_index].strip() for row in rows[1:]]
    y, task, class_names = _labels(texts, label_column, path, task)
    what = (
        f"regression target {label_column!r}"
        if task == "regression"
        else f"{task} label {label_column!r} ({len(class_names)} classes)"
    )
    return _Parsed(
        x=x,
        y=y,
        task=task,
        class_names=class_names,
        feature_names=tuple(feature_columns),
        description=(
            f"CSV file {str(path)!r}: {len(y)} rows, {x.shape[1]} numeric "
            f"features, {what}."
        ),
    )


def _csv(
    name: str, label_column, feature_columns, task, standardize
) -> tuple[_Parsed, bool]:
    path, feature_columns, task = _check_csv_options(
        name, label_column, feature_columns, task, standardize
    )
    key = (
        CSV_PREFIX,
        str(path.resolve()),
        _stat_key(path),
        label_column,
        feature_columns,
        task,
    )
    parsed = _cached(key, lambda: _parse_csv(path, label_column, feature_columns, task))
    return parsed, standardize


def _load_csv(
    name: str,
    split: str,
    seed: int,
    *,
    label_column: str | None = None,
    feature_columns: Sequence[str] | None = None,
    task: str = "auto",
    standardize: bool = True,
) -> ArrayDataset:
    parsed, scale = _csv(name, label_column, feature_columns, task, standardize)
    rows = _splits(parsed, seed)
    idx = rows[split]
    if scale:  # with the train split's statistics only
        x = _split.standardize(parsed.x, rows["train"])[idx]
    else:
        x = np.array(parsed.x[idx], dtype=np.float32)
    return _dataset(parsed, name, split, seed, x, idx)


def _info_csv(
    name: str,
    *,
    label_column: str | None = None,
    feature_columns: Sequence[str] | None = None,
    task: str = "auto",
    standardize: bool = True,
) -> dict[str, Any]:
    parsed, scale = _csv(name, label_column, feature_columns, task, standardize)
    info = _info(parsed, f"CSV file {str(_path_of(name, CSV_PREFIX))!r}")
    if scale:
        info["description"] += (
            " Features standardized with the train split's mean and std."
        )
    return info


# --------------------------------------------------------------------------
# Image folders


def _visible(name: str) -> bool:
    return not name.startswith(".")


def _class_folders(directory: Path, name: str) -> list[Path]:
    if not directory.is_dir():
        what = "is a file" if directory.exists() else "does not exist"
        raise AnnzooError(
            f"Dataset {name!r} must name a folder of class subfolders; "
            f"{str(directory)!r} {what}. Received: name={name!r}"
        )
    classes = sorted(
        (p for p in directory.iterdir() if p.is_dir() and _visible(p.name)),
        key=lambda p: p.name,
    )
    if not classes:
        raise AnnzooError(
            f"Dataset {name!r}: {str(directory)!r} has no class subfolders; it "
            f"must hold one folder of images per class (e.g. {directory}/cats/"
            f"001.png). Received: name={name!r}"
        )
    return classes


def _images_in(folder: Path) -> list[Path]:
    found = [
        p
        for p in folder.rglob("*")
        if p.suffix.lower() in IMAGE_EXTENSIONS
        and p.is_file()
        and all(_visible(part) for part in p.relative_to(folder).parts)
    ]
    return sorted(found, key=lambda p: p.relative_to(folder).as_posix())


def _listing(directory: Path, name: str) -> tuple[list[Path], list[str], np.ndarray]:
    classes = _class_folders(directory, name)
    files: list[Path] = []
    labels: list[int] = []
    for label, folder in enumerate(classes):
        images = _images_in(folder)
        if not images:
            raise AnnzooError(
                f"Dataset {name!r}: the class folder {str(folder)!r} has no images "
                f"({', '.join(IMAGE_EXTENSIONS)}). Add some or remove the folder."
            )
        files.extend(images)
        labels.extend([label] * len(images))
    if len(classes) < 2:
        raise AnnzooError(
            f"Dataset {name!r}: {str(directory)!r} has a single class subfolder "
            f"{classes[0].name!r}; classification needs at least two classes."
        )
    return files, [c.name for c in classes], np.asarray(labels, dtype=np.int32)


def image_files(directory: str | os.PathLike) -> list[Path]:
    """The images of an ``"images:DIR"`` dataset, in the order of its ``indices``.

    Class folders in sorted order, each one's images sorted by relative path:
    ``image_files(DIR)[i]`` is the file of the sample whose index is ``i``.
    """
    return _listing(Path(directory), f"{IMAGES_PREFIX}{directory}")[0]


def _check_image_options(image_size: Any, color_mode: Any) -> tuple[int, int]:
    if image_size is None:
        raise AnnzooError(
            "`image_size` is required for 'images:DIR' datasets: [height, width] "
            "to resize every image to (in a recipe, data.options.image_size). "
            "Received: image_size=None"
        )
    if (
        isinstance(image_size, str)
        or not isinstance(image_size, Sequence)
        or len(image_size) != 2
        or not all(is_int(v) and v > 0 for v in image_size)
    ):
        raise AnnzooError(
            "`image_size` must be [height, width], two positive integers. "
            f"Received: image_size={image_size!r}"
        )
    check_choice("color_mode", color_mode, COLOR_MODES)
    return int(image_size[0]), int(image_size[1])


def _decode(file: Path, size: tuple[int, int], color_mode: str) -> np.ndarray:
    from PIL import Image

    height, width = size
    try:
        with Image.open(file) as image:
            if image.mode.startswith("I"):  # 16-bit grayscale: scale, not clip
                levels = np.asarray(image, dtype=np.float64) / 257.0
                image = Image.fromarray(np.clip(np.rint(levels), 0, 255).astype("u1"))
            image = image.convert("L" if color_mode == "grayscale" else "RGB")
            if image.size != (width, height):
                image = image.resize((width, height), Image.Resampling.BILINEAR)
            array = np.asarray(image, dtype=np.uint8)
    except Exception as error:  # Pillow raises many types for bad files
        raise AnnzooError(
            f"Could not read the image file {str(file)!r}: {type(error).__name__}: "
            f"{error}. Remove or replace it."
        ) from None
    return array[..., np.newaxis] if array.ndim == 2 else array


def _parse_images(
    directory: Path, name: str, size: tuple[int, int], color_mode: str, files, labels
) -> _Parsed:
    try:
        import PIL  # noqa: F401
    except ImportError as error:  # pragma: no cover - Pillow is a dependency
        raise AnnzooError(
            "'images:DIR' datasets need Pillow, which is not installed: "
            "pip install pillow"
        ) from error
    channels = 1 if color_mode == "grayscale" else 3
    x = np.empty((len(files), *size, channels), dtype=np.uint8)
    for i, file in enumerate(files):
        x[i] = _decode(file, size, color_mode)
    class_names = tuple(sorted({f.relative_to(directory).parts[0] for f in files}))
    return _Parsed(
        x=x,
        y=labels,
        task="binary" if len(class_names) == 2 else "multiclass",
        class_names=class_names,
        feature_names=None,
        description=(
            f"Images in {str(directory)!r}: {len(files)} images of "
            f"{len(class_names)} classes (one subfolder each), resized to "
            f"{size[0]}x{size[1]}, {color_mode}, float32 in [0, 1]."
        ),
    )


def _images(name: str, image_size: Any, color_mode: Any) -> _Parsed:
    size = _check_image_options(image_size, color_mode)
    directory = _path_of(name, IMAGES_PREFIX)
    files, _, labels = _listing(directory, name)
    stamps = tuple((os.fspath(f), *_stat_key(f)) for f in files)
    key = (IMAGES_PREFIX, str(directory.resolve()), stamps, size, color_mode)
    return _cached(
        key,
        lambda: _parse_images(directory, name, size, color_mode, files, labels),
    )


def _load_images(
    name: str,
    split: str,
    seed: int,
    *,
    image_size: Sequence[int] | None = None,
    color_mode: str = "rgb",
) -> ArrayDataset:
    parsed = _images(name, image_size, color_mode)
    idx = _splits(parsed, seed)[split]
    x = parsed.x[idx].astype(np.float32) / np.float32(255)
    return _dataset(parsed, name, split, seed, x, idx)


def _info_images(
    name: str, *, image_size: Sequence[int] | None = None, color_mode: str = "rgb"
) -> dict[str, Any]:
    parsed = _images(name, image_size, color_mode)
    return _info(parsed, f"image folder {str(_path_of(name, IMAGES_PREFIX))!r}")


register_dataset_prefix(
    CSV_PREFIX,
    _load_csv,
    info=_info_csv,
    options=("label_column", "feature_columns", "task", "standardize"),
    builtin=True,
)
register_dataset_prefix(
    IMAGES_PREFIX,
    _load_images,
    info=_info_images,
    options=("image_size", "color_mode"),
    builtin=True,
)

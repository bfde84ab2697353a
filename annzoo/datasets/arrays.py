"""Your own arrays as a dataset: `from_arrays`, `register_arrays` and ``"npz:PATH"``.

>>> from annzoo import datasets
>>> splits = datasets.from_arrays(x_train, y_train, x_test=x_test, y_test=y_test)
>>> splits["validation"].x.shape          # carved from x_train, 15% of it
>>> datasets.register_arrays("my_mnist", x_train, y_train, x_test=x_test,
...                          y_test=y_test)
>>> annzoo.training.train(recipe.override(["data.dataset=my_mnist"]))

or, from a file (``numpy.savez(path, x_train=..., y_train=..., ...)``), in a
recipe::

    data: {dataset: "npz:data/mnist.npz"}

Splits. ``x_train``/``y_train`` are required; ``x_val``/``y_val`` and
``x_test``/``y_test`` are optional pairs. A split that is given is kept as it
is, in its order (``indices`` are positions in its arrays). A missing split is
carved from the training arrays with `annzoo.datasets.split_indices`: 15% of
them each, rounded to the nearest sample, stratified by class for
classification (each class's count in a split is the floor or the ceiling of
its exact share), drawn with ``numpy.random.default_rng(seed)``; ``indices``
of carved splits are positions in ``x_train``. With no held-out split given,
that is the 70/15/15 split of the embedded datasets.

Features. Numbers of any shape ``(N, ...)`` (images channels last), converted
to float32 as they are, without rescaling: divide 8-bit images by 255 yourself
(or use a model with a rescaling layer). A 1-D array of strings is raw text, as
for the embedded text datasets. Every split must have the same sample shape.

Labels and task (``task="auto"``): integer, boolean or string labels are
classes; float labels are regression targets (pass ``task="multiclass"`` for
float class labels such as 3.0). Class ids are the positions of the sorted
distinct labels of all splits together, so labels 0..K-1 keep their values,
and ``class_names`` are their text; two classes are ``"binary"`` when they are
0 and 1 (or any two strings), as for ``"csv:"``. With ``class_names`` given,
labels must be integers in ``[0, len(class_names))`` and are kept.

Arrays registered with `register_arrays` live in this Python process only:
`annzoo.training.train` and `annzoo.tune` find them, the ``annzoo`` command
(another process) does not, and a run directory's ``recipe.json`` names the
dataset without its data. Save the arrays with ``numpy.savez`` and use ``"npz:PATH"``
for runs the command line can repeat.
"""

from __future__ import annotations

import os
import zipfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from annzoo._checks import (
    all_finite,
    check_choice,
    check_non_negative_int,
    non_finite_summary,
)
from annzoo.datasets._base import ArrayDataset, register_dataset
from annzoo.datasets._base import register_dataset_prefix as _register_prefix
from annzoo.datasets._parsed import (
    _cached,
    _dataset,
    _info,
    _Parsed,
    _path_of,
    _splits,
    _stat_key,
)
from annzoo.datasets._split import SPLITS
from annzoo.errors import AnnzooError

__all__ = ["ARRAY_TASKS", "NPZ_KEYS", "NPZ_PREFIX", "from_arrays", "register_arrays"]

NPZ_PREFIX = "npz:"
ARRAY_TASKS: tuple[str, ...] = ("auto", "multiclass", "binary", "regression")
# The arrays of an .npz file, by split; ``class_names`` is optional too.
_KEYS = {"train": ("x_train", "y_train"), "validation": ("x_val", "y_val"),
         "test": ("x_test", "y_test")}  # fmt: skip
NPZ_KEYS: tuple[str, ...] = (
    *(k for pair in _KEYS.values() for k in pair),
    "class_names",
)


def _cap(text: str) -> str:
    return text[:1].upper() + text[1:]


def _numeric_or_text(x: np.ndarray, name: Callable[[str], str], key: str):
    if x.dtype.kind in "US" or (x.dtype == object and x.ndim == 1):
        if x.ndim != 1 or not all(isinstance(v, str) for v in x.tolist()):
            raise AnnzooError(
                f"{_cap(name(key))} must hold numbers, or raw text as a 1-D array of "
                f"strings. Received: an array of dtype {x.dtype} and shape {x.shape}."
            )
        return np.asarray(x.tolist(), dtype=object)
    if x.dtype.kind not in "biuf":
        raise AnnzooError(
            f"{_cap(name(key))} must hold numbers (or raw text as strings). "
            f"Received: an array of dtype {x.dtype}."
        )
    if x.ndim < 2:
        raise AnnzooError(
            f"{_cap(name(key))} must have shape (num_samples, *input_shape), e.g. "
            "(num_samples, num_features) or (num_samples, height, width, channels). "
            f"Received: shape {x.shape}; reshape a single feature with "
            "x.reshape(-1, 1)."
        )
    if not all_finite(x):
        raise AnnzooError(
            f"{_cap(name(key))} must hold finite numbers. Received: "
            f"{non_finite_summary(x)}."
        )
    return x


def _encode_labels(
    ys: dict[str, np.ndarray], task: str, class_names: Any, name: Callable
) -> tuple[np.ndarray, str, tuple[str, ...] | None]:
    """``(y of all splits concatenated, task, class_names)``."""
    labels = _cap(name("y_train"))
    requested = task
    kinds = {y.dtype.kind for y in ys.values()}
    if not kinds <= set("biufUS"):
        key, y = next((k, y) for k, y in ys.items() if y.dtype.kind not in "biufUS")
        raise AnnzooError(
            f"{_cap(name(key))} must hold numbers or strings, one label per sample. "
            f"Received: an array of dtype {y.dtype}."
        )
    text = bool(kinds & set("US"))
    if text and not kinds <= set("US"):
        raise AnnzooError(
            f"{labels} and the other label arrays must all be numbers or all "
            f"be strings. Received: arrays of dtypes "
            f"{', '.join(str(y.dtype) for y in ys.values())}."
        )
    if class_names is not None:
        if (
            isinstance(class_names, str)
            or not isinstance(class_names, (Sequence, np.ndarray))
            or len(class_names) < 2
            or not all(isinstance(c, (str, np.str_)) for c in class_names)
        ):
            raise AnnzooError(
                "`class_names` must be a list of at least two strings, one per class "
                f"id. Received: class_names={class_names!r}"
            )
        class_names = tuple(str(c) for c in class_names)
    if task == "auto":
        task = "classes" if text or class_names or kinds <= set("biu") else "regression"
    y_all = np.concatenate([np.asarray(y) for y in ys.values()])
    if task == "regression":
        if text or class_names is not None:
            why = "text labels" if text else "`class_names`"
            raise AnnzooError(
                f"{labels} must hold numbers for task='regression', without "
                f"class names. Received: {why}; use task='multiclass' or 'auto'."
            )
        for key, y in ys.items():
            if not all_finite(y):
                raise AnnzooError(
                    f"{_cap(name(key))} must hold finite regression targets. Received: "
                    f"{non_finite_summary(y)}."
                )
        return y_all.astype(np.float32), "regression", None
    if not text and y_all.dtype.kind == "f":
        if not all_finite(y_all) or np.any(y_all != np.round(y_all)):
            key = next(
                k for k, y in ys.items() if np.any(~np.isfinite(y) | (y % 1 != 0))
            )
            raise AnnzooError(
                f"{_cap(name(key))} must hold whole-number class labels for "
                f"task={requested!r}. Received: fractional or non-finite values; use "
                "task='regression' or 'auto' for targets."
            )
        y_all = y_all.astype(np.int64)
    if class_names is not None:
        if text or y_all.min() < 0 or y_all.max() >= len(class_names):
            bad = (
                y_all[0] if text else (y_all.min() if y_all.min() < 0 else y_all.max())
            )
            raise AnnzooError(
                f"{labels} (and the other labels) must be class ids in "
                f"[0, {len(class_names)}), one per name in `class_names`. "
                f"Received: a label {bad!r}."
            )
        classes = list(range(len(class_names)))
        ids = y_all.astype(np.int32)
    else:
        classes, ids = np.unique(y_all, return_inverse=True)
        ids = ids.reshape(-1).astype(np.int32)
        classes = classes.tolist()
        class_names = tuple(str(c) for c in classes)
    if len(classes) < 2:
        raise AnnzooError(
            f"{labels} must hold at least two classes for classification. "
            f"Received: a single label {classes[0]!r}; use task='regression' for "
            "targets."
        )
    if task == "binary" and len(classes) != 2:
        raise AnnzooError(
            f"{labels} must hold exactly two classes for task='binary'. "
            f"Received: {len(classes)} classes; use task='multiclass'."
        )
    if task == "classes":  # chosen by "auto", as for "csv:" files
        two = len(classes) == 2 and (text or classes == [0, 1])
        task = "binary" if two else "multiclass"
    return ids, task, class_names


def _parse_arrays(
    given: dict[str, tuple[Any, Any]],
    *,
    task: Any,
    class_names: Any,
    name: Callable[[str], str],
    description: str,
) -> _Parsed:
    """One `_Parsed` from the given splits (train first, then the fixed ones)."""
    task = check_choice("task", task, ARRAY_TASKS)
    xs: dict[str, np.ndarray] = {}
    ys: dict[str, np.ndarray] = {}
    for split, (x, y) in given.items():
        x_key, y_key = _KEYS[split]
        if (x is None) != (y is None):
            missing, present = (x_key, y_key) if x is None else (y_key, x_key)
            raise AnnzooError(
                f"{_cap(name(missing))} must be given together with {name(present)}, "
                f"one label per sample. Received: {name(present)} without it."
            )
        if x is None:
            continue
        x, y = np.asarray(x), np.asarray(y)
        if y.ndim == 2 and y.shape[1] == 1:
            y = y[:, 0]
        if y.ndim != 1 or len(y) != len(x) or len(x) == 0:
            raise AnnzooError(
                f"{_cap(name(y_key))} must be a 1-D array of one label per sample "
                f"of {x_key} ({len(x) if x.ndim else 0} samples). Received: shape "
                f"{y.shape}."
            )
        xs[split] = _numeric_or_text(x, name, x_key)
        ys[split] = y
    if "train" not in xs:
        raise AnnzooError(
            f"{_cap(name('x_train'))} and {name('y_train')} are required: the training "
            "samples and their labels. Received: neither."
        )
    shapes = {s: x.shape[1:] for s, x in xs.items()}
    if (
        len(set(shapes.values())) > 1
        or len({x.dtype == object for x in xs.values()}) > 1
    ):
        raise AnnzooError(
            f"{_cap(name('x_train'))} and the other feature arrays must have the same "
            f"sample shape. Received: "
            f"{', '.join(f'{_KEYS[s][0]} {xs[s].shape}' for s in xs)}."
        )
    y, task, class_names = _encode_labels(ys, task, class_names, name)
    x = np.concatenate(list(xs.values()))
    kind = "text samples" if x.dtype == object else f"samples of shape {x.shape[1:]}"
    what = (
        "regression targets"
        if task == "regression"
        else f"{task} labels ({len(class_names)} classes)"
    )
    return _Parsed(
        x=x,
        y=y,
        task=task,
        class_names=class_names,
        feature_names=None,
        description=f"{description}: {len(x)} {kind}, {what}.",
        fixed=tuple((s, len(xs[s])) for s in xs if s != "train"),
    )


def _split_of(parsed: _Parsed, name: str, split: str, seed: int) -> ArrayDataset:
    idx = _splits(parsed, seed)[split]
    x = parsed.x[idx]
    x = x.copy() if x.dtype == object else x.astype(np.float32)
    return _dataset(parsed, name, split, seed, x, idx)


def _argument(key: str) -> str:
    return f"`{key}`"


def from_arrays(
    x_train: Any,
    y_train: Any,
    *,
    x_val: Any = None,
    y_val: Any = None,
    x_test: Any = None,
    y_test: Any = None,
    class_names: Sequence[str] | None = None,
    task: str = "auto",
    seed: int = 0,
    name: str = "arrays",
) -> dict[str, ArrayDataset]:
    """Your arrays as the train, validation and test splits annzoo trains on.

    The splits you give are kept; the missing ones are carved from the training
    arrays (seeded, stratified by class; see the module docstring). To train a
    recipe on the arrays, register them under a name with `register_arrays`.

    Args:
        x_train: Features, ``(num_samples, *input_shape)`` numbers (images
            channels last), or a 1-D array of strings (raw text).
        y_train: One label per sample: class labels (integers, booleans or
            strings) or float regression targets.
        x_val, y_val: A validation split to keep (both or neither).
        x_test, y_test: A test split to keep (both or neither).
        class_names: One name per class id, for integer labels 0..K-1.
        task: ``"auto"``, ``"multiclass"``, ``"binary"`` or ``"regression"``.
        seed: Draws the carved splits.
        name: The ``name`` the datasets carry.

    Returns:
        ``{"train": ..., "validation": ..., "test": ...}``, each an
        `annzoo.datasets.ArrayDataset` (float32 ``x``; int32 class ids or
        float32 targets ``y``; ``task``, ``num_classes``, ``class_names``).

    Raises:
        AnnzooError: A missing half of a pair, lengths or sample shapes that
            differ, non-numeric or non-finite values, or labels the task cannot
            use, naming the argument.

    Example:

    >>> splits = from_arrays(x, y, x_test=x_test, y_test=y_test)
    >>> x_train, y_train = splits["train"]
    """
    seed = check_non_negative_int("seed", seed)
    parsed = _parse_arrays(
        {
            "train": (x_train, y_train),
            "validation": (x_val, y_val),
            "test": (x_test, y_test),
        },  # fmt: skip
        task=task,
        class_names=class_names,
        name=_argument,
        description="Arrays passed to annzoo.datasets.from_arrays",
    )
    return {s: _split_of(parsed, name, s, seed) for s in SPLITS}


def register_arrays(
    name: str,
    x_train: Any,
    y_train: Any,
    *,
    x_val: Any = None,
    y_val: Any = None,
    x_test: Any = None,
    y_test: Any = None,
    class_names: Sequence[str] | None = None,
    task: str = "auto",
    overwrite: bool = False,
) -> None:
    """Make your arrays a dataset a recipe names: ``data: {dataset: NAME}``.

    The arrays are checked now (as in `from_arrays`, whose arguments these
    are) and kept in this process; each `load` carves the missing splits with
    its own ``seed`` (a recipe's ``fit.seed``). The registration lasts as long
    as the Python process (see the module docstring).

    Args:
        name: The dataset name, e.g. ``"my_mnist"``.
        overwrite: Replace an earlier registration of ``name``.

    Example:

    >>> register_arrays("my_mnist", x_train, y_train, x_test=x_test, y_test=y_test)
    >>> annzoo.training.train(Recipe(name="mnist", model={"name": "mnist_convnet"},
    ...                              data={"dataset": "my_mnist"}))
    """
    if not isinstance(name, str) or not name or ":" in name:
        raise AnnzooError(
            "`name` must be a non-empty dataset name without ':' (prefixes such as "
            f"'npz:' name files). Received: name={name!r}"
        )
    parsed = _parse_arrays(
        {
            "train": (x_train, y_train),
            "validation": (x_val, y_val),
            "test": (x_test, y_test),
        },  # fmt: skip
        task=task,
        class_names=class_names,
        name=_argument,
        description=f"Arrays registered as {name!r}",
    )

    def loader(dataset: str, split: str, seed: int) -> ArrayDataset:
        return _split_of(parsed, dataset, split, seed)

    info = _info(parsed, f"annzoo.datasets.register_arrays({name!r}, ...)")
    register_dataset(name, loader, info=info, overwrite=overwrite)


# -- "npz:PATH" ------------------------------------------------------------------


def _read_npz(path: Path, dataset: str) -> dict[str, np.ndarray]:
    where = f"{str(path)!r}"
    expected = (
        "an .npz archive written by numpy.savez with arrays x_train and y_train "
        "(and optionally x_val/y_val, x_test/y_test, class_names)"
    )
    try:
        archive = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as error:
        raise AnnzooError(
            f"Dataset {dataset!r} must be {expected}; {where} could not be opened "
            f"as one ({type(error).__name__}: {str(error)[:120]})."
        ) from None
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise AnnzooError(
            f"Dataset {dataset!r} must be {expected}; {where} is a single .npy array "
            f"of shape {archive.shape}."
        )
    with archive:
        keys = set(archive.files)
        unknown = sorted(keys - set(NPZ_KEYS))
        if unknown or not {"x_train", "y_train"} <= keys:
            missing = [k for k in ("x_train", "y_train") if k not in keys]
            what = f"unexpected arrays {unknown}" if unknown else f"no {missing}"
            raise AnnzooError(
                f"Dataset {dataset!r} must be {expected}; {where} holds "
                f"{sorted(keys)}: {what}."
            )
        arrays = {}
        for key in sorted(keys):
            try:
                arrays[key] = archive[key]
            except ValueError as error:
                if "allow_pickle" not in str(error):
                    raise AnnzooError(
                        f"Array {key!r} of {where} could not be read, the file is "
                        f"damaged or truncated ({str(error)[:120]}); save it again "
                        "with numpy.savez."
                    ) from None
                raise AnnzooError(
                    f"Array {key!r} of {where} must hold numbers or strings, but it "
                    "is an object array (Python objects, which annzoo does not "
                    "unpickle); save it with a numeric dtype, e.g. "
                    "np.asarray(values, dtype='float32')."
                ) from None
            except Exception as error:  # zlib, zipfile and EOF errors of a bad file
                raise AnnzooError(
                    f"Array {key!r} of {where} could not be read, the file is damaged "
                    f"or truncated ({type(error).__name__}: {str(error)[:120]}); "
                    "save it again with numpy.savez."
                ) from None
    return arrays


def _npz(name: str, task: Any) -> _Parsed:
    path = _path_of(name, NPZ_PREFIX)
    check_choice("task", task, ARRAY_TASKS)
    if not path.is_file():
        what = "is a folder" if path.is_dir() else "does not exist"
        raise AnnzooError(
            f"Dataset {name!r} must name an existing .npz file; {str(path)!r} "
            f"{what}. Received: name={name!r}"
        )

    def parse() -> _Parsed:
        arrays = _read_npz(path, name)
        where = f"{str(path)!r}"
        class_names = arrays.get("class_names")
        if class_names is not None:
            if class_names.ndim != 1 or class_names.dtype.kind not in "US":
                raise AnnzooError(
                    f"Array 'class_names' of {where} must be a 1-D array of strings, "
                    f"one per class id. Received: dtype {class_names.dtype}, shape "
                    f"{class_names.shape}."
                )
            class_names = class_names.tolist()
        return _parse_arrays(
            {s: (arrays.get(x), arrays.get(y)) for s, (x, y) in _KEYS.items()},
            task=task,
            class_names=class_names,
            name=lambda key: f"array {key!r} of {where}",
            description=f"Arrays in {where}",
        )

    key = (NPZ_PREFIX, str(path.resolve()), _stat_key(path), task)
    return _cached(key, parse)


def _load_npz(name: str, split: str, seed: int, *, task: str = "auto") -> ArrayDataset:
    return _split_of(_npz(name, task), name, split, seed)


def _info_npz(name: str, *, task: str = "auto") -> dict[str, Any]:
    return _info(
        _npz(name, task), f".npz file {os.fspath(_path_of(name, NPZ_PREFIX))!r}"
    )


_register_prefix(NPZ_PREFIX, _load_npz, info=_info_npz, options=("task",), builtin=True)

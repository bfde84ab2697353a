"""Argument checks shared by `make_dataset` and `ArraySequence`.

Both pipelines take the same arrays and options, so they reject the same
mistakes with the same messages, before anything is built.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from annzoo._checks import (
    all_finite,
    check_non_negative_int,
    check_positive_int,
    is_int,
    non_finite_summary,
)
from annzoo.errors import AnnzooError

Arrays = np.ndarray | Mapping[str, np.ndarray]


def _import_tf():
    try:
        import tensorflow as tf  # deferred: optional and heavy, loaded on use
    except ImportError as error:
        raise AnnzooError(
            "This input pipeline needs TensorFlow, which is not installed: pip "
            "install tensorflow, or use annzoo.data.ArraySequence / "
            "make_input(..., prefer='numpy')."
        ) from error
    return tf


def _is_text(array: np.ndarray) -> bool:
    if array.dtype.kind in "US":
        return True
    return array.dtype == object and all(isinstance(v, str | bytes) for v in array.flat)


def _is_pipeline(value: Any) -> bool:
    """A dataset, loader or generator: already a pipeline, not arrays."""
    if isinstance(value, Iterator) or hasattr(value, "element_spec"):
        return True  # generators, tf.data.Dataset
    names = {c.__name__ for c in type(value).__mro__}
    return bool(names & {"PyDataset", "DataLoader"})


def _check_array(name: str, value: Any) -> np.ndarray:
    if _is_pipeline(value):
        raise AnnzooError(
            f"`{name}` must be NumPy arrays with one row per sample (this function "
            f"shuffles and batches them). Received: {name} of type "
            f"{type(value).__name__}, an input pipeline already: pass it to "
            "model.fit directly, batched (dataset.batch(32)) and yielding "
            "(features, labels) pairs, or pass its arrays here."
        )
    array = np.asarray(value)
    if array.ndim == 0:
        raise AnnzooError(
            f"`{name}` must be an array with one row per sample. "
            f"Received: {name} with shape ()"
        )
    if array.dtype == object and not _is_text(array):
        raise AnnzooError(
            f"`{name}` must be a numeric or string array (rows of equal length). "
            f"Received: {name} with dtype object, first row {array[0]!r:.60}"
        )
    return array


def _check_xy(
    x: Any, y: Any, *, strings_allowed: bool
) -> tuple[Arrays, np.ndarray | None, int]:
    """``x`` (an array or a dict of arrays), ``y`` and the number of samples."""
    if isinstance(x, Mapping):
        if not x or not all(isinstance(k, str) for k in x):
            raise AnnzooError(
                "`x` must be an array or a non-empty dict of arrays keyed by input "
                f"name. Received: x with keys {list(x)!r}"
            )
        x = {k: _check_array(f"x[{k!r}]", v) for k, v in x.items()}
        lengths = {k: len(v) for k, v in x.items()}
        if len(set(lengths.values())) > 1:
            raise AnnzooError(
                "Every array in `x` must have the same number of samples. "
                f"Received: lengths {lengths}"
            )
        n = next(iter(lengths.values()))
        shape_of_x = {k: v.shape for k, v in x.items()}
    else:
        x = _check_array("x", x)
        n = len(x)
        shape_of_x = x.shape
    if n == 0:
        raise AnnzooError(
            f"`x` must contain at least one sample. Received: x with shape {shape_of_x}"
        )
    for key, array in x.items() if isinstance(x, Mapping) else [(None, x)]:
        _check_finite("x" if key is None else f"x[{key!r}]", array)
    if y is None:
        return x, None, n
    y = _check_array("y", y)
    if len(y) != n:
        raise AnnzooError(
            "`x` and `y` must have the same number of samples. "
            f"Received: len(x)={n}, len(y)={len(y)}"
        )
    if _is_text(y) and not strings_allowed:
        raise AnnzooError(
            "`y` must be numeric: integer class ids or float targets. Encode "
            "string labels first, e.g. `classes, y = np.unique(y, "
            "return_inverse=True)`, or pass a map_fn that does. Received: y with "
            f"dtype {y.dtype}, first value {y[0]!r}"
        )
    _check_finite("y", y)
    return x, y, n


def _check_finite(name: str, array: np.ndarray) -> None:
    """NaN or infinite features or labels poison every weight they touch."""
    if not all_finite(array):
        raise AnnzooError(
            f"`{name}` must hold finite numbers. Received: {name} with "
            f"{non_finite_summary(array)}"
        )


def _check_batching(batch_size: Any, drop_remainder: Any, n: int) -> int:
    batch_size = check_positive_int("batch_size", batch_size)
    if not isinstance(drop_remainder, bool):
        raise AnnzooError(
            "`drop_remainder` must be True or False. "
            f"Received: drop_remainder={drop_remainder!r}"
        )
    if drop_remainder and batch_size > n:
        raise AnnzooError(
            f"`batch_size` is larger than the {n} samples, so drop_remainder=True "
            f"would yield no batch. Received: batch_size={batch_size}"
        )
    return batch_size


def _check_callable(name: str, value: Any) -> None:
    if value is not None and not callable(value):
        raise AnnzooError(
            f"`{name}` must be callable or None. Received: {name}={value!r}"
        )


def _check_bool(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise AnnzooError(f"`{name}` must be True or False. Received: {name}={value!r}")
    return value


def _check_common(x, y, batch_size, shuffle, seed, map_fn, batch_map_fn, drop_rem):
    for name, fn in (("map_fn", map_fn), ("batch_map_fn", batch_map_fn)):
        _check_callable(name, fn)
    mapped = map_fn is not None or batch_map_fn is not None
    x, y, n = _check_xy(x, y, strings_allowed=mapped)
    batch_size = _check_batching(batch_size, drop_rem, n)
    _check_bool("shuffle", shuffle)
    seed = check_non_negative_int("seed", seed)
    return x, y, n, batch_size, seed


def _check_shard(shard: Any, batch_multiple: Any, batch_size: int):
    check_positive_int("batch_multiple", batch_multiple)
    if shard is None:
        return None, batch_multiple
    ok = (
        isinstance(shard, tuple | list)
        and len(shard) == 2
        and all(is_int(v) for v in shard)
        and 0 <= shard[0] < shard[1]
    )
    if not ok:
        raise AnnzooError(
            "`shard` must be (index, count) with 0 <= index < count. "
            f"Received: shard={shard!r}"
        )
    count = int(shard[1])
    if batch_multiple % count or batch_size % batch_multiple:
        raise AnnzooError(
            f"With `shard` count {count}, `batch_multiple` must be a multiple of "
            f"{count} that divides `batch_size`. Received: batch_multiple="
            f"{batch_multiple}, batch_size={batch_size}"
        )
    return (int(shard[0]), count), batch_multiple


def _check_cache(cache: Any) -> str | None:
    """``None``, ``""`` (memory) or a file path prefix in an existing directory."""
    if cache is None:
        return None
    if cache == "memory":
        return ""
    if isinstance(cache, str | os.PathLike) and os.fspath(cache):
        path = Path(cache)
        if not path.parent.is_dir():
            raise AnnzooError(
                "`cache` must be None, 'memory' or a file path prefix in an "
                f"existing directory; {str(path.parent)!r} does not exist. "
                f"Received: cache={cache!r}"
            )
        return os.fspath(path)
    raise AnnzooError(
        "`cache` must be None, 'memory' or a file path prefix. "
        f"Received: cache={cache!r}"
    )

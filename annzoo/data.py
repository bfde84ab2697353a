"""Input pipelines: NumPy arrays, image folders, CSV files and text -> batches.

Two pipelines with one contract: batches of ``(x, y)`` (``x`` alone without
``y``); a seeded shuffle whose epoch ``k`` order is deterministic; an optional
per-sample ``map_fn(x, y) -> (x, y)`` (augmentation) and per-batch
``batch_map_fn(x, y) -> (x, y)`` (batch-level augmentation such as mixup);
``drop_remainder``.

- `make_dataset`: a ``tf.data.Dataset`` (needs TensorFlow; works with every
  Keras backend): shuffled, mapped in parallel, batched, prefetched.
- `ArraySequence`: a ``keras.utils.PyDataset`` over NumPy arrays, without
  TensorFlow (JAX and PyTorch backends).
- In both, epoch ``k``'s order is a pure function of ``(seed, k)``, so a
  resumed run reproduces it (`set_epoch`).
- `make_input`: the one that fits the current backend.

Sources and preprocessing fit on the train split only: `image_folder`,
`load_csv`, `fit_standardizer`, `text_vectorizer`.

>>> from annzoo import data, datasets
>>> x, y = datasets.load("digits", "train")
>>> train = data.make_input(x, y, batch_size=32, shuffle=True, seed=0)
>>> model.fit(train, epochs=5)

Importing this module imports neither TensorFlow nor Keras; the functions
import them when called.
"""

from __future__ import annotations

import csv
import dataclasses
import functools
import importlib.util
import math
import numbers
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from annzoo._checks import (
    all_finite,
    check_choice,
    check_non_negative_int,
    check_positive_int,
    is_int,
    non_finite_summary,
)
from annzoo.errors import AnnzooError

if TYPE_CHECKING:  # pragma: no cover
    import tensorflow as tf
    from keras.layers import TextVectorization

__all__ = [
    "AUTOTUNE",
    "ArraySequence",  # noqa: F822  (built on first access by __getattr__)
    "Standardizer",
    "drop_partial_batch",
    "fit_standardizer",
    "image_folder",
    "load_csv",
    "make_dataset",
    "make_input",
    "text_vectorizer",
]

# The value of ``tf.data.AUTOTUNE``, without importing TensorFlow.
AUTOTUNE = -1
IMAGE_EXTENSIONS = (".bmp", ".gif", ".jpeg", ".jpg", ".png")

Arrays = np.ndarray | Mapping[str, np.ndarray]


# --------------------------------------------------------------------------
# Argument checks shared by make_dataset and ArraySequence.


def _import_tf():
    try:
        import tensorflow as tf
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


# --------------------------------------------------------------------------
# tf.data


def make_dataset(
    x: Arrays,
    y: np.ndarray | None = None,
    *,
    batch_size: int,
    shuffle: bool = False,
    seed: int = 0,
    cache: str | os.PathLike | None = None,
    map_fn: Callable | None = None,
    batch_map_fn: Callable | None = None,
    drop_remainder: bool = False,
    num_parallel_calls: int = AUTOTUNE,
    repeat: bool = False,
    steps_per_epoch: int | None = None,
) -> tf.data.Dataset:
    """A batched, prefetched ``tf.data.Dataset`` over NumPy arrays.

    The chain is: samples -> ``map_fn`` (parallel) -> ``batch`` ->
    ``batch_map_fn`` -> ``prefetch(AUTOTUNE)``. Shuffled samples are gathered
    from the arrays in epoch ``k``'s order, a pure function of ``(seed, k)``
    (TensorFlow's stateless index shuffle): each new pass over the dataset is
    the next epoch, and `set_epoch` (``annzoo.data.set_epoch``) picks one, so
    a run resumed at epoch ``k``, or one whose first pass was a peek, still
    sees epoch ``k``'s order. Maps are ``deterministic=True``.

    When ``batch_map_fn`` carries a ``random_states`` list (`annzoo.augment`'s
    functions do), those seed-generator states are set before each batch to a
    value derived from ``(seed, epoch, batch)``: batch ``b`` of epoch ``k``
    gets the same random draws however the run was interrupted and resumed.
    Such a map runs one batch at a time (the states are shared).

    Each pass starts with one small graph function per stage, so the
    shuffled path is a single function (order and gather) per batch: a new
    epoch's first batch comes in about 7 ms on a 2-core CPU, against 12 ms
    for Keras' own array pipeline.

    With ``repeat=True`` the dataset never ends: it serves the epochs one
    after another from the one `set_epoch` named when iteration began, and
    prefetches across their boundaries. ``fit`` then takes
    ``steps_per_epoch=dataset.steps_per_epoch`` and keeps one iterator for
    the whole run. Keras runs ``steps_per_execution`` steps per call whatever
    the epoch's length, so that must divide ``steps_per_epoch``:
    `execution_block` finds the largest divisor not above a given one, and
    `stream_block` the steps per call a stream should run.

    Args:
        x: Features, an array ``(num_samples, ...)`` or a dict of such arrays
            (one per named model input). Dtypes are kept: pass float32.
        y: Targets ``(num_samples, ...)``, numeric; ``None`` yields ``x`` alone.
        batch_size: Samples per batch.
        shuffle: A new order every epoch, epoch ``k``'s depending only on
            ``seed`` and ``k``.
        seed: Non-negative seed of the order and of ``batch_map_fn``'s states.
        cache: ``None``, ``"memory"``, or a file path prefix (its directory must
            exist) for ``Dataset.cache`` of the unshuffled slices (the shuffled
            pipeline gathers rows from the arrays, already in memory).
        map_fn: ``map_fn(x, y) -> (x, y)`` (``map_fn(x) -> x`` without ``y``) on
            one sample's tensors, traced by tf.data: write it with ``tf`` ops.
        batch_map_fn: The same on whole batches (e.g. mixup).
        drop_remainder: Drop the last, smaller batch. When every batch is
            whole (this, or ``batch_size`` divides the sample count), the
            batches have a static leading dimension.
        num_parallel_calls: Threads for the maps; ``AUTOTUNE`` (-1) or > 0.
        repeat: Serve epoch after epoch, without end (no per-sample ``map_fn``).
        steps_per_epoch: With ``repeat``, the batches ``fit`` takes per epoch
            when they are not one pass over the data (the default): epoch
            ``e`` starts ``e * steps_per_epoch`` batches into the stream.

    Returns:
        A ``tf.data.Dataset`` of ``(x, y)`` batches (``x`` without ``y``).

    Raises:
        AnnzooError: Naming the first bad argument, before anything is built.

    Example:

    >>> ds = make_dataset(x, y, batch_size=32, shuffle=True, seed=0)
    >>> model.fit(ds, epochs=10)
    """
    x, y, n, batch_size, seed = _check_common(
        x, y, batch_size, shuffle, seed, map_fn, batch_map_fn, drop_remainder
    )
    cache = _check_cache(cache)
    if num_parallel_calls != AUTOTUNE:
        check_positive_int("num_parallel_calls", num_parallel_calls)
    if not isinstance(repeat, bool):
        raise AnnzooError(
            f"`repeat` must be True or False. Received: repeat={repeat!r}"
        )
    if repeat and map_fn is not None:
        raise AnnzooError(
            "A repeating dataset (repeat=True) takes whole-batch maps only: pass "
            "the function as `batch_map_fn`. Received: map_fn={map_fn!r}"
        )
    if steps_per_epoch is not None:
        if not repeat:
            raise AnnzooError(
                "`steps_per_epoch` is for a repeating dataset (repeat=True). "
                f"Received: steps_per_epoch={steps_per_epoch!r}, repeat=False"
            )
        steps_per_epoch = check_positive_int("steps_per_epoch", steps_per_epoch)
    tf = _import_tf()
    if isinstance(x, Mapping):
        x = dict(x)
    # Whole batches only (none dropped, or the last one dropped anyway): the
    # batches get a static leading dimension, which TensorFlow's graph
    # optimizer uses (an LSTM trained 5-12% faster than with `None`).
    drop_remainder = drop_remainder or n % batch_size == 0
    states = list(getattr(batch_map_fn, "random_states", None) or ())
    if not (shuffle or states or repeat):
        ds = tf.data.Dataset.from_tensor_slices(x if y is None else (x, y))
        if cache is not None:
            ds = ds.cache(cache)
        if map_fn is not None:
            ds = ds.map(
                map_fn, num_parallel_calls=num_parallel_calls, deterministic=True
            )
        ds = ds.batch(batch_size, drop_remainder=drop_remainder)
        if batch_map_fn is not None:
            ds = ds.map(
                batch_map_fn, num_parallel_calls=num_parallel_calls, deterministic=True
            )
        return ds.prefetch(tf.data.AUTOTUNE)

    # The arrays become tensors once (not graph constants copied by every
    # epoch's iterator). One sequential map draws each batch's rows of this
    # pass's epoch and gathers them (per-sample maps: one row at a time).
    arrays = tf.nest.map_structure(tf.constant, x if y is None else (x, y))
    epoch = tf.Variable(0, dtype=tf.int64, trainable=False, name="annzoo_epoch")
    size = 1 if map_fn is not None else batch_size
    count = n // size if drop_remainder else -(-n // size)
    if repeat:
        per_epoch = tf.constant(steps_per_epoch or count, tf.int64)
        # Global batch numbers from where epoch e starts (read when iteration
        # begins); batch p is batch p % count of data epoch p // count.
        ds = tf.data.Dataset.from_tensors(tf.constant(0, tf.int64)).flat_map(
            lambda _: tf.data.Dataset.range(
                epoch.read_value() * per_epoch, np.iinfo(np.int64).max
            )
        )
        where = _stream_position(count)
    else:
        ds = tf.data.Dataset.range(count)
        where = _pass_position(tf, epoch)
    # Later stages need each element's (epoch, batch); without them the rows
    # map yields the batch alone (one graph function less per pass).
    positioned = batch_map_fn is not None
    whole = size == 1 or drop_remainder
    ds = ds.map(_rows(tf, arrays, where, n, size, seed, shuffle, positioned, whole))
    if map_fn is not None:
        per_sample = _per_sample(map_fn) if positioned else map_fn
        ds = ds.map(per_sample, num_parallel_calls=num_parallel_calls,
                    deterministic=True)  # fmt: skip
        ds = ds.batch(batch_size, drop_remainder=drop_remainder)
        if positioned:
            ds = ds.map(lambda k, b, batch: (k[0], b[0] // batch_size, batch))
    threads = num_parallel_calls
    if repeat and threads == AUTOTUNE:
        threads = os.cpu_count() or 1
    if batch_map_fn is not None:
        ds = ds.map(
            _batch_mapper(tf, batch_map_fn, states, seed),
            num_parallel_calls=1 if states else threads,
            deterministic=True,
        )
    if repeat:
        # A stream outlives its fit until the garbage collector frees Keras'
        # iterator: with a fixed buffer and no autotuning it then sits idle
        # (autotuned, abandoned streams slowed later training by half).
        options = tf.data.Options()
        options.autotune.enabled = False
        ds = ds.prefetch(STREAM_PREFETCH).with_options(options)
        ds.steps_per_epoch = steps_per_epoch or count
    else:
        ds = ds.prefetch(tf.data.AUTOTUNE)
    ds._annzoo_epoch = epoch  # read by set_epoch
    return ds


STREAM_PREFETCH = 4  # batches a repeating dataset prepares ahead


def execution_block(steps_per_epoch: int, steps_per_execution: int) -> int:
    """The largest divisor of ``steps_per_epoch`` not above ``steps_per_execution``.

    Keras runs ``steps_per_execution`` steps per call from a never-ending
    dataset even past an epoch's end; calls of this many steps end exactly
    at each epoch's end.
    """
    steps = check_positive_int("steps_per_epoch", steps_per_epoch)
    limit = min(check_positive_int("steps_per_execution", steps_per_execution), steps)
    return max(d for d in range(1, limit + 1) if steps % d == 0)


# A stream may run up to this many times ``steps_per_execution`` steps per
# call, where no divisor of the epoch's steps up to it suits (see stream_block).
STREAM_BLOCK_STRETCH = 4


def stream_block(steps_per_epoch: int, steps_per_execution: int) -> int | None:
    """Steps per call for a never-ending stream of ``steps_per_epoch``-step
    epochs, or ``None`` when a one-pass dataset per epoch is the better input.

    The largest divisor of ``steps_per_epoch`` not above
    ``steps_per_execution`` (`execution_block`), unless calls that short
    would cost more than one call per epoch beyond ``steps_per_execution``'s
    (a prime step count, say). Then the smallest divisor above it, up to
    ``STREAM_BLOCK_STRETCH`` times it (the whole epoch in one call, for a
    small prime count): for a one-pass dataset Keras starts two iterators
    every epoch, which cost more than a small epoch's steps (a 30-epoch
    digits MLP run at batch 16, 79 steps per epoch, took 3.71 s that way
    and 2.86 s as a stream of one 79-step call per epoch, TensorFlow on a
    2-core CPU). ``None`` when there is neither.
    """
    block = execution_block(steps_per_epoch, steps_per_execution)
    calls = -(-steps_per_epoch // min(steps_per_execution, steps_per_epoch))
    if steps_per_epoch // block <= calls + 1:
        return block
    longest = min(STREAM_BLOCK_STRETCH * steps_per_execution, steps_per_epoch)
    longer = range(steps_per_execution + 1, longest + 1)
    return next((d for d in longer if steps_per_epoch % d == 0), None)


def drop_partial_batch(
    num_samples: int,
    batch_size: int,
    *,
    fixed_shapes: bool,
    steps_per_epoch: int | None = None,
) -> bool:
    """Whether training should drop each epoch's last, smaller batch.

    Only where that batch would cost a compilation of its own: a step
    compiled for fixed shapes (XLA: always on JAX, with ``jit_compile`` on
    TensorFlow) is traced and compiled again for a new batch size. On JAX
    (CPU) a small CNN's first ``fit`` of 1,000 samples at batch 64 took 2.0
    times as long as one of 960. Shuffled, each epoch leaves out other
    samples, fewer than a batch. Not when every batch is whole already, when
    there is no whole batch, or when ``steps_per_epoch`` asks for more steps
    than the whole batches make.
    """
    full, rest = divmod(num_samples, batch_size)
    if not fixed_shapes or rest == 0 or full == 0:
        return False
    return steps_per_epoch is None or steps_per_epoch <= full


def evaluation_batch_size(
    num_samples: int,
    batch_size: int,
    *,
    fixed_shapes: bool,
    multiple: int = 1,
) -> int:
    """Batch size for evaluating or predicting ``num_samples`` samples.

    ``batch_size`` itself, unless the last batch would be smaller and the step
    is compiled for fixed shapes (see `drop_partial_batch`): evaluation cannot
    leave samples out, so the step would be compiled twice, once for the
    whole batches and once for the last. Then the largest batch size between
    half and twice ``batch_size`` that divides ``num_samples`` (and is a
    multiple of ``multiple``, the data-parallel batch multiple) is taken;
    evaluation keeps no activations for a backward pass, so it holds less per
    sample than training. ``batch_size`` when no such divisor exists (a
    prime sample count, say). On JAX (CPU), the test step of a 20-trial
    digits MLP search was compiled 40 times (4.6 s of the search's 17.7 s of
    compiling), because each validation of 270 samples ended in a smaller
    batch (14 at batch 32); 20 times (3.1 s) in whole batches.
    """
    full, rest = divmod(num_samples, batch_size)
    if not fixed_shapes or rest == 0 or full == 0:
        return batch_size
    lowest = max(1, -(-batch_size // 2))
    for size in range(min(2 * batch_size, num_samples), lowest - 1, -1):
        if num_samples % size == 0 and size % multiple == 0:
            return size
    return batch_size


def _pass_position(tf, epoch):
    """``b -> (k, b)``: the first element of a pass takes the epoch variable's
    value and moves it on; the map is sequential, so the others read it after."""

    def where(b):
        return epoch.assign_add(tf.cast(tf.equal(b, 0), tf.int64)) - 1, b

    return where


def _stream_position(count):
    """``p -> (k, b)``: global batch ``p`` of a repeating stream."""

    def where(p):
        return p // count, p % count

    return where


def _rows(tf, arrays, where, n, size, seed, shuffle, positioned=True, whole=False):
    """``b -> (k, b, rows b*size...)`` of epoch ``k`` (the rows alone unless
    ``positioned``): row ``i`` of epoch ``k`` is ``index_shuffle(i, [seed, k],
    n - 1)`` when shuffled. ``whole``: every batch has ``size`` rows."""
    seed = tf.constant(seed, tf.int64)
    last = tf.constant(n - 1, tf.int64)

    def rows(element):
        k, b = where(element)
        if whole:  # a static length: batches of a known shape
            index = b * size + tf.range(size, dtype=tf.int64)
        else:
            index = tf.range(b * size, tf.minimum(b * size + size, n))
        if shuffle:
            index = tf.random.experimental.index_shuffle(
                index, tf.stack([seed, k]), last
            )
        if size == 1:
            index = index[0]
        gathered = tf.nest.map_structure(lambda a: tf.gather(a, index), arrays)
        return (k, b, gathered) if positioned else gathered

    return rows


def _per_sample(map_fn):
    def mapped(k, b, sample):
        return k, b, _call(map_fn)(sample)

    return mapped


def _call(fn):
    """``fn`` on an element as tf.data calls a map function (tuples unpacked)."""

    def call(element):
        return fn(*element) if isinstance(element, tuple) else fn(element)

    return call


def _batch_mapper(tf, batch_map_fn, states, seed):
    """``(k, b, batch) -> batch``, after ``batch_map_fn`` with its ``states``
    set to a value derived from ``(seed, k, b)``."""

    def mapped(k, b, batch):
        if not states:
            return _call(batch_map_fn)(batch)
        draws = tf.random.stateless_uniform(
            [len(states)],
            seed=tf.stack([tf.constant(seed, tf.int64) * 1_000_003 + k, b]),
            minval=0,
            maxval=2_147_483_647,
            dtype=tf.int64,
        )
        assigns = [
            state.assign(tf.cast(tf.stack([draws[i], 0]), state.dtype))
            for i, state in enumerate(states)
        ]
        with tf.control_dependencies(assigns):
            return _call(batch_map_fn)(batch)

    return mapped


def set_epoch(inputs: Any, epoch: int) -> None:
    """Makes the next pass over ``inputs`` serve epoch ``epoch``'s order.

    For `make_dataset` and `ArraySequence` pipelines (others are left alone):
    a resumed run, or a training loop that peeks at a batch first, keeps the
    order of an uninterrupted run.
    """
    epoch = check_non_negative_int("epoch", epoch)
    variable = getattr(inputs, "_annzoo_epoch", None)
    if variable is not None:
        variable.assign(epoch)
    elif hasattr(inputs, "set_epoch"):
        inputs.set_epoch(epoch)


# --------------------------------------------------------------------------
# NumPy PyDataset


def _take(x: Arrays, rows: np.ndarray) -> Arrays:
    if isinstance(x, Mapping):
        return {k: v[rows] for k, v in x.items()}
    return x[rows]


def _stack(items: list) -> Arrays:
    if isinstance(items[0], Mapping):
        return {k: np.stack([item[k] for item in items]) for k in items[0]}
    return np.stack(items)


def _num_rows(x: Arrays) -> int:
    return len(next(iter(x.values()))) if isinstance(x, Mapping) else len(x)


def _map_samples(map_fn: Callable, xb: Arrays, yb: np.ndarray | None):
    rows = [_take(xb, i) for i in range(_num_rows(xb))]
    if yb is None:
        return _stack([map_fn(r) for r in rows]), None
    pairs = [map_fn(r, yb[i]) for i, r in enumerate(rows)]
    return _stack([p[0] for p in pairs]), np.stack([p[1] for p in pairs])


@functools.cache
def _array_sequence_class() -> type:
    # Built on first use so that importing annzoo.data does not import Keras
    # (which imports TensorFlow on the TensorFlow backend).
    import keras

    class ArraySequence(keras.utils.PyDataset):
        """Batches of NumPy arrays for ``model.fit``, without TensorFlow.

        The same contract as `make_dataset`, as a ``keras.utils.PyDataset``: the
        pipeline of the JAX and PyTorch backends. With ``shuffle=True`` the
        order of epoch ``k`` is ``numpy.random.default_rng([seed, k])``'s
        permutation, a pure function of ``(seed, k)``: a run resumed at epoch
        ``k`` calls ``set_epoch(k)`` and sees the same batches as the
        uninterrupted run.

        The epoch index advances at ``on_epoch_end`` when ``on_epoch_begin``
        came before it and every batch was requested in between. So Keras's
        calls before training starts (an unpaired ``on_epoch_end``; on JAX and
        PyTorch a begin/end pair around one peeked batch) do not count, unless
        an epoch is a single batch. Loops outside ``fit`` call both hooks
        around each epoch, or `set_epoch`.

        Batches are made in the training thread (``workers=1``): Keras's worker
        queue keeps batches prefetched in one epoch for the next, so with
        workers an epoch repeats some samples and skips others. Parallel
        augmentation belongs in `make_dataset`.

        Args:
            x: Features, an array ``(num_samples, ...)`` or a dict of arrays.
            y: Numeric targets, or ``None`` to yield ``x`` alone.
            batch_size: Samples per batch.
            shuffle: Reorder the samples every epoch.
            seed: Non-negative shuffle seed.
            map_fn: ``map_fn(x, y) -> (x, y)`` on one sample's NumPy arrays
                (``map_fn(x) -> x`` without ``y``); results are stacked.
            batch_map_fn: The same on a whole NumPy batch.
            drop_remainder: Drop the last, smaller batch.
            shard: ``(index, count)``: serve only part ``index`` of ``count``
                equal parts of every batch (one process of a data-parallel
                job of ``count`` processes, which together see each batch).
            batch_multiple: Cut every batch to a multiple of this many rows
                (the devices a batch is split over); a last batch smaller
                than that is dropped.

        Example:

        >>> train = ArraySequence(x, y, batch_size=32, shuffle=True, seed=0)
        >>> model.fit(train, epochs=10)
        >>> train.epoch
        10
        """

        def __init__(
            self,
            x: Arrays,
            y: np.ndarray | None = None,
            *,
            batch_size: int,
            shuffle: bool = False,
            seed: int = 0,
            map_fn: Callable | None = None,
            batch_map_fn: Callable | None = None,
            drop_remainder: bool = False,
            shard: tuple[int, int] | None = None,
            batch_multiple: int = 1,
        ) -> None:
            x, y, n, batch_size, seed = _check_common(
                x, y, batch_size, shuffle, seed, map_fn, batch_map_fn, drop_remainder
            )
            shard, batch_multiple = _check_shard(shard, batch_multiple, batch_size)
            super().__init__(workers=1, use_multiprocessing=False)
            self.x = x
            self.y = y
            self.num_samples = n
            self.batch_size = batch_size
            self.shuffle = shuffle
            self.seed = seed
            self.map_fn = map_fn
            self.batch_map_fn = batch_map_fn
            self.drop_remainder = drop_remainder
            self.shard = shard
            self.batch_multiple = batch_multiple
            self._epoch = 0
            self._began = False
            self._served: set[int] = set()
            self._cached_order: tuple[int, np.ndarray] | None = None

        @property
        def epoch(self) -> int:
            """The index (from 0) of the epoch whose batches are served."""
            return self._epoch

        def set_epoch(self, epoch: int) -> None:
            """Serve epoch ``epoch``'s batches next, e.g. when resuming a run."""
            self._epoch = check_non_negative_int("epoch", epoch)
            self._began = False
            self._served = set()

        def epoch_order(self, epoch: int | None = None) -> np.ndarray:
            """The sample order of ``epoch`` (default: the current epoch)."""
            epoch = self._epoch if epoch is None else epoch
            cached = self._cached_order
            if cached is not None and cached[0] == epoch:
                return cached[1]
            if self.shuffle:
                order = np.random.default_rng([self.seed, epoch]).permutation(
                    self.num_samples
                )
            else:
                order = np.arange(self.num_samples)
            self._cached_order = (epoch, order)
            return order

        def __len__(self) -> int:
            full, rest = divmod(self.num_samples, self.batch_size)
            if self.drop_remainder or rest < self.batch_multiple:
                return full
            return full + 1

        def __getitem__(self, index: int):
            size = len(self)
            if not is_int(index):
                raise TypeError(f"Batch index must be an integer. Received: {index!r}")
            if index < 0:
                index += size
            if not 0 <= index < size:
                raise IndexError(f"Batch index {index} out of range for {size} batches")
            order = self.epoch_order()
            self._served.add(index)
            rows = order[index * self.batch_size : (index + 1) * self.batch_size]
            rows = rows[: len(rows) - len(rows) % self.batch_multiple]
            if self.shard is not None:
                part, parts = self.shard
                rows = np.split(rows, parts)[part]
            xb = _take(self.x, rows)
            yb = None if self.y is None else self.y[rows]
            if self.map_fn is not None:
                xb, yb = _map_samples(self.map_fn, xb, yb)
            if self.batch_map_fn is not None:
                if yb is None:
                    xb = self.batch_map_fn(xb)
                else:
                    xb, yb = self.batch_map_fn(xb, yb)
            return xb if yb is None else (xb, yb)

        def on_epoch_begin(self) -> None:
            self._began = True
            self._served = set()

        def on_epoch_end(self) -> None:
            if self._began and len(self._served) >= len(self):
                self._epoch += 1
            self._began = False
            self._served = set()

        def __repr__(self) -> str:
            return (
                f"ArraySequence(num_samples={self.num_samples}, "
                f"batch_size={self.batch_size}, batches={len(self)}, "
                f"shuffle={self.shuffle}, seed={self.seed}, epoch={self._epoch})"
            )

    ArraySequence.__module__ = __name__
    ArraySequence.__qualname__ = "ArraySequence"
    return ArraySequence


def __getattr__(name: str) -> Any:
    if name == "ArraySequence":
        cls = _array_sequence_class()
        globals()["ArraySequence"] = cls
        return cls
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# --------------------------------------------------------------------------
# Backend choice


def _tensorflow_importable() -> bool:
    return importlib.util.find_spec("tensorflow") is not None


def resolve_pipeline(prefer: str = "auto") -> str:
    """``"tf.data"`` or ``"numpy"``: what `make_input` builds for ``prefer``."""
    prefer = check_choice("prefer", prefer, ("auto", "tf.data", "numpy"))
    if prefer == "auto":
        import keras

        tf_ok = keras.backend.backend() == "tensorflow" and _tensorflow_importable()
        prefer = "tf.data" if tf_ok else "numpy"
    return prefer


def make_input(
    x: Arrays,
    y: np.ndarray | None = None,
    *,
    batch_size: int,
    shuffle: bool = False,
    seed: int = 0,
    cache: str | os.PathLike | None = None,
    map_fn: Callable | None = None,
    batch_map_fn: Callable | None = None,
    drop_remainder: bool = False,
    prefer: str = "auto",
    shard: tuple[int, int] | None = None,
    batch_multiple: int = 1,
    num_parallel_calls: int | None = None,
    repeat: bool = False,
    steps_per_epoch: int | None = None,
):
    """`make_dataset` or `ArraySequence`, whichever suits the Keras backend.

    Args:
        x, y, batch_size, shuffle, seed, map_fn, batch_map_fn, drop_remainder:
            As for `make_dataset`. ``map_fn`` and ``batch_map_fn`` receive
            tensors inside tf.data and NumPy arrays in `ArraySequence`: pass
            ``prefer`` to know which.
        cache: As for `make_dataset`; ignored by `ArraySequence`, whose arrays
            are already in memory.
        prefer: ``"auto"`` (tf.data when TensorFlow is importable and the
            backend is ``"tensorflow"``, else `ArraySequence`), ``"tf.data"``
            or ``"numpy"``.
        shard, batch_multiple: As for `ArraySequence` (data-parallel jobs);
            they need ``prefer="numpy"``.
        num_parallel_calls: As for `make_dataset` (``None``: ``AUTOTUNE``);
            `ArraySequence` maps in the training thread.
        repeat, steps_per_epoch: As for `make_dataset`; an `ArraySequence`
            serves one epoch per pass and has no ``steps_per_epoch``.

    Returns:
        A ``tf.data.Dataset`` or an `ArraySequence`, both accepted by
        ``model.fit``, ``evaluate`` and ``predict``.
    """
    prefer = resolve_pipeline(prefer)
    common = dict(
        batch_size=batch_size,
        shuffle=shuffle,
        seed=seed,
        map_fn=map_fn,
        batch_map_fn=batch_map_fn,
        drop_remainder=drop_remainder,
    )
    if prefer == "tf.data":
        if shard is not None or batch_multiple != 1:
            raise AnnzooError(
                "`shard` and `batch_multiple` need the NumPy pipeline "
                f"(prefer='numpy'). Received: prefer={prefer!r}"
            )
        threads = AUTOTUNE if num_parallel_calls is None else num_parallel_calls
        return make_dataset(
            x, y, cache=cache, num_parallel_calls=threads, repeat=repeat,
            steps_per_epoch=steps_per_epoch, **common,
        )  # fmt: skip
    _check_cache(cache)
    return _array_sequence_class()(
        x, y, shard=shard, batch_multiple=batch_multiple, **common
    )


# --------------------------------------------------------------------------
# Image folders


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
    import keras

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


# --------------------------------------------------------------------------
# CSV files


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


# --------------------------------------------------------------------------
# Standardization


@dataclasses.dataclass(frozen=True, eq=False)
class Standardizer:
    """Per-feature scaling statistics, fit on training data only.

    ``apply(x) = (x - mean) / std``; features constant in training have
    ``std = 1`` (centered only). Serializable with `to_dict` / `from_dict`.

    Attributes:
        mean: Per-feature mean of the training data, shape ``x.shape[1:]``.
        std: Per-feature standard deviation (population), same shape.
    """

    mean: np.ndarray
    std: np.ndarray

    def apply(self, x: np.ndarray) -> np.ndarray:
        """``x`` standardized with the training statistics, as float32."""
        x = np.asarray(x)
        if x.shape[1:] != self.mean.shape:
            raise AnnzooError(
                f"`x` must have feature shape {self.mean.shape}, the shape the "
                f"standardizer was fit on. Received: x with shape {x.shape}"
            )
        return ((x.astype(np.float64) - self.mean) / self.std).astype(np.float32)

    __call__ = apply

    def to_dict(self) -> dict[str, list]:
        """A JSON-serializable dict ``{"mean": ..., "std": ...}``."""
        return {"mean": self.mean.tolist(), "std": self.std.tolist()}

    @classmethod
    def from_dict(cls, config: Mapping[str, Any]) -> Standardizer:
        mean = np.asarray(config["mean"], dtype=np.float64)
        std = np.asarray(config["std"], dtype=np.float64)
        if mean.shape != std.shape or not np.all(std > 0):
            raise AnnzooError(
                "A standardizer needs `mean` and `std` of the same shape, std > 0. "
                f"Received: mean shape {mean.shape}, std shape {std.shape}"
            )
        return cls(mean=mean, std=std)


def fit_standardizer(x_train: np.ndarray) -> Standardizer:
    """Fits a `Standardizer` on the training split (never on validation/test).

    Example:

    >>> scaler = fit_standardizer(x_train)
    >>> x_train, x_test = scaler.apply(x_train), scaler.apply(x_test)
    """
    x = np.asarray(x_train)
    if x.ndim == 0 or len(x) == 0 or x.dtype.kind not in "biuf":
        raise AnnzooError(
            "`x_train` must be a non-empty numeric array (num_samples, ...). "
            f"Received: x_train with shape {x.shape} and dtype {x.dtype}"
        )
    x = x.astype(np.float64)
    if not np.isfinite(x).all():
        raise AnnzooError(
            "`x_train` must not contain NaN or infinite values. Received: "
            f"{int(np.size(x) - np.isfinite(x).sum())} non-finite values"
        )
    mean = x.mean(axis=0)
    std = x.std(axis=0)
    std = np.where(std == 0, 1.0, std)
    return Standardizer(mean=np.asarray(mean), std=np.asarray(std))


# --------------------------------------------------------------------------
# Text


_STANDARDIZE = ("lower_and_strip_punctuation", "lower", "strip_punctuation")


def text_vectorizer(
    train_texts: Sequence[str] | np.ndarray,
    *,
    max_tokens: int | None = 20000,
    sequence_length: int | None = 200,
    standardize: str | Callable | None = "lower_and_strip_punctuation",
) -> TextVectorization:
    """A ``keras.layers.TextVectorization`` whose vocabulary is the train texts'.

    Adapted on ``train_texts`` only, so words seen only in validation or test
    texts map to the out-of-vocabulary id 1 (0 is padding). Output: int64 token
    ids, padded or truncated to ``sequence_length``. Needs TensorFlow.

    Args:
        train_texts: The training texts (``str``), e.g. ``ArrayDataset.x``.
        max_tokens: Vocabulary size including padding and OOV (>= 3), or
            ``None`` for every word.
        sequence_length: Tokens per output row, or ``None`` for the longest.
        standardize: One of ``"lower_and_strip_punctuation"``, ``"lower"``,
            ``"strip_punctuation"``, ``None`` or a callable, as in Keras.

    Example:

    >>> vectorize = text_vectorizer(train.x, max_tokens=10000)
    >>> tokens = vectorize(test.x)
    """
    texts = np.asarray(train_texts, dtype=object)
    if texts.ndim != 1 or len(texts) == 0 or not all(isinstance(t, str) for t in texts):
        raise AnnzooError(
            "`train_texts` must be a non-empty 1-D sequence of str. Received: "
            f"{type(train_texts).__name__} with shape {texts.shape}"
        )
    if max_tokens is not None and (not is_int(max_tokens) or max_tokens < 3):
        raise AnnzooError(
            "`max_tokens` must be an integer >= 3 (padding, OOV and one word) or "
            f"None. Received: max_tokens={max_tokens!r}"
        )
    if sequence_length is not None:
        check_positive_int("sequence_length", sequence_length)
    if not (standardize is None or callable(standardize)):
        check_choice("standardize", standardize, _STANDARDIZE)
    tf = _import_tf()
    import keras

    layer = keras.layers.TextVectorization(
        max_tokens=max_tokens,
        standardize=standardize,
        output_mode="int",
        output_sequence_length=sequence_length,
    )
    layer.adapt(tf.data.Dataset.from_tensor_slices(texts.astype(str)).batch(1024))
    return layer

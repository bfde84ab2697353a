"""`make_dataset`: a seeded, resumable ``tf.data`` pipeline over NumPy arrays.

Every function that needs TensorFlow imports it when called (through
`_import_tf`): TensorFlow is a deferred, optional dependency, so importing
this module does not load it.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

import numpy as np

from annzoo._checks import check_positive_int
from annzoo.data._validation import Arrays, _check_cache, _check_common, _import_tf
from annzoo.errors import AnnzooError

if TYPE_CHECKING:  # pragma: no cover
    import tensorflow as tf

# The value of ``tf.data.AUTOTUNE``, without importing TensorFlow.
AUTOTUNE = -1
STREAM_PREFETCH = 4  # batches a repeating dataset prepares ahead


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
    epoch's first batch comes sooner than from Keras' own array pipeline
    (measured by `benchmarks/run.py --only overhead`, whose middle contender
    feeds the same model through Keras' pipeline).

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
    # optimizer uses: recurrent models train faster than with `None`
    # (measured by `benchmarks/run.py --only overhead`, its LSTM).
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
        # iterator: with a fixed buffer and no autotuning it then sits idle,
        # where an autotuned one would keep competing with later training for
        # the cores (`benchmarks/run.py --only overhead` runs fit after fit in
        # one process and measures it).
        options = tf.data.Options()
        options.autotune.enabled = False
        ds = ds.prefetch(STREAM_PREFETCH).with_options(options)
        ds.steps_per_epoch = steps_per_epoch or count
    else:
        ds = ds.prefetch(tf.data.AUTOTUNE)
    ds._annzoo_epoch = epoch  # read by set_epoch
    return ds


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

"""`ArraySequence`: batches of NumPy arrays as a ``keras.utils.PyDataset``.

The pipeline of the JAX and PyTorch backends, without TensorFlow. The class
subclasses a Keras class, so it is built on first use (`_array_sequence_class`):
Keras is a deferred import here, because on the TensorFlow backend importing
Keras imports TensorFlow, and importing `annzoo.data` must import neither.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from annzoo._checks import check_non_negative_int, is_int
from annzoo.data._validation import Arrays, _check_common, _check_shard


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

    # Reached as annzoo.data.ArraySequence (also for pickling).
    ArraySequence.__module__ = "annzoo.data"
    ArraySequence.__qualname__ = "ArraySequence"
    return ArraySequence


def __getattr__(name: str) -> Any:
    if name == "ArraySequence":
        cls = _array_sequence_class()
        globals()["ArraySequence"] = cls
        return cls
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

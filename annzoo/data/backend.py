"""`make_input`: the pipeline that suits the Keras backend.

``tf.data`` (`make_dataset`) where the backend is TensorFlow and TensorFlow
is importable, else `ArraySequence`.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Callable

import numpy as np

from annzoo._checks import check_choice
from annzoo.data._validation import Arrays, _check_cache
from annzoo.data.sequence import _array_sequence_class
from annzoo.data.tfdata import AUTOTUNE, make_dataset
from annzoo.errors import AnnzooError


def _tensorflow_importable() -> bool:
    return importlib.util.find_spec("tensorflow") is not None


def resolve_pipeline(prefer: str = "auto") -> str:
    """``"tf.data"`` or ``"numpy"``: what `make_input` builds for ``prefer``."""
    prefer = check_choice("prefer", prefer, ("auto", "tf.data", "numpy"))
    if prefer == "auto":
        import keras  # deferred: on the TensorFlow backend it loads TensorFlow

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

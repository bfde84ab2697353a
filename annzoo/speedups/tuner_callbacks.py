"""Speedup ``tuner_callbacks``: keras-tuner's per-trial callback without batch hooks.

Public behaviour reproduced: keras-tuner's tuner hooks. Each trial's ``fit``
gets keras-tuner's ``TunerCallback``, which passes every batch on to the
tuner's ``on_batch_begin``/``on_batch_end`` with ``self.model``. On JAX that
writes the training loop's state into the model's variables at every call of
the training step (and Keras then reads it back), and on every backend it
makes Keras wait for each call to finish before dispatching the next, even
though keras-tuner's own batch hooks (and annzoo's) do nothing.
`without_batch_hooks` swaps it for the same callback without the per-batch
methods, for tuners whose per-batch hooks are keras-tuner's own; the epoch
hooks are called as before.

Private keras-tuner symbols: ``keras_tuner.src.engine.tuner_utils.
TunerCallback`` (not exported publicly) and its ``tuner`` and ``trial``
attributes. Switched off (``ANNZOO_SPEEDUPS``), the callbacks are left as
keras-tuner gives them.

Measured by ``benchmarks/run.py --only tuning``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import keras

from annzoo.speedups._core import Speedup, Symbol, active, check_instance, register

__all__ = ["SPEEDUP", "without_batch_hooks"]

NAME = "tuner_callbacks"
_TUNER_UTILS = "keras_tuner.src.engine.tuner_utils"


def _callback_probe():
    from keras_tuner.src.engine import tuner_utils  # deferred: searches only

    return tuner_utils.TunerCallback(tuner=None, trial=None)


SPEEDUP = register(
    Speedup(
        name=NAME,
        summary="keras-tuner's per-batch callback left out where it does nothing",
        benchmark="benchmarks/run.py --only tuning",
        symbols=(
            Symbol(_TUNER_UTILS, "TunerCallback"),
            Symbol(_TUNER_UTILS, "TunerCallback.tuner", _callback_probe),
            Symbol(_TUNER_UTILS, "TunerCallback.trial", _callback_probe),
        ),
    )
)

_EPOCH_ONLY: dict[type, type] = {}


def _empty_batch_hooks(tuner_class: type) -> bool:
    """Whether a tuner class's per-batch hooks are keras-tuner's own (empty)."""
    import keras_tuner  # deferred: keras-tuner loads only for searches

    return all(
        getattr(tuner_class, hook) is getattr(keras_tuner.Tuner, hook)
        for hook in ("on_batch_begin", "on_batch_end")
    )


def _epoch_only_class(base: type) -> type:
    if base not in _EPOCH_ONLY:

        class EpochTunerCallback(base):
            """keras-tuner's callback calling the tuner's hooks, without the
            per-batch ones (see `annzoo.speedups.tuner_callbacks`)."""

            on_batch_begin = keras.callbacks.Callback.on_batch_begin
            on_batch_end = keras.callbacks.Callback.on_batch_end

        _EPOCH_ONLY[base] = EpochTunerCallback
    return _EPOCH_ONLY[base]


def without_batch_hooks(callbacks: Sequence[Any] | None) -> list[Any]:
    """``callbacks`` with keras-tuner's ``TunerCallback`` replaced by one
    without per-batch methods, where its tuner's per-batch hooks are
    keras-tuner's own; the other callbacks are kept as they are."""
    callbacks = list(callbacks or ())
    if not active(NAME):
        return callbacks
    from keras_tuner.src.engine import tuner_utils  # deferred: searches only

    base = tuner_utils.TunerCallback
    kept = []
    for callback in callbacks:
        if (
            type(callback) is base
            and check_instance(NAME, callback)
            and _empty_batch_hooks(type(callback.tuner))
        ):
            callback = _epoch_only_class(base)(callback.tuner, callback.trial)
        kept.append(callback)
    return kept

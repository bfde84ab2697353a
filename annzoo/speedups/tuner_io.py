"""Speedup ``tuner_io``: keras-tuner's files written atomically (for correctness).

This one is kept for crash safety, not speed. keras-tuner writes
``oracle.json``, ``trial.json`` and each trial's best-epoch checkpoint in
place, so a process killed mid-write leaves a torn file that the next run
cannot reload. Inside `atomic_keras_tuner`, its JSON files go through the
caller's atomic write (annzoo passes `annzoo.io.write_text`: a temporary file,
fsync, rename), and the best epoch's weights are kept in memory until the
trial's ``fit`` ends and then written once, atomically (a file write per
improving epoch cost a small search a noticeable share of its time; a trial
killed before its end is run again anyway).

Public behaviour reproduced: keras-tuner's files, with the same contents and
names. keras-tuner has no public hook for how it writes them, so the module
function ``keras_tuner.src.utils.save_json`` and the methods
``SaveBestEpoch._save_model``/``on_train_end`` are replaced for the length of
the block (process-wide, restored on exit). Switched off
(``ANNZOO_SPEEDUPS``), keras-tuner writes its files itself, in place; the
search directory checks (`annzoo.tuning.directory`) still refuse to resume
over a torn file, naming it.

Measured by ``benchmarks/run.py --only tuning`` (the best-epoch writes).
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import numpy as np

from annzoo.speedups._core import Speedup, Symbol, active, check_instance, register

__all__ = ["SPEEDUP", "atomic_keras_tuner"]

NAME = "tuner_io"
_TUNER_UTILS = "keras_tuner.src.engine.tuner_utils"


def _saver_probe():
    # keras-tuner is deferred: it loads only for searches.
    import keras_tuner
    from keras_tuner.src.engine import tuner_utils

    objective = keras_tuner.Objective("val_loss", "min")
    return tuner_utils.SaveBestEpoch(objective, "annzoo-probe.weights.h5")


SPEEDUP = register(
    Speedup(
        name=NAME,
        summary="keras-tuner's JSON and checkpoint files written atomically",
        benchmark="benchmarks/run.py --only tuning",
        correctness=True,
        symbols=(
            Symbol("keras_tuner.src.utils", "save_json"),
            Symbol(_TUNER_UTILS, "SaveBestEpoch._save_model"),
            Symbol(_TUNER_UTILS, "SaveBestEpoch.on_train_end"),
            Symbol(_TUNER_UTILS, "SaveBestEpoch.filepath", _saver_probe),
        ),
    )
)


@contextlib.contextmanager
def atomic_keras_tuner(
    write_text: Callable[[str, str], Any],
    atomic_path: Callable[[str], AbstractContextManager[Path]],
) -> Iterator[bool]:
    """Routes keras-tuner's JSON and weight files through atomic writes.

    Args:
        write_text: ``write_text(path, text)`` writing a file atomically.
        atomic_path: a context manager yielding a temporary path to write,
            renamed over ``path`` on success.

    Yields:
        Whether keras-tuner's writes are rerouted (False with the speedup
        switched off or off for a missing symbol: keras-tuner's own writes).
    """
    if not active(NAME):
        yield False
        return
    # keras-tuner is deferred: it loads only for searches.
    from keras_tuner.src import utils as kt_utils
    from keras_tuner.src.engine import tuner_utils

    kind = tuner_utils.SaveBestEpoch
    saved = kt_utils.save_json, kind._save_model, kind.on_train_end
    keras_save_model, keras_on_train_end = saved[1:]

    def save_json(path, obj):
        text = json.dumps(obj)
        write_text(path, text)
        return text

    def save_model(callback):
        if not check_instance(NAME, callback):  # no `filepath`: keras-tuner's
            return keras_save_model(callback)
        callback._annzoo_best = [np.array(w) for w in callback.model.get_weights()]

    def write_best(callback, logs=None):
        best = getattr(callback, "_annzoo_best", None)
        if best is None:
            return keras_on_train_end(callback, logs)
        model = callback.model
        last = model.get_weights()
        model.set_weights(best)
        try:
            with atomic_path(callback.filepath) as tmp:
                model.save_weights(str(tmp))
        finally:
            model.set_weights(last)
        callback._annzoo_best = None

    kt_utils.save_json = save_json
    kind._save_model, kind.on_train_end = save_model, write_best
    try:
        yield True
    finally:
        kt_utils.save_json, kind._save_model, kind.on_train_end = saved

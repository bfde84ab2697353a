"""A recipe run stopped as an epoch begins, then rerun: the in-process resume.

An exception raised from a callback at the start of epoch ``epoch`` (0-based)
leaves the run directory as a crash there would (the epochs before it
committed); training the same recipe into the same folder again resumes it.
The real crashes, SIGKILL at seeded points, are in tests/test_kills.py.
"""

from __future__ import annotations

from pathlib import Path

import keras
import pytest

from annzoo.training import fitting, train


class Interrupt(Exception):
    """Raised by the stopping callback."""


class _StopAt(keras.callbacks.Callback):
    def __init__(self, epoch: int):
        super().__init__()
        self.epoch = epoch

    def on_epoch_begin(self, epoch, logs=None):
        if epoch == self.epoch:
            raise Interrupt


def stopped_then_resumed(recipe, output_dir: Path, monkeypatch, *, epoch: int = 1):
    """Trains ``recipe`` into ``output_dir`` until epoch ``epoch`` begins, then
    trains it again there; returns the second run's `RunResult`."""
    built = fitting.build_callbacks

    def with_stop(*args, **kwargs):
        bundle = built(*args, **kwargs)
        bundle.callbacks.append(_StopAt(epoch))
        return bundle

    with monkeypatch.context() as patch:
        patch.setattr(fitting, "build_callbacks", with_stop)
        with pytest.raises(Interrupt):
            train(recipe, output_dir=output_dir, verbose=0)
    return train(recipe, output_dir=output_dir, verbose=0)

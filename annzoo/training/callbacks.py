"""Callbacks that write into a run directory, atomically."""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path

import keras

from annzoo.training import io as aio

__all__ = ["BestModelCheckpoint", "MetricsLog"]


class BestModelCheckpoint(keras.callbacks.Callback):
    """Saves the model whenever ``monitor`` improves, through an atomic rename.

    Unlike ``keras.callbacks.ModelCheckpoint`` the file is never written in
    place, and an epoch whose monitored value is NaN or infinite is never
    taken as the best one.

    Args:
        path: the ``.keras`` file to keep up to date.
        monitor: the logged quantity to watch (``"val_loss"``).
        mode: ``"min"`` or ``"max"``; ``"auto"`` is max for accuracy-like
            names and min otherwise.
    """

    def __init__(self, path, monitor: str = "val_loss", mode: str = "auto"):
        super().__init__()
        self.path = Path(path)
        self.monitor = monitor
        if mode == "auto":
            mode = "max" if any(k in monitor for k in ("acc", "auc", "f1")) else "min"
        self.mode = mode
        self.best: float | None = None
        self.best_epoch: int | None = None

    def improved(self, value: float) -> bool:
        if not math.isfinite(value):
            return False
        if self.best is None:
            return True
        return value < self.best if self.mode == "min" else value > self.best

    def on_epoch_end(self, epoch, logs=None):
        value = (logs or {}).get(self.monitor)
        if value is None:
            raise KeyError(
                f"`monitor` {self.monitor!r} is not among the logged metrics "
                f"{sorted(logs or {})}."
            )
        value = float(value)
        if self.improved(value):
            self.best, self.best_epoch = value, epoch + 1
            aio.save_model(self.model, self.path)


class MetricsLog(keras.callbacks.Callback):
    """Per-epoch metrics as CSV, rewritten atomically after every epoch."""

    def __init__(self, path):
        super().__init__()
        self.path = Path(path)
        self.rows: list[dict[str, float]] = []

    def on_epoch_end(self, epoch, logs=None):
        row = {"epoch": epoch + 1}
        for key, value in (logs or {}).items():
            row[key] = float(value)
        self.rows.append(row)
        columns = list(dict.fromkeys(k for r in self.rows for k in r))
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
        writer.writeheader()
        writer.writerows(self.rows)
        aio.write_text(self.path, buffer.getvalue())

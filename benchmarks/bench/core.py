"""Timing machinery shared by the benchmarks.

Every reported figure is a ratio of two quantities measured in the same
process: each contender is warmed up (traced and compiled), then the
contenders are measured in turn, A/B/A/B..., several times, and each
repeat's ratio is taken against the reference measured next to it. The
median of those ratios is the figure; the lowest and highest show the noise.

Step time is measured by `StepTimer`, a callback that adds up the time of each
epoch's training loop: from ``on_epoch_begin`` (before the epoch's iterator is
made) to the end of the last training step, which is ``on_test_begin`` when
``fit`` validates and ``on_epoch_end`` otherwise. Both come after Keras has
read the epoch's metrics, so every step has finished (JAX dispatches steps
asynchronously). Validation and the epoch-end callbacks (checkpoints, logs)
are outside it: they are per-epoch costs, not per-step ones.
"""

from __future__ import annotations

import dataclasses
import math
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

import keras


def say(message: str) -> None:
    """One progress line on stderr."""
    print(f"bench: {message}", file=sys.stderr, flush=True)


@dataclasses.dataclass
class Settings:
    """What a run of the suite measures and where it writes."""

    quick: bool
    work_dir: Path  # scratch space (run directories, tuning searches)
    figures_dir: Path  # where PNGs go
    repeats: int = 5  # measurements per contender
    target_s: float = 0.6  # seconds of training per measurement, roughly
    results_path: Path | None = None  # the markdown file (for relative links)

    def figure_link(self, figure: Path) -> str:
        """``figure`` as a link relative to the results file."""
        if self.results_path is None:
            return str(figure)
        return os.path.relpath(figure, Path(self.results_path).resolve().parent)

    @classmethod
    def make(cls, *, quick: bool, work_dir: Path, figures_dir: Path) -> Settings:
        if quick:
            return cls(quick, work_dir, figures_dir, repeats=1, target_s=0.0)
        return cls(quick, work_dir, figures_dir)


# -- step timing ---------------------------------------------------------------


def _wait_for_device(model) -> None:
    """Returns when the steps dispatched so far have run.

    JAX dispatches asynchronously: a call returns before its program has
    run. Keras waits for the epoch's last call when it reads the epoch's
    logs (for ``on_epoch_end``), but validation begins (``on_test_begin``)
    before that; with several steps per call an epoch is a few calls, so
    without waiting there the timer could read little more than their
    dispatch. Keras has put the state back into the
    model's variables by then.
    """
    if keras.backend.backend() != "jax":
        return
    import jax

    jax.block_until_ready([variable.value for variable in model.variables])


class StepTimer(keras.callbacks.Callback):
    """Seconds spent in the training loop of each epoch, and the steps taken.

    Put it first in the callback list, so that its epoch-end time is read
    before the other callbacks do their epoch-end work. It has no batch-end
    hook, so it does not change how Keras dispatches the steps.
    """

    def __init__(self, steps_per_epoch: int | None = None) -> None:
        super().__init__()
        # Keras does not know the steps of a dataset of unknown cardinality
        # (it runs until the data ends): then the caller says how many.
        self.steps_per_epoch = steps_per_epoch
        self.seconds = 0.0
        self.steps = 0
        self._start: float | None = None
        self._last_begin = -1

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()
        self._last_begin = -1

    def on_train_batch_begin(self, batch, logs=None):
        self._last_begin = batch

    def _stop(self) -> None:
        if self._start is None:
            return
        _wait_for_device(self.model)
        self.seconds += time.perf_counter() - self._start
        self._start = None
        steps = self.steps_per_epoch or (self.params or {}).get("steps")
        if steps is None:  # unknown cardinality: count the steps begun
            steps = self._last_begin + getattr(self.model, "steps_per_execution", 1)
        self.steps += int(steps)

    def on_test_begin(self, logs=None):
        self._stop()

    def on_epoch_end(self, epoch, logs=None):
        self._stop()


def timed_fit(
    model,
    x,
    *,
    epochs: int,
    callbacks: Sequence = (),
    steps: int | None = None,
    **fit_kwargs,
):
    """``model.fit`` with a `StepTimer` first; returns ``(seconds, steps)``.

    ``steps``: the steps per epoch, for inputs whose length Keras cannot tell.
    """
    timer = StepTimer(steps)
    model.fit(x, epochs=epochs, callbacks=[timer, *callbacks], verbose=0, **fit_kwargs)
    return timer.seconds, timer.steps


@dataclasses.dataclass
class Contender:
    """One way of training: ``run(epochs) -> (seconds, steps)`` in the loop."""

    name: str
    run: Callable[[int], tuple[float, int]]


@dataclasses.dataclass
class Ratio:
    """The median of per-repeat ratios, with the lowest and highest."""

    median: float
    low: float
    high: float
    n: int

    @classmethod
    def of(cls, values: Sequence[float]) -> Ratio:
        values = [float(v) for v in values]
        return cls(statistics.median(values), min(values), max(values), len(values))

    def text(self, digits: int = 2) -> str:
        return f"{self.median:.{digits}f}"

    def spread(self, digits: int = 2) -> str:
        return f"{self.low:.{digits}f}-{self.high:.{digits}f}"

    def as_dict(self) -> dict[str, float]:
        return {
            "median": round(self.median, 4),
            "low": round(self.low, 4),
            "high": round(self.high, 4),
            "n": self.n,
        }


def compare(
    label: str,
    contenders: Sequence[Contender],
    settings: Settings,
    *,
    target_s: float | None = None,
    repeats: int | None = None,
    max_epochs: int = 40,
) -> dict[str, list[float]]:
    """Seconds per step of each contender, measured in turn after warm-up.

    Warm-up is two epochs each: the first traces and compiles (the last,
    smaller batch too), the second gives the epoch time from which each
    contender's epochs per measurement are chosen: enough for about
    ``target_s`` seconds of training (default ``settings.target_s``), so
    that fast and slow contenders are measured over similar spans of time.
    Quick mode skips the second (one epoch per measurement).

    Returns:
        ``{name: [seconds per step of repeat 1, 2, ...]}``.
    """
    if settings.quick or target_s is None:
        target_s = settings.target_s
    if settings.quick or repeats is None:
        repeats = settings.repeats
    epochs = {}
    for contender in contenders:
        seconds, _ = contender.run(1)
        if not settings.quick:
            seconds, _ = contender.run(1)
        wanted = math.ceil(target_s / max(seconds, 1e-6))
        epochs[contender.name] = max(1, min(max_epochs, wanted))
    results: dict[str, list[float]] = {c.name: [] for c in contenders}
    for repeat in range(1, repeats + 1):
        for contender in contenders:
            seconds, steps = contender.run(epochs[contender.name])
            per_step = seconds / max(steps, 1)
            results[contender.name].append(per_step)
            say(
                f"{label}: {contender.name}: repeat {repeat}/{repeats}, "
                f"{steps} steps, {per_step * 1e3:.3f} ms/step"
            )
    return results


def ratios(results: dict[str, list[float]], numerator: str, denominator: str) -> Ratio:
    """Per-repeat ``numerator / denominator`` of seconds per step."""
    return Ratio.of(
        [a / b for a, b in zip(results[numerator], results[denominator], strict=True)]
    )


def speedups(results: dict[str, list[float]], faster: str, reference: str) -> Ratio:
    """Per-repeat ``reference / faster`` time: a throughput ratio (> 1 is faster)."""
    return ratios(results, reference, faster)


# -- reporting -----------------------------------------------------------------


@dataclasses.dataclass
class Check:
    """A target: the figure, how it compares and whether it is met."""

    what: str
    value: float
    target: str  # e.g. "<= 1.02"
    met: bool

    def row(self) -> list[str]:
        return [
            self.what,
            f"{self.value:.3g}",
            self.target,
            "met" if self.met else "not met",
        ]


@dataclasses.dataclass
class Section:
    """A benchmark's part of RESULTS.md and of the JSON record."""

    name: str
    title: str
    body: str  # markdown
    data: dict[str, Any]
    checks: list[Check] = dataclasses.field(default_factory=list)


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    lines = [
        "| " + " | ".join(headers) + " |",
        "| " + " | ".join("---" for _ in headers) + " |",
    ]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def machine() -> dict[str, Any]:
    """The machine, the library versions and the Keras backend."""
    versions = {"python": platform.python_version()}
    for package in ("keras", "tensorflow", "jax", "numpy"):
        versions[package] = _version(package) or "not installed"
    return {
        "cpu": cpu_model(),
        "cores": usable_cores(),
        "logical_cpus": os.cpu_count(),
        "backend": keras.backend.backend(),
        "versions": versions,
        "platform": platform.platform(),
    }

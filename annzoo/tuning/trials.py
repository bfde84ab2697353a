"""The tuner of a search: each trial seeded, counted, measured and cleaned up.

`tuner_class` subclasses the keras-tuner tuner a search asks for, through its
public hooks only (``on_trial_begin``, ``run_trial``, ``on_trial_end``):

- every trial is seeded from the search's seed and its number, so the same
  search repeats each trial, not only its hyperparameters;
- a trial's starts are counted on disk before it trains, so a trial that
  kills the process (out of memory, a segfault) is marked failed after
  `MAX_ATTEMPTS` starts instead of being run again forever;
- each trial's wall time, training time, epochs and resident memory are
  written to ``stats/``; with ``manage_memory`` the process's memory is
  cleaned after each trial (`annzoo.tuning.memory`);
- a trial that fails is said in one line (``annzoo: trial N (search/trial_ID)
  failed: ...``) naming its record in ``stats/``, which keeps the error and its
  traceback (as keras-tuner's ``trial.json`` does in its ``message``):
  keras-tuner itself prints each failed trial's traceback to ``sys.stderr``
  (``traceback.print_exc``, between ``run_trial`` and ``on_trial_end``), and
  that print alone is held back (`_HeldStderr`).
"""

from __future__ import annotations

import sys
import time
import traceback
from pathlib import Path

import keras
import keras_tuner

from annzoo import io as aio
from annzoo.tuning import memory
from annzoo.tuning.directory import MAX_ATTEMPTS, attempts_file, read_attempts

__all__ = ["EpochTimer", "tuner_class"]


class EpochTimer(keras.callbacks.Callback):
    """Adds up the time spent in epochs; copies share one record."""

    def __init__(self, record: dict):
        super().__init__()
        self.record = record

    def __deepcopy__(self, memo):  # keras-tuner copies callbacks per trial
        return type(self)(self.record)

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.record["train_s"] += time.perf_counter() - self._start
        self.record["epochs"] += 1


def trial_number(trial) -> int:
    """keras-tuner's trial id as a number (for seeding)."""
    try:
        return int(trial.trial_id)
    except ValueError:  # pragma: no cover - keras-tuner ids are numbers
        return sum(map(ord, trial.trial_id))


class _HeldStderr:
    """``sys.stderr`` while keras-tuner handles a failed trial: it keeps what
    is written and, given back, passes on all of it but the trial's traceback.

    keras-tuner prints the traceback of the exception `run_trial` raised
    before it calls ``on_trial_end``; only text from a ``Traceback`` line to
    the exception's own last line is dropped, anything else written in
    between (another thread's lines) still reaches the terminal.
    """

    def __init__(self, stream, last_line: str):
        self.stream = stream
        self.last_line = last_line
        self.parts: list[str] = []

    def write(self, text: str) -> int:
        self.parts.append(text)
        return len(text)

    def flush(self) -> None:
        pass

    def __getattr__(self, name):  # encoding, isatty, fileno...: the stream's
        return getattr(self.stream, name)

    def give_back(self) -> None:
        if sys.stderr is self:
            sys.stderr = self.stream
        text = "".join(self.parts)
        start = text.find("Traceback (most recent call last):")
        end = text.rfind(self.last_line)
        if start >= 0 and end >= start:
            text = text[:start] + text[end + len(self.last_line) :].lstrip("\n")
        if text:
            self.stream.write(text)
            self.stream.flush()


def _one_line(error: BaseException) -> str:
    """``Type: first line of the message`` (annzoo's own `FailedTrialError`
    messages without the type), at most 300 characters."""
    lines = str(error).strip().splitlines() or [""]
    text = lines[0]
    if not isinstance(error, keras_tuner.errors.FailedTrialError) or not text:
        text = f"{type(error).__name__}: {text}".rstrip(": ")
    return text if len(text) <= 300 else text[:297] + "..."


def tuner_class(
    base: type, stats_dir: Path, record: dict, seed: int, manage_memory: bool
) -> type:
    """``base`` (a keras-tuner tuner class) seeding, counting and measuring
    each trial (see the module docstring).

    Args:
        base: e.g. ``keras_tuner.RandomSearch``.
        stats_dir: where each trial's record is written.
        record: the dict the search's `EpochTimer` fills during a trial.
        seed: the search's seed.
        manage_memory: clean the process's memory after each trial
            (`annzoo.tuning.memory.free_memory`).
    """
    state: dict[str, float] = {}  # `memory.free_memory`'s state across trials
    failure: dict[str, dict] = {}  # trial id -> its error, until on_trial_end
    held: list[_HeldStderr] = []  # sys.stderr held back for a failed trial

    def give_back_stderr() -> None:
        while held:
            held.pop().give_back()

    class AnnzooTuner(base):
        """keras-tuner's tuner, measuring each trial and freeing memory after it."""

        def on_trial_begin(self, trial):
            record.update(train_s=0.0, epochs=0, start=time.perf_counter())
            # Weights, dropout and shuffling of trial k are seeded too, so the
            # same search seed repeats each trial, not only its hyperparameters.
            keras.utils.set_random_seed(seed * 100_003 + trial_number(trial))
            super().on_trial_begin(trial)

        def run_trial(self, trial, *args, **kwargs):
            try:
                return self._counted_trial(trial, *args, **kwargs)
            except keras_tuner.errors.FatalError:
                raise  # keras-tuner ends the search with it
            except Exception as error:
                # Said here in one line; keras-tuner's printed traceback of it
                # is held back until on_trial_end (see the module docstring).
                record_file = stats_dir / f"trial_{trial.trial_id}.json"
                # Numbered from 1, as in trials.csv; keras-tuner's folder too.
                number = f"{trial_number(trial) + 1} (search/trial_{trial.trial_id})"
                failure[trial.trial_id] = {
                    "error": _one_line(error),
                    "traceback": "".join(traceback.format_exception(error)),
                }
                print(
                    f"annzoo: trial {number} failed: {_one_line(error)}; its "
                    f"traceback is kept in {str(record_file)!r}",
                    flush=True,
                )
                last = traceback.format_exception_only(error)[-1].rstrip("\n")
                held.append(_HeldStderr(sys.stderr, last.splitlines()[-1]))
                sys.stderr = held[-1]
                raise

        def _counted_trial(self, trial, *args, **kwargs):
            # Counted before training, so a process that dies in this trial
            # leaves the count behind; keras-tuner would otherwise rerun a
            # trial that kills the process (out of memory...) forever.
            attempts = attempts_file(stats_dir, trial.trial_id)
            started = read_attempts(attempts)
            if started >= MAX_ATTEMPTS:
                raise keras_tuner.errors.FailedTrialError(
                    f"the process died during this trial {started} times (out of "
                    "memory, a crash or a kill); not run again"
                )
            aio.write_json(attempts, {"starts": started + 1})
            return super().run_trial(trial, *args, **kwargs)

        def search(self, *args, **kwargs):
            try:
                return super().search(*args, **kwargs)
            finally:
                give_back_stderr()  # a search ended inside a failed trial

        def on_trial_end(self, trial):
            give_back_stderr()
            super().on_trial_end(trial)
            cleared = memory.free_memory(state) if manage_memory else False
            stats = {
                "trial_id": trial.trial_id,
                "wall_s": round(time.perf_counter() - record["start"], 4),
                "train_s": round(record["train_s"], 4),
                "epochs": record["epochs"],
                "rss_mb": round(memory.rss_mb(), 2),
                "tuner_id": getattr(self, "tuner_id", None),
                "compiled_cache_cleared": cleared,
                **failure.pop(trial.trial_id, {}),
            }
            aio.write_json(stats_dir / f"trial_{trial.trial_id}.json", stats)

    AnnzooTuner.__name__ = f"Annzoo{base.__name__}"
    return AnnzooTuner

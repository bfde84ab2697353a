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
  cleaned after each trial (`annzoo.tuning.memory`).
"""

from __future__ import annotations

import time
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

    class AnnzooTuner(base):
        """keras-tuner's tuner, measuring each trial and freeing memory after it."""

        def on_trial_begin(self, trial):
            record.update(train_s=0.0, epochs=0, start=time.perf_counter())
            # Weights, dropout and shuffling of trial k are seeded too, so the
            # same search seed repeats each trial, not only its hyperparameters.
            keras.utils.set_random_seed(seed * 100_003 + trial_number(trial))
            super().on_trial_begin(trial)

        def run_trial(self, trial, *args, **kwargs):
            # Counted before training, so a process that dies in this trial
            # leaves the count behind; keras-tuner would otherwise rerun a
            # trial that kills the process (out of memory...) forever.
            attempts = attempts_file(stats_dir, trial.trial_id)
            started = read_attempts(attempts)
            if started >= MAX_ATTEMPTS:
                message = (
                    f"the process died during this trial {started} times (out of "
                    "memory, a crash or a kill); not run again"
                )
                # Numbered from 1, as in trials.csv; keras-tuner's folder too.
                number = f"{trial_number(trial) + 1} (search/trial_{trial.trial_id})"
                print(f"annzoo: trial {number} failed: {message}", flush=True)
                raise keras_tuner.errors.FailedTrialError(message)
            aio.write_json(attempts, {"starts": started + 1})
            return super().run_trial(trial, *args, **kwargs)

        def on_trial_end(self, trial):
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
            }
            aio.write_json(stats_dir / f"trial_{trial.trial_id}.json", stats)

    AnnzooTuner.__name__ = f"Annzoo{base.__name__}"
    return AnnzooTuner

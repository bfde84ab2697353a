"""Tuning overhead: the share of an ``annzoo.tune`` search spent outside steps.

A 20-trial random search over the ``digits_mlp`` recipe's default MLP space
(1-3 hidden layers of 32-256 units, activation, dropout, optimizer, learning
rate, batch size), 10 epochs at most per trial. The search's wall time is
split, from the outside in:

- outside the trials: search setup, reports, ``trials.png``;
- in trials but outside their epochs (the method of the "Hyperparameter
  search overhead" section above: annzoo's per-trial records): build,
  compile, keras-tuner's bookkeeping, memory cleanup;
- in epochs but outside training steps: validation, epoch-end callbacks;
- in training steps, timed by a batch callback added to annzoo's own epoch
  timer for this benchmark; the first step of each ``fit`` (tracing and
  compiling the step function) is counted apart.

Target: at most 10% of the wall time outside training steps.
"""

from __future__ import annotations

import contextlib
import statistics
import time

import keras

from bench import core, zoo

TARGET = 0.10


@contextlib.contextmanager
def batch_timing():
    """Adds batch timing to annzoo.tune's epoch-timer callback; yields the totals."""
    from annzoo.tuning import search

    base = getattr(search, "_EpochTimer", None)
    if base is None:
        raise RuntimeError(
            "annzoo.tuning.search._EpochTimer is gone: update bench/tuning.py to "
            "add the batch timer another way."
        )
    totals = {"step_s": 0.0, "first_step_s": 0.0, "steps": 0, "fits": 0}

    class BatchTimer(base):
        def __deepcopy__(self, memo):  # keras-tuner copies callbacks per trial
            return BatchTimer(self.record)

        def on_train_begin(self, logs=None):
            self._first = True
            totals["fits"] += 1

        def on_train_batch_begin(self, batch, logs=None):
            self._batch_start = time.perf_counter()

        def on_train_batch_end(self, batch, logs=None):
            seconds = time.perf_counter() - self._batch_start
            totals["step_s"] += seconds
            totals["steps"] += 1
            if self._first:
                totals["first_step_s"] += seconds
                self._first = False

    search._EpochTimer = BatchTimer
    try:
        yield totals
    finally:
        search._EpochTimer = base


def run(settings: core.Settings) -> core.Section:
    from annzoo.tuning import tune

    trials, epochs = (1, 1) if settings.quick else (20, 10)
    overrides = ["data.limit=128"] if settings.quick else []
    recipe = zoo.recipe("digits_mlp", overrides)
    out = settings.work_dir / "tuning"
    core.say(f"tuning: {trials}-trial random search, {epochs} epochs at most per trial")
    with batch_timing() as totals:
        started = time.perf_counter()
        result = tune(
            recipe, tuner="random", max_trials=trials, seed=0, epochs=epochs,
            output_dir=out, overwrite=True, verbose=0,
        )  # fmt: skip
        wall = time.perf_counter() - started
    keras.backend.clear_session()
    rows = [t for t in result.trials if t.get("status") == "COMPLETED"]
    trial_wall = sum(float(t["wall_s"]) for t in rows)
    in_epochs = sum(float(t["train_s"]) for t in rows)
    steps = totals["step_s"]
    first = totals["first_step_s"]
    steady = steps - first
    shares = {
        "outside trials (setup, reports)": (wall - trial_wall) / wall,
        "in trials, outside epochs (build, compile, bookkeeping)": (
            trial_wall - in_epochs
        )
        / wall,
        "in epochs, outside steps (validation, epoch-end callbacks)": (
            in_epochs - steps
        )
        / wall,
        "first step of each fit (tracing, compiling)": first / wall,
        "later training steps": steady / wall,
    }
    outside = 1.0 - steps / wall
    outside_steady = 1.0 - steady / wall
    step_s = steady / max(totals["steps"] - totals["fits"], 1)
    fixed = [float(t["wall_s"]) - float(t["train_s"]) for t in rows]
    fixed_median = statistics.median(fixed) if fixed else float("nan")
    per_trial_overhead = (wall - steady) / max(len(rows), 1)
    breakeven_steps = 9 * per_trial_overhead / step_s if step_s else float("nan")
    core.say(
        f"tuning: {len(rows)} trials in {wall:.1f} s, {outside:.1%} outside "
        "training steps"
    )
    checks = [
        core.Check(
            "tuning: share of search wall time outside training steps",
            outside, f"<= {TARGET}", outside <= TARGET,
        )
    ]  # fmt: skip
    body = "\n".join(
        [
            f"A {trials}-trial random search (`annzoo.tune`, seed 0) over the "
            f"`digits_mlp` recipe's default MLP space, at most {epochs} epochs per "
            "trial (early stopping as the recipe says). On TensorFlow each trial "
            "trains on annzoo's tf.data stream (one iterator per fit) and "
            "validates through its array-slice pipeline. "
            "Time inside "
            "training steps is measured by a batch callback (`on_train_batch_begin` "
            "to `on_train_batch_end` of every step); the other parts come from "
            "annzoo's per-trial records (`stats/`), the method of the search-overhead "
            "section above. Shares of the search's wall time:",
            "",
            core.table(
                ["part of the search", "share of wall time"],
                [[k, f"{v:.1%}"] for k, v in shares.items()],
            ),
            "",
            f"Outside training steps: **{outside:.1%}** (first steps counted as "
            f"outside: {outside_steady:.1%}); {len(rows)} trials completed, "
            f"{totals['steps']:,} steps. Per trial, everything but the later "
            f"training steps costs as much as {_steps(per_trial_overhead, step_s)} "
            "steps (median of annzoo's own fixed cost outside epochs: "
            f"{_steps(fixed_median, step_s)} steps), so a trial needs about "
            f"{breakeven_steps:,.0f} steps for the 10% target.",
        ]
    )
    data = {
        "trials": trials,
        "completed": len(rows),
        "epochs_max": epochs,
        "share_outside_steps": round(outside, 4),
        "share_outside_steps_first_step_outside": round(outside_steady, 4),
        "shares": {k: round(v, 4) for k, v in shares.items()},
        "steps": totals["steps"],
        "fits": totals["fits"],
        "per_trial_overhead_in_steps": (
            round(per_trial_overhead / step_s, 1) if step_s else None
        ),
        "fixed_cost_outside_epochs_in_steps_median": (
            round(fixed_median / step_s, 1) if step_s else None
        ),
        "steps_per_trial_for_target": round(breakeven_steps) if step_s else None,
        "best_score": result.best_score,
    }
    return core.Section(
        "tuning", "Tuning overhead: a search's time outside training steps",
        body, data, checks,
    )  # fmt: skip


def _steps(seconds: float, step_s: float) -> str:
    """``seconds`` as a number of training steps (none measured: "n/a")."""
    return f"{seconds / step_s:,.0f}" if step_s else "n/a"

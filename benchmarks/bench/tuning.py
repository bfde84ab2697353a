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
  timer for this benchmark around each compiled call of up to
  ``steps_per_execution`` steps; the first call of each ``fit`` also traces
  and compiles the step function, and what it takes beyond its steps' time
  (at the later calls' time per step) is counted apart, as tracing.

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
    # Keras calls the batch hooks once per compiled call, which runs
    # steps_per_execution steps: begin gets the call's first step index, end
    # its last, so a call's steps are end - begin + 1.
    totals = {
        "call_s": 0.0, "first_call_s": 0.0, "steps": 0, "first_call_steps": 0,
        "calls": 0, "fits": 0,
    }  # fmt: skip

    class BatchTimer(base):
        def __deepcopy__(self, memo):  # keras-tuner copies callbacks per trial
            return BatchTimer(self.record)

        def on_train_begin(self, logs=None):
            self._first = True
            totals["fits"] += 1

        def on_train_batch_begin(self, batch, logs=None):
            self._begin = batch
            self._batch_start = time.perf_counter()

        def on_train_batch_end(self, batch, logs=None):
            seconds = time.perf_counter() - self._batch_start
            steps = batch - self._begin + 1
            totals["call_s"] += seconds
            totals["steps"] += steps
            totals["calls"] += 1
            if self._first:
                totals["first_call_s"] += seconds
                totals["first_call_steps"] += steps
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
    # Later calls give the time of a step; each fit's first call also traces
    # and compiles: what it took beyond its steps' time is that overhead.
    later_s = totals["call_s"] - totals["first_call_s"]
    later_steps = totals["steps"] - totals["first_call_steps"]
    # Without a later call (a one-call --quick search) the time of a step is
    # unknown: the first calls then count as tracing, all of them.
    step_s = later_s / later_steps if later_steps else 0.0
    first_steps_s = min(totals["first_call_steps"] * step_s, totals["first_call_s"])
    tracing = totals["first_call_s"] - first_steps_s
    in_steps = later_s + first_steps_s
    shares = {
        "outside trials (setup, reports)": (wall - trial_wall) / wall,
        "in trials, outside epochs (build, compile, bookkeeping)": (
            trial_wall - in_epochs
        )
        / wall,
        "in epochs, outside calls (validation, epoch-end callbacks)": (
            in_epochs - totals["call_s"]
        )
        / wall,
        "first call of each fit, beyond its steps (tracing)": tracing / wall,
        "training steps": in_steps / wall,
    }
    outside = 1.0 - in_steps / wall
    fixed = [float(t["wall_s"]) - float(t["train_s"]) for t in rows]
    fixed_median = statistics.median(fixed) if fixed else float("nan")
    per_trial_overhead = (wall - in_steps) / max(len(rows), 1)
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
            "training steps is measured by a batch callback around every compiled "
            "call (`on_train_batch_begin` to `on_train_batch_end`; a call runs up "
            "to `steps_per_execution` steps, counted from the step indices Keras "
            "passes). The later calls give the time of a step; each fit's first "
            "call also traces and compiles, and what it took beyond its own "
            "steps' time is counted as tracing. The other parts come from "
            "annzoo's per-trial records (`stats/`), the method of the search-overhead "
            "section above. Shares of the search's wall time:",
            "",
            core.table(
                ["part of the search", "share of wall time"],
                [[k, f"{v:.1%}"] for k, v in shares.items()],
            ),
            "",
            f"Outside training steps: **{outside:.1%}**; {len(rows)} trials "
            f"completed, {totals['steps']:,} steps ({totals['steps'] / len(rows):,.0f} "
            f"per trial) in {totals['calls']:,} calls. Per trial, everything but "
            f"the training steps costs as much as {_steps(per_trial_overhead, step_s)} "
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
        "shares": {k: round(v, 4) for k, v in shares.items()},
        "steps": totals["steps"],
        "calls": totals["calls"],
        "fits": totals["fits"],
        "seconds_per_step": round(step_s, 6) if step_s else None,
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

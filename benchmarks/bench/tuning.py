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

From these, what comes with every epoch (its time outside its calls, on every
epoch but a fit's first) is told from what comes once per trial, to say how
long trials must be for the target, or that more epochs of this size cannot
reach it.

Target: at most 10% of the wall time outside training steps.

Beside it, for scale: the same trials as a plain keras-tuner search written
the way a user would (`plain_search`), timed by the same batch callback,
alternating with annzoo's search over several rounds. The share outside
steps of such tiny trials is mostly Keras' own per-model cost (tracing the
train and test steps, building the model), which the plain search pays too.
"""

from __future__ import annotations

import contextlib
import statistics
import time

import keras
import numpy as np

from bench import core, zoo

TARGET = 0.10


class _StepTotals:
    """Batch hooks adding up the time of each compiled call into ``totals``.

    Keras calls the batch hooks once per compiled call, which runs up to
    ``steps_per_execution`` steps: begin gets the call's first step index, end
    ``begin + steps_per_execution - 1`` whatever the data held, so a call's
    steps are ``end - begin + 1`` capped by the steps left in the epoch (the
    last call of an epoch that does not split into whole calls runs fewer).
    A fit's first call also traces and compiles, so it is counted apart too.
    """

    totals: dict

    def on_train_begin(self, logs=None):
        super().on_train_begin(logs)
        self._first = True
        self._first_test = True
        self._first_epoch = True
        self.totals["fits"] += 1

    def on_epoch_begin(self, epoch, logs=None):
        super().on_epoch_begin(epoch, logs)
        self._epoch_start = time.perf_counter()
        self._epoch_calls = 0.0

    def on_epoch_end(self, epoch, logs=None):
        # An epoch's time outside its calls (validation, callbacks, Keras'
        # loop); a fit's first epoch also starts iterators, so it stays apart.
        outside = time.perf_counter() - self._epoch_start - self._epoch_calls
        if not self._first_epoch:
            self.totals["later_epoch_outside_s"] += outside
            self.totals["later_epochs"] += 1
        self._first_epoch = False
        super().on_epoch_end(epoch, logs)

    def on_test_begin(self, logs=None):
        self._test_start = time.perf_counter()

    def on_test_end(self, logs=None):
        # Validation inside fit; a fit's first one also traces the test step.
        seconds = time.perf_counter() - self._test_start
        self.totals["test_s"] += seconds
        self.totals["tests"] += 1
        if self._first_test:
            self.totals["first_test_s"] += seconds
            self._first_test = False

    def on_train_batch_begin(self, batch, logs=None):
        self._begin = batch
        self._batch_start = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        seconds = time.perf_counter() - self._batch_start
        steps = batch - self._begin + 1
        per_epoch = (self.params or {}).get("steps")
        if per_epoch:
            steps = min(steps, per_epoch - self._begin)
        self._epoch_calls += seconds
        totals = self.totals
        totals["call_s"] += seconds
        totals["steps"] += steps
        totals["calls"] += 1
        if self._first:
            totals["first_call_s"] += seconds
            totals["first_call_steps"] += steps
            self._first = False


def _new_totals() -> dict:
    return {
        "call_s": 0.0, "first_call_s": 0.0, "steps": 0, "first_call_steps": 0,
        "calls": 0, "fits": 0, "test_s": 0.0, "first_test_s": 0.0, "tests": 0,
        "later_epoch_outside_s": 0.0, "later_epochs": 0,
    }  # fmt: skip


@contextlib.contextmanager
def batch_timing():
    """Adds batch timing to annzoo.tune's epoch-timer callback; yields the totals."""
    from annzoo.tuning import trials

    base = getattr(trials, "EpochTimer", None)
    if base is None:
        raise RuntimeError(
            "annzoo.tuning.trials.EpochTimer is gone: update bench/tuning.py to "
            "add the batch timer another way."
        )
    totals = _new_totals()

    class BatchTimer(_StepTotals, base):
        def __init__(self, record):
            super().__init__(record)
            self.totals = totals

        def __deepcopy__(self, memo):  # keras-tuner copies callbacks per trial
            return BatchTimer(self.record)

    trials.EpochTimer = BatchTimer
    try:
        yield totals
    finally:
        trials.EpochTimer = base


class _PlainTimer(_StepTotals, keras.callbacks.Callback):
    """The same batch timing, as a callback of a plain keras-tuner search."""

    def __init__(self, totals: dict):
        super().__init__()
        self.totals = totals

    def __deepcopy__(self, memo):  # keras-tuner copies callbacks per trial
        return _PlainTimer(self.totals)


def plain_search(
    configs: list[dict],
    splits: dict,
    *,
    epochs: int,
    patience: int,
    directory,
    totals: dict,
):
    """The same trials as a plain keras-tuner search, written as a user would.

    A hand-written MLP (`handmade.mlp`) compiled with Keras' defaults, the
    hypermodel's ``fit`` passing the trial's batch size to ``model.fit`` on
    the arrays, validation arrays, early stopping: keras-tuner's own tuner
    loop and checkpoints. Its oracle replays ``configs`` (annzoo's trials,
    in order) instead of drawing, so both searches train the same networks
    with the same settings for the same epochs. Returns the tuner.
    """
    import keras_tuner

    from annzoo import registry
    from annzoo.tuning import spaces
    from bench import handmade

    train, validation = splits["train"], splits["validation"]
    mlp_space = registry.family_spec("mlp").search_space
    common = spaces.COMMON_SPACE
    num_classes = int(np.max(train.y)) + 1

    class ReplayOracle(keras_tuner.Oracle):
        def populate_space(self, trial_id):
            done = len(self.trials)  # the new trial is added after this
            if done >= len(configs):
                return {"status": "STOPPED"}
            return {"status": "RUNNING", "values": dict(configs[done])}

    class PlainMLP(keras_tuner.HyperModel):
        def build(self, hp):
            units = mlp_space["hidden_units"]
            depth = hp.Int("hidden_units_depth", *units["depth"])
            hidden = [
                hp.Choice(f"hidden_units_{i}", units["values"])
                for i in range(1, depth + 1)
            ]
            model = handmade.mlp(
                train.x.shape[1:], num_classes, hidden_units=hidden,
                dropout=hp.Choice("dropout", mlp_space["dropout"]),
                activation=hp.Choice("activation", mlp_space["activation"]),
            )  # fmt: skip
            rate = common["learning_rate"]
            optimizer = keras.optimizers.get(
                {
                    "class_name": hp.Choice("optimizer", common["optimizer"]["values"]),
                    "config": {
                        "learning_rate": hp.Float(
                            "learning_rate", rate["min"], rate["max"], sampling="log"
                        )
                    },
                }
            )
            model.compile(
                optimizer=optimizer,
                loss="sparse_categorical_crossentropy",
                metrics=["accuracy"],
            )
            return model

        def fit(self, hp, model, *args, **kwargs):
            batch = hp.Choice("batch_size", common["batch_size"]["values"])
            return model.fit(*args, batch_size=batch, **kwargs)

    oracle = ReplayOracle(objective="val_loss", max_trials=len(configs), seed=0)
    tuner = keras_tuner.Tuner(
        oracle=oracle, hypermodel=PlainMLP(), directory=str(directory),
        project_name="plain", overwrite=True,
    )  # fmt: skip
    tuner.search(
        train.x, train.y, validation_data=(validation.x, validation.y),
        epochs=epochs, verbose=0,
        callbacks=[
            keras.callbacks.EarlyStopping(monitor="val_loss", patience=patience),
            _PlainTimer(totals),
        ],
    )  # fmt: skip
    return tuner


def _split_time(totals: dict, wall: float) -> dict:
    """Wall time split into training steps and tracing (see the module doc)."""
    # Later calls give the time of a step; each fit's first call also traces
    # and compiles: what it took beyond its steps' time is that overhead.
    later_s = totals["call_s"] - totals["first_call_s"]
    later_steps = totals["steps"] - totals["first_call_steps"]
    # Without a later call (a one-call --quick search) the time of a step is
    # unknown: the first calls then count as tracing, all of them.
    step_s = later_s / later_steps if later_steps else 0.0
    first_steps_s = min(totals["first_call_steps"] * step_s, totals["first_call_s"])
    return {
        "wall_s": wall,
        "step_s": step_s,
        "in_steps_s": later_s + first_steps_s,
        "tracing_s": totals["first_call_s"] - first_steps_s,
        "outside_s": wall - (later_s + first_steps_s),
    }


def _annzoo_search(recipe, trials, epochs, out):
    from annzoo.tuning import tune

    with batch_timing() as totals:
        started = time.perf_counter()
        # Its memory managed as the `annzoo tune` command does.
        result = tune(
            recipe, tuner="random", max_trials=trials, seed=0, epochs=epochs,
            output_dir=out, overwrite=True, verbose=0, manage_memory=True,
        )  # fmt: skip
        wall = time.perf_counter() - started
    keras.backend.clear_session()
    return result, totals, wall


def run(settings: core.Settings) -> core.Section:
    trials, epochs = (1, 1) if settings.quick else (20, 10)
    rounds = 1 if settings.quick else 3
    overrides = ["data.limit=128"] if settings.quick else []
    recipe = zoo.recipe("digits_mlp", overrides)
    patience = int(recipe.callbacks["early_stopping"]["patience"])
    splits = zoo.load_splits(recipe)
    out = settings.work_dir / "tuning"
    core.say(
        f"tuning: {trials}-trial random search, {epochs} epochs at most per trial, "
        f"against the same trials in plain keras-tuner, {rounds} round(s)"
    )
    if not settings.quick:
        # Both kinds of search once, untimed: the first search of a process
        # also pays for one-time work (imports, caches) the later ones reuse.
        core.say("tuning: warm-up, a 2-trial search of each kind (not timed)")
        warm, _, _ = _annzoo_search(recipe, 2, 1, out / "warm-up")
        plain_search(
            [dict(t["hyperparameters"]) for t in warm.trials
             if t.get("status") == "COMPLETED"],
            splits, epochs=1, patience=patience, directory=out / "warm-up",
            totals=_new_totals(),
        )  # fmt: skip
        keras.backend.clear_session()
    annzoo_runs, plain_runs = [], []
    configs: list[dict] = []
    for round_ in range(1, rounds + 1):
        result, totals, wall = _annzoo_search(recipe, trials, epochs, out)
        rows = [t for t in result.trials if t.get("status") == "COMPLETED"]
        if not configs:
            configs = [dict(t["hyperparameters"]) for t in rows]
        annzoo_runs.append((result, totals, _split_time(totals, wall)))
        plain_totals = _new_totals()
        started = time.perf_counter()
        plain_search(
            configs, splits, epochs=epochs, patience=patience,
            directory=out / "plain", totals=plain_totals,
        )  # fmt: skip
        plain_wall = time.perf_counter() - started
        keras.backend.clear_session()
        plain_runs.append((plain_totals, _split_time(plain_totals, plain_wall)))
        core.say(
            f"tuning: round {round_}/{rounds}: annzoo {wall:.1f} s, plain "
            f"keras-tuner {plain_wall:.1f} s"
        )
    # The breakdown is the round of median wall time (annzoo's).
    order = sorted(range(rounds), key=lambda i: annzoo_runs[i][2]["wall_s"])
    result, totals, split = annzoo_runs[order[rounds // 2]]
    parts = breakdown(result, totals, split)
    rows, shares, outside = parts["rows"], parts["shares"], parts["outside"]
    wall, step_s = split["wall_s"], split["step_s"]
    per_trial_overhead, growth = parts["per_trial_overhead"], parts["growth"]
    fixed_median = parts["fixed_median"]

    count = max(len(configs), 1)
    pairs = list(zip(annzoo_runs, plain_runs, strict=True))
    wall_ratio = core.Ratio.of([a[2]["wall_s"] / p[1]["wall_s"] for a, p in pairs])
    outside_ratio = core.Ratio.of(
        [a[2]["outside_s"] / p[1]["outside_s"] for a, p in pairs]
    )
    plain_totals, plain_split = sorted(plain_runs, key=lambda p: p[1]["wall_s"])[
        rounds // 2
    ]
    contenders = [
        ("annzoo.tune", split, totals),
        ("plain keras-tuner", plain_split, plain_totals),
    ]
    comparison = core.table(
        [
            "search", "wall time", "outside training steps", "per trial outside steps",
            "tracing per fit", "time per step", "steps",
        ],
        [
            [
                name, f"{d['wall_s']:.1f} s", f"{d['outside_s'] / d['wall_s']:.1%}",
                f"{d['outside_s'] / count:.3f} s",
                f"{d['tracing_s'] / max(t['fits'], 1):.3f} s",
                f"{d['step_s'] * 1e3:.3f} ms", f"{t['steps']:,}",
            ]
            for name, d, t in contenders
        ],
    )  # fmt: skip
    core.say(
        f"tuning: {len(rows)} trials in {wall:.1f} s, {outside:.1%} outside "
        f"training steps; wall time {wall_ratio.text(3)} of plain keras-tuner's"
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
            f"trial (early stopping as the recipe says). {_feeding()} Time inside "
            "training steps is measured by a batch callback around every compiled "
            "call (`on_train_batch_begin` to `on_train_batch_end`; a call runs up "
            "to `steps_per_execution` steps, counted from the step indices Keras "
            "passes). The later calls give the time of a step; each fit's first "
            "call also traces and compiles, and what it took beyond its own "
            "steps' time is counted as tracing. The other parts come from "
            "annzoo's per-trial records (`stats/`), the method of the search-overhead "
            f"section above. Shares of the search's wall time (the round of median "
            f"wall time of {rounds}):",
            "",
            core.table(
                ["part of the search", "share of wall time"],
                [[k, f"{v:.1%}"] for k, v in shares.items()],
            ),
            "",
            f"Outside training steps: **{outside:.1%}**; {len(rows)} trials "
            f"completed, {totals['steps']:,} steps "
            f"({totals['steps'] / max(len(rows), 1):,.0f} "
            f"per trial) in {totals['calls']:,} calls. Per trial, everything but "
            f"the training steps costs as much as {_steps(per_trial_overhead, step_s)} "
            "steps (median of annzoo's own fixed cost outside epochs: "
            f"{_steps(fixed_median, step_s)} steps). {growth['text']}",
            "",
            "The same trials as a plain keras-tuner search, the way a user writes "
            "one: a hand-written Sequential MLP compiled with Keras' defaults, "
            "`model.fit` on the arrays with the trial's batch size and validation "
            "arrays, the same early stopping, keras-tuner's own trial loop and "
            "checkpoints; its oracle replays annzoo's trials in order, so both "
            "searches train the same networks for the same epochs. After an "
            "untimed warm-up (a 2-trial search of each kind) the searches "
            f"alternate, {rounds} round(s); the rows are each one's round of median "
            "wall time, measured by the same batch callback:",
            "",
            comparison,
            "",
            f"annzoo's search takes **{wall_ratio.text(3)}** ({wall_ratio.spread(3)}) "
            "of plain keras-tuner's wall time, and its time outside training "
            f"steps is {outside_ratio.text(3)} ({outside_ratio.spread(3)}) of "
            "plain keras-tuner's.",
        ]
    )
    data = {
        "trials": trials,
        "rounds": rounds,
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
        "growth": {k: v for k, v in growth.items() if k != "text"},
        "best_score": result.best_score,
        "plain_keras_tuner": {
            "wall_ratio": wall_ratio.as_dict(),
            "outside_steps_ratio": outside_ratio.as_dict(),
            "annzoo": {k: round(v, 6) for k, v in split.items()},
            "plain": {k: round(v, 6) for k, v in plain_split.items()},
            "plain_steps": plain_totals["steps"],
        },
    }
    return core.Section(
        "tuning", "Tuning overhead: a search's time outside training steps",
        body, data, checks,
    )  # fmt: skip


def breakdown(result, totals: dict, split: dict) -> dict:
    """A search's wall time in parts (see the module doc), from its per-trial
    records and the batch timer's totals: shares of the wall time, the share
    outside training steps, the per-trial and per-epoch costs (`_growth`)."""
    rows = [t for t in result.trials if t.get("status") == "COMPLETED"]
    wall = split["wall_s"]
    trial_wall = sum(float(t["wall_s"]) for t in rows)
    in_epochs = sum(float(t["train_s"]) for t in rows)
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
        "first call of each fit, beyond its steps (tracing)": split["tracing_s"] / wall,
        "training steps": split["in_steps_s"] / wall,
    }
    fixed = [float(t["wall_s"]) - float(t["train_s"]) for t in rows]
    epochs = sum(int(t["epochs"]) for t in rows)
    return {
        "rows": rows,
        "shares": shares,
        "outside": split["outside_s"] / wall,
        "fixed_median": statistics.median(fixed) if fixed else float("nan"),
        "per_trial_overhead": split["outside_s"] / max(len(rows), 1),
        "epochs": epochs,
        "growth": _growth(totals, split, epochs, len(rows)),
    }


def _growth(totals: dict, split: dict, epochs: int, trials: int) -> dict:
    """How the share outside steps would fall as trials grow, from the parts
    that come once per trial and those that come with every epoch.

    Per epoch: an epoch's time outside its calls (validation, callbacks),
    measured on every epoch but a fit's first (which also starts iterators
    and traces the test step: per-trial costs). Per trial: all else outside
    steps. More epochs of the same size add ``r`` (per-epoch cost over an
    epoch's steps) to every epoch, so the share outside steps never falls
    below ``r / (1 + r)``; only the per-trial part is diluted.
    """
    later = totals["later_epochs"]
    step_s = split["step_s"]
    if later <= 0 or not epochs or not step_s:
        return {"text": "Too few epochs to split per-epoch from per-trial costs."}
    validations = totals["tests"] - totals["fits"]
    validation_s = (totals["test_s"] - totals["first_test_s"]) / max(validations, 1)
    per_epoch_s = totals["later_epoch_outside_s"] / later
    epoch_steps_s = split["in_steps_s"] / epochs
    ratio = per_epoch_s / epoch_steps_s
    per_trial_s = (split["outside_s"] - per_epoch_s * epochs) / trials
    floor = ratio / (1 + ratio)
    found = {
        "validation_ms_per_epoch": round(validation_s * 1e3, 3),
        "outside_calls_ms_per_epoch": round(per_epoch_s * 1e3, 3),
        "steps_ms_per_epoch": round(epoch_steps_s * 1e3, 3),
        "per_epoch_over_steps": round(ratio, 4),
        "per_trial_fixed_s": round(per_trial_s, 4),
        "share_floor_with_more_epochs": round(floor, 4),
    }
    text = (
        f"After a fit's first epoch, an epoch spent {per_epoch_s * 1e3:.2f} ms "
        f"outside its calls (validation {validation_s * 1e3:.2f} ms of it), "
        f"{ratio:.1%} of an epoch's {epoch_steps_s * 1e3:.2f} ms of training "
        f"steps. Per trial, {per_trial_s:.3f} s comes once (build, tracing, "
        "iterators, bookkeeping, its share of the search's setup). "
    )
    if floor >= TARGET:
        steps = None
        text += (
            f"More epochs of this size dilute only the per-trial part: the share "
            f"outside steps would stay above {floor:.1%}, so the 10% target needs "
            "epochs whose steps outweigh their validation and callbacks more than "
            "here (more training data per epoch for the same validation, say), "
            "not only more of them."
        )
    else:
        # (F + r S) / (F + (1 + r) S) <= t  <=>  S >= F (1 - t) / (t - (1 - t) r)
        seconds = per_trial_s * (1 - TARGET) / (TARGET - (1 - TARGET) * ratio)
        steps = round(seconds / step_s)
        text += (
            f"With epochs of this size a trial needs about {steps:,} steps for "
            "the 10% target."
        )
    found["steps_per_trial_for_target"] = steps
    return {**found, "text": text}


def _feeding() -> str:
    """How annzoo.tune feeds a trial on this backend."""
    from annzoo.tuning import memory

    if keras.backend.backend() == "tensorflow":
        return (
            "On TensorFlow each trial trains on annzoo's tf.data stream (one "
            "iterator per fit) and validates through its array-slice pipeline."
        )
    return (
        f"On {keras.backend.backend().upper()} each trial trains on annzoo's NumPy "
        "batch sequence (whole batches, so the compiled step keeps one shape) and "
        "validates on the arrays; compiled programs are kept from trial to trial "
        f"until resident memory has grown {memory.JAX_CACHE_BUDGET_MB:.0f} MiB "
        "(`annzoo.tuning.memory.JAX_CACHE_BUDGET_MB`), and a program another "
        "trial compiled already (the same HLO) is taken from the search's "
        "compilation cache; nonzero dropout rates are values the compiled step "
        "reads (`annzoo.speedups.dropout_rates`), so trials that differ only in them "
        "share a program."
    )


def _steps(seconds: float, step_s: float) -> str:
    """``seconds`` as a number of training steps (none measured: "n/a")."""
    return f"{seconds / step_s:,.0f}" if step_s else "n/a"

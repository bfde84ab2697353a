"""Small-model dispatch: annzoo's default fit settings against a naive ``fit``.

A tiny MLP (32 features, one hidden layer of 64, 10 classes) trains at
batch sizes 32, 128 and 1024 on synthetic data. The naive contender is the
same network written by hand, ``model.compile(optimizer="adam", loss=...,
metrics=["accuracy"])`` with Keras' defaults and ``model.fit(x, y,
batch_size=...)``. annzoo's contenders go through the recipe runner (model,
``compile_model``, input pipeline and the callbacks that act at every step)
with the recipe defaults read from ``SECTION_DEFAULTS`` at run time, and with
candidate settings: ``steps_per_execution`` 1/8/32, ``jit_compile``
off/on, tf.data or numpy input. The figure is samples per second over the
naive fit's (target >= 2).

A second table checks the candidates on larger models, against annzoo's
defaults: settings that help a tiny MLP must not slow a CNN or a wider MLP.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import keras
import numpy as np

from annzoo.training.recipe import Recipe
from bench import core, handmade, zoo

BATCH_SIZES = (32, 128, 1024)
FEATURES, HIDDEN, CLASSES = 32, (64,), 10
TARGET = 2.0
DEFAULTS = "annzoo defaults"


def _recipe(model: dict, batch_size: int, overrides=()) -> Recipe:
    recipe = Recipe(
        name="dispatch",
        model=model,
        data={"dataset": "synthetic", "batch_size": batch_size},
        fit={"epochs": 1, "seed": 0},
    )
    return recipe.override(list(overrides))


# One factor at a time around (numpy, spe 32, jit on): steps per execution,
# XLA, then the input pipeline. (pipeline, spe, jit)
GRID = (
    ("numpy", 1, True),
    ("numpy", 8, True),
    ("numpy", 32, True),
    ("numpy", 32, False),
    ("tf.data", 32, True),
    ("tf.data", 32, False),
    ("tf.data", 1, False),
)


def candidates(backend: str, quick: bool = False) -> list[tuple[str, list[str]]]:
    """``(label, recipe overrides)`` of the settings tried besides the defaults.

    Without XLA the JAX backend runs eagerly, so jit off is tried on
    TensorFlow only. Quick mode tries one setting.
    """
    found = []
    for pipeline, spe, jit in GRID:
        if backend != "tensorflow" and not jit:
            continue
        if quick and (pipeline, spe, jit) != ("numpy", 32, True):
            continue
        found.append(
            (f"spe {spe}, jit {'on' if jit else 'off'}, {pipeline}",
             [f"compile.steps_per_execution={spe}",
              f"compile.jit_compile={str(jit).lower()}",
              f"data.pipeline={pipeline}"])
        )  # fmt: skip
    return found


def _settings_key(path: zoo.RunnerPath) -> tuple:
    """What a contender really runs with (``"auto"`` resolved by Keras)."""
    return (
        bool(path.model.jit_compile),
        int(path.model.steps_per_execution),
        type(path.train_input).__name__,
    )


def _synthetic(count: int, features: tuple[int, ...], seed: int = 0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((count, *features), dtype=np.float32)
    y = rng.integers(0, CLASSES, count).astype(np.int32)
    split = zoo.synthetic_split(x, y, num_classes=CLASSES)
    return {"train": split, "validation": split, "test": split}


def _annzoo_contenders(model, batch_size, splits, settings, overrides_list):
    """Runner-path contenders, one per distinct effective setting."""
    contenders, seen, labels = [], {}, {}
    for label, overrides in overrides_list:
        recipe = _recipe(model, batch_size, overrides)
        run_dir = Path(tempfile.mkdtemp(prefix="dispatch-", dir=settings.work_dir))
        path = zoo.runner_path(recipe, splits, run_dir, callbacks="batch")
        key = _settings_key(path)
        if key in seen:  # e.g. the defaults are one of the candidates
            labels[label] = seen[key]
            continue
        seen[key] = label
        labels[label] = label
        contenders.append(core.Contender(label, _fit(path)))
    return contenders, labels


def _fit(path: zoo.RunnerPath):
    def run(epochs):
        return core.timed_fit(
            path.model,
            path.train_input,
            epochs=epochs,
            callbacks=[*path.runner_callbacks(), *path.callbacks],
            shuffle=False,
            steps_per_epoch=path.fit_steps(),
            steps=path.steps_per_epoch,
        )

    return run


def _naive(x, y, batch_size):
    keras.utils.set_random_seed(0)
    model = handmade.mlp((FEATURES,), CLASSES, hidden_units=HIDDEN, dropout=0.0)
    model.compile(
        optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"]
    )

    def run(epochs):
        return core.timed_fit(model, x, y=y, batch_size=batch_size, epochs=epochs)

    return core.Contender("naive model.fit", run)


def tiny_mlp(settings: core.Settings) -> dict:
    backend = keras.backend.backend()
    count = 2048 if settings.quick else 32 * 1024
    splits = _synthetic(count, (FEATURES,))
    model = {"name": "mlp", "hidden_units": list(HIDDEN)}
    tried = [(DEFAULTS, []), *candidates(backend, settings.quick)]
    table: dict[str, dict[int, core.Ratio]] = {}
    aliases: dict[int, dict[str, str]] = {}
    for batch_size in BATCH_SIZES:
        x, y = splits["train"].x, splits["train"].y
        contenders, labels = _annzoo_contenders(
            model, batch_size, splits, settings, tried
        )
        aliases[batch_size] = labels
        results = core.compare(
            f"dispatch batch {batch_size}",
            [_naive(x, y, batch_size), *contenders],
            settings, target_s=0.4, repeats=4,
        )  # fmt: skip
        for label in labels:
            measured = labels[label]
            table.setdefault(label, {})[batch_size] = core.speedups(
                results, measured, "naive model.fit"
            )
        keras.backend.clear_session()
    return {"table": table, "aliases": aliases, "samples": count}


# Larger models: (label, model, batch size, input shape).
LARGER = (
    ("MLP 784-512-512", {"name": "mlp", "hidden_units": [512, 512]}, 128, (784,)),
    ("digits CNN (32, 64)", {"name": "cnn", "filters": [32, 64], "batch_norm": True,
                             "hidden_units": [128]}, 32, (8, 8, 1)),
)  # fmt: skip


def larger_models(settings: core.Settings, picks: list[tuple[str, list[str]]]) -> dict:
    """Candidate settings against annzoo's defaults on larger models."""
    out = {}
    for label, model, batch_size, shape in LARGER[:1] if settings.quick else LARGER:
        count = batch_size * (8 if settings.quick else 64)
        splits = _synthetic(count, shape)
        contenders, labels = _annzoo_contenders(
            model, batch_size, splits, settings, [(DEFAULTS, []), *picks]
        )
        results = core.compare(
            f"dispatch {label}", contenders, settings, target_s=0.4, repeats=4
        )
        out[label] = {
            pick: core.speedups(results, labels[pick], labels[DEFAULTS])
            for pick, _ in picks
        }
        out[label]["_batch"] = batch_size
        keras.backend.clear_session()
    return out


def recommend(table: dict[str, dict[int, core.Ratio]]) -> str:
    """The candidate with the best worst-case speedup over the batch sizes.

    annzoo's settings only: the prototype pipeline is not an option yet.
    """
    return max(
        (label for label in table if label != DEFAULTS),
        key=lambda label: min(r.median for r in table[label].values()),
    )


def run(settings: core.Settings) -> core.Section:
    backend = keras.backend.backend()
    defaults = zoo.compile_defaults()
    data_defaults = zoo.data_defaults()
    tiny = tiny_mlp(settings)
    table = tiny["table"]
    best = recommend(table)
    others = sorted(
        (label for label in table if label not in (DEFAULTS, best)),
        key=lambda label: -min(r.median for r in table[label].values()),
    )
    tried = dict(candidates(backend, settings.quick))
    picks = [(best, tried[best])]
    # For the larger models also the best of the other jit setting: XLA's
    # gain on a tiny MLP need not carry over to convolutions.
    other_jit = "jit off" if "jit on" in best else "jit on"
    rivals = [label for label in others if other_jit in label]
    if rivals:
        picks.append((rivals[0], tried[rivals[0]]))
    larger = larger_models(settings, picks)

    rows = []
    shown = [DEFAULTS, best, *others]
    for label in shown:
        cells = [table[label][b] for b in BATCH_SIZES]
        name = f"**{label}**" if label == best else label
        alias = {tiny["aliases"][b].get(label, label) for b in BATCH_SIZES}
        if alias != {label}:
            name += f" (the same settings as {', '.join(sorted(alias))})"
        if label == DEFAULTS:
            name = (
                f"{DEFAULTS} (spe {defaults['steps_per_execution']}, jit "
                f"`{defaults['jit_compile']}`, pipeline `{data_defaults['pipeline']}`)"
            )
        rows.append([name, *(f"{r.text()} ({r.spread()})" for r in cells)])
    checks = [
        core.Check(
            f"dispatch: annzoo defaults / naive fit, batch {b}",
            table[DEFAULTS][b].median,
            f">= {TARGET}",
            table[DEFAULTS][b].median >= TARGET,
        )
        for b in BATCH_SIZES
    ]
    larger_rows = [
        [label, values["_batch"],
         *(f"{values[p].text()} ({values[p].spread()})" for p, _ in picks)]
        for label, values in larger.items()
    ]  # fmt: skip
    body = "\n".join(
        [
            f"Samples per second of a tiny MLP ({FEATURES} features, hidden "
            f"{list(HIDDEN)}, {CLASSES} classes; {tiny['samples']:,} synthetic samples "
            "per epoch) trained through annzoo's recipe runner, over a naive "
            "`model.fit(x, y, batch_size=...)` of the same network compiled with "
            "Keras' defaults (`jit_compile='auto'`, `steps_per_execution=1`). "
            "annzoo's defaults are read from `SECTION_DEFAULTS` at run time; the "
            "runner's callbacks that act at every step are included, validation is "
            "not. `spe` is `compile.steps_per_execution`, `jit` `compile.jit_compile`; "
            "`tf.data` and `numpy` are `data.pipeline`. Target for the defaults: >= 2. "
            "Both sides use `verbose=0`.",
            "",
            core.table(["settings", *(f"batch {b}" for b in BATCH_SIZES)], rows),
            "",
            f"Best worst-case candidate in this run: **{best}**. The same settings on "
            "larger models, as samples per second over annzoo's current defaults "
            "(> 1: faster):",
            "",
            core.table(["model", "batch", *(p for p, _ in picks)], larger_rows),
        ]
    )
    data = {
        "tiny_mlp": {
            label: {str(b): r.as_dict() for b, r in cells.items()}
            for label, cells in table.items()
        },
        "same_settings_as": {str(b): a for b, a in tiny["aliases"].items()},
        "recommended": best,
        "recommended_overrides": picks[0][1],
        "larger_models": {
            label: {
                k: (v.as_dict() if isinstance(v, core.Ratio) else v)
                for k, v in values.items()
            }
            for label, values in larger.items()
        },  # fmt: skip
        "defaults": {"compile": defaults, "data.pipeline": data_defaults["pipeline"]},
    }
    return core.Section(
        "dispatch", "Small-model dispatch: annzoo defaults against a naive fit",
        body, data, checks,
    )  # fmt: skip

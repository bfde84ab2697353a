"""Overhead: annzoo's recipe runner against the same network written by hand.

For an MLP, a CNN, an LSTM and a Transformer (the small recipes of
``recipes/``), three contenders train on the same arrays with the same
compile settings (the recipe's optimizer, learning rate, ``jit_compile`` and
``steps_per_execution``):

- ``annzoo runner``: the model, input pipeline and callback bundle exactly as
  ``annzoo train`` makes them (see `bench.zoo`);
- ``annzoo model, plain fit``: the same annzoo model fed by a plain
  ``model.fit(x, y, batch_size=..., shuffle=True)``, no callbacks;
- ``plain Keras``: the twin written by hand (`bench.handmade`), same plain fit.

The figure is the step time of the runner over that of plain Keras (target
<= 1.02); the middle contender splits the difference into the model and the
runner's input pipeline and callbacks.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import keras

from bench import core, handmade, zoo

# (label, recipe, overrides). The LSTM is the char_rnn recipe with an LSTM
# cell of the same size (the preset is a GRU).
FAMILIES = (
    ("MLP", "digits_mlp", ()),
    ("CNN", "digits_cnn", ()),
    (
        "LSTM",
        "surnames_char_rnn",
        (
            "model.name=rnn",
            "model.cell=lstm",
            "model.units=[128]",
            "model.embedding_dim=32",
        ),
    ),  # fmt: skip
    ("Transformer", "surnames_transformer", ()),
)
TARGET = 1.02
# --quick checks the harness, not the figures: the Transformer with one block
# instead of two compiles its three contenders in about half the time.
QUICK = {"Transformer": ("model.num_layers=1",)}


def _same(a, b) -> bool:
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        return tuple(a) == tuple(b)
    return a == b


def _unsupported(family: str, args: dict, **expected) -> None:
    for key, value in expected.items():
        if not _same(args.get(key), value):
            raise NotImplementedError(
                f"The hand-written {family} twin covers {key}={value!r} only. "
                f"Received: {key}={args.get(key)!r}"
            )


def hand_twin(family: str, model_args: dict) -> keras.Model:
    """The plain-Keras twin of an annzoo model built from ``model_args``."""
    a = zoo.builder_arguments(family, model_args)
    if family == "mlp":
        _unsupported(family, a, batch_norm=False, task="multiclass")
        return handmade.mlp(
            a["input_shape"], a["num_outputs"], hidden_units=a["hidden_units"],
            dropout=a["dropout"], activation=a["activation"],
        )  # fmt: skip
    if family == "cnn":
        _unsupported(
            family, a, block="plain", depth=1, strides=1, padding="same",
            stem="none", head="flatten", task="multiclass",
        )  # fmt: skip
        if a["pooling"] not in ("auto", "max"):
            raise NotImplementedError("The hand-written CNN pools with max only.")
        return handmade.cnn(
            a["input_shape"], a["num_classes"], filters=a["filters"],
            kernel_size=a["kernel_size"], batch_norm=bool(a["batch_norm"]),
            hidden_units=a["hidden_units"], dropout=a["dropout"],
            activation=a["activation"],
        )  # fmt: skip
    if family == "rnn":
        _unsupported(
            family, a, bidirectional=False, dropout=0.0, recurrent_dropout=0.0,
            output="last", crf=False, task="multiclass",
        )  # fmt: skip
        units = a["units"] if isinstance(a["units"], list | tuple) else [a["units"]]
        return handmade.rnn(
            a["input_shape"][0], a["num_outputs"],
            vocabulary_size=a["vocabulary_size"], embedding_dim=a["embedding_dim"],
            cell=a["cell"], units=units,
        )  # fmt: skip
    if family == "transformer":
        _unsupported(
            family, a, variant="encoder", position=None, hidden_units=(),
            key_dim=None, activation=None, task="multiclass",
        )  # fmt: skip
        return handmade.transformer(
            a["vocabulary_size"], a["sequence_length"], a["num_classes"],
            d_model=a["d_model"], num_heads=a["num_heads"], ff_dim=a["ff_dim"],
            num_layers=a["num_layers"], dropout=a["dropout"],
        )  # fmt: skip
    raise NotImplementedError(f"No hand-written twin for family {family!r}.")


def _single_input(x):
    if isinstance(x, dict) and len(x) == 1:
        return next(iter(x.values()))
    return x


def measure_family(label, recipe_name, overrides, settings: core.Settings) -> dict:
    extra = ["data.limit=256", *QUICK.get(label, ())] if settings.quick else []
    recipe = zoo.recipe(recipe_name, [*overrides, *extra]).validate()
    splits = zoo.load_splits(recipe)
    batch = recipe.data["batch_size"]
    # Validation is not timed (it runs after the last step); one batch of it
    # is enough for the callbacks' val_loss.
    splits["validation"] = zoo.shrink(splits["validation"], batch)
    run_dir = Path(
        tempfile.mkdtemp(prefix=f"overhead-{recipe_name}-", dir=settings.work_dir)
    )
    path = zoo.runner_path(recipe, splits, run_dir)
    family = recipe.model["name"]
    keras.utils.set_random_seed(recipe.fit["seed"])
    hand = hand_twin(family, path.model_args)
    compile_settings = {
        "jit_compile": recipe.compile["jit_compile"],
        "steps_per_execution": recipe.compile["steps_per_execution"],
    }
    handmade.compile_like(
        hand, learning_rate=recipe.compile["learning_rate"],
        compile_settings=compile_settings,
    )  # fmt: skip
    handmade.check_twins(path.model, hand)
    x, y = path.arrays()
    x = _single_input(x)

    def plain(model):
        def run(epochs):
            return core.timed_fit(
                model, x, y=y, batch_size=batch, shuffle=True, epochs=epochs
            )

        return run

    # Its own copy of the model: the runner sets its model's steps per call to
    # a divisor of the epoch's steps, which a plain fit must not inherit.
    twin = zoo.runner_path(recipe, splits, None, callbacks="none").model
    contenders = [
        core.Contender("annzoo runner", path.fit),
        core.Contender("annzoo model, plain fit", plain(twin)),
        core.Contender("plain Keras", plain(hand)),
    ]
    # The runner's epochs end with checkpoints and backups (untimed but slow):
    # shorter measurements, the default number of them.
    results = core.compare(f"overhead {label}", contenders, settings, target_s=0.3)
    runner_ratio = core.ratios(results, "annzoo runner", "plain Keras")
    model_ratio = core.ratios(results, "annzoo model, plain fit", "plain Keras")
    per_step = [type(c).__name__ for c in path.callbacks if zoo.has_batch_hooks(c)]
    return {
        "family": label,
        "recipe": recipe_name,
        "overrides": list(overrides),
        "params": path.model.count_params(),
        "batch_size": batch,
        "train_samples": len(splits["train"]),
        "jit_compile": str(recipe.compile["jit_compile"]),
        "resolved_jit_compile": bool(path.model.jit_compile),
        "steps_per_execution": recipe.compile["steps_per_execution"],
        "per_step_callbacks": per_step,
        "runner_over_plain": runner_ratio.as_dict(),
        "model_over_plain": model_ratio.as_dict(),
        "seconds_per_step": {k: [round(v, 7) for v in vs] for k, vs in results.items()},
    }


def run(settings: core.Settings) -> core.Section:
    rows, records, checks = [], [], []
    for label, recipe_name, overrides in FAMILIES:
        record = measure_family(label, recipe_name, overrides, settings)
        records.append(record)
        runner_ratio = core.Ratio(
            **{
                k: record["runner_over_plain"][k]
                for k in ("median", "low", "high", "n")
            }
        )
        model_ratio = core.Ratio(
            **{k: record["model_over_plain"][k] for k in ("median", "low", "high", "n")}
        )
        rows.append([
            label,
            f"`{record['recipe']}`" + (" (LSTM cell)" if overrides else ""),
            f"{record['params']:,}",
            record["batch_size"],
            f"**{runner_ratio.text(3)}** ({runner_ratio.spread(3)})",
            f"{model_ratio.text(3)} ({model_ratio.spread(3)})",
        ])  # fmt: skip
        checks.append(
            core.Check(
                f"overhead {label}: runner / plain Keras step time",
                runner_ratio.median,
                f"<= {TARGET}",
                runner_ratio.median <= TARGET,
            )
        )
    first = records[0]
    body = "\n".join(
        [
            "Step time of the annzoo recipe runner's training (model, input pipeline "
            "and callback bundle as `annzoo train` builds them) over that of the same "
            "network written by hand in plain Keras and trained with a plain "
            "`model.fit(x, y, batch_size=..., shuffle=True)`: same arrays, optimizer, "
            "learning rate, `jit_compile` and `steps_per_execution` (the recipe's: "
            f"`{first['jit_compile']}` -> {first['resolved_jit_compile']}, "
            f"{first['steps_per_execution']}; the runner feeds a never-ending "
            "stream, one iterator per `fit`, and runs the largest divisor of the "
            "epoch's steps not above that per call). The middle column trains a copy "
            "of the annzoo model with the plain `fit`, separating the model from the "
            "runner's input pipeline and callbacks. Median of per-repeat ratios "
            "(lowest-highest); "
            "target <= 1.02. Step time covers each epoch's training loop, until the "
            "device has run its last step (JAX returns from a call before); "
            "validation and the epoch-end callbacks (checkpoint, backup, CSV, "
            "TensorBoard) are per-epoch costs and not in it. The runner's callbacks "
            "acting at every step: "
            f"{', '.join(first['per_step_callbacks']) or 'none'}.",
            "",
            core.table(
                [
                    "network",
                    "recipe",
                    "parameters",
                    "batch",
                    "annzoo runner / plain Keras",
                    "annzoo model, plain fit / plain Keras",
                ],
                rows,
            ),  # fmt: skip
        ]
    )
    return core.Section(
        "overhead", "Overhead: recipe runner against plain Keras", body,
        {"families": records}, checks,
    )  # fmt: skip

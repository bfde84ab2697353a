"""annzoo's recipe runner path, as ``annzoo train`` takes it, minus the reports.

`annzoo.training.train` builds the model from the recipe (builder,
augmentation wrapper, ``compile_model`` with the recipe's ``jit_compile`` and
``steps_per_execution``), makes the input pipeline (``annzoo.data`` via the
runner), builds the callback bundle, then calls ``model.fit``. It takes no
extra callback and ends with evaluation and plots, so the benchmarks repeat
those steps here from the runner's own functions. This module is the only
one that touches the runner's internals: if they change, fix it here.
"""

from __future__ import annotations

import dataclasses
import inspect
import math
from pathlib import Path
from typing import Any

import keras
import numpy as np

from annzoo import datasets
from annzoo.training import build, inputs, sequences
from annzoo.training.callbacks import build_callbacks
from annzoo.training.recipe import SECTION_DEFAULTS, Recipe, load_recipe
from bench import core

RECIPES_DIR = Path(__file__).resolve().parents[2] / "recipes"


def recipe(name: str, overrides: list[str] | tuple[str, ...] = ()) -> Recipe:
    """``recipes/NAME.py``'s recipe with ``SECTION.FIELD=VALUE`` overrides."""
    return load_recipe(RECIPES_DIR / f"{name}.py").override(list(overrides))


def load_splits(recipe_: Recipe) -> dict[str, datasets.ArrayDataset]:
    """The recipe's train/validation/test splits, as the runner loads them."""
    return sequences.prepare_text(inputs.load_splits(recipe_), recipe_.data["text"])


def synthetic_split(x: np.ndarray, y: np.ndarray, *, num_classes: int, split="train"):
    """Arrays as an annzoo split (a multiclass dataset named ``synthetic``)."""
    return datasets.ArrayDataset(
        x=x,
        y=y,
        name="synthetic",
        split=split,
        task="multiclass",
        num_classes=num_classes,
        class_names=tuple(str(i) for i in range(num_classes)),
        feature_names=None,
        seed=0,
        indices=np.arange(len(x)),
    )


def shrink(split, count: int):
    """The first ``count`` samples of a split."""
    keep = slice(0, count)
    return dataclasses.replace(
        split, x=split.x[keep], y=split.y[keep], indices=split.indices[keep]
    )


def compile_defaults() -> dict[str, Any]:
    """annzoo's default compile settings, read now (they may change)."""
    return dict(SECTION_DEFAULTS["compile"])


def data_defaults() -> dict[str, Any]:
    return dict(SECTION_DEFAULTS["data"])


def builder_arguments(family: str, model_args: dict) -> dict[str, Any]:
    """A family builder's arguments with its defaults filled in."""
    import annzoo

    builder = getattr(annzoo, f"build_{family}")
    defaults = {
        name: p.default
        for name, p in inspect.signature(builder).parameters.items()
        if p.default is not inspect.Parameter.empty
    }
    return {**defaults, **model_args}


def has_batch_hooks(callback) -> bool:
    """Whether a callback does work at every training step."""
    base = keras.callbacks.Callback
    return any(
        getattr(type(callback), hook) is not getattr(base, hook)
        for hook in (
            "on_train_batch_begin",
            "on_train_batch_end",
            "on_batch_begin",
            "on_batch_end",
        )
    )


@dataclasses.dataclass
class RunnerPath:
    """A recipe's model, input pipeline and callbacks, ready to ``fit``."""

    recipe: Recipe
    splits: dict[str, Any]
    model_args: dict[str, Any]
    model: keras.Model
    train_input: Any
    val_input: Any
    callbacks: list

    @property
    def steps_per_epoch(self) -> int:
        given = self.recipe.fit["steps_per_epoch"]
        if given:
            return int(given)
        return math.ceil(len(self.splits["train"]) / self.recipe.data["batch_size"])

    def fit_steps(self) -> int | None:
        """The ``steps_per_epoch`` the runner passes to ``fit`` (setting the
        model's steps per call as it does)."""
        return inputs.fit_steps(self.recipe, self.model, self.train_input)

    def runner_callbacks(self) -> list:
        """The runner's own callbacks before the bundle's (``_fit_stages``)."""
        from annzoo.training import callbacks

        epoch_order = getattr(callbacks, "EpochOrder", None)
        if epoch_order is None:  # an older runner
            return []
        seed = self.recipe.fit["seed"]
        return [epoch_order(self.train_input, seed, extra=[self.train_input])]

    def fit(self, epochs: int) -> tuple[float, int]:
        """Trains as the runner does; returns the `StepTimer`'s (seconds, steps)."""
        return core.timed_fit(
            self.model,
            self.train_input,
            epochs=epochs,
            callbacks=[*self.runner_callbacks(), *self.callbacks],
            validation_data=self.val_input,
            shuffle=False,  # the runner's pipeline shuffles, seeded per epoch
            steps_per_epoch=self.fit_steps(),
            steps=self.steps_per_epoch,
        )

    def arrays(self, split: str = "train"):
        """The split as the numpy ``(x, y)`` a plain ``model.fit`` would take."""
        return sequences.model_inputs(self.splits[split], self.model)


def runner_path(
    recipe_: Recipe,
    splits: dict[str, Any],
    run_dir: Path | None,
    *,
    callbacks: str = "all",
) -> RunnerPath:
    """Builds what ``annzoo.training.train`` builds before its ``model.fit``.

    `RunnerPath.fit` adds the runner's own callbacks (the epoch-order pin)
    whatever ``callbacks`` says: they belong to its input pipeline.

    Args:
        recipe_: the recipe.
        splits: its splits (`load_splits`, or synthetic ones).
        run_dir: where the callbacks write (a scratch directory).
        callbacks: which of the recipe's callback bundle: ``"all"`` (with
            validation data, as the runner passes it), ``"batch"`` (those that
            act at every step; no validation) or ``"none"``.
    """
    train = splits["train"]
    model_args = inputs.model_arguments(recipe_, train)
    keras.utils.set_random_seed(recipe_.fit["seed"])
    model = build.build_model(recipe_, model_args)
    num_classes = train.num_classes if train.task == "multiclass" else None
    train_input = inputs.input_pipeline(
        recipe_, train, model, training=True, num_classes=num_classes
    )
    val_input = None
    chosen: list = []
    if callbacks != "none":
        bundle = build_callbacks(recipe_, run_dir)
        if callbacks == "all":
            chosen = list(bundle.callbacks)
            val_input = inputs.input_pipeline(
                recipe_,
                splits["validation"],
                model,
                training=False,
                num_classes=num_classes,
            )
        else:
            chosen = [c for c in bundle.callbacks if has_batch_hooks(c)]
    return RunnerPath(
        recipe_, splits, model_args, model, train_input, val_input, chosen
    )

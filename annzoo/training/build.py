"""Building and compiling a recipe's model, its learning rates and stages."""

from __future__ import annotations

from typing import Any

import keras

from annzoo import augment, registry, tasks
from annzoo.errors import AnnzooError
from annzoo.finetune import finetune, frozen_layers, source_file, source_sha256
from annzoo.training import distribute
from annzoo.training.inputs import mixes_labels
from annzoo.training.recipe import Recipe
from annzoo.training.rundir import Run, load_state_model

__all__ = [
    "build_model",
    "compile_recipe_model",
    "finetune_lines",
    "for_plan",
    "head_epochs",
    "learning_rates",
    "load_or_build",
    "optimizer_arguments",
    "stages",
    "start_model",
    "with_source_checksum",
]


def for_plan(recipe: Recipe, plan: distribute.Plan) -> Recipe:
    """The recipe as it can run under ``plan`` and on this Keras backend."""
    steps = recipe.compile["steps_per_execution"]
    # Keras 3's multi-step train function fails under MirroredStrategy
    # ("You must feed a value for placeholder tensor"), and Keras' PyTorch
    # trainer runs one step per call only: one step per call there. The run's
    # recipe.json records the 1 that ran.
    if plan.tf_strategy is not None:
        steps = 1
    steps = tasks.backend_steps_per_execution(steps)
    if steps != recipe.compile["steps_per_execution"]:
        return recipe.override([f"compile.steps_per_execution={steps}"])
    return recipe


def head_epochs(recipe: Recipe) -> int | None:
    """Epochs of the first fine-tuning stage (the new head on the frozen
    base); None when the run is not fine-tuning in two stages.

    ``"auto"``: a quarter of ``fit.epochs``, at least 1 (``--epochs 4``: 1
    head epoch, then 3 of the unfrozen network). As many as ``fit.epochs``
    (``--epochs 1``): the head alone, one stage.
    """
    ft = recipe.finetune
    head = ft["head_epochs"]
    if ft["source"] is None or not head:
        return None
    if head == "auto":
        head = max(1, recipe.fit["epochs"] // 4)
    return int(head)


def with_source_checksum(recipe: Recipe) -> Recipe:
    """The recipe with ``finetune.source_sha256`` filled in, for ``recipe.json``.

    Raises:
        AnnzooError: the recipe names a checksum (a rerun of a fine-tuning
            run's recipe.json) that the source's file no longer has.
    """
    ft = recipe.finetune
    path = None if ft["source"] is None else source_file(ft["source"])
    if path is None or not path.is_file():
        return recipe
    checksum = source_sha256(path)
    if checksum is None:
        return recipe
    if ft["source_sha256"] not in (None, checksum):
        raise AnnzooError(
            f"`finetune.source_sha256` must match the source's weights: "
            f"{str(path)!r} has sha256 {checksum}, so it changed since this recipe "
            "was written. Remove the field to fine-tune from the file as it is now. "
            f"Received: finetune.source_sha256={ft['source_sha256']!r}"
        )
    data = recipe.to_dict()
    data["finetune"]["source_sha256"] = checksum
    return Recipe.from_dict(data)


def learning_rates(
    recipe: Recipe, replicas: int = 1
) -> tuple[float | None, float | None]:
    """The learning rate of the first stage and, for fine-tuning, the second's.

    Fine-tuning in two stages: the head at ``compile.learning_rate`` times
    ``finetune.head_learning_rate_scale``, then the unfrozen network at it
    times ``finetune.learning_rate_scale``; in one stage, the latter.
    ``distribute.scale_learning_rate`` multiplies both by ``replicas``.
    """
    rate = recipe.compile["learning_rate"]
    ft = recipe.finetune
    scale = replicas if recipe.distribute["scale_learning_rate"] else 1
    if (scale != 1 or ft["source"] is not None) and rate is None:
        # The optimizer's own default, to be scaled.
        rate = float(tasks.get_optimizer(recipe.compile["optimizer"]).learning_rate)
    if rate is not None:
        rate *= scale
    if ft["source"] is None:
        return rate, None
    reduced = rate * ft["learning_rate_scale"]
    if head_epochs(recipe):
        return rate * ft["head_learning_rate_scale"], reduced
    return reduced, reduced


def load_or_build(recipe: Recipe, model_args: dict, plan: distribute.Plan, run: Run):
    """The model a run trains: reloaded from the state it resumes, else built
    and compiled, in ``plan``'s scope and from the recipe's seed."""
    seed = recipe.fit["seed"]
    keras.utils.set_random_seed(seed)
    if plan.strategy == "model-parallel":
        distribute.model_parallel(plan, lambda: start_model(recipe, model_args))
        keras.utils.set_random_seed(seed)
    with plan.scope():
        if run.progress:
            return load_state_model(run)
        return build_model(recipe, model_args, plan.replicas)


def start_model(recipe: Recipe, model_args: dict):
    """The recipe's model, or for fine-tuning the source with a new head."""
    ft = recipe.finetune
    if ft["source"] is None:
        return registry.create_model(recipe.model["name"], **model_args, compile=False)
    source = ft["source"]
    if source in registry.list_models():
        source = registry.create_model(source, compile=False)
    width = model_args.get("num_classes", model_args.get("num_outputs"))
    return finetune(
        source,
        num_classes=width,
        task=model_args.get("task"),
        truncate=ft["truncate"],
        freeze="base" if head_epochs(recipe) else ft["freeze"],
        batchnorm=ft["batchnorm"],
        input_shape=model_args.get("input_shape"),
        compile=False,
    )


def build_model(recipe: Recipe, model_args: dict, replicas: int = 1):
    """The recipe's model (with in-model augmentation), compiled for its first stage."""
    model = start_model(recipe, model_args)
    aug = recipe.augment
    if aug["ops"] and aug["placement"] == "model":
        model = augment.in_model(model, aug["ops"], seed=recipe.fit["seed"])
    compile_recipe_model(recipe, model, model_args, learning_rates(recipe, replicas)[0])
    return model


def optimizer_arguments(recipe: Recipe) -> dict:
    """The keyword arguments of the recipe's optimizer beside its learning
    rate: ``compile.optimizer_options`` and ``compile.weight_decay``. A run's
    optimizer and every trial's of a search get them."""
    arguments = dict(recipe.compile["optimizer_options"] or {})
    if recipe.compile["weight_decay"] is not None:
        arguments["weight_decay"] = recipe.compile["weight_decay"]
    return arguments


def compile_recipe_model(recipe: Recipe, model, model_args: dict, learning_rate):
    """Compiles ``model`` with the recipe's optimizer, task and compile settings."""
    comp = recipe.compile
    optimizer = tasks.build_optimizer(
        comp["optimizer"],
        learning_rate,
        optimizer_arguments(recipe),
        name="compile.optimizer_options",
    )
    task = model_args.get("task", "multiclass")
    tasks.compile_model(
        model,
        task=task,
        optimizer=optimizer,
        label_format="one_hot" if mixes_labels(recipe) else recipe.data["label_format"],
        jit_compile=comp["jit_compile"],
        steps_per_execution=comp["steps_per_execution"],
    )
    return model


def stages(recipe: Recipe, initial_epoch: int) -> list[tuple[int, bool]]:
    """``(last epoch, unfreeze first)`` of each training stage still to run.

    One stage, unless fine-tuning in two: the head alone up to
    ``finetune.head_epochs``, then everything. A run resumed in the second
    stage is already unfrozen (the saved model says so).
    """
    epochs = recipe.fit["epochs"]
    head = head_epochs(recipe)
    if initial_epoch >= epochs:
        return []
    if not head or initial_epoch >= head or head >= epochs:
        return [(epochs, False)]
    return [(head, False), (epochs, True)]


def finetune_lines(recipe: Recipe, model) -> list[str]:
    """What a fine-tuning run says first: its source, what is frozen, and
    each stage's epochs and learning rate (empty when not fine-tuning)."""
    ft = recipe.finetune
    if ft["source"] is None:
        return []
    path = source_file(ft["source"])
    what = (
        f"{path.name}, sha256 {ft['source_sha256'][:12]}" if ft["source_sha256"] else ""
    )
    lines = [f"fine-tuning from {ft['source']}" + (f" ({what})" if what else "")]
    frozen, trainable = frozen_layers(model)
    lines.append(
        f"frozen: {len(frozen)} of {len(frozen) + len(trainable)} layers with "
        f"weights ({_names(frozen)}); training: {_names(trainable)}"
    )
    first, second = learning_rates(recipe)
    epochs, head = recipe.fit["epochs"], head_epochs(recipe)
    if head and head < epochs:
        keep = (
            "batch normalization stays frozen"
            if ft["batchnorm"] == "frozen"
            else ("batch normalization trains too")
        )
        lines.append(
            f"stage 1: epochs 1-{head}, the new head alone, learning rate {first:g}"
        )
        lines.append(
            f"stage 2: epochs {head + 1}-{epochs}, "
            f"{unfreeze_words(ft['unfreeze'])} ({keep}), learning rate {second:g}"
        )
    else:
        lines.append(f"one stage: epochs 1-{epochs}, learning rate {first:g}")
    return lines


def _names(names: list[str], most: int = 6) -> str:
    if not names:
        return "none"
    if len(names) <= most:
        return ", ".join(names)
    hidden = len(names) - (most - 1)
    return ", ".join(names[: most - 2]) + f", ... ({hidden} more), {names[-1]}"


def unfreeze_rule(value: Any) -> dict[str, Any]:
    """`annzoo.finetune.unfreeze`'s arguments for ``finetune.unfreeze``."""
    if value == "all":
        return {}
    return {"fraction": value} if isinstance(value, float) else {"count": value}


def unfreeze_words(value: Any) -> str:
    """What the second stage unfreezes, for the log."""
    if value == "all":
        return "every layer unfrozen"
    if isinstance(value, float):
        return f"the top {value:.0%} of the layers unfrozen"
    return f"the last {value} layers unfrozen"

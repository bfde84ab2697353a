"""Building and compiling a recipe's model, its learning rates and stages."""

from __future__ import annotations

import keras

from annzoo import augment, registry, tasks
from annzoo.finetune import finetune
from annzoo.training import distribute
from annzoo.training.inputs import mixes_labels
from annzoo.training.recipe import Recipe
from annzoo.training.rundir import Run, load_state_model

__all__ = [
    "build_model",
    "compile_recipe_model",
    "for_plan",
    "learning_rates",
    "load_or_build",
    "stages",
    "start_model",
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


def learning_rates(
    recipe: Recipe, replicas: int = 1
) -> tuple[float | None, float | None]:
    """The learning rate of the first stage and, for fine-tuning, the reduced one.

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
    return (rate, reduced) if ft["head_epochs"] else (reduced, reduced)


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
        freeze="base" if ft["head_epochs"] else ft["freeze"],
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


def compile_recipe_model(recipe: Recipe, model, model_args: dict, learning_rate):
    """Compiles ``model`` with the recipe's optimizer, task and compile settings."""
    comp = recipe.compile
    optimizer_args = {}
    if comp["weight_decay"] is not None:
        optimizer_args["weight_decay"] = comp["weight_decay"]
    optimizer = tasks.get_optimizer(comp["optimizer"], learning_rate, **optimizer_args)
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
    head = recipe.finetune["head_epochs"] if recipe.finetune["source"] else None
    if initial_epoch >= epochs:
        return []
    if not head or initial_epoch >= head:
        return [(epochs, False)]
    return [(head, False), (epochs, True)]

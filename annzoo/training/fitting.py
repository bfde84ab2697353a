"""Fitting a run's model: its stages, resumable callbacks and NaN post-mortem."""

from __future__ import annotations

import hashlib

import numpy as np

from annzoo.errors import AnnzooError
from annzoo.finetune import unfreeze
from annzoo.speedups import host_initialization
from annzoo.tasks import build_fit_state
from annzoo.training import distribute
from annzoo.training.build import (
    compile_recipe_model,
    head_epochs,
    learning_rates,
    stages,
    unfreeze_rule,
    unfreeze_words,
)
from annzoo.training.callbacks import (
    BestModelCheckpoint,
    Bundle,
    EpochOrder,
    build_callbacks,
)
from annzoo.training.inputs import fit_steps
from annzoo.training.recipe import Recipe
from annzoo.training.rundir import Run, read_json

__all__ = ["fit", "weights_digest"]


def fit(
    recipe: Recipe,
    model,
    model_args: dict,
    plan: distribute.Plan,
    run: Run,
    inputs: tuple,
    *,
    verbose: int,
) -> tuple[dict[str, list[float]], BestModelCheckpoint | None]:
    """Trains the epochs ``run`` has left; returns the whole run's history
    and the best-model checkpoint (None when the recipe keeps none).

    Raises:
        AnnzooError: the loss became NaN or infinite (see `_check_finite`).
    """
    bundle = build_callbacks(recipe, run.path, progress=run.progress)
    progress = run.progress or {}
    history = {k: list(v) for k, v in progress.get("history", {}).items()}
    with plan.scope():
        history, _, _ = _fit_stages(
            recipe,
            model,
            model_args,
            plan,
            bundle,
            inputs,
            history=history,
            stopped=bool(progress.get("stopped")),
            initial_epoch=run.initial_epoch,
            verbose=verbose,
        )
    _check_finite(bundle, run)
    if plan.num_processes > 1:
        # Every process prints the same digest when the replicas stayed in step.
        print(
            f"annzoo: process {plan.process_id}: weights sha256 "
            f"{weights_digest(model)}",
            flush=True,
        )
    return history, bundle.checkpoint


def _fit_stages(
    recipe: Recipe,
    model,
    model_args: dict,
    plan: distribute.Plan,
    bundle: Bundle,
    inputs: tuple,
    *,
    history: dict,
    stopped: bool,
    initial_epoch: int,
    verbose: int,
) -> tuple[dict, bool, int]:
    """Runs the training stages left; returns (history, stopped, last epoch)."""
    train_input, val_input = inputs
    for end, unfreeze_first in stages(recipe, initial_epoch):
        if stopped:
            break
        if unfreeze_first:
            # Second fine-tuning stage: the whole network, at the reduced rate
            # (a fresh optimizer: the head's moments do not fit the base).
            unfreeze(
                model,
                **unfreeze_rule(recipe.finetune["unfreeze"]),
                batchnorm=recipe.finetune["batchnorm"],
            )
            compile_recipe_model(
                recipe, model, model_args, learning_rates(recipe, plan.replicas)[1]
            )
            if verbose:
                what = unfreeze_words(recipe.finetune["unfreeze"])
                print(f"annzoo: epoch {initial_epoch + 1}: {what}", flush=True)
        head = head_epochs(recipe)
        head_only = bool(head) and end <= head and end < recipe.fit["epochs"]
        epoch_order = EpochOrder(train_input, recipe.fit["seed"], extra=[train_input])
        callbacks = [epoch_order] + [
            c
            for c in bundle.callbacks
            if not (head_only and c is bundle.parts.get("early_stopping"))
        ]
        steps = fit_steps(recipe, model, train_input)
        build_fit_state(model, train_input)  # the step traced once, not twice
        with host_initialization():  # JAX: optimizer slots filled from NumPy
            fit_history = model.fit(
                train_input,
                epochs=end,
                initial_epoch=initial_epoch,
                steps_per_epoch=steps,
                validation_data=val_input,
                shuffle=False,  # the input pipeline shuffles, seeded per epoch
                callbacks=callbacks,
                verbose=verbose,
            )
        for key, values in fit_history.history.items():
            history.setdefault(key, []).extend(float(v) for v in values)
        initial_epoch = end
        stopped = bool(model.stop_training)
    return history, stopped, initial_epoch


def _check_finite(bundle: Bundle, run: Run) -> None:
    """The NaN post-mortem: where the loss stopped being finite, and what the
    run directory still holds (the NaN guard saved no NaN weights)."""
    if bundle.nan_guard is None or bundle.nan_guard.nan_at is None:
        return
    epoch, step = bundle.nan_guard.nan_at
    where = f"epoch {epoch}, step {step}" if step else f"epoch {epoch}"
    saved = read_json(run.state_dir / "progress.json")
    kept = (
        f"the state after epoch {saved['epoch']} in {run.path} is intact and a "
        "rerun resumes from it"
        if saved and saved.get("epoch")
        else "no epoch finished cleanly, so nothing was saved"
    )
    raise AnnzooError(
        f"Training stopped: the loss became NaN or infinite at {where}. No NaN "
        f"weights were saved; {kept}. Lower `compile.learning_rate` or check "
        "the data for extreme values."
    )


def weights_digest(model) -> str:
    """SHA-256 over a model's weights in order (equal models, equal digests)."""
    digest = hashlib.sha256()
    for weight in model.weights:
        digest.update(np.ascontiguousarray(np.asarray(weight.value)).tobytes())
    return digest.hexdigest()[:16]

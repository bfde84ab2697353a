"""`annzoo.tune`: a keras-tuner search over a recipe's model, resumable and safe.

The search directory ``OUTPUT_DIR/NAME/`` holds:

===========================  ===================================================
``search.json``              what the search is: model, dataset, space,
                             objective, tuner, seed, epochs; a rerun must match
``search/``                  keras-tuner's project (oracle, trials, best-epoch
                             weights), written atomically by annzoo (the
                             ``tuner_io`` speedup, `annzoo.speedups`)
``stats/``                   per-trial timings and resident memory
``trials.csv``               one row per trial: status, objective, the active
                             hyperparameters, epochs, wall and training time
``trials.png``               the objective per trial and against each
                             hyperparameter
``best_hyperparameters.json`` the best trial's hyperparameters and score
``retrained/``               with ``retrain=True``: the best configuration
                             trained again on train + validation, a normal run
===========================  ===================================================

Rerunning the same search continues it (keras-tuner reloads its oracle; a trial
cut short by a crash runs again); a search whose definition changed is refused
unless ``overwrite=True`` (`annzoo.tuning.directory`).

The search is split by concern: this module is the flow of `tune`;
`annzoo.tuning.recipe_model` feeds and compiles a recipe's trials,
`annzoo.tuning.trials` seeds, counts and measures them,
`annzoo.tuning.directory` decides what may resume, and
`annzoo.tuning.memory` manages the process's memory when asked to.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
from pathlib import Path
from typing import Any

import keras
import keras_tuner

from annzoo import io as aio
from annzoo import plots, tasks
from annzoo._checks import (
    check_choice,
    check_non_negative_int,
    check_output_path,
    check_positive_int,
)
from annzoo.errors import AnnzooError
from annzoo.speedups import atomic_keras_tuner, compile_cache
from annzoo.training import inputs, runner, sequences
from annzoo.training.callbacks import NaNGuard, _mode
from annzoo.training.recipe import Recipe, find_recipe, load_recipe
from annzoo.tuning import directory, memory, reports, trials
from annzoo.tuning.directory import search_definition
from annzoo.tuning.hypermodel import model_task
from annzoo.tuning.recipe_model import recipe_hypermodel
from annzoo.tuning.spaces import default_space, describe_space

__all__ = ["TUNERS", "TuneResult", "tune", "search_definition"]

TUNERS = {
    "random": "RandomSearch",
    "hyperband": "Hyperband",
    "bayesian": "BayesianOptimization",
    "grid": "GridSearch",
}
PROJECT = "search"


@dataclasses.dataclass
class TuneResult:
    """The outcome of `tune`."""

    run_dir: Path
    best_hyperparameters: dict[str, Any]
    best_score: float | None
    trials: list[dict[str, Any]]
    completed: int
    retrained: Any = None  # a RunResult with retrain=True


def _as_recipe(recipe_or_name: Any) -> Recipe:
    if isinstance(recipe_or_name, Recipe):
        return recipe_or_name
    if isinstance(recipe_or_name, dict):
        return Recipe.from_dict(recipe_or_name)
    if isinstance(recipe_or_name, str | os.PathLike):
        return load_recipe(find_recipe(str(recipe_or_name)))
    raise AnnzooError(
        "`recipe` must be a Recipe, its dict, a recipe file or the name of one in "
        f"recipes/. Received: {type(recipe_or_name).__name__}"
    )


def _check_settings(tuner, max_trials, objective, seed, mixed_precision, epochs):
    check_choice("tuner", tuner, TUNERS)
    check_positive_int("max_trials", max_trials)
    check_non_negative_int("seed", seed)
    if epochs is not None:
        check_positive_int("epochs", epochs)
    if objective is not None and (not isinstance(objective, str) or not objective):
        raise AnnzooError(
            "`objective` must be a metric name such as 'val_loss' or "
            f"'val_accuracy'. Received: objective={objective!r}"
        )
    tasks.check_mixed_precision("mixed_precision", mixed_precision)


def tune(
    recipe_or_name: Any,
    *,
    tuner: str = "random",
    max_trials: int = 10,
    objective: str | None = None,
    seed: int = 0,
    epochs: int | None = None,
    output_dir: str | os.PathLike = "tuning",
    overwrite: bool = False,
    retrain: bool = False,
    mixed_precision: str | None = None,
    verbose: int = 1,
    manage_memory: bool = False,
) -> TuneResult:
    """Searches a recipe's model hyperparameters with keras-tuner.

    The space is the family's default space (`annzoo.tuning.default_space`)
    with the recipe's ``search_space`` applied over it; the recipe's other
    ``model`` arguments and the sizes its dataset determines stay fixed. Each
    trial starts a fresh Keras session, stops early on the recipe's
    ``early_stopping`` patience and trains with the recipe's epochs as a
    maximum. Trials compile with XLA on the JAX backend and on a TensorFlow
    GPU (except LSTM/GRU, said once).

    Args:
        recipe_or_name: a `Recipe`, its dict, a recipe file or a recipe name.
        tuner: ``"random"``, ``"hyperband"``, ``"bayesian"`` or ``"grid"``.
        max_trials: trials to complete; rerun with more to extend a search
            (Hyperband ignores it: its budget is ``epochs`` per bracket, one
            iteration).
        objective: the metric to optimize; defaults to the recipe's
            ``callbacks.monitor`` (minimized for losses, maximized for
            accuracy-like names), and for a GAN to ``val_fid``, the Frechet
            distance of its samples in a classifier's features, minimized
            (`annzoo.tuning.fid`; the recipe's validation split is then held
            out even where its runs merge it into training).
        seed: seeds the tuner, so the same seed gives the same trial sequence.
        epochs: maximum epochs per trial; defaults to the recipe's.
        output_dir: parent of the search directory ``OUTPUT_DIR/NAME``.
        overwrite: start again even if a different search is in the directory.
        retrain: afterwards, train the best configuration on train + validation
            for the best trial's epochs, evaluate it on test and save a normal
            run directory in ``OUTPUT_DIR/NAME/retrained``.
        mixed_precision: ``"bfloat16"`` or ``"float16"`` compute (for
            accelerators) of the trials and the retrained model; None: the
            recipe's ``compile.mixed_precision``.
        verbose: 0 prints nothing; 1 a line per trial (its number and the
            search's progress, score, epochs, time and the hyperparameters
            that vary) and the trials table (`annzoo.tuning.reports`); 2 also
            keras-tuner's display and Keras' per-epoch progress.
        manage_memory: manage this process's memory for the search, for a
            process that runs nothing else (``annzoo tune`` passes True): the
            heap older than the search is frozen out of the garbage collector
            for its duration, each finished trial's garbage is collected and
            glibc's freed pages handed back, and on JAX the compiled programs
            are cleared once resident memory has grown
            ``annzoo.tuning.memory.JAX_CACHE_BUDGET_MB`` (see
            `annzoo.tuning.memory`). These act on the whole process, so the
            default leaves its memory to Python, JAX and keras-tuner.

    Returns:
        A `TuneResult`.
    """
    recipe = _as_recipe(recipe_or_name).validate()
    _check_settings(tuner, max_trials, objective, seed, mixed_precision, epochs)
    check_output_path("output_dir", output_dir, directory=True)
    precision = mixed_precision or recipe.compile["mixed_precision"]
    epochs = epochs or recipe.fit["epochs"]

    # The splits and checks `annzoo train` would use, so a search is refused
    # on exactly the data a run would be.
    splits, model_args = inputs.prepare(_held_out_validation(recipe))
    sizes = sequences.dataset_arguments(recipe.model["name"], splits["train"])
    space = dict(recipe.search_space or {})
    tuned = set(default_space(recipe.model["name"], **sizes)) | set(space)
    fixed = {k: v for k, v in model_args.items() if k in sizes or k not in tuned}
    if recipe.compile["optimizer_options"] and "optimizer" not in space:
        # The options are those of compile.optimizer: the trials keep it
        # rather than draw another (a search_space naming `optimizer` draws
        # it, and each choice must then take the options).
        fixed["optimizer"] = recipe.compile["optimizer"]
    hypermodel = recipe_hypermodel(recipe, splits, fixed, space or None)
    # A GAN's default is its val_fid (`annzoo.tuning.fid`), not its monitor.
    objective = (
        objective or hypermodel.default_objective() or recipe.callbacks["monitor"]
    )
    hypermodel.check_objective(objective)
    run_dir = Path(output_dir) / recipe.name
    definition = search_definition(
        recipe,
        fixed,
        describe_space(hypermodel.space),
        # Not max_trials: raising it on a rerun extends the same search.
        {"objective": objective, "tuner": tuner, "seed": seed, "epochs": epochs,
         "mixed_precision": precision},
    )  # fmt: skip
    # One writer per search directory, from before anything in it is read.
    with directory.claim_search(run_dir):
        search_file = run_dir / "search.json"
        if overwrite:
            directory.empty_directory(run_dir)
        directory.check_same_search(search_file, definition)
        directory.check_tuner_files(run_dir / PROJECT)
        directory.check_search_files(run_dir, run_dir / PROJECT)
        run_dir.mkdir(parents=True, exist_ok=True)
        aio.clean_temporaries(run_dir)
        if not search_file.exists():
            aio.write_json(search_file, definition)

        stats_dir = run_dir / "stats"
        record: dict[str, Any] = {}
        tuner_class = trials.tuner_class(
            getattr(keras_tuner, TUNERS[tuner]), stats_dir, record, seed, manage_memory
        )
        if verbose:
            tuner_class = reports.reporting_tuner(
                tuner_class,
                hypermodel=hypermodel,
                stats_dir=stats_dir,
                total=None if tuner == "hyperband" else max_trials,
            )
        options: dict[str, Any] = dict(
            hypermodel=hypermodel,
            objective=keras_tuner.Objective(objective, _mode(objective)),
            directory=str(run_dir),
            project_name=PROJECT,
            # keras-tuner takes a seed of 0 for "none" and draws a random one.
            seed=seed + 1,
            overwrite=False,
        )
        if tuner == "hyperband":
            options.update(max_epochs=epochs, hyperband_iterations=1)
        else:
            options.update(max_trials=max_trials)
        callbacks = [trials.EpochTimer(record)]
        patience = (recipe.callbacks["early_stopping"] or {}).get("patience")
        if patience is not None:
            callbacks.append(
                keras.callbacks.EarlyStopping(
                    monitor=objective, mode=_mode(objective), patience=patience
                )
            )
        if recipe.callbacks["terminate_on_nan"]:
            callbacks.append(NaNGuard())
        if verbose:
            print(
                f"annzoo: tuning {recipe.model['name']!r} on "
                f"{recipe.data['dataset']!r} with {tuner} search, {max_trials} "
                f"trials, objective {objective}\nannzoo: search directory {run_dir}",
                flush=True,
            )
        # The compilation cache serves the trials and the retraining (which then
        # takes the best trial's compiled step).
        heap = memory.frozen_heap() if manage_memory else contextlib.nullcontext()
        with compile_cache():
            files = atomic_keras_tuner(aio.write_text, aio.atomic_path)
            with files, tasks.mixed_precision(precision), heap:
                engine = tuner_class(**options)
                # keras-tuner's display and Keras' epoch lines at verbose=2 only.
                engine.search(
                    epochs=epochs, callbacks=callbacks, verbose=max(verbose - 1, 0)
                )
            if os.environ.get("KERASTUNER_TUNER_ID", "chief") != "chief":
                # A worker of a distributed search: the chief reports.
                return TuneResult(run_dir, {}, None, [], 0)
            rows = reports.collect(engine, hypermodel, stats_dir)
            completed = sum(t["status"] == "COMPLETED" for t in rows)
            best = reports.best(rows, _mode(objective))
            reports.write(run_dir, rows, best, objective, verbose=verbose)
            plots.plot_trials(rows, run_dir / "trials.png", objective=objective)
            result = TuneResult(
                run_dir=run_dir,
                best_hyperparameters=best["hyperparameters"] if best else {},
                best_score=best["score"] if best else None,
                trials=rows,
                completed=completed,
            )
            if retrain and best:
                result.retrained = _retrain(
                    recipe,
                    hypermodel,
                    engine,
                    best,
                    run_dir,
                    min(verbose, 1),
                    precision,
                )
            return result


def _held_out_validation(recipe: Recipe) -> Recipe:
    """``recipe``, or for a GAN that trains on train + validation, the same
    recipe keeping its validation split apart: a search scores a GAN's samples
    against held-out images (``val_fid``), which a run does not need."""
    task = model_task(recipe.model["name"], recipe.model)
    if task != "adversarial" or not recipe.data["merge_validation"]:
        return recipe
    data = recipe.to_dict()
    data["data"]["merge_validation"] = False
    return Recipe.from_dict(data)


def _retrain(recipe, hypermodel, engine, best, run_dir, verbose, precision):
    """The best configuration trained on train + validation, as a normal run."""
    trial = engine.oracle.get_trial(best["trial_id"])
    arguments = hypermodel.arguments(trial.hyperparameters)
    epochs = max(1, int(best.get("best_step") or 0) + 1)
    data = recipe.to_dict()
    data["name"] = "retrained"
    data["model"] = {"name": recipe.model["name"], **hypermodel.fixed,
                     **arguments["model"]}  # fmt: skip
    data["compile"].update(arguments["compile"], mixed_precision=precision)
    data["data"].update(arguments["data"], merge_validation=True)
    data["fit"]["epochs"] = epochs
    data["callbacks"].update(monitor="loss", early_stopping=None, reduce_lr=None)
    data["search_space"] = None
    retrained = Recipe.from_dict(json.loads(json.dumps(data, default=list)))
    return runner.train(retrained, output_dir=run_dir, verbose=verbose, resume=True)

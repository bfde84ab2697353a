"""Running a recipe: model + dataset + settings -> a self-describing run directory.

`train` is the list of steps; each concern lives in its own module:
`annzoo.training.inputs` (data and input pipelines), `annzoo.training.checks`
(data against model and recipe), `annzoo.training.rundir` (the run directory
and resuming, with the table of the files a run writes),
`annzoo.training.build` (model, compile, stages), `annzoo.training.fitting`
(fit and NaN post-mortem) and `annzoo.training.report` (test, plots, results).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from annzoo import tasks
from annzoo._checks import check_output_path
from annzoo.training import build, checks, distribute, fitting, inputs, report, rundir
from annzoo.training.recipe import Recipe

__all__ = ["RunResult", "train"]


@dataclass
class RunResult:
    """What `train` returns (``run_dir`` is None in processes other than 0)."""

    run_dir: Path | None
    test_metrics: dict[str, float]
    best_epoch: int | None
    epochs_run: int
    wall_time_s: float
    history: dict[str, list[float]]
    resumed_from: int = 0


def train(
    recipe: Recipe | dict,
    *,
    output_dir: str | Path = "runs",
    verbose: int = 1,
    resume: bool = True,
) -> RunResult:
    """Runs ``recipe`` and writes its run directory (see `annzoo.training.rundir`).

    Everything is checked before the first step: a bad field or bad data
    raises :class:`annzoo.AnnzooError` naming it, and nothing is written.

    Args:
        recipe: a :class:`Recipe` (or its dict form).
        output_dir: parent of the run directory.
        verbose: 1 shows Keras' progress bar, 2 one line per epoch, 0 nothing.
        resume: continue an unfinished run of the same recipe in
            ``output_dir/NAME`` instead of starting a new directory.

    Returns:
        A :class:`RunResult`.
    """
    if isinstance(recipe, dict):
        recipe = Recipe.from_dict(recipe)
    recipe.validate()
    check_output_path("output_dir", output_dir, directory=True)
    # The whole run (build or reload, fit, test) in the recipe's precision.
    with tasks.mixed_precision(recipe.compile["mixed_precision"]):
        return _train(recipe, output_dir=output_dir, verbose=verbose, resume=resume)


def _train(recipe: Recipe, *, output_dir, verbose: int, resume: bool) -> RunResult:
    started = time.perf_counter()
    plan = distribute.plan(recipe.distribute)
    recipe = build.with_source_checksum(build.for_plan(recipe, plan))
    splits, model_args = inputs.prepare(recipe)
    checks.check_batches(recipe, len(splits["train"]), plan)
    checks.check_monitor(recipe, model_args)
    resolved = rundir.resolved_recipe(recipe, model_args, plan)
    run = rundir.open_run(output_dir, recipe.name, resolved, resume=resume, plan=plan)
    try:  # the run directory is this process's (locked) until the run ends
        return _run(recipe, plan, splits, model_args, resolved, run, started, verbose)
    finally:
        run.release()


def _run(recipe, plan, splits, model_args, resolved, run, started, verbose):
    """The steps of `_train` once its run directory is chosen and locked."""
    model = build.load_or_build(recipe, model_args, plan, run)
    run = rundir.create(run, plan, resolved, model, splits["train"])
    fit_inputs = inputs.fit_inputs(recipe, splits, model, plan)
    if verbose:
        report.announce(recipe, splits, plan, run)
        for line in build.finetune_lines(recipe, model):
            print(f"annzoo: {line}", flush=True)
    history, checkpoint = fitting.fit(
        recipe, model, model_args, plan, run, fit_inputs, verbose=verbose
    )
    best_epoch = checkpoint.best_epoch if checkpoint else None
    if not plan.chief:
        # Training is over for the other processes: process 0 alone saves,
        # tests and reports, on its own devices.
        rundir.finish_other(run)
        return RunResult(
            run_dir=None,
            test_metrics={},
            best_epoch=best_epoch,
            epochs_run=len(history.get("loss", [])),
            wall_time_s=time.perf_counter() - started,
            history=history,
            resumed_from=run.initial_epoch,
        )
    model = report.best_model(
        model, run.path, plan, checkpoint, recipe.callbacks["monitor"]
    )
    test_metrics, test_input = report.test(recipe, model, splits)
    wall = time.perf_counter() - started + run.earlier_wall_time
    results = report.write_results(
        recipe,
        model,
        splits,
        run.path,
        test_metrics=test_metrics,
        test_input=test_input,
        history=history,
        checkpoint=checkpoint,
        wall_time_s=wall,
    )
    rundir.finish(run)
    return RunResult(
        run_dir=run.path,
        test_metrics=results["test"],
        best_epoch=best_epoch,
        epochs_run=results["epochs_run"],
        wall_time_s=wall,
        history=history,
        resumed_from=run.initial_epoch,
    )

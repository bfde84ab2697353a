"""What a run reports: its final and best models, test metrics, plots, results."""

from __future__ import annotations

import platform
import sys
from pathlib import Path
from typing import Any

import keras
import numpy as np

from annzoo import datasets, plots, registry
from annzoo import io as aio
from annzoo._checks import check_choice
from annzoo._version import __version__
from annzoo.errors import AnnzooError
from annzoo.tasks import get_task
from annzoo.training import distribute, generative, sequences
from annzoo.training.callbacks import BestModelCheckpoint
from annzoo.training.inputs import (
    input_pipeline,
    label_classes,
    load_splits,
    training_splits,
)
from annzoo.training.recipe import Recipe, load_recipe
from annzoo.training.rundir import Run

__all__ = [
    "announce",
    "best_model",
    "evaluate_run",
    "test",
    "versions",
    "write_results",
]


def announce(recipe: Recipe, splits: dict, plan: distribute.Plan, run: Run) -> None:
    """One line: what trains on what, how, and where the run directory is."""
    sizes = " / ".join(f"{len(d)} {s}" for s, d in splits.items())
    what = (
        f"resuming after epoch {run.initial_epoch}" if run.progress else "run directory"
    )
    print(
        f"annzoo: {recipe.name}: {recipe.model['name']!r} on "
        f"{recipe.data['dataset']!r} ({sizes}), "
        f"{plan.describe(recipe.data['batch_size'])}, "
        f"{recipe.fit['epochs']} epochs; {what} {run.path}",
        flush=True,
    )


def best_model(
    model,
    run_dir: Path,
    plan: distribute.Plan,
    checkpoint: BestModelCheckpoint | None,
    monitor: str,
):
    """Saves ``final.keras``; returns the model to test, at its best epoch's
    weights when the recipe keeps a best checkpoint.

    Raises:
        AnnzooError: no epoch gave a finite ``monitor`` (nothing is best).
    """
    aio.save_model(model, run_dir / "final.keras")
    if plan.distribution is not None:
        # Variables laid out over the job's devices: test a copy on this
        # process's devices alone (outside the distribution).
        model = keras.saving.load_model(run_dir / "final.keras")
    if checkpoint is not None and checkpoint.best_epoch is None:
        raise AnnzooError(
            f"Training produced no finite {monitor!r} in any "
            f"epoch; nothing was saved as best. Run directory: {run_dir}"
        )
    if checkpoint is not None:
        # The best checkpoint is the source of truth for restoring best weights.
        model.load_weights(run_dir / "best.keras")
    return model


def test(recipe: Recipe, model, splits: dict) -> tuple[dict[str, float], Any]:
    """The model's metrics on the test split, and the test pipeline (none
    for a task that `evaluate` does not score: a GAN's measures are its own)."""
    if not get_task(recipe.model.get("task", "multiclass")).evaluates:
        return {}, None
    test_input = input_pipeline(
        recipe,
        splits["test"],
        model,
        training=False,
        num_classes=label_classes(splits["train"]),
    )
    metrics = model.evaluate(test_input, verbose=0, return_dict=True)
    return {k: float(v) for k, v in metrics.items()}, test_input


def write_results(
    recipe: Recipe,
    model,
    splits: dict,
    run_dir: Path,
    *,
    test_metrics: dict[str, float],
    test_input,
    history: dict[str, list[float]],
    checkpoint: BestModelCheckpoint | None,
    wall_time_s: float,
) -> dict[str, Any]:
    """Draws ``curves.png`` (and the task's report: a confusion matrix, or
    the sequence report) and writes ``results.json``; returns the results,
    whose ``"test"`` holds every test metric."""
    best_epoch = checkpoint.best_epoch if checkpoint else None
    plots.plot_curves(
        history,
        run_dir / "curves.png",
        title=f"{recipe.name}: {recipe.model['name']} on {recipe.data['dataset']}",
        best_epoch=best_epoch,
    )
    results: dict[str, Any] = {
        "test": test_metrics,
        "best_epoch": best_epoch,
        "monitor": recipe.callbacks["monitor"],
        "best_value": checkpoint.best if checkpoint else None,
        "epochs_run": len(history.get("loss", [])),
        "wall_time_s": round(wall_time_s, 3),
        "seed": recipe.fit["seed"],
        "params": model.count_params(),
        "versions": versions(),
    }
    train = splits["train"]
    drawn = registry.family_spec(recipe.model["name"]).report
    if set(drawn) & set(generative.DRAWN):
        extra = generative.report(
            model,
            recipe.model.get("task", "multiclass"),
            splits,
            run_dir,
            drawn=drawn,
            title=f"{recipe.name}: {recipe.model['name']}",
            seed=recipe.fit["seed"],
            feed=registry.family_spec(recipe.model["name"]).fit_arrays,
        )
        test_metrics.update(extra.pop("test"))
        results.update(extra)
    elif train.structure != "sample":
        title = f"{recipe.name}: {recipe.model['name']}"
        extra = sequences.report(
            model, splits["test"], run_dir, title=title, drawn=drawn
        )
        test_metrics.update(extra.pop("test"))
        results.update(extra)
    elif get_task(train.task).confusion_matrix and "confusion_matrix" in drawn:
        matrix = _confusion_matrix(model, test_input, splits["test"], train)
        results["confusion_matrix"] = matrix.tolist()
        plots.plot_confusion_matrix(
            matrix,
            run_dir / "confusion.png",
            class_names=train.class_names,
            title=f"{recipe.name}: test split",
        )
    aio.write_json(run_dir / "results.json", results)
    return results


def _confusion_matrix(model, test_input, test, train) -> np.ndarray:
    """Counts of (true class, predicted class) over the test split."""
    probabilities = model.predict(test_input, verbose=0)
    predicted = get_task(train.task).predictions(probabilities)
    labels = test.y.reshape(len(predicted), -1)[:, 0].astype(int)
    n = train.num_classes or 2
    matrix = np.zeros((n, n), dtype=int)
    np.add.at(matrix, (labels, predicted), 1)
    return matrix


def versions() -> dict[str, str]:
    """The versions a run's results were produced with."""
    found = {
        "annzoo": __version__,
        "keras": keras.__version__,
        "backend": keras.backend.backend(),
        "numpy": np.__version__,
        "python": platform.python_version(),
    }
    for module in ("tensorflow", "jax", "torch"):
        if module in sys.modules:
            found[module] = getattr(sys.modules[module], "__version__", "?")
    return found


def evaluate_run(
    run_dir: str | Path, *, split: str = "test", which: str = "best"
) -> dict:
    """Evaluates ``RUN_DIR/best.keras`` (or ``final.keras``) on a split again."""
    run_dir = Path(run_dir)
    recipe = load_recipe(_existing(run_dir / "recipe.json", "RUN_DIR"))
    task = recipe.model.get("task", "multiclass")
    if not get_task(task).evaluates:
        raise AnnzooError(
            "`RUN_DIR` must be a run whose model `evaluate` can score. Received: "
            f"{str(run_dir)!r}, a run of task {task!r}, measured on its samples "
            "instead: see its results.json."
        )
    model_path = _existing(run_dir / f"{which}.keras", "RUN_DIR")
    datasets._base._resolve(recipe.data["dataset"], argument="data.dataset")
    splits = training_splits(
        recipe, sequences.prepare_text(load_splits(recipe), recipe.data["text"])
    )
    if split not in splits:
        check_choice("split", split, splits)
    model = aio.load_model(model_path)
    inputs = input_pipeline(
        recipe,
        splits[split],
        model,
        training=False,
        num_classes=label_classes(splits["train"]),
    )
    return {
        k: float(v)
        for k, v in model.evaluate(inputs, verbose=0, return_dict=True).items()
    }


def _existing(path: Path, argument: str) -> Path:
    if not path.exists():
        raise AnnzooError(
            f"`{argument}` must be an annzoo run directory containing {path.name}. "
            f"Received: {str(path.parent)!r}, where {path.name} does not exist."
        )
    return path

"""Training runs: recipes, the runner and callbacks."""

from annzoo.training.recipe import Recipe, load_recipe
from annzoo.training.runner import (
    RunResult,
    check_labels,
    evaluate_run,
    main,
    resolve_run_dir,
    train,
)

__all__ = [
    "Recipe",
    "RunResult",
    "check_labels",
    "evaluate_run",
    "load_recipe",
    "main",
    "resolve_run_dir",
    "train",
]

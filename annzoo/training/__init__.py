"""Training runs: recipes, the runner and callbacks.

The recipe-script entry point (``main(RECIPE)``) is the command line's:
`annzoo.cli.recipe_main`.
"""

from annzoo.training.checks import check_labels
from annzoo.training.recipe import Recipe, find_recipe, load_recipe
from annzoo.training.report import evaluate_run
from annzoo.training.rundir import resolve_run_dir
from annzoo.training.runner import RunResult, train

__all__ = [
    "Recipe",
    "RunResult",
    "check_labels",
    "evaluate_run",
    "find_recipe",
    "load_recipe",
    "resolve_run_dir",
    "train",
]

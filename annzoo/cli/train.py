"""``annzoo train`` and ``annzoo finetune``: run a recipe."""

from __future__ import annotations

import argparse
from pathlib import Path

from annzoo import recipes
from annzoo.cli import _startup
from annzoo.cli.recipes import add_train_arguments, run_and_report

__all__ = ["add_commands"]


def add_commands(commands) -> None:
    """Adds the ``train`` and ``finetune`` subcommands."""
    train = commands.add_parser(
        "train",
        help="run a recipe",
        description="Run a recipe and write a run directory.",
    )
    train.add_argument(
        "recipe", help="recipe name (`annzoo recipes` lists them) or recipe file"
    )
    add_train_arguments(train)
    train.set_defaults(run=_train)

    finetune = commands.add_parser(
        "finetune",
        help="fine-tune trained weights on a recipe's data",
        description="Train RECIPE starting from SOURCE (a .keras file, a run "
        "directory or a preset such as mobilenetv2_imagenet) in two stages: a "
        "new head on the frozen base at 10x the learning rate for a quarter of "
        "the epochs, then every layer but batch normalization at the recipe's "
        "rate (the recipe's finetune section changes this). The run directory "
        "is NAME-finetune.",
    )
    finetune.add_argument("source", help=".keras file, run directory or preset")
    finetune.add_argument("recipe", help="recipe name or recipe file")
    add_train_arguments(finetune)
    finetune.set_defaults(run=_finetune)


def _train(args: argparse.Namespace) -> int:
    path = recipes.find(args.recipe)
    _startup.quiet_backend(args)
    # Here, not at the top: see annzoo.cli.recipes.STRATEGIES.
    from annzoo.training.recipe import load_recipe

    return run_and_report(load_recipe(path), args)


def _finetune(args: argparse.Namespace) -> int:
    path = recipes.find(args.recipe)
    _startup.quiet_backend(args)
    from annzoo.training.recipe import Recipe, load_recipe

    recipe = load_recipe(path)
    source = args.source
    if Path(source).exists():  # record where the weights came from, exactly
        source = str(Path(source).resolve())
    data = recipe.to_dict()
    data["finetune"]["source"] = source
    # Its own run directory, not one that reads like a rerun of the recipe:
    # NAME-finetune, then NAME-finetune-2... (annzoo.training.rundir).
    if not recipe.name.endswith("-finetune"):
        data["name"] = f"{recipe.name}-finetune"
    return run_and_report(Recipe.from_dict(data), args)

"""The ``annzoo`` command.

    annzoo list [PATTERN]                 registered models with family and size
    annzoo info NAME                      one model's description and reference
    annzoo datasets                       the datasets annzoo.datasets.load knows
    annzoo recipes                        the recipes annzoo ships, with results
    annzoo train RECIPE [options]         run a recipe (name, .py, .json or .yaml)
    annzoo evaluate RUN_DIR [--split S]   evaluate a run's best model again
    annzoo predict RUN_DIR INPUT...       predictions for .npy/.npz/.csv/images
    annzoo predict RUN_DIR --text TEXT    translate, tag or classify raw text
    annzoo tune RECIPE [--max-trials N]   hyperparameter search (resumable)
    annzoo finetune SOURCE RECIPE         fine-tune trained weights on a recipe
    annzoo export RUN_DIR --format F      keras, savedmodel or onnx
    annzoo export RUN_DIR --step          a language model's one-step function
    annzoo generate RUN_DIR [--num N]     images or text from a generative run

Errors print one sentence and exit with status 2; ``--debug`` shows the
traceback. TensorFlow's start-up lines are silenced; ``-v`` shows them.

argparse lives in this package only: `annzoo.cli.models` (list, info,
datasets, recipes), `annzoo.cli.train` (train, finetune), `annzoo.cli.tune`,
`annzoo.cli.runs` (evaluate, predict, export), `annzoo.cli.generate` and
`annzoo.cli.recipes` (the options of a recipe, and `recipe_main`, the entry
point of recipe scripts).

Building the parser, the commands that only read plain data (``--help``,
``list``, ``info``, ``datasets``, ``recipes``) and every usage error import
neither Keras nor a backend (``tests/test_cli_startup.py``): each command
checks its arguments, then starts the backend (`annzoo.cli._startup`) and
imports what it runs.
"""

from __future__ import annotations

import argparse
import sys

from annzoo.cli import generate, models, runs, train, tune
from annzoo.cli.recipes import recipe_main, script_recipe
from annzoo.errors import AnnzooError

__all__ = ["build_parser", "main", "recipe_main", "script_recipe"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="annzoo",
        description=__doc__.split("\n\n")[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    parser.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        help="show the backend's start-up and log lines (TensorFlow, absl)",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    models.add_commands(commands)
    train.add_commands(commands)
    tune.add_commands(commands)
    runs.add_commands(commands)
    generate.add_commands(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    """The ``annzoo`` command's entry point; returns the exit status."""
    args = build_parser().parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    try:
        status = args.run(args)
    except AnnzooError as error:
        if args.debug:
            raise
        print(f"annzoo: error: {error}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `annzoo list | head`
        sys.stderr.close()
        return 0
    return int(status or 0)

"""Running a recipe from the command line: its options, and recipe scripts.

``annzoo train``, ``annzoo finetune`` and ``annzoo tune`` take the options
`add_recipe_arguments` and `add_train_arguments` define, and so does every
recipe script, whose ``if __name__ == "__main__"`` block calls `recipe_main`
(``recipes/NAME.py`` in a source checkout load the recipe annzoo ships with
`script_recipe`, which starts the backend as quietly as ``annzoo train``)::

    from annzoo.cli import recipe_main, script_recipe

    RECIPE = script_recipe("digits_cnn", __name__)

    if __name__ == "__main__":
        sys.exit(recipe_main(RECIPE))
"""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from annzoo._checks import check_output_path
from annzoo.errors import AnnzooError

if TYPE_CHECKING:
    from annzoo.training.recipe import Recipe

# annzoo.training is imported by the functions that train, not here: building
# the parser and reporting a usage error must not import Keras
# (tests/test_cli_startup.py). Hence also this copy of
# annzoo.training.distribute.STRATEGIES, which a test keeps equal to it.
STRATEGIES = ("auto", "none", "mirrored", "data-parallel", "model-parallel")

__all__ = [
    "add_recipe_arguments",
    "add_train_arguments",
    "apply_arguments",
    "recipe_main",
    "run_and_report",
    "script_recipe",
]


def add_recipe_arguments(parser: argparse.ArgumentParser) -> None:
    """The options that change a recipe (`apply_arguments`), and --debug."""
    parser.add_argument("--epochs", type=int, help="maximum number of epochs")
    parser.add_argument("--batch-size", type=int, help="samples per training step")
    parser.add_argument("--seed", type=int, help="seed for split, weights, shuffling")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="SECTION.FIELD=VALUE",
        help="override any recipe field, e.g. --set model.dropout=0.3 (repeatable)",
    )
    # SUPPRESS: `annzoo --debug train ...` must not be reset by the subcommand.
    parser.add_argument(
        "--debug",
        action="store_true",
        default=argparse.SUPPRESS,
        help="full tracebacks on errors",
    )
    parser.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        default=argparse.SUPPRESS,
        help="show the backend's start-up and log lines (TensorFlow, absl)",
    )


def add_train_arguments(parser: argparse.ArgumentParser) -> None:
    """`add_recipe_arguments`, and where and how the run trains."""
    add_recipe_arguments(parser)
    parser.add_argument(
        "--output-dir", default="runs", help="parent of run directories"
    )
    parser.add_argument(
        "--no-resume", action="store_true", help="always start a new run directory"
    )
    parser.add_argument("--quiet", action="store_true", help="no per-epoch progress")
    parser.add_argument(
        "--mixed-precision",
        choices=("bfloat16", "float16"),
        help="compute in 16 bits, variables in float32 (accelerators): "
        "compile.mixed_precision",
    )
    group = parser.add_argument_group("several devices or processes")
    group.add_argument(
        "--distribute",
        choices=STRATEGIES,
        help="auto (default): data-parallel when several accelerators are visible",
    )
    group.add_argument(
        "--workers",
        type=int,
        metavar="N",
        help="start N local processes that train as one job (JAX backend)",
    )
    group.add_argument(
        "--coordinator",
        metavar="HOST:PORT",
        help="join a job by hand: process 0's address (with --num-processes, "
        "--process-id)",
    )
    group.add_argument("--num-processes", type=int, metavar="N")
    group.add_argument("--process-id", type=int, metavar="I")


def apply_arguments(recipe: Recipe, args: argparse.Namespace) -> Recipe:
    """The recipe with the parsed options' overrides applied (not validated)."""
    assignments = list(args.set)
    if args.epochs is not None:
        assignments.append(f"fit.epochs={args.epochs}")
    if args.batch_size is not None:
        assignments.append(f"data.batch_size={args.batch_size}")
    if args.seed is not None:
        assignments.append(f"fit.seed={args.seed}")
    if getattr(args, "distribute", None) is not None:
        assignments.append(f"distribute.strategy={args.distribute}")
    if getattr(args, "mixed_precision", None) is not None:
        assignments.append(f"compile.mixed_precision={args.mixed_precision}")
    return recipe.override(assignments)


def _without_workers(argv: list[str]) -> list[str]:
    kept, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg == "--workers":
            skip = True
        elif not arg.startswith("--workers="):
            kept.append(arg)
    return kept


def _job(args: argparse.Namespace) -> int | None:
    """Starts or joins a job of several processes; an exit status when launched.

    ``--workers N`` runs this same command as N processes (and returns their
    status); ``--coordinator --num-processes --process-id`` joins this one.
    """
    from annzoo.training import distribute, launch  # see STRATEGIES

    workers = getattr(args, "workers", None)
    coordinator = getattr(args, "coordinator", None)
    if workers is not None and coordinator is None:
        if workers < 1:
            raise AnnzooError(
                f"`--workers` must be an integer >= 1. Received: --workers={workers}"
            )
        if workers > 1:
            distribute.check_multi_process_backend()
        command = _without_workers([sys.executable, *sys.orig_argv[1:]])
        return launch.launch(command, workers)
    if coordinator is not None or getattr(args, "num_processes", None) is not None:
        if coordinator is None or args.num_processes is None or args.process_id is None:
            raise AnnzooError(
                "Joining a job needs all of --coordinator HOST:PORT, "
                "--num-processes N and --process-id I. Received: "
                f"--coordinator={coordinator!r}, --num-processes="
                f"{args.num_processes!r}, --process-id={args.process_id!r}"
            )
        distribute.join(coordinator, args.num_processes, args.process_id)
    return None


def run_and_report(
    recipe: Recipe, args: argparse.Namespace, prog: str = "annzoo"
) -> int:
    """Trains from parsed arguments and prints the outcome; returns the exit code."""
    from annzoo.training.runner import train  # see STRATEGIES

    try:
        recipe = apply_arguments(recipe, args).validate()
        check_output_path("--output-dir", args.output_dir, directory=True)
        launched = _job(args)
        if launched is not None:
            return launched
        result = train(
            recipe,
            output_dir=args.output_dir,
            verbose=0 if args.quiet else 1,
            resume=not args.no_resume,
        )
    except AnnzooError as error:
        if getattr(args, "debug", False):
            raise
        print(f"{prog}: error: {error}", file=sys.stderr)
        return 2
    if result.run_dir is None:  # a process other than 0 of a job
        return 0
    metrics = ", ".join(f"{k} {v:.4f}" for k, v in result.test_metrics.items())
    print(f"test: {metrics}")
    print(
        f"best epoch {result.best_epoch} of {result.epochs_run}; "
        f"wall time {result.wall_time_s:.1f} s"
    )
    print(f"run directory: {result.run_dir}")
    return 0


def script_recipe(name: str, module: str) -> Recipe:
    """The recipe annzoo ships as ``name``, for the script ``recipes/NAME.py``.

    Run as a script (``module == "__main__"``), the backend starts first and
    quietly, as for ``annzoo train``, unless the command line asks for its
    lines (``-v``, ``--verbose``, ``--debug``); imported (by a test, by
    `load_recipe`), it only loads the recipe.
    """
    from annzoo import recipes
    from annzoo.cli import _startup

    if module == "__main__" and not {"-v", "--verbose", "--debug"} & set(sys.argv):
        _startup.quiet_backend()
    from annzoo.training.recipe import load_recipe  # see STRATEGIES

    return load_recipe(recipes.path(name))


def recipe_main(
    recipe: Recipe, argv: list[str] | None = None, description: str | None = None
) -> int:
    """Command-line entry point of a recipe script; returns the exit status."""
    from annzoo.cli import _startup

    parser = argparse.ArgumentParser(
        prog=recipe.name,
        description=description or recipe.description,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_train_arguments(parser)
    args = parser.parse_args(argv)
    _startup.quiet_backend(args)
    return run_and_report(recipe, args, prog=recipe.name)

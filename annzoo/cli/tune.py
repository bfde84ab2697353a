"""``annzoo tune``: a resumable hyperparameter search over a recipe."""

from __future__ import annotations

import argparse
import os
import shutil
import textwrap
from pathlib import Path

from annzoo import recipes
from annzoo._checks import check_output_path
from annzoo.cli import _startup
from annzoo.cli.recipes import add_recipe_arguments, apply_arguments
from annzoo.errors import AnnzooError

__all__ = ["add_commands"]


def add_commands(commands) -> None:
    """Adds the ``tune`` subcommand."""
    tune = commands.add_parser(
        "tune",
        help="search a recipe's hyperparameters with keras-tuner",
        description="Hyperparameter search over a recipe's model (keras-tuner); "
        "rerunning the same command resumes it.",
    )
    tune.add_argument("recipe", help="recipe name or recipe file")
    tune.add_argument(
        "--tuner", default="random", choices=("random", "hyperband", "bayesian", "grid")
    )
    tune.add_argument("--max-trials", type=int, default=10)
    tune.add_argument("--objective", help="metric to optimize (default: the monitor)")
    add_recipe_arguments(tune)  # --epochs: per trial; --seed: search and data
    tune.add_argument("--output-dir", default="tuning", help="parent of searches")
    tune.add_argument(
        "--overwrite", action="store_true", help="start again, deleting the search"
    )
    tune.add_argument(
        "--retrain",
        action="store_true",
        help="retrain the best configuration on train + validation, test it",
    )
    tune.add_argument(
        "--mixed-precision", choices=("bfloat16", "float16"), help="accelerators"
    )
    tune.add_argument("--workers", type=int, help="chief + N local worker processes")
    tune.add_argument("--role", choices=("chief", "worker"), help="join a cluster")
    tune.add_argument("--oracle", help="HOST:PORT of the chief (with --role)")
    tune.add_argument("--worker-id", help="unique id of this worker (with --role)")
    tune.add_argument("--quiet", action="store_true", help="no progress output")
    tune.set_defaults(run=_tune)


def _tune(args: argparse.Namespace) -> int:
    path = recipes.find(args.recipe)
    _startup.quiet_backend(args)
    # deferred: annzoo.tuning loads keras-tuner (and the training code Keras),
    # which only this command needs
    from annzoo.training.recipe import load_recipe
    from annzoo.tuning import distributed, reports, tune

    recipe = apply_arguments(load_recipe(path), args)
    if args.batch_size is not None:  # fixed, not searched
        recipe = recipe.override([f"search_space.batch_size={args.batch_size}"])
    recipe = recipe.validate()
    check_output_path("--output-dir", args.output_dir, directory=True)
    if args.workers:
        if args.role:
            raise AnnzooError(
                "`--workers` starts a chief and workers on this machine; `--role` "
                "joins a cluster by hand. Use one. Received both."
            )
        after = args.argv[args.argv.index("tune") + 1 :]
        forwarded = [a for a in after if a != "--overwrite"]
        if "--workers" in forwarded:
            i = forwarded.index("--workers")
            forwarded = forwarded[:i] + forwarded[i + 2 :]
        forwarded = [a for a in forwarded if not a.startswith("--workers=")]
        if args.overwrite:  # once, here, not by every process
            shutil.rmtree(Path(args.output_dir) / recipe.name, ignore_errors=True)
        return distributed.launch(forwarded, args.workers)
    if args.role:
        if not args.oracle:
            raise AnnzooError(
                "`--role` needs `--oracle HOST:PORT`, the chief's address. "
                "Received: --oracle=None"
            )
        os.environ.update(
            distributed.role_environment(args.role, args.oracle, args.worker_id)
        )
    try:
        result = tune(
            recipe,
            tuner=args.tuner,
            max_trials=args.max_trials,
            objective=args.objective,
            seed=args.seed or 0,
            output_dir=args.output_dir,
            overwrite=args.overwrite,
            retrain=args.retrain,
            mixed_precision=args.mixed_precision,
            # -v: keras-tuner's display and Keras' per-epoch lines as well
            verbose=0 if args.quiet else 2 if getattr(args, "verbose", False) else 1,
            # This process runs the search only: its heap and JAX's caches are
            # the search's to manage (`annzoo.tuning.memory`).
            manage_memory=True,
        )
    except RuntimeError as error:  # keras-tuner's, after failed trials in a row
        failed = reports.failed_search(Path(args.output_dir) / recipe.name, error)
        if failed is None:
            raise
        raise failed from error
    if args.role == "worker":
        return 0
    # One sentence, then the best values wrapped at 100 columns or fewer (the full
    # precision is in best_hyperparameters.json).
    best = "none" if result.best_score is None else f"{result.best_score:.6g}"
    print(f"completed trials: {result.completed}; best score {best} with")
    values = " ".join(reports.compact_values(result.best_hyperparameters))
    width = reports.terminal_width()
    print(textwrap.fill(values, width, initial_indent="    ", subsequent_indent="    "))
    if result.retrained is not None:
        metrics = ", ".join(
            f"{k} {v:.4f}" for k, v in result.retrained.test_metrics.items()
        )
        print(f"retrained best on train + validation: test {metrics}")
        print(f"retrained run directory: {result.retrained.run_dir}")
    print(f"search directory: {result.run_dir}")
    return 0

"""The generic training run: model name + dataset + settings -> run directory.

A run directory holds everything needed to understand and reproduce a run:

=================  ==========================================================
``recipe.json``    the resolved configuration (model arguments included)
``metrics.csv``    one row per epoch: loss and metrics, train and validation
``best.keras``     the model at the best epoch of the monitored quantity
``final.keras``    the model at the last epoch trained
``curves.png``     loss and metric curves, train and validation
``summary.txt``    the model summary with parameter counts
``results.json``   test metrics, best epoch, wall time, seed, versions
=================  ==========================================================
"""

from __future__ import annotations

import argparse
import dataclasses
import platform
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from annzoo import datasets, registry
from annzoo._checks import (
    check_choice,
    check_non_negative_int,
    check_positive_float,
    check_positive_int,
)
from annzoo.errors import AnnzooError
from annzoo.tasks import OPTIMIZERS
from annzoo.training import io as aio

__all__ = ["TrainConfig", "RunResult", "train", "main", "resolve_run_dir"]


@dataclass
class TrainConfig:
    """What to train, on what, and how.

    Attributes:
        name: the run's name; the run directory is ``output_dir/name``.
        model: a registered preset or family (``annzoo.list_models()``).
        dataset: a dataset name (``annzoo.datasets.list_datasets()``); it
            supplies the model's input shape, output width and task unless
            ``model_args`` sets them.
        model_args: builder arguments that override the preset's.
        epochs: maximum number of epochs.
        batch_size: samples per training step.
        seed: seeds the split, the weights, the shuffling and dropout.
        optimizer: an optimizer name (``annzoo.tasks.OPTIMIZERS``).
        learning_rate: ``None`` keeps the optimizer's default.
        monitor: the quantity early stopping and the checkpoint watch.
        patience: epochs without improvement before stopping (0: never stop
            early).
        output_dir: parent directory of run directories.
    """

    name: str
    model: str
    dataset: str
    model_args: dict[str, Any] = field(default_factory=dict)
    epochs: int = 50
    batch_size: int = 32
    seed: int = 0
    optimizer: str = "adam"
    learning_rate: float | None = None
    monitor: str = "val_loss"
    patience: int = 10
    output_dir: str = "runs"

    def validate(self) -> TrainConfig:
        """Checks every field; raises :class:`AnnzooError` naming the first bad one."""
        if not isinstance(self.name, str) or not self.name or "/" in self.name:
            raise AnnzooError(
                "`name` must be a non-empty string without '/'. "
                f"Received: name={self.name!r}"
            )
        check_choice(
            "model", self.model, [*registry.list_models(), *registry.list_families()]
        )
        datasets._base._resolve(self.dataset, argument="dataset")
        if not isinstance(self.model_args, dict):
            raise AnnzooError(
                f"`model_args` must be a dict. Received: model_args={self.model_args!r}"
            )
        check_positive_int("epochs", self.epochs)
        check_positive_int("batch_size", self.batch_size)
        check_non_negative_int("seed", self.seed)
        check_non_negative_int("patience", self.patience)
        check_choice("optimizer", self.optimizer, OPTIMIZERS)
        if self.learning_rate is not None:
            check_positive_float("learning_rate", self.learning_rate)
        if not isinstance(self.monitor, str) or not self.monitor:
            raise AnnzooError(
                f"`monitor` must be a metric name. Received: {self.monitor!r}"
            )
        return self

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class RunResult:
    run_dir: Path
    test_metrics: dict[str, float]
    best_epoch: int | None
    epochs_run: int
    wall_time_s: float
    history: dict[str, list[float]]


def resolve_run_dir(output_dir: str | Path, name: str) -> Path:
    """``output_dir/name``, or ``name-2``, ``name-3``... if that one is in use.

    A directory that exists and is not empty is never reused, so no earlier
    run is overwritten.
    """
    base = Path(output_dir)
    for index in range(1, 10_000):
        candidate = base / (name if index == 1 else f"{name}-{index}")
        if not candidate.exists() or not any(candidate.iterdir()):
            return candidate
    raise AnnzooError(f"`output_dir` {str(base)!r} holds too many runs named {name!r}.")


def _model_arguments(config: TrainConfig, data: datasets.ArrayDataset) -> dict:
    parameters = registry.builder_parameters(config.model)
    args: dict[str, Any] = {"input_shape": tuple(data.input_shape)}
    for width in ("num_classes", "num_outputs"):
        if width in parameters:
            args[width] = data.num_outputs
    if "task" in parameters:
        args["task"] = data.task
    args.update(config.model_args)
    return args


def _versions() -> dict[str, str]:
    import keras
    import numpy

    import annzoo

    found = {
        "annzoo": annzoo.__version__,
        "keras": keras.__version__,
        "backend": keras.backend.backend(),
        "numpy": numpy.__version__,
        "python": platform.python_version(),
    }
    for module in ("tensorflow", "jax", "torch"):
        if module in sys.modules:
            found[module] = getattr(sys.modules[module], "__version__", "?")
    return found


def _summary_text(model) -> str:
    lines: list[str] = []
    model.summary(print_fn=lambda line, *a, **k: lines.append(line), line_length=100)
    return "\n".join(lines) + "\n"


def train(config: TrainConfig, *, verbose: int = 1) -> RunResult:
    """Trains ``config`` and writes its run directory; see the module docstring.

    Everything is validated before the first step: a bad field raises
    :class:`annzoo.AnnzooError` naming it.
    """
    import keras

    from annzoo.plots import plot_curves
    from annzoo.training.callbacks import BestModelCheckpoint, MetricsLog

    config.validate()
    started = time.perf_counter()
    splits = {
        s: datasets.load(config.dataset, s, seed=config.seed)
        for s in ("train", "validation", "test")
    }
    model_args = _model_arguments(config, splits["train"])
    run_dir = resolve_run_dir(config.output_dir, config.name)

    keras.utils.set_random_seed(config.seed)
    compile_args: dict[str, Any] = {"optimizer": config.optimizer}
    if config.learning_rate is not None:
        compile_args["learning_rate"] = config.learning_rate
    model = registry.create_model(config.model, **model_args, compile=compile_args)

    run_dir.mkdir(parents=True, exist_ok=True)
    aio.clean_temporaries(run_dir)
    resolved = {**config.to_dict(), "model_args": model_args, "run_dir": str(run_dir)}
    aio.write_json(run_dir / "recipe.json", resolved)
    aio.write_text(run_dir / "summary.txt", _summary_text(model))
    if verbose:
        sizes = " / ".join(f"{len(d)} {s}" for s, d in splits.items())
        print(
            f"annzoo: training {config.model!r} on {config.dataset!r} ({sizes}); "
            f"run directory {run_dir}",
            flush=True,
        )

    checkpoint = BestModelCheckpoint(run_dir / "best.keras", monitor=config.monitor)
    callbacks = [
        checkpoint,
        MetricsLog(run_dir / "metrics.csv"),
        keras.callbacks.TerminateOnNaN(),
    ]
    if config.patience:
        callbacks.append(
            keras.callbacks.EarlyStopping(
                monitor=config.monitor, mode=checkpoint.mode, patience=config.patience
            )
        )
    x, y = splits["train"]
    history = model.fit(
        x,
        y,
        batch_size=config.batch_size,
        epochs=config.epochs,
        validation_data=tuple(splits["validation"]),
        shuffle=True,
        callbacks=callbacks,
        verbose=verbose,
    )
    aio.save_model(model, run_dir / "final.keras")
    if checkpoint.best_epoch is None:
        raise AnnzooError(
            f"Training produced no finite {config.monitor!r} in any epoch (NaN or "
            f"infinite loss); nothing was saved as best. Run directory: {run_dir}"
        )
    # The best checkpoint is the source of truth for early stopping's restore.
    model.load_weights(run_dir / "best.keras")
    test_x, test_y = splits["test"]
    test_metrics = model.evaluate(
        test_x, test_y, batch_size=config.batch_size, verbose=0, return_dict=True
    )
    test_metrics = {k: float(v) for k, v in test_metrics.items()}
    wall = time.perf_counter() - started
    plot_curves(
        history.history,
        run_dir / "curves.png",
        title=f"{config.name}: {config.model} on {config.dataset}",
        best_epoch=checkpoint.best_epoch,
    )
    epochs_run = len(history.history.get("loss", []))
    aio.write_json(
        run_dir / "results.json",
        {
            "test": test_metrics,
            "best_epoch": checkpoint.best_epoch,
            "best_" + config.monitor: checkpoint.best,
            "epochs_run": epochs_run,
            "wall_time_s": round(wall, 3),
            "seed": config.seed,
            "params": model.count_params(),
            "versions": _versions(),
        },
    )
    return RunResult(
        run_dir=run_dir,
        test_metrics=test_metrics,
        best_epoch=checkpoint.best_epoch,
        epochs_run=epochs_run,
        wall_time_s=wall,
        history={k: [float(v) for v in vs] for k, vs in history.history.items()},
    )


def _parser(config: TrainConfig, description: str | None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=f"{config.name}",
        description=description
        or f"Train {config.model!r} on {config.dataset!r} and write a run directory.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "--epochs",
        type=int,
        default=config.epochs,
        help="maximum number of epochs (early stopping may end sooner)",
    )
    parser.add_argument(
        "--batch-size",
        type=int,
        default=config.batch_size,
        help="samples per training step",
    )
    parser.add_argument(
        "--seed",
        type=int,
        default=config.seed,
        help="seed for the data split, initial weights and shuffling",
    )
    parser.add_argument(
        "--output-dir",
        default=config.output_dir,
        help="parent directory of the run directory",
    )
    parser.add_argument(
        "--quiet", action="store_true", help="no per-epoch progress bar"
    )
    parser.add_argument(
        "--debug", action="store_true", help="show the full traceback on errors"
    )
    return parser


def main(
    config: TrainConfig, argv: list[str] | None = None, description: str | None = None
) -> int:
    """Command-line entry point of a recipe script; returns the exit status."""
    args = _parser(config, description).parse_args(argv)
    config = dataclasses.replace(
        config,
        epochs=args.epochs,
        batch_size=args.batch_size,
        seed=args.seed,
        output_dir=args.output_dir,
    )
    try:
        result = train(config, verbose=0 if args.quiet else 1)
    except AnnzooError as error:
        if args.debug:
            raise
        print(f"error: {error}", file=sys.stderr)
        return 2
    metrics = ", ".join(f"{k} {v:.4f}" for k, v in result.test_metrics.items())
    print(f"test: {metrics}")
    print(
        f"best epoch {result.best_epoch} of {result.epochs_run}; "
        f"wall time {result.wall_time_s:.1f} s"
    )
    print(f"run directory: {result.run_dir}")
    return 0

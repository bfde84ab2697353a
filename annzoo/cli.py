"""The ``annzoo`` command.

    annzoo list [PATTERN]                 registered models with family and size
    annzoo info NAME                      one model's description and reference
    annzoo datasets                       the datasets annzoo.datasets.load knows
    annzoo train RECIPE [options]         run a recipe (name, .py, .json or .yaml)
    annzoo evaluate RUN_DIR [--split S]   evaluate a run's best model again
    annzoo predict RUN_DIR INPUT...       predictions for .npy/.npz/.csv/images
    annzoo predict RUN_DIR --text TEXT    translate, tag or classify raw text
    annzoo tune RECIPE [--max-trials N]   hyperparameter search (resumable)
    annzoo finetune SOURCE RECIPE         fine-tune trained weights on a recipe
    annzoo export RUN_DIR --format F      keras, savedmodel or onnx

Errors print one sentence and exit with status 2; ``--debug`` shows the
traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from annzoo.errors import AnnzooError

__all__ = ["main", "find_recipe"]


def _format_params(reference) -> str:
    if reference is None:
        return "-"
    prefix = "~" if reference.rounding > 1 else ""
    return f"{prefix}{reference.params:,} {reference.kind}"


def _shape_text(shape: tuple) -> str:
    """``32x32x3``; several inputs as ``64 + 64``; a free length as ``T``."""
    if shape and isinstance(shape[0], tuple | list):
        return " + ".join(_shape_text(tuple(s)) for s in shape)
    return "x".join("T" if n is None else str(n) for n in shape)


def _list(args) -> None:
    from annzoo import registry

    rows = [("name", "family", "task", "input", "outputs", "published params")]
    for name in registry.list_models(args.pattern):
        info = registry.model_info(name)
        rows.append(
            (
                name,
                info.family,
                info.task,
                _shape_text(info.input_shape),
                _shape_text(info.output_shape),
                _format_params(info.reference),
            )
        )
    if len(rows) == 1:
        raise AnnzooError(
            f"No model matches `pattern` {args.pattern!r}. Try 'annzoo list' "
            "without a pattern."
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)))


def _info(args) -> None:
    from annzoo import registry

    info = registry.model_info(args.name)
    if args.json:
        print(json.dumps(info.to_dict(), indent=2, default=list))
        return
    print(f"{info.name}  ({info.family}, task={info.task})")
    print(f"  {info.description}")
    print(f"  input shape:  {info.input_shape}")
    print(f"  output shape: {info.output_shape}")
    if info.reference:
        print(f"  published:    {_format_params(info.reference)} parameters")
        print(f"  source:       {info.reference.source}")
    print("  configuration:")
    for key, value in sorted(info.config.items()):
        print(f"    {key} = {value!r}")
    if not args.no_summary:
        model = registry.create_model(args.name, compile=False)
        model.summary(line_length=100)


def _datasets(args) -> None:
    from annzoo import datasets

    for name in datasets.list_datasets():
        info = datasets.dataset_info(name)
        sizes = info.get("num_samples", {})
        sizes = ", ".join(f"{k} {v}" for k, v in sizes.items())
        print(f"{name:15s} {info['task']:11s} {str(info['input_shape']):12s} {sizes}")
    print("tfds:NAME       any TensorFlow Datasets name (downloads on first use)")
    print("csv:PATH        a CSV file; data.options: label_column (required), ...")
    print("images:DIR      class subfolders of images; data.options: image_size")


def find_recipe(source: str) -> Path:
    """A recipe file from a path, or a name of a file in ``recipes/``."""
    path = Path(source)
    if path.is_file():
        return path
    candidates = [
        Path.cwd() / "recipes" / f"{source}.py",
        Path(__file__).resolve().parents[1] / "recipes" / f"{source}.py",
    ]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    known = sorted(
        {p.stem for c in candidates if c.parent.is_dir() for p in c.parent.glob("*.py")}
    )
    raise AnnzooError(
        "`recipe` must be a recipe file (.py, .json, .yaml) or the name of one in "
        f"recipes/ (known: {known}). Received: {source!r}"
    )


def _train(args) -> int:
    from annzoo.training.recipe import load_recipe
    from annzoo.training.runner import run_and_report

    recipe = load_recipe(find_recipe(args.recipe))
    return run_and_report(recipe, args)


def _finetune(args) -> int:
    from annzoo.training.recipe import load_recipe
    from annzoo.training.runner import run_and_report

    recipe = load_recipe(find_recipe(args.recipe))
    source = args.source
    if Path(source).exists():  # record where the weights came from, exactly
        source = str(Path(source).resolve())
    data = recipe.to_dict()
    data["finetune"]["source"] = source
    from annzoo.training.recipe import Recipe

    return run_and_report(Recipe.from_dict(data), args)


def _tune(args) -> int:
    import shutil

    from annzoo.training.recipe import load_recipe
    from annzoo.training.runner import apply_arguments
    from annzoo.tuning import distributed

    recipe = apply_arguments(load_recipe(find_recipe(args.recipe)), args)
    if args.batch_size is not None:  # fixed, not searched
        recipe = recipe.override([f"search_space.batch_size={args.batch_size}"])
    recipe = recipe.validate()
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
    from annzoo.tuning import tune

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
        verbose=0 if args.quiet else 1,
    )
    if args.role == "worker":
        return 0
    print(
        f"completed trials: {result.completed}; best {result.best_score} with "
        f"{json.dumps(result.best_hyperparameters)}"
    )
    if result.retrained is not None:
        metrics = ", ".join(
            f"{k} {v:.4f}" for k, v in result.retrained.test_metrics.items()
        )
        print(f"retrained best on train + validation: test {metrics}")
        print(f"retrained run directory: {result.retrained.run_dir}")
    print(f"search directory: {result.run_dir}")
    return 0


def _evaluate(args) -> None:
    from annzoo.training.runner import evaluate_run

    metrics = evaluate_run(args.run_dir, split=args.split, which=args.which)
    print(json.dumps({"split": args.split, "model": args.which, **metrics}, indent=2))


def _predict(args) -> None:
    from annzoo.predict import predict_files, predict_texts

    if bool(args.inputs) == bool(args.text):
        raise AnnzooError(
            "`annzoo predict` takes input files or --text, not both nor neither. "
            f"Received: {len(args.inputs)} files and {len(args.text or [])} texts."
        )
    if args.text:
        written, predictions = predict_texts(
            args.run_dir,
            args.text,
            output=args.output,
            which=args.which,
            beam_width=args.beam_width,
        )
        for text, prediction in zip(args.text, predictions, strict=True):
            print(f"{text}\t{prediction}")
    else:
        written = predict_files(
            args.run_dir, args.inputs, output=args.output, which=args.which
        )
    print(f"predictions: {written}")


def _export(args) -> None:
    from annzoo.export import export

    path = export(args.run_dir, args.output, format=args.format, which=args.which)
    print(f"exported: {path}")


def build_parser() -> argparse.ArgumentParser:
    from annzoo.training.runner import add_recipe_arguments, add_train_arguments

    parser = argparse.ArgumentParser(
        prog="annzoo",
        description=__doc__.split("\n\n")[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    commands = parser.add_subparsers(dest="command", required=True)

    listing = commands.add_parser("list", help="list registered models")
    listing.add_argument("pattern", nargs="?", default="*", help="shell-style pattern")
    listing.set_defaults(run=_list)

    info = commands.add_parser("info", help="describe one model")
    info.add_argument("name")
    info.add_argument("--json", action="store_true", help="print JSON")
    info.add_argument(
        "--no-summary", action="store_true", help="skip building the Keras summary"
    )
    info.set_defaults(run=_info)

    data = commands.add_parser("datasets", help="list the built-in datasets")
    data.set_defaults(run=_datasets)

    train = commands.add_parser(
        "train",
        help="run a recipe",
        description="Run a recipe and write a run directory.",
    )
    train.add_argument("recipe", help="recipe name (recipes/NAME.py) or file")
    add_train_arguments(train)
    train.set_defaults(run=_train)

    finetune = commands.add_parser(
        "finetune",
        help="fine-tune trained weights on a recipe's data",
        description="Train RECIPE starting from SOURCE (a .keras file, a run "
        "directory or a preset such as mobilenetv2_imagenet): new head, frozen "
        "base, reduced learning rate (see the recipe's finetune section).",
    )
    finetune.add_argument("source", help=".keras file, run directory or preset")
    finetune.add_argument("recipe", help="recipe file or name in recipes/")
    add_train_arguments(finetune)
    finetune.set_defaults(run=_finetune)

    tune = commands.add_parser(
        "tune",
        help="search a recipe's hyperparameters with keras-tuner",
        description="Hyperparameter search over a recipe's model (keras-tuner); "
        "rerunning the same command resumes it.",
    )
    tune.add_argument("recipe", help="recipe file or name in recipes/")
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

    evaluate = commands.add_parser("evaluate", help="evaluate a run again")
    evaluate.add_argument("run_dir")
    evaluate.add_argument("--split", default="test", help="train, validation or test")
    evaluate.add_argument("--which", default="best", choices=("best", "final"))
    evaluate.set_defaults(run=_evaluate)

    predict = commands.add_parser("predict", help="predict with a run's model")
    predict.add_argument("run_dir")
    predict.add_argument("inputs", nargs="*", help=".npy, .npz, .csv or image files")
    predict.add_argument(
        "--text",
        action="append",
        help="raw text for a run trained on token data (repeatable)",
    )
    predict.add_argument(
        "--beam-width", type=int, default=1, help="beam search width (seq2seq)"
    )
    predict.add_argument("--output", help="CSV to write (default RUN_DIR/predictions/)")
    predict.add_argument("--which", default="best", choices=("best", "final"))
    predict.set_defaults(run=_predict)

    export = commands.add_parser("export", help="export a run's model")
    export.add_argument("run_dir")
    export.add_argument("--format", default="keras", help="keras, savedmodel or onnx")
    export.add_argument("--output", help="destination (default RUN_DIR/export/...)")
    export.add_argument("--which", default="best", choices=("best", "final"))
    export.set_defaults(run=_export)
    return parser


def main(argv: list[str] | None = None) -> int:
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


if __name__ == "__main__":
    sys.exit(main())

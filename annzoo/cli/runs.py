"""``annzoo evaluate``, ``annzoo predict`` and ``annzoo export``: a run's model."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from annzoo._checks import check_output_path
from annzoo.cli import _startup
from annzoo.errors import AnnzooError

__all__ = ["add_commands"]


def add_commands(commands) -> None:
    """Adds the ``evaluate``, ``predict`` and ``export`` subcommands."""
    evaluate = commands.add_parser("evaluate", help="evaluate a run again")
    evaluate.add_argument("run_dir")
    evaluate.add_argument("--split", default="test", help="train, validation or test")
    evaluate.add_argument("--which", default="best", choices=("best", "final"))
    evaluate.set_defaults(run=_evaluate)

    predict = commands.add_parser("predict", help="predict with a run's model")
    predict.add_argument("run_dir")
    predict.add_argument(
        "inputs",
        nargs="*",
        help=(
            ".npy, .npz, .csv or image files. Arrays hold samples shaped like the "
            "model's input (channels last), or flat rows of a sample's values; "
            "other layouts are refused, not reshaped. A CSV starts with a header "
            "row of column names (a first row of numbers is refused), then one row "
            "of numbers per sample. Values must be finite."
        ),
    )
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

    exporting = commands.add_parser("export", help="export a run's model")
    exporting.add_argument("run_dir")
    exporting.add_argument(
        "--format",
        help="keras, savedmodel or onnx (default keras; savedmodel with --step)",
    )
    exporting.add_argument("--output", help="destination (default RUN_DIR/export/...)")
    exporting.add_argument("--which", default="best", choices=("best", "final"))
    exporting.add_argument(
        "--step",
        action="store_true",
        help=(
            "a language model's one-step function, (token, position, cache) -> "
            "(logits, new cache), instead of the full-sequence model: "
            "SavedModel or ONNX (default RUN_DIR/export/step_savedmodel/ or "
            "step.onnx)"
        ),
    )
    exporting.set_defaults(run=_export)


def _evaluate(args: argparse.Namespace) -> None:
    _startup.quiet_backend(args)
    # Deferred, as in every command that loads a model: see annzoo.cli.recipes.
    from annzoo.training.report import evaluate_run

    metrics = evaluate_run(args.run_dir, split=args.split, which=args.which)
    print(json.dumps({"split": args.split, "model": args.which, **metrics}, indent=2))


def _predict(args: argparse.Namespace) -> None:
    if bool(args.inputs) == bool(args.text):
        raise AnnzooError(
            "`annzoo predict` takes input files or --text, not both nor neither. "
            f"Received: {len(args.inputs)} files and {len(args.text or [])} texts."
        )
    if args.beam_width < 1:
        raise AnnzooError(
            "`--beam-width` must be an integer >= 1 (1 is greedy decoding). "
            f"Received: --beam-width {args.beam_width}"
        )
    default = Path(args.run_dir) / "predictions" / "predictions.csv"
    if args.output or Path(args.run_dir).is_dir():  # else the run dir is refused
        check_output_path("--output", args.output or default, directory=False)
    _startup.quiet_backend(args)
    from annzoo.predict import predict_files, predict_texts

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


def _export(args: argparse.Namespace) -> None:
    format = args.format or ("savedmodel" if args.step else "keras")
    if args.step and format == "keras":
        raise AnnzooError(
            "`--step` exports a language model's one-step function as a "
            "SavedModel or ONNX (a .keras file holds the whole model, which "
            "annzoo.generation steps itself). Received: --step --format keras"
        )
    if args.output is not None:
        savedmodel = format == "savedmodel"
        check_output_path("--output", args.output, directory=savedmodel)
    _startup.quiet_backend(args)
    from annzoo.export import export
    from annzoo.export.step import NotALanguageModelError

    try:
        path = export(
            args.run_dir, args.output, format=format, which=args.which, step=args.step
        )
    except NotALanguageModelError as error:  # named as the command line has it
        raise error.for_option("--step") from None
    print(f"exported: {path}")

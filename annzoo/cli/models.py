"""``annzoo list``, ``annzoo info`` and ``annzoo datasets``: what annzoo has."""

from __future__ import annotations

import argparse
import json

from annzoo import datasets, registry
from annzoo.errors import AnnzooError

__all__ = ["add_commands"]


def add_commands(commands) -> None:
    """Adds the ``list``, ``info`` and ``datasets`` subcommands."""
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


def _list(args: argparse.Namespace) -> None:
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


def _info(args: argparse.Namespace) -> None:
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


def _datasets(args: argparse.Namespace) -> None:
    for name in datasets.list_datasets():
        info = datasets.dataset_info(name)
        sizes = info.get("num_samples", {})
        sizes = ", ".join(f"{k} {v}" for k, v in sizes.items())
        print(f"{name:15s} {info['task']:11s} {str(info['input_shape']):12s} {sizes}")
    print("tfds:NAME       any TensorFlow Datasets name (downloads on first use)")
    print("csv:PATH        a CSV file; data.options: label_column (required), ...")
    print("images:DIR      class subfolders of images; data.options: image_size")

"""``annzoo list``, ``info``, ``datasets`` and ``recipes``: what annzoo has.

These read plain data (`annzoo.registry.plain_info`, the datasets' metadata,
the packaged recipes' files) and import no Keras, so they answer at once;
only ``info --summary`` builds the model.
"""

from __future__ import annotations

import argparse
import json
import shutil
import textwrap
from pathlib import Path

from annzoo import recipes, registry
from annzoo.cli import _startup
from annzoo.errors import AnnzooError

__all__ = ["add_commands"]


def _summary_width() -> int:
    """Keras' summary table width for ``info --summary``: the terminal's, from
    80 (narrower squeezes the layer names) to 100 columns (summary.txt's)."""
    return max(80, min(shutil.get_terminal_size((100, 24)).columns, 100))


def add_commands(commands) -> None:
    """Adds the ``list``, ``info``, ``datasets`` and ``recipes`` subcommands."""
    listing = commands.add_parser(
        "list",
        help="list registered models and families",
        description="The presets (models with fixed sizes) and the families "
        "(builders sized by your data or arguments) that `annzoo info`, "
        "`annzoo.create_model` and recipes accept.",
    )
    listing.add_argument("pattern", nargs="?", default="*", help="shell-style pattern")
    listing.set_defaults(run=_list)

    info = commands.add_parser("info", help="describe one model")
    info.add_argument("name")
    info.add_argument("--json", action="store_true", help="print JSON")
    info.add_argument(
        "--summary",
        action="store_true",
        help="also build the model and print its Keras summary (loads Keras)",
    )
    # The default since the summary became opt-in; kept for existing scripts.
    info.add_argument("--no-summary", action="store_true", help=argparse.SUPPRESS)
    info.set_defaults(run=_info)

    data = commands.add_parser("datasets", help="list the built-in datasets")
    data.set_defaults(run=_datasets)

    listed = commands.add_parser(
        "recipes",
        help="list the recipes annzoo ships",
        description="The recipes `annzoo train NAME` and `annzoo tune NAME` "
        "accept, with family, dataset and the result measured in recipes/README.md.",
    )
    listed.add_argument("pattern", nargs="?", default="*", help="shell-style pattern")
    listed.add_argument("--json", action="store_true", help="print JSON")
    listed.set_defaults(run=_recipes)


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


def _print_rows(rows: list[tuple[str, ...]], width: int = 100) -> None:
    """Columns padded to their widest cell; the last one wraps under itself so
    that no line passes ``width`` characters."""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    indent = sum(widths) + 2 * len(widths)
    for row in rows:
        cells = [cell.ljust(w) for cell, w in zip(row, widths, strict=False)]
        lines = textwrap.wrap(row[-1], max(width - indent, 20)) or [""]
        print("  ".join([*cells, lines[0]]).rstrip())
        for line in lines[1:]:
            print(" " * indent + line)


def _list(args: argparse.Namespace) -> None:
    presets = registry.plain_names(args.pattern)
    families = registry.plain_families(args.pattern)
    if not presets and not families:
        raise AnnzooError(
            f"No model or family matches `pattern` {args.pattern!r}. Try "
            "'annzoo list' without a pattern."
        )
    if presets:
        rows = [("preset", "family", "task", "input", "outputs", "published params")]
        for name in presets:
            info = registry.plain_info(name)
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
        _print_rows(rows)
    if families:
        if presets:
            print()
        rows = [("family", "tasks", "description")]
        for name in families:
            info = registry.plain_info(name)
            rows.append((name, ", ".join(info.tasks), info.description))
        _print_rows(rows)


def _info(args: argparse.Namespace) -> None:
    info = registry.plain_info(args.name)
    if args.json:
        print(json.dumps(info.to_dict(), indent=2, default=list))
        return
    family = info.name == info.family
    if family:
        print(f"{info.name}  (family; tasks: {', '.join(info.tasks)})")
    else:
        print(f"{info.name}  ({info.family}, task={info.task})")
    for line in textwrap.wrap(info.description, 98):
        print(f"  {line}")
    if family:
        presets = [
            n for n in registry.plain_names() if registry.plain_family(n) == info.name
        ]
        names = textwrap.wrap(", ".join(presets) or "none", 100 - 16)
        print(f"  presets:      {names[0]}")
        for line in names[1:]:
            print(" " * 16 + line)
    if info.input_shape:
        print(f"  input shape:  {info.input_shape}")
        print(f"  output shape: {info.output_shape}")
    else:  # a family without default sizes: a recipe's data sets them
        print("  shapes:       set by the data (recipe) or the builder's arguments")
    if info.reference:
        print(f"  published:    {_format_params(info.reference)} parameters")
        source = textwrap.wrap(info.reference.source, 100 - 16)
        print(f"  source:       {source[0]}")
        for line in source[1:]:
            print(" " * 16 + line)
    print("  configuration:")
    for key, value in sorted(info.config.items()):
        text = f"    {key} = {value!r}"
        print(text if len(text) <= 100 else text[:97] + "...")
    if args.summary and not args.no_summary:
        _startup.quiet_backend(args)
        # deferred: the run directory's summary writer imports Keras
        from annzoo.training.rundir import summary_text

        model = registry.create_model(args.name, compile=False)
        print(summary_text(model, line_length=_summary_width()), end="")


# annzoo.datasets.METADATA_FILE, read without importing annzoo.datasets (whose
# text datasets import Faker): tests/test_cli_startup.py checks both agree.
DATASETS_TABLE = Path(__file__).resolve().parents[1] / "datasets" / "metadata.json"


def _datasets(args: argparse.Namespace) -> None:
    table = json.loads(DATASETS_TABLE.read_text(encoding="utf-8"))
    for name, info in table.items():
        info["input_shape"] = tuple(info["input_shape"])
        sizes = info.get("num_samples", {})
        sizes = ", ".join(f"{k} {v}" for k, v in sizes.items())
        print(f"{name:15s} {info['task']:11s} {str(info['input_shape']):12s} {sizes}")
    print("tfds:NAME       any TensorFlow Datasets name (downloads on first use)")
    print("csv:PATH        a CSV file; data.options: label_column (required), ...")
    print("images:DIR      class subfolders of images; data.options: image_size")


def _recipes(args: argparse.Namespace) -> None:
    entries = recipes.catalog(args.pattern)
    if not entries:
        raise AnnzooError(
            f"No recipe matches `pattern` {args.pattern!r}. Try 'annzoo recipes' "
            "without a pattern."
        )
    if args.json:
        print(json.dumps(entries, indent=2))
        return
    rows = [("name", "family", "dataset", "measured (test split)")]
    for entry in entries:
        measured = entry["measured"] or "not measured here"
        rows.append((entry["name"], entry["family"], entry["dataset"], measured))
    _print_rows(rows)  # 100 columns at most: the last column wraps under itself

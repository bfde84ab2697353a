"""The ``annzoo`` command: browse the zoo and its datasets.

    annzoo list [PATTERN]     registered models with family, task and size
    annzoo info NAME          one model's description, shapes and reference
    annzoo datasets           the datasets ``annzoo.datasets.load`` knows

Errors print one sentence and exit with status 2; ``--debug`` shows the
traceback.
"""

from __future__ import annotations

import argparse
import json
import sys

from annzoo.errors import AnnzooError

__all__ = ["main"]


def _format_params(reference) -> str:
    if reference is None:
        return "-"
    prefix = "~" if reference.rounding > 1 else ""
    return f"{prefix}{reference.params:,} {reference.kind}"


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
                "x".join(map(str, info.input_shape)),
                ",".join(map(str, info.output_shape)),
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


def _datasets(args) -> None:
    from annzoo import datasets

    for name in datasets.list_datasets():
        info = datasets.dataset_info(name)
        sizes = info.get("num_samples", {})
        sizes = ", ".join(f"{k} {v}" for k, v in sizes.items())
        print(f"{name:15s} {info['task']:11s} {str(info['input_shape']):12s} {sizes}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="annzoo", description=__doc__.split("\n")[0])
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    commands = parser.add_subparsers(dest="command", required=True)
    listing = commands.add_parser("list", help="list registered models")
    listing.add_argument("pattern", nargs="?", default="*", help="shell-style pattern")
    listing.set_defaults(run=_list)
    info = commands.add_parser("info", help="describe one model")
    info.add_argument("name")
    info.add_argument("--json", action="store_true", help="print JSON")
    info.set_defaults(run=_info)
    data = commands.add_parser("datasets", help="list the built-in datasets")
    data.set_defaults(run=_datasets)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.run(args)
    except AnnzooError as error:
        if args.debug:
            raise
        print(f"annzoo: error: {error}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `annzoo list | head`
        sys.stderr.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""annzoo's CPU benchmark suite: ratios measured in one process, into RESULTS.md.

    python benchmarks/run.py                      # everything, ~25 minutes on 2 cores
    python benchmarks/run.py --only dispatch      # one benchmark (repeatable)
    python benchmarks/run.py --quick --results /tmp/r.md   # toy sizes, about a minute
    KERAS_BACKEND=jax python benchmarks/run.py    # or --backend jax

Benchmarks (see ``benchmarks/bench/``): overhead (recipe runner against the
same network in plain Keras), dispatch (annzoo's default fit settings against
a naive ``model.fit`` on a tiny MLP, and the candidate settings), pipeline
(annzoo's input pipeline against one batch repeated), tuning (share of a
search outside training steps, and its wall time against the same trials in
plain keras-tuner), tuning_recipe (the same share for a search at the
``surnames_char_rnn`` recipe's own size, about ten minutes), scaling (step
time and peak memory against batch size, width, depth and sequence length;
``results/scaling.png``).

A full run writes its section of ``benchmarks/RESULTS.md`` (one per backend,
between markers; the rest of the file is kept) and the PNGs under
``benchmarks/results/``. A quick run writes only where ``--results`` says,
else prints the section. Progress goes to stderr, one line per measurement.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
import tempfile
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "benchmarks"), str(ROOT)]

from bench import NAMES  # noqa: E402  (no Keras import yet: the backend is set below)


def _names(values: list[str]) -> list[str]:
    chosen = []
    for value in values:
        for name in filter(None, value.split(",")):
            if name not in NAMES:
                raise SystemExit(
                    f"run.py: error: `--only` takes some of {', '.join(NAMES)}. "
                    f"Received: {name!r}"
                )
            chosen.append(name)
    return [n for n in NAMES if n in chosen] if chosen else list(NAMES)


def _load() -> float | None:
    """The 1-minute load average: how busy the machine was (noise)."""
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):  # pragma: no cover - not Unix
        return None


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="benchmarks/run.py",
        description=__doc__.split("\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Benchmarks: " + ", ".join(NAMES),
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="toy sizes, about a minute (a harness check)",
    )
    parser.add_argument(
        "--only", action="append", default=[], metavar="NAME",
        help="run only NAME (repeatable or comma-separated)",
    )  # fmt: skip
    parser.add_argument(
        "--results", type=Path, default=None,
        help="markdown file to update (default: benchmarks/RESULTS.md; a quick "
        "run without it prints the section)",
    )  # fmt: skip
    parser.add_argument(
        "--figures", type=Path, default=None,
        help="directory for PNGs (default: benchmarks/results, or beside "
        "--results in quick mode)",
    )  # fmt: skip
    parser.add_argument("--json", type=Path, default=None, help="raw figures as JSON")
    parser.add_argument(
        "--backend", choices=("tensorflow", "jax"), default=None,
        help="Keras backend (default: $KERAS_BACKEND, else tensorflow)",
    )  # fmt: skip
    parser.add_argument("--scaling-point", default=None, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    if args.backend:
        os.environ["KERAS_BACKEND"] = args.backend
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if args.scaling_point is not None:
        from bench import scaling

        return scaling.worker(args.scaling_point)

    names = _names(args.only)
    results = args.results
    if results is None and not args.quick:
        results = ROOT / "benchmarks" / "RESULTS.md"
    from bench import core, report

    started = time.perf_counter()
    blocks: dict[str, str] = {}
    raw: dict[str, object] = {"machine": core.machine(), "quick": args.quick}
    failed = []
    with tempfile.TemporaryDirectory(prefix="annzoo-bench-") as work:
        figures = args.figures or (
            (results.parent if results else Path(work))
            if args.quick
            else ROOT / "benchmarks" / "results"
        )
        figures.mkdir(parents=True, exist_ok=True)
        settings = core.Settings.make(
            quick=args.quick, work_dir=Path(work), figures_dir=figures
        )
        settings.results_path = results
        core.say(
            f"backend {raw['machine']['backend']}, {'quick' if args.quick else 'full'}"
            f" run of {', '.join(names)}"
        )
        for name in names:
            began = time.perf_counter()
            load_before = _load()
            core.say(f"{name}: start")
            try:
                module = importlib.import_module(f"bench.{name}")
                section = module.run(settings)
            except Exception as error:  # keep the other benchmarks' results
                traceback.print_exc()
                failed.append(name)
                blocks[name] = report.failed_text(name, error)
                raw[name] = {"error": f"{type(error).__name__}: {error}"}
                continue
            seconds = time.perf_counter() - began
            core.say(f"{name}: done in {seconds:.0f} s")
            load = None if load_before is None else (load_before, _load())
            blocks[name] = report.section_text(
                section, quick=args.quick, seconds=seconds, load=load
            )
            raw[name] = {
                "data": section.data,
                "checks": [vars(c) for c in section.checks],
                "seconds": round(seconds, 1),
                "load_average": load,
            }
    command = "python benchmarks/run.py" + (" " + " ".join(argv) if argv else "")
    if argv is None:
        command = "python benchmarks/run.py " + " ".join(sys.argv[1:])
    head = report.header(raw["machine"], quick=args.quick, command=command.strip())
    backend = raw["machine"]["backend"]
    if results is not None:
        report.write(results, backend, head, blocks)
        core.say(f"wrote {results}")
    else:
        print(report.merge("", backend, head, blocks))
    if args.json is not None:
        from annzoo import io as aio

        aio.write_text(args.json, json.dumps(raw, indent=2, default=str) + "\n")
    core.say(f"all done in {time.perf_counter() - started:.0f} s")
    if failed:
        core.say(f"failed: {', '.join(failed)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The suite's section of RESULTS.md, replaced in place between markers.

The file keeps everything outside the markers. The suite's section for a
backend is delimited by ``<!-- annzoo-bench BACKEND begin/end -->`` and
holds a header (machine, versions, command) and one block per benchmark,
each delimited by its own markers, so ``--only NAME`` replaces that block
and keeps the others. The file is written atomically.
"""

from __future__ import annotations

import datetime
import re
from pathlib import Path
from typing import Any

from annzoo import io as aio
from bench import NAMES, core

BACKEND_TITLES = {"tensorflow": "TensorFlow", "jax": "JAX", "torch": "PyTorch"}


def _marker(backend: str, part: str | None, edge: str) -> str:
    inner = f"{backend} {part}" if part else backend
    return f"<!-- annzoo-bench {inner} {edge} -->"


def _block(backend: str, part: str, text: str) -> str:
    return "\n".join(
        [_marker(backend, part, "begin"), text.strip(), _marker(backend, part, "end")]
    )


def _find_blocks(section: str, backend: str) -> dict[str, str]:
    pattern = re.compile(
        re.escape(f"<!-- annzoo-bench {backend} ")
        + r"(?P<part>[\w-]+) begin -->\n(?P<text>.*?)\n"
        + re.escape(f"<!-- annzoo-bench {backend} ")
        + r"(?P=part) end -->",
        re.S,
    )
    return {m["part"]: m["text"] for m in pattern.finditer(section)}


def header(machine: dict[str, Any], *, quick: bool, command: str) -> str:
    versions = ", ".join(f"{k} {v}" for k, v in machine["versions"].items())
    backend = BACKEND_TITLES.get(machine["backend"], machine["backend"])
    lines = [
        f"## CPU benchmark suite, {backend} backend (`benchmarks/run.py`)",
        "",
    ]
    if quick:
        lines += [
            "**Quick mode: a check that the harness runs, at toy sizes; these "
            "figures are not measurements.**",
            "",
        ]
    lines += [
        "Every figure is a ratio of two things measured in the same process, "
        "alternately (A/B/A/B) after warm-up, the median of several repeats "
        "(lowest-highest in brackets); no absolute time is compared across "
        "runs. Each block below says when it was measured.",
        "",
        f"- Machine: {machine['cpu']}, {machine['cores']} usable cores "
        f"({machine['logical_cpus']} logical CPUs); {machine['platform']}",
        f"- Versions: {versions}; Keras backend `{machine['backend']}`",
        f"- Command: `{command}`",
    ]
    return "\n".join(lines)


def section_text(
    section: core.Section,
    *,
    quick: bool,
    seconds: float,
    load: tuple[float, float] | None = None,
) -> str:
    """The block of one benchmark; ``load``: 1-minute load average at start, end."""
    when = datetime.datetime.now().strftime("%Y-%m-%d %H:%M")
    mode = "quick mode (not a measurement)" if quick else "full mode"
    busy = ""
    if load is not None:
        busy = (
            f"; load average {load[0]:.1f} at the start, {load[1]:.1f} at the end "
            f"on {core.usable_cores()} cores, this run included"
        )
    lines = [
        f"### {section.title}",
        "",
        f"*Measured {when}, {mode}, {seconds:.0f} s{busy}.*",
        "",
        section.body.strip(),
    ]
    if section.checks:
        lines += [
            "",
            core.table(
                ["target", "measured", "target value", "status"],
                [c.row() for c in section.checks],
            ),
        ]
    return "\n".join(lines)


def failed_text(name: str, error: BaseException) -> str:
    return "\n".join(
        [
            f"### {name}: failed",
            "",
            f"The benchmark raised `{type(error).__name__}: {error}`.",
        ]
    )


def merge(existing: str, backend: str, head: str, blocks: dict[str, str]) -> str:
    """``existing`` with the backend's section updated by ``blocks``."""
    begin, end = _marker(backend, None, "begin"), _marker(backend, None, "end")
    start, stop = existing.find(begin), existing.find(end)
    old_blocks = {}
    if start != -1 and stop > start:
        old_blocks = _find_blocks(existing[start:stop], backend)
    old_blocks.pop("header", None)
    combined = {**old_blocks, **blocks}
    order = [n for n in NAMES if n in combined] + [
        n for n in combined if n not in NAMES
    ]
    parts = [begin, _block(backend, "header", head)]
    parts += [_block(backend, name, combined[name]) for name in order]
    parts.append(end)
    section = "\n\n".join(parts)
    if start != -1 and stop > start:
        return existing[:start] + section + existing[stop + len(end) :]
    return existing.rstrip("\n") + "\n\n" + section + "\n"


def write(path: Path, backend: str, head: str, blocks: dict[str, str]) -> Path:
    path = Path(path)
    existing = path.read_text(encoding="utf-8") if path.exists() else ""
    return aio.write_text(path, merge(existing, backend, head, blocks))

"""The benchmark suite's harness (benchmarks/run.py) runs and reports.

Timings are never asserted: only that every benchmark runs at toy sizes
(``--quick``), produces finite positive ratios, and writes its section of a
results file without disturbing the rest of it.
"""

from __future__ import annotations

import json
import math
import sys

import pytest

from tests.conftest import ROOT, run_python

sys.path.insert(0, str(ROOT / "benchmarks"))

NAMES = ("overhead", "dispatch", "pipeline", "tuning", "scaling")
KEPT = "# Benchmark results\n\nHand-written notes that the suite must keep.\n"


def _ratios(node, where="$"):
    """Every ratio record ``{median, low, high, n}`` in the JSON, with its path."""
    if isinstance(node, dict):
        if {"median", "low", "high", "n"} <= set(node):
            yield where, node
        for key, value in node.items():
            yield from _ratios(value, f"{where}.{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _ratios(value, f"{where}[{i}]")


@pytest.mark.slow
def test_quick_run_writes_ratios_and_results(tmp_path):
    results = tmp_path / "RESULTS.md"
    results.write_text(KEPT)
    raw = tmp_path / "raw.json"
    done = run_python(
        "benchmarks/run.py", "--quick", "--results", str(results),
        "--json", str(raw), timeout=900, KERAS_BACKEND="tensorflow",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-4000:]
    # Progress: one stderr line per measurement, named by benchmark.
    for name in NAMES:
        assert f"bench: {name}: done" in done.stderr

    text = results.read_text()
    assert text.startswith(KEPT)  # the rest of the file is kept
    for name in NAMES:
        assert f"<!-- annzoo-bench tensorflow {name} begin -->" in text
        assert f"<!-- annzoo-bench tensorflow {name} end -->" in text
    assert "Quick mode" in text
    for what in ("Machine:", "python", "keras", "tensorflow", "jax", "numpy"):
        assert what in text
    assert (tmp_path / "scaling.png").stat().st_size > 1000

    data = json.loads(raw.read_text())
    assert data["machine"]["backend"] == "tensorflow"
    assert data["machine"]["cores"] >= 1
    found = list(_ratios(data))
    # overhead: 2 per family; dispatch: the table and the larger models;
    # pipeline: one per case; scaling: one per point.
    assert len(found) >= 4 * 2 + 3 * 2 + 1 + 4 + 8
    for where, ratio in found:
        for key in ("median", "low", "high"):
            value = ratio[key]
            assert math.isfinite(value) and value > 0, (where, ratio)
        assert ratio["low"] <= ratio["median"] <= ratio["high"], (where, ratio)
    share = data["tuning"]["data"]["share_outside_steps"]
    assert 0 <= share <= 1
    for name in NAMES:
        for check in data[name]["checks"]:
            assert math.isfinite(check["value"]), (name, check)


def test_merge_replaces_only_its_blocks():
    from bench import report

    first = report.merge(
        KEPT, "tensorflow", "HEAD 1", {"overhead": "O1", "tuning": "T1"}
    )
    assert first.startswith(KEPT)
    # --only tuning: the tuning block and the header change, overhead stays.
    second = report.merge(first + "\nTrailing notes.\n", "tensorflow", "HEAD 2",
                          {"tuning": "T2"})  # fmt: skip
    assert "O1" in second and "T2" in second
    assert "T1" not in second and "HEAD 1" not in second and "HEAD 2" in second
    assert second.startswith(KEPT) and second.endswith("Trailing notes.\n")
    # Blocks keep the suite's order whatever order they were written in.
    assert second.index("O1") < second.index("T2")
    # Another backend gets its own section; the first is left alone.
    third = report.merge(second, "jax", "JAX HEAD", {"dispatch": "D-jax"})
    assert report.merge(third, "jax", "JAX HEAD", {"dispatch": "D-jax"}) == third
    assert "O1" in third and "T2" in third and "D-jax" in third
    assert third.count("<!-- annzoo-bench tensorflow begin -->") == 1
    assert third.count("<!-- annzoo-bench jax begin -->") == 1


def test_only_rejects_unknown_names():
    done = run_python("benchmarks/run.py", "--only", "nonsense", timeout=120)
    assert done.returncode != 0
    assert "nonsense" in done.stderr and "overhead" in done.stderr

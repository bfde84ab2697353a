"""Scaling: step time and peak memory against batch, width, depth and length.

Four axes, each a series of annzoo models trained on synthetic data:

- batch size: a small CNN (filters 16, 32; hidden 64) on 32x32x3 images;
- width: an MLP 784 -> w -> w -> 10 at batch 128;
- depth: an MLP 784 -> d x 256 -> 10 at batch 128;
- sequence length: a Transformer encoder classifier (d_model 64, 4 heads,
  feed-forward 128, 2 layers, 1,000 tokens) at batch 32.

Step time: all the models of an axis are built and warmed up in this process
and measured in turn, repeatedly; each point's figure is its step time over
the first point's (median of per-repeat ratios). Peak memory: each point
trains again in a fresh process (``run.py --scaling-point``), which reports
its peak resident set size (``VmHWM``) before (after training a one-unit
model, to load everything) and after training; the growth is the figure.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
from pathlib import Path

import numpy as np

from bench import core

STEPS = 8  # steps per epoch (the batch axis: a fixed number of samples)
AXES = {
    # name: (values, quick values, label of the value)
    "batch size": ((16, 64, 256, 1024), (4, 8), "batch"),
    "width": ((128, 512, 1024, 2048), (8, 16), "units per layer"),
    "depth": ((1, 4, 16, 64), (1, 2), "hidden layers"),
    "sequence length": ((32, 128, 256, 512), (8, 16), "tokens"),
}


def build(axis: str, value: int, quick: bool):
    """``(model, x, y, batch_size)`` of one point, compiled with annzoo's defaults."""
    import keras

    import annzoo

    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    steps = 2 if quick else STEPS
    if axis == "batch size":
        size = 8 if quick else 32
        model = annzoo.build_cnn(
            (size, size, 3), 10, filters=(16, 32), batch_norm=True, hidden_units=(64,)
        )
        batch = value
        # The same images at every batch size, so that memory growth is the
        # training's, not a bigger data set's.
        count = 2 * max(AXES[axis][1 if quick else 0])
        x = rng.random((count, size, size, 3), dtype=np.float32)
    elif axis in ("width", "depth"):
        features = 32 if quick else 784
        hidden = (value, value) if axis == "width" else (64 if quick else 256,) * value
        model = annzoo.build_mlp(features, 10, hidden_units=hidden)
        batch = 16 if quick else 128
        x = rng.standard_normal((steps * batch, features), dtype=np.float32)
    elif axis == "sequence length":
        model = annzoo.build_transformer(
            "encoder", vocabulary_size=1000, sequence_length=value, num_classes=10,
            d_model=16 if quick else 64, num_heads=4, ff_dim=32 if quick else 128,
            num_layers=1 if quick else 2,
        )  # fmt: skip
        batch = 8 if quick else 32
        x = rng.integers(1, 1000, (steps * batch, value)).astype(np.int32)
    else:
        raise ValueError(f"Unknown scaling axis {axis!r}.")
    y = rng.integers(0, 10, len(x)).astype(np.int32)
    return model, x, y, batch


def _peak_mib() -> float:
    """This process's peak resident set size in MiB.

    Linux's ``VmHWM`` belongs to the process image: ``ru_maxrss`` survives
    ``exec``, so a child started by a big parent would report the parent's
    peak.
    """
    try:
        with open("/proc/self/status") as handle:
            for line in handle:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024  # kB
    except (OSError, ValueError, IndexError):
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def worker(spec: str) -> int:
    """In a fresh process: train each point of ``spec``, print its peak memory."""
    points = json.loads(spec)
    import keras

    import annzoo

    # The baseline: a process that has trained a one-unit model, so that the
    # libraries imported on first use (TensorFlow under JAX too, XLA) count
    # in it and not in the first point.
    tiny = annzoo.build_mlp(1, 2, hidden_units=())
    tiny.fit(np.zeros((2, 1), "float32"), np.zeros(2, "int32"), verbose=0)
    del tiny
    keras.backend.clear_session()
    baseline = _peak_mib()
    for point in points:
        model, x, y, batch = build(point["axis"], point["value"], point["quick"])
        model.fit(x, y, batch_size=batch, epochs=1 if point["quick"] else 2, verbose=0)
        peak = _peak_mib()
        print(
            json.dumps({**point, "baseline_mib": round(baseline, 1),
                        "peak_mib": round(peak, 1), "params": model.count_params()}),
            flush=True,
        )  # fmt: skip
    return 0


def peak_memory(points: list[dict], quick: bool) -> list[dict]:
    """Runs `worker` in fresh processes: one per point (quick: one for all)."""
    groups = [points] if quick else [[p] for p in points]
    run_py = Path(__file__).resolve().parents[1] / "run.py"
    found = []
    for group in groups:
        done = subprocess.run(
            [sys.executable, str(run_py), "--scaling-point", json.dumps(group)],
            capture_output=True, text=True, env=dict(os.environ), timeout=600,
        )  # fmt: skip
        if done.returncode != 0:
            raise RuntimeError(
                f"The memory worker failed on {group}: {done.stderr[-2000:]}"
            )
        lines = [
            json.loads(line)
            for line in done.stdout.splitlines()
            if line.startswith("{")
        ]
        for line in lines:
            growth = line["peak_mib"] - line["baseline_mib"]
            core.say(
                f"scaling memory: {line['axis']} {line['value']}: peak "
                f"{line['peak_mib']:.0f} MiB, {growth:+.0f} MiB over the baseline"
            )
        found.extend(lines)
    return found


def step_ratios(axis: str, values, settings: core.Settings) -> dict[int, core.Ratio]:
    """Each point's step time over the first point's, measured in turn."""
    import keras

    contenders = []
    for value in values:
        model, x, y, batch = build(axis, value, settings.quick)

        def run(epochs, model=model, x=x, y=y, batch=batch):
            return core.timed_fit(model, x, y=y, batch_size=batch, epochs=epochs)

        contenders.append(core.Contender(f"{axis} {value}", run))
    results = core.compare(
        f"scaling {axis}", contenders, settings, target_s=0.3, repeats=4
    )
    first = contenders[0].name
    ratios = {
        v: core.ratios(results, c.name, first)
        for v, c in zip(values, contenders, strict=True)
    }
    keras.backend.clear_session()
    return ratios


def plot(records: dict, path: Path, backend: str) -> Path:
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from annzoo import io as aio

    fig, axes = plt.subplots(1, len(records), figsize=(4.2 * len(records), 3.6))
    for ax, (axis, rows) in zip(np.atleast_1d(axes), records.items(), strict=True):
        xs = [r["value"] for r in rows]
        med = [r["step_ratio"]["median"] for r in rows]
        err = [
            [m - r["step_ratio"]["low"] for m, r in zip(med, rows, strict=True)],
            [r["step_ratio"]["high"] - m for m, r in zip(med, rows, strict=True)],
        ]
        ax.errorbar(xs, med, yerr=err, marker="o", color="C0", capsize=3)
        ax.set_xscale("log", base=2)
        ax.set_yscale("log", base=2)
        ax.set_xlabel(AXES[axis][2])
        ax.set_ylabel("step time / first point's", color="C0")
        ax.set_title(axis)
        twin = ax.twinx()
        twin.plot(xs, [r["memory_growth_mib"] for r in rows], marker="s", color="C1")
        twin.set_ylabel("peak RSS growth (MiB)", color="C1")
        ax.grid(True, alpha=0.3)
    fig.suptitle(f"annzoo scaling on the CPU, {backend} backend")
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    plt.close(fig)
    return aio.write_bytes(path, buffer.getvalue())


def run(settings: core.Settings) -> core.Section:
    import keras

    backend = keras.backend.backend()
    points = [
        {"axis": axis, "value": v, "quick": settings.quick}
        for axis, (full, quick, _) in AXES.items()
        for v in (quick if settings.quick else full)
    ]
    memory = {(m["axis"], m["value"]): m for m in peak_memory(points, settings.quick)}
    records: dict[str, list[dict]] = {}
    for axis, (full, quick, _) in AXES.items():
        values = quick if settings.quick else full
        ratios = step_ratios(axis, values, settings)
        records[axis] = [
            {
                "value": v,
                "step_ratio": ratios[v].as_dict(),
                "params": memory[(axis, v)]["params"],
                "peak_mib": memory[(axis, v)]["peak_mib"],
                "memory_growth_mib": round(
                    memory[(axis, v)]["peak_mib"] - memory[(axis, v)]["baseline_mib"], 1
                ),
            }
            for v in values
        ]
    name = "scaling.png" if backend == "tensorflow" else f"scaling-{backend}.png"
    figure = plot(records, settings.figures_dir / name, backend)
    blocks = []
    for axis, rows in records.items():
        first = rows[0]["value"]
        table_rows = []
        for r in rows:
            ratio = core.Ratio(**r["step_ratio"])
            cells = [
                r["value"],
                f"{r['params']:,}",
                f"{ratio.text()} ({ratio.spread()})",
            ]
            if axis == "batch size":
                cells.append(f"{ratio.median * first / r['value']:.2f}")
            cells += [f"{r['memory_growth_mib']:+.0f}", f"{r['peak_mib']:.0f}"]
            table_rows.append(cells)
        headers = [AXES[axis][2], "parameters", f"step time / at {first}"]
        if axis == "batch size":
            headers.append(f"time per sample / at {first}")
        headers += ["peak RSS growth (MiB)", "peak RSS (MiB)"]
        blocks += [f"**{axis}**", "", core.table(headers, table_rows), ""]
    body = "\n".join(
        [
            "Step time relative to the first point of each axis (all points of an "
            "axis measured in turn in one process) and peak memory (each point in a "
            "fresh process: peak resident set size after training, and its growth "
            "over the peak of that process after training a one-unit model, which "
            "loads the libraries). Models are annzoo's "
            "builders compiled with their defaults, `model.fit` on synthetic data, "
            f"{STEPS} steps per epoch. Batch size: a CNN (16, 32 filters, hidden 64) "
            f"on {2 * max(AXES['batch size'][0]):,} 32x32x3 images; width: MLP "
            "784-w-w-10, batch 128; depth: MLP "
            "784-(d x 256)-10, batch 128; sequence length: Transformer encoder "
            "(d_model 64, 4 heads, 2 layers), batch 32."
            + (" Quick mode shrinks every size." if settings.quick else ""),
            "",
            f"![scaling]({settings.figure_link(figure)})",
            "",
            *blocks,
        ]
    )
    return core.Section(
        "scaling", "Scaling: step time and memory against model and batch size",
        body, {"axes": records, "figure": str(figure)},
    )  # fmt: skip

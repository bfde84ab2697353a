"""A small hyperparameter search on an accelerator (JAX backend, no TensorFlow).

Runs `annzoo.tune` over a digits CNN (numpy input, XLA-compiled trials) and
reports trials per minute, the per-trial fixed cost (trial wall time minus the
time inside training epochs: build, compile, bookkeeping), the share of the
search's wall time spent inside training epochs and, on JAX, how much of it
went to tracing, lowering and XLA compiling (JAX's own compile events).

    KERAS_BACKEND=jax python benchmarks/gpu_tune.py --out OUT_DIR [--trials 12]

Writes ``OUT_DIR/gpu_tune.json`` and the search directory under OUT_DIR.
Runs on a CPU too (then it measures the CPU figures).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _device() -> str:
    import keras

    if keras.backend.backend() == "jax":
        import jax

        device = jax.devices()[0]
        return f"{device.platform}:{getattr(device, 'device_kind', '?')}"
    return f"{keras.backend.backend()}:cpu"


# JAX's own timings of the work behind a compiled function's first call.
COMPILE_EVENTS = {
    "/jax/core/compile/jaxpr_trace_duration": "tracing",
    "/jax/core/compile/jaxpr_to_mlir_module_duration": "lowering",
    "/jax/core/compile/backend_compile_duration": "xla_compile",
}


def _compile_clock() -> dict | None:
    """From now on, adds up JAX's compile events: ``{kind: [seconds, count]}``
    (None on another backend)."""
    import keras

    if keras.backend.backend() != "jax":
        return None
    import jax.monitoring

    totals = {kind: [0.0, 0] for kind in COMPILE_EVENTS.values()}

    def listener(event, duration, **_):
        kind = COMPILE_EVENTS.get(event)
        if kind is not None:
            totals[kind][0] += duration
            totals[kind][1] += 1

    jax.monitoring.register_event_duration_secs_listener(listener)
    return totals


def run(out: Path, trials: int, epochs: int) -> dict:
    import keras

    import annzoo
    from annzoo.training import Recipe
    from annzoo.tuning import tune

    recipe = Recipe(
        name="digits_cnn_search",
        model=dict(name="cnn", batch_norm=True),
        data=dict(dataset="digits", pipeline="numpy"),
        fit=dict(epochs=epochs),
        callbacks=dict(early_stopping=dict(patience=3)),
        search_space={
            "filters": {"type": "layers", "depth": [1, 2], "values": [16, 32, 64]},
            "hidden_units": {"type": "layers", "depth": [0, 1], "values": [64, 128]},
            "dropout": [0.0, 0.2, 0.4],
            "learning_rate": {"type": "float", "min": 3e-4, "max": 3e-3,
                              "sampling": "log"},
            "batch_size": [32, 64],
        },
    )  # fmt: skip
    clock = _compile_clock()
    started = time.perf_counter()
    result = tune(recipe, max_trials=trials, seed=0, output_dir=out, overwrite=True,
                  verbose=0, manage_memory=True)  # as `annzoo tune` runs  # fmt: skip
    wall = time.perf_counter() - started
    rows = [t for t in result.trials if t["status"] == "COMPLETED"]
    fixed = [t["wall_s"] - t["train_s"] for t in rows]
    inside = sum(t["train_s"] for t in rows) / wall
    return {
        "device": _device(),
        "versions": {
            "annzoo": annzoo.__version__,
            "keras": keras.__version__,
            "backend": keras.backend.backend(),
            "python": platform.python_version(),
        },
        "trials_completed": result.completed,
        "search_wall_s": round(wall, 2),
        "trials_per_minute": round(60 * result.completed / wall, 2),
        "per_trial_fixed_cost_s_median": round(statistics.median(fixed), 3),
        "per_trial_fixed_cost_s_first": round(fixed[0], 3),
        "share_inside_training_epochs": round(inside, 4),
        "epochs_per_trial_max": epochs,
        "best_score": result.best_score,
        "best_hyperparameters": result.best_hyperparameters,
        "rss_mb_trial_2_and_last": [rows[1]["rss_mb"], rows[-1]["rss_mb"]]
        if len(rows) > 1
        else None,
        # Where the fixed cost goes on JAX: tracing, lowering and XLA
        # compiling (each trial's train and test steps, and the small programs
        # of its eager operations), in seconds and calls over the search.
        "compile": None
        if clock is None
        else {
            kind: {"s": round(seconds, 3), "calls": calls}
            for kind, (seconds, calls) in clock.items()
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--trials", type=int, default=12)
    parser.add_argument("--epochs", type=int, default=10)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    figures = run(args.out, args.trials, args.epochs)
    from annzoo import io as aio

    aio.write_json(args.out / "gpu_tune.json", figures)  # atomically
    print(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()

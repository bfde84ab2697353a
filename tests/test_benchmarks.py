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

NAMES = ("overhead", "dispatch", "pipeline", "tuning", "tuning_recipe", "scaling")
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
    plain = data["tuning"]["data"]["plain_keras_tuner"]
    assert {"wall_ratio", "outside_steps_ratio"} <= set(plain)
    assert "plain keras-tuner" in text
    for name in NAMES:
        for check in data[name]["checks"]:
            assert math.isfinite(check["value"]), (name, check)


@pytest.mark.slow
def test_plain_search_replays_the_given_trials(tmp_path):
    """The plain keras-tuner baseline trains exactly the configurations given."""
    import numpy as np
    from bench import tuning, zoo

    rng = np.random.default_rng(0)
    x = rng.random((128, 8, 8, 1), dtype=np.float32)
    y = rng.integers(0, 10, 128)
    splits = {
        "train": zoo.synthetic_split(x, y, num_classes=10),
        "validation": zoo.synthetic_split(x[:32], y[:32], num_classes=10),
    }
    configs = [
        {"hidden_units_depth": 1, "hidden_units_1": 32, "activation": "relu",
         "dropout": 0.0, "optimizer": "adam", "learning_rate": 1e-3,
         "batch_size": 16},
        {"hidden_units_depth": 2, "hidden_units_1": 64, "hidden_units_2": 32,
         "activation": "gelu", "dropout": 0.1, "optimizer": "rmsprop",
         "learning_rate": 3e-3, "batch_size": 64},
    ]  # fmt: skip
    totals = tuning._new_totals()
    tuner = tuning.plain_search(
        configs, splits, epochs=1, patience=1, directory=tmp_path, totals=totals
    )
    trials = [tuner.oracle.trials[k] for k in sorted(tuner.oracle.trials)]
    assert [t.hyperparameters.values for t in trials] == configs
    widths = [
        [layer.units for layer in tuner.load_model(t).layers if hasattr(layer, "units")]
        for t in trials
    ]
    assert widths == [[32, 10], [64, 32, 10]]
    # One fit per configuration, then nothing more (a third trial would be a
    # drawn one); 128 samples make 8 batches of 16 and 2 of 64, one step each
    # (Keras' default steps_per_execution).
    assert totals["fits"] == 2
    assert totals["steps"] == 128 // 16 + 128 // 64
    assert totals["calls"] == totals["steps"]


def test_step_count_of_an_epoch_that_ends_in_a_partial_call():
    """A 5-step epoch at 4 steps per call runs 4 + 1 steps, not 2 x 4."""
    import keras
    import numpy as np
    from bench import tuning

    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    model.compile("sgd", "mse", steps_per_execution=4)
    totals = tuning._new_totals()
    x = np.zeros((10, 3), "float32")
    model.fit(x, x[:, :1], batch_size=2, epochs=2, verbose=0,
              validation_data=(x, x[:, :1]),
              callbacks=[tuning._PlainTimer(totals)])  # fmt: skip
    assert totals["steps"] == 2 * 5
    assert totals["calls"] == 2 * 2
    assert totals["first_call_steps"] == 4
    # One validation per epoch, the fit's first timed apart; the second epoch
    # is the one whose time outside its calls counts per epoch.
    assert totals["tests"] == 2 and totals["fits"] == 1
    assert 0 < totals["first_test_s"] < totals["test_s"]
    assert totals["later_epochs"] == 1 and totals["later_epoch_outside_s"] > 0


@pytest.mark.parametrize(
    "per_epoch_s, steps",
    [
        # r = 0.01 / 0.2 = 0.05; 0.5 s per trial: S = 0.5 * 0.9 / (0.1 - 0.9 *
        # 0.05) = 8.18 s, 8,182 steps of 1 ms.
        (0.01, 8182),
        # r = 0.15: the share can't fall below 0.15 / 1.15 = 13%.
        (0.03, None),
    ],
)
def test_growth_splits_per_epoch_from_per_trial_costs(per_epoch_s, steps):
    from bench import tuning

    fits, epochs, call_s = 10, 30, 6.0
    # 20 later epochs measured; validations after the first take 5 ms.
    totals = {"tests": epochs, "fits": fits, "first_test_s": fits * 0.105,
              "test_s": fits * 0.105 + (epochs - fits) * 0.005,
              "later_epochs": epochs - fits,
              "later_epoch_outside_s": (epochs - fits) * per_epoch_s}  # fmt: skip
    # Outside steps: every epoch's per-epoch cost and 0.5 s per trial.
    split = {"step_s": 0.001, "in_steps_s": call_s,
             "outside_s": per_epoch_s * epochs + fits * 0.5}  # fmt: skip
    found = tuning._growth(totals, split, epochs, fits)
    assert found["validation_ms_per_epoch"] == pytest.approx(5.0)
    assert found["outside_calls_ms_per_epoch"] == pytest.approx(per_epoch_s * 1e3)
    assert found["per_trial_fixed_s"] == pytest.approx(0.5)
    ratio = per_epoch_s / 0.2
    assert found["share_floor_with_more_epochs"] == pytest.approx(
        ratio / (1 + ratio), abs=1e-4
    )
    assert found["steps_per_trial_for_target"] == steps


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


def _event(pid, tid, name, ts, dur):
    return {"ph": "X", "pid": pid, "tid": tid, "name": name, "ts": ts, "dur": dur}


def _names(pid, process, threads):
    yield {"ph": "M", "name": "process_name", "pid": pid, "args": {"name": process}}
    for tid, thread in threads.items():
        yield {"ph": "M", "name": "thread_name", "pid": pid, "tid": tid,
               "args": {"name": thread}}  # fmt: skip


def test_trace_summary_reads_the_device_ops_line():
    from bench import profiles

    events = [
        *_names(1, "/device:GPU:0", {10: "XLA Ops", 11: "Stream #7(Compute)"}),
        *_names(2, "/host:CPU", {20: "python"}),
        # Two steps: a 30 us convolution and a 10 us fusion each.
        _event(1, 10, "cudnn-conv.1", 0, 30), _event(1, 10, "fusion.2", 30, 10),
        _event(1, 10, "cudnn-conv.1", 100, 30), _event(1, 10, "fusion.2", 130, 10),
        # Kernels and host events are other lines: not counted.
        _event(1, 11, "sm90_kernel", 0, 25), _event(2, 20, "PjitFunction", 0, 500),
    ]  # fmt: skip
    summary = profiles.summarize_events(events, steps=2)
    assert summary["source"] == "device XLA ops"
    assert summary["lines"] == ["XLA Ops"]
    assert summary["busy_ms_per_step"] == (30 + 10) / 1000
    assert [row["name"] for row in summary["top"]] == ["cudnn-conv.1", "fusion.2"]
    assert [row["share"] for row in summary["top"]] == [0.75, 0.25]
    assert [row["calls_per_step"] for row in summary["top"]] == [1, 1]
    assert summary["kinds"] == {"convolution": 0.75, "elementwise": 0.25}
    # Without an ops line, the device's streams (kernels).
    streams = [e for e in events if e.get("tid") != 10 or e["ph"] == "M"]
    streams = [e for e in streams if e.get("args", {}).get("name") != "XLA Ops"]
    summary = profiles.summarize_events(streams, steps=1)
    assert summary["source"] == "device streams"
    assert summary["busy_ms_per_step"] == 25 / 1000


def test_nested_events_count_their_own_time_only():
    from bench import profiles

    events = [
        {"name": "executor", "ts": 0, "dur": 100},
        {"name": "op.1", "ts": 10, "dur": 20},
        {"name": "op.2", "ts": 50, "dur": 10},
        {"name": "op.3", "ts": 200, "dur": 5},  # after the executor ended
    ]
    assert dict(profiles.self_times(events)) == {
        "executor": 70.0, "op.1": 20.0, "op.2": 10.0, "op.3": 5.0,
    }  # fmt: skip


def test_torch_summary_counts_kernels_not_the_operators_that_launched_them():
    from types import SimpleNamespace

    from bench import profiles

    def event(key, device, self_device, self_cpu=0.0, count=2):
        return SimpleNamespace(key=key, device_type=f"DeviceType.{device}",
                               self_device_time_total=self_device,
                               self_cpu_time_total=self_cpu, count=count)  # fmt: skip

    events = [
        # An operator that also reports its kernel's 300 us as its own.
        event("aten::cudnn_convolution", "CPU", 300.0, self_cpu=40.0),
        event("sm90_xmma_fprop_implicit_gemm_bf16", "CUDA", 300.0),
        event("void at::native::vectorized_elementwise_kernel", "CUDA", 100.0),
    ]
    trace = SimpleNamespace(key_averages=lambda: events)
    summary = profiles.torch_kernels(trace, steps=2, cuda=True)
    assert summary["busy_ms_per_step"] == (300 + 100) / 1000 / 2
    assert [row["share"] for row in summary["top"]] == [0.75, 0.25]
    assert summary["top"][0]["calls_per_step"] == 1
    # Without CUDA: the operators' own CPU time.
    summary = profiles.torch_kernels(trace, steps=1, cuda=False)
    assert summary["busy_ms_per_step"] == 40 / 1000


def test_operation_kinds():
    from bench import profiles

    assert profiles.kind("cudnn-conv-bias-activation.7") == "convolution"
    assert profiles.kind("sm90_xmma_fprop_implicit_gemm_bf16") == "convolution"
    assert profiles.kind("cublas-gemm.3") == "matmul"
    assert profiles.kind("cudnn-fmha.1") == "attention"
    assert profiles.kind("loop_add_fusion.12") == "elementwise"
    assert profiles.kind("wrapped_convert.39") == "elementwise"  # a cast
    assert profiles.kind("loop_convert_fusion.3") == "elementwise"
    assert profiles.kind("aten::add_") == "elementwise"
    assert profiles.kind("aten::native_batch_norm_backward") == "normalization"
    assert profiles.kind("triton_red_fused_native_batch_norm_0") == "normalization"
    assert profiles.kind("triton_red_fused_sum_1") == "reduction"
    assert profiles.kind("reduce-window.2") == "reduction"
    assert profiles.kind("transpose.4") == "copy"
    assert profiles.kind("while.3") == "other"

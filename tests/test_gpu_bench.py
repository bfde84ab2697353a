"""The GPU benchmark (benchmarks/gpu_bench.py) runs at toy sizes on a CPU.

One ``--quick`` run in a subprocess, JAX backend. Timings are never asserted:
only that every part ran and wrote its record, that every ratio is finite and
positive (or, for the PyTorch contender, that the reason it was skipped is
recorded), and that the Transformer's training FLOPs equal a count done here
by hand.
"""

from __future__ import annotations

import importlib.util
import json
import math

import numpy as np
import pytest

from tests.conftest import ROOT, run_python

pytestmark = [
    pytest.mark.skipif(
        importlib.util.find_spec("jax") is None, reason="the benchmark runs on JAX"
    ),
]

PARTS = ("resnet50", "transformer", "runner")


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("gpu_bench")
    done = run_python(
        str(ROOT / "benchmarks" / "gpu_bench.py"), "--quick", "--profile",
        "--out", str(out), timeout=600, KERAS_BACKEND="jax",
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    return out, json.loads((out / "gpu_bench.json").read_text()), done


def _check_ratio(ratio, where):
    assert set(ratio) >= {"median", "low", "high", "n"}, where
    for key in ("median", "low", "high"):
        assert math.isfinite(ratio[key]) and ratio[key] > 0, (where, ratio)
    assert ratio["low"] <= ratio["median"] <= ratio["high"], (where, ratio)
    assert ratio["n"] >= 1, where


@pytest.mark.slow
def test_every_part_has_a_ratio(quick_run):
    _, data, _ = quick_run
    assert data["quick"] is True
    assert data["machine"]["backend"] == "jax"
    for name in PARTS:
        part = data[name]
        assert "error" not in part, (name, part.get("traceback"))
        assert "skipped" not in part, (name, part)
        assert part["seconds"] > 0
    _check_ratio(data["transformer"]["ratio"], "transformer")
    # Beside the default, the same network with dropout on the attention
    # weights (unfused); the fused and unfused attention agree in bf16.
    assert data["transformer"]["config"]["attention_dropout"] == 0.0
    (variant,) = data["transformer"]["variants"].values()
    assert variant["changes"] == {"attention_dropout": 0.1}
    _check_ratio(variant["default_speed_over_this"], "transformer variant")
    assert 0 <= data["transformer"]["fused_vs_unfused_max_abs_gap_bf16"] < 0.1
    _check_ratio(data["runner"]["ratio"], "runner")
    _check_ratio(data["runner"]["model_over_plain"], "runner model")
    # The runner part compares the same network: the twin is checked by count.
    assert data["runner"]["params"] > 0
    assert set(data["runner"]["images_per_s"]) == {
        "annzoo runner",
        "annzoo model, plain fit",
        "plain Keras",
    }


@pytest.mark.slow
def test_resnet50_ratio_or_the_reason_pytorch_was_skipped(quick_run):
    _, data, _ = quick_run
    part = data["resnet50"]
    keras_rates = part["images_per_s"]["annzoo resnet50 (Keras, JAX)"]
    assert keras_rates and all(math.isfinite(r) and r > 0 for r in keras_rates)
    torch_here = all(importlib.util.find_spec(m) for m in ("torch", "timm"))
    if torch_here:
        assert "skipped" not in part["torch"], part["torch"]
        _check_ratio(part["ratio"], "resnet50")
    else:
        reason = part["torch"]["skipped"]
        assert isinstance(reason, str) and ("torch" in reason or "timm" in reason)
        assert part["ratio"] is None


@pytest.mark.slow
def test_resnet50_variant_with_one_pass_batch_statistics(quick_run):
    _, data, _ = quick_run
    (variant,) = data["resnet50"]["variants"].values()
    # --quick's ResNet: depth (1, 1, 1, 1) of bottleneck blocks, 3 convolutions
    # each and a projection shortcut: 16 batch normalizations, and the stem's.
    assert variant["changes"].endswith("(17 layers)")
    _check_ratio(variant["default_speed_over_this"], "resnet50 variant")


def test_one_pass_batch_statistics_match_numpy():
    import sys

    import keras
    import numpy as np

    sys.path.insert(0, str(ROOT / "benchmarks"))
    import gpu_bench

    x = np.random.default_rng(0).normal(3.0, 2.0, (8, 5, 5, 4)).astype("float32")
    inputs = keras.Input((5, 5, 4))
    norm = keras.layers.BatchNormalization(epsilon=1e-3)
    model = keras.Model(inputs, norm(inputs))
    assert gpu_bench._one_pass_batch_norm(model) == 1
    assert norm._moments.__func__ is gpu_bench._one_pass_moments
    out = keras.ops.convert_to_numpy(norm(x, training=True))
    mean = x.mean(axis=(0, 1, 2))
    variance = ((x - mean) ** 2).mean(axis=(0, 1, 2))
    np.testing.assert_allclose(out, (x - mean) / np.sqrt(variance + 1e-3), atol=1e-4)
    # Moving statistics: momentum 0.99 from a mean of 0 and a variance of 1.
    moving = keras.ops.convert_to_numpy(norm.moving_variance)
    np.testing.assert_allclose(moving, 0.99 + 0.01 * variance, rtol=1e-5)


@pytest.mark.slow
def test_transformer_flops_match_a_hand_count(quick_run):
    _, data, _ = quick_run
    part = data["transformer"]
    config = part["config"]
    batch, length = config["batch"], config["sequence_length"]
    d, ff = config["d_model"], config["ff_dim"]
    layers, classes = config["num_layers"], config["num_classes"]
    assert d % config["num_heads"] == 0  # key_dim = d / heads: width d
    # Per block: query, key, value, output projections (d x d each) and the
    # feed-forward layers (d x ff, ff x d); applied to every token.
    per_token = layers * (4 * d * d + 2 * d * ff)
    head = d * classes  # the output layer, once per sample
    # Per block and sample: Q K^T and weights x V, 2*s*s*d multiply-adds each
    # forward; training is forward + backward = 3 times the forward.
    attention = layers * batch * 3 * (2 * 2 * length * length * d)
    expected = 6 * per_token * batch * length + 6 * head * batch + attention
    flops = part["flops"]
    assert flops["matmul_params_per_token"] == per_token
    assert flops["head_matmul_params"] == head
    assert flops["attention_flops_per_step"] == attention
    assert flops["flops_per_step"] == expected
    assert "flops_per_step = " in flops["formula"]
    assert part["matmul"]["flops"] == 2 * part["matmul"]["n"] ** 3


@pytest.mark.slow
def test_table_progress_and_atomic_output(quick_run):
    out, _, done = quick_run
    assert "| figure |" in done.stdout
    for label in ("(a) ", "(b) ", "(c) "):
        assert label in done.stdout
    for name in PARTS:
        assert f"gpu_bench: {name}: done" in done.stderr
    # Written through a temporary file and a rename: nothing else is left.
    assert sorted(p.name for p in out.iterdir()) == ["gpu_bench.json"]


@pytest.mark.slow
def test_profiles_of_the_keras_contenders(quick_run):
    """--profile: each Keras contender's time per step by operation (on a CPU,
    XLA's host threads), with shares that add up."""
    _, data, _ = quick_run
    names = {
        "resnet50": ["annzoo resnet50 (Keras, JAX)", *data["resnet50"]["variants"]],
        "transformer": ["annzoo transformer", *data["transformer"]["variants"]],
    }
    for part, expected in names.items():
        profile = data[part]["profile"]
        for name in expected:
            summary = profile[name]
            assert "error" not in summary, (part, name, summary)
            assert summary["busy_ms_per_step"] > 0
            assert summary["top"] and summary["operations"] >= len(summary["top"])
            assert math.isclose(sum(summary["kinds"].values()), 1.0, abs_tol=1e-3)
            shares = [row["share"] for row in summary["top"]]
            assert shares == sorted(shares, reverse=True) and sum(shares) <= 1.001


@pytest.mark.slow
def test_gpu_tune_reports_the_search_and_its_compile_time(tmp_path):
    done = run_python(
        str(ROOT / "benchmarks" / "gpu_tune.py"), "--out", str(tmp_path),
        "--trials", "2", "--epochs", "1", timeout=600, KERAS_BACKEND="jax",
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    data = json.loads((tmp_path / "gpu_tune.json").read_text())
    assert data["trials_completed"] == 2
    assert 0 < data["share_inside_training_epochs"] < 1
    # Each trial's new network compiles its train and test steps at least.
    compiled = data["compile"]["xla_compile"]
    assert compiled["calls"] >= 2 * 2 and compiled["s"] > 0
    assert data["compile"]["tracing"]["calls"] >= 2 * 2
    assert not list(tmp_path.glob("*.partial"))


PHILOX_CHECK = r"""
import json, sys
sys.path.insert(0, "benchmarks")
import numpy as np, keras
import gpu_bench

rate, shape = 0.25, (2048, 64)
inner = keras.Sequential([keras.Input((64,)), keras.layers.Dropout(0.5)])
model = keras.Sequential(
    [keras.Input((64,)), keras.layers.Dropout(rate, seed=1), inner,
     keras.layers.Dense(3)]
)
changed = gpu_bench._philox_dropout(model)
layer = model.layers[0]
ones = np.ones(shape, "float32")
first = keras.ops.convert_to_numpy(layer(ones, training=True))
second = keras.ops.convert_to_numpy(layer(ones, training=True))
again = keras.layers.Dropout(rate, seed=1)
gpu_bench._replace_method(
    keras.Sequential([keras.Input((64,)), again]), keras.layers.Dropout, "call",
    gpu_bench._philox_dropout_call,
)
repeat = keras.ops.convert_to_numpy(again(ones, training=True))
model.compile(optimizer="sgd", loss=keras.losses.MeanSquaredError())
history = model.fit(ones[:64], np.zeros((64, 3)), epochs=1, verbose=0)
print(json.dumps({
    "changed": changed,
    "kept": float((first != 0).mean()),
    "values": sorted(set(first[first != 0].tolist())),
    "new_mask_each_draw": bool((first != second).any()),
    "same_seed_same_mask": bool((first == repeat).all()),
    "inference_unchanged": bool(
        (keras.ops.convert_to_numpy(layer(ones, training=False)) == 1).all()
    ),
    "trains": bool(np.isfinite(history.history["loss"][0])),
}))
"""


@pytest.mark.slow
def test_philox_dropout_variant_keeps_one_minus_rate_and_rescales():
    done = run_python("-c", PHILOX_CHECK, timeout=300, KERAS_BACKEND="jax")
    assert done.returncode == 0, done.stderr[-3000:]
    found = json.loads(done.stdout.strip().splitlines()[-1])
    assert found.pop("changed") == 2  # the top Dropout and the nested model's
    # 131,072 draws kept with probability 0.75: five binomial standard errors.
    assert abs(found.pop("kept") - 0.75) < 5 * math.sqrt(0.75 * 0.25 / (2048 * 64))
    # Kept inputs of 1 scaled by 1 / (1 - rate), in float32.
    assert found.pop("values") == [float(np.float32(1) / np.float32(0.75))]
    # A new mask at every draw, the same masks from the same seed, inputs
    # unchanged at inference, and the step trains under jit.
    assert all(found.values()) and len(found) == 4, found

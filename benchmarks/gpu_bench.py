"""GPU benchmark: annzoo against the fastest ways to train the same networks.

Three figures, each a ratio of two contenders timed in this one process:
every contender is warmed up (traced and compiled), then they are measured in
turn, A/B/A/B..., and each repeat's ratio is taken between the measurements
made next to each other; the figure is the median of those ratios, with the
lowest and highest (see ``benchmarks/bench/core.py``). Data is synthetic.

(a) ``resnet50``: training throughput (images/s) of annzoo's ``resnet50``
    (Keras 3 on JAX, ``mixed_bfloat16``, SGD with momentum, batch 256 at
    224x224, uint8 images already on the device and scaled by a
    ``Rescaling`` layer in the model) over that of timm's ``resnet50`` in
    PyTorch (AMP bf16 autocast, channels-last, ``torch.compile``, SGD with
    momentum, the same uint8 images on the device scaled inside the compiled
    module). Target >= 1.0. Timed beside them, the same annzoo network
    with each change of ``RESNET_VARIANTS`` (one-pass batch statistics), to
    find what closes the gap.
(b) ``transformer``: the model FLOP/s achieved by an annzoo Transformer
    encoder classifier (6 layers, d_model 512, 8 heads, ff 2048, sequence 256,
    batch 128, ``mixed_bfloat16``, the builder's default dropouts; training
    FLOPs counted analytically, the formula is in the JSON) over the FLOP/s
    of a bf16 8192^3 matmul through ``jax.numpy``. Target >= 0.5. Timed
    beside them, the same network with dropout on the attention weights
    (which keeps the attention unfused) and with no dropout at all.
(c) ``runner``: training throughput of the ``cifar10_resnet20`` recipe run by
    annzoo's recipe runner (its model, input pipeline and callback bundle as
    ``annzoo train`` builds them, on a registered synthetic 32x32x3 dataset)
    over that of the same ResNet-20 written by hand in plain Keras, compiled
    alike and trained with a plain ``model.fit(x, y, batch_size=...,
    shuffle=True)``; float32, augmentation off on both sides (see
    `runner_vs_plain_keras`). Target >= 0.98.

    KERAS_BACKEND=jax python benchmarks/gpu_bench.py --out OUT_DIR [--quick] [--profile]

``--profile`` then runs a few steps of each contender of (a) and (b) under
JAX's profiler (PyTorch's for timm) and adds to the JSON where each one's
device time per step goes: the operations that took most of it and the
shares by kind (convolution, matmul, attention, elementwise...), from
`bench.profiles`.

Writes ``OUT_DIR/gpu_bench.json`` (atomically, after every part, so a run cut
short keeps the parts it finished) and prints a markdown table; progress goes
to stderr. A part that fails records its error and the others still run.
``--quick`` uses toy sizes (32x32 images, batch 8, a 2-layer Transformer, one
repeat) and runs on a CPU, with or without PyTorch and timm (without them the
PyTorch contender is recorded as skipped, with the reason).
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import gc
import json
import math
import os
import platform
import sys
import tempfile
import time
import traceback
from importlib import metadata
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "benchmarks"), str(ROOT)]

RESULT_FILE = "gpu_bench.json"
RECIPE = "cifar10_resnet20"
KERAS_RESNET = "annzoo resnet50 (Keras, JAX)"
TORCH_RESNET = "timm resnet50 (PyTorch)"
TRANSFORMER = "annzoo transformer"
MATMUL = "bf16 matmul"
RUNNER = "annzoo runner"
MODEL_PLAIN_FIT = "annzoo model, plain fit"
PLAIN_KERAS = "plain Keras"
FLOP_FORMULA = (
    "flops_per_step = 6 * matmul_params_per_token * batch * sequence_length"
    " + 6 * head_matmul_params * batch"
    " + 12 * num_layers * sequence_length**2 * attention_width * batch;"
    " matmul_params_per_token = the kernels of the encoder blocks ="
    " num_layers * (4 * d_model * attention_width + 2 * d_model * ff_dim)"
    " (query, key, value and output projections, the two feed-forward layers);"
    " head_matmul_params = the kernels applied once per sample (the classifier"
    " head); attention_width = num_heads * key_dim; 12 * s^2 * width per layer"
    " and sample is QK^T and attention-times-V, 2 * 2 * s^2 * width forward,"
    " times 3 for forward and backward. Not counted: biases, normalization,"
    " softmax, dropout, embeddings, the optimizer update."
)


def say(message: str) -> None:
    """One progress line on stderr."""
    print(f"gpu_bench: {message}", file=sys.stderr, flush=True)


@dataclasses.dataclass(frozen=True)
class Sizes:
    """What each part measures: full sizes for the GPU, toy ones for a CPU."""

    quick: bool
    repeats: int  # measurements per contender, alternating
    target_s: float  # seconds of training per measurement, roughly
    # (a) ResNet-50
    resnet_batch: int
    resnet_image: int
    resnet_classes: int
    resnet_steps: int  # steps per measured epoch
    resnet_depth: tuple[int, ...]  # bottleneck blocks per stage
    # (b) Transformer and matmul
    tf_batch: int
    tf_sequence: int
    tf_d_model: int
    tf_heads: int
    tf_ff: int
    tf_layers: int
    tf_vocabulary: int
    tf_classes: int
    tf_steps: int
    matmul_n: int
    matmul_per_epoch: int  # matmuls per measured "epoch"
    # (c) recipe runner
    runner_train: int
    runner_validation: int
    runner_batch: int | None  # None: the recipe's
    runner_model: dict[str, Any]  # overrides of the recipe's model section
    profile: bool = False  # --profile: kernel tables of (a) and (b)
    profile_steps: int = 8  # steps profiled per contender


FULL = Sizes(
    quick=False, repeats=5, target_s=1.0,
    resnet_batch=256, resnet_image=224, resnet_classes=1000, resnet_steps=32,
    resnet_depth=(3, 4, 6, 3),
    tf_batch=128, tf_sequence=256, tf_d_model=512, tf_heads=8, tf_ff=2048,
    tf_layers=6, tf_vocabulary=8192, tf_classes=10, tf_steps=32,
    matmul_n=8192, matmul_per_epoch=10,
    # 352 steps of 128: the recipe's 45k CIFAR-10 train split, no partial batch.
    runner_train=128 * 352, runner_validation=1024, runner_batch=None,
    runner_model={},
)  # fmt: skip
QUICK = Sizes(
    quick=True, repeats=1, target_s=0.0,
    resnet_batch=8, resnet_image=32, resnet_classes=10, resnet_steps=2,
    resnet_depth=(1, 1, 1, 1),
    tf_batch=8, tf_sequence=16, tf_d_model=32, tf_heads=4, tf_ff=64,
    tf_layers=2, tf_vocabulary=64, tf_classes=4, tf_steps=2,
    matmul_n=256, matmul_per_epoch=2,
    runner_train=64, runner_validation=8, runner_batch=8,
    runner_model={"depth": 1}, profile_steps=2,
)  # fmt: skip
# Seconds each part takes on an H100 (compiles included), to skip a part that
# would not finish within --budget-s rather than lose the whole run.
ESTIMATES_S = {"resnet50": 200, "transformer": 120, "runner": 120}


def _configure_environment() -> None:
    """Before JAX is imported: the backend, and GPU memory shared with PyTorch.

    JAX would take 75% of the GPU at start; instead it allocates as it goes,
    up to a cap that leaves PyTorch the rest.
    """
    os.environ.setdefault("KERAS_BACKEND", "jax")
    os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
    os.environ.setdefault("XLA_PYTHON_CLIENT_MEM_FRACTION", "0.45")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def _settings(sizes: Sizes, work: Path):
    from bench import core

    return core.Settings(
        quick=sizes.quick,
        work_dir=work,
        figures_dir=work,
        repeats=sizes.repeats,
        target_s=sizes.target_s,
    )


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def machine() -> dict[str, Any]:
    """The accelerator as JAX sees it, and the library versions."""
    import jax
    import keras

    import annzoo

    device = jax.devices()[0]
    versions = {"python": platform.python_version(), "annzoo": annzoo.__version__}
    for package in ("keras", "jax", "jaxlib", "numpy", "torch", "timm"):
        versions[package] = _version(package) or "not installed"
    return {
        "device": f"{device.platform}:{getattr(device, 'device_kind', '?')}",
        "device_count": jax.device_count(),
        "backend": keras.backend.backend(),
        "versions": versions,
        "platform": platform.platform(),
        "environment": {
            k: os.environ.get(k)
            for k in (
                "KERAS_BACKEND",
                "XLA_PYTHON_CLIENT_PREALLOCATE",
                "XLA_PYTHON_CLIENT_MEM_FRACTION",
                "XLA_FLAGS",
            )
        },
    }


def _compile_defaults() -> dict[str, Any]:
    """annzoo's default compile settings (a recipe's), read now."""
    from annzoo.training.recipe import SECTION_DEFAULTS

    defaults = SECTION_DEFAULTS["compile"]
    return {
        "jit_compile": defaults["jit_compile"],
        "steps_per_execution": defaults["steps_per_execution"],
    }


def _on_device_feed(x, y, steps: int):
    """A ``PyDataset`` of ``steps`` batches, every one the same device arrays."""
    import keras

    class OnDevice(keras.utils.PyDataset):
        def __len__(self):
            return steps

        def __getitem__(self, index):
            return x, y

    return OnDevice()


def _per_second(amount: float, seconds_per_step: list[float]) -> list[float]:
    return [round(amount / s, 3) for s in seconds_per_step]


def _median(values: list[float]) -> float:
    import statistics

    return statistics.median(values)


def _free_memory() -> None:
    """Drops what the last part left: Keras state, PyTorch's compiled graphs
    and cached GPU blocks (JAX and PyTorch share the GPU)."""
    import keras

    keras.backend.clear_session()
    gc.collect()
    torch = sys.modules.get("torch")
    if torch is not None:
        torch._dynamo.reset()
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()


# -- (a) ResNet-50 against timm ------------------------------------------------


def _annzoo_resnet50(sizes: Sizes):
    """annzoo's ``resnet50`` behind a ``Rescaling`` of uint8 images, compiled."""
    import keras

    import annzoo

    shape = (sizes.resnet_image, sizes.resnet_image, 3)
    base = annzoo.create_model(
        "resnet50",
        input_shape=shape,
        num_classes=sizes.resnet_classes,
        depth=sizes.resnet_depth,
        compile=False,
    )
    images = keras.Input(shape, dtype="uint8", name="images")
    scaled = keras.layers.Rescaling(1.0 / 255, name="rescale")(images)
    model = keras.Model(images, base(scaled), name="resnet50_uint8")
    annzoo.compile_model(
        model,
        task="multiclass",
        optimizer=keras.optimizers.SGD(learning_rate=0.1, momentum=0.9),
        metrics=[],  # the PyTorch loop computes the loss only
        **_compile_defaults(),
    )
    return model


class TorchFailed(RuntimeError):
    """The PyTorch contender failed while being measured."""


def _timm_contender(sizes: Sizes, images, labels) -> tuple[Any, dict]:
    """timm's resnet50 in PyTorch: ``(run(epochs), info)``.

    The first step (``torch.compile``'s trace and compile, about 70 s on an
    H100) runs here, so that a failure leaves the Keras figures intact; if
    compiling fails the contender runs eagerly and says so.
    """
    import timm
    import torch

    cuda = torch.cuda.is_available()
    if not cuda and not sizes.quick:
        raise RuntimeError("PyTorch sees no CUDA device")
    device = "cuda" if cuda else "cpu"
    torch.manual_seed(0)
    torch.backends.cudnn.benchmark = True

    class Scaled(torch.nn.Module):
        """uint8 images in, scaled to [0, 1] inside the (compiled) module."""

        def __init__(self, net):
            super().__init__()
            self.net = net

        def forward(self, x):
            return self.net(x.float().div(255.0))

    # `layers` only when it differs from resnet50's own (older timm versions
    # reject it as a second value of that argument).
    depth = {} if sizes.resnet_depth == (3, 4, 6, 3) else {"layers": sizes.resnet_depth}
    net = timm.create_model("resnet50", num_classes=sizes.resnet_classes, **depth)
    model = Scaled(net).to(device).to(memory_format=torch.channels_last).train()
    # NHWC bytes seen as NCHW with channels-last strides: no copy, no transpose.
    x = torch.from_numpy(images).permute(0, 3, 1, 2).to(device)
    x = x.contiguous(memory_format=torch.channels_last)
    y = torch.from_numpy(labels).long().to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    info: dict[str, Any] = {
        "device": torch.cuda.get_device_name(0) if cuda else "cpu",
        "torch": torch.__version__,
        "timm": timm.__version__,
        "params": sum(p.numel() for p in model.parameters()),
        "autocast": "bfloat16",
        "memory_format": "channels_last",
    }

    def sync():
        if cuda:
            torch.cuda.synchronize()

    forward = model
    if cuda:  # torch.compile on a CPU would build C++ kernels: far too slow
        forward = torch.compile(model)

    def step(module):
        with torch.autocast(device_type=device, dtype=torch.bfloat16):
            loss = torch.nn.functional.cross_entropy(module(x), y)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    started = time.perf_counter()
    try:
        step(forward)
        sync()
        info["compiled"] = forward is not model
    except Exception as error:
        if forward is model:
            raise
        say(f"resnet50: torch.compile failed, eager instead: {error!r}")
        info["compiled"] = False
        info["compile_error"] = repr(error)[:2000]
        forward = model
        step(forward)
        sync()
    info["first_step_s"] = round(time.perf_counter() - started, 2)
    steps = sizes.resnet_steps

    def run(epochs: int) -> tuple[float, int]:
        try:
            sync()
            start = time.perf_counter()
            for _ in range(epochs * steps):
                step(forward)
            sync()
        except Exception as error:
            raise TorchFailed(repr(error)) from error
        return time.perf_counter() - start, epochs * steps

    def profile(count: int) -> dict[str, Any]:
        from bench import profiles
        from torch.profiler import ProfilerActivity
        from torch.profiler import profile as torch_profile

        activities = [ProfilerActivity.CPU]
        if cuda:
            activities.append(ProfilerActivity.CUDA)
        sync()
        with torch_profile(activities=activities) as trace:
            for _ in range(count):
                step(forward)
            sync()
        return profiles.torch_kernels(trace, count, cuda)

    run.profile = profile
    return run, info


def _one_pass_moments(layer, inputs, mask):
    """A batch's mean and variance in one pass over it: E[x], E[x^2] - E[x]^2
    (float32, as Keras computes batch statistics; Flax's ``use_fast_variance``
    and the fused kernels of cuDNN and torch.compile read the activations once
    too). Keras takes the variance around the mean: a second pass."""
    from keras import ops

    if mask is not None:
        return type(layer)._moments(layer, inputs, mask)
    axes = layer._reduction_axes
    mean = ops.mean(inputs, axis=axes)
    mean_of_squares = ops.mean(ops.square(inputs), axis=axes)
    return mean, ops.maximum(mean_of_squares - ops.square(mean), 0.0)


def _replace_method(model, kind, name: str, method) -> int:
    """Binds ``method`` as ``name`` on every layer of ``model`` (nested ones
    too) of class ``kind``; returns how many were changed."""
    import types

    changed = 0
    # Keras' own walk: nested models and the layers inside custom layers.
    for layer in model._flatten_layers(include_self=False, recursive=True):
        if isinstance(layer, kind):
            setattr(layer, name, types.MethodType(method, layer))
            changed += 1
    return changed


def _one_pass_batch_norm(model) -> int:
    """Every BatchNormalization of ``model`` (nested models too) computes its
    batch statistics with `_one_pass_moments`; returns how many were changed."""
    import keras

    return _replace_method(
        model, keras.layers.BatchNormalization, "_moments", _one_pass_moments
    )


def _philox_dropout_call(layer, inputs, training=False):
    """A Dropout layer's call whose mask comes from XLA's random-bit generator
    (Philox 4x32, one 32-bit draw per element, kept where the draw is below
    ``(1 - rate) * 2**32``), keyed by the layer's own Keras seed as Keras' draw
    is. Keras draws its masks with ``jax.random.bernoulli`` (threefry, more
    integer work per random bit); (b)'s dropouts cost 13% of its step on an H200.
    On a 2-core CPU this variant was slower (an MLP epoch with dropout 0.3:
    0.46 s against 0.42 s), so it is timed on the GPU only. JAX only."""
    import jax
    import jax.numpy as jnp
    from keras.src.random.seed_generator import draw_seed

    if not training or layer.rate <= 0:
        return inputs
    keep = 1.0 - layer.rate
    shape = tuple(
        size if size is not None else inputs.shape[axis]
        for axis, size in enumerate(layer.noise_shape or inputs.shape)
    )
    seed = jnp.asarray(draw_seed(layer.seed_generator), jnp.uint32).reshape(2)
    state = jnp.concatenate([seed, jnp.zeros(2, jnp.uint32)])
    _, bits = jax.lax.rng_bit_generator(
        state, shape, jnp.uint32, algorithm=jax.lax.RandomAlgorithm.RNG_PHILOX
    )
    threshold = jnp.uint32(min(round(keep * 2**32), 2**32 - 1))
    kept = jnp.broadcast_to(bits < threshold, inputs.shape)
    return jax.lax.select(kept, inputs / keep, jnp.zeros_like(inputs))


def _philox_dropout(model) -> int:
    """Every Dropout layer of ``model`` draws its mask with
    `_philox_dropout_call`; returns how many were changed."""
    import keras

    return _replace_method(model, keras.layers.Dropout, "call", _philox_dropout_call)


# Changes to annzoo's resnet50 timed beside it (a default changes only where
# such a measurement shows it wins): name -> a function changing the model.
RESNET_VARIANTS = {
    "one-pass batch-norm statistics": _one_pass_batch_norm,
}


# The same network timed beside (b)'s default, to show what its dropouts cost:
# the former default (dropout on the attention weights, which needs them
# unfused), none at all, and masks from a cheaper generator. Builder
# arguments, or a function changing the built model (as in `RESNET_VARIANTS`).
TRANSFORMER_VARIANTS = {
    "attention_dropout=0.1 (unfused attention)": {"attention_dropout": 0.1},
    "dropout=0 (no dropout at all)": {"dropout": 0.0},
    "dropout masks from XLA's Philox bit generator": _philox_dropout,
}


def resnet50_vs_timm(sizes: Sizes, work: Path) -> dict[str, Any]:
    """(a) annzoo resnet50 images/s over timm resnet50 images/s."""
    import jax
    import keras
    import numpy as np
    from bench import core

    from annzoo import tasks

    batch = sizes.resnet_batch
    rng = np.random.default_rng(0)
    shape = (batch, sizes.resnet_image, sizes.resnet_image, 3)
    images = rng.integers(0, 256, size=shape, dtype=np.uint8)
    labels = rng.integers(0, sizes.resnet_classes, size=(batch,), dtype=np.int32)
    record: dict[str, Any] = {
        "what": "training images/s of annzoo resnet50 (Keras 3, JAX) over timm "
        "resnet50 (PyTorch); ratio > 1: annzoo faster",
        "target": ">= 1.0",
        "batch": batch,
        "image_size": sizes.resnet_image,
        "classes": sizes.resnet_classes,
        "depth": list(sizes.resnet_depth),
        "steps_per_measurement_epoch": sizes.resnet_steps,
        "keras": {
            "precision": "mixed_bfloat16",
            "optimizer": "SGD(learning_rate=0.1, momentum=0.9)",
            "input": "uint8 on the device (a PyDataset returning the same device "
            "arrays), Rescaling(1/255) in the model",
            **_compile_defaults(),
        },
    }
    with tasks.mixed_precision("bfloat16"):
        keras.utils.set_random_seed(0)
        model = _annzoo_resnet50(sizes)
        record["keras"]["params"] = model.count_params()
        record["keras"]["resolved_jit_compile"] = bool(model.jit_compile)
        feed = _on_device_feed(
            jax.device_put(images), jax.device_put(labels), sizes.resnet_steps
        )
        contenders = [
            core.Contender(
                KERAS_RESNET, lambda epochs: core.timed_fit(model, feed, epochs=epochs)
            )
        ]
        variants = {}
        changed = {}
        for name, change in list(RESNET_VARIANTS.items())[: 1 if sizes.quick else None]:
            keras.utils.set_random_seed(0)
            variants[name] = _annzoo_resnet50(sizes)
            changed[name] = change(variants[name])
            contenders.append(
                core.Contender(
                    name,
                    lambda epochs, m=variants[name]: core.timed_fit(
                        m, feed, epochs=epochs
                    ),
                )
            )
        try:
            say("resnet50: PyTorch contender: building and compiling")
            run, info = _timm_contender(sizes, images, labels)
            record["torch"] = info
            contenders.append(core.Contender(TORCH_RESNET, run))
        except Exception as error:  # PyTorch and timm are optional (--quick)
            reason = f"{type(error).__name__}: {error}"
            say(f"resnet50: PyTorch contender skipped: {reason}")
            record["torch"] = {"skipped": reason[:2000]}
        settings = _settings(sizes, work)
        try:
            results = core.compare("resnet50", contenders, settings)
        except TorchFailed as error:
            # The PyTorch side failed while measured: keep annzoo's figure.
            record["torch"]["skipped"] = f"failed while measured: {error!r}"[:2000]
            say(f"resnet50: measuring without PyTorch after {error!r}")
            kept = [c for c in contenders if c.name != TORCH_RESNET]
            results = core.compare("resnet50", kept, settings)
        record["images_per_s"] = {
            name: _per_second(batch, values) for name, values in results.items()
        }
        record["median_images_per_s"] = {
            name: round(batch / _median(values), 1) for name, values in results.items()
        }
        if sizes.profile:
            torch_runs = {c.name: c.run for c in contenders if c.name == TORCH_RESNET}
            record["profile"] = _profiles(
                sizes, work / "profile_resnet50", feed, sizes.resnet_steps,
                {KERAS_RESNET: model, **variants},
                torch_runs if TORCH_RESNET in results else {},
            )  # fmt: skip
        record["variants"] = {
            name: {
                "changes": f"{RESNET_VARIANTS[name].__name__} ({changed[name]} layers)",
                "median_images_per_s": round(batch / _median(results[name]), 1),
                "default_speed_over_this": core.speedups(
                    results, KERAS_RESNET, name
                ).as_dict(),
            }
            for name in variants
        }
        if TORCH_RESNET in results:
            ratio = core.speedups(results, KERAS_RESNET, TORCH_RESNET)
            record["ratio"] = ratio.as_dict()
            record["met"] = ratio.median >= 1.0
        else:
            record["ratio"] = None
            record["met"] = None
    return record


def _profiles(sizes: Sizes, where: Path, feed, feed_steps: int, models: dict,
              torch_runs: dict | None = None) -> dict[str, Any]:  # fmt: skip
    """``--profile``: each contender's device time per step by operation.

    A Keras model trains one epoch of the feed (``feed_steps`` steps) under
    JAX's profiler; a PyTorch contender runs ``sizes.profile_steps`` steps
    under PyTorch's. A profile that fails records its error only.
    """
    from bench import core, profiles

    def keras_job(model, folder: Path):
        def run():
            core.timed_fit(model, feed, epochs=1)

        return lambda: profiles.jax_kernels(run, folder, feed_steps)

    jobs = {
        name: keras_job(model, where / str(i))
        for i, (name, model) in enumerate(models.items())
    }
    for name, run in (torch_runs or {}).items():
        jobs[name] = functools.partial(run.profile, sizes.profile_steps)
    found: dict[str, Any] = {}
    for name, job in jobs.items():
        say(f"profiling {name}")
        try:
            found[name] = job()
        except Exception as error:  # a profile is extra: keep the figures
            say(f"profiling {name} failed: {error!r}")
            found[name] = {"error": repr(error)[:2000]}
    return found


# -- (b) Transformer FLOP/s against a matmul -----------------------------------


def transformer_flops(model, *, batch: int, sequence_length: int) -> dict[str, Any]:
    """Training FLOPs of one step of an annzoo encoder classifier, analytically.

    The matmul parameters are read from the model's kernels: those of the
    encoder blocks act on every token, the others (the head) once per sample.
    """
    per_token = per_sample = 0
    width = None
    layers = set()
    for weight in model.weights:
        path = weight.path
        if not path.endswith("/kernel"):
            continue
        size = math.prod(weight.shape)
        if path.startswith("encoder_block"):
            per_token += size
            layers.add(path.split("/")[0])
            if path.endswith("self_attention/query/kernel"):
                width = math.prod(weight.shape[1:])
        else:
            per_sample += size
    if width is None or not layers:
        raise RuntimeError("No encoder block with a self_attention/query kernel.")
    tokens = batch * sequence_length
    attention = 12 * len(layers) * sequence_length**2 * width * batch
    flops = 6 * per_token * tokens + 6 * per_sample * batch + attention
    return {
        "formula": FLOP_FORMULA,
        "matmul_params_per_token": per_token,
        "head_matmul_params": per_sample,
        "attention_width": width,
        "num_layers": len(layers),
        "tokens_per_step": tokens,
        "attention_flops_per_step": attention,
        "flops_per_step": flops,
    }


def _default_dropouts() -> dict[str, float]:
    """build_transformer's default dropouts (the benchmark keeps them)."""
    import inspect

    import annzoo

    parameters = inspect.signature(annzoo.build_transformer).parameters
    return {k: parameters[k].default for k in ("dropout", "attention_dropout")}


def _flash_attention(batch: int, sequence: int, heads: int, depth: int):
    """Whether Keras will run attention of these shapes as cuDNN flash attention
    (its own check, a private function: None when it cannot be asked)."""
    try:
        import jax.numpy as jnp
        from keras.src.backend.jax.nn import _can_use_flash_attention

        q = jnp.zeros((batch, sequence, heads, depth), "bfloat16")
        return bool(_can_use_flash_attention(q, q, q, None))
    except Exception:
        return None


def _fused_matches_unfused(batch: int, sequence: int, heads: int, depth: int):
    """Largest gap between annzoo's fused and unfused attention, bf16 inputs."""
    import jax
    import numpy as np

    from annzoo.layers import fused_attention, scaled_dot_product_attention

    keys = jax.random.split(jax.random.PRNGKey(1), 3)
    q, k, v = (
        jax.random.normal(key, (batch, sequence, heads, depth), "bfloat16")
        for key in keys
    )
    mask = np.ones((batch, sequence, sequence), bool)
    mask[:, :, sequence // 2 :] = False  # half the keys padded
    fused = fused_attention(q, k, v, mask)
    swap = (0, 2, 1, 3)
    unfused = scaled_dot_product_attention(
        *(jax.numpy.transpose(t, swap) for t in (q, k, v)), mask[:, None]
    )
    gap = jax.numpy.abs(
        fused.astype("float32") - jax.numpy.transpose(unfused, swap).astype("float32")
    )
    return float(gap.max())


def transformer_vs_matmul(sizes: Sizes, work: Path) -> dict[str, Any]:
    """(b) achieved model FLOP/s of an annzoo Transformer over a bf16 matmul's."""
    import jax
    import jax.numpy as jnp
    import keras
    import numpy as np
    from bench import core

    import annzoo
    from annzoo import tasks

    config = dict(
        vocabulary_size=sizes.tf_vocabulary,
        sequence_length=sizes.tf_sequence,
        num_classes=sizes.tf_classes,
        d_model=sizes.tf_d_model,
        num_heads=sizes.tf_heads,
        ff_dim=sizes.tf_ff,
        num_layers=sizes.tf_layers,
    )
    batch = sizes.tf_batch
    compile_settings = _compile_defaults()
    record: dict[str, Any] = {
        "what": "model FLOP/s achieved by an annzoo Transformer encoder "
        "classifier in training over the FLOP/s of a bf16 matmul",
        "target": ">= 0.5",
        "config": {**config, "batch": batch, **_default_dropouts()},
        "keras": {
            "precision": "mixed_bfloat16",
            "optimizer": "adam (annzoo's default)",
            "input": "int32 token ids 1.. (no padding) on the device",
            **compile_settings,
        },
        "matmul": {
            "n": sizes.matmul_n,
            "dtype": "bfloat16",
            "flops": 2 * sizes.matmul_n**3,
            "how": "jax.jit(jnp.matmul) of two n x n bf16 arrays",
        },
    }
    with tasks.mixed_precision("bfloat16"):
        depth = sizes.tf_d_model // sizes.tf_heads
        shapes = (batch, sizes.tf_sequence, sizes.tf_heads, depth)
        record["keras"]["cudnn_flash_attention"] = _flash_attention(*shapes)
        record["fused_vs_unfused_max_abs_gap_bf16"] = _fused_matches_unfused(*shapes)

        def build(**overrides):
            keras.utils.set_random_seed(0)
            model = annzoo.build_transformer(**config, **overrides, compile=False)
            annzoo.compile_model(
                model, task="multiclass", optimizer="adam", **compile_settings
            )
            return model

        model = build()
        # --quick checks the harness: one variant shows the path works.
        chosen = list(TRANSFORMER_VARIANTS.items())[: 1 if sizes.quick else None]
        variants, changes = {}, {}
        for name, change in chosen:
            if isinstance(change, dict):
                variants[name], changes[name] = build(**change), change
            else:
                variants[name] = build()
                count = change(variants[name])
                changes[name] = f"{change.__name__} ({count} changed)"
        record["params"] = model.count_params()
        record["keras"]["resolved_jit_compile"] = bool(model.jit_compile)
        flops = transformer_flops(model, batch=batch, sequence_length=sizes.tf_sequence)
        record["flops"] = flops
        rng = np.random.default_rng(0)
        tokens = rng.integers(
            1, sizes.tf_vocabulary, size=(batch, sizes.tf_sequence), dtype=np.int32
        )
        labels = rng.integers(0, sizes.tf_classes, size=(batch,), dtype=np.int32)
        feed = _on_device_feed(
            jax.device_put(tokens), jax.device_put(labels), sizes.tf_steps
        )
        n = sizes.matmul_n
        first, second = jax.random.split(jax.random.PRNGKey(0))
        a = jax.random.normal(first, (n, n), dtype=jnp.bfloat16)
        b = jax.random.normal(second, (n, n), dtype=jnp.bfloat16)
        matmul = jax.jit(jnp.matmul)

        def run_matmul(epochs: int) -> tuple[float, int]:
            count = epochs * sizes.matmul_per_epoch
            a.block_until_ready()
            start = time.perf_counter()
            for _ in range(count):
                out = matmul(a, b)
            out.block_until_ready()  # in-order stream: the last done, all done
            return time.perf_counter() - start, count

        contenders = [
            core.Contender(
                TRANSFORMER, lambda epochs: core.timed_fit(model, feed, epochs=epochs)
            ),
            core.Contender(MATMUL, run_matmul),
            *(
                core.Contender(
                    name, lambda epochs, m=m: core.timed_fit(m, feed, epochs=epochs)
                )
                for name, m in variants.items()
            ),
        ]
        results = core.compare(
            "transformer", contenders, _settings(sizes, work), max_epochs=200
        )
        model_rates = [flops["flops_per_step"] / s for s in results[TRANSFORMER]]
        matmul_rates = [record["matmul"]["flops"] / s for s in results[MATMUL]]
        ratio = core.Ratio.of(
            [m / r for m, r in zip(model_rates, matmul_rates, strict=True)]
        )
        record["tflops_per_s"] = {
            TRANSFORMER: [round(r / 1e12, 4) for r in model_rates],
            MATMUL: [round(r / 1e12, 4) for r in matmul_rates],
        }
        record["median_tflops_per_s"] = {
            name: round(_median(values) / 1e12, 3)
            for name, values in (
                (TRANSFORMER, model_rates),
                (MATMUL, matmul_rates),
            )
        }
        record["seconds_per_step"] = {
            name: [round(v, 6) for v in values] for name, values in results.items()
        }
        record["ratio"] = ratio.as_dict()
        record["met"] = ratio.median >= 0.5
        if sizes.profile:
            record["profile"] = _profiles(
                sizes, work / "profile_transformer", feed, sizes.tf_steps,
                {TRANSFORMER: model, **variants},
            )  # fmt: skip
        record["variants"] = {
            name: {
                "changes": changes[name],
                "median_tflops_per_s": round(
                    flops["flops_per_step"] / _median(results[name]) / 1e12, 3
                ),
                "default_speed_over_this": core.speedups(
                    results, TRANSFORMER, name
                ).as_dict(),
            }
            for name in variants
        }
    return record


# -- (c) recipe runner against plain Keras -------------------------------------


def _synthetic_cifar(sizes: Sizes, name: str) -> None:
    """Registers ``name``: CIFAR-10-like float32 images in [0, 1], 10 classes."""
    import numpy as np

    from annzoo import datasets

    counts = {
        "train": sizes.runner_train,
        "validation": sizes.runner_validation,
        "test": sizes.runner_validation,
    }
    arrays = {}
    rng = np.random.default_rng(0)
    for split, count in counts.items():
        x = rng.random((count, 32, 32, 3), dtype=np.float32)
        y = (np.arange(count) % 10).astype(np.int32)  # every class present
        arrays[split] = (x, rng.permutation(y))
    classes = tuple(str(i) for i in range(10))

    def load(dataset: str, split: str, seed: int):
        x, y = arrays[split]
        return datasets.ArrayDataset(
            x=x.copy(), y=y.copy(), name=dataset, split=split, task="multiclass",
            num_classes=10, class_names=classes, feature_names=None, seed=seed,
            indices=np.arange(len(x)),
        )  # fmt: skip

    datasets.register_dataset(
        name,
        load,
        info={
            "task": "multiclass",
            "num_classes": 10,
            "input_shape": (32, 32, 3),
            "class_names": list(classes),
            "num_samples": counts,
            "source": "benchmarks/gpu_bench.py (random images)",
            "description": "CIFAR-10-sized synthetic images for timing",
        },
        overwrite=True,
    )


def _hand_resnet_cifar(config: dict[str, Any]):
    """He et al.'s CIFAR ResNet (option A shortcuts) written in plain Keras."""
    import keras
    from keras import layers, ops

    expected = dict(
        block="basic", stem="cifar", shortcut="zero_pad", head="avg",
        hidden_units=(), dropout=0.0, activation="relu", task="multiclass",
    )  # fmt: skip
    for key, value in expected.items():
        got = config.get(key)
        same = tuple(got) == value if isinstance(value, tuple) else got == value
        if not same:
            raise NotImplementedError(
                f"The hand-written ResNet covers {key}={value!r} only. "
                f"Received: {key}={got!r}"
            )
    filters = list(config["filters"])
    depth = config["depth"]
    depths = [depth] * len(filters) if isinstance(depth, int) else list(depth)

    def conv_bn(x, width, strides=1):
        x = layers.Conv2D(width, 3, strides=strides, padding="same", use_bias=False)(x)
        return layers.BatchNormalization()(x)

    inputs = keras.Input(tuple(config["input_shape"]))
    x = layers.ReLU()(conv_bn(inputs, filters[0]))
    for stage, (width, blocks) in enumerate(zip(filters, depths, strict=True)):
        for block in range(blocks):
            strides = 2 if stage > 0 and block == 0 else 1
            y = layers.ReLU()(conv_bn(x, width, strides))
            y = conv_bn(y, width)
            shortcut = x
            if strides > 1 or x.shape[-1] != width:
                # Option A: subsample, then zero channels on both sides.
                shortcut = x[:, ::strides, ::strides, :]
                extra = width - x.shape[-1]
                shortcut = ops.pad(
                    shortcut, [[0, 0], [0, 0], [0, 0], [extra // 2, extra - extra // 2]]
                )
            x = layers.ReLU()(layers.Add()([y, shortcut]))
    x = layers.GlobalAveragePooling2D()(x)
    outputs = layers.Dense(config["num_classes"], activation="softmax")(x)
    return keras.Model(inputs, outputs, name="hand_resnet")


def runner_vs_plain_keras(sizes: Sizes, work: Path) -> dict[str, Any]:
    """(c) the recipe runner's images/s over a hand-written plain-Keras twin's."""
    import keras
    from bench import core, handmade, zoo

    import annzoo
    from annzoo.training.recipe import Recipe, load_recipe

    keras.mixed_precision.set_global_policy("float32")
    dataset = "gpu_bench_cifar10"
    _synthetic_cifar(sizes, dataset)
    base = load_recipe(ROOT / "recipes" / f"{RECIPE}.py").to_dict()
    base["name"] = f"gpu_bench_{RECIPE}"
    base["model"].update(sizes.runner_model)
    base["data"]["dataset"] = dataset
    if sizes.runner_batch is not None:
        base["data"]["batch_size"] = sizes.runner_batch
    # No augmentation on either side: Keras' own RandomCrop (the plain way to
    # pad and crop) is marked not jit-compilable, which would turn XLA off for
    # the whole hand-written twin and measure that instead of the runner.
    base["augment"]["ops"] = []
    recipe = Recipe.from_dict(base).validate()
    batch = recipe.data["batch_size"]
    comp = recipe.compile
    if comp["optimizer"] != "momentum":
        raise NotImplementedError(
            f"The twin is compiled with SGD momentum 0.9 only. "
            f"Received: compile.optimizer={comp['optimizer']!r}"
        )
    run_dir = Path(tempfile.mkdtemp(prefix="runner-", dir=work))
    splits = zoo.load_splits(recipe)  # through the runner's loader
    path = zoo.runner_path(recipe, splits, run_dir)
    config = {**annzoo.model_info(recipe.model["name"]).config, **path.model_args}
    keras.utils.set_random_seed(recipe.fit["seed"])
    hand = _hand_resnet_cifar(config)
    handmade.check_twins(path.model, hand)
    hand.compile(
        optimizer=keras.optimizers.SGD(
            learning_rate=comp["learning_rate"],
            momentum=0.9,
            weight_decay=comp["weight_decay"],
        ),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
        jit_compile=comp["jit_compile"],
        steps_per_execution=comp["steps_per_execution"],
    )
    x, y = path.arrays()
    if isinstance(x, dict) and len(x) == 1:
        x = next(iter(x.values()))

    def plain(model):
        def run(epochs: int) -> tuple[float, int]:
            return core.timed_fit(
                model, x, y=y, batch_size=batch, shuffle=True, epochs=epochs
            )

        return run

    contenders = [
        core.Contender(RUNNER, path.fit),
        core.Contender(MODEL_PLAIN_FIT, plain(path.model)),
        core.Contender(PLAIN_KERAS, plain(hand)),
    ]
    results = core.compare("runner", contenders, _settings(sizes, work))
    ratio = core.speedups(results, RUNNER, PLAIN_KERAS)
    model_ratio = core.speedups(results, MODEL_PLAIN_FIT, PLAIN_KERAS)
    return {
        "what": "training images/s of the recipe runner (model, input pipeline "
        "and callbacks as `annzoo train` builds them) over the same network "
        "written by hand in plain Keras with a plain model.fit; > 1: runner faster",
        "target": ">= 0.98",
        "how": "annzoo.training's own functions (benchmarks/bench/zoo.py: "
        "inputs.load_splits, build.build_model, inputs.input_pipeline, "
        "build_callbacks, then model.fit as fitting._fit_stages calls it) on a "
        "dataset registered with "
        "annzoo.datasets.register_dataset; step time from on_epoch_begin to the "
        "end of the last training step, so validation and epoch-end callbacks "
        "(checkpoint, backup, CSV) are not in it",
        "recipe": RECIPE,
        "changes_to_recipe": {
            "data.dataset": f"{dataset} (synthetic 32x32x3, {len(splits['train'])} "
            "train samples)",
            "augment.ops": "[] (Keras' RandomCrop would turn XLA off for the twin)",
            **{f"model.{k}": v for k, v in sizes.runner_model.items()},
            **(
                {"data.batch_size": sizes.runner_batch}
                if sizes.runner_batch is not None
                else {}
            ),
        },
        "model": recipe.model["name"],
        "params": path.model.count_params(),
        "batch": batch,
        "train_samples": len(splits["train"]),
        "precision": "float32",
        "compile": {
            "optimizer": f"SGD(learning_rate={comp['learning_rate']}, momentum=0.9, "
            f"weight_decay={comp['weight_decay']})",
            "jit_compile": str(comp["jit_compile"]),
            "resolved_jit_compile": {
                RUNNER: bool(path.model.jit_compile),
                PLAIN_KERAS: bool(hand.jit_compile),
            },
            "steps_per_execution": comp["steps_per_execution"],
        },
        "runner_callbacks": [type(c).__name__ for c in path.callbacks],
        "per_step_callbacks": [
            type(c).__name__ for c in path.callbacks if zoo.has_batch_hooks(c)
        ],
        "images_per_s": {
            name: _per_second(batch, values) for name, values in results.items()
        },
        "median_images_per_s": {
            name: round(batch / _median(values), 1) for name, values in results.items()
        },
        "ratio": ratio.as_dict(),
        "model_over_plain": model_ratio.as_dict(),
        "met": ratio.median >= 0.98,
    }


# -- driver --------------------------------------------------------------------

# Run order: the short, safe parts first, so that the ResNet-50 part (the
# longest, torch.compile's 70 s warm-up included) can only cost itself if it
# runs long.
PARTS = (
    ("transformer", transformer_vs_matmul),
    ("runner", runner_vs_plain_keras),
    ("resnet50", resnet50_vs_timm),
)
TABLE_ORDER = ("resnet50", "transformer", "runner")
LABELS = {
    "resnet50": "(a) annzoo resnet50 / timm resnet50 (torch.compile), images/s",
    "transformer": "(b) annzoo Transformer model FLOP/s / bf16 matmul FLOP/s",
    "runner": "(c) recipe runner / hand-written plain Keras, images/s",
}


def _write_json(path: Path, data: dict[str, Any]) -> None:
    """Writes ``data`` to ``path`` atomically (a temporary file, then a rename)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w", encoding="utf-8") as handle:
        json.dump(data, handle, indent=2, default=str)
        handle.write("\n")
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def _row(name: str, part: dict[str, Any]) -> list[str]:
    label = LABELS[name]
    if "error" in part:
        return [label, "error", "", f"`{part['error'][:120]}`"]
    if "skipped" in part:
        return [label, "skipped", "", part["skipped"]]
    ratio = part.get("ratio")
    medians = part.get("median_images_per_s") or part.get("median_tflops_per_s") or {}
    unit = "img/s" if "median_images_per_s" in part else "TFLOP/s"
    detail = ", ".join(f"{k} {v:,} {unit}" for k, v in medians.items())
    for variant, figures in (part.get("variants") or {}).items():
        speed = figures["default_speed_over_this"]["median"]
        detail += f"; default {speed:.2f}x as fast as {variant}"
    torch = part.get("torch") or {}
    if "skipped" in torch:
        detail += f"; PyTorch skipped: {torch['skipped'][:160]}"
    if ratio is None:
        return [label, "no ratio", part.get("target", ""), detail]
    status = "met" if part.get("met") else "not met"
    figure = f"**{ratio['median']:.3f}** ({ratio['low']:.3f}-{ratio['high']:.3f})"
    return [label, figure, f"{part['target']} ({status})", detail]


def table(results: dict[str, Any]) -> str:
    lines = [
        "| figure | median (lowest-highest) | target | contenders (medians) |",
        "| --- | --- | --- | --- |",
    ]
    for name in TABLE_ORDER:
        if name in results:
            lines.append("| " + " | ".join(_row(name, results[name])) + " |")
    if results.get("quick"):
        lines.append(
            "\nQuick mode (toy sizes, one repeat): the figures check the "
            "harness, they measure nothing."
        )
    return "\n".join(lines)


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="benchmarks/gpu_bench.py",
        description=__doc__.split("\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--out", type=Path, required=True, help="output directory")
    parser.add_argument(
        "--quick", action="store_true", help="toy sizes, one repeat (a CPU check)"
    )
    parser.add_argument(
        "--only", action="append", default=[], choices=[n for n, _ in PARTS],
        help="run only this part (repeatable)",
    )  # fmt: skip
    parser.add_argument(
        "--profile", action="store_true",
        help="also profile (a) and (b): device time per step by operation, "
        "into the JSON",
    )  # fmt: skip
    parser.add_argument(
        "--budget-s", type=float, default=None,
        help="skip a part that would end after this many seconds (estimates "
        "for an H100); default 430 in full mode, none with --quick",
    )  # fmt: skip
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    _configure_environment()
    if os.environ["KERAS_BACKEND"] != "jax":
        raise SystemExit(
            "gpu_bench.py: error: KERAS_BACKEND must be 'jax'. "
            f"Received: {os.environ['KERAS_BACKEND']!r}"
        )
    started = time.perf_counter()
    sizes = QUICK if args.quick else FULL
    if args.profile:
        sizes = dataclasses.replace(sizes, profile=True)
    budget = args.budget_s if args.budget_s is not None else (
        None if args.quick else 430.0
    )  # fmt: skip
    args.out.mkdir(parents=True, exist_ok=True)
    out = args.out / RESULT_FILE
    say("importing Keras, JAX and annzoo")
    results: dict[str, Any] = {
        "benchmark": "benchmarks/gpu_bench.py",
        "quick": args.quick,
        "started": time.strftime("%Y-%m-%d %H:%M:%S %z"),
        "how": "every figure is a ratio of two contenders timed in this process, "
        "alternately after warm-up; median of per-repeat ratios, with the lowest "
        "and highest (n repeats)",
        "sizes": dataclasses.asdict(sizes),
    }
    try:
        results["machine"] = machine()
    except Exception as error:  # the parts then say what is wrong
        results["machine"] = {"error": repr(error)[:2000]}
    _write_json(out, results)
    chosen = [(n, f) for n, f in PARTS if not args.only or n in args.only]
    failed = []
    with tempfile.TemporaryDirectory(prefix="gpu-bench-") as work:
        for name, run in chosen:
            elapsed = time.perf_counter() - started
            if budget is not None and elapsed + ESTIMATES_S[name] > budget:
                results[name] = {
                    "skipped": f"time budget: {elapsed:.0f} s of {budget:.0f} s "
                    f"used, the part needs about {ESTIMATES_S[name]} s"
                }
                say(f"{name}: skipped ({results[name]['skipped']})")
                _write_json(out, results)
                continue
            say(f"{name}: starting")
            part_started = time.perf_counter()
            try:
                results[name] = run(sizes, Path(work))
            except Exception as error:  # keep what the other parts measure
                failed.append(name)
                results[name] = {
                    "error": repr(error)[:2000],
                    "traceback": traceback.format_exc()[-4000:],
                }
                say(f"{name}: failed: {error!r}")
            try:
                _free_memory()  # the part's models are gone: release them
            except Exception as error:
                say(f"{name}: freeing memory failed: {error!r}")
            seconds = round(time.perf_counter() - part_started, 1)
            results[name]["seconds"] = seconds
            say(f"{name}: done in {seconds} s")
            _write_json(out, results)
    results["seconds"] = round(time.perf_counter() - started, 1)
    _write_json(out, results)
    print(table(results))
    print(f"\nRaw figures: {out} ({results['seconds']} s)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

"""`pipeline_fn`: the per-sample ops as a batch function for the input pipeline.

Also the helpers the batch functions share (`annzoo.augment.mixing` uses
them): the backend check for TensorFlow tensors and `_one_program`, which
compiles a batch function with random state into one XLA program on JAX.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import keras
import numpy as np
from keras import ops

from annzoo.augment.per_sample import layers
from annzoo.augment.specs import Spec, resolve
from annzoo.errors import AnnzooError
from annzoo.layers.augment import fused_calls, is_tf_tensor


def _is_numpy(x) -> bool:
    return isinstance(x, (np.ndarray, np.generic))


def _check_tensor_backend(images, what: str) -> None:
    # keras.ops under JAX/PyTorch cannot run on TensorFlow's symbolic tensors,
    # so annzoo's own ops (not Keras' data layers) need numpy batches there.
    if is_tf_tensor(images) and keras.backend.backend() != "tensorflow":
        raise AnnzooError(
            f"{what} runs on TensorFlow tensors (tf.data) only with the TensorFlow "
            f"backend; the backend is {keras.backend.backend()!r}. Apply it to numpy "
            "batches (e.g. `dataset.as_numpy_iterator()`) or use `in_model`. "
            f"Received: images of type {type(images).__name__}"
        )


def _one_program(fn: Callable, states: list) -> Callable:
    """``fn``, which draws from the seed-generator ``states``, compiled by XLA
    as one program on JAX (the state values in, their updates out and
    written back); ``fn`` itself on the other backends.

    On NumPy batches JAX would otherwise run the ops one by one, each its own
    dispatch, which costs more than the small models' steps it feeds
    (measured by `benchmarks/run.py --only pipeline`, its case with the
    ``digits`` augmentation in the pipeline).
    """
    if keras.backend.backend() != "jax" or not states:
        return fn
    import jax  # deferred: only the JAX backend has (and needs) it

    def stateless(values, *args):
        mapping = list(zip(states, values, strict=True))
        with keras.StatelessScope(state_mapping=mapping) as scope:
            out = fn(*args)
        return out, [scope.get_current_value(v) for v in states]

    compiled = jax.jit(stateless)

    def run(*args):
        if any(is_tf_tensor(a) for a in args):  # tf.data: Keras' layers switch backend
            return fn(*args)
        out, values = compiled([v.value for v in states], *args)
        for state, value in zip(states, values, strict=True):
            state.assign(value)
        return out

    return run


def pipeline_fn(
    spec: Spec, *, seed: int | None = None, keep_on_device: bool = False
) -> Callable[[Any, Any], tuple[Any, Any]]:
    """A batch function for the input pipeline: the per-sample ops, always on.

    The function maps ``(images, labels) -> (augmented_images, labels)`` and
    augments every call (``training=True``), a batch ``(batch, height, width,
    channels)`` or a single image ``(height, width, channels)``. It works in
    ``tf.data`` (with the TensorFlow backend; with other backends only Keras'
    own layers do, ``pad_crop`` raises) and on numpy arrays, for which it
    returns numpy. Mixup and cutmix are left out: chain :func:`batch_mix_fn`
    after it, on batches.

    Args:
        spec: a spec, see :func:`resolve`.
        seed: non-negative integer for a reproducible sequence of batches, or
            ``None``.
        keep_on_device: return the backend's tensors for NumPy input too,
            where the model takes them next: no copy back to the host, and on
            JAX no wait for the batch (the recipe runner's setting on JAX).

    Returns:
        A function ``(images, labels) -> (images, labels)``.

    Example:
        >>> augment = pipeline_fn("cifar", seed=0)
        >>> dataset = dataset.batch(128).map(augment)  # tf.data, on the CPU
        >>> images, labels = augment(x_batch, y_batch)  # numpy in, numpy out
    """
    items = resolve(spec)
    steps = layers(items, seed=seed)
    has_own_ops = any(item["name"] == "pad_crop" for item in items)

    def augment(images, labels):
        if not steps:
            return images, labels
        if has_own_ops:
            _check_tensor_backend(images, "The 'pad_crop' augmentation")
        as_numpy = _is_numpy(images) and not keep_on_device
        x = run(images)
        return (ops.convert_to_numpy(x) if as_numpy else x), labels

    plan = fused_calls(steps)

    def run(x):
        for step in plan:
            x = step(x)
        return x

    run = _one_program(run, [v for step in steps for v in step.variables])
    # The seed generators' state variables, which a training loop may reset
    # per epoch (annzoo.training.callbacks.EpochOrder) for exact resumes.
    augment.random_states = [
        v for step in steps for v in step.variables if v.name == "seed_generator_state"
    ]
    return augment

"""Speedup ``fit_state``: a model's fit variables built before ``fit``, on TensorFlow.

Public behaviour reproduced: ``model.fit``, which on Keras' TensorFlow trainer
(without a distribution strategy) creates the metric, loss and optimizer
variables while tracing the first training step; TensorFlow then traces the
whole step a second time, because the first trace made variables.
`build_fit_state` builds them beforehand from the shapes of the data, as
Keras' own symbolic build does under a distribution strategy, so the step is
traced once. Nothing is computed on the data; the variables are what ``fit``
would create.

Private Keras symbols: ``Trainer._symbolic_build`` (the build itself),
``Trainer._compile_loss``/``_compile_metrics`` and ``Layer._flatten_layers``
(whether everything is built already, as ``_symbolic_build`` decides it) and
the TensorFlow trainer's ``_distribute_strategy`` (left to Keras when set).
Switched off (``ANNZOO_SPEEDUPS``), `build_fit_state` builds nothing and
``fit`` traces the step twice, as in plain Keras.

Measured by ``benchmarks/run.py --only overhead`` on TensorFlow (a run's
first ``fit``) and ``--only tuning`` (every trial's first ``fit``).
"""

from __future__ import annotations

from typing import Any

import keras
import numpy as np

from annzoo.speedups._core import Speedup, Symbol, check_instance, register

__all__ = ["SPEEDUP", "build_fit_state"]

NAME = "fit_state"


def _model_probe():
    """A small compiled model: its trainer holds the attributes looked for.
    Named layers, so no auto-generated name is taken from the user's."""
    inputs = keras.Input((2,), name="annzoo_probe_in")
    outputs = keras.layers.Dense(1, name="annzoo_probe_dense")(inputs)
    model = keras.Model(inputs, outputs, name="annzoo_contract_probe")
    model.compile(optimizer="sgd", loss="mse", metrics=["mae"])
    return model


_TRAINER = "keras.src.trainers.trainer"
SPEEDUP = register(
    Speedup(
        name=NAME,
        summary="the first training step traced once, not twice (TensorFlow)",
        benchmark="benchmarks/run.py --only overhead (TensorFlow)",
        backends=("tensorflow",),
        symbols=(
            Symbol(_TRAINER, "Trainer._symbolic_build"),
            Symbol(_TRAINER, "Trainer._compile_loss", _model_probe),
            Symbol(_TRAINER, "Trainer._compile_metrics", _model_probe),
            Symbol("keras.src.layers.layer", "Layer._flatten_layers"),
            Symbol(
                "keras.src.backend.tensorflow.trainer",
                "TensorFlowTrainer._distribute_strategy",
                _model_probe,
                backend="tensorflow",
            ),
        ),
    )
)


def build_fit_state(model: keras.Model, x: Any, y: Any = None) -> bool:
    """Creates a compiled model's metric, loss and optimizer variables before ``fit``.

    See the module docstring: on Keras' TensorFlow trainer the first
    training step is then traced once instead of twice.

    Args:
        model: A compiled model.
        x: What ``fit`` will take: a ``tf.data.Dataset`` of ``(x, y)``
            batches, or an array (or dict of arrays) with ``y``.
        y: The targets when ``x`` is an array.

    Returns:
        Whether anything was built (``False`` on other backends, which build
        before tracing anyway, under a distribution strategy, for other
        kinds of input, when everything is built already, or with the
        ``fit_state`` speedup switched off).
    """
    if keras.backend.backend() != "tensorflow" or not getattr(model, "compiled", False):
        return False
    if not check_instance(NAME, model) or model._distribute_strategy is not None:
        return False
    batch = _batch_spec(x, y)
    if batch is None or _fit_state_built(model):
        return False
    try:
        model._symbolic_build(data_batch=batch)
    except Exception:  # noqa: BLE001 - an optimization: fit builds it otherwise
        # A model Keras cannot build from shapes alone is built, as before,
        # while ``fit`` traces its first step, where any real error shows.
        return False
    return True


def _fit_state_built(model: keras.Model) -> bool:
    parts = (model.optimizer, model._compile_metrics, model._compile_loss)
    return all(part is None or part.built for part in parts) and all(
        layer.built for layer in model._flatten_layers()
    )


def _batch_spec(x: Any, y: Any) -> tuple | None:
    """``(x, y[, sample_weight])`` of symbolic tensors shaped as one batch."""

    def symbolic(value):
        if value is None:
            return None
        if isinstance(value, np.ndarray):
            return keras.KerasTensor((None, *value.shape[1:]), value.dtype.name)
        shape, dtype = getattr(value, "shape", None), getattr(value, "dtype", None)
        if shape is None or dtype is None or not hasattr(shape, "as_list"):
            raise TypeError
        return keras.KerasTensor(tuple(shape.as_list()), dtype.name)

    try:
        if y is None:
            spec = getattr(x, "element_spec", None)  # a tf.data.Dataset
            if not isinstance(spec, tuple) or len(spec) not in (2, 3):
                return None
            return tuple(keras.tree.map_structure(symbolic, spec))
        arrays = (x, y)
        leaves = keras.tree.flatten(arrays)
        if not all(isinstance(a, np.ndarray) for a in leaves):
            return None
        return tuple(keras.tree.map_structure(symbolic, arrays))
    except TypeError:
        return None

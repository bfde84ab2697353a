"""Multilayer perceptrons, down to logistic and linear regression."""

from __future__ import annotations

import math
from typing import Any

import keras

from annzoo import tasks
from annzoo._checks import (
    check_bool,
    check_input_shape,
    check_int_sequence,
    check_name,
    check_parameter_count,
    check_rate,
)
from annzoo.models._common import (
    DROPOUT_RATES,
    check_activation,
    check_compile,
    check_outputs,
    dense_stack,
    finish,
    functional_model,
    output_arguments,
    output_head,
    shape_arguments,
)
from annzoo.registry import FamilySpec, Reference, register, register_preset

__all__ = ["build_mlp"]


def _dataset_arguments(train: Any) -> dict[str, Any]:
    return {**shape_arguments(train), **output_arguments(train, width="num_outputs")}


SPEC = FamilySpec(
    tasks=tasks.SAMPLE_TASKS,
    data=("sample",),
    dataset_arguments=_dataset_arguments,
    search_space={
        "hidden_units": dict(type="layers", depth=[1, 3], values=[32, 64, 128, 256]),
        "activation": ["relu", "gelu"],
        "dropout": DROPOUT_RATES,
    },
    smoke=dict(input_shape=4, num_outputs=3, hidden_units=(8,)),
    predict=("arrays",),
    report=("confusion_matrix",),
)


@register("mlp", spec=SPEC)
def build_mlp(
    input_shape: int | tuple[int, ...],
    num_outputs: int,
    *,
    hidden_units: int | tuple[int, ...] = (64,),
    activation: str = "relu",
    dropout: float = 0.0,
    batch_norm: bool = False,
    task: str = "multiclass",
    compile: bool | dict = True,
    name: str = "mlp",
) -> keras.Model:
    """Builds a fully connected network (multilayer perceptron).

    Each hidden layer is ``Dense -> [BatchNormalization] -> activation ->
    [Dropout]``; the output layer has the task's activation (sigmoid, softmax
    or linear). With ``hidden_units=()`` the model is a single neuron layer:
    logistic regression for ``task="binary"``, softmax regression for
    ``"multiclass"`` and linear regression for ``"regression"``.

    Input contract: float features of shape ``input_shape`` (any rank; flattened
    inside the model), already scaled (see ``annzoo.datasets``).

    Args:
        input_shape: shape of one sample, e.g. ``30`` or ``(8, 8, 1)``.
        num_outputs: output units: classes for ``"multiclass"``, labels for
            ``"binary"`` (1 for one yes/no label), targets for ``"regression"``.
        hidden_units: width of each hidden layer; its length is the depth.
        activation: hidden activation (``"relu"``, ``"sigmoid"``, ``"tanh"``,
            ``"gelu"``, ...).
        dropout: rate in [0, 1) after each hidden layer (after the input when
            there is none).
        batch_norm: batch normalization before each hidden activation.
        task: ``"binary"``, ``"multiclass"`` or ``"regression"``.
        compile: ``True`` compiles with the task's defaults, ``False`` returns
            the model uncompiled, a dict is passed to ``annzoo.compile_model``.
        name: the model's name.

    Returns:
        A ``keras.Model`` mapping ``features`` to ``predictions``.

    Example:
        >>> model = annzoo.build_mlp(30, 1, hidden_units=(2,), task="binary")
        >>> model.fit(x, y, epochs=10)
    """
    task = tasks.check_task(task, tasks.SAMPLE_TASKS)
    input_shape = check_input_shape("input_shape", input_shape)
    num_outputs = check_outputs("num_outputs", num_outputs, task)
    hidden_units = check_int_sequence("hidden_units", hidden_units)
    activation = check_activation("activation", activation)
    dropout = check_rate("dropout", dropout)
    batch_norm = check_bool("batch_norm", batch_norm)
    compile = check_compile(compile, task)
    name = check_name("name", name)
    _check_size(input_shape, hidden_units, num_outputs, batch_norm)

    inputs = keras.Input(input_shape, name="features")
    x = keras.layers.Flatten(name="flatten")(inputs) if len(input_shape) > 1 else inputs
    x = dense_stack(
        x,
        hidden_units,
        activation=activation,
        dropout=dropout,
        batch_norm=batch_norm,
        prefix="hidden",
    )
    outputs = output_head(x, num_outputs, task)
    model = functional_model(
        inputs, outputs, name=name, depth={"hidden_units": hidden_units}
    )
    return finish(model, task, compile)


def _check_size(input_shape, hidden_units, num_outputs, batch_norm) -> None:
    """Refuses a network whose weights cannot fit in memory, before building it."""
    if None in input_shape:
        return  # Flatten needs a known shape; Keras says so itself
    # Each argument with the width it gives; the widest is the one named.
    widths = {
        "input_shape": (math.prod(input_shape), input_shape),
        "hidden_units": (max(hidden_units, default=0), hidden_units),
        "num_outputs": (num_outputs, num_outputs),
    }
    count, fan_in = 0, widths["input_shape"][0]
    for units in hidden_units:
        # Dense kernel and bias (no bias before batch norm, which has 4 per unit).
        count += fan_in * units + (4 * units if batch_norm else units)
        fan_in = units
    count += fan_in * num_outputs + num_outputs  # the head
    widest = max(widths, key=lambda name: widths[name][0])
    check_parameter_count(widest, widths[widest][1], count)


PRESETS: dict[str, dict[str, Any]] = {
    "logistic_regression": dict(
        description=(
            "Logistic regression: one sigmoid neuron on the 30 standardized "
            "features of the breast-cancer dataset."
        ),
        reference=Reference(
            params=31,
            kind="total",
            source=(
                "one weight per feature plus a bias: m + 1 = 31 for the m = 30 "
                "breast-cancer features (Wolberg et al., UCI; scikit-learn)"
            ),
        ),
        input_shape=(30,),
        num_outputs=1,
        hidden_units=(),
        task="binary",
    ),
}

for _name, _preset in PRESETS.items():
    register_preset(_name, "mlp", **_preset)

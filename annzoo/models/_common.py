"""Pieces shared by the builders: argument checks, dense stacks and the head."""

from __future__ import annotations

import sys
from typing import Any

import keras

from annzoo import tasks
from annzoo._checks import check_positive_int
from annzoo.errors import AnnzooError, UnknownNameError


def check_activation(name: str, value: Any) -> Any:
    """A Keras activation name (``"relu"``, ``"gelu"``...) or callable."""
    if callable(value):
        return value
    expected = (
        f"`{name}` must be a Keras activation name such as 'relu', 'sigmoid', "
        f"'tanh', 'gelu' or 'swish'. Received: {name}={value!r}"
    )
    if not isinstance(value, str):
        raise AnnzooError(expected)
    try:
        keras.activations.get(value)
    except (ValueError, TypeError):
        raise UnknownNameError(expected) from None
    return value


def check_outputs(name: str, value: Any, task: str) -> int:
    """Output width for ``task``: >= 2 classes for multiclass, >= 1 otherwise."""
    value = check_positive_int(name, value)
    if task == "multiclass" and value < 2:
        raise AnnzooError(
            f"`{name}` must be >= 2 for task='multiclass' (use task='binary' for "
            f"one sigmoid output). Received: {name}={value}"
        )
    return value


def dense_stack(
    x,
    hidden_units: tuple[int, ...],
    *,
    activation: Any,
    dropout: float,
    batch_norm: bool = False,
    prefix: str,
):
    """Hidden dense layers, each followed by dropout.

    With no hidden layer, dropout (if any) applies to ``x`` itself, which is
    how the keras.io MNIST convnet drops its flattened features.
    """
    if not hidden_units and dropout:
        x = keras.layers.Dropout(dropout, name=f"{prefix}_dropout")(x)
    for i, units in enumerate(hidden_units, start=1):
        name = f"{prefix}{i}"
        x = keras.layers.Dense(units, use_bias=not batch_norm, name=name)(x)
        if batch_norm:
            x = keras.layers.BatchNormalization(name=f"{name}_bn")(x)
        x = keras.layers.Activation(activation, name=f"{name}_act")(x)
        if dropout:
            x = keras.layers.Dropout(dropout, name=f"{name}_dropout")(x)
    return x


def output_head(x, num_outputs: int, task: str):
    """``head_logits`` then the task's activation, kept in float32.

    The activation is a layer of its own so that mixed-precision models still
    emit float32 probabilities, and so that ``finetune`` can cut the model at
    ``head_logits``.
    """
    x = keras.layers.Dense(num_outputs, name="head_logits")(x)
    return keras.layers.Activation(
        tasks.output_activation(task), dtype="float32", name="predictions"
    )(x)


def check_compile(compile: Any, task: str) -> Any:
    """The builders' ``compile=`` argument, checked before anything is built.

    ``True`` (the task's defaults), ``False`` (left uncompiled) or a dict of
    :func:`annzoo.compile_model` arguments.
    """
    if compile is True or compile is False or compile is None:
        return compile
    if isinstance(compile, dict):
        tasks.check_compile_options(compile)
        if compile.get("task", task) != task:
            raise AnnzooError(
                f"`compile` sets task={compile['task']!r} but the model is built for "
                f"task={task!r}; set `task` once, on the builder. "
                f"Received: compile={compile!r}"
            )
        return compile
    raise AnnzooError(
        "`compile` must be True, False or a dict of compile_model arguments. "
        f"Received: compile={compile!r}"
    )


def functional_model(inputs, outputs, *, name: str | None, depth: dict[str, Any]):
    """``keras.Model(inputs, outputs, name=name)``, refusing in one sentence a
    network too deep for Keras to build.

    Keras walks a functional graph recursively, about one Python frame per
    layer call, so a chain of some hundreds of layers (``hidden_units`` of
    length 1000, ``depth=2000``...) overruns the interpreter's recursion limit
    with a ``RecursionError``. ``depth`` maps the builder arguments that set
    the number of layers to their values, for the message.
    """
    try:
        return keras.Model(inputs, outputs, name=name)
    except RecursionError:
        received = ", ".join(f"{k}={_shown(v)}" for k, v in depth.items())
        names = [f"`{k}`" for k in depth]
        named = ", ".join(names[:-1]) + " and " + names[-1] if names[1:] else names[0]
        raise AnnzooError(
            f"{named} {'make' if names[1:] else 'makes'} a network too deep for "
            "Keras to build: it walks the layers recursively, past Python's "
            f"recursion limit ({sys.getrecursionlimit()}); use fewer layers, or "
            f"raise the limit with sys.setrecursionlimit. Received: {received}"
        ) from None


def _shown(value: Any) -> str:
    text = repr(value)
    if len(text) <= 60:
        return text
    count = f" ({len(value)} values)" if hasattr(value, "__len__") else ""
    return f"{text[:50]}...{count}"


def finish(model: keras.Model, task: str, compile: Any) -> keras.Model:
    """Compiles ``model`` as the (already checked) ``compile=`` argument asks."""
    if compile is False or compile is None:
        return model
    options = {} if compile is True else dict(compile)
    options.setdefault("task", task)
    return tasks.compile_model(model, **options)


# -- what a dataset fills in a builder (FamilySpec.dataset_arguments) ----------
#
# A split is an `annzoo.datasets.ArrayDataset` (read by attribute only: models
# sit below the data layer). Each family's spec composes these.

# Dropout rates of the default search spaces (`FamilySpec.search_space`).
DROPOUT_RATES = [0.0, 0.1, 0.2, 0.3, 0.5]
SEQUENCE_DROPOUT_RATES = [0.0, 0.1, 0.2, 0.3]


def shape_arguments(train: Any) -> dict[str, Any]:
    """``input_shape``: the per-sample shape of features, images or series."""
    return {"input_shape": [int(d) for d in train.input_shape]}


def token_arguments(train: Any, *, length: str | None) -> dict[str, Any]:
    """``vocabulary_size`` and the token length, for token inputs.

    ``length`` names the builder argument that takes the number of steps
    (``"sequence_length"``); None puts it in ``input_shape`` instead.
    """
    steps = int(train.x.shape[1])
    args: dict[str, Any] = {"vocabulary_size": len(train.vocabulary)}
    args.update({length: steps} if length else {"input_shape": [steps]})
    return args


def output_arguments(train: Any, *, width: str) -> dict[str, Any]:
    """The output width (``num_classes`` or ``num_outputs``) and the task.

    A tagging dataset's model compiles with the "multiclass" loss, a class per
    token (the registry reports such a model's task as "tagging" again).
    """
    task = "multiclass" if train.task == "tagging" else train.task
    return {width: int(train.num_outputs), "task": task}


def target_arguments(train: Any, *, prefix: str = "target_") -> dict[str, Any]:
    """The target vocabulary and length of a sequence dataset, ``task="sequence"``."""
    return {
        f"{prefix}vocabulary_size": len(train.target_vocabulary),
        f"{prefix}sequence_length": int(train.y.shape[1]),
        "task": "sequence",
    }

"""The graph surgery behind `annzoo.finetune`: units, truncation, loading, replay."""

from __future__ import annotations

import difflib
import json
import numbers
import os
from pathlib import Path
from typing import Any

import keras

from annzoo._checks import (
    is_int,
)
from annzoo.errors import AnnzooError, CheckpointError
from annzoo.io import MANIFEST, check_file, file_digest
from annzoo.layers.adapt import input_adapters
from annzoo.layers.augment import Augmentation
from annzoo.layers.walk import walk_layers
from annzoo.speedups import host_initialization
from annzoo.tasks import SAMPLE_TASKS, get_task

__all__: list[str] = []

_ACTIVATIONS = (
    keras.layers.Activation,
    keras.layers.Softmax,
    keras.layers.ReLU,
    keras.layers.LeakyReLU,
    keras.layers.ELU,
)

# The task of a model's one-per-sample output, read from its activation.
_TASKS = {get_task(task).activation: task for task in SAMPLE_TASKS}

_FREEZE = "`freeze` must be 'base', None, an int, a float in [0, 1] or a layer name."


class _Unit:
    """Layers removed together (last first) and the tensor left after them."""

    def __init__(self) -> None:
        self.layers: list = []
        self.cut = None  # None where removing the unit leaves no single tensor


def _units(model: keras.Model) -> list[_Unit]:
    """The units along the main path, from the output back to the input."""
    if len(model.outputs) != 1:
        raise AnnzooError(
            f"`model` must have one output; {model.name!r} has "
            f"{len(model.outputs)}. Received: model={model.name!r}"
        )
    producers = {}
    for layer in model.layers:
        try:
            producers.update({id(t): layer for t in keras.tree.flatten(layer.output)})
        except (AttributeError, ValueError):  # a layer called more than once
            continue
    inputs = {id(t) for t in model.inputs}
    units, unit, tensor = [], _Unit(), model.outputs[0]
    while id(tensor) not in inputs and id(tensor) in producers:
        layer = producers[id(tensor)]
        unit.layers.append(layer)
        previous = keras.tree.flatten(layer.input)
        single = len(previous) == 1
        if not isinstance(layer, _ACTIVATIONS) or not single:
            unit.cut = previous[0] if single else None
            units.append(unit)
            unit = _Unit()
        if not single:
            break
        tensor = previous[0]
    if unit.layers:  # activations straight on the input
        unit.cut = tensor
        units.append(unit)
    if units and id(units[-1].cut) in inputs:
        units[-1].cut = None  # removing every layer leaves no base
    return units


def _is_input(layer) -> bool:
    return isinstance(layer, keras.layers.InputLayer)


def _layers(model: keras.Model) -> list:
    return [layer for layer in model.layers if not _is_input(layer)]


def _single(tensors: list):
    # A single input is passed bare, so that the model takes a bare tensor.
    return tensors[0] if len(tensors) == 1 else tensors


def _infer_task(output_layer) -> str:
    if isinstance(output_layer, keras.layers.Softmax):
        return "multiclass"
    activation = getattr(getattr(output_layer, "activation", None), "__name__", None)
    if activation not in _TASKS:
        raise AnnzooError(
            f"`task` is required: the output layer {output_layer.name!r} has no "
            f"softmax, sigmoid or linear activation to infer it from (found "
            f"{activation!r}). Received: task=None"
        )
    return _TASKS[activation]


def _find_layer(model: keras.Model, layer: Any):
    n = len(model.layers)
    if is_int(layer) and -n <= layer < n:
        return model.layers[layer]
    if is_int(layer):
        raise AnnzooError(
            f"`layer` must be an index in [-{n}, {n}). Received: layer={layer}"
        )
    names = [candidate.name for candidate in model.layers]
    if isinstance(layer, str) and layer in names:
        return model.layers[names.index(layer)]
    raise AnnzooError(_unknown_layer("layer", layer, names))


def _unknown_layer(argument: str, value: Any, names: list[str]) -> str:
    close = difflib.get_close_matches(str(value), names, n=3)
    hint = f" Did you mean {' or '.join(map(repr, close))}?" if close else ""
    return (
        f"`{argument}` must name a layer of the model (see model.summary()).{hint} "
        f"Received: {argument}={value!r}"
    )


# --- freezing --------------------------------------------------------------------


def _one_rule(**given: Any) -> tuple[str, Any]:
    named = [(name, value) for name, value in given.items() if value is not None]
    if len(named) > 1:
        received = ", ".join(f"{n}={v!r}" for n, v in named)
        raise AnnzooError(
            f"Pass only one of `{'`, `'.join(given)}`. Received: {received}"
        )
    return named[0] if named else ("count", None)


def _count(argument: str, rule: Any, layers: list, default: int) -> int:
    """How many of ``layers``, from the start, ``rule`` selects.

    ``count`` is an int, ``fraction`` a number in [0, 1], ``up_to`` and
    ``from_layer`` a name; ``freeze`` is any of them, told apart by type.
    """
    n, by_type = len(layers), argument == "freeze"
    if rule is None or (by_type and rule == "base"):
        return default
    if argument in ("up_to", "from_layer") or (by_type and isinstance(rule, str)):
        names = [layer.name for layer in layers]
        if not isinstance(rule, str) or rule not in names:
            raise AnnzooError(_unknown_layer(argument, rule, names))
        return names.index(rule) + 1
    if argument == "count" or (by_type and is_int(rule)):
        if not is_int(rule) or not 0 <= rule <= n:
            raise AnnzooError(
                f"`{argument}` must be an integer in [0, {n}] (the model has {n} "
                f"such layers). Received: {argument}={rule!r}"
            )
        return int(rule)
    real = isinstance(rule, numbers.Real) and not isinstance(rule, bool)
    if real and 0.0 <= float(rule) <= 1.0:
        return int(float(rule) * n)
    expected = _FREEZE if by_type else f"`{argument}` must be a number in [0, 1]."
    raise AnnzooError(f"{expected} Received: {argument}={rule!r}")


def _set_trainable(model, layers, rule, value: bool, batchnorm: str):
    for layer in layers[: _count(*rule, layers, len(layers))]:
        layer.trainable = value
    if batchnorm == "frozen":
        _freeze_batchnorm(model.layers)
    if getattr(model, "optimizer", None) is None:
        return model
    try:  # Keras reads the trainable flags when compiling.
        model.compile_from_config(model.get_compile_config())
    except Exception as error:
        raise AnnzooError(
            f"The trainable flags of {model.name!r} changed but it could not be "
            f"recompiled from its settings ({error}); compile it again, for "
            "example with annzoo.compile_model(model, ...)."
        ) from error
    return model


def _freeze_batchnorm(layers: list) -> None:
    for layer in layers:
        # BN layers inside nested models and blocks too.
        for sub in walk_layers(layer):
            if isinstance(sub, keras.layers.BatchNormalization):
                sub.trainable = False


# --- building --------------------------------------------------------------------


def _check_model(model: Any) -> None:
    try:
        outputs = model.outputs if isinstance(model, keras.Model) else None
    except (AttributeError, ValueError):  # an unbuilt Sequential model
        outputs = None
    if not outputs:
        raise AnnzooError(
            "`model` must be a built Functional or Sequential keras.Model. "
            f"Received: model={model!r}"
        )


def _without_augmentation(model: keras.Model) -> keras.Model:
    """The model inside an ``augment.in_model`` wrapper (``images ->
    Augmentation -> model``, what a run with ``augment.placement: model``
    saves), else ``model``.

    The wrapper's last layer is a nested model, whose ``output`` is its own
    graph's tensor, not the wrapper's: walking back from the wrapper's output
    finds no unit. Augmentation belongs to training, not to the features
    transferred; a fine-tuning recipe adds its own.
    """
    inner = [layer for layer in model.layers if not _is_input(layer)]
    if (
        len(inner) == 2
        and isinstance(inner[0], Augmentation)
        and isinstance(inner[1], keras.Model)
    ):
        return inner[1]
    return model


def source_file(model: Any) -> Path | None:
    """The ``.keras`` file `_load` reads for ``model`` (a run directory's
    ``best.keras``, else ``final.keras``), or None for a model object."""
    if not isinstance(model, str | os.PathLike):
        return None
    path = Path(model)
    if path.is_dir():
        found = [p for p in (path / "best.keras", path / "final.keras") if p.is_file()]
        return found[0] if found else None
    return path


def source_sha256(path: Path) -> str | None:
    """The SHA-256 of ``path``: its run's manifest entry when it has one
    (checked by `_load` before use), else the file's own digest; None when
    it cannot be read (`_load` then says why)."""
    try:
        listed = json.loads((path.parent / MANIFEST).read_text("utf-8"))["files"]
        return str(listed[path.name]["sha256"])
    except (OSError, ValueError, KeyError, TypeError):
        pass
    try:
        return file_digest(path)
    except OSError:
        return None


def _load(model: Any) -> keras.Model:
    """``model`` itself, or the model its path holds."""
    if not isinstance(model, str | os.PathLike):
        _check_model(model)
        return model
    path = Path(model)
    if path.is_dir():
        found = source_file(path)
        if found is None:
            raise AnnzooError(
                f"`model` {str(path)!r} holds no best.keras or final.keras: expected "
                "a run directory of annzoo.training.train, or a .keras file. "
                f"Received: model={str(model)!r}"
            )
        path = found
    elif not path.is_file() or path.suffix != ".keras":
        what = "is not a .keras file" if path.is_file() else "does not exist"
        raise AnnzooError(
            f"`model` {str(path)!r} {what}: expected a keras.Model, a .keras file "
            f"or a run directory. Received: model={str(model)!r}"
        )
    check_file(path)  # against the run's manifest, when there is one
    try:
        with host_initialization():  # JAX: no XLA program per weight shape
            loaded = keras.saving.load_model(path)
    except Exception as error:
        raise CheckpointError(f"Cannot load `model` {str(path)!r}: {error}") from error
    _check_model(loaded)
    return loaded


def _new_inputs(source: keras.Model, input_shape: tuple | None):
    """New inputs, the tensors fed to the base, and the adapter layers' ids."""
    names = {id(x.output): x.name for x in source.layers if _is_input(x)}
    inputs = [
        keras.Input(t.shape[1:], dtype=t.dtype, name=names.get(id(t)))
        for t in source.inputs
    ]
    if input_shape is None or [input_shape] == [t.shape[1:] for t in inputs]:
        return inputs, inputs, set()
    if len(inputs) != 1 or len(source.inputs[0].shape) != 4 or len(input_shape) != 3:
        raise AnnzooError(
            "`input_shape` adapts models with one image input (batch, height, "
            f"width, channels); this one takes {[t.shape for t in source.inputs]}. "
            f"Received: input_shape={input_shape}"
        )
    x = new = keras.Input(input_shape, dtype=inputs[0].dtype, name=inputs[0].name)
    adapters = input_adapters(tuple(source.inputs[0].shape[1:]), input_shape)
    for adapter in adapters:
        x = adapter(x)
    return [new], [x], {id(adapter) for adapter in adapters}


def _replay(base: keras.Model, inputs: list):
    """``base``'s graph rebuilt on ``inputs`` with new layers holding its weights.

    New layers leave the source model untouched and give every layer of the
    result a single node, so that ``layer.output`` keeps working on it.
    """
    pairs, outputs, cut = [], {}, base.outputs[0]
    for target in base.layers:
        try:
            produced = [id(t) for t in keras.tree.flatten(target.output)]
        except (AttributeError, ValueError):  # a layer called more than once
            continue
        if id(cut) in produced:
            break

    def clone(layer):
        pairs.append((layer, layer.__class__.from_config(layer.get_config())))
        return pairs[-1][1]

    def call(layer, *args, **kwargs):
        outputs[id(layer)] = layer(*args, **kwargs)
        return outputs[id(layer)]

    keras.models.clone_model(
        base,
        input_tensors=keras.tree.pack_sequence_as(base.input, inputs),
        clone_function=clone,
        call_function=call,
    )
    for old, new in pairs:
        new.set_weights(old.get_weights())
    copy = next(new for old, new in pairs if old is target)
    return keras.tree.flatten(outputs[id(copy)])[produced.index(id(cut))]


# --- compiling -------------------------------------------------------------------


def _learning_rate(model: keras.Model) -> float | None:
    optimizer = getattr(model, "optimizer", None)
    if optimizer is None:
        return None
    optimizer = getattr(optimizer, "inner_optimizer", optimizer)  # loss scaling
    return float(keras.ops.convert_to_numpy(optimizer.learning_rate))


def _fresh_optimizer(optimizer, learning_rate: float):
    """The same class and settings, a new state and a constant learning rate."""
    optimizer = getattr(optimizer, "inner_optimizer", optimizer)
    config = {**optimizer.get_config(), "learning_rate": learning_rate}
    return optimizer.__class__.from_config(config)


def _one_hot(model: keras.Model) -> bool:
    loss = getattr(model, "loss", None)
    name = loss if isinstance(loss, str) else type(loss).__name__
    return name in ("CategoricalCrossentropy", "categorical_crossentropy")

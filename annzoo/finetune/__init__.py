"""Transfer learning in one call: cut a trained model's head, put a new one on,
freeze what should not move, and compile with a smaller learning rate.

Where the head is. Walking back from the output along the main path (each
layer's single input), a model is a chain of *units*: a layer together with
the activation layers (``Activation``, ``Softmax``, ``ReLU``, ``LeakyReLU``,
``ELU``) right after it. ``truncate=k`` removes the last ``k`` units. On an
annzoo model unit 1 is the classifier, ``head_logits`` (Dense) +
``predictions`` (Activation); on others it is the last layer with its
activation, whether a layer of its own or the Dense's ``activation=``.
``Dropout``, ``BatchNormalization``, ``Flatten`` and pooling layers are units
of their own. A layer merging branches (``Add``, ``Concatenate``) cannot be
removed.

The batch-normalization pitfall. A Keras 3 ``BatchNormalization`` layer
normalizes with its moving statistics when it is not trainable, and with the
current batch's (updating the moving ones) when it is. Unfreezing a
pretrained base switches its BN layers to batch statistics: on small batches
of a new dataset the activations shift and the moving averages are
overwritten, which wrecks the pretrained features within a few steps (the
loss jumps at the first fine-tuning epoch). With ``batchnorm="frozen"`` (the
default) every BN layer stays in inference mode, its scale and offset frozen,
whatever else trains.

Example:
    >>> model = annzoo.finetune("runs/cifar10_resnet20", num_classes=5)
    >>> model.fit(x, y, epochs=3)  # the head trains, the base is frozen
    >>> model = annzoo.unfreeze(model, count=10)  # then the top layers too
"""

from __future__ import annotations

import numbers
import os

import keras

from annzoo import tasks
from annzoo._checks import (
    check_choice,
    check_input_shape,
    check_positive_float,
    check_positive_int,
)
from annzoo.errors import AnnzooError
from annzoo.finetune._graph import (
    _FREEZE,
    _check_model,
    _count,
    _find_layer,
    _freeze_batchnorm,
    _fresh_optimizer,
    _infer_task,
    _layers,
    _learning_rate,
    _load,
    _new_inputs,
    _one_hot,
    _one_rule,
    _replay,
    _set_trainable,
    _single,
    _units,
    _without_augmentation,
    source_file,
    source_sha256,
)
from annzoo.models._common import check_compile, check_outputs, output_head
from annzoo.speedups import with_host_initialization

__all__ = [
    "finetune",
    "freeze",
    "unfreeze",
    "replace_head",
    "feature_extractor",
    "frozen_layers",
    "source_file",
    "source_sha256",
]

BATCHNORM_MODES = ("frozen", "train")
DEFAULT_LEARNING_RATE = 1e-3  # Adam's default, for an uncompiled source
Source = keras.Model | str | os.PathLike


@with_host_initialization
def finetune(
    model: Source,
    *,
    num_classes: int | None = None,
    task: str | None = None,
    truncate: int = 1,
    freeze: str | int | float | None = "base",
    learning_rate: float | None = None,
    learning_rate_scale: float = 0.1,
    batchnorm: str = "frozen",
    input_shape: tuple[int, int, int] | None = None,
    compile: bool | dict = True,
) -> keras.Model:
    """A new model for transfer learning from ``model``, which stays untouched.

    ``model`` without its last ``truncate`` units (see the module docstring)
    plus a new ``head_logits`` + ``predictions`` head; the kept layers are
    copies holding the same weights.

    Args:
        model: a Functional or Sequential ``keras.Model``, a ``.keras`` file,
            or a run directory of ``annzoo.training.train`` (its
            ``best.keras``, else ``final.keras``).
        num_classes: outputs of the new head; defaults to the old head's.
        task: ``"multiclass"``, ``"binary"`` or ``"regression"``; defaults to
            the source's, read from its output activation (softmax, sigmoid,
            linear).
        truncate: how many units to remove from the end (1: the classifier).
        freeze: which kept layers to freeze; the others are made trainable.
            ``"base"``/``True``: all; ``None``/``False``/``0``: none; an int
            N: the first N (``model.layers`` order, input layers not
            counted); a float in [0, 1]: that fraction of them, rounded down
            (``1.0`` is all, ``1`` one layer); a layer name: every layer up to
            and including it. The new head always trains.
        learning_rate: the new model's learning rate. By default,
            ``learning_rate_scale`` times the source optimizer's when it is
            compiled, else times 1e-3.
        learning_rate_scale: see ``learning_rate``.
        batchnorm: ``"frozen"``: every BatchNormalization layer kept is frozen,
            in inference mode; ``"train"``: they follow ``freeze``.
        input_shape: a new ``(height, width, channels)`` input, adapted with
            :func:`annzoo.layers.adapt.input_adapters`: resized to the
            model's size, a gray channel repeated, other channel counts
            mapped by a trainable 1x1 convolution. The source's own input
            shape (any rank) changes nothing.
        compile: ``True`` (the source's optimizer class and settings with a
            fresh state, else Adam), ``False``, or a dict of further
            ``annzoo.compile_model`` arguments (``optimizer``, ``metrics``...).

    Returns:
        A new ``keras.Model``, compiled unless ``compile=False``.

    Example:
        >>> model = annzoo.finetune(base, num_classes=5, input_shape=(28, 28, 1))
    """
    truncate = check_positive_int("truncate", truncate)
    check_choice("batchnorm", batchnorm, BATCHNORM_MODES)
    if learning_rate is not None:
        learning_rate = check_positive_float("learning_rate", learning_rate)
    scale = check_positive_float("learning_rate_scale", learning_rate_scale)
    if task is not None:
        task = tasks.check_task(task, tasks.SAMPLE_TASKS)
    if input_shape is not None:
        input_shape = check_input_shape("input_shape", input_shape)
    if freeze is True or freeze is False:
        freeze = "base" if freeze else None
    if not (freeze is None or isinstance(freeze, str | numbers.Real)):
        raise AnnzooError(f"{_FREEZE} Received: freeze={freeze!r}")
    if isinstance(compile, dict) and {"task", "learning_rate"} & set(compile):
        raise AnnzooError(
            "`compile` must not set 'task' or 'learning_rate': pass them to "
            f"finetune itself. Received: compile={compile!r}"
        )
    loaded = _load(model)
    source = _without_augmentation(loaded)  # a run with augment.placement: model
    units = _units(source)
    if truncate > len(units) or units[truncate - 1].cut is None:
        removable = next((i for i, u in enumerate(units) if u.cut is None), len(units))
        raise AnnzooError(
            f"`truncate` must be at most {removable} for this model: removing "
            f"{[u.layers[-1].name for u in units[:truncate]]} leaves no single "
            "tensor to put a head on (only the input, or a layer merging "
            f"several). Received: truncate={truncate}"
        )
    task = task or _infer_task(units[0].layers[0])
    num_classes = source.output_shape[-1] if num_classes is None else num_classes
    num_classes = check_outputs("num_classes", num_classes, task)
    compile = check_compile(compile, task)

    base = keras.Model(_single(source.inputs), units[truncate - 1].cut)
    inputs, adapted, adapters = _new_inputs(source, input_shape)
    outputs = output_head(_replay(base, adapted), num_classes, task)
    new = keras.Model(_single(inputs), outputs, name=f"{source.name}_finetuned")

    head = {id(new.get_layer(n)) for n in ("head_logits", "predictions")}
    kept = [x for x in _layers(new) if id(x) not in head | adapters]
    frozen = 0 if freeze is None else _count("freeze", freeze, kept, len(kept))
    for i, layer in enumerate(kept):
        layer.trainable = i >= frozen
    if batchnorm == "frozen":
        _freeze_batchnorm(kept)
    if compile is False or compile is None:
        return new

    if learning_rate is None:
        old = _learning_rate(loaded)
        learning_rate = scale * (DEFAULT_LEARNING_RATE if old is None else old)
    options = {} if compile is True else dict(compile)
    if "optimizer" not in options and getattr(loaded, "optimizer", None):
        options["optimizer"] = _fresh_optimizer(loaded.optimizer, learning_rate)
    if task == "multiclass" and _one_hot(loaded):
        options.setdefault("label_format", "one_hot")
    return tasks.compile_model(new, task=task, learning_rate=learning_rate, **options)


def replace_head(
    model: Source, num_classes: int, *, task: str | None = None, compile=True
) -> keras.Model:
    """A copy of ``model`` with a new classifier head, every layer trainable.

    ``finetune(model, num_classes=..., truncate=1, freeze=None,
    batchnorm="train", learning_rate_scale=1.0)``: the learning rate is the
    source's (or 1e-3).

    Example:
        >>> model = annzoo.replace_head(annzoo.create_model("lenet5"), 3)
    """
    return finetune(
        model,
        num_classes=num_classes,
        task=task,
        freeze=None,
        batchnorm="train",
        learning_rate_scale=1.0,
        compile=compile,
    )


def feature_extractor(model: Source, layer: str | int | None = None) -> keras.Model:
    """An uncompiled model from ``model``'s inputs to the output of ``layer``.

    It shares its layers and weights with ``model``.

    Args:
        model: a ``keras.Model``, ``.keras`` file or run directory.
        layer: a layer name, an index into ``model.layers`` (input layers
            included, negative from the end), or ``None``: the head's input,
            the penultimate representation.

    Example:
        >>> features = annzoo.feature_extractor(model).predict(images)
    """
    source = _without_augmentation(_load(model))
    if layer is None:
        tensor = _units(source)[0].cut
        if tensor is None:
            raise AnnzooError(
                "`layer` is required: the model's head merges several inputs. "
                "Received: layer=None"
            )
    else:
        target = _find_layer(source, layer)
        try:
            tensor = target.output
        except (AttributeError, ValueError) as error:
            raise AnnzooError(
                f"`layer` {target.name!r} is called more than once in the model, "
                f"so it has no single output. Received: layer={layer!r}"
            ) from error
    return keras.Model(_single(source.inputs), tensor, name=f"{source.name}_features")


def freeze(
    model: keras.Model,
    up_to: str | None = None,
    *,
    count: int | None = None,
    fraction: float | None = None,
    batchnorm: str = "frozen",
) -> keras.Model:
    """Freezes the first layers of ``model`` in place (never its head).

    Keras applies a change of ``trainable`` only when the model is compiled
    again: a compiled model is recompiled here with the same loss, metrics and
    optimizer settings (the optimizer state starts afresh). Layers not
    selected keep their flag.

    Args:
        model: a ``keras.Model``.
        up_to: freeze every layer up to and including this one.
        count: freeze the first ``count`` layers (input layers not counted).
        fraction: freeze this fraction of them (in [0, 1], rounded down).
            With none of the three, every layer but the head (the last
            unit, see the module docstring) is frozen.
        batchnorm: ``"frozen"`` also freezes every BatchNormalization layer
            of the model (see the module docstring); ``"train"`` leaves them.

    Returns:
        ``model``.
    """
    check_choice("batchnorm", batchnorm, BATCHNORM_MODES)
    _check_model(model)
    head = {id(layer) for layer in _units(model)[0].layers}
    body = [layer for layer in _layers(model) if id(layer) not in head]
    rule = _one_rule(up_to=up_to, count=count, fraction=fraction)
    return _set_trainable(model, body, rule, False, batchnorm)


def unfreeze(
    model: keras.Model,
    from_layer: str | None = None,
    *,
    count: int | None = None,
    fraction: float | None = None,
    batchnorm: str = "frozen",
) -> keras.Model:
    """Makes the last layers of ``model`` trainable in place; see :func:`freeze`.

    Args:
        model: a ``keras.Model``.
        from_layer: unfreeze this layer and every one after it.
        count: unfreeze the last ``count`` layers.
        fraction: unfreeze this fraction of the layers (in [0, 1], rounded
            down), the last ones. With none of the three, every layer.
        batchnorm: ``"frozen"`` (the default) keeps every BatchNormalization
            layer frozen; ``"train"`` unfreezes them with the rest.

    Returns:
        ``model``, recompiled if it was compiled.
    """
    check_choice("batchnorm", batchnorm, BATCHNORM_MODES)
    _check_model(model)
    rule = _one_rule(from_layer=from_layer, count=count, fraction=fraction)
    return _set_trainable(model, _layers(model)[::-1], rule, True, batchnorm)


def frozen_layers(model: keras.Model) -> tuple[list[str], list[str]]:
    """The names of ``model``'s frozen and of its trainable layers.

    Layers that hold weights only (pooling or dropout have nothing to
    freeze), nested models looked into; what fine-tuning reports.

    Example:
        >>> frozen, trainable = frozen_layers(finetune(run_dir, num_classes=5))
    """
    frozen, trainable = [], []
    for layer in _layers(model):
        if isinstance(layer, keras.Model):
            inner = frozen_layers(layer)
            frozen += inner[0] if layer.trainable else inner[0] + inner[1]
            trainable += inner[1] if layer.trainable else []
        elif layer.weights:
            (trainable if layer.trainable else frozen).append(layer.name)
    return frozen, trainable


# --- structure -----------------------------------------------------------------

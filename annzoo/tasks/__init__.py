"""Tasks: what a kind of model output means, as objects the rest of annzoo asks.

Each task (:class:`Binary`, :class:`Multiclass`, :class:`Regression`,
:class:`Sequence`, :class:`Tagging`, :class:`Reconstruction`,
:class:`Generation`) owns its output activation, default loss
and metrics, the checks its labels must pass before training, how outputs
become predictions and what a run report draws. :func:`get_task` returns the
object for a name; :func:`compile_model` compiles a model for one.
"""

from __future__ import annotations

import contextlib
import difflib
import inspect
import math
from collections.abc import Iterator, Mapping
from typing import Any

import keras

from annzoo._checks import check_choice, check_positive_float
from annzoo.errors import AnnzooError
from annzoo.layers.crf import CRFLoss
from annzoo.speedups import build_fit_state as build_fit_state  # re-exported
from annzoo.tasks.objects import (
    _TASK_OBJECTS,
    Binary,
    Generation,
    Multiclass,
    Reconstruction,
    Regression,
    Sequence,
    Tagging,
    Task,
    _crf_layer,
    get_task,
    register_task,
)

__all__ = [
    "TASKS",
    "Binary",
    "Generation",
    "Multiclass",
    "Reconstruction",
    "Regression",
    "Sequence",
    "Tagging",
    "Task",
    "get_task",
    "register_task",
    "OPTIMIZERS",
    "compile_model",
    "get_optimizer",
    "mixed_precision",
    "output_activation",
]

# The built-in tasks; `register_task` adds others (`check_task` accepts those too).
TASKS = tuple(_TASK_OBJECTS)
# Compute precisions of mixed_precision: None keeps float32.
PRECISIONS = (None, "bfloat16", "float16")
LABEL_FORMATS = ("sparse", "one_hot")

# name -> (Keras class name, fixed keyword arguments). Learning rates default to
# Keras' own defaults for each optimizer.
OPTIMIZERS: dict[str, tuple[str, dict[str, Any]]] = {
    "sgd": ("SGD", {}),
    "momentum": ("SGD", {"momentum": 0.9}),
    "nesterov": ("SGD", {"momentum": 0.9, "nesterov": True}),
    "adam": ("Adam", {}),
    "adamw": ("AdamW", {}),
    "nadam": ("Nadam", {}),
    "adamax": ("Adamax", {}),
    "adagrad": ("Adagrad", {}),
    "adadelta": ("Adadelta", {}),
    "rmsprop": ("RMSprop", {}),
    "lion": ("Lion", {}),
}


# The tasks of models with one output per sample (or per step for taggers).
SAMPLE_TASKS = ("binary", "multiclass", "regression")


def check_task(task: Any, allowed: tuple[str, ...] | None = None) -> str:
    """``task`` when it is one of ``allowed`` (default: every registered task)."""
    return check_choice(
        "task", task, tuple(_TASK_OBJECTS) if allowed is None else allowed
    )


def output_activation(task: str) -> str:
    """The activation of the output layer for ``task``."""
    return get_task(check_task(task)).activation


def get_optimizer(
    optimizer: str | keras.optimizers.Optimizer = "adam",
    learning_rate: float | None = None,
    **kwargs: Any,
) -> keras.optimizers.Optimizer:
    """Returns a fresh optimizer for a name in :data:`OPTIMIZERS`, or ``optimizer``.

    Args:
        optimizer: a name (``"sgd"``, ``"momentum"``, ``"adam"``, ``"adamw"``,
            ``"adagrad"``, ``"rmsprop"``, ...) or a Keras optimizer instance.
        learning_rate: overrides the optimizer's default learning rate.
        **kwargs: further optimizer arguments (``weight_decay``, ``clipnorm``...).
    """
    if learning_rate is not None:
        learning_rate = check_positive_float("learning_rate", learning_rate)
    if isinstance(optimizer, keras.optimizers.Optimizer):
        if learning_rate is not None:
            optimizer.learning_rate = learning_rate
        return optimizer
    name = check_choice("optimizer", optimizer, OPTIMIZERS)
    class_name, fixed = OPTIMIZERS[name]
    options = {**fixed, **kwargs}
    if learning_rate is not None:
        options["learning_rate"] = learning_rate
    return getattr(keras.optimizers, class_name)(**options)


def check_optimizer_options(
    optimizer: str | keras.optimizers.Optimizer,
    options: Any,
    *,
    name: str = "optimizer_options",
    optimizer_name: str = "optimizer",
    own_fields: Mapping[str, str] | None = None,
    build: bool = True,
) -> None:
    """Checks ``options``, keyword arguments for ``optimizer``'s Keras class.

    Each key must be an argument of that class (not ``name`` or
    ``learning_rate``, nor any key of ``own_fields``, which maps an argument
    to the setting that sets it instead), each value a number, a boolean or
    None, and, where ``build``, the class must accept them together (by
    building one: that starts the backend, so a recipe's check before a
    multi-process job joins leaves it to `build_optimizer`). An optimizer
    instance brings its own options: only the mapping is checked. Errors
    name ``name`` (and the optimizer as ``optimizer_name``), what was
    expected and what was received.
    """
    if not options:
        if options is None or isinstance(options, Mapping):
            return
    if not isinstance(options, Mapping):
        raise AnnzooError(
            f"`{name}` must be a mapping of the optimizer's keyword arguments, "
            f"such as {{beta_1: 0.5}}. Received: {name}={options!r}"
        )
    if not isinstance(optimizer, str):  # an optimizer instance: its own options
        return
    own = {"learning_rate": "learning_rate", **(own_fields or {})}
    class_name, fixed = OPTIMIZERS[check_choice("optimizer", optimizer, OPTIMIZERS)]
    cls = getattr(keras.optimizers, class_name)
    allowed = set(inspect.signature(cls.__init__).parameters)
    allowed -= {"self", "kwargs", "name", *own}
    for key in options:
        if key in own:
            raise AnnzooError(
                f"`{name}.{key}` must be set by `{own[key]}` instead. "
                f"Received: {name}={dict(options)!r}"
            )
        if key not in allowed:
            close = difflib.get_close_matches(str(key), sorted(allowed), n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise AnnzooError(
                f"`{name}` must hold keyword arguments of keras.optimizers."
                f"{class_name} ({optimizer_name}={optimizer!r}), and {key!r} is "
                f"not one: expected some of {sorted(allowed)}.{hint} Received: "
                f"{name}={dict(options)!r}"
            )
        value = options[key]
        number = isinstance(value, int | float) and math.isfinite(value)
        if not (number or value is None):  # bools are ints: amsgrad, nesterov
            raise AnnzooError(
                f"`{name}.{key}` must be a number, true, false or null. "
                f"Received: {name}={dict(options)!r}"
            )
    if build:
        build_optimizer(optimizer, None, options, name=name)


def build_optimizer(
    optimizer: str | keras.optimizers.Optimizer,
    learning_rate: float | None,
    options: Mapping[str, Any],
    *,
    name: str = "optimizer_options",
) -> keras.optimizers.Optimizer:
    """`get_optimizer` with keyword arguments ``options``; values its Keras
    class refuses together (``clipnorm`` with ``clipvalue``...) are an
    `AnnzooError` naming ``name``, not Keras' own exception."""
    try:
        return get_optimizer(optimizer, learning_rate, **options)
    except AnnzooError:  # a name or rate of annzoo's: already named
        raise
    except (TypeError, ValueError) as error:
        class_name = OPTIMIZERS[optimizer][0] if isinstance(optimizer, str) else ""
        raise AnnzooError(
            f"`{name}` must be values keras.optimizers.{class_name} accepts; "
            f"it refused them ({' '.join(str(error).split())[:200]}). Received: "
            f"{name}={dict(options)!r}"
        ) from None


def check_compile_options(options: dict[str, Any]) -> None:
    """Checks :func:`compile_model` arguments without needing a model."""
    if "task" in options:
        check_task(options["task"])
    if "label_format" in options:
        check_choice("label_format", options["label_format"], LABEL_FORMATS)
    optimizer = options.get("optimizer", "adam")
    if not isinstance(optimizer, keras.optimizers.Optimizer):
        if not isinstance(optimizer, str):
            raise AnnzooError(
                "`optimizer` must be an optimizer name or a keras.optimizers."
                f"Optimizer. Received: optimizer={optimizer!r}"
            )
        check_choice("optimizer", optimizer, OPTIMIZERS)
    if options.get("learning_rate") is not None:
        check_positive_float("learning_rate", options["learning_rate"])
    known = set(inspect.signature(compile_model).parameters) | set(
        inspect.signature(keras.Model.compile).parameters
    )
    known -= {"model", "self", "compile_kwargs", "kwargs"}
    unknown = sorted(set(options) - known)
    if unknown:
        raise AnnzooError(
            f"{unknown[0]!r} is not an argument of compile_model or Model.compile. "
            f"Expected some of {sorted(known)}. Received: {unknown}"
        )


def output_activations(model: keras.Model) -> list[str]:
    """The activation names of ``model``'s output layers that can be told.

    An output layer with an ``activation`` (``Dense``, ``Activation``, a
    convolution) or a ``Softmax`` layer is known; others (a CRF, a custom or
    subclassed model's layers) are left out, and nothing is checked for them.
    """
    if isinstance(model, keras.Sequential):
        layers = model.layers[-1:]
    else:
        names = getattr(model, "output_names", None) or []
        try:
            layers = [model.get_layer(name) for name in names]
        except ValueError:  # a name that is not a layer's (subclassed models)
            layers = []
    found = []
    for layer in layers:
        if isinstance(layer, keras.layers.Softmax):
            found.append("softmax")
            continue
        activation = getattr(layer, "activation", None)
        name = getattr(activation, "__name__", None) if callable(activation) else None
        if isinstance(name, str):
            found.append(name)
    return found


def compile_model(
    model: keras.Model,
    *,
    task: str = "multiclass",
    optimizer: str | keras.optimizers.Optimizer = "adam",
    learning_rate: float | None = None,
    loss: Any = "auto",
    metrics: Any = "auto",
    label_format: str = "sparse",
    from_logits: bool = False,
    **compile_kwargs: Any,
) -> keras.Model:
    """Compiles ``model`` for ``task`` and returns it.

    Args:
        model: a Keras model whose outputs already carry the task's activation
            (every annzoo builder does; pass ``from_logits=True`` for a model
            that ends in raw scores). With the task's own loss (``loss="auto"``)
            an output activation that does not fit is refused (see
            :meth:`Task.check_output_activation`): regression on a softmax or
            sigmoid, multiclass on a non-softmax without ``from_logits``...
        task: ``"binary"``, ``"multiclass"`` or ``"regression"``.
        optimizer: an optimizer name (see :data:`OPTIMIZERS`) or instance.
        learning_rate: overrides the optimizer's default learning rate.
        loss: ``"auto"`` picks the task's loss (the CRF likelihood for a model
            ending in an :class:`annzoo.layers.CRF`); anything else goes to
            Keras.
        metrics: ``"auto"`` picks the task's metrics (accuracy, or MAE for
            regression); anything else goes to Keras.
        label_format: for ``"multiclass"``: ``"sparse"`` integer labels or
            ``"one_hot"`` rows.
        from_logits: whether the model outputs logits rather than
            probabilities.
        **compile_kwargs: passed to ``model.compile`` (``jit_compile``,
            ``steps_per_execution``, ...).

    Returns:
        The same model, compiled.

    Example:
        >>> model = annzoo.build_mlp(4, 3, compile=False)
        >>> annzoo.compile_model(model, task="multiclass", optimizer="sgd",
        ...                      learning_rate=0.1)
    """
    check_compile_options(
        dict(
            task=task,
            optimizer=optimizer,
            learning_rate=learning_rate,
            label_format=label_format,
            **compile_kwargs,
        )
    )
    task_object = get_task(task)
    auto_loss, auto_metrics = task_object.loss_and_metrics(
        label_format=label_format, from_logits=from_logits
    )
    crf = _crf_layer(model)
    if crf is None and isinstance(loss, str) and loss == "auto":
        # The task's loss assumes the output's activation; a user's own loss
        # may assume anything, and a CRF's loss takes raw emission scores.
        for activation in output_activations(model):
            task_object.check_output_activation(activation, from_logits=from_logits)
    if crf is not None:
        # A CRF tagger outputs emission scores: its loss is the CRF's negative
        # log-likelihood, and per-step accuracy of emissions means nothing.
        auto_loss, auto_metrics = CRFLoss(crf), []
    model.compile(
        optimizer=get_optimizer(optimizer, learning_rate),
        loss=auto_loss if isinstance(loss, str) and loss == "auto" else loss,
        metrics=auto_metrics
        if isinstance(metrics, str) and metrics == "auto"
        else metrics,
        **compile_kwargs,
    )
    return model


def backend_steps_per_execution(steps: int) -> int:
    """``steps``, or 1 where the Keras backend runs one training step per call.

    Keras' PyTorch trainer refuses any ``steps_per_execution`` but 1 (at the
    first ``fit`` step); TensorFlow and JAX run ``steps`` per call.
    """
    return 1 if keras.backend.backend() == "torch" else steps


def set_steps_per_execution(model: keras.Model, steps: int) -> None:
    """Sets a compiled model's training steps per call, dropping the train
    function traced for the old value (if any)."""
    if model.steps_per_execution != steps:
        model.steps_per_execution = steps
        model.train_function = None


def check_mixed_precision(name: str, value: Any) -> str | None:
    """``value`` when it is one of `PRECISIONS`, else an error naming ``name``."""
    if value not in PRECISIONS:
        raise AnnzooError(
            f"`{name}` must be None, 'bfloat16' or 'float16'. "
            f"Received: {name}={value!r}"
        )
    return value


@contextlib.contextmanager
def mixed_precision(precision: str | None) -> Iterator[None]:
    """Models built inside compute in ``precision`` (variables stay float32).

    ``"bfloat16"`` or ``"float16"`` sets Keras' ``mixed_...`` dtype policy
    for the block and restores the one before it afterwards, even after an
    error; None changes nothing. annzoo's output layers stay float32, and
    ``compile`` wraps the optimizer in loss scaling under float16. A model
    keeps its policy after the block (a saved model reloads with it).

    Example:
        >>> with annzoo.tasks.mixed_precision("bfloat16"):
        ...     model = annzoo.build_cnn((32, 32, 3), 10)
    """
    check_mixed_precision("mixed_precision", precision)
    if precision is None:
        yield
        return
    before = keras.config.dtype_policy()
    keras.config.set_dtype_policy(f"mixed_{precision}")
    try:
        yield
    finally:
        keras.config.set_dtype_policy(before)

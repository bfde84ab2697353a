"""Tasks: what a kind of model output means, as objects the rest of annzoo asks.

Each task (:class:`Binary`, :class:`Multiclass`, :class:`Regression`,
:class:`Sequence`, :class:`Tagging`) owns its output activation, default loss
and metrics, the checks its labels must pass before training, how outputs
become predictions and what a run report draws. :func:`get_task` returns the
object for a name; :func:`compile_model` compiles a model for one.
"""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import Iterator
from typing import Any

import keras
import numpy as np

from annzoo._checks import (
    all_finite,
    check_choice,
    check_positive_float,
    non_finite_summary,
)
from annzoo.errors import AnnzooError
from annzoo.layers.crf import CRF, CRFLoss, viterbi_decode
from annzoo.metrics import TokenAccuracy
from annzoo.speedups import build_fit_state as build_fit_state  # re-exported
from annzoo.speedups import fuse_steps
from annzoo.text import PAD_ID

__all__ = [
    "TASKS",
    "Task",
    "get_task",
    "register_task",
    "OPTIMIZERS",
    "compile_model",
    "get_optimizer",
    "mixed_precision",
    "output_activation",
]

TASKS = ("binary", "multiclass", "regression", "sequence", "tagging")
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


# -- task objects ----------------------------------------------------------------
#
# A task owns what the rest of annzoo needs to know about a kind of output: the
# output activation, the loss and metrics, which labels fit (checked before any
# training, since accelerators do not check them), how outputs become
# predictions, and what a run report draws. The runner, tuner, predict and
# finetune ask the task instead of branching on its name.


def _first_value(array: np.ndarray) -> Any:
    """The array's first element as a plain Python value (for error messages)."""
    first = array.flat[0] if array.size else None
    return first.item() if isinstance(first, np.generic) else first


def _subject(where: str) -> str:
    return where[:1].upper() + where[1:]


def _check_numeric_labels(y: np.ndarray, subject: str) -> bool:
    """Numbers, finite; returns False when there is nothing to check further."""
    if y.ndim == 0:
        raise AnnzooError(
            f"{subject} must have one label per sample. Received: a scalar {y!r}."
        )
    if y.dtype.kind not in "biuf":
        raise AnnzooError(
            f"{subject} must be numbers (class ids or targets). Encode text labels "
            "first, e.g. `classes, y = np.unique(y, return_inverse=True)`. "
            f"Received: labels of dtype {y.dtype}, such as {_first_value(y)!r}."
        )
    if not y.size:
        return False
    if not all_finite(y):
        raise AnnzooError(
            f"{subject} must be finite numbers. Received: {non_finite_summary(y)}."
        )
    return True


def _check_columns(y: np.ndarray, subject: str, task: str, k: int) -> None:
    """One output takes (n,) or (n, 1); k outputs need one column each."""
    n = len(y)
    if y.shape[1:] not in (((), (1,)) if k == 1 else ((k,),)):
        shapes = f"({n},) or ({n}, 1)" if k == 1 else f"({n}, {k})"
        raise AnnzooError(
            f"{subject} must have shape {shapes}, one column per output of the "
            f"model (task={task!r}, {k} output{'s' if k != 1 else ''}); other "
            "shapes would be broadcast against the predictions. Received: "
            f"labels of shape {y.shape}."
        )


def _check_ids(
    y: np.ndarray, subject: str, low: int, high: int, what: str, context: str = ""
) -> None:
    """Integer ids in [low, high]; names the first one outside and where it is."""
    flat = y.reshape(-1)
    per_sample = max(1, flat.size // max(1, len(y)))
    if flat.dtype.kind == "f":
        whole = flat == np.floor(flat)
        if not whole.all():
            at = int(np.flatnonzero(~whole)[0])
            raise AnnzooError(
                f"{subject} must be integer {what}{context}. Received: non-integer "
                f"labels such as {flat[at]!r} (sample {at // per_sample})."
            )
    smallest, largest = flat.min(), flat.max()
    if smallest < low or largest > high:
        outside = (flat < low) | (flat > high)
        at = int(np.flatnonzero(outside)[0])
        raise AnnzooError(
            f"{subject} must be {what} in [{low}, {high}]{context}. Received: "
            f"labels from {smallest.item()!r} to {largest.item()!r}; "
            f"{int(outside.sum())} of {flat.size} are outside [{low}, {high}], the "
            f"first ({flat[at].item()!r}) in sample {at // per_sample}. On "
            "accelerators such labels give NaN losses (TensorFlow) or silently "
            "count as zero loss (JAX)."
        )


class Task:
    """A kind of model output: activation, loss, metrics, labels, predictions.

    Attributes:
        name: the name builders and recipes use (``task="multiclass"``).
        activation: the output layer's activation.
        structure: the dataset structure it trains on: ``"sample"`` (one
            label row per sample), ``"tagging"`` (one tag per token) or
            ``"sequence"`` (a target token sequence per sample).
        classes: whether labels are classes (the train split must hold two).
        confusion_matrix: whether a run's report draws a confusion matrix.
        label_formats: the ``label_format`` values the task accepts.
    """

    name = ""
    activation = "linear"
    structure = "sample"
    classes = False
    confusion_matrix = False
    label_formats: tuple[str, ...] = ("sparse",)

    def loss_and_metrics(
        self, *, label_format: str = "sparse", from_logits: bool = False
    ) -> tuple[Any, list]:
        """The loss and metrics ``compile_model(task=...)`` uses by default."""
        raise NotImplementedError

    def check_labels(
        self,
        y: Any,
        *,
        num_outputs: int,
        where: str,
        label_format: str | None = None,
    ) -> None:
        """Refuses labels the loss cannot take, with a message naming ``where``."""
        raise NotImplementedError

    def predictions(self, outputs: np.ndarray) -> np.ndarray:
        """What a user reads from the model's outputs (classes or values)."""
        return np.asarray(outputs)

    def predict(self, model: keras.Model, x: Any, *, batch_size: int = 32):
        """``predictions`` of ``model`` on ``x``."""
        return self.predictions(model.predict(x, batch_size=batch_size, verbose=0))

    def __repr__(self) -> str:
        return f"<annzoo task {self.name!r}>"


class Binary(Task):
    """One sigmoid unit per label (several: independent multi-label outputs);
    binary cross-entropy on labels in {0, 1}."""

    name = "binary"
    activation = "sigmoid"
    classes = True

    def loss_and_metrics(self, *, label_format="sparse", from_logits=False):
        return keras.losses.BinaryCrossentropy(from_logits=from_logits), [
            keras.metrics.BinaryAccuracy(
                name="accuracy", threshold=0.0 if from_logits else 0.5
            )
        ]

    def check_labels(self, y, *, num_outputs, where, label_format=None):
        y, subject = np.asarray(y), _subject(where)
        if not _check_numeric_labels(y, subject):
            return
        _check_columns(y, subject, self.name, int(num_outputs))
        valid = (y == 0) | (y == 1)
        if not valid.all():
            flat = y.reshape(-1)
            index = int(np.flatnonzero(~valid.reshape(-1))[0])
            raise AnnzooError(
                f"{subject} must be 0 or 1 for task='binary'. Received: "
                f"{int((~valid).sum())} labels outside {{0, 1}}, the first "
                f"({flat[index].item()!r}) in sample "
                f"{index // max(1, flat.size // len(y))}."
            )

    def predictions(self, outputs):
        outputs = np.asarray(outputs)
        return (outputs[..., 0] > 0.5).astype(int)


class Multiclass(Task):
    """Softmax over ``num_classes`` units; cross-entropy on integer labels
    (``label_format="sparse"``) or one-hot rows (``"one_hot"``)."""

    name = "multiclass"
    activation = "softmax"
    classes = True
    confusion_matrix = True
    label_formats = ("sparse", "one_hot")

    def loss_and_metrics(self, *, label_format="sparse", from_logits=False):
        if label_format == "one_hot":
            return keras.losses.CategoricalCrossentropy(from_logits=from_logits), [
                keras.metrics.CategoricalAccuracy(name="accuracy")
            ]
        return keras.losses.SparseCategoricalCrossentropy(from_logits=from_logits), [
            keras.metrics.SparseCategoricalAccuracy(name="accuracy")
        ]

    def check_labels(self, y, *, num_outputs, where, label_format=None):
        y, subject = np.asarray(y), _subject(where)
        if not _check_numeric_labels(y, subject):
            return
        n, k = len(y), int(num_outputs)
        one_hot = y.ndim == 2 and y.shape[1] == k and k > 1
        ids = y.ndim == 1 or (
            y.ndim == 2 and y.shape[1] == 1 and label_format != "one_hot"
        )
        if not (one_hot or ids):
            raise AnnzooError(
                f"{subject} must be class ids of shape ({n},) or one-hot rows of "
                f"shape ({n}, {k}), for a model with {k} classes (task='multiclass'"
                + ("" if label_format is None else f", label_format={label_format!r}")
                + f"). Received: labels of shape {y.shape}."
            )
        if one_hot:
            if label_format == "sparse":
                raise AnnzooError(
                    f"{subject} are one-hot rows of shape {y.shape}, so "
                    "`data.label_format` must be 'one_hot' (or pass class ids, "
                    "y.argmax(axis=1)). Received: data.label_format='sparse'."
                )
            valid = ((y >= 0) & (y <= 1)).all(axis=1) & (
                np.abs(y.sum(axis=1, dtype=np.float64) - 1.0) <= 1e-3
            )
            if not valid.all():
                row = int(np.flatnonzero(~valid)[0])
                raise AnnzooError(
                    f"{subject} must be one-hot rows (values in [0, 1] that sum to "
                    f"1) of width {k}. Received: {int((~valid).sum())} of {n} rows "
                    f"that are not, the first row {row}: {y[row].tolist()}."
                )
            return
        context = f", for a model with {k} classes (task='multiclass')"
        _check_ids(y, subject, 0, k - 1, "class ids", context)

    def predictions(self, outputs):
        return np.asarray(outputs).argmax(axis=-1)


class Regression(Task):
    """Linear outputs; mean squared error, with mean absolute error reported."""

    name = "regression"

    def loss_and_metrics(self, *, label_format="sparse", from_logits=False):
        return keras.losses.MeanSquaredError(), [
            keras.metrics.MeanAbsoluteError(name="mae")
        ]

    def check_labels(self, y, *, num_outputs, where, label_format=None):
        y, subject = np.asarray(y), _subject(where)
        if _check_numeric_labels(y, subject):
            _check_columns(y, subject, self.name, int(num_outputs))

    def predictions(self, outputs):
        outputs = np.asarray(outputs)
        return outputs[..., 0] if outputs.shape[-1] == 1 else outputs


class Sequence(Task):
    """A softmax over a token vocabulary at every output step (sequence to
    sequence, captioning); labels are token ids padded with 0 (see
    :mod:`annzoo.text`), and padded steps count in neither the loss
    (cross-entropy with ``ignore_class=0``) nor ``token_accuracy``."""

    name = "sequence"
    activation = "softmax"
    structure = "sequence"

    def loss_and_metrics(self, *, label_format="sparse", from_logits=False):
        if label_format != "sparse":
            raise AnnzooError(
                "`label_format` must be 'sparse' (token ids) for task='sequence'. "
                f"Received: label_format={label_format!r}"
            )
        loss = keras.losses.SparseCategoricalCrossentropy(
            from_logits=from_logits, ignore_class=PAD_ID
        )
        return loss, [TokenAccuracy(ignore_class=PAD_ID)]

    def check_labels(self, y, *, num_outputs, where, label_format=None):
        y, subject = np.asarray(y), _subject(where)
        if y.dtype.kind not in "iu":
            raise AnnzooError(
                f"{subject} must be integer token ids. Received dtype {y.dtype}."
            )
        if y.size:
            _check_ids(y, subject, 0, int(num_outputs) - 1, "token ids")

    def predictions(self, outputs):
        return np.asarray(outputs).argmax(axis=-1)


class Tagging(Multiclass):
    """One class (tag) per token: a softmax at every step, or a CRF on top.

    Tags are ids in ``[0, num_tags)``, with -1 at padded steps (what the CRF
    loss expects; without a CRF the embedding's mask keeps padded steps out of
    the loss). Reported by entity-level F1, not a confusion matrix.
    """

    name = "tagging"
    structure = "tagging"
    confusion_matrix = False
    label_formats = ("sparse",)

    def check_labels(self, y, *, num_outputs, where, label_format=None, x=None):
        y, subject = np.asarray(y), _subject(where)
        if y.dtype.kind not in "iu":
            raise AnnzooError(
                f"{subject} must be integer tag ids. Received dtype {y.dtype}."
            )
        if x is not None and (y.ndim != 2 or y.shape != np.shape(x)[: y.ndim]):
            raise AnnzooError(
                f"{subject} must have one tag id per token, shape {np.shape(x)}. "
                f"Received shape {y.shape}."
            )
        if y.size:
            _check_ids(y, subject, -1, int(num_outputs) - 1, "tag ids (-1 at padding)")

    def predict(self, model, x, *, batch_size=32):
        """Tag ids ``(batch, steps)``: the Viterbi path of a CRF tagger (-1 at
        padded steps), else the most likely tag at each step."""
        crf = _crf_layer(model)
        if crf is None:
            return super().predict(model, x, batch_size=batch_size)
        tokens = np.asarray(x["tokens"] if isinstance(x, dict) else x)
        if tokens.ndim != 2:
            raise AnnzooError(
                "`x` must be token ids of shape (batch, steps). Received: x.shape="
                f"{tokens.shape}"
            )
        emissions = model.predict(tokens, batch_size=batch_size, verbose=0)
        tags, _ = viterbi_decode(emissions, *crf.get_weights(), mask=tokens != PAD_ID)
        return tags


_TASK_OBJECTS: dict[str, Task] = {
    task.name: task for task in (Binary(), Multiclass(), Regression(), Sequence(),
                                 Tagging())
}  # fmt: skip


def get_task(task: str | Task) -> Task:
    """The :class:`Task` named ``task`` (a task object is returned as it is)."""
    if isinstance(task, Task):
        return task
    return _TASK_OBJECTS[check_choice("task", task, tuple(_TASK_OBJECTS))]


def register_task(task: Task) -> Task:
    """Adds a task object (a family with a new kind of output brings its own)."""
    if not isinstance(task, Task) or not task.name:
        raise AnnzooError(
            f"`task` must be a named annzoo.tasks.Task. Received: task={task!r}"
        )
    if task.name in _TASK_OBJECTS:
        raise AnnzooError(f"`task` {task.name!r} is already registered.")
    _TASK_OBJECTS[task.name] = task
    return task


# The tasks of models with one output per sample (or per step for taggers).
SAMPLE_TASKS = ("binary", "multiclass", "regression")


def check_task(task: Any, allowed: tuple[str, ...] = TASKS) -> str:
    return check_choice("task", task, allowed)


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


def _crf_layer(model: keras.Model):
    found = [layer for layer in model.layers if isinstance(layer, CRF)]
    return found[0] if len(found) == 1 else None


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
            that ends in raw scores).
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
    auto_loss, auto_metrics = get_task(task).loss_and_metrics(
        label_format=label_format, from_logits=from_logits
    )
    crf = _crf_layer(model)
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
    # On JAX, a call of steps_per_execution steps runs as one XLA program.
    return fuse_steps(model)


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

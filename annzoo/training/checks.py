"""Checks of a run's data against its model and recipe, before anything runs.

Accelerators do not check labels (out-of-range class ids give NaN on
TensorFlow GPUs and silently zero loss on JAX) and Keras broadcasts labels of
the wrong shape, so every split is checked here and a bad one is refused with
an error naming the split, what was expected and what was received.
"""

from __future__ import annotations

import difflib

import numpy as np

from annzoo import augment
from annzoo._checks import (
    all_finite,
    channels_first_hint,
    check_steps_per_epoch,
    first_value,
    looks_channels_first,
    non_finite_summary,
)
from annzoo.errors import AnnzooError
from annzoo.tasks import get_task
from annzoo.training import sequences
from annzoo.training.distribute import Plan
from annzoo.training.recipe import Recipe

__all__ = [
    "check_batches",
    "check_labels",
    "check_metric_name",
    "check_monitor",
    "check_splits",
    "reported_metrics",
]


def check_labels(
    y: np.ndarray,
    *,
    task: str,
    num_outputs: int,
    where: str,
    label_format: str | None = None,
) -> None:
    """Labels must fit the loss: checked here because accelerators do not.

    Out-of-range class ids give NaN on TensorFlow GPUs and silently zero loss
    on JAX, so they are refused before training, as are NaN or infinite
    labels, labels of a shape the model's loss would broadcast (one-hot rows of
    the wrong width, binary or regression targets wider than the model's
    output) and binary labels other than 0 and 1: the task's own checks
    (:meth:`annzoo.tasks.Task.check_labels`), vectorized.

    Args:
        y: The labels, one row per sample.
        task: a task name (``"multiclass"``, ``"binary"``, ``"regression"``...).
        num_outputs: Units of the model's output layer (classes for multiclass).
        where: How messages name the labels, e.g. ``"`y`"`` or ``"the train
            split's labels of `data.dataset` 'toy'"``.
        label_format: ``"sparse"`` refuses one-hot labels, ``"one_hot"``
            refuses ``(num_samples, 1)`` columns of ids; ``None`` accepts both
            class ids and one-hot rows.

    Raises:
        AnnzooError: naming ``where``, what was expected and what was received.
    """
    get_task(task).check_labels(
        y, num_outputs=num_outputs, where=where, label_format=label_format
    )


def check_splits(
    splits: dict,
    task: str,
    num_outputs: int,
    dataset: str,
    *,
    label_format: str | None = None,
    model_args: dict | None = None,
) -> None:
    """Every split's features and labels, before the model is built.

    Features must be numeric, finite, of one per-sample shape in every split,
    channels-last for images and of the model's input shape (``model_args``,
    when given); labels are checked by `check_labels` against the model's
    output width, and the train split must hold at least two classes.
    """
    args = model_args or {}
    width = args.get("num_classes", args.get("num_outputs")) or num_outputs
    of = f"of `data.dataset` {dataset!r}"
    train_shape = None
    for name, split in splits.items():
        if len(split) == 0:
            raise AnnzooError(
                f"`data.dataset` {dataset!r} must have samples in every split. "
                f"Received: an empty {name} split (0 samples)."
            )
        x = split.x
        features = f"The {name} split's features {of}"
        if x.ndim < 2:
            raise AnnzooError(
                f"{features} must have shape (num_samples, ...), at least one axis "
                "per sample (one feature: x[:, None]). Received: features of shape "
                f"{x.shape}."
            )
        if x.dtype.kind not in "biuf":
            first = first_value(x)
            raise AnnzooError(
                f"{features} must be a numeric array (float32 for images and "
                "tabular data, integer ids for tokens). Received: dtype "
                f"{x.dtype} with shape {x.shape}, the first value {first!r:.60}."
            )
        if train_shape is None:
            train_shape = x.shape[1:]
            if looks_channels_first(train_shape):
                raise AnnzooError(
                    f"{features} must be channels-last images. "
                    f"{channels_first_hint(train_shape)} Received: features of "
                    f"shape {x.shape}."
                )
        elif x.shape[1:] != train_shape:
            raise AnnzooError(
                f"{features} must have the train split's per-sample shape "
                f"{train_shape}. Received: features of shape {x.shape}."
            )
        if not all_finite(x):
            raise AnnzooError(
                f"{features} must be finite numbers. Received: {non_finite_summary(x)}."
            )
        if split.structure != "sample":
            sequences.check_targets(
                split, num_outputs=num_outputs, where=f"{name} split"
            )
            continue
        check_labels(
            split.y,
            task=task,
            num_outputs=width,
            where=f"the {name} split's labels {of}",
            label_format=label_format,
        )
    expected = args.get("input_shape")
    if expected is not None and train_shape is not None:
        expected = (expected,) if isinstance(expected, int) else tuple(expected)
        fits = len(expected) == len(train_shape) and all(
            e is None or e == s for e, s in zip(expected, train_shape, strict=False)
        )
        if not fits:
            hint = ""
            if len(train_shape) == 3 and tuple(expected) == (
                train_shape[1],
                train_shape[2],
                train_shape[0],
            ):
                hint = " " + channels_first_hint(train_shape)
            raise AnnzooError(
                f"`model.input_shape` must be the per-sample shape of the data "
                f"{of}, {train_shape}.{hint} Received: model.input_shape="
                f"{list(expected)}"
            )
    train = splits.get("train")
    classes = get_task(task).classes
    if train is not None and train.structure == "sample" and classes:
        y = np.asarray(train.y)
        ids = y.argmax(axis=1) if y.ndim == 2 and y.shape[1] > 1 else y.reshape(-1)
        if ids.size and ids.min() == ids.max():
            label, names = ids[0].item(), train.class_names
            known = names and 0 <= label < len(names)
            shown = f" ({names[int(label)]!r})" if known else ""
            raise AnnzooError(
                f"The train split's labels {of} must hold at least two classes to "
                f"learn from. Received: all {len(ids)} labels are class "
                f"{label!r}{shown}."
            )


def check_batches(recipe: Recipe, num_samples: int, plan: Plan) -> None:
    """``fit.steps_per_epoch`` and ``data.drop_remainder`` against the
    training samples and the global batch of ``plan``."""
    check_steps_per_epoch(
        "fit.steps_per_epoch",
        recipe.fit["steps_per_epoch"],
        num_samples=num_samples,
        batch_size=plan.global_batch(recipe.data["batch_size"]),
        batch_multiple=plan.batch_multiple,
    )
    _check_whole_batches(recipe, num_samples, plan)


def _check_whole_batches(recipe: Recipe, num_samples: int, plan: Plan) -> None:
    """``data.drop_remainder=true`` needs a whole batch, and enough of them
    for ``fit.steps_per_epoch``."""
    if recipe.data["drop_remainder"] is not True:
        return
    batch = plan.global_batch(recipe.data["batch_size"])
    full = num_samples // batch
    steps = recipe.fit["steps_per_epoch"]
    if full == 0 or (steps is not None and steps > full):
        wanted = f"{steps} steps per epoch" if steps else "one step"
        raise AnnzooError(
            f"`data.drop_remainder` is true, so an epoch has {full} whole batches "
            f"of {batch} of the {num_samples} training samples, fewer than the "
            f"{wanted} asked for. Received: data.drop_remainder=True"
        )


def reported_metrics(
    task: str,
    *,
    label_format: str = "sparse",
    crf: bool = False,
    validation: bool = True,
) -> list[str]:
    """The names Keras logs each epoch for a model annzoo compiles for ``task``.

    Read from the task's own metrics (:meth:`annzoo.tasks.Task.loss_and_metrics`,
    what `annzoo.compile_model` compiles with), not from a trained model: the
    loss, each metric, and their ``val_`` forms when there is validation data.
    A CRF tagger is compiled with its likelihood and no metric.
    """
    _, metrics = get_task(task).loss_and_metrics(label_format=label_format)
    names = ["loss"] + ([] if crf else [metric.name for metric in metrics])
    return names + [f"val_{name}" for name in names] if validation else names


def check_metric_name(field: str, value: object, names: list[str], why: str) -> str:
    """``value`` must be one of ``names``, else one sentence with "did you mean"."""
    if isinstance(value, str) and value in names:
        return value
    close = (
        difflib.get_close_matches(value, names, n=1) if isinstance(value, str) else []
    )
    hint = f" Did you mean {close[0]!r}?" if close else ""
    raise AnnzooError(
        f"`{field}` must be a metric the model reports each epoch ({why}): one of "
        f"{names}. Received: {field}={value!r}.{hint}"
    )


def check_monitor(recipe: Recipe, model_args: dict) -> None:
    """``callbacks.monitor`` against what the run's compiled model will log.

    Checked before the run directory is made and before any step: Keras would
    otherwise find the name missing only at the end of the first epoch.
    """
    task = model_args.get("task", "multiclass")
    mixing = bool(augment.mixing_ops(recipe.augment["ops"]))
    validation = not recipe.data["merge_validation"]
    names = reported_metrics(
        task,
        label_format="one_hot" if mixing else recipe.data["label_format"],
        crf=bool(model_args.get("crf")),
        validation=validation,
    )
    why = f"task {task!r}" + ("" if validation else ", no validation data")
    check_metric_name("callbacks.monitor", recipe.callbacks["monitor"], names, why)

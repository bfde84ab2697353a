"""Checks of a run's data against its model and recipe, before anything runs.

Accelerators do not check labels (out-of-range class ids give NaN on
TensorFlow GPUs and silently zero loss on JAX) and Keras broadcasts labels of
the wrong shape, so every split is checked here and a bad one is refused with
an error naming the split, what was expected and what was received.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from annzoo._checks import (
    all_finite,
    channels_first_hint,
    check_steps_per_epoch,
    looks_channels_first,
    non_finite_summary,
)
from annzoo.errors import AnnzooError
from annzoo.training import sequences
from annzoo.training.distribute import Plan
from annzoo.training.recipe import Recipe

__all__ = ["check_batches", "check_labels", "check_splits"]


def _first_value(array: np.ndarray) -> Any:
    """The array's first element as a plain Python value (for error messages)."""
    first = array.flat[0] if array.size else None
    return first.item() if isinstance(first, np.generic) else first


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
    output) and binary labels other than 0 and 1. Vectorized: a few passes over
    ``y``.

    Args:
        y: The labels, one row per sample.
        task: ``"multiclass"``, ``"binary"`` or ``"regression"``.
        num_outputs: Units of the model's output layer (classes for multiclass).
        where: How messages name the labels, e.g. ``"`y`"`` or ``"the train
            split's labels of `data.dataset` 'toy'"``.
        label_format: ``"sparse"`` refuses one-hot labels, ``"one_hot"``
            refuses ``(num_samples, 1)`` columns of ids; ``None`` accepts both
            class ids and one-hot rows.

    Raises:
        AnnzooError: naming ``where``, what was expected and what was received.
    """
    subject = where[:1].upper() + where[1:]
    y = np.asarray(y)
    if y.ndim == 0:
        raise AnnzooError(
            f"{subject} must have one label per sample. Received: a scalar {y!r}."
        )
    if y.dtype.kind not in "biuf":
        first = _first_value(y)
        raise AnnzooError(
            f"{subject} must be numbers (class ids or targets). Encode text labels "
            "first, e.g. `classes, y = np.unique(y, return_inverse=True)`. "
            f"Received: labels of dtype {y.dtype}, such as {first!r}."
        )
    if not y.size:
        return
    if not all_finite(y):
        raise AnnzooError(
            f"{subject} must be finite numbers. Received: {non_finite_summary(y)}."
        )
    n = len(y)
    if task == "multiclass":
        k = int(num_outputs)
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
        flat = y.reshape(-1)
        if flat.dtype.kind == "f":
            whole = flat == np.floor(flat)
            if not whole.all():
                row = int(np.flatnonzero(~whole)[0])
                raise AnnzooError(
                    f"{subject} must be integer class ids for task='multiclass'. "
                    f"Received: non-integer labels such as {flat[row]!r} (sample "
                    f"{row})."
                )
        low, high = flat.min(), flat.max()
        if low < 0 or high >= k:
            outside = (flat < 0) | (flat >= k)
            row = int(np.flatnonzero(outside)[0])
            raise AnnzooError(
                f"{subject} must be class ids in [0, {k - 1}], for a model with "
                f"{k} classes (task='multiclass'). Received: labels from "
                f"{low.item()!r} to {high.item()!r}; {int(outside.sum())} of {n} are "
                f"outside [0, {k - 1}], the first ({flat[row].item()!r}) in sample "
                f"{row}. On accelerators such labels give NaN losses (TensorFlow) "
                "or silently count as zero loss (JAX)."
            )
        return
    if task in ("binary", "regression"):
        k = int(num_outputs)
        # One output takes (n,) or (n, 1); k outputs need one column each.
        if y.shape[1:] not in (((), (1,)) if k == 1 else ((k,),)):
            shapes = f"({n},) or ({n}, 1)" if k == 1 else f"({n}, {k})"
            raise AnnzooError(
                f"{subject} must have shape {shapes}, one column per output of the "
                f"model (task={task!r}, {k} output{'s' if k != 1 else ''}); other "
                "shapes would be broadcast against the predictions. Received: "
                f"labels of shape {y.shape}."
            )
    if task == "binary":
        valid = (y == 0) | (y == 1)
        if not valid.all():
            flat = y.reshape(-1)
            index = int(np.flatnonzero(~valid.reshape(-1))[0])
            raise AnnzooError(
                f"{subject} must be 0 or 1 for task='binary'. Received: "
                f"{int((~valid).sum())} labels outside {{0, 1}}, the first "
                f"({flat[index].item()!r}) in sample {index // max(1, flat.size // n)}."
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
            first = _first_value(x)
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
    classes = task in ("multiclass", "binary")
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

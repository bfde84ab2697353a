"""Running a recipe: model + dataset + settings -> a self-describing run directory.

=================  ==========================================================
``recipe.json``    the resolved recipe; ``annzoo train RUN_DIR/recipe.json``
                   runs it again
``metrics.csv``    one row per epoch: loss, metrics and learning rate
``best.keras``     the model at the best epoch of the monitored quantity
``final.keras``    the model at the last epoch trained
``curves.png``     loss and metric curves, train and validation
``confusion.png``  confusion matrix on the test split (classifiers, taggers)
``attention.png``  attention of the first test example (attention decoders)
``vocabulary.json`` the token lists of token, tagging and sequence datasets
``summary.txt``    the model summary with parameter counts
``results.json``   test metrics, best epoch, wall time, seed, versions
``tensorboard/``   TensorBoard logs
``state/``         what an interrupted run resumes from
=================  ==========================================================
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from annzoo import datasets, registry
from annzoo._checks import check_loaded_splits, check_steps_per_epoch
from annzoo._host_init import host_initialization
from annzoo.errors import AnnzooError, CheckpointError
from annzoo.training import distribute, sequences
from annzoo import io as aio
from annzoo.training.recipe import Recipe, load_recipe

__all__ = ["RunResult", "train", "main", "resolve_run_dir", "evaluate_run"]

STATE_DIR = "state"


@dataclass
class RunResult:
    """What `train` returns (``run_dir`` is None in processes other than 0)."""

    run_dir: Path | None
    test_metrics: dict[str, float]
    best_epoch: int | None
    epochs_run: int
    wall_time_s: float
    history: dict[str, list[float]]
    resumed_from: int = 0


# -- run directories -----------------------------------------------------------


def _is_finished(run_dir: Path) -> bool:
    return (run_dir / "results.json").is_file()


def resolve_run_dir(
    output_dir: str | Path, name: str, recipe: dict | None = None
) -> tuple[Path, bool]:
    """Where a run of ``name`` goes, and whether it resumes an earlier one.

    Without ``recipe``: ``output_dir/name`` when free, else the first free
    ``name-2``, ``name-3``... With ``recipe`` (resuming allowed), an unfinished
    run of the same recipe is resumed in place, and an unfinished run of a
    different recipe is refused with an error naming what changed, so two
    recipes never mix in one directory. A finished run is never overwritten.
    """
    base = Path(output_dir)
    for index in range(1, 10_000):
        candidate = base / (name if index == 1 else f"{name}-{index}")
        # A run killed while writing its first file leaves only a temporary.
        if not candidate.exists() or not any(
            not p.name.startswith(aio.TMP_PREFIX) for p in candidate.iterdir()
        ):
            return candidate, False
        if recipe is None or _is_finished(candidate):
            continue
        saved_path = candidate / "recipe.json"
        if not saved_path.is_file():
            continue  # not a run directory of ours
        saved = _read_json(saved_path)
        if saved is None:
            raise CheckpointError(
                f"{str(saved_path)!r} is unreadable (truncated or corrupt), so the "
                f"unfinished run in {str(candidate)!r} cannot be resumed safely. "
                "Pass --no-resume to start a new run directory beside it."
            )
        has_state = (candidate / STATE_DIR / "progress.json").is_file()
        saved = _with_new_fields(saved)
        if saved == recipe:
            # Same recipe: resume it, or (no epoch finished yet) start it over.
            return candidate, has_state
        if has_state:
            changes = _changed_keys(saved, recipe)
            shown = ", ".join(
                f"`{k}` ({_short(saved, k)} -> {_short(recipe, k)})"
                for k in changes[:3]
            )
            raise AnnzooError(
                f"{str(candidate)!r} holds an unfinished run of a different recipe: "
                f"{shown}{' ...' if len(changes) > 3 else ''}. Rerun with the "
                "same settings to resume it, or pass --no-resume to start a new run "
                "directory beside it."
            )
    raise AnnzooError(f"`output_dir` {str(base)!r} holds too many runs named {name!r}.")


def _with_new_fields(saved: dict) -> dict:
    """A saved ``recipe.json`` with the section fields added since it was
    written, at their defaults: a run started by an older annzoo still
    matches its unchanged recipe and resumes."""
    from annzoo.training.recipe import SECTION_DEFAULTS

    out = dict(saved)
    for section, defaults in SECTION_DEFAULTS.items():
        fields = out.get(section)
        if isinstance(fields, dict):
            missing = {k: v for k, v in defaults.items() if k not in fields}
            out[section] = {**json.loads(json.dumps(missing)), **fields}
    return out


def _flatten(data: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(data, dict):
        out: dict[str, Any] = {}
        for key, value in data.items():
            out.update(_flatten(value, f"{prefix}{key}."))
        return out or {prefix.rstrip("."): {}}
    return {prefix.rstrip("."): data}


def _changed_keys(old: dict, new: dict) -> list[str]:
    a, b = _flatten(old), _flatten(new)
    return sorted(
        k for k in set(a) | set(b) if a.get(k, "<absent>") != b.get(k, "<absent>")
    )


def _short(data: dict, dotted: str) -> str:
    value = _flatten(data).get(dotted, "absent")
    text = json.dumps(value) if value != "absent" else "absent"
    return text if len(text) <= 40 else text[:37] + "..."


def _load_progress(state_dir: Path) -> dict:
    path = state_dir / "progress.json"
    progress = _read_json(path)
    required = {"epoch", "model_file", "history", "callbacks"}
    if not isinstance(progress, dict) or not required <= set(progress):
        raise CheckpointError(
            f"{str(path)!r} is unreadable (truncated or corrupt), so this run cannot "
            "be resumed safely; nothing was changed. Pass --no-resume to start a new "
            "run directory beside it."
        )
    return progress


def _load_state_model(path: Path, sha256: str | None = None):
    try:
        return aio.load_model(path, sha256=sha256)
    except CheckpointError as error:
        raise CheckpointError(
            f"{error} So this run cannot be resumed safely; nothing was changed. "
            "Pass --no-resume to start a new run directory beside it."
        ) from None


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


# -- data ----------------------------------------------------------------------


def _load_splits(recipe: Recipe) -> dict[str, datasets.ArrayDataset]:
    data = recipe.data
    splits = {}
    for split in ("train", "validation", "test"):
        loaded = datasets.load(
            data["dataset"], split, seed=recipe.fit["seed"], **data["options"]
        )
        if data["limit"] is not None and len(loaded) > data["limit"]:
            import dataclasses

            keep = slice(0, data["limit"])
            loaded = dataclasses.replace(
                loaded, x=loaded.x[keep], y=loaded.y[keep], indices=loaded.indices[keep]
            )
        splits[split] = loaded
    if data["merge_validation"]:
        splits["train"] = _concatenate(splits["train"], splits["validation"])
    return splits


def _concatenate(first, second):
    """One split holding both splits' samples (train + validation)."""
    import dataclasses

    return dataclasses.replace(
        first,
        x=np.concatenate([first.x, second.x]),
        y=np.concatenate([first.y, second.y]),
        indices=np.concatenate([first.indices, second.indices]),
        split=f"{first.split}+{second.split}",
    )


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
    from annzoo._checks import all_finite, non_finite_summary

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


def _model_arguments(recipe: Recipe, train: datasets.ArrayDataset) -> dict:
    parameters = set(registry.builder_parameters(recipe.model["name"]))
    args = sequences.model_arguments(parameters, train)
    args.update({k: v for k, v in recipe.model.items() if k != "name"})
    return args


def _check_splits(
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
    from annzoo._checks import (
        all_finite,
        channels_first_hint,
        looks_channels_first,
        non_finite_summary,
    )

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


def _inputs(
    recipe: Recipe,
    split,
    model,
    *,
    training: bool,
    num_classes: int | None,
    plan: distribute.Plan | None = None,
):
    """The model's input pipeline for a split: the global batch, and under a
    JAX distribution this process's shard of each batch (NumPy pipeline)."""
    import keras

    from annzoo import augment, data

    data_cfg, aug = recipe.data, recipe.augment
    plan = plan or distribute.Plan("none")
    spread = plan.distribution is not None
    batch_map_fn = None
    states: list = []
    if training and aug["placement"] == "pipeline" and aug["ops"]:
        seed = recipe.fit["seed"]
        # Whole batches, after batching: one seeded call per batch rather than
        # per-sample calls racing on the generator state in a parallel map.
        # On JAX (one process) the batches stay on the device for the model.
        on_device = keras.backend.backend() == "jax" and not spread
        augment_batch = augment.pipeline_fn(
            aug["ops"], seed=seed, keep_on_device=on_device
        )
        mix_batch = augment.batch_mix_fn(
            aug["ops"], num_classes or 0, seed=seed, keep_on_device=on_device
        )
        states = list(augment_batch.random_states)
        states += getattr(mix_batch, "random_states", [])
        if mix_batch is None:
            batch_map_fn = augment_batch
        else:

            def batch_map_fn(images, labels):
                return mix_batch(*augment_batch(images, labels))

            batch_map_fn.random_states = states

    x, y = sequences.model_inputs(split, model)
    # Mixing ops one-hot the training labels themselves (and the model is then
    # compiled for one-hot labels), so evaluation labels must be one-hot too.
    mixing = _mixes_labels(recipe)
    one_hot = data_cfg["label_format"] == "one_hot" or mixing
    mixed_here = training and mixing  # batch_mix_fn one-hots these itself
    if one_hot and not mixed_here and y.ndim == 1 and num_classes:
        y = np.eye(num_classes, dtype="float32")[y]
    prefer = "numpy" if spread else data_cfg["pipeline"]
    # A never-ending tf.data stream keeps one iterator (and its prefetching)
    # for the whole fit when the epoch splits into calls of equal length.
    global_batch = plan.global_batch(data_cfg["batch_size"])
    drop = training and _drops_remainder(recipe, model, len(split), global_batch)
    if not training:
        global_batch = data.evaluation_batch_size(
            len(split),
            global_batch,
            fixed_shapes=bool(getattr(model, "jit_compile", False)),
            multiple=plan.batch_multiple,
        )
    batches = len(split) // global_batch if drop else -(-len(split) // global_batch)
    steps = recipe.fit["steps_per_epoch"] or batches
    wanted = int(getattr(model, "steps_per_execution", 1) or 1)
    block = (
        data.stream_block(steps, wanted)
        if training and data.resolve_pipeline(prefer) == "tf.data"
        else None
    )
    stream = block is not None
    pipeline = data.make_input(
        x,
        y,
        batch_size=global_batch,
        shuffle=training and data_cfg["shuffle"],
        seed=recipe.fit["seed"],
        cache=data_cfg["cache"] if training else None,
        batch_map_fn=batch_map_fn,
        drop_remainder=drop,
        prefer=prefer,
        shard=plan.shard,
        batch_multiple=plan.batch_multiple,
        # Augmentation draws from shared generator states: one batch at a time,
        # so that batch i always gets the i-th draw.
        num_parallel_calls=1 if states else None,
        repeat=stream,
        steps_per_epoch=steps if stream else None,
    )
    if stream:
        pipeline.execution_block = block
    # tf.data sets the states before each batch itself (from seed, epoch and
    # batch); EpochOrder resets the NumPy pipeline's at each epoch's start.
    pipeline.random_states = [] if hasattr(pipeline, "_annzoo_epoch") else states
    return pipeline


def _check_whole_batches(recipe: Recipe, num_samples: int, plan) -> None:
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


def _drops_remainder(recipe: Recipe, model, num_samples: int, batch: int) -> bool:
    """``data.drop_remainder`` resolved for the training split."""
    from annzoo import data

    setting = recipe.data["drop_remainder"]
    if setting != "auto":
        return setting
    return data.drop_partial_batch(
        num_samples,
        batch,
        fixed_shapes=bool(getattr(model, "jit_compile", False)),
        steps_per_epoch=recipe.fit["steps_per_epoch"],
    )


def _fit_steps(recipe: Recipe, model, train_input) -> int | None:
    """``fit``'s steps_per_epoch; for a never-ending stream, also sets the
    model's steps per call to a divisor of it (see `annzoo.data.make_dataset`)."""
    if hasattr(train_input, "execution_block"):
        from annzoo.tasks import set_steps_per_execution

        set_steps_per_execution(model, train_input.execution_block)
        return train_input.steps_per_epoch
    return recipe.fit["steps_per_epoch"]


# -- model ---------------------------------------------------------------------


def _learning_rates(
    recipe: Recipe, replicas: int = 1
) -> tuple[float | None, float | None]:
    """The learning rate of the first stage and, for fine-tuning, the reduced one.

    ``distribute.scale_learning_rate`` multiplies both by ``replicas``.
    """
    from annzoo import tasks

    rate = recipe.compile["learning_rate"]
    ft = recipe.finetune
    scale = replicas if recipe.distribute["scale_learning_rate"] else 1
    if (scale != 1 or ft["source"] is not None) and rate is None:
        # The optimizer's own default, to be scaled.
        rate = float(tasks.get_optimizer(recipe.compile["optimizer"]).learning_rate)
    if rate is not None:
        rate *= scale
    if ft["source"] is None:
        return rate, None
    reduced = rate * ft["learning_rate_scale"]
    return (rate, reduced) if ft["head_epochs"] else (reduced, reduced)


def _start_model(recipe: Recipe, model_args: dict):
    """The recipe's model, or for fine-tuning the source with a new head."""
    ft = recipe.finetune
    if ft["source"] is None:
        return registry.create_model(recipe.model["name"], **model_args, compile=False)
    from annzoo.finetune import finetune

    source = ft["source"]
    if source in registry.list_models():
        source = registry.create_model(source, compile=False)
    width = model_args.get("num_classes", model_args.get("num_outputs"))
    return finetune(
        source,
        num_classes=width,
        task=model_args.get("task"),
        truncate=ft["truncate"],
        freeze="base" if ft["head_epochs"] else ft["freeze"],
        batchnorm=ft["batchnorm"],
        input_shape=model_args.get("input_shape"),
        compile=False,
    )


def _build(recipe: Recipe, model_args: dict, replicas: int = 1):
    from annzoo import augment

    model = _start_model(recipe, model_args)
    aug = recipe.augment
    if aug["ops"] and aug["placement"] == "model":
        model = augment.in_model(model, aug["ops"], seed=recipe.fit["seed"])
    _compile(recipe, model, model_args, _learning_rates(recipe, replicas)[0])
    return model


def _compile(recipe: Recipe, model, model_args: dict, learning_rate):
    from annzoo import tasks

    comp = recipe.compile
    optimizer_args = {}
    if comp["weight_decay"] is not None:
        optimizer_args["weight_decay"] = comp["weight_decay"]
    optimizer = tasks.get_optimizer(comp["optimizer"], learning_rate, **optimizer_args)
    task = model_args.get("task", "multiclass")
    mixing = _mixes_labels(recipe)
    tasks.compile_model(
        model,
        task=task,
        optimizer=optimizer,
        label_format="one_hot" if mixing else recipe.data["label_format"],
        jit_compile=comp["jit_compile"],
        steps_per_execution=comp["steps_per_execution"],
    )
    return model


def _stages(recipe: Recipe, initial_epoch: int) -> list[tuple[int, bool]]:
    """``(last epoch, unfreeze first)`` of each training stage still to run.

    One stage, unless fine-tuning in two: the head alone up to
    ``finetune.head_epochs``, then everything. A run resumed in the second
    stage is already unfrozen (the saved model says so).
    """
    epochs = recipe.fit["epochs"]
    head = recipe.finetune["head_epochs"] if recipe.finetune["source"] else None
    if initial_epoch >= epochs:
        return []
    if not head or initial_epoch >= head:
        return [(epochs, False)]
    return [(head, False), (epochs, True)]


def _mixes_labels(recipe: Recipe) -> bool:
    """Whether training mixes labels (mixup/cutmix; validated to be in the pipeline)."""
    from annzoo import augment

    return bool(augment.mixing_ops(recipe.augment["ops"]))


def weights_digest(model) -> str:
    """SHA-256 over a model's weights in order (equal models, equal digests)."""
    import hashlib

    digest = hashlib.sha256()
    for weight in model.weights:
        digest.update(np.ascontiguousarray(np.asarray(weight.value)).tobytes())
    return digest.hexdigest()[:16]


def _summary_text(model) -> str:
    lines: list[str] = []
    model.summary(print_fn=lambda line, *a, **k: lines.append(line), line_length=100)
    return "\n".join(lines) + "\n"


def _versions() -> dict[str, str]:
    import keras

    import annzoo

    found = {
        "annzoo": annzoo.__version__,
        "keras": keras.__version__,
        "backend": keras.backend.backend(),
        "numpy": np.__version__,
        "python": platform.python_version(),
    }
    for module in ("tensorflow", "jax", "torch"):
        if module in sys.modules:
            found[module] = getattr(sys.modules[module], "__version__", "?")
    return found


# -- training ------------------------------------------------------------------


def _fit_stages(
    recipe: Recipe,
    model,
    model_args: dict,
    plan: distribute.Plan,
    bundle,
    inputs: tuple,
    *,
    history: dict,
    stopped: bool,
    initial_epoch: int,
    verbose: int,
) -> tuple[dict, bool, int]:
    """Runs the training stages left; returns (history, stopped, last epoch)."""
    from annzoo.tasks import build_fit_state
    from annzoo.training.callbacks import EpochOrder

    train_input, val_input = inputs
    for end, unfreeze in _stages(recipe, initial_epoch):
        if stopped:
            break
        if unfreeze:
            # Second fine-tuning stage: the whole network, at the reduced rate
            # (a fresh optimizer: the head's moments do not fit the base).
            from annzoo.finetune import unfreeze as unfreeze_layers

            unfreeze_layers(model, batchnorm=recipe.finetune["batchnorm"])
            _compile(
                recipe, model, model_args, _learning_rates(recipe, plan.replicas)[1]
            )
            if verbose:
                print(f"annzoo: epoch {initial_epoch + 1}: base unfrozen", flush=True)
        head_only = (
            recipe.finetune["head_epochs"] and end <= recipe.finetune["head_epochs"]
        )
        epoch_order = EpochOrder(train_input, recipe.fit["seed"], extra=[train_input])
        callbacks = [epoch_order] + [
            c
            for c in bundle.callbacks
            if not (head_only and c is bundle.parts.get("early_stopping"))
        ]
        fit_steps = _fit_steps(recipe, model, train_input)
        build_fit_state(model, train_input)  # the step traced once, not twice
        with host_initialization():  # JAX: optimizer slots filled from NumPy
            fit_history = model.fit(
                train_input,
                epochs=end,
                initial_epoch=initial_epoch,
                steps_per_epoch=fit_steps,
                validation_data=val_input,
                shuffle=False,  # the input pipeline shuffles, seeded per epoch
                callbacks=callbacks,
                verbose=verbose,
            )
        for key, values in fit_history.history.items():
            history.setdefault(key, []).extend(float(v) for v in values)
        initial_epoch = end
        stopped = bool(model.stop_training)
    return history, stopped, initial_epoch


def train(
    recipe: Recipe | dict,
    *,
    output_dir: str | Path = "runs",
    verbose: int = 1,
    resume: bool = True,
) -> RunResult:
    """Runs ``recipe`` and writes its run directory (see the module docstring).

    Everything is checked before the first step: a bad field or bad data
    raises :class:`annzoo.AnnzooError` naming it, and nothing is written.

    Args:
        recipe: a :class:`Recipe` (or its dict form).
        output_dir: parent of the run directory.
        verbose: 1 shows Keras' progress bar, 2 one line per epoch, 0 nothing.
        resume: continue an unfinished run of the same recipe in
            ``output_dir/NAME`` instead of starting a new directory.

    Returns:
        A :class:`RunResult`.
    """
    from annzoo import tasks

    if isinstance(recipe, dict):
        recipe = Recipe.from_dict(recipe)
    recipe.validate()
    # The whole run (build or reload, fit, test) in the recipe's precision.
    with tasks.mixed_precision(recipe.compile["mixed_precision"]):
        return _train(recipe, output_dir=output_dir, verbose=verbose, resume=resume)


def _train(recipe: Recipe, *, output_dir, verbose: int, resume: bool) -> RunResult:
    import keras

    from annzoo.plots import plot_confusion_matrix, plot_curves
    from annzoo.training.callbacks import build_callbacks

    started = time.perf_counter()
    plan = distribute.plan(recipe.distribute)
    if plan.tf_strategy is not None and recipe.compile["steps_per_execution"] != 1:
        # Keras 3's multi-step train function fails under MirroredStrategy
        # ("You must feed a value for placeholder tensor"): one step per call.
        # The run's recipe.json records the 1 that ran.
        recipe = recipe.override(["compile.steps_per_execution=1"])
    seed = recipe.fit["seed"]
    loaded = _load_splits(recipe)
    check_loaded_splits("data.dataset", recipe.data["dataset"], loaded)
    splits = sequences.prepare_text(loaded, recipe.data["text"])
    train_split = splits["train"]
    model_args = _model_arguments(recipe, train_split)
    _check_splits(
        splits,
        model_args.get("task", "multiclass"),
        train_split.num_outputs,
        recipe.data["dataset"],
        # Mixing ops one-hot the labels themselves: either format is theirs.
        label_format=None if _mixes_labels(recipe) else recipe.data["label_format"],
        model_args=model_args,
    )
    check_steps_per_epoch(
        "fit.steps_per_epoch",
        recipe.fit["steps_per_epoch"],
        num_samples=len(train_split),
        batch_size=plan.global_batch(recipe.data["batch_size"]),
        batch_multiple=plan.batch_multiple,
    )
    _check_whole_batches(recipe, len(train_split), plan)
    used = {
        **recipe.distribute,
        "strategy": plan.strategy,
        "devices": len(plan.devices) if plan.devices else None,
    }
    resolved = Recipe.from_dict(
        {
            **recipe.to_dict(),
            "model": {"name": recipe.model["name"], **model_args},
            "distribute": used,
        }
    )
    resolved_dict = resolved.to_dict()
    run_dir, resuming = resolve_run_dir(
        output_dir, recipe.name, resolved_dict if resume else None
    )
    # Every process has chosen the same directory before process 0 creates it.
    plan.barrier("annzoo-run-dir")

    keras.utils.set_random_seed(seed)
    state_dir = run_dir / STATE_DIR
    progress = _load_progress(state_dir) if resuming else None
    if plan.strategy == "model-parallel":
        distribute.model_parallel(plan, lambda: _start_model(recipe, model_args))
        keras.utils.set_random_seed(seed)
    with plan.scope():
        if progress:
            model = _load_state_model(
                state_dir / progress["model_file"], progress.get("model_sha256")
            )
            initial_epoch = int(progress["epoch"])
        else:
            model = _build(recipe, model_args, plan.replicas)
            initial_epoch = 0
    if not plan.chief:
        # Only process 0 writes the run directory; the others train into a
        # scratch directory that goes when they finish.
        run_dir = Path(tempfile.mkdtemp(prefix=f"annzoo-process{plan.process_id}-"))
        state_dir = run_dir / STATE_DIR

    run_dir.mkdir(parents=True, exist_ok=True)
    aio.clean_temporaries(run_dir)
    if not progress:
        aio.write_json(run_dir / "recipe.json", resolved_dict)
        aio.write_text(run_dir / "summary.txt", _summary_text(model))
        vocabularies = sequences.vocabularies(train_split)
        if vocabularies:
            aio.write_json(run_dir / "vocabulary.json", vocabularies)
    num_classes = train_split.num_classes if train_split.task == "multiclass" else None
    train_input = _inputs(
        recipe, train_split, model, training=True, num_classes=num_classes, plan=plan
    )
    val_input = (
        None
        if recipe.data["merge_validation"]
        else _inputs(
            recipe,
            splits["validation"],
            model,
            training=False,
            num_classes=num_classes,
            plan=plan,
        )
    )
    if verbose:
        sizes = " / ".join(f"{len(d)} {s}" for s, d in splits.items())
        what = f"resuming after epoch {initial_epoch}" if progress else "run directory"
        print(
            f"annzoo: {recipe.name}: {recipe.model['name']!r} on "
            f"{recipe.data['dataset']!r} ({sizes}), "
            f"{plan.describe(recipe.data['batch_size'])}, "
            f"{recipe.fit['epochs']} epochs; {what} {run_dir}",
            flush=True,
        )

    bundle = build_callbacks(recipe, run_dir, progress=progress)
    history = {k: list(v) for k, v in (progress or {}).get("history", {}).items()}
    stopped = bool(progress and progress.get("stopped"))
    resumed_from = initial_epoch
    with plan.scope():
        history, stopped, initial_epoch = _fit_stages(
            recipe,
            model,
            model_args,
            plan,
            bundle,
            (train_input, val_input),
            history=history,
            stopped=stopped,
            initial_epoch=initial_epoch,
            verbose=verbose,
        )
    if bundle.nan_guard is not None and bundle.nan_guard.nan_at is not None:
        epoch, step = bundle.nan_guard.nan_at
        where = f"epoch {epoch}, step {step}" if step else f"epoch {epoch}"
        saved = _read_json(state_dir / "progress.json")
        kept = (
            f"the state after epoch {saved['epoch']} in {run_dir} is intact and a "
            "rerun resumes from it"
            if saved
            else "no epoch finished cleanly, so nothing was saved"
        )
        raise AnnzooError(
            f"Training stopped: the loss became NaN or infinite at {where}. No NaN "
            f"weights were saved; {kept}. Lower `compile.learning_rate` or check "
            "the data for extreme values."
        )
    checkpoint = bundle.checkpoint
    if plan.num_processes > 1:
        # Every process prints the same digest when the replicas stayed in step.
        print(
            f"annzoo: process {plan.process_id}: weights sha256 "
            f"{weights_digest(model)}",
            flush=True,
        )
    if not plan.chief:
        # Training is over for the other processes: process 0 alone saves,
        # tests and reports, on its own devices.
        shutil.rmtree(run_dir, ignore_errors=True)
        return RunResult(
            run_dir=None,
            test_metrics={},
            best_epoch=checkpoint.best_epoch if checkpoint else None,
            epochs_run=len(history.get("loss", [])),
            wall_time_s=time.perf_counter() - started,
            history=history,
            resumed_from=resumed_from,
        )
    aio.save_model(model, run_dir / "final.keras")
    if plan.distribution is not None:
        # Variables laid out over the job's devices: test a copy on this
        # process's devices alone (outside the distribution).
        model = keras.saving.load_model(run_dir / "final.keras")
    best_path = run_dir / "best.keras"
    if checkpoint is not None and checkpoint.best_epoch is None:
        raise AnnzooError(
            f"Training produced no finite {recipe.callbacks['monitor']!r} in any "
            f"epoch; nothing was saved as best. Run directory: {run_dir}"
        )
    if checkpoint is not None:
        # The best checkpoint is the source of truth for restoring best weights.
        model.load_weights(best_path)
    test_input = _inputs(
        recipe, splits["test"], model, training=False, num_classes=num_classes
    )
    test_metrics = model.evaluate(test_input, verbose=0, return_dict=True)
    test_metrics = {k: float(v) for k, v in test_metrics.items()}
    wall = time.perf_counter() - started + float((progress or {}).get("wall_time_s", 0))

    plot_curves(
        history,
        run_dir / "curves.png",
        title=f"{recipe.name}: {recipe.model['name']} on {recipe.data['dataset']}",
        best_epoch=checkpoint.best_epoch if checkpoint else None,
    )
    results: dict[str, Any] = {
        "test": test_metrics,
        "best_epoch": checkpoint.best_epoch if checkpoint else None,
        "monitor": recipe.callbacks["monitor"],
        "best_value": checkpoint.best if checkpoint else None,
        "epochs_run": len(history.get("loss", [])),
        "wall_time_s": round(wall, 3),
        "seed": seed,
        "params": model.count_params(),
        "versions": _versions(),
    }
    if train_split.structure != "sample":
        title = f"{recipe.name}: {recipe.model['name']}"
        extra = sequences.report(model, splits["test"], run_dir, title=title)
        test_metrics.update(extra.pop("test"))
        results.update(extra)
    elif train_split.task in ("multiclass", "binary"):
        probabilities = model.predict(test_input, verbose=0)
        predicted = (
            np.argmax(probabilities, axis=-1)
            if train_split.task == "multiclass"
            else (probabilities[:, 0] > 0.5).astype(int)
        )
        labels = splits["test"].y.reshape(len(predicted), -1)[:, 0].astype(int)
        n = train_split.num_classes or 2
        matrix = np.zeros((n, n), dtype=int)
        np.add.at(matrix, (labels, predicted), 1)
        results["confusion_matrix"] = matrix.tolist()
        plot_confusion_matrix(
            matrix,
            run_dir / "confusion.png",
            class_names=train_split.class_names,
            title=f"{recipe.name}: test split",
        )
    aio.write_json(run_dir / "results.json", results)
    # Finished: the resume state is no longer needed (best/final stay), and
    # the manifest records what the finished run holds.
    shutil.rmtree(state_dir, ignore_errors=True)
    aio.write_manifest(run_dir)
    return RunResult(
        run_dir=run_dir,
        test_metrics=test_metrics,
        best_epoch=results["best_epoch"],
        epochs_run=results["epochs_run"],
        wall_time_s=wall,
        history=history,
        resumed_from=resumed_from,
    )


def evaluate_run(
    run_dir: str | Path, *, split: str = "test", which: str = "best"
) -> dict:
    """Evaluates ``RUN_DIR/best.keras`` (or ``final.keras``) on a split again."""

    run_dir = Path(run_dir)
    recipe = load_recipe(_existing(run_dir / "recipe.json", "RUN_DIR"))
    model_path = _existing(run_dir / f"{which}.keras", "RUN_DIR")
    datasets._base._resolve(recipe.data["dataset"], argument="data.dataset")
    splits = sequences.prepare_text(_load_splits(recipe), recipe.data["text"])
    if split not in splits:
        from annzoo._checks import check_choice

        check_choice("split", split, splits)
    model = aio.load_model(model_path)
    num_classes = (
        splits["train"].num_classes if splits["train"].task == "multiclass" else None
    )
    inputs = _inputs(
        recipe, splits[split], model, training=False, num_classes=num_classes
    )
    return {
        k: float(v)
        for k, v in model.evaluate(inputs, verbose=0, return_dict=True).items()
    }


def _existing(path: Path, argument: str) -> Path:
    if not path.exists():
        raise AnnzooError(
            f"`{argument}` must be an annzoo run directory containing {path.name}. "
            f"Received: {str(path.parent)!r}, where {path.name} does not exist."
        )
    return path


# -- command line --------------------------------------------------------------


def add_recipe_arguments(parser: argparse.ArgumentParser) -> None:
    """The options that change a recipe (`apply_arguments`), and --debug."""
    parser.add_argument("--epochs", type=int, help="maximum number of epochs")
    parser.add_argument("--batch-size", type=int, help="samples per training step")
    parser.add_argument("--seed", type=int, help="seed for split, weights, shuffling")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="SECTION.FIELD=VALUE",
        help="override any recipe field, e.g. --set model.dropout=0.3 (repeatable)",
    )
    # SUPPRESS: `annzoo --debug train ...` must not be reset by the subcommand.
    parser.add_argument(
        "--debug",
        action="store_true",
        default=argparse.SUPPRESS,
        help="full tracebacks on errors",
    )


def add_train_arguments(parser: argparse.ArgumentParser) -> None:
    add_recipe_arguments(parser)
    parser.add_argument(
        "--output-dir", default="runs", help="parent of run directories"
    )
    parser.add_argument(
        "--no-resume", action="store_true", help="always start a new run directory"
    )
    parser.add_argument("--quiet", action="store_true", help="no per-epoch progress")
    parser.add_argument(
        "--mixed-precision",
        choices=("bfloat16", "float16"),
        help="compute in 16 bits, variables in float32 (accelerators): "
        "compile.mixed_precision",
    )
    group = parser.add_argument_group("several devices or processes")
    group.add_argument(
        "--distribute",
        choices=distribute.STRATEGIES,
        help="auto (default): data-parallel when several accelerators are visible",
    )
    group.add_argument(
        "--workers",
        type=int,
        metavar="N",
        help="start N local processes that train as one job (JAX backend)",
    )
    group.add_argument(
        "--coordinator",
        metavar="HOST:PORT",
        help="join a job by hand: process 0's address (with --num-processes, "
        "--process-id)",
    )
    group.add_argument("--num-processes", type=int, metavar="N")
    group.add_argument("--process-id", type=int, metavar="I")


def apply_arguments(recipe: Recipe, args: argparse.Namespace) -> Recipe:
    assignments = list(args.set)
    if args.epochs is not None:
        assignments.append(f"fit.epochs={args.epochs}")
    if args.batch_size is not None:
        assignments.append(f"data.batch_size={args.batch_size}")
    if args.seed is not None:
        assignments.append(f"fit.seed={args.seed}")
    if getattr(args, "distribute", None) is not None:
        assignments.append(f"distribute.strategy={args.distribute}")
    if getattr(args, "mixed_precision", None) is not None:
        assignments.append(f"compile.mixed_precision={args.mixed_precision}")
    return recipe.override(assignments)


def _without_workers(argv: list[str]) -> list[str]:
    kept, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg == "--workers":
            skip = True
        elif not arg.startswith("--workers="):
            kept.append(arg)
    return kept


def _job(args: argparse.Namespace) -> int | None:
    """Starts or joins a job of several processes; an exit status when launched.

    ``--workers N`` runs this same command as N processes (and returns their
    status); ``--coordinator --num-processes --process-id`` joins this one.
    """
    workers = getattr(args, "workers", None)
    coordinator = getattr(args, "coordinator", None)
    if workers is not None and coordinator is None:
        if workers < 1:
            raise AnnzooError(
                f"`--workers` must be an integer >= 1. Received: --workers={workers}"
            )
        if workers > 1:
            distribute.check_multi_process_backend()
        command = _without_workers([sys.executable, *sys.orig_argv[1:]])
        return distribute.launch(command, workers)
    if coordinator is not None or getattr(args, "num_processes", None) is not None:
        if coordinator is None or args.num_processes is None or args.process_id is None:
            raise AnnzooError(
                "Joining a job needs all of --coordinator HOST:PORT, "
                "--num-processes N and --process-id I. Received: "
                f"--coordinator={coordinator!r}, --num-processes="
                f"{args.num_processes!r}, --process-id={args.process_id!r}"
            )
        distribute.join(coordinator, args.num_processes, args.process_id)
    return None


def run_and_report(
    recipe: Recipe, args: argparse.Namespace, prog: str = "annzoo"
) -> int:
    """Trains from parsed arguments and prints the outcome; returns the exit code."""
    try:
        recipe = apply_arguments(recipe, args).validate()
        launched = _job(args)
        if launched is not None:
            return launched
        result = train(
            recipe,
            output_dir=args.output_dir,
            verbose=0 if args.quiet else 1,
            resume=not args.no_resume,
        )
    except AnnzooError as error:
        if getattr(args, "debug", False):
            raise
        print(f"{prog}: error: {error}", file=sys.stderr)
        return 2
    if result.run_dir is None:  # a process other than 0 of a job
        return 0
    metrics = ", ".join(f"{k} {v:.4f}" for k, v in result.test_metrics.items())
    print(f"test: {metrics}")
    print(
        f"best epoch {result.best_epoch} of {result.epochs_run}; "
        f"wall time {result.wall_time_s:.1f} s"
    )
    print(f"run directory: {result.run_dir}")
    return 0


def main(
    recipe: Recipe, argv: list[str] | None = None, description: str | None = None
) -> int:
    """Command-line entry point of a recipe script; returns the exit status."""
    parser = argparse.ArgumentParser(
        prog=recipe.name,
        description=description or recipe.description,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_train_arguments(parser)
    return run_and_report(recipe, parser.parse_args(argv), prog=recipe.name)

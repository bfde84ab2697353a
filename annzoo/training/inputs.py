"""Fit inputs: from a recipe to checked splits, model arguments and pipelines.

`prepare` is the one way from a recipe to its data: the runner and the tuner
both call it, so a search trains on exactly the splits (and is refused on
exactly the data) that ``annzoo train`` would use. `input_pipeline` is the
one choice of input pipeline for a split (batches, shuffling, caching,
augmentation in the pipeline, sharding over processes).
"""

from __future__ import annotations

import dataclasses

import keras
import numpy as np

from annzoo import augment, data, datasets, registry
from annzoo.datasets import check_loaded_splits
from annzoo.errors import AnnzooError
from annzoo.tasks import set_steps_per_execution
from annzoo.training import distribute, sequences
from annzoo.training.checks import check_splits
from annzoo.training.recipe import Recipe

__all__ = [
    "check_splits",
    "fit_inputs",
    "fit_steps",
    "input_pipeline",
    "label_classes",
    "load_splits",
    "mixes_labels",
    "model_arguments",
    "prepare",
    "training_splits",
]


def prepare(recipe: Recipe) -> tuple[dict[str, datasets.ArrayDataset], dict]:
    """The recipe's splits, ready to feed, and the arguments of its model.

    Loads the splits (`load_splits`), tokenizes raw text, reads the model's
    sizes from the train split (`model_arguments`) and checks every split
    against them (`check_splits`), before any model is built.

    Returns:
        ``(splits, model_args)``: ``{"train", "validation", "test"}`` datasets
        and the builder's keyword arguments (without ``name``).

    Raises:
        AnnzooError: a split the model cannot learn from, naming it.
    """
    loaded = load_splits(recipe)
    check_loaded_splits("data.dataset", recipe.data["dataset"], loaded)
    splits = training_splits(
        recipe, sequences.prepare_text(loaded, recipe.data["text"])
    )
    train = splits["train"]
    model_args = model_arguments(recipe, train)
    check_splits(
        splits,
        model_args.get("task", "multiclass"),
        train.num_outputs,
        recipe.data["dataset"],
        # Mixing ops one-hot the labels themselves: either format is theirs.
        label_format=None if mixes_labels(recipe) else recipe.data["label_format"],
        model_args=model_args,
    )
    return splits, model_args


def training_splits(recipe: Recipe, splits: dict) -> dict:
    """The splits as the recipe's family trains on them
    (``FamilySpec.training_split``: an autoencoder's targets are its inputs)."""
    turn = registry.family_spec(recipe.model["name"]).training_split
    if turn is None:
        return splits
    return {name: turn(split) for name, split in splits.items()}


def load_splits(recipe: Recipe) -> dict[str, datasets.ArrayDataset]:
    """The train, validation and test splits of ``data.dataset``, as loaded
    (``data.limit`` applied; train + validation when ``data.merge_validation``)."""
    data_cfg = recipe.data
    splits = {}
    for split in ("train", "validation", "test"):
        loaded = datasets.load(
            data_cfg["dataset"], split, seed=recipe.fit["seed"], **data_cfg["options"]
        )
        if data_cfg["limit"] is not None and len(loaded) > data_cfg["limit"]:
            keep = slice(0, data_cfg["limit"])
            loaded = dataclasses.replace(
                loaded, x=loaded.x[keep], y=loaded.y[keep], indices=loaded.indices[keep]
            )
        splits[split] = loaded
    if data_cfg["merge_validation"]:
        splits["train"] = _concatenate(splits["train"], splits["validation"])
    return splits


def _concatenate(first, second):
    """One split holding both splits' samples (train + validation)."""
    return dataclasses.replace(
        first,
        x=np.concatenate([first.x, second.x]),
        y=np.concatenate([first.y, second.y]),
        indices=np.concatenate([first.indices, second.indices]),
        split=f"{first.split}+{second.split}",
    )


def model_arguments(recipe: Recipe, train: datasets.ArrayDataset) -> dict:
    """The builder's arguments: sizes read from the train split, then the
    recipe's ``model`` fields (which win)."""
    name = recipe.model["name"]
    spec = registry.family_spec(name)
    if train.structure not in spec.data:
        raise AnnzooError(
            f"`model.name` {name!r} ({registry.resolve(name)[0]!r} family) trains on "
            f"{' or '.join(repr(d) for d in spec.data)} data. Received: "
            f"`data.dataset` {recipe.data['dataset']!r}, whose samples are "
            f"{train.structure!r} data."
        )
    args = sequences.dataset_arguments(name, train)
    args.update({k: v for k, v in recipe.model.items() if k != "name"})
    return args


def mixes_labels(recipe: Recipe) -> bool:
    """Whether training mixes labels (mixup/cutmix; validated to be in the pipeline)."""
    return bool(augment.mixing_ops(recipe.augment["ops"]))


def label_classes(train: datasets.ArrayDataset) -> int | None:
    """Classes to one-hot labels over (multiclass datasets), else None."""
    return train.num_classes if train.task == "multiclass" else None


def fit_inputs(
    recipe: Recipe, splits: dict, model, plan: distribute.Plan
) -> tuple[object, object | None]:
    """The training pipeline and the validation pipeline (None when
    ``data.merge_validation`` leaves no validation data)."""
    num_classes = label_classes(splits["train"])
    train_input = input_pipeline(
        recipe,
        splits["train"],
        model,
        training=True,
        num_classes=num_classes,
        plan=plan,
    )
    if recipe.data["merge_validation"]:
        return train_input, None
    val_input = input_pipeline(
        recipe,
        splits["validation"],
        model,
        training=False,
        num_classes=num_classes,
        plan=plan,
    )
    return train_input, val_input


def input_pipeline(
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

    feed = registry.family_spec(recipe.model["name"]).fit_arrays
    x, y = feed(split, model) if feed else sequences.model_inputs(split, model)
    # Mixing ops one-hot the training labels themselves (and the model is then
    # compiled for one-hot labels), so evaluation labels must be one-hot too.
    mixing = mixes_labels(recipe)
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


def _drops_remainder(recipe: Recipe, model, num_samples: int, batch: int) -> bool:
    """``data.drop_remainder`` resolved for the training split."""
    setting = recipe.data["drop_remainder"]
    if setting != "auto":
        return setting
    return data.drop_partial_batch(
        num_samples,
        batch,
        fixed_shapes=bool(getattr(model, "jit_compile", False)),
        steps_per_epoch=recipe.fit["steps_per_epoch"],
    )


def fit_steps(recipe: Recipe, model, train_input) -> int | None:
    """``fit``'s steps_per_epoch; for a never-ending stream, also sets the
    model's steps per call to a divisor of it (see `annzoo.data.make_dataset`)."""
    if hasattr(train_input, "execution_block"):
        set_steps_per_execution(model, train_input.execution_block)
        return train_input.steps_per_epoch
    return recipe.fit["steps_per_epoch"]

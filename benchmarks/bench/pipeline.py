"""Input pipeline: annzoo's real pipeline against one batch repeated.

The model is built by the recipe runner; it trains alternately on the input
the runner makes (``annzoo.data`` through the runner: shuffling, caching,
augmentation where the recipe puts it, batching, prefetching) and on one
batch taken from that input, already materialized and served again and
again (``tf.data.Dataset.from_tensors(batch).repeat()`` on TensorFlow, a
``PyDataset`` returning the same arrays elsewhere). Same steps, full batches
only, no callbacks but the runner's own (it pins each epoch's order). The
ratio of step times is the pipeline's cost on the
training loop (target <= 1.20 on the 2-core CPU): with augmentation in the
pipeline it includes the augmentation, which then competes with the step for
the same cores; with augmentation in the model both sides run it.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import keras
import numpy as np

from bench import core, zoo

TARGET = 1.20
CIFAR_SMALL = (
    "model.name=cnn", "model.filters=[16, 32]", "model.batch_norm=true",
    "model.hidden_units=[64]",
)  # fmt: skip
# (label, recipe, overrides, synthetic CIFAR-size images instead of its data)
CASES = (
    ("digits_cnn, no augmentation", "digits_cnn", (), False),
    ("digits_cnn, `digits` augmentation in the model (the default placement)",
     "digits_cnn", ("augment.ops=digits",), False),
    ("digits_cnn, `digits` augmentation in the pipeline", "digits_cnn",
     ("augment.ops=digits", "augment.placement=pipeline"), False),
    ("cifar10 recipe, small CNN, `cifar` augmentation in the model (its default)",
     "cifar10_resnet20", CIFAR_SMALL, True),
    ("cifar10 recipe, small CNN, `cifar` augmentation in the pipeline",
     "cifar10_resnet20", (*CIFAR_SMALL, "augment.placement=pipeline"), True),
)  # fmt: skip


class RepeatedBatch(keras.utils.PyDataset):
    """The same batch ``steps`` times per epoch."""

    def __init__(self, batch, steps: int):
        super().__init__()
        self.batch, self.steps = batch, steps

    def __len__(self):
        return self.steps

    def __getitem__(self, index):
        return self.batch


def repeated(train_input, steps: int):
    """One batch of ``train_input``, materialized, served ``steps`` times."""
    if hasattr(train_input, "__getitem__") and hasattr(train_input, "__len__"):
        x, y = train_input[0]  # a PyDataset (annzoo's numpy pipeline)
        return RepeatedBatch((np.asarray(x), np.asarray(y)), steps)
    import tensorflow as tf

    x, y = next(iter(train_input))
    if keras.backend.backend() == "tensorflow":
        return tf.data.Dataset.from_tensors((x, y)).repeat(steps)
    return RepeatedBatch((x.numpy(), y.numpy()), steps)


def _cifar_splits(quick: bool, batch_size: int) -> dict:
    rng = np.random.default_rng(0)
    count = batch_size * (2 if quick else 16)
    x = rng.random((count, 32, 32, 3), dtype=np.float32)
    y = rng.integers(0, 10, count).astype(np.int32)
    split = zoo.synthetic_split(x, y, num_classes=10)
    return {"train": split, "validation": split, "test": split}


def measure(label, recipe_name, overrides, synthetic, settings) -> dict:
    recipe = zoo.recipe(recipe_name, list(overrides))
    batch = recipe.data["batch_size"]
    if synthetic:
        splits = _cifar_splits(settings.quick, batch)
    else:
        recipe = recipe.validate()
        splits = zoo.load_splits(recipe)
        keep = (len(splits["train"]) // batch) * batch  # full batches only
        if settings.quick:
            keep = min(keep, 4 * batch)
        splits["train"] = zoo.shrink(splits["train"], keep)
    run_dir = Path(tempfile.mkdtemp(prefix="pipeline-", dir=settings.work_dir))
    path = zoo.runner_path(recipe, splits, run_dir, callbacks="none")
    steps = path.steps_per_epoch
    fixed = repeated(path.train_input, steps)

    def on_fixed(epochs):
        return core.timed_fit(
            path.model, fixed, epochs=epochs, shuffle=False, steps=steps
        )

    results = core.compare(
        f"pipeline {recipe_name}",
        [core.Contender("annzoo pipeline", path.fit),
         core.Contender("one batch repeated", on_fixed)],
        settings, target_s=0.4,
    )  # fmt: skip
    ratio = core.ratios(results, "annzoo pipeline", "one batch repeated")
    keras.backend.clear_session()
    return {
        "case": label,
        "recipe": recipe_name,
        "overrides": list(overrides),
        "synthetic_data": synthetic,
        "batch_size": batch,
        "steps_per_epoch": steps,
        "input": type(path.train_input).__name__,
        "augment": recipe.augment,
        "ratio": ratio.as_dict(),
        "seconds_per_step": {k: [round(v, 7) for v in vs] for k, vs in results.items()},
    }


def run(settings: core.Settings) -> core.Section:
    records, rows, checks = [], [], []
    for label, recipe_name, overrides, synthetic in CASES:
        record = measure(label, recipe_name, overrides, synthetic, settings)
        records.append(record)
        ratio = core.Ratio(**record["ratio"])
        data = "synthetic 32x32x3" if synthetic else "digits"
        rows.append([
            label, data, record["batch_size"], record["steps_per_epoch"],
            f"**{ratio.text(3)}** ({ratio.spread(3)})",
        ])  # fmt: skip
        checks.append(
            core.Check(
                f"pipeline: {label}", ratio.median, f"<= {TARGET}",
                ratio.median <= TARGET,
            )
        )  # fmt: skip
    body = "\n".join(
        [
            "Step time of a recipe's model trained on the input pipeline the recipe "
            "runner builds (shuffle, cache, augmentation where the recipe places it, "
            "batch, prefetch) over its step time on one batch of that pipeline, "
            "materialized and repeated. Full batches only; no callbacks but the "
            "runner's epoch-order pin. The cifar10 "
            "cases take the `cifar10_resnet20` recipe's input and augmentation "
            "settings with a small plain CNN (filters 16, 32) instead of ResNet-20, "
            "on synthetic 32x32x3 images (no download). Target <= 1.20.",
            "",
            core.table(
                [
                    "case",
                    "data",
                    "batch",
                    "steps/epoch",
                    "annzoo pipeline / one batch repeated",
                ],
                rows,
            ),  # fmt: skip
        ]
    )
    return core.Section(
        "pipeline", "Input pipeline: annzoo's pipeline against one batch repeated",
        body, {"cases": records}, checks,
    )  # fmt: skip

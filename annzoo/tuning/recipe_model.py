"""The hypermodel of a recipe: its model searched, fed and compiled as a run would.

`recipe_hypermodel` subclasses `AnnzooHyperModel` so that each trial trains on
the recipe's data the way the recipe runner does: whole batches where the
step is compiled for fixed shapes, one validation batch size whatever the
trial's, TensorFlow's cheap array pipelines, XLA wherever it compiles.
"""

from __future__ import annotations

import keras
import numpy as np

from annzoo import data, tasks
from annzoo.errors import AnnzooError
from annzoo.layers.walk import walk_layers
from annzoo.speedups import without_batch_hooks
from annzoo.training import sequences
from annzoo.training.build import optimizer_arguments
from annzoo.training.recipe import Recipe
from annzoo.tuning.fid import FrechetJudge
from annzoo.tuning.hypermodel import AnnzooHyperModel

__all__ = ["VALIDATION_BATCH", "fid_judge", "recipe_hypermodel"]

# Samples per validation batch, whatever the trial's batch size: a validation
# is a forward pass, which runs faster in larger batches (`benchmarks/run.py
# --only tuning_recipe`: a GRU's validation over the surnames).
VALIDATION_BATCH = 256


def uses_cudnn_rnn(model: keras.Model) -> bool:
    """Whether ``model`` has an LSTM or GRU layer, at any depth."""
    return any(
        isinstance(layer, keras.layers.LSTM | keras.layers.GRU)
        for layer in walk_layers(model)
    )


def accelerated() -> bool:
    """Whether the backend computes on a GPU or another accelerator."""
    if keras.backend.backend() == "jax":
        import jax  # JAX only: deferred, an optional dependency

        return jax.default_backend() != "cpu"
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf  # deferred: TensorFlow loads only when used

        return bool(tf.config.list_physical_devices("GPU"))
    return False


class Say:
    """Prints a message once per process."""

    said: set[str] = set()

    @classmethod
    def once(cls, message: str) -> None:
        if message not in cls.said:
            cls.said.add(message)
            print(f"annzoo: {message}", flush=True)


def validation_batch(model: keras.Model, samples: int) -> int:
    """A trial's validation batch: `VALIDATION_BATCH`, or a divisor of the
    split near it where the step is compiled for fixed shapes."""
    return data.evaluation_batch_size(
        samples, VALIDATION_BATCH, fixed_shapes=bool(model.jit_compile)
    )


def fid_judge(splits: dict, *, seed: int) -> FrechetJudge:
    """A GAN search's judge: its classifier trained on the training split's
    images and labels, its real images the validation split's."""
    train, validation = splits["train"], splits["validation"]
    return FrechetJudge(train.x, train.y, validation.x, validation.y, seed=seed)


def recipe_hypermodel(
    recipe: Recipe, splits: dict, fixed: dict, space: dict | None
) -> AnnzooHyperModel:
    """The hypermodel of a recipe: feeds its data, compiles with XLA where it can.

    Args:
        recipe: the recipe searched.
        splits: its loaded ``train`` and ``validation`` splits.
        fixed: the builder arguments that stay fixed.
        space: the recipe's ``search_space`` (None: the default space).
    """
    backend = keras.backend.backend()
    jit = True if backend == "jax" or accelerated() else recipe.compile["jit_compile"]
    compile_options = {
        "jit_compile": jit,
        # One step per call on PyTorch, as the runner does (`build.for_plan`).
        "steps_per_execution": tasks.backend_steps_per_execution(
            recipe.compile["steps_per_execution"]
        ),
    }

    class RecipeHyperModel(AnnzooHyperModel):
        def build(self, hp):
            model = super().build(hp)
            if jit is True and backend == "tensorflow" and uses_cudnn_rnn(model):
                # XLA cannot compile TensorFlow's cuDNN LSTM/GRU kernels.
                model.jit_compile = False
                Say.once(
                    "XLA is off for models with LSTM/GRU layers on TensorFlow "
                    "(their cuDNN kernels cannot be compiled by XLA)."
                )
            return model

        def fit(self, hp, model, *args, **kwargs):
            x, y = sequences.model_inputs(splits["train"], model)
            if self.adversarial:
                # No validation pass: the validation images are the val_fid
                # measure's real images (`annzoo.tuning.fid`).
                if "callbacks" in kwargs:
                    kwargs["callbacks"] = without_batch_hooks(kwargs["callbacks"])
                return super().fit(hp, model, x, y, shuffle=True, **kwargs)
            validation = sequences.model_inputs(splits["validation"], model)
            if backend == "tensorflow":
                # One cheap iterator per epoch (array slices), not Keras'
                # shuffling array pipeline (slower to start each epoch).
                batch = validation_batch(model, len(validation[1]))
                validation = data.make_dataset(*validation, batch_size=batch)
            if "callbacks" in kwargs:
                kwargs["callbacks"] = without_batch_hooks(kwargs["callbacks"])
            return super().fit(
                hp, model, x, y, validation_data=validation, shuffle=True, **kwargs
            )

        def fit_model(self, model, x, y, *, batch_size=None, shuffle=True, **kwargs):
            if batch_size is None:
                return super().fit_model(model, x, y, shuffle=shuffle, **kwargs)
            validation = kwargs.get("validation_data")
            if isinstance(validation, tuple):  # arrays, batched by Keras
                kwargs.setdefault(
                    "validation_batch_size",
                    validation_batch(model, len(validation[1])),
                )
            # A compiled step would be compiled again for a last, smaller
            # batch: trials then train on whole batches (as the runner does).
            drop = data.drop_partial_batch(
                len(y), batch_size, fixed_shapes=bool(model.jit_compile)
            )
            if backend != "tensorflow":
                if not drop:
                    return super().fit_model(
                        model, x, y, batch_size=batch_size, shuffle=shuffle, **kwargs
                    )
                seed = int(np.random.randint(2**31 - 1))  # from the trial's seed
                train = data.ArraySequence(
                    x, y, batch_size=batch_size, shuffle=shuffle, seed=seed,
                    drop_remainder=True,
                )  # fmt: skip
                data.set_epoch(train, kwargs.get("initial_epoch", 0))
                return super().fit_model(model, train, shuffle=False, **kwargs)
            # As the recipe runner does: a never-ending tf.data stream, one
            # iterator for the whole fit, when the epoch splits into calls of
            # equal length; otherwise a one-pass array pipeline (both start an
            # epoch faster than Keras' own array pipeline).
            steps = len(y) // batch_size if drop else -(-len(y) // batch_size)
            block = data.stream_block(steps, int(model.steps_per_execution or 1))
            seed = int(np.random.randint(2**31 - 1))  # from the trial's seed
            train = data.make_dataset(
                x, y, batch_size=batch_size, shuffle=shuffle, seed=seed,
                repeat=block is not None, drop_remainder=drop,
            )  # fmt: skip
            if block is not None:
                tasks.set_steps_per_execution(model, block)
                kwargs["steps_per_epoch"] = train.steps_per_epoch
            data.set_epoch(train, kwargs.get("initial_epoch", 0))
            # The pipeline shuffles (seeded per epoch); Keras warns otherwise.
            return super().fit_model(model, train, shuffle=False, **kwargs)

    # Its constructor checks the space, the fixed arguments and the options
    # (the recipe's, which every trial's optimizer gets) before any search.
    try:
        made = RecipeHyperModel(
            recipe.model["name"],
            space=space,
            fixed=fixed,
            compile_options=compile_options,
            optimizer_options=optimizer_arguments(recipe),
        )
    except AnnzooError as error:  # named as the recipe's field
        if not str(error).startswith("`optimizer_options"):
            raise
        message = str(error).replace("optimizer_options", "compile.optimizer_options")
        raise AnnzooError(message) from None
    if made.adversarial:
        # Before the search, so that no trial's seeded draws depend on which
        # trial came first after a resume.
        made.fid_judge = fid_judge(splits, seed=recipe.fit["seed"])
    return made

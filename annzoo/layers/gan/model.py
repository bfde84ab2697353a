"""The GAN model: a generator and a discriminator trained together by ``fit``.

`GAN.train_step` is written once per backend, as Keras documents for a custom
``fit`` (TensorFlow: gradient tapes; JAX: a stateless step over the state
Keras passes in; PyTorch: ``backward``); the losses are shared
(`annzoo.layers.gan.losses`). Each step draws its noise (`GAN.draw_noise`),
then updates the discriminator on real and generated images, then the
generator through the updated discriminator.

Keras keeps one ``model.optimizer``: on JAX the state it hands to the step
holds that optimizer's variables only. `OptimizerPair` is that optimizer
here: it holds the generator's and the discriminator's optimizers and lists
their variables as its own, so both are in the JAX state and in every
``.keras`` file.
"""

from __future__ import annotations

from typing import Any

import keras
import numpy as np
from keras import ops

from annzoo.errors import AnnzooError
from annzoo.layers.gan import losses
from annzoo.layers.gan.steps import STEPS

__all__ = ["GAN", "OptimizerPair", "default_optimizer"]


def default_optimizer() -> keras.optimizers.Optimizer:
    """Adam with learning rate 2e-4 and beta_1 0.5 (Radford et al. 2016)."""
    return keras.optimizers.Adam(learning_rate=2e-4, beta_1=0.5)


@keras.saving.register_keras_serializable(package="annzoo")
class OptimizerPair(keras.optimizers.Optimizer):
    """The generator's and the discriminator's optimizers, seen by Keras as one.

    It applies nothing itself: `GAN.train_step` calls each optimizer on its own
    network. Its ``variables`` are its own followed by the generator's and the
    discriminator's optimizer variables; its ``learning_rate`` reads the
    generator's rate, and setting it (a learning-rate callback) scales both
    rates by the same factor, keeping their ratio.

    Args:
        generator: the generator's optimizer (a Keras optimizer or its name).
        discriminator: the discriminator's optimizer.
        name: the optimizer's name.

    Example:
        >>> pair = OptimizerPair(default_optimizer(), default_optimizer())
    """

    def __init__(self, generator=None, discriminator=None, name="optimizer_pair"):
        super().__init__(learning_rate=0.0, name=name)
        self.generator = keras.optimizers.get(generator or default_optimizer())
        self.discriminator = keras.optimizers.get(discriminator or default_optimizer())

    def build_pair(self, generator_variables, discriminator_variables) -> None:
        """Creates both optimizers' variables (slots) for their networks."""
        self.generator.build(generator_variables)
        self.discriminator.build(discriminator_variables)
        super().build([])

    def build(self, var_list):
        if not self.built:
            raise AnnzooError(
                "`OptimizerPair` is built by its GAN's `compile` (which knows the "
                "generator's and the discriminator's variables). Received: a "
                f"build call with {len(var_list)} variables."
            )

    @property
    def variables(self):
        return self._variables + self.generator.variables + self.discriminator.variables

    @property
    def learning_rate(self):
        return self.generator.learning_rate

    @learning_rate.setter
    def learning_rate(self, value):
        old = float(ops.convert_to_numpy(self.generator.learning_rate))
        factor = float(value) / old if old else 0.0
        rate = float(ops.convert_to_numpy(self.discriminator.learning_rate))
        self.generator.learning_rate = float(value)
        self.discriminator.learning_rate = rate * factor

    def get_config(self):
        return {
            "name": self.name,
            "generator": keras.saving.serialize_keras_object(self.generator),
            "discriminator": keras.saving.serialize_keras_object(self.discriminator),
        }

    @classmethod
    def from_config(cls, config, custom_objects=None):
        config = dict(config)
        for key in ("generator", "discriminator"):
            config[key] = keras.saving.deserialize_keras_object(config[key])
        return cls(**config)


@keras.saving.register_keras_serializable(package="annzoo")
class GAN(keras.Model):
    """A generator and a discriminator trained against each other by ``fit``.

    Calling the model (and ``predict``) runs the generator: noise of shape
    ``(latent_dim,)`` in, images out; a conditional GAN takes
    ``{"noise": ..., "labels": ...}``. ``fit(images)`` trains an
    unconditional GAN, ``fit(images, labels)`` a conditional one; each step
    logs ``d_loss``, ``g_loss`` and ``loss`` (their sum, which is NaN as soon
    as either is: what NaN-watching callbacks read).

    Args:
        generator: a model from noise (and labels) to images.
        discriminator: a model from images (and labels) to one raw score.
        loss: ``"bce"``, ``"hinge"`` or ``"wgan-gp"`` (see
            `annzoo.layers.gan.losses`).
        gradient_penalty: the weight of the gradient penalty (``"wgan-gp"``).
        seed: seed of the noise drawn in training steps.
    """

    def __init__(
        self,
        generator,
        discriminator,
        *,
        loss: str = "bce",
        gradient_penalty: float = 10.0,
        seed: int | None = None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.generator = generator
        self.discriminator = discriminator
        self.loss_name = loss
        self.gradient_penalty = float(gradient_penalty)
        self.seed = seed
        self.conditional = len(generator.inputs) == 2
        self.latent_dim = int(generator.inputs[0].shape[-1])
        self.image_shape = tuple(int(d) for d in generator.outputs[0].shape[1:])
        self.noise_generator = keras.random.SeedGenerator(seed, name="noise")
        self.d_loss_tracker = keras.metrics.Mean(name="d_loss")
        self.g_loss_tracker = keras.metrics.Mean(name="g_loss")
        self.loss_tracker = keras.metrics.Mean(name="loss")
        self.built = True

    # -- what Keras and annzoo read ---------------------------------------------

    @property
    def metrics(self):
        return [self.loss_tracker, self.d_loss_tracker, self.g_loss_tracker]

    @property
    def inputs(self):
        return self.generator.inputs

    @property
    def outputs(self):
        return self.generator.outputs

    @property
    def input_shape(self):
        return self.generator.input_shape

    @property
    def output_shape(self):
        return self.generator.output_shape

    @property
    def generator_optimizer(self):
        return self.optimizer.generator if self.optimizer is not None else None

    @property
    def discriminator_optimizer(self):
        return self.optimizer.discriminator if self.optimizer is not None else None

    def call(self, inputs, training=False):
        return self.generator(inputs, training=training)

    def export(self, filepath, format="tf_saved_model", **kwargs):
        """Exports the generator (noise, and labels, to images): what a GAN
        serves; ``keras.Model.export``'s arguments."""
        return self.generator.export(filepath, format=format, **kwargs)

    def get_config(self):
        return {
            "name": self.name,
            "trainable": self.trainable,
            "generator": keras.saving.serialize_keras_object(self.generator),
            "discriminator": keras.saving.serialize_keras_object(self.discriminator),
            "loss": self.loss_name,
            "gradient_penalty": self.gradient_penalty,
            "seed": self.seed,
        }

    @classmethod
    def from_config(cls, config, custom_objects=None):
        config = dict(config)
        for key in ("generator", "discriminator"):
            config[key] = keras.saving.deserialize_keras_object(
                config[key], custom_objects=custom_objects
            )
        return cls(**config)

    # -- compile ----------------------------------------------------------------

    def compile(
        self,
        generator_optimizer=None,
        discriminator_optimizer=None,
        *,
        optimizer=None,
        loss=None,
        metrics=None,
        jit_compile="auto",
        steps_per_execution: int = 1,
    ):
        """Sets both networks' optimizers (default: `default_optimizer`).

        Args:
            generator_optimizer: a Keras optimizer or its name.
            discriminator_optimizer: a Keras optimizer or its name.
            optimizer: one optimizer for both networks instead: the generator
                gets it, the discriminator a copy of its configuration. This
                is what ``annzoo.compile_model(model, task="adversarial",
                optimizer=..., learning_rate=...)`` (the tuner's and the
                runner's compile) passes.
            loss: must be None (or empty ``metrics``): a GAN's losses are its
                builder's ``loss``.
            metrics: must be None or empty.
            jit_compile: passed to ``keras.Model.compile``.
            steps_per_execution: passed to ``keras.Model.compile``.
        """
        if loss is not None or metrics:
            raise AnnzooError(
                "`loss` and `metrics` must be None for a GAN: it trains on its "
                "own two losses (the builder's `loss`, 'bce', 'hinge' or "
                f"'wgan-gp') and logs d_loss and g_loss. Received: loss={loss!r}, "
                f"metrics={metrics!r}"
            )
        if optimizer is not None:
            if generator_optimizer is not None or discriminator_optimizer is not None:
                raise AnnzooError(
                    "`optimizer` sets both networks' optimizers: pass it, or "
                    "generator_optimizer and discriminator_optimizer, not both. "
                    f"Received: optimizer={optimizer!r}, generator_optimizer="
                    f"{generator_optimizer!r}, discriminator_optimizer="
                    f"{discriminator_optimizer!r}"
                )
            generator_optimizer = keras.optimizers.get(optimizer)
            discriminator_optimizer = generator_optimizer.from_config(
                generator_optimizer.get_config()
            )
        pair = OptimizerPair(generator_optimizer, discriminator_optimizer)
        pair.build_pair(
            self.generator.trainable_variables, self.discriminator.trainable_variables
        )
        super().compile(
            optimizer=pair,
            jit_compile=jit_compile,
            steps_per_execution=steps_per_execution,
        )
        self._gan_compile = {
            "generator_optimizer": pair.generator,
            "discriminator_optimizer": pair.discriminator,
            "jit_compile": jit_compile,
            "steps_per_execution": steps_per_execution,
        }

    def get_compile_config(self):
        if not getattr(self, "_gan_compile", None):
            return None
        config = dict(self._gan_compile)
        for key in ("generator_optimizer", "discriminator_optimizer"):
            config[key] = keras.saving.serialize_keras_object(config[key])
        return config

    def compile_from_config(self, config):
        config = dict(config)
        for key in ("generator_optimizer", "discriminator_optimizer"):
            config[key] = keras.saving.deserialize_keras_object(
                _portable_optimizer(config[key])
            )
        self.compile(**config)

    def fit(self, x=None, y=None, *args, **kwargs):
        """``keras.Model.fit`` on images (and, for a conditional GAN, labels),
        the labels checked first when they are an array."""
        if isinstance(x, np.ndarray):
            self.check_labels(y, len(x))
        return super().fit(x, y, *args, **kwargs)

    def check_labels(self, labels, num: int | None = None, name: str = "y") -> Any:
        """Refuses labels a conditional GAN cannot take (or any, unconditional)."""
        classes = self.generator.get_layer("label_one_hot").num_tokens if (
            self.conditional
        ) else None  # fmt: skip
        return check_labels(labels, classes, num=num, name=name)

    # -- the step, shared ---------------------------------------------------------

    def draw_noise(self, batch_size):
        """The step's random draws: noise for the discriminator's update, noise
        for the generator's, and the interpolation weights of the penalty."""
        shape = (batch_size, self.latent_dim)
        return (
            keras.random.normal(shape, seed=self.noise_generator),
            keras.random.normal(shape, seed=self.noise_generator),
            keras.random.uniform((batch_size, 1, 1, 1), seed=self.noise_generator),
        )

    def generator_inputs(self, noise, labels):
        return {"noise": noise, "labels": labels} if self.conditional else noise

    def discriminator_inputs(self, images, labels):
        return {"images": images, "labels": labels} if self.conditional else images

    def unpack(self, data):
        images, labels, _ = keras.utils.unpack_x_y_sample_weight(data)
        if self.conditional and labels is None:
            raise AnnzooError(
                "A conditional GAN trains on (images, labels): pass the labels as "
                "`y`. Received: y=None"
            )
        # Tensors on every backend (PyTorch's trainer passes int labels on as
        # arrays), and labels as the generator's int32 input.
        images = ops.convert_to_tensor(images, dtype="float32")
        if labels is not None:
            labels = ops.convert_to_tensor(labels, dtype="int32")
        return images, labels

    def discriminator_objective(self, real_scores, fake_scores, penalty):
        loss = losses.discriminator_loss(self.loss_name, real_scores, fake_scores)
        if self.loss_name == "wgan-gp":
            loss = loss + self.gradient_penalty * penalty
        return loss

    def record(self, d_loss, g_loss):
        self.d_loss_tracker.update_state(d_loss)
        self.g_loss_tracker.update_state(g_loss)
        self.loss_tracker.update_state(d_loss + g_loss)
        return {m.name: m.result() for m in self.metrics}

    def train_step(self, *args):
        # Keras calls train_step(data) on TensorFlow and PyTorch, and the
        # stateless train_step(state, data) on JAX.
        return STEPS[keras.backend.backend()](self, *args)

    def test_step(self, *args):
        raise AnnzooError(
            "A GAN has no evaluation step: its quality is measured on samples "
            "(annzoo.models.gan.sample). Received: an evaluate() call"
        )


def check_labels(labels, classes: int | None, *, num: int | None, name: str):
    """``labels`` as int32 class ids in [0, classes) (None when unconditional)."""
    if classes is None:
        if labels is not None:
            raise AnnzooError(
                f"`{name}` must be None for an unconditional GAN (build it with "
                f"conditional_classes=K to train on labels). Received: {name} of "
                f"shape {np.shape(labels)}"
            )
        return None
    if labels is None:
        raise AnnzooError(
            f"`{name}` must be class ids in [0, {classes}) for a GAN conditional "
            f"on {classes} classes. Received: {name}=None"
        )
    array = np.asarray(labels)
    if array.ndim == 2 and array.shape[1] == 1:
        array = array[:, 0]
    whole = array.dtype.kind in "iu" or (
        array.dtype.kind == "f" and bool(np.all(array == np.floor(array)))
    )
    if array.ndim != 1 or not whole or (num is not None and len(array) != num):
        expected = f"({num},)" if num is not None else "(batch,)"
        raise AnnzooError(
            f"`{name}` must be integer class ids of shape {expected}. Received: "
            f"{name} of shape {np.shape(labels)} and dtype {array.dtype}"
        )
    if array.size and (array.min() < 0 or array.max() >= classes):
        bad = array[(array < 0) | (array >= classes)][0]
        raise AnnzooError(
            f"`{name}` must be class ids in [0, {classes}) (conditional_classes="
            f"{classes}). Received: {name} from {array.min()} to {array.max()}, "
            f"such as {bad}"
        )
    return array.astype("int32")


def _portable_optimizer(config):
    """An optimizer's saved config, loadable on any backend.

    Keras records a built-in optimizer under its backend's own (private)
    module, on PyTorch the ``torch_sgd`` module of its PyTorch backend, and
    that class, loaded on TensorFlow, fails on its first step. A built-in
    optimizer is named here by its public module instead, ``keras.optimizers``,
    which resolves to the loading backend's class; a user's own optimizer keeps
    its module.
    """
    module = str(config.get("module", "")) if isinstance(config, dict) else ""
    if module.split(".")[:3] == ["keras", "src", "backend"]:
        config = {**config, "module": "keras.optimizers"}
    return config

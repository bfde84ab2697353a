"""The pieces of a variational autoencoder that Keras must find when it loads one.

A variational autoencoder (Kingma and Welling 2014) encodes an image ``x`` into
the mean ``mu`` and log-variance ``log s^2`` of a diagonal Gaussian
``q(z | x)``, draws a code ``z`` from it and decodes ``z`` into the
probabilities ``p`` of Bernoulli pixels. It trains on the negative evidence
lower bound (ELBO), in nats per image::

    -ELBO(x) = -log p(x | z) + KL(q(z | x) || N(0, I))
    -log p(x | z) = -sum_pixels [x log p + (1 - x) log(1 - p)]
    KL = 1/2 sum_latent (s^2 + mu^2 - 1 - log s^2)

* :class:`GaussianLatent` draws ``z = mu + s * eps``, ``eps ~ N(0, I)`` (the
  reparameterization trick: the noise is an input of the computation, so the
  gradient reaches ``mu`` and ``s``) when training, returns ``mu`` otherwise,
  and adds the KL term to the model's losses (``add_loss``).
* :class:`BernoulliNLL` is the reconstruction term, a loss summed over every
  value of a sample (nats per image, not per pixel).
* :class:`Autoencoder` is a functional model that reports ``reconstruction``
  and ``kl`` beside ``loss`` and weights the KL term by ``beta`` (Higgins et
  al. 2017); with ``beta=1`` its ``loss`` is the negative ELBO.

They live with annzoo's layers so that ``keras.saving.load_model`` finds them
once annzoo is imported, like every other annzoo serializable.
"""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

__all__ = ["Autoencoder", "BernoulliNLL", "GaussianLatent", "gaussian_kl"]


def gaussian_kl(mean, log_variance):
    """``KL(N(mean, exp(log_variance)) || N(0, I))`` per sample, in nats.

    Summed over the last axis: ``1/2 sum (exp(lv) + mean^2 - 1 - lv)``.
    """
    return 0.5 * ops.sum(
        ops.exp(log_variance) + ops.square(mean) - 1.0 - log_variance, axis=-1
    )


@keras.saving.register_keras_serializable(package="annzoo")
class GaussianLatent(keras.layers.Layer):
    """Samples a code from a diagonal Gaussian and adds its KL term as a loss.

    Called on ``[mean, log_variance]`` (each ``(batch, latent_dim)``): when
    training, returns ``mean + exp(log_variance / 2) * eps`` with ``eps`` a
    fresh standard normal draw; otherwise returns ``mean``, so that
    predictions are a deterministic function of the input. In both cases it
    adds the batch mean of :func:`gaussian_kl` to the layer's losses.

    Args:
        seed: seed of the noise (None: drawn from Keras' global seed, which
            ``keras.utils.set_random_seed`` sets).
        **kwargs: ``keras.layers.Layer`` arguments (``name``...).

    Example:
        >>> z = GaussianLatent(name="latent")([z_mean, z_log_variance])
    """

    def __init__(self, seed: int | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, inputs, training=None):
        mean, log_variance = inputs
        self.add_loss(ops.mean(gaussian_kl(mean, log_variance)))
        if not training:
            return mean
        noise = keras.random.normal(
            ops.shape(mean), dtype=mean.dtype, seed=self.seed_generator
        )
        return mean + ops.exp(0.5 * log_variance) * noise

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[0])

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "seed": self.seed}


@keras.saving.register_keras_serializable(package="annzoo")
class BernoulliNLL(keras.losses.Loss):
    """Negative log-likelihood of targets in [0, 1] under Bernoulli
    probabilities, summed over every value of a sample (nats per sample).

    ``-sum (y log p + (1 - y) log(1 - p))`` over all axes but the batch one,
    with ``p`` clipped to ``[eps, 1 - eps]`` (``keras.config.epsilon()``) when
    the predictions are probabilities; averaged over the batch by default.

    Args:
        from_logits: whether predictions are logits rather than probabilities.
        **kwargs: ``keras.losses.Loss`` arguments (``reduction``, ``name``).
    """

    def __init__(
        self, from_logits: bool = False, name: str = "bernoulli_nll", **kwargs: Any
    ) -> None:
        super().__init__(name=name, **kwargs)
        self.from_logits = bool(from_logits)

    def call(self, y_true, y_pred):
        y_pred = ops.convert_to_tensor(y_pred)
        y_true = ops.cast(y_true, y_pred.dtype)
        if self.from_logits:
            # log(1 + exp(-|l|)) + max(l, 0) - y l, stable for large logits.
            values = (
                ops.maximum(y_pred, 0.0)
                - y_pred * y_true
                + ops.log1p(ops.exp(-ops.abs(y_pred)))
            )
        else:
            # The same clipped formula on every backend (Keras' own binary
            # cross-entropy reads cached logits on TensorFlow only).
            eps = keras.config.epsilon()
            p = ops.clip(y_pred, eps, 1.0 - eps)
            values = -(y_true * ops.log(p) + (1.0 - y_true) * ops.log(1.0 - p))
        return ops.sum(ops.reshape(values, (ops.shape(values)[0], -1)), axis=-1)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "from_logits": self.from_logits}


@keras.saving.register_keras_serializable(package="annzoo")
class Autoencoder(keras.Model):
    """A functional autoencoder that reports its reconstruction and KL terms.

    Built like a functional model, ``Autoencoder(inputs, outputs, beta=...)``,
    whose output reconstructs the ``images`` input. Its loss is the compiled
    loss (the reconstruction term, :class:`BernoulliNLL` for
    ``task="bernoulli"``) plus ``beta`` times the KL terms that a
    :class:`GaussianLatent` layer adds; ``fit`` and ``evaluate`` report
    ``loss``, ``reconstruction`` and, for a variational model, ``kl``, each a
    mean per sample. Only ``compute_loss`` is Keras' hook overridden here:
    training, evaluation and prediction run Keras' own steps on every backend.

    ``fit(x)`` without targets reconstructs the ``images`` input.

    Args:
        *args: ``keras.Model`` functional arguments (``inputs``, ``outputs``).
        beta: weight of the KL term (1: the negative ELBO).
        **kwargs: ``keras.Model`` keyword arguments (``name``...).
    """

    def __init__(self, *args: Any, beta: float = 1.0, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.beta = float(beta)
        self.variational = any(isinstance(x, GaussianLatent) for x in self.layers)
        self.reconstruction_tracker = keras.metrics.Mean(name="reconstruction")
        self.kl_tracker = keras.metrics.Mean(name="kl") if self.variational else None

    def compute_loss(
        self, x=None, y=None, y_pred=None, sample_weight=None, training=True
    ):
        if y is None:  # fit(x): the targets are the images
            y = x["images"] if isinstance(x, dict) else x
            y = y[0] if isinstance(y, list | tuple) else y
        # Keras adds the layers' losses (the KL term) to the compiled loss.
        total = super().compute_loss(
            x=x, y=y, y_pred=y_pred, sample_weight=sample_weight, training=training
        )
        batch = ops.shape(y_pred)[0]
        if self.variational:
            # No losses when Keras builds the loss symbolically, without a call.
            kl = sum((ops.cast(v, total.dtype) for v in self.losses), 0.0 * total)
            reconstruction = total - kl
            total = reconstruction + self.beta * kl
            self.kl_tracker.update_state(kl, sample_weight=batch)
        else:
            reconstruction = total
        self.reconstruction_tracker.update_state(reconstruction, sample_weight=batch)
        return total

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "beta": self.beta}

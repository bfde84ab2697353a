"""The autoencoder family's helpers: encode, decode, sample, interpolate and
the test ELBO (`elbo_terms`), on any model from
:func:`annzoo.models.autoencoder.build_autoencoder`, built or reloaded.

Re-exported by :mod:`annzoo.models.autoencoder`, where users import them.
"""

from __future__ import annotations

from typing import Any

import keras
import numpy as np

from annzoo._checks import (
    check_positive_int,
    is_int,
)
from annzoo.errors import AnnzooError
from annzoo.layers.latent import Autoencoder


class _Parts:
    """What the helpers read from an autoencoder built by `build_autoencoder`."""

    def __init__(self, model: Any) -> None:
        names = [layer.name for layer in getattr(model, "layers", [])]
        if not isinstance(model, Autoencoder) or not {"encoder", "decoder"} <= set(
            names
        ):
            raise AnnzooError(
                "`model` must be an autoencoder built by annzoo.build_autoencoder "
                "(an annzoo.layers.Autoencoder with 'encoder' and 'decoder' "
                f"sub-models). Received: model={type(model).__name__} "
                f"{getattr(model, 'name', '')!r}"
            )
        self.encoder = model.get_layer("encoder")
        self.decoder = model.get_layer("decoder")
        self.variational = bool(model.variational)
        self.image_shape = tuple(self.decoder.output_shape[1:])
        self.latent_dim = int(self.decoder.inputs[0].shape[-1])
        one_hot = [
            layer
            for layer in self.decoder.layers
            if isinstance(layer, keras.layers.CategoryEncoding)
        ]
        self.classes = int(one_hot[0].num_tokens) if one_hot else None

    def images(self, name: str, x: Any, *, single: bool = False) -> np.ndarray:
        array = np.asarray(x, dtype=np.float32) if _numeric(x) else None
        want = self.image_shape if single else (None, *self.image_shape)
        if (
            array is None
            or array.shape[-len(self.image_shape) :] != (self.image_shape)
            or array.ndim != len(want)
        ):
            shape = getattr(array, "shape", type(x).__name__)
            raise AnnzooError(
                f"`{name}` must be {'an image' if single else 'images'} of shape "
                f"{_shape_text(want)} for this model. Received: {name} of shape "
                f"{shape}"
            )
        if not np.isfinite(array).all():
            raise AnnzooError(f"`{name}` must be finite. Received: NaN or infinity.")
        return array

    def labels(self, name: str, labels: Any, count: int) -> np.ndarray | None:
        if self.classes is None:
            if labels is not None:
                raise AnnzooError(
                    f"`{name}` must be None: this model is not conditional. "
                    f"Received: {name}={_short(labels)}"
                )
            return None
        if labels is None:
            raise AnnzooError(
                f"`{name}` must give a class id in [0, {self.classes}) per sample: "
                f"this model is conditional on {self.classes} classes. "
                f"Received: {name}=None"
            )
        array = np.asarray(labels)
        if array.ndim == 0:
            array = np.full(count, array)
        if (
            array.shape != (count,)
            or array.dtype.kind not in "iu"
            or array.min() < 0
            or array.max() >= self.classes
        ):
            raise AnnzooError(
                f"`{name}` must be {count} integer class ids in [0, {self.classes}) "
                f"(or one id for all). Received: {name}={_short(labels)}"
            )
        return array.astype(np.int32)

    def codes(self, name: str, z: Any) -> np.ndarray:
        array = np.asarray(z, dtype=np.float32) if _numeric(z) else None
        if array is None or array.ndim != 2 or array.shape[1] != self.latent_dim:
            shape = getattr(array, "shape", type(z).__name__)
            raise AnnzooError(
                f"`{name}` must be codes of shape (n, {self.latent_dim}) for this "
                f"model (latent_dim={self.latent_dim}). Received: {name} of shape "
                f"{shape}"
            )
        return array


def _numeric(x: Any) -> bool:
    try:
        return np.asarray(x).dtype.kind in "biuf"
    except (TypeError, ValueError):
        return False


def _shape_text(shape: tuple) -> str:
    return "(" + ", ".join("n" if d is None else str(d) for d in shape) + ")"


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _run(model, inputs, batch_size: int) -> Any:
    return model.predict(inputs, batch_size=batch_size, verbose=0)


def encode(
    model: Autoencoder, x: Any, labels: Any = None, *, batch_size: int = 256
) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """The codes of images ``x``: ``(means, log_variances)`` for a VAE, the
    codes themselves for a plain autoencoder, each ``(n, latent_dim)``.

    Args:
        model: an autoencoder from :func:`build_autoencoder` (or reloaded).
        x: images of the model's input shape, ``(n, ...)``, values in [0, 1].
        labels: ``n`` class ids (or one for all) for a conditional model.
        batch_size: images per forward pass.
    """
    parts = _Parts(model)
    x = parts.images("x", x)
    labels = parts.labels("labels", labels, len(x))
    outputs = _run(parts.encoder, x if labels is None else [x, labels], batch_size)
    return tuple(outputs) if parts.variational else outputs


def decode(
    model: Autoencoder, z: Any, labels: Any = None, *, batch_size: int = 256
) -> np.ndarray:
    """The images (a probability per value) that codes ``z`` ``(n, latent_dim)``
    decode to, ``(n, *image_shape)``; ``labels`` as for :func:`encode`."""
    parts = _Parts(model)
    z = parts.codes("z", z)
    labels = parts.labels("labels", labels, len(z))
    return _run(parts.decoder, z if labels is None else [z, labels], batch_size)


def sample(
    model: Autoencoder, num: int, *, labels: Any = None, seed: int = 0
) -> np.ndarray:
    """``num`` new images of a VAE: codes drawn from its prior N(0, I), decoded.

    The codes come from NumPy's generator seeded with ``seed``, so the same
    seed gives the same images on every backend. The images are the
    decoder's probabilities per value (what is usually shown), not binary
    draws from them.

    Args:
        model: a variational autoencoder (``variational=True``).
        num: how many images.
        labels: for a conditional VAE, one class id for all or ``num`` ids.
        seed: seed of the codes.

    Example:
        >>> images = sample(model, 16, labels=np.arange(16) % 10, seed=1)
    """
    parts = _Parts(model)
    num = check_positive_int("num", num)
    if not parts.variational:
        raise AnnzooError(
            "`model` must be variational to sample from its prior: a plain "
            "autoencoder's codes follow no known distribution. Received: a model "
            "built with variational=False"
        )
    if not is_int(seed):
        raise AnnzooError(f"`seed` must be an integer. Received: seed={seed!r}")
    labels = parts.labels("labels", labels, num)
    z = np.random.default_rng(seed).standard_normal((num, parts.latent_dim))
    return decode(model, z.astype(np.float32), labels)


def interpolate(
    model: Autoencoder, x_a: Any, x_b: Any, steps: int = 8, *, label: Any = None
) -> np.ndarray:
    """Decodes ``steps`` codes evenly spaced from image ``x_a``'s to ``x_b``'s.

    The codes are the encoder's (the means for a VAE); the first and last
    images are the two reconstructions. For a conditional model, ``label`` is
    the class of both images and of the path.

    Returns:
        ``(steps, *image_shape)`` images.
    """
    parts = _Parts(model)
    a = parts.images("x_a", x_a, single=True)
    b = parts.images("x_b", x_b, single=True)
    if not is_int(steps) or steps < 2:
        raise AnnzooError(
            f"`steps` must be an integer >= 2 (both ends included). "
            f"Received: steps={steps!r}"
        )
    labels = parts.labels("label", label, 2)
    codes = encode(model, np.stack([a, b]), labels)
    codes = codes[0] if parts.variational else codes
    weights = np.linspace(0.0, 1.0, steps, dtype=np.float32)[:, None]
    path = (1.0 - weights) * codes[0] + weights * codes[1]
    return decode(model, path, None if labels is None else labels[0])


def elbo_terms(
    model: Autoencoder,
    x: Any,
    labels: Any = None,
    *,
    samples: int = 1,
    seed: int = 0,
    noise: Any = None,
    batch_size: int = 256,
) -> dict[str, float]:
    """A VAE's negative ELBO on ``x`` and its two terms, means per image in nats.

    ``reconstruction`` is the Bernoulli negative log-likelihood of ``x``
    (summed over values, probabilities clipped as in training) averaged over
    ``samples`` codes ``z = mean + exp(log_var / 2) * eps`` per image; ``kl``
    is the closed-form KL term; ``negative_elbo`` is their sum (beta is a
    training weight, not part of the bound). The noise ``eps`` is drawn by
    NumPy from ``seed``, or given as ``noise`` of shape ``(samples, n,
    latent_dim)``.

    Returns:
        ``{"negative_elbo": ..., "reconstruction": ..., "kl": ...}``.
    """
    parts = _Parts(model)
    if not parts.variational:
        raise AnnzooError(
            "`model` must be variational to have an ELBO. Received: a model built "
            "with variational=False"
        )
    x = parts.images("x", x)
    samples = check_positive_int("samples", samples)
    labels = parts.labels("labels", labels, len(x))
    shape = (samples, len(x), parts.latent_dim)
    if noise is None:
        noise = np.random.default_rng(seed).standard_normal(shape)
    noise = np.asarray(noise, dtype=np.float32)
    if noise.shape != shape:
        raise AnnzooError(
            f"`noise` must have shape (samples, n, latent_dim) = {shape}. "
            f"Received: noise of shape {noise.shape}"
        )
    mean, log_var = encode(model, x, labels, batch_size=batch_size)
    kl = 0.5 * np.sum(np.exp(log_var) + mean**2 - 1.0 - log_var, axis=-1)
    flat = x.reshape(len(x), -1).astype(np.float64)
    eps = keras.config.epsilon()
    nll = np.zeros(len(x))
    for draw in noise:
        z = mean + np.exp(0.5 * log_var) * draw
        p = decode(model, z, labels, batch_size=batch_size).reshape(len(x), -1)
        p = np.clip(p.astype(np.float64), eps, 1.0 - eps)
        nll -= np.sum(flat * np.log(p) + (1.0 - flat) * np.log(1.0 - p), axis=1)
    nll /= samples
    return {
        "negative_elbo": float(np.mean(nll + kl)),
        "reconstruction": float(np.mean(nll)),
        "kl": float(np.mean(kl)),
    }


# -- presets --------------------------------------------------------------------

# The scikit-learn digits (annzoo.datasets "digits": 8x8x1 in [0, 1]).

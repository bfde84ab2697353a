"""The adversarial losses, in `keras.ops`, shared by every backend's training step.

The discriminator outputs one raw score per image (no sigmoid); each loss
reads scores:

* ``"bce"``: the non-saturating game of Goodfellow et al. (2014). The
  discriminator minimizes ``softplus(-s_real) + softplus(s_fake)`` (binary
  cross-entropy of "real" on real images plus "fake" on generated ones, each
  averaged over its batch); the generator minimizes ``softplus(-s_fake)``
  (cross-entropy of "real" on its images) instead of maximizing the
  discriminator's loss, which saturates early in training.
* ``"hinge"``: the discriminator minimizes ``relu(1 - s_real) +
  relu(1 + s_fake)``, the generator ``-s_fake`` (Lim and Ye 2017; Miyato et
  al. 2018).
* ``"wgan-gp"``: a critic estimating the Wasserstein distance minimizes
  ``s_fake - s_real`` plus ``gradient_penalty`` times ``(||grad_x s(x_hat)||
  - 1)^2`` at points ``x_hat`` on the lines between real and generated
  images; the generator minimizes ``-s_fake`` (Gulrajani et al. 2017).

Each term is a mean over the batch.
"""

from __future__ import annotations

from keras import ops

__all__ = [
    "LOSSES",
    "discriminator_loss",
    "generator_loss",
    "gradient_penalty",
    "interpolate",
]

LOSSES = ("bce", "hinge", "wgan-gp")


def discriminator_loss(loss: str, real_scores, fake_scores):
    """The discriminator's (critic's) loss on raw scores, penalty excluded."""
    real_scores = ops.cast(real_scores, "float32")
    fake_scores = ops.cast(fake_scores, "float32")
    if loss == "bce":
        return ops.mean(ops.softplus(-real_scores)) + ops.mean(
            ops.softplus(fake_scores)
        )
    if loss == "hinge":
        return ops.mean(ops.relu(1.0 - real_scores)) + ops.mean(
            ops.relu(1.0 + fake_scores)
        )
    return ops.mean(fake_scores) - ops.mean(real_scores)


def generator_loss(loss: str, fake_scores):
    """The generator's loss on the discriminator's scores of its images."""
    fake_scores = ops.cast(fake_scores, "float32")
    if loss == "bce":
        return ops.mean(ops.softplus(-fake_scores))
    return -ops.mean(fake_scores)


def interpolate(real, fake, weights):
    """``weights * real + (1 - weights) * fake``: points between the two batches
    (``weights`` of shape ``(batch, 1, 1, 1)``, in [0, 1])."""
    return weights * real + (1.0 - weights) * fake


def gradient_penalty(gradients):
    """``mean((||g|| - 1)^2)`` over the batch, ``g`` being each image's gradient
    of the critic's score with respect to that image.

    The norm is taken as ``sqrt(sum g^2 + 1e-12)``: differentiable where a
    gradient is zero, a difference below float32's resolution elsewhere.
    """
    gradients = ops.cast(gradients, "float32")
    flat = ops.reshape(gradients, (ops.shape(gradients)[0], -1))
    norms = ops.sqrt(ops.sum(ops.square(flat), axis=1) + 1e-12)
    return ops.mean(ops.square(norms - 1.0))

"""The GAN model (`GAN`), its optimizer pair, training steps and losses.

They live with annzoo's serializable layers so that a saved GAN reloads with
plain ``keras.saving.load_model`` once annzoo is imported (``annzoo.layers``
runs when Keras is imported); the builder, presets and `sample` are in
`annzoo.models.gan`.
"""

from annzoo.layers.gan import losses
from annzoo.layers.gan.model import GAN, OptimizerPair, check_labels, default_optimizer

__all__ = ["GAN", "OptimizerPair", "check_labels", "default_optimizer", "losses"]

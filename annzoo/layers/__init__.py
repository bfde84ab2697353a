"""Serializable custom layers used by annzoo's builders."""

from annzoo.layers.adapt import GrayscaleToRGB
from annzoo.layers.attention import (
    MultiHeadAttention,
    PositionEmbedding,
    TokenAndPositionEmbedding,
    causal_mask,
    fused_attention,
    padding_mask,
    scaled_dot_product_attention,
)
from annzoo.layers.augment import Augmentation, RandomPadCrop
from annzoo.layers.causal import cached_block_step, empty_cache
from annzoo.layers.crf import CRF, CRFLoss, viterbi_decode
from annzoo.layers.gan import GAN, OptimizerPair
from annzoo.layers.latent import Autoencoder, BernoulliNLL, GaussianLatent
from annzoo.layers.recurrent_attention import RecurrentAttention
from annzoo.layers.shortcut import PaddedIdentity
from annzoo.layers.transformer import (
    ClassToken,
    PatchEmbedding,
    TransformerDecoderBlock,
    TransformerEncoderBlock,
)

__all__ = [
    "Augmentation",
    "Autoencoder",
    "BernoulliNLL",
    "CRF",
    "CRFLoss",
    "ClassToken",
    "GAN",
    "GaussianLatent",
    "GrayscaleToRGB",
    "MultiHeadAttention",
    "OptimizerPair",
    "PaddedIdentity",
    "PatchEmbedding",
    "PositionEmbedding",
    "RandomPadCrop",
    "RecurrentAttention",
    "TokenAndPositionEmbedding",
    "TransformerDecoderBlock",
    "TransformerEncoderBlock",
    "cached_block_step",
    "causal_mask",
    "empty_cache",
    "fused_attention",
    "padding_mask",
    "scaled_dot_product_attention",
    "viterbi_decode",
]

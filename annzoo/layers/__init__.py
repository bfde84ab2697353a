"""Serializable custom layers used by annzoo's builders."""

from annzoo.layers.augment import Augmentation, RandomPadCrop
from annzoo.layers.shortcut import PaddedIdentity

__all__ = ["Augmentation", "PaddedIdentity", "RandomPadCrop"]

"""Serializable custom layers used by annzoo's builders."""

from annzoo.layers.shortcut import PaddedIdentity

__all__ = ["PaddedIdentity"]

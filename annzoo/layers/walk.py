"""Every sublayer of a layer or model, found through public attributes only.

Keras keeps the list of a layer's sublayers in private state; its public face
is ``Model.layers`` (functional and sequential models, ``keras.layers.
Pipeline``) and the attributes a layer stores its sublayers under (``cell``
of an RNN, ``forward_layer`` of a Bidirectional, the layers a custom layer
creates in ``__init__`` or ``build``). `walk_layers` follows both, so it
reaches what annzoo's builders and Keras' layers nest, without Keras
internals. A sublayer kept only under an underscore name is not reached, nor
the ``InputLayer`` a ``Sequential`` model leaves out of its ``layers``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import keras

__all__ = ["walk_layers"]


def _children(value: Any) -> Iterator[keras.layers.Layer]:
    if isinstance(value, keras.layers.Layer):
        yield value
    elif isinstance(value, list | tuple):
        for item in value:
            yield from _children(item)
    elif isinstance(value, dict):
        for item in value.values():
            yield from _children(item)


def _sublayers(layer: keras.layers.Layer) -> Iterator[keras.layers.Layer]:
    layers = getattr(layer, "layers", None)  # Model, Sequential, Pipeline
    if isinstance(layers, list | tuple):
        yield from _children(layers)
    for name, value in vars(layer).items():
        if not name.startswith("_"):
            yield from _children(value)


def walk_layers(
    layer: keras.layers.Layer, *, include_self: bool = True
) -> list[keras.layers.Layer]:
    """``layer`` (with ``include_self``) and every layer nested in it, each
    once, depth first in the order they are held.

    Example:
        >>> inner = keras.Sequential([keras.layers.BatchNormalization()])
        >>> model = keras.Sequential([keras.Input((3,)), inner])
        >>> [type(x).__name__ for x in walk_layers(model)]
        ['Sequential', 'Sequential', 'BatchNormalization']
    """
    found: list[keras.layers.Layer] = []
    seen: set[int] = set()
    stack = [layer]
    while stack:
        current = stack.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        if current is not layer or include_self:
            found.append(current)
        stack.extend(reversed(list(_sublayers(current))))
    return found

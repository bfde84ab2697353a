"""A language model's one-step function, pure: what an export serves.

`IncrementalDecoder` keeps its cache in Python state and steps with Python
integers; `step_function` gives the same computation as a function of tensors
only, ``(token, position, cache[, classes]) -> (logits, cache)``, so that it
can be traced (`annzoo.export`'s ``step=True`` writes it as a SavedModel
signature) and a client can generate without annzoo and without recomputing
the prefix. It is backend-agnostic (`keras.ops`, the model's own layers and
:func:`annzoo.layers.causal.cached_block_step`); one tensor holds the whole
cache, zeros at the start:

=================  ============================================================
Transformer        ``(batch, num_layers, 2, sequence_length, heads, key_dim)``:
                   each block's keys and values of the positions seen so far
LSTM               ``(batch, num_layers, 2, units)``: each layer's h and c
GRU                ``(batch, num_layers, 1, units)``: each layer's h
=================  ============================================================

A prompt is read one token per call, from position 0 (``<start>``); the
logits after the last one give the next token. Positions must stay below the
Transformer's ``sequence_length`` (a recurrent model ignores them).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import keras
from keras import ops

from annzoo.layers.causal import cached_block_step
from annzoo.models.language_model import architecture_of

__all__ = ["StepFunction", "step_function"]


@dataclasses.dataclass(frozen=True)
class StepFunction:
    """A language model's step, and the shapes a caller needs.

    Attributes:
        function: ``function(token, position, cache, classes=None)``: ``token``
            int32 ``(batch,)``, ``position`` an int32 scalar, ``cache`` float32
            ``(batch, *cache_shape)``, ``classes`` int32 ``(batch,)`` for a
            conditional model; returns ``(logits (batch, vocabulary_size),
            cache)``.
        cache_shape: the cache's shape without the batch axis.
        vocabulary_size: the logits' width.
        max_length: positions ``0 .. max_length - 1`` (None: any).
        conditional: whether ``classes`` is required.
        architecture: ``"transformer"``, ``"lstm"`` or ``"gru"``.
    """

    function: Callable[..., tuple[Any, Any]]
    cache_shape: tuple[int, ...]
    vocabulary_size: int
    max_length: int | None
    conditional: bool
    architecture: str


def _layers(model: keras.Model, prefix: str) -> list[Any]:
    names = {layer.name for layer in model.layers}
    found = []
    while f"{prefix}{len(found) + 1}" in names:
        found.append(model.get_layer(f"{prefix}{len(found) + 1}"))
    return found


def step_function(model: keras.Model) -> StepFunction:
    """The one-step function of a model built by `annzoo.build_language_model`.

    Args:
        model: a language model (Transformer, LSTM or GRU; conditional or not).

    Returns:
        A `StepFunction`; its ``function`` gives, at each position, the
        full-sequence model's next-token logits (``head_logits``) up to float
        rounding (``tests/test_lm_export.py``).

    Example:
        >>> step = step_function(model)
        >>> cache = np.zeros((1, *step.cache_shape), "float32")
        >>> logits, cache = step.function(np.array([1]), 0, cache)
    """
    architecture = architecture_of(model)  # refuses anything else
    names = {layer.name for layer in model.layers}
    conditional = "class_embedding" in names
    embedding = model.get_layer("embedding")
    head = model.get_layer("head_logits")
    condition = model.get_layer("class_embedding") if conditional else None
    tokens_input = model.inputs[0]
    max_length = tokens_input.shape[1]

    if architecture == "transformer":
        blocks = _layers(model, "block")
        final_norm = model.get_layer("final_norm")
        positions = embedding.position_embedding
        shape = (len(blocks), 2, max_length, blocks[0].num_heads, blocks[0].key_dim)

        def body(x, position, cache):
            # The position table as the layer computes it (learned or not),
            # read in the graph so an export holds the layer's weights.
            table = positions(ops.zeros((1, max_length, positions.output_dim)))[0]
            x = x + ops.take(table, ops.reshape(position, (1,)), axis=0)[None]
            layers_cache = []
            for i, block in enumerate(blocks):
                x, (keys, values) = cached_block_step(
                    block, x, (cache[:, i, 0], cache[:, i, 1]), position
                )
                layers_cache.append(ops.stack([keys, values], axis=1))
            return final_norm(x), ops.stack(layers_cache, axis=1)

    else:
        cells = [layer.cell for layer in _layers(model, architecture)]
        parts = 2 if architecture == "lstm" else 1
        shape = (len(cells), parts, cells[0].units)

        def body(x, position, cache):
            x = x[:, 0]
            states = []
            for i, cell in enumerate(cells):
                given = [cache[:, i, j] for j in range(parts)]
                x, state = cell(x, given, training=False)
                state = list(state) if isinstance(state, list | tuple) else [state]
                states.append(ops.stack(state, axis=1))
            return x[:, None], ops.stack(states, axis=1)

    def function(token, position, cache, classes=None):
        token = ops.convert_to_tensor(token, dtype="int32")
        position = ops.convert_to_tensor(position, dtype="int32")
        cache = ops.convert_to_tensor(cache, dtype="float32")
        token = ops.reshape(token, (-1, 1))
        if architecture == "transformer":
            x = embedding.token_embedding(token)
        else:
            x = embedding(token)
        if condition is not None:
            classes = ops.reshape(ops.convert_to_tensor(classes, "int32"), (-1, 1))
            x = x + condition(classes)
        x, cache = body(x, position, cache)
        return head(x)[:, 0], cache

    return StepFunction(
        function=function,
        cache_shape=tuple(int(d) for d in shape),
        vocabulary_size=int(head.units),
        max_length=None if max_length is None else int(max_length),
        conditional=conditional,
        architecture=architecture,
    )

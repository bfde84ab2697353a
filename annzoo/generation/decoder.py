"""Running a language model one token at a time, with a cache.

`IncrementalDecoder` is what `annzoo.generation.text.generate_text` samples
from: the Transformer keeps every block's keys and values
(`annzoo.layers.causal`), LSTM and GRU their state.
"""

from __future__ import annotations

from typing import Any

import keras
import numpy as np
from keras import ops

from annzoo.errors import AnnzooError
from annzoo.layers.causal import cached_block_step, empty_cache
from annzoo.models.language_model import architecture_of

__all__ = ["IncrementalDecoder"]


class IncrementalDecoder:
    """Runs a language model one step at a time: next-token logits, cached.

    ``start(tokens, classes)`` reads a batch of prefixes at once (the
    prompt's "prefill") and returns the logits after the last token;
    ``step(token)`` appends one token per sequence and returns the logits
    after it. The Transformer keeps every layer's keys and values of the
    positions seen so far (a key/value cache,
    :func:`annzoo.layers.causal.cached_block_step`), so a step costs one
    position instead of the whole sequence; LSTM and GRU keep their state
    and step their cells. No dropout is applied (inference).

    Args:
        model: a model built by :func:`build_language_model`.

    Example:
        >>> decoder = IncrementalDecoder(model)
        >>> logits = decoder.start(np.array([[1, 7, 9]]))   # (1, vocabulary)
        >>> logits = decoder.step(np.array([4]))
    """

    def __init__(self, model: keras.Model):
        self.model = model
        self.architecture = architecture_of(model)
        layer_names = {layer.name for layer in model.layers}
        self.conditional = "class_embedding" in layer_names
        self.max_length = (
            model.input_shape[0][1] if self.conditional else (model.input_shape[1])
        )
        self._layers = [
            model.get_layer(f"block{i}" if self.architecture == "transformer"
                            else f"{self.architecture}{i}")
            for i in range(1, self._count(layer_names) + 1)
        ]  # fmt: skip
        self.length = 0
        self._state: list[Any] = []
        self._condition = None

    def _count(self, layer_names: set[str]) -> int:
        prefix = "block" if self.architecture == "transformer" else self.architecture
        count = 0
        while f"{prefix}{count + 1}" in layer_names:
            count += 1
        return count

    def _embed(self, tokens: Any, position: int) -> Any:
        embedding = self.model.get_layer("embedding")
        if self.architecture == "transformer":
            x = embedding.token_embedding(tokens)
            table = self._position_table()
            x = x + table[None, position : position + ops.shape(tokens)[1]]
        else:
            x = embedding(tokens)
        if self._condition is not None:
            x = x + self._condition
        return x

    def _position_table(self):
        if not hasattr(self, "_table"):
            layer = self.model.get_layer("embedding").position_embedding
            dim = layer.output_dim
            # The layer's own output on a full-length input: learned or not.
            self._table = layer(ops.zeros((1, layer.sequence_length, dim)))[0]
        return self._table

    def _head(self, x: Any) -> np.ndarray:
        if self.architecture == "transformer":
            x = self.model.get_layer("final_norm")(x)
        logits = self.model.get_layer("head_logits")(x)
        return ops.convert_to_numpy(logits[:, -1]).astype(np.float64)

    def start(self, tokens: Any, classes: Any = None) -> np.ndarray:
        """Reads ``tokens`` ``(batch, t)`` (no padding) from position 0;
        returns the logits ``(batch, vocabulary)`` after the last one."""
        tokens = ops.convert_to_tensor(np.asarray(tokens, dtype=np.int32))
        batch, length = (int(d) for d in ops.shape(tokens))
        if self.conditional:
            if classes is None:
                raise AnnzooError(
                    "`classes` must be given for a model conditioned on classes "
                    "(it has a `classes` input). Received: classes=None"
                )
            classes = np.asarray(classes, dtype=np.int32).reshape(batch, 1)
            self._condition = self.model.get_layer("class_embedding")(classes)
        else:
            self._condition = None
        x = self._embed(tokens, 0)
        if self.architecture == "transformer":
            size = self.max_length
            self._state = []
            for block in self._layers:
                cache = empty_cache(block, batch, size, x.dtype)
                x, cache = cached_block_step(block, x, cache, 0)
                self._state.append(cache)
        else:
            self._state = [self._initial_state(layer, batch) for layer in self._layers]
            outputs = []
            for t in range(length):
                outputs.append(self._recurrent_step(x[:, t]))
            x = ops.stack(outputs, axis=1)
        self.length = length
        return self._head(x)

    def _initial_state(self, layer, batch):
        zeros = ops.zeros((batch, layer.units))
        return [zeros, zeros] if self.architecture == "lstm" else [zeros]

    def _recurrent_step(self, x):
        for i, layer in enumerate(self._layers):
            x, state = layer.cell(x, self._state[i], training=False)
            self._state[i] = list(state) if isinstance(state, list | tuple) else [state]
        return x

    def step(self, token: Any) -> np.ndarray:
        """Appends ``token`` ``(batch,)``; returns the logits after it."""
        if self.max_length is not None and self.length >= self.max_length:
            raise AnnzooError(
                f"The model reads at most {self.max_length} tokens (its "
                "`sequence_length`); a sequence cannot grow past it."
            )
        token = np.asarray(token, dtype=np.int32).reshape(-1, 1)
        x = self._embed(ops.convert_to_tensor(token), self.length)
        if self.architecture == "transformer":
            for i, block in enumerate(self._layers):
                x, self._state[i] = cached_block_step(
                    block, x, self._state[i], self.length
                )
        else:
            x = self._recurrent_step(x[:, 0])[:, None]
        self.length += 1
        return self._head(x)

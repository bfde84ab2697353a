"""Global attention of a recurrent decoder over an encoder's outputs.

The three scores of Bahdanau et al. (2015) and Luong et al. (2015) between a
decoder state (the query ``q``, one per decoder step) and every encoder output
or image region (the memory ``m``, one per source position)::

    additive (Bahdanau):  score(q, m) = v^T tanh(W_q q + W_m m + b)
    dot      (Luong):     score(q, m) = q . m
    general  (Luong):     score(q, m) = q^T W m

    weights = softmax over the source positions of the scores
    context = sum over the source positions of weights * m

written with ``keras.ops`` only. Masked source positions (padding) get a weight
of exactly zero.
"""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

from annzoo._checks import check_choice, check_positive_int
from annzoo.errors import AnnzooError
from annzoo.layers.attention import _large_negative

__all__ = ["RecurrentAttention", "SCORES"]

SCORES = ("additive", "dot", "general")


@keras.saving.register_keras_serializable(package="annzoo")
class RecurrentAttention(keras.layers.Layer):
    """Additive, dot or general attention of decoder steps over a memory.

    For every decoder step ``t`` and source position ``s`` the layer scores
    the query ``q_t`` against the memory ``m_s``, turns the scores of each step
    into weights with a softmax over ``s``, and returns the weighted mean of
    the memory (the context vector) with the weights::

        additive: e_ts = v^T tanh(q_t W_q + m_s W_m + b)   (Bahdanau et al. 2015)
        dot:      e_ts = q_t . m_s                          (Luong et al. 2015)
        general:  e_ts = q_t W m_s^T                        (Luong et al. 2015)
        a_ts = softmax_s(e_ts),  c_t = sum_s a_ts m_s

    Weights: additive ``query_kernel`` ``(dq, units)``, ``memory_kernel``
    ``(dm, units)``, ``bias`` ``(units,)`` and ``score_vector`` ``(units,)``
    (one bias: the two Dense biases of some implementations add up to one; a
    bias on ``v`` would shift every score of a step equally, which the softmax
    ignores); general ``kernel`` ``(dq, dm)``; dot none, and it requires
    ``dq == dm``.

    Masks: memory positions where ``memory_mask`` is False (or 0) get a weight
    of exactly zero, and a step whose memory is entirely masked gets all-zero
    weights and a zero context, never NaN; every other row of weights sums to
    1. ``memory_mask`` defaults to the memory's Keras mask (for example from
    ``Embedding(mask_zero=True)`` through a recurrent encoder). The context
    keeps the query's Keras mask; the weights carry none. Each step is scored
    independently of the others, so a causal decoder stays causal.

    Args:
        score: ``"additive"``, ``"dot"`` or ``"general"``.
        units: size of the additive score's hidden layer; defaults to the
            memory's feature size. Only for ``score="additive"``.

    Call arguments:
        query: ``(batch, T, dq)``, the decoder's outputs.
        memory: ``(batch, S, dm)``, the encoder's outputs or image regions.
        memory_mask: optional ``(batch, S)`` boolean or 0/1 tensor, True/1 =
            attend.

    Returns:
        ``[context, weights]``: ``(batch, T, dm)`` and ``(batch, T, S)``.

    Example:
        >>> attention = RecurrentAttention("additive", units=32)
        >>> q, m = keras.random.normal((2, 5, 16)), keras.random.normal((2, 7, 24))
        >>> context, weights = attention(q, m)  # (2, 5, 24), (2, 5, 7)
    """

    def __init__(self, score: str = "additive", units: int | None = None, **kwargs):
        super().__init__(**kwargs)
        self.score = check_choice("score", score, SCORES)
        if units is not None:
            units = check_positive_int("units", units)
            if self.score != "additive":
                raise AnnzooError(
                    "`units` applies to score='additive' only (the dot and "
                    f"general scores have no hidden layer). Received: units={units} "
                    f"with score={self.score!r}"
                )
        self.units = units
        self.supports_masking = True

    def build(self, query_shape, memory_shape):
        query_dim, memory_dim = query_shape[-1], memory_shape[-1]
        if query_dim is None or memory_dim is None:
            raise AnnzooError(
                "RecurrentAttention needs a known feature size for the query and "
                f"the memory. Received shapes {query_shape} and {memory_shape}"
            )
        if self.score == "dot" and query_dim != memory_dim:
            raise AnnzooError(
                "`score`='dot' needs queries and memory of the same size (q . m); "
                f"use 'general' or 'additive'. Received: query size {query_dim}, "
                f"memory size {memory_dim}"
            )
        if self.score == "additive":
            units = memory_dim if self.units is None else self.units
            self.query_kernel = self.add_weight(
                shape=(query_dim, units),
                initializer="glorot_uniform",
                name="query_kernel",
            )
            self.memory_kernel = self.add_weight(
                shape=(memory_dim, units),
                initializer="glorot_uniform",
                name="memory_kernel",
            )
            self.bias = self.add_weight(
                shape=(units,), initializer="zeros", name="bias"
            )
            self.score_vector = self.add_weight(
                shape=(units,), initializer="glorot_uniform", name="score_vector"
            )
        elif self.score == "general":
            self.kernel = self.add_weight(
                shape=(query_dim, memory_dim),
                initializer="glorot_uniform",
                name="kernel",
            )

    def _scores(self, query, memory):
        if self.score == "dot":
            return ops.matmul(query, ops.swapaxes(memory, -1, -2))
        if self.score == "general":
            return ops.matmul(
                ops.matmul(query, self.kernel), ops.swapaxes(memory, -1, -2)
            )
        # (B, T, 1, u) + (B, 1, S, u) -> (B, T, S, u) -> (B, T, S)
        keys = ops.matmul(memory, self.memory_kernel) + self.bias
        queries = ops.matmul(query, self.query_kernel)
        hidden = ops.tanh(queries[:, :, None, :] + keys[:, None, :, :])
        return ops.einsum("btsu,u->bts", hidden, self.score_vector)

    def call(self, query, memory, memory_mask=None):
        scores = self._scores(query, memory)
        if memory_mask is None:
            weights = ops.softmax(scores, axis=-1)
        else:
            mask = ops.cast(memory_mask, "bool")[:, None, :]
            scores = ops.where(mask, scores, _large_negative(scores.dtype))
            weights = ops.softmax(scores, axis=-1)
            # Exact zeros at masked positions, and zeros (not the uniform
            # softmax of equal scores) in a row with no visible position.
            weights = ops.where(mask, weights, ops.zeros_like(weights))
        context = ops.matmul(weights, ops.cast(memory, weights.dtype))
        return [context, weights]

    def compute_output_shape(self, query_shape, memory_shape):
        batch, steps = query_shape[0], query_shape[1]
        return (
            (batch, steps, memory_shape[-1]),
            (batch, steps, memory_shape[1]),
        )

    def compute_mask(self, inputs, previous_mask=None):
        # The context keeps the query's mask (padded decoder steps); the weights
        # carry none.
        return [previous_mask, None]

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "score": self.score, "units": self.units}

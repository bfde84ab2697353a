"""Scaled dot-product attention, multi-head attention and position embeddings.

The attention of Vaswani et al. (2017, section 3.2)::

    Attention(Q, K, V) = softmax(Q K^T / sqrt(d_k)) V
    MultiHead(Q, K, V) = Concat(head_1, ..., head_h) W^O,
        head_i = Attention(Q W_i^Q, K W_i^K, V W_i^V)

written with ``keras.ops`` only, so it runs on every Keras 3 backend. Masks
follow Keras' convention everywhere: ``True`` (or 1) means "may attend",
``False`` (or 0) means "masked".
"""

from __future__ import annotations

import math
from typing import Any

import keras
import numpy as np
from keras import ops

from annzoo._checks import check_choice, check_positive_int, check_rate
from annzoo.errors import AnnzooError

__all__ = [
    "MultiHeadAttention",
    "PositionEmbedding",
    "TokenAndPositionEmbedding",
    "causal_mask",
    "fused_attention",
    "padding_mask",
    "scaled_dot_product_attention",
]

POSITION_KINDS = ("learned", "sinusoidal")


def _large_negative(dtype: str) -> float:
    # Finite, so a fully masked row softmaxes to uniform weights instead of
    # NaN (exp(-inf - -inf)); -1e9 overflows float16, whose max is 65504.
    return -3e4 if keras.backend.standardize_dtype(dtype) == "float16" else -1e9


def scaled_dot_product_attention(
    query: Any,
    key: Any,
    value: Any,
    mask: Any = None,
    *,
    return_weights: bool = False,
    dropout_rate: float = 0.0,
    seed: Any = None,
):
    """Computes ``softmax(Q K^T / sqrt(d_k)) V``.

    Any leading axes (batch, heads) broadcast as in ``matmul``. Masked
    positions get a weight of exactly zero. A query row whose keys are all
    masked (a padded query, or a fully padded sequence) gets **all-zero
    weights and a zero output**, never NaN; every other row of weights sums
    to 1.

    Args:
        query: tensor ``(..., T_q, d_k)``.
        key: tensor ``(..., T_k, d_k)``.
        value: tensor ``(..., T_k, d_v)``.
        mask: optional boolean (or 0/1) tensor broadcastable to
            ``(..., T_q, T_k)``; True/1 = attend, False/0 = masked. See
            :func:`causal_mask` and :func:`padding_mask`.
        return_weights: also return the attention weights
            ``(..., T_q, T_k)`` (before dropout).
        dropout_rate: dropout applied to the weights before they multiply
            ``value``; pass 0 (the default) at inference.
        seed: seed of that dropout, a ``keras.random.SeedGenerator`` (needed
            under JAX's jit) or an integer.

    Returns:
        The output ``(..., T_q, d_v)``, or ``(output, weights)`` when
        ``return_weights`` is true.

    Example:
        >>> q = k = v = keras.random.normal((2, 5, 8))
        >>> out, w = scaled_dot_product_attention(
        ...     q, k, v, causal_mask(5), return_weights=True)
        >>> out.shape, w.shape  # (2, 5, 8), (2, 5, 5); w[:, 0, 1:] == 0
    """
    query = ops.convert_to_tensor(query)
    key = ops.convert_to_tensor(key)
    value = ops.convert_to_tensor(value)
    depth = query.shape[-1]
    if depth is None:
        scale = ops.rsqrt(ops.cast(ops.shape(query)[-1], query.dtype))
    else:
        scale = 1.0 / math.sqrt(depth)
    scores = ops.matmul(query, ops.swapaxes(key, -1, -2)) * scale
    if mask is not None:
        mask = ops.cast(mask, "bool")
        scores = ops.where(mask, scores, _large_negative(scores.dtype))
    weights = ops.softmax(scores, axis=-1)
    if mask is not None:
        # exp(-1e9 - max) already underflows to 0 in a row with one visible
        # key; this makes it exact, and zeroes the uniform weights that a
        # fully masked row would otherwise get.
        weights = ops.where(mask, weights, ops.zeros_like(weights))
    used = weights
    if dropout_rate:
        used = keras.random.dropout(weights, dropout_rate, seed=seed)
    output = ops.matmul(used, value)
    return (output, weights) if return_weights else output


def fused_attention(
    query: Any, key: Any, value: Any, mask: Any = None, *, causal=False
):
    """:func:`scaled_dot_product_attention` as one fused op, heads last.

    The same ``softmax(Q K^T / sqrt(d_k)) V`` through
    ``keras.ops.dot_product_attention``: on a GPU with the JAX backend that
    is cuDNN's flash attention, which never writes the ``(T_q, T_k)`` weights
    to memory; elsewhere XLA's or the backend's own kernel. No weights come
    back and none are dropped out, which is why the training path with
    attention dropout keeps :func:`scaled_dot_product_attention`.

    Args:
        query: ``(batch, T_q, heads, d_k)``.
        key: ``(batch, T_k, heads, d_k)``.
        value: ``(batch, T_k, heads, d_k)`` (the key's depth).
        mask: optional boolean mask broadcastable to ``(batch, T_q, T_k)``,
            True = attend, shared by every head. A query whose keys are all
            masked gets a zero output, as in
            :func:`scaled_dot_product_attention`.
        causal: also forbid attending to later positions.

    Returns:
        ``(batch, T_q, heads, d_k)``.
    """
    if mask is None:
        return ops.dot_product_attention(query, key, value, is_causal=causal)
    q_shape, k_shape = ops.shape(query), ops.shape(key)
    mask = ops.broadcast_to(
        ops.cast(mask, "bool"), (q_shape[0], q_shape[1], k_shape[1])
    )
    if causal:
        mask = ops.logical_and(mask, causal_mask(q_shape[1], k_shape[1]))
    # A row with no visible key attends to every key (finite on every
    # backend, gradients included) and is then zeroed.
    visible = ops.any(mask, axis=-1)
    mask = ops.logical_or(mask, ops.logical_not(visible)[:, :, None])
    out = ops.dot_product_attention(query, key, value, mask=mask[:, None])
    return ops.where(visible[:, :, None, None], out, ops.zeros_like(out))


def causal_mask(length: Any, key_length: Any = None):
    """The ``(length, key_length)`` lower-triangular mask of causal attention.

    Position ``i`` may attend to positions ``j <= i``. It broadcasts against
    scores of shape ``(..., length, key_length)``.

    Args:
        length: number of queries (an int, or a scalar tensor).
        key_length: number of keys; defaults to ``length`` (self-attention).

    Returns:
        A boolean tensor, ``mask[i, j] = j <= i``.

    Example:
        >>> causal_mask(3)  # [[T, F, F], [T, T, F], [T, T, T]]
    """
    key_length = length if key_length is None else key_length
    rows = ops.arange(length, dtype="int32")[:, None]
    cols = ops.arange(key_length, dtype="int32")[None, :]
    return ops.greater_equal(rows, cols)


def padding_mask(token_ids: Any, pad_id: int = 0):
    """The ``(batch, 1, T)`` key mask of self-attention over padded tokens.

    ``mask[b, 0, j]`` is False where ``token_ids[b, j] == pad_id``; the unit
    axis broadcasts over the queries, so it applies as is to scores of shape
    ``(batch, T, T)``. Combine it with :func:`causal_mask` with ``&``
    (``ops.logical_and``).

    Args:
        token_ids: integer tensor ``(batch, T)``.
        pad_id: the padding id.

    Returns:
        A boolean tensor of shape ``(batch, 1, T)``.

    Example:
        >>> padding_mask(np.array([[5, 7, 0]]))  # [[[True, True, False]]]
    """
    return ops.expand_dims(ops.not_equal(token_ids, pad_id), axis=-2)


def _optional_positive_int(name: str, value: Any) -> int | None:
    return None if value is None else check_positive_int(name, value)


@keras.saving.register_keras_serializable(package="annzoo")
class MultiHeadAttention(keras.layers.Layer):
    """Multi-head attention, ``Concat(head_1, ..., head_h) W^O``.

    ``head_i = Attention(Q W_i^Q, K W_i^K, V W_i^V)`` with
    :func:`scaled_dot_product_attention`. The projections are ``Dense``
    sublayers ``query``, ``key`` and ``value`` with kernels
    ``(features, num_heads * key_dim)`` whose columns
    ``i * key_dim : (i + 1) * key_dim`` are ``W_i``; ``attention_output``
    holds ``W^O``, ``(num_heads * value_dim, output_dim)``, applied to the
    heads concatenated in order. The parameter count is that of
    ``keras.layers.MultiHeadAttention`` with the same settings.

    The call mirrors ``keras.layers.MultiHeadAttention``: Keras masks of
    ``query`` and ``value`` (for example from ``Embedding(mask_zero=True)``)
    are picked up as ``query_mask``/``value_mask`` and combined with
    ``attention_mask`` and the causal mask; a padded query gets a zero
    attention output (see :func:`scaled_dot_product_attention`). The output
    keeps the query's mask. Inputs are ``(batch, time, features)``.

    When no weights are returned and no dropout is active (inference, or
    ``dropout=0``) and ``value_dim == key_dim``, the heads are computed by
    :func:`fused_attention`, one fused kernel (cuDNN flash attention on a
    GPU with the JAX backend), with the same results up to rounding.

    Args:
        num_heads: number of heads ``h``.
        key_dim: size ``d_k`` of each head's queries and keys.
        value_dim: size ``d_v`` of each head's values; defaults to
            ``key_dim``.
        dropout: dropout rate on the attention weights (training only).
        use_bias: whether the four projections have biases.
        output_dim: size of the output features; defaults to the query's.
        seed: seed of the dropout.

    Call arguments:
        query: ``(batch, T_q, features)``.
        value: ``(batch, T_k, features_v)``.
        key: ``(batch, T_k, features_k)``; defaults to ``value``.
        query_mask, value_mask, key_mask: ``(batch, T)`` padding masks,
            filled in from the inputs' Keras masks when not given.
        attention_mask: boolean mask broadcastable to
            ``(batch, T_q, T_k)``, True = attend.
        return_attention_scores: also return the weights
            ``(batch, num_heads, T_q, T_k)``.
        training: whether dropout is active.
        use_causal_mask: forbid attending to later positions.

    Example:
        >>> mha = MultiHeadAttention(num_heads=2, key_dim=8)
        >>> x = keras.random.normal((4, 10, 16))
        >>> mha(x, x, use_causal_mask=True).shape  # (4, 10, 16)
    """

    def __init__(
        self,
        num_heads: int,
        key_dim: int,
        value_dim: int | None = None,
        dropout: float = 0.0,
        use_bias: bool = True,
        output_dim: int | None = None,
        seed: int | None = None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.num_heads = check_positive_int("num_heads", num_heads)
        self.key_dim = check_positive_int("key_dim", key_dim)
        self.value_dim = _optional_positive_int("value_dim", value_dim)
        self.dropout = check_rate("dropout", dropout)
        self.use_bias = bool(use_bias)
        self.output_dim = _optional_positive_int("output_dim", output_dim)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)
        self.supports_masking = True

    @property
    def _value_dim(self) -> int:
        return self.key_dim if self.value_dim is None else self.value_dim

    def build(self, query_shape, value_shape, key_shape=None):
        key_shape = value_shape if key_shape is None else key_shape
        output_dim = self.output_dim or query_shape[-1]

        def dense(units, name):
            return keras.layers.Dense(
                units, use_bias=self.use_bias, name=name, dtype=self.dtype_policy
            )

        self.query_dense = dense(self.num_heads * self.key_dim, "query")
        self.key_dense = dense(self.num_heads * self.key_dim, "key")
        self.value_dense = dense(self.num_heads * self._value_dim, "value")
        self.output_dense = dense(output_dim, "attention_output")
        self.query_dense.build(query_shape)
        self.key_dense.build(key_shape)
        self.value_dense.build(value_shape)
        self.output_dense.build(
            tuple(query_shape[:-1]) + (self.num_heads * self._value_dim,)
        )

    def _heads(self, x, depth):
        # (batch, T, h * depth) -> (batch, T, h, depth)
        shape = ops.shape(x)
        return ops.reshape(x, (shape[0], shape[1], self.num_heads, depth))

    def _split_heads(self, x, depth):
        # (batch, T, h * depth) -> (batch, h, T, depth)
        return ops.transpose(self._heads(x, depth), (0, 2, 1, 3))

    def _attention_mask(
        self, query, value, query_mask, value_mask, key_mask, attention_mask, causal
    ):
        # Same combination as keras.layers.MultiHeadAttention: [B, T, 1] &
        # [B, 1, S] & [B, 1, S] & [T, S] & attention_mask.
        parts = []
        if query_mask is not None:
            parts.append(ops.expand_dims(ops.cast(query_mask, "bool"), -1))
        for mask in (value_mask, key_mask):
            if mask is not None:
                parts.append(ops.expand_dims(ops.cast(mask, "bool"), -2))
        if causal:
            parts.append(causal_mask(ops.shape(query)[1], ops.shape(value)[1]))
        if attention_mask is not None:
            parts.append(ops.cast(attention_mask, "bool"))
        if not parts:
            return None
        combined = parts[0]
        for part in parts[1:]:
            combined = ops.logical_and(combined, part)
        return combined

    def call(
        self,
        query,
        value,
        key=None,
        query_mask=None,
        value_mask=None,
        key_mask=None,
        attention_mask=None,
        return_attention_scores=False,
        training=None,
        use_causal_mask=False,
    ):
        if key is None:
            key = value
        mask = self._attention_mask(
            query,
            value,
            query_mask,
            value_mask,
            key_mask,
            attention_mask,
            use_causal_mask,
        )
        rate = self.dropout if training else 0.0
        if not return_attention_scores and not rate and self._value_dim == self.key_dim:
            # No weights to return or drop: one fused attention, heads kept
            # in (batch, T, heads, depth) order, so no transposes either.
            q = self._heads(self.query_dense(query), self.key_dim)
            k = self._heads(self.key_dense(key), self.key_dim)
            v = self._heads(self.value_dense(value), self._value_dim)
            others = (query_mask, value_mask, key_mask, attention_mask)
            only_causal = use_causal_mask and all(m is None for m in others)
            heads = fused_attention(
                q, k, v, None if only_causal else mask, causal=only_causal
            )
            shape = ops.shape(heads)
            concat = ops.reshape(heads, (shape[0], shape[1], -1))
            return self.output_dense(concat)
        if mask is not None:
            # One mask for every head: (B, T, S) -> (B, 1, T, S).
            mask = ops.expand_dims(mask, -3)
        q = self._split_heads(self.query_dense(query), self.key_dim)
        k = self._split_heads(self.key_dense(key), self.key_dim)
        v = self._split_heads(self.value_dense(value), self._value_dim)
        heads, weights = scaled_dot_product_attention(
            q,
            k,
            v,
            mask,
            return_weights=True,
            dropout_rate=rate,
            seed=self.seed_generator,
        )
        # (B, h, T, d_v) -> (B, T, h * d_v): Concat(head_1, ..., head_h).
        heads = ops.transpose(heads, (0, 2, 1, 3))
        shape = ops.shape(heads)
        concat = ops.reshape(heads, (shape[0], shape[1], -1))
        output = self.output_dense(concat)
        if return_attention_scores:
            return output, weights
        return output

    def get_config(self):
        return {
            **super().get_config(),
            "num_heads": self.num_heads,
            "key_dim": self.key_dim,
            "value_dim": self.value_dim,
            "dropout": self.dropout,
            "use_bias": self.use_bias,
            "output_dim": self.output_dim,
            "seed": self.seed,
        }


def _sinusoidal_table(length: Any, dim: int, dtype: str = "float32"):
    """``PE[pos, 2i] = sin(pos / 10000^(2i/d))``, ``PE[pos, 2i+1] = cos(...)``.

    Vaswani et al. (2017, section 3.5); returns a ``(length, dim)`` tensor.
    """
    channels = np.arange(dim)
    # float64 for the frequencies, so the table matches the formula closely.
    inverse = np.power(10000.0, -(2 * (channels // 2)) / dim)
    angles = ops.arange(length, dtype="float32")[:, None] * ops.convert_to_tensor(
        inverse[None, :].astype("float32")
    )
    table = ops.where(channels % 2 == 0, ops.sin(angles), ops.cos(angles))
    return ops.cast(table, dtype)


@keras.saving.register_keras_serializable(package="annzoo")
class PositionEmbedding(keras.layers.Layer):
    """The position embeddings of a sequence, learned or sinusoidal.

    Returns the embeddings of positions ``0 .. T-1`` broadcast to
    ``(batch, T, output_dim)``, for the caller to add to its token
    embeddings; it keeps the input's Keras mask. ``"learned"`` holds a
    trainable ``(sequence_length, output_dim)`` table; ``"sinusoidal"`` is the
    fixed encoding of Vaswani et al. (2017, section 3.5),
    ``PE(pos, 2i) = sin(pos / 10000^(2i/d))`` and
    ``PE(pos, 2i+1) = cos(pos / 10000^(2i/d))``, with no weights.

    Args:
        sequence_length: the longest sequence, ``T <= sequence_length``.
        output_dim: size ``d`` of each embedding.
        kind: ``"learned"`` or ``"sinusoidal"``.
        embeddings_initializer: initializer of the learned table.

    Example:
        >>> x = keras.random.normal((2, 10, 16))
        >>> x = x + PositionEmbedding(10, 16, kind="sinusoidal")(x)
    """

    def __init__(
        self,
        sequence_length: int,
        output_dim: int,
        kind: str = "learned",
        embeddings_initializer: Any = "glorot_uniform",
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.sequence_length = check_positive_int("sequence_length", sequence_length)
        self.output_dim = check_positive_int("output_dim", output_dim)
        self.kind = check_choice("kind", kind, POSITION_KINDS)
        self.embeddings_initializer = keras.initializers.get(embeddings_initializer)
        self.supports_masking = True

    def build(self, input_shape):
        length = input_shape[1] if len(input_shape) > 1 else None
        if length is not None and length > self.sequence_length:
            raise AnnzooError(
                f"Sequences of length {length} are longer than "
                f"`sequence_length`. Received: sequence_length="
                f"{self.sequence_length}"
            )
        if self.kind == "learned":
            self.embeddings = self.add_weight(
                shape=(self.sequence_length, self.output_dim),
                initializer=self.embeddings_initializer,
                name="embeddings",
            )

    def compute_output_shape(self, input_shape):
        return (input_shape[0], input_shape[1], self.output_dim)

    def call(self, inputs):
        shape = ops.shape(inputs)
        length = shape[1]
        if self.kind == "learned":
            table = ops.slice(
                ops.convert_to_tensor(self.embeddings),
                (0, 0),
                (length, self.output_dim),
            )
            table = ops.cast(table, self.compute_dtype)
        else:
            table = _sinusoidal_table(length, self.output_dim, self.compute_dtype)
        return ops.broadcast_to(table[None], (shape[0], length, self.output_dim))

    def get_config(self):
        return {
            **super().get_config(),
            "sequence_length": self.sequence_length,
            "output_dim": self.output_dim,
            "kind": self.kind,
            "embeddings_initializer": keras.initializers.serialize(
                self.embeddings_initializer
            ),
        }


@keras.saving.register_keras_serializable(package="annzoo")
class TokenAndPositionEmbedding(keras.layers.Layer):
    """Token embeddings plus position embeddings, with a padding mask.

    Input contract: integer token ids ``(batch, T)`` with
    ``T <= sequence_length``; with ``mask_zero=True`` the id 0 is padding and
    the output carries the mask ``token_ids != 0``, which the attention
    layers downstream pick up. Sublayers: ``token_embedding``
    (``keras.layers.Embedding``) and ``position_embedding``
    (:class:`PositionEmbedding`).

    Args:
        vocabulary_size: number of token ids, padding included.
        sequence_length: the longest sequence.
        embedding_dim: size of the embeddings.
        kind: ``"learned"`` or ``"sinusoidal"`` position embeddings.
        mask_zero: whether id 0 is padding (and masked).

    Example:
        >>> embed = TokenAndPositionEmbedding(1000, 32, 64)
        >>> x = embed(np.array([[5, 8, 2, 0, 0]]))  # (1, 5, 64)
        >>> embed.compute_mask(np.array([[5, 8, 2, 0, 0]]))  # [[T, T, T, F, F]]
    """

    def __init__(
        self,
        vocabulary_size: int,
        sequence_length: int,
        embedding_dim: int,
        kind: str = "learned",
        mask_zero: bool = True,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.vocabulary_size = check_positive_int("vocabulary_size", vocabulary_size)
        self.sequence_length = check_positive_int("sequence_length", sequence_length)
        self.embedding_dim = check_positive_int("embedding_dim", embedding_dim)
        self.kind = check_choice("kind", kind, POSITION_KINDS)
        self.mask_zero = bool(mask_zero)

    def build(self, input_shape):
        self.token_embedding = keras.layers.Embedding(
            self.vocabulary_size,
            self.embedding_dim,
            mask_zero=self.mask_zero,
            name="token_embedding",
            dtype=self.dtype_policy,
        )
        self.position_embedding = PositionEmbedding(
            self.sequence_length,
            self.embedding_dim,
            kind=self.kind,
            name="position_embedding",
            dtype=self.dtype_policy,
        )
        self.token_embedding.build(input_shape)
        self.position_embedding.build(tuple(input_shape) + (self.embedding_dim,))

    def compute_output_shape(self, input_shape):
        return tuple(input_shape) + (self.embedding_dim,)

    def call(self, inputs):
        tokens = self.token_embedding(inputs)
        return tokens + self.position_embedding(tokens)

    def compute_mask(self, inputs, mask=None):
        if not self.mask_zero:
            return mask
        return ops.not_equal(inputs, 0)

    def get_config(self):
        return {
            **super().get_config(),
            "vocabulary_size": self.vocabulary_size,
            "sequence_length": self.sequence_length,
            "embedding_dim": self.embedding_dim,
            "kind": self.kind,
            "mask_zero": self.mask_zero,
        }

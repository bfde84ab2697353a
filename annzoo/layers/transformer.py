"""Transformer encoder and decoder blocks, and the ViT patch layers.

The blocks are those of Vaswani et al. (2017, section 3.1): each sublayer
(self-attention, cross-attention, feed-forward) is wrapped as
``LayerNorm(x + Dropout(sublayer(x)))`` ("post-norm", the paper's), or with
``norm_first=True`` as ``x + Dropout(sublayer(LayerNorm(x)))`` ("pre-norm",
GPT-2 and ViT; a model built from pre-norm blocks usually adds one final
``LayerNormalization``). The attention is annzoo's
:class:`~annzoo.layers.MultiHeadAttention`, and the blocks keep and honour the
Keras padding masks of their inputs.
"""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

from annzoo._checks import (
    check_positive_float,
    check_positive_int,
    check_rate,
    is_int,
)
from annzoo.errors import AnnzooError
from annzoo.layers.attention import MultiHeadAttention

__all__ = [
    "ClassToken",
    "PatchEmbedding",
    "TransformerDecoderBlock",
    "TransformerEncoderBlock",
]


class _Block(keras.layers.Layer):
    """Arguments, feed-forward network and residual wrapping shared by blocks."""

    def __init__(
        self,
        num_heads: int,
        key_dim: int,
        ff_dim: int,
        dropout: float = 0.1,
        activation: Any = "relu",
        norm_first: bool = False,
        epsilon: float = 1e-6,
        attention_dropout: float = 0.0,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.num_heads = check_positive_int("num_heads", num_heads)
        self.key_dim = check_positive_int("key_dim", key_dim)
        self.ff_dim = check_positive_int("ff_dim", ff_dim)
        self.dropout = check_rate("dropout", dropout)
        self.activation = keras.activations.get(activation)
        self.norm_first = bool(norm_first)
        self.epsilon = check_positive_float("epsilon", epsilon)
        self.attention_rate = check_rate("attention_dropout", attention_dropout)
        self.supports_masking = True

    def _attention(self, name):
        return MultiHeadAttention(
            self.num_heads,
            self.key_dim,
            dropout=self.attention_rate,
            name=name,
            dtype=self.dtype_policy,
        )

    def _norm(self, name, shape):
        norm = keras.layers.LayerNormalization(
            epsilon=self.epsilon, name=name, dtype=self.dtype_policy
        )
        norm.build(shape)
        return norm

    def _dropout(self, name):
        return keras.layers.Dropout(self.dropout, name=name, dtype=self.dtype_policy)

    def _build_feed_forward(self, shape):
        dim = shape[-1]
        self.ff_inner = keras.layers.Dense(
            self.ff_dim,
            activation=self.activation,
            name="ff_inner",
            dtype=self.dtype_policy,
        )
        self.ff_outer = keras.layers.Dense(
            dim, name="ff_outer", dtype=self.dtype_policy
        )
        self.ff_dropout = self._dropout("ff_dropout")
        self.ff_norm = self._norm("ff_norm", shape)
        self.ff_inner.build(shape)
        self.ff_outer.build(tuple(shape[:-1]) + (self.ff_dim,))

    def _residual(self, x, norm, dropout, sublayer, training):
        """``norm(x + dropout(sublayer(x)))``, or pre-norm ``x + ...(norm(x))``."""
        y = sublayer(norm(x) if self.norm_first else x)
        x = x + dropout(y, training=training)
        return x if self.norm_first else norm(x)

    def _feed_forward(self, x, training):
        return self._residual(
            x,
            self.ff_norm,
            self.ff_dropout,
            lambda y: self.ff_outer(self.ff_inner(y)),
            training,
        )

    def get_config(self):
        return {
            **super().get_config(),
            "num_heads": self.num_heads,
            "key_dim": self.key_dim,
            "ff_dim": self.ff_dim,
            "dropout": self.dropout,
            "activation": keras.activations.serialize(self.activation),
            "norm_first": self.norm_first,
            "epsilon": self.epsilon,
            "attention_dropout": self.attention_rate,
        }


@keras.saving.register_keras_serializable(package="annzoo")
class TransformerEncoderBlock(_Block):
    """One Transformer encoder layer: self-attention, then feed-forward.

    ``x = LayerNorm(x + Dropout(MHA(x, x)))``, then
    ``x = LayerNorm(x + Dropout(W_2 act(W_1 x + b_1) + b_2))`` (post-norm,
    Vaswani et al. 2017), or the pre-norm variant with ``norm_first=True``.
    The output has the input's shape ``(batch, T, d_model)`` and keeps its
    Keras mask; padded positions are masked out of the attention (their
    values never reach the others). With ``use_causal_mask=True`` in the
    call it is a decoder-only (GPT-style) block.

    Parameters: ``4 d^2 + 4 d`` for the attention when
    ``num_heads * key_dim == d``, ``2 d ff_dim + ff_dim + d`` for the
    feed-forward network, ``4 d`` for the two LayerNorms.

    Args:
        num_heads: number of attention heads.
        key_dim: size of each head (``d_model / num_heads`` usually).
        ff_dim: width of the feed-forward hidden layer.
        dropout: rate of the residual dropouts (on each sublayer's output
            before it is added back, Vaswani et al. 2017, section 5.4).
        activation: activation of the feed-forward hidden layer.
        norm_first: pre-norm instead of the paper's post-norm.
        epsilon: LayerNorm epsilon.
        attention_dropout: dropout rate on the attention weights; 0 by
            default, as in the paper, ViT and the keras.io examples. Above 0
            the attention is computed unfused while training (the weights
            must exist to be dropped), which trains slower on accelerators
            (`benchmarks/gpu_bench.py`, its attention-dropout variant).

    Example:
        >>> tokens = keras.Input((None,), dtype="int32")
        >>> x = TokenAndPositionEmbedding(1000, 64, 32)(tokens)  # masks id 0
        >>> x = TransformerEncoderBlock(num_heads=4, key_dim=8, ff_dim=64)(x)
    """

    def build(self, input_shape):
        self.self_attention = self._attention("self_attention")
        self.self_attention.build(input_shape, input_shape)
        self.attention_dropout = self._dropout("attention_dropout")
        self.attention_norm = self._norm("attention_norm", input_shape)
        self._build_feed_forward(input_shape)

    def compute_output_shape(self, input_shape):
        return input_shape

    def call(self, inputs, mask=None, use_causal_mask=False, training=None):
        def attend(x):
            return self.self_attention(
                x,
                x,
                query_mask=mask,
                value_mask=mask,
                use_causal_mask=use_causal_mask,
                training=training,
            )

        x = self._residual(
            inputs, self.attention_norm, self.attention_dropout, attend, training
        )
        return self._feed_forward(x, training)


@keras.saving.register_keras_serializable(package="annzoo")
class TransformerDecoderBlock(_Block):
    """One Transformer decoder layer: causal self-, cross-attention, FFN.

    Three residual sublayers (Vaswani et al. 2017, section 3.1): causal
    self-attention over ``inputs`` (position t sees positions <= t),
    attention from ``inputs`` over ``context`` (the encoder's outputs), and
    the feed-forward network. The Keras masks of both inputs are honoured:
    padded targets are masked in self-attention, padded context positions
    in cross-attention; the output keeps the mask of ``inputs``.

    Args:
        num_heads: number of attention heads (both attentions).
        key_dim: size of each head.
        ff_dim: width of the feed-forward hidden layer.
        dropout: rate of the residual dropouts (on each sublayer's output
            before it is added back, Vaswani et al. 2017, section 5.4).
        activation: activation of the feed-forward hidden layer.
        norm_first: pre-norm instead of the paper's post-norm.
        epsilon: LayerNorm epsilon.
        attention_dropout: dropout rate on the attention weights; 0 by
            default, as in the paper, ViT and the keras.io examples. Above 0
            the attention is computed unfused while training (the weights
            must exist to be dropped), which trains slower on accelerators
            (`benchmarks/gpu_bench.py`, its attention-dropout variant).

    Call arguments:
        inputs: the (shifted) target sequence ``(batch, T, d_model)``.
        context: the encoder's outputs ``(batch, S, d_context)``.
        inputs_mask, context_mask: ``(batch, T)`` and ``(batch, S)``
            padding masks, taken from the inputs' Keras masks when not given.
        training: whether dropout is active.

    Example:
        >>> decoder = TransformerDecoderBlock(num_heads=4, key_dim=8, ff_dim=64)
        >>> y = decoder(keras.random.normal((2, 7, 32)),
        ...             keras.random.normal((2, 9, 32)))  # (2, 7, 32)
    """

    def build(self, inputs_shape, context_shape):
        self.self_attention = self._attention("self_attention")
        self.self_attention.build(inputs_shape, inputs_shape)
        self.self_attention_dropout = self._dropout("self_attention_dropout")
        self.self_attention_norm = self._norm("self_attention_norm", inputs_shape)
        self.cross_attention = self._attention("cross_attention")
        self.cross_attention.build(inputs_shape, context_shape)
        self.cross_attention_dropout = self._dropout("cross_attention_dropout")
        self.cross_attention_norm = self._norm("cross_attention_norm", inputs_shape)
        self._build_feed_forward(inputs_shape)

    def compute_output_shape(self, inputs_shape, context_shape):
        return inputs_shape

    def call(self, inputs, context, inputs_mask=None, context_mask=None, training=None):
        def self_attend(x):
            return self.self_attention(
                x,
                x,
                query_mask=inputs_mask,
                value_mask=inputs_mask,
                use_causal_mask=True,
                training=training,
            )

        def cross_attend(x):
            return self.cross_attention(
                x,
                context,
                query_mask=inputs_mask,
                value_mask=context_mask,
                training=training,
            )

        x = self._residual(
            inputs,
            self.self_attention_norm,
            self.self_attention_dropout,
            self_attend,
            training,
        )
        x = self._residual(
            x,
            self.cross_attention_norm,
            self.cross_attention_dropout,
            cross_attend,
            training,
        )
        return self._feed_forward(x, training)


def _pair(name: str, value: Any) -> tuple[int, int]:
    if is_int(value):
        value = (value, value)
    if (
        not isinstance(value, tuple | list)
        or len(value) != 2
        or not all(is_int(v) and v > 0 for v in value)
    ):
        raise AnnzooError(
            f"`{name}` must be a positive integer or a pair of them. "
            f"Received: {name}={value!r}"
        )
    return (int(value[0]), int(value[1]))


@keras.saving.register_keras_serializable(package="annzoo")
class PatchEmbedding(keras.layers.Layer):
    """Splits images into patches and embeds each linearly (ViT).

    Dosovitskiy et al. (2021): a ``Conv2D`` with ``embedding_dim`` filters,
    kernel and stride ``patch_size`` applies one linear map to each
    non-overlapping patch; the grid is then flattened row by row into
    ``(batch, num_patches, embedding_dim)``, patch ``k`` being the one at
    row ``k // (W / pw)``, column ``k % (W / pw)``.

    Input contract: channels-last images ``(batch, H, W, C)`` whose height
    and width are multiples of the patch size.

    Args:
        patch_size: side of a square patch, or ``(height, width)``.
        embedding_dim: size of each patch embedding.

    Example:
        >>> patches = PatchEmbedding(4, 64)(keras.ops.ones((2, 32, 32, 3)))
        >>> patches.shape  # (2, 64, 64): an 8 x 8 grid of 4 x 4 patches
    """

    def __init__(self, patch_size: Any, embedding_dim: int, **kwargs):
        super().__init__(**kwargs)
        self.patch_size = _pair("patch_size", patch_size)
        self.embedding_dim = check_positive_int("embedding_dim", embedding_dim)

    def build(self, input_shape):
        for axis, size, patch in zip(
            ("height", "width"), input_shape[1:3], self.patch_size, strict=True
        ):
            if size is not None and size % patch:
                raise AnnzooError(
                    f"The image {axis} ({size}) must be a multiple of "
                    f"`patch_size`. Received: patch_size={self.patch_size}"
                )
        self.projection = keras.layers.Conv2D(
            self.embedding_dim,
            self.patch_size,
            strides=self.patch_size,
            padding="valid",
            name="projection",
            dtype=self.dtype_policy,
        )
        self.projection.build(input_shape)

    def compute_output_shape(self, input_shape):
        height, width = input_shape[1:3]
        count = None
        if height is not None and width is not None:
            count = (height // self.patch_size[0]) * (width // self.patch_size[1])
        return (input_shape[0], count, self.embedding_dim)

    def call(self, inputs):
        x = self.projection(inputs)
        height, width = x.shape[1], x.shape[2]
        if height is not None and width is not None:
            return ops.reshape(x, (-1, height * width, self.embedding_dim))
        return ops.reshape(x, (ops.shape(x)[0], -1, self.embedding_dim))

    def get_config(self):
        return {
            **super().get_config(),
            "patch_size": self.patch_size,
            "embedding_dim": self.embedding_dim,
        }


@keras.saving.register_keras_serializable(package="annzoo")
class ClassToken(keras.layers.Layer):
    """Prepends a learned ``[CLS]`` vector to a sequence (BERT, ViT).

    ``(batch, T, d) -> (batch, T + 1, d)``, position 0 holding the same
    trainable vector for every sample; a classifier head reads the
    encoder's output there. A Keras mask on the input is extended with
    True for the new position.

    Args:
        initializer: initializer of the vector (zeros, as in ViT).

    Example:
        >>> images = keras.Input((32, 32, 3))
        >>> x = ClassToken()(PatchEmbedding(4, 64)(images))  # (None, 65, 64)
        >>> # ... encoder blocks, then a head on x[:, 0]
    """

    def __init__(self, initializer: Any = "zeros", **kwargs):
        super().__init__(**kwargs)
        self.initializer = keras.initializers.get(initializer)

    def build(self, input_shape):
        self.token = self.add_weight(
            shape=(input_shape[-1],), initializer=self.initializer, name="token"
        )

    def compute_output_shape(self, input_shape):
        length = None if input_shape[1] is None else input_shape[1] + 1
        return (input_shape[0], length, input_shape[-1])

    def call(self, inputs):
        dim = inputs.shape[-1]
        token = ops.cast(self.token, inputs.dtype)[None, None, :]
        token = ops.broadcast_to(token, (ops.shape(inputs)[0], 1, dim))
        return ops.concatenate([token, inputs], axis=1)

    def compute_mask(self, inputs, mask=None):
        if mask is None:
            return None
        mask = ops.cast(mask, "bool")
        first = ops.ones((ops.shape(mask)[0], 1), dtype="bool")
        return ops.concatenate([first, mask], axis=1)

    def get_config(self):
        return {
            **super().get_config(),
            "initializer": keras.initializers.serialize(self.initializer),
        }

"""Incremental (cached) inference through a causal Transformer block.

A causal block's output at position t depends only on positions <= t, so when
a sequence grows by one token the keys and values of the earlier positions do
not change: keeping them (a key/value cache) lets each new token cost one
position of work instead of the whole sequence. These functions run an
:class:`annzoo.layers.TransformerEncoderBlock` that a model calls with
``use_causal_mask=True``, reusing its own sublayers and weights, so the
cached results equal the block's full-sequence ones up to float rounding
(``tests/test_generate_text.py`` checks both).
"""

from __future__ import annotations

from typing import Any

from keras import ops

from annzoo.layers.attention import fused_attention
from annzoo.layers.transformer import TransformerEncoderBlock

__all__ = ["cached_block_step", "empty_cache"]


def empty_cache(
    block: TransformerEncoderBlock, batch: int, length: int, dtype: Any = "float32"
) -> tuple[Any, Any]:
    """Zero key and value buffers ``(batch, length, heads, key_dim)`` for ``block``.

    ``length`` is the longest sequence the cache will hold; fixed-size
    buffers keep every step's shapes the same (no recompilation per length).
    """
    shape = (batch, length, block.num_heads, block.key_dim)
    return ops.zeros(shape, dtype=dtype), ops.zeros(shape, dtype=dtype)


def cached_block_step(
    block: TransformerEncoderBlock,
    x: Any,
    cache: tuple[Any, Any],
    position: int,
) -> tuple[Any, tuple[Any, Any]]:
    """Runs ``block`` causally on new positions, reading earlier ones from ``cache``.

    Args:
        block: a built :class:`TransformerEncoderBlock` (pre- or post-norm).
        x: ``(batch, t, d)``, the block inputs at positions
            ``position .. position + t - 1`` (no padding).
        cache: ``(keys, values)`` from :func:`empty_cache` or the previous
            call, holding positions ``0 .. position - 1``.
        position: the first new position.

    Returns:
        ``(outputs, cache)``: ``(batch, t, d)``, what the block gives at those
        positions when called on the whole sequence with the causal mask, and
        the cache now holding positions ``0 .. position + t - 1``.
    """
    attention = block.self_attention
    keys, values = cache
    new = ops.shape(x)[1]
    length = ops.shape(keys)[1]

    def heads(dense, h):
        y = dense(h)
        shape = ops.shape(y)
        return ops.reshape(y, (shape[0], shape[1], attention.num_heads, -1))

    def attend(h):
        nonlocal keys, values
        start = (0, position, 0, 0)
        keys = ops.slice_update(keys, start, heads(attention.key_dense, h))
        values = ops.slice_update(values, start, heads(attention.value_dense, h))
        # Query i (at position + i) sees keys 0 .. position + i: the causal
        # mask, which also hides the buffer's unwritten tail.
        rows = ops.arange(new, dtype="int32")[:, None] + position
        cols = ops.arange(length, dtype="int32")[None, :]
        mask = ops.greater_equal(rows, cols)[None]
        out = fused_attention(heads(attention.query_dense, h), keys, values, mask)
        shape = ops.shape(out)
        return attention.output_dense(ops.reshape(out, (shape[0], shape[1], -1)))

    def feed_forward(h):
        return block.ff_outer(block.ff_inner(h))

    # The block's residual wiring (dropout is inactive at inference):
    # post-norm norm(x + f(x)), pre-norm x + f(norm(x)).
    for norm, sublayer in (
        (block.attention_norm, attend),
        (block.ff_norm, feed_forward),
    ):
        if block.norm_first:
            x = x + sublayer(norm(x))
        else:
            x = norm(x + sublayer(x))
    return x, (keys, values)

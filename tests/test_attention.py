"""Tests for annzoo.layers' attention, position-embedding and Transformer layers.

Expected values come from numpy restatements of the definitions (Vaswani et
al. 2017: softmax(Q K^T / sqrt(d_k)) V, Concat(heads) W^O, the sinusoidal
encoding; a ViT patch as one linear map), from Keras' own
``keras.layers.MultiHeadAttention`` with the same weights, or from
invariances (causality, padding), never from the layers' own output.
"""

from __future__ import annotations

import keras
import numpy as np
import pytest
from keras import ops

import annzoo  # noqa: F401  (registers the layers, as a user's import does)
from annzoo.errors import AnnzooError, UnknownNameError
from annzoo.layers import (
    ClassToken,
    MultiHeadAttention,
    PatchEmbedding,
    PositionEmbedding,
    TokenAndPositionEmbedding,
    TransformerDecoderBlock,
    TransformerEncoderBlock,
    causal_mask,
    fused_attention,
    padding_mask,
    scaled_dot_product_attention,
)

pytestmark = pytest.mark.jax

RNG = np.random.default_rng(0)


def _np(x):
    return np.asarray(ops.convert_to_numpy(x))


def _normal(*shape):
    return RNG.normal(size=shape).astype("float32")


def np_attention(q, k, v, mask=None):
    """softmax(Q K^T / sqrt(d_k)) V in float64; fully masked rows -> 0."""
    q, k, v = (np.asarray(a, "float64") for a in (q, k, v))
    scores = q @ np.swapaxes(k, -1, -2) / np.sqrt(q.shape[-1])
    if mask is not None:
        scores = np.where(np.broadcast_to(mask, scores.shape), scores, -np.inf)
    top = scores.max(axis=-1, keepdims=True)
    exp = np.exp(scores - np.where(np.isfinite(top), top, 0.0))
    total = exp.sum(axis=-1, keepdims=True)
    weights = np.divide(exp, total, out=np.zeros_like(exp), where=total > 0)
    return weights @ v, weights


# --- scaled_dot_product_attention and the mask helpers -----------------------


def test_mask_helpers():
    expected = np.array([[1, 0, 0], [1, 1, 0], [1, 1, 1]], bool)
    np.testing.assert_array_equal(_np(causal_mask(3)), expected)
    np.testing.assert_array_equal(_np(causal_mask(2, 3)), expected[:2])
    ids = np.array([[4, 9, 0, 0], [7, 0, 0, 0]])
    mask = _np(padding_mask(ids))
    assert mask.shape == (2, 1, 4) and mask.dtype == bool
    np.testing.assert_array_equal(mask[:, 0], ids != 0)
    np.testing.assert_array_equal(_np(padding_mask(ids, pad_id=7))[1, 0], ids[1] != 7)


@pytest.mark.parametrize("masking", [None, "padding", "causal", "padding+causal"])
@pytest.mark.parametrize("shape", [(2,), (2, 3)], ids=["batch", "batch-heads"])
def test_scaled_dot_product_attention_matches_numpy(masking, shape):
    t, d_k, d_v = 5, 4, 3
    q, k, v = _normal(*shape, t, d_k), _normal(*shape, t, d_k), _normal(*shape, t, d_v)
    lengths = np.array([5, 2])  # the second sequence has 3 padded positions
    keys = np.arange(t)[None, :] < lengths[:, None]  # (batch, T_k)
    if len(shape) == 2:
        keys = keys[:, None, :]  # broadcast over the heads
    mask = None
    if masking and "padding" in masking:
        mask = keys[..., None, :]  # (..., 1, T_k)
    if masking and "causal" in masking:
        tri = np.tril(np.ones((t, t), bool))
        mask = tri if mask is None else mask & tri
    out, weights = scaled_dot_product_attention(q, k, v, mask, return_weights=True)
    expected_out, expected_weights = np_attention(q, k, v, mask)
    np.testing.assert_allclose(_np(out), expected_out, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(_np(weights), expected_weights, rtol=1e-5, atol=1e-6)
    weights = _np(weights)
    np.testing.assert_allclose(weights.sum(-1), 1.0, rtol=1e-5)
    if mask is not None:
        assert np.all(weights[~np.broadcast_to(mask, weights.shape)] == 0.0)
    # Without return_weights it returns the output alone.
    np.testing.assert_allclose(
        _np(scaled_dot_product_attention(q, k, v, mask)), _np(out), rtol=1e-6
    )


def test_fully_masked_rows_give_zero_weights_and_output_not_nan():
    q, k, v = _normal(2, 3, 4), _normal(2, 5, 4), _normal(2, 5, 6)
    mask = np.ones((2, 3, 5), bool)
    mask[0, 1] = False  # query 1 of sample 0 sees nothing
    mask[1] = False  # sample 1 sees nothing at all
    out, weights = scaled_dot_product_attention(q, k, v, mask, return_weights=True)
    out, weights = _np(out), _np(weights)
    assert np.isfinite(out).all() and np.isfinite(weights).all()
    assert np.all(weights[0, 1] == 0) and np.all(out[0, 1] == 0)
    assert np.all(weights[1] == 0) and np.all(out[1] == 0)
    expected_out, _ = np_attention(q[0, [0, 2]], k[0], v[0])
    np.testing.assert_allclose(out[0, [0, 2]], expected_out, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    "masking", [None, "padding", "causal", "padding+causal", "empty rows"]
)
def test_fused_attention_matches_numpy(masking):
    # (batch, T, heads, depth) in and out; cross-attention: T_q=4, T_k=6.
    b, t_q, t_k, h, d = 2, 4, 6, 3, 5
    q, k, v = _normal(b, t_q, h, d), _normal(b, t_k, h, d), _normal(b, t_k, h, d)
    mask, causal = None, "causal" in (masking or "")
    if masking and "padding" in masking:
        mask = np.broadcast_to(
            (np.arange(t_k) < np.array([[6], [2]]))[:, None], (b, t_q, t_k)
        )
    if masking == "empty rows":
        mask = RNG.random((b, t_q, t_k)) < 0.6
        mask[0, 1] = False  # query 1 of sample 0 sees nothing
        mask[1] = False  # sample 1 sees nothing at all
    out = _np(fused_attention(q, k, v, mask, causal=causal))
    full = np.ones((b, t_q, t_k), bool) if mask is None else mask.copy()
    if causal:
        full &= np.tril(np.ones((t_q, t_k), bool))
    # numpy on (batch, heads, T, depth), the mask shared by the heads
    expected, _ = np_attention(
        *(np.swapaxes(a, 1, 2) for a in (q, k, v)), full[:, None]
    )
    assert np.isfinite(out).all()
    np.testing.assert_allclose(out, np.swapaxes(expected, 1, 2), rtol=1e-5, atol=1e-5)
    if masking == "empty rows":
        assert np.all(out[0, 1] == 0) and np.all(out[1] == 0)


@pytest.mark.parametrize("training", [False, True])
def test_multi_head_attention_fused_path_matches_numpy(training):
    # No weights returned and no attention dropout: the fused path; a padded
    # query and a sample whose keys are all padded get zero attention.
    layer = MultiHeadAttention(num_heads=2, key_dim=3, output_dim=5)
    query, value = _normal(2, 4, 6), _normal(2, 5, 7)
    query_mask = np.array([[1, 1, 1, 0], [1, 1, 1, 1]], bool)
    value_mask = np.array([[1, 1, 0, 1, 0], [0, 0, 0, 0, 0]], bool)
    out = layer(
        query, value, query_mask=query_mask, value_mask=value_mask, training=training
    )
    mask = query_mask[:, :, None] & value_mask[:, None, :]
    expected, _ = np_multi_head(layer, query, value, value, mask)
    np.testing.assert_allclose(_np(out), expected, rtol=1e-4, atol=1e-5)
    unfused, _ = layer(
        query,
        value,
        query_mask=query_mask,
        value_mask=value_mask,
        return_attention_scores=True,
    )
    np.testing.assert_allclose(_np(out), _np(unfused), rtol=1e-5, atol=1e-6)


@pytest.mark.filterwarnings("ignore:Layer .flatten.*mask:UserWarning")
def test_training_with_an_all_padding_sequence_stays_finite():
    # A fully padded sample in the batch: its rows are masked everywhere, and
    # neither the loss nor any weight may turn NaN through the fused attention.
    keras.utils.set_random_seed(5)
    tokens = keras.Input((6,), dtype="int32")
    x = TokenAndPositionEmbedding(20, 6, 8)(tokens)
    x = TransformerEncoderBlock(2, 4, 16, dropout=0.0)(x)
    x = keras.layers.Flatten()(x)  # (a masked mean of nothing would be NaN)
    model = keras.Model(tokens, keras.layers.Dense(1)(x))
    model.compile(optimizer="sgd", loss="mse")
    ids = np.array([[3, 5, 7, 0, 0, 0], [0, 0, 0, 0, 0, 0]])
    loss = model.train_on_batch(ids, np.array([[1.0], [0.0]]))
    assert np.isfinite(loss)
    assert all(np.isfinite(_np(w)).all() for w in model.weights)


# --- MultiHeadAttention -------------------------------------------------------


def np_multi_head(layer, query, value, key, mask=None):
    """Concat(head_1..head_h) W^O + b^O, head_i from the layer's weights."""
    wq, bq, wk, bk, wv, bv, wo, bo = (
        np.asarray(w, "float64") for w in layer.get_weights()
    )
    h, d_k = layer.num_heads, layer.key_dim
    d_v = layer.value_dim or d_k
    q, k, v = query @ wq + bq, key @ wk + bk, value @ wv + bv
    heads = [
        np_attention(
            q[..., i * d_k : (i + 1) * d_k],
            k[..., i * d_k : (i + 1) * d_k],
            v[..., i * d_v : (i + 1) * d_v],
            mask,
        )
        for i in range(h)
    ]
    concat = np.concatenate([out for out, _ in heads], axis=-1)
    return concat @ wo + bo, np.stack([w for _, w in heads], axis=1)


def test_multi_head_attention_matches_numpy():
    layer = MultiHeadAttention(num_heads=3, key_dim=4, value_dim=5, output_dim=7)
    query, value, key = _normal(2, 4, 6), _normal(2, 5, 8), _normal(2, 5, 9)
    mask = RNG.random((2, 4, 5)) < 0.7
    mask[:, :, 0] = True  # every query sees at least one key
    out, scores = layer(
        query, value, key, attention_mask=mask, return_attention_scores=True
    )
    expected, expected_scores = np_multi_head(layer, query, value, key, mask)
    assert _np(out).shape == (2, 4, 7) and _np(scores).shape == (2, 3, 4, 5)
    np.testing.assert_allclose(_np(out), expected, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(_np(scores), expected_scores, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize(
    "kwargs, shapes",
    [
        (dict(num_heads=2, key_dim=8), [(3, 16), (3, 16)]),
        (
            dict(num_heads=4, key_dim=2, value_dim=3, output_dim=6, use_bias=False),
            [(3, 8), (4, 5), (4, 7)],
        ),
    ],
)
def test_multi_head_attention_param_count_equals_keras(kwargs, shapes):
    ours = MultiHeadAttention(**kwargs)
    theirs_kwargs = dict(kwargs)
    if "output_dim" in theirs_kwargs:  # Keras calls it output_shape
        theirs_kwargs["output_shape"] = theirs_kwargs.pop("output_dim")
    theirs = keras.layers.MultiHeadAttention(**theirs_kwargs)
    shapes = [(2, *shape) for shape in shapes]
    ours.build(*shapes)
    theirs.build(*shapes)
    assert ours.count_params() == theirs.count_params() > 0


def test_multi_head_attention_equals_keras_with_the_same_weights():
    kwargs = dict(num_heads=3, key_dim=4, value_dim=6)
    ours = MultiHeadAttention(**kwargs, output_dim=10)
    theirs = keras.layers.MultiHeadAttention(**kwargs, output_shape=10)
    query, value, key = _normal(2, 3, 12), _normal(2, 5, 7), _normal(2, 5, 9)
    ours.build(query.shape, value.shape, key.shape)
    theirs.build(query.shape, value.shape, key.shape)
    assert ours.count_params() == theirs.count_params()
    # Keras stores W_i^Q as kernel[:, i, :] of a (features, heads, depth) array;
    # ours is the (features, heads * depth) matrix of the same numbers.
    theirs.set_weights(
        [
            w.reshape(t.shape)
            for w, t in zip(ours.get_weights(), theirs.weights, strict=True)
        ]
    )
    # return_attention_scores=True keeps Keras on its explicit einsum path:
    # its fused path fails on JAX when value_dim != key_dim (Keras 3.15.1).
    for causal in (False, True):
        out, scores = ours(
            query, value, key, use_causal_mask=causal, return_attention_scores=True
        )
        expected, expected_scores = theirs(
            query, value, key, use_causal_mask=causal, return_attention_scores=True
        )
        np.testing.assert_allclose(_np(out), _np(expected), rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(
            _np(scores), _np(expected_scores), rtol=1e-4, atol=1e-6
        )


def test_multi_head_attention_causal_mask():
    layer = MultiHeadAttention(num_heads=2, key_dim=4)
    x = _normal(1, 6, 8)
    base = _np(layer(x, x, use_causal_mask=True))
    for t in range(5):
        changed = x.copy()
        changed[:, t + 1 :] = _normal(1, 5 - t, 8)
        out = _np(layer(changed, changed, use_causal_mask=True))
        np.testing.assert_allclose(out[:, : t + 1], base[:, : t + 1], atol=1e-6)
        assert not np.allclose(out[:, t + 1 :], base[:, t + 1 :], atol=1e-3)


def _set_pad_embedding(embedding, values):
    table = _np(embedding.embeddings).copy()
    table[0] = values
    embedding.embeddings.assign(table)


@pytest.mark.parametrize("mask_zero", [True, False])
def test_multi_head_attention_honours_embedding_padding_mask(mask_zero):
    keras.utils.set_random_seed(1)
    tokens = keras.Input((None,), dtype="int32")
    embedding = keras.layers.Embedding(20, 8, mask_zero=mask_zero)
    x = embedding(tokens)
    model = keras.Model(tokens, MultiHeadAttention(num_heads=2, key_dim=4)(x, x))
    ids = np.array([[3, 5, 7, 0, 0], [2, 4, 6, 8, 9]])
    before = _np(model(ids))
    _set_pad_embedding(embedding, _normal(8) * 5)
    after = _np(model(ids))
    np.testing.assert_allclose(after[1], before[1], atol=1e-6)  # no padding
    if mask_zero:
        np.testing.assert_allclose(after[0, :3], before[0, :3], atol=1e-6)
    else:  # the same check without the mask fails: the test has teeth
        assert not np.allclose(after[0, :3], before[0, :3], atol=1e-3)


# --- position embeddings ------------------------------------------------------


@pytest.mark.parametrize("dim", [6, 5])
def test_sinusoidal_position_embedding_is_the_formula(dim):
    layer = PositionEmbedding(10, dim, kind="sinusoidal")
    out = _np(layer(np.zeros((2, 7, 3), "float32")))
    pos = np.arange(7)[:, None]
    i = np.arange(dim)[None, :] // 2
    angle = pos / 10000.0 ** (2 * i / dim)
    expected = np.where(np.arange(dim) % 2 == 0, np.sin(angle), np.cos(angle))
    assert out.shape == (2, 7, dim)
    np.testing.assert_allclose(out[0], expected, atol=2e-6)
    np.testing.assert_array_equal(out[0], out[1])
    assert layer.weights == [] and layer.count_params() == 0


def test_learned_position_embedding():
    layer = PositionEmbedding(10, 4)
    out = _np(layer(np.zeros((3, 6), "int32")))
    assert layer.count_params() == 10 * 4 and len(layer.trainable_weights) == 1
    table = _np(layer.embeddings)
    np.testing.assert_array_equal(out, np.broadcast_to(table[:6], (3, 6, 4)))
    with pytest.raises(AnnzooError, match="sequence_length"):
        PositionEmbedding(4, 4)(np.zeros((1, 6), "int32"))


@pytest.mark.parametrize("kind", ["learned", "sinusoidal"])
def test_token_and_position_embedding_values_and_mask(kind):
    layer = TokenAndPositionEmbedding(30, 8, 6, kind=kind)
    ids = np.array([[4, 9, 2, 0, 0], [7, 1, 0, 0, 0]])
    out = _np(layer(ids))
    positions = _np(layer.position_embedding(np.zeros((1, 5, 6), "float32")))[0]
    expected = _np(layer.token_embedding.embeddings)[ids] + positions
    np.testing.assert_allclose(out, expected, rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(_np(layer.compute_mask(ids)), ids != 0)
    assert (
        TokenAndPositionEmbedding(30, 8, 6, mask_zero=False).compute_mask(ids) is None
    )
    # Downstream, a mask-aware layer sees the mask: the mean runs over tokens.
    tokens = keras.Input((None,), dtype="int32")
    pooled = keras.layers.GlobalAveragePooling1D()(layer(tokens))
    lengths = (ids != 0).sum(1, keepdims=True)
    expected_mean = (expected * (ids != 0)[..., None]).sum(1) / lengths
    np.testing.assert_allclose(
        _np(keras.Model(tokens, pooled)(ids)), expected_mean, rtol=1e-5, atol=1e-6
    )


# --- Transformer blocks -------------------------------------------------------

D, HEADS, KEY_DIM, FF = 16, 2, 8, 32
MHA_PARAMS = 4 * D * D + 4 * D
FFN_PARAMS = D * FF + FF + FF * D + D


def _encoder_model(**block_kwargs):
    tokens = keras.Input((None,), dtype="int32", name="tokens")
    embed = TokenAndPositionEmbedding(20, 12, D, name="embed")
    block = TransformerEncoderBlock(HEADS, KEY_DIM, FF, **block_kwargs)
    return keras.Model(tokens, block(embed(tokens))), embed, block


@pytest.mark.parametrize("norm_first", [False, True])
def test_encoder_block_shape_params_and_padding(norm_first):
    keras.utils.set_random_seed(2)
    model, embed, block = _encoder_model(norm_first=norm_first)
    assert block.count_params() == MHA_PARAMS + FFN_PARAMS + 2 * 2 * D
    ids = np.array([[3, 5, 7, 0, 0, 0], [2, 4, 6, 8, 9, 1]])
    before = _np(model(ids))
    assert before.shape == (2, 6, D)
    if not norm_first:  # post-norm: each position ends in a LayerNorm
        np.testing.assert_allclose(before.mean(-1), 0.0, atol=1e-5)
        np.testing.assert_allclose(before.std(-1), 1.0, atol=1e-2)
    _set_pad_embedding(embed.token_embedding, _normal(D) * 5)
    after = _np(model(ids))
    np.testing.assert_allclose(after[0, :3], before[0, :3], atol=1e-5)
    np.testing.assert_allclose(after[1], before[1], atol=1e-5)


def test_attention_dropout_is_its_own_rate_and_off_by_default():
    keras.utils.set_random_seed(4)
    ids = np.array([[3, 5, 7, 2, 1]])
    model, _, block = _encoder_model(dropout=0.0)
    assert block.attention_rate == 0.0
    np.testing.assert_allclose(
        _np(model(ids, training=True)), _np(model(ids)), rtol=1e-6, atol=1e-6
    )
    model, _, block = _encoder_model(dropout=0.0, attention_dropout=0.5)
    assert block.self_attention.dropout == 0.5
    assert not np.allclose(_np(model(ids, training=True)), _np(model(ids)), atol=1e-3)


def test_encoder_block_dropout_only_in_training():
    keras.utils.set_random_seed(3)
    model, _, _ = _encoder_model(dropout=0.5)
    ids = np.array([[3, 5, 7, 2, 1]])
    first = _np(model(ids))
    np.testing.assert_array_equal(_np(model(ids, training=False)), first)
    np.testing.assert_array_equal(_np(model(ids)), first)
    assert not np.allclose(_np(model(ids, training=True)), first, atol=1e-3)


def _seq2seq_model():
    source = keras.Input((None,), dtype="int32", name="source")
    target = keras.Input((None,), dtype="int32", name="target")
    source_embed = TokenAndPositionEmbedding(20, 12, D, name="source_embed")
    target_embed = TokenAndPositionEmbedding(20, 12, D, name="target_embed")
    encoded = TransformerEncoderBlock(HEADS, KEY_DIM, FF)(source_embed(source))
    decoder = TransformerDecoderBlock(HEADS, KEY_DIM, FF)
    outputs = decoder(target_embed(target), encoded)
    model = keras.Model([source, target], outputs)
    return model, source_embed, decoder


def test_decoder_block_causal_and_padding():
    keras.utils.set_random_seed(4)
    model, source_embed, decoder = _seq2seq_model()
    assert decoder.count_params() == 2 * MHA_PARAMS + FFN_PARAMS + 3 * 2 * D
    source = np.array([[4, 6, 8, 0, 0], [1, 2, 3, 4, 5]])
    target = np.array([[3, 5, 7, 9, 0, 0, 0], [2, 4, 6, 8, 1, 3, 5]])
    before = _np(model([source, target]))
    assert before.shape == (2, 7, D)
    for t in range(1, 7):  # a new token at t changes nothing before t
        changed = target.copy()
        changed[:, t] = 11
        out = _np(model([source, changed]))
        np.testing.assert_allclose(out[:, :t], before[:, :t], atol=1e-5)
        assert not np.allclose(out[:, t], before[:, t], atol=1e-3)
    # The encoder's padding is masked out of the cross-attention.
    _set_pad_embedding(source_embed.token_embedding, _normal(D) * 5)
    np.testing.assert_allclose(_np(model([source, target])), before, atol=1e-5)


# --- ViT layers ---------------------------------------------------------------


@pytest.mark.parametrize("patch", [4, (4, 3)])
def test_patch_embedding_is_the_conv_of_each_patch(patch):
    layer = PatchEmbedding(patch, 5)
    images = _normal(2, 8, 12, 3)
    out = _np(layer(images))
    ph, pw = (patch, patch) if isinstance(patch, int) else patch
    rows, cols = 8 // ph, 12 // pw
    assert out.shape == (2, rows * cols, 5)
    kernel, bias = layer.projection.get_weights()  # (ph, pw, 3, 5), (5,)
    for k in range(rows * cols):
        r, c = divmod(k, cols)
        pixels = images[:, r * ph : (r + 1) * ph, c * pw : (c + 1) * pw, :]
        expected = pixels.reshape(2, -1) @ kernel.reshape(-1, 5) + bias
        np.testing.assert_allclose(out[:, k], expected, rtol=1e-4, atol=1e-5)
    with pytest.raises(AnnzooError, match="multiple of `patch_size`"):
        PatchEmbedding(5, 4)(_normal(1, 8, 8, 3))


def test_class_token_prepends_a_learned_vector_and_extends_the_mask():
    layer = ClassToken()
    x = _normal(2, 3, 4)
    out = _np(layer(x))
    vector = _normal(4)
    layer.set_weights([vector])
    out = _np(layer(x))
    assert out.shape == (2, 4, 4) and layer.count_params() == 4
    np.testing.assert_array_equal(out[:, 0], np.broadcast_to(vector, (2, 4)))
    np.testing.assert_array_equal(out[:, 1:], x)
    mask = np.array([[True, True, False], [True, False, False]])
    np.testing.assert_array_equal(
        _np(layer.compute_mask(x, mask)), np.concatenate([[[1], [1]], mask], 1)
    )


# --- errors, configs, saving --------------------------------------------------


def test_invalid_arguments_name_the_argument():
    with pytest.raises(AnnzooError, match="num_heads"):
        MultiHeadAttention(0, 8)
    with pytest.raises(AnnzooError, match=r"dropout.*Received: dropout=1\.5"):
        TransformerEncoderBlock(2, 8, 32, dropout=1.5)
    with pytest.raises(AnnzooError, match=r"attention_dropout.*Received: attention_d"):
        TransformerDecoderBlock(2, 8, 32, attention_dropout=-0.1)
    with pytest.raises(UnknownNameError, match="Did you mean 'learned'"):
        PositionEmbedding(8, 4, kind="lerned")
    with pytest.raises(AnnzooError, match="patch_size"):
        PatchEmbedding((4, 0), 8)


CONFIG_LAYERS = [
    MultiHeadAttention(3, 4, value_dim=5, dropout=0.1, use_bias=False, output_dim=6),
    PositionEmbedding(9, 4, kind="sinusoidal"),
    TokenAndPositionEmbedding(30, 8, 6, kind="sinusoidal", mask_zero=False),
    TransformerEncoderBlock(
        2, 8, 32, dropout=0.2, activation="gelu", norm_first=True, attention_dropout=0.1
    ),
    TransformerDecoderBlock(2, 8, 32, dropout=0.0, epsilon=1e-5),
    PatchEmbedding((4, 2), 8),
    ClassToken(initializer="ones"),
]


@pytest.mark.parametrize("layer", CONFIG_LAYERS, ids=lambda layer: type(layer).__name__)
def test_get_config_round_trips(layer):
    config = layer.get_config()
    clone = type(layer).from_config(config)
    assert clone.get_config() == config
    # The registered name resolves without custom_objects.
    serialized = keras.saving.serialize_keras_object(layer)
    assert serialized["registered_name"] == f"annzoo>{type(layer).__name__}"
    assert type(keras.saving.deserialize_keras_object(serialized)) is type(layer)


def _save_models():
    """Small functional models; between them they use every layer."""
    keras.utils.set_random_seed(5)
    tokens = keras.Input((6,), dtype="int32")
    x = TokenAndPositionEmbedding(20, 8, D, kind="sinusoidal")(tokens)
    x = keras.layers.Add()([x, PositionEmbedding(8, D)(x)])
    encoded = TransformerEncoderBlock(HEADS, KEY_DIM, FF, norm_first=True)(x)
    x = TransformerDecoderBlock(HEADS, KEY_DIM, FF)(x, encoded)
    x = MultiHeadAttention(HEADS, KEY_DIM, output_dim=3)(x, encoded)
    text = keras.Model(tokens, x, name="text")
    images = keras.Input((8, 8, 3))
    x = ClassToken(initializer="random_normal")(PatchEmbedding(4, D)(images))
    x = TransformerEncoderBlock(HEADS, KEY_DIM, FF)(x)
    vision = keras.Model(images, x, name="vision")
    ids = np.array([[3, 5, 7, 0, 0, 0], [2, 4, 6, 8, 9, 1]], "int32")
    return [(text, ids), (vision, _normal(2, 8, 8, 3))]


@pytest.mark.slow
def test_save_and_reload_in_a_fresh_process(tmp_path, reloader):
    for model, inputs in _save_models():
        expected = _np(model(inputs, training=False))
        path = tmp_path / f"{model.name}.keras"
        model.save(path)
        # In this process too: plain load_model, no custom_objects.
        loaded = keras.saving.load_model(path)
        np.testing.assert_array_equal(_np(loaded(inputs, training=False)), expected)
        assert [type(layer) for layer in loaded.layers] == [
            type(layer) for layer in model.layers
        ]
        np.save(tmp_path / "x.npy", inputs)
        reloader.predict(path, tmp_path / "x.npy", tmp_path / "y.npy")
        np.testing.assert_allclose(
            np.load(tmp_path / "y.npy"), expected, rtol=1e-6, atol=1e-6
        )

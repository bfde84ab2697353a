"""The transformer family: parameter counts by formula, masks, causality, learning."""

from __future__ import annotations

import keras
import numpy as np
import pytest

import annzoo
from annzoo.errors import AnnzooError
from annzoo.models import build_transformer


def _predict(model, x):
    return keras.ops.convert_to_numpy(model(x, training=False))


# -- parameter counts, by formulas written here --------------------------------


def _dense(n_in, n_out):
    return n_in * n_out + n_out


def _attention(d, heads, key_dim):
    # query, key, value projections to heads * key_dim, output back to d.
    return 3 * _dense(d, heads * key_dim) + _dense(heads * key_dim, d)


def _feed_forward(d, ff):
    return _dense(d, ff) + _dense(ff, d)


def _encoder_layer(d, heads, key_dim, ff):
    return _attention(d, heads, key_dim) + _feed_forward(d, ff) + 2 * (2 * d)


def _decoder_layer(d, heads, key_dim, ff):
    return 2 * _attention(d, heads, key_dim) + _feed_forward(d, ff) + 3 * (2 * d)


def test_keras_io_classifier_count():
    # keras.io/examples/nlp/text_classification_with_transformer: vocab 20000,
    # maxlen 200, embed 32, 2 heads with key_dim=embed_dim, ff 32, one block,
    # then Dense(20, relu) and Dense(2, softmax).
    formula = (
        20_000 * 32
        + 200 * 32
        + _encoder_layer(32, 2, 32, 32)
        + _dense(32, 20)
        + _dense(20, 2)
    )
    assert formula == 657_758

    # The example's architecture, rebuilt with plain Keras layers.
    class TokenAndPosition(keras.layers.Layer):  # as in the example
        def __init__(self):
            super().__init__()
            self.tokens = keras.layers.Embedding(20_000, 32)
            self.positions = keras.layers.Embedding(200, 32)

        def call(self, x):
            return self.tokens(x) + self.positions(keras.ops.arange(200))

    inputs = keras.Input((200,), dtype="int32")
    x = TokenAndPosition()(inputs)
    attention = keras.layers.MultiHeadAttention(num_heads=2, key_dim=32)(x, x)
    x = keras.layers.LayerNormalization(epsilon=1e-6)(x + attention)
    ffn = keras.layers.Dense(32)(keras.layers.Dense(32, activation="relu")(x))
    x = keras.layers.LayerNormalization(epsilon=1e-6)(x + ffn)
    x = keras.layers.GlobalAveragePooling1D()(x)
    x = keras.layers.Dense(20, activation="relu")(keras.layers.Dropout(0.1)(x))
    outputs = keras.layers.Dense(2, activation="softmax")(x)
    plain = keras.Model(inputs, outputs)
    assert plain.count_params() == formula

    model = annzoo.create_model("transformer_classifier", compile=False)
    assert model.count_params() == formula
    assert annzoo.model_info("transformer_classifier").reference.params == formula


def test_transformer_base_count():
    d, heads, ff, vocab = 512, 8, 2048, 8000
    formula = (
        vocab * d  # source embedding (positions are sinusoidal: no weights)
        + vocab * d  # target embedding
        + 6 * _encoder_layer(d, heads, d // heads, ff)
        + 6 * _decoder_layer(d, heads, d // heads, ff)
        + _dense(d, vocab)  # output projection, untied
    )
    model = annzoo.create_model("transformer_base", compile=False)
    assert model.count_params() == formula == 56_434_496
    assert annzoo.model_info("transformer_base").reference.params == formula
    assert model.output_shape == (None, 64, 8000)


def test_vit_b16_count():
    d, patches = 768, (224 // 16) ** 2
    formula = (
        _dense(16 * 16 * 3, d)  # patch projection (a conv with bias)
        + d  # class token
        + (patches + 1) * d  # position embeddings
        + 12 * _encoder_layer(d, 12, 64, 3072)
        + 2 * d  # final LayerNorm
        + _dense(d, 1000)
    )
    # torchvision.models.vit_b_16 (ViT_B_16_Weights.IMAGENET1K_V1): num_params.
    assert formula == 86_567_656
    model = annzoo.create_model("vit_b16", compile=False)
    trainable = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
    assert trainable == model.count_params() == formula


# -- encoder classifier --------------------------------------------------------


def _tiny_encoder(sequence_length, **kwargs):
    options = dict(
        vocabulary_size=20,
        sequence_length=sequence_length,
        num_classes=3,
        d_model=16,
        num_heads=2,
        ff_dim=16,
        num_layers=2,
        hidden_units=(8,),
        compile=False,
    )
    return build_transformer("encoder", **{**options, **kwargs})


def _copy_weights(source, target):
    """Copies weights by position, truncating longer position tables."""
    for s, t in zip(source.weights, target.weights, strict=True):
        value = keras.ops.convert_to_numpy(s)
        t.assign(value[: t.shape[0]] if tuple(s.shape) != tuple(t.shape) else value)


def test_encoder_padding_invariance_and_probabilities():
    keras.utils.set_random_seed(1)
    long = _tiny_encoder(12)
    short = _tiny_encoder(6)
    _copy_weights(long, short)
    rng = np.random.default_rng(0)
    x = np.zeros((4, 12), dtype="int32")
    for i, n in enumerate([1, 3, 5, 6]):
        x[i, :n] = rng.integers(1, 20, n)
    p_long = _predict(long, x)
    p_short = _predict(short, x[:, :6])
    np.testing.assert_allclose(p_long, p_short, atol=1e-5)
    np.testing.assert_allclose(p_long.sum(axis=-1), 1.0, rtol=1e-5)
    # Sanity: the tokens do matter.
    x2 = x.copy()
    x2[:, 0] = x2[:, 0] % 19 + 1
    assert not np.allclose(_predict(long, x2), p_long, atol=1e-5)


def test_encoder_learns_a_separable_token_task():
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    n, length = 384, 10
    labels = rng.integers(0, 2, n)
    x = np.zeros((n, length), dtype="int32")
    for i in range(n):
        count = rng.integers(2, length + 1)
        low = 2 if labels[i] == 0 else 10
        x[i, :count] = rng.integers(low, low + 8, count)
    model = _tiny_encoder(
        length,
        num_classes=2,
        num_layers=1,
        compile=dict(learning_rate=3e-3),
    )
    model.fit(x[:256], labels[:256], epochs=8, batch_size=32, verbose=0)
    _, accuracy = model.evaluate(x[256:], labels[256:], verbose=0)
    assert accuracy > 0.9


# -- translator ----------------------------------------------------------------


def _tiny_translator(source_length=8, **kwargs):
    options = dict(
        vocabulary_size=13,
        target_vocabulary_size=11,
        sequence_length=source_length,
        target_sequence_length=6,
        d_model=16,
        num_heads=2,
        ff_dim=32,
        num_layers=1,
        decoder_layers=2,
        compile=False,
    )
    return build_transformer("encoder_decoder", **{**options, **kwargs})


def test_translator_shape_and_causality():
    keras.utils.set_random_seed(2)
    model = _tiny_translator()
    assert model.output_shape == (None, 6, 11)
    info = annzoo.model_info("transformer_base")
    assert info.output_shape == (64, 8000)
    rng = np.random.default_rng(0)
    source = rng.integers(1, 13, (3, 8)).astype("int32")
    target = rng.integers(1, 11, (3, 6)).astype("int32")
    base = _predict(model, {"encoder_tokens": source, "decoder_tokens": target})
    np.testing.assert_allclose(base.sum(axis=-1), 1.0, rtol=1e-5)
    for t in range(5):
        changed = target.copy()
        changed[:, t + 1 :] = changed[:, t + 1 :] % 10 + 1
        out = _predict(model, {"encoder_tokens": source, "decoder_tokens": changed})
        np.testing.assert_allclose(out[:, : t + 1], base[:, : t + 1], atol=1e-5)
        assert not np.allclose(out[:, t + 1 :], base[:, t + 1 :], atol=1e-5)


def test_translator_encoder_padding_invariance():
    keras.utils.set_random_seed(3)
    long = _tiny_translator(source_length=10)
    short = _tiny_translator(source_length=5)
    _copy_weights(long, short)
    rng = np.random.default_rng(1)
    source = np.zeros((2, 10), dtype="int32")
    source[0, :5] = rng.integers(1, 13, 5)
    source[1, :2] = rng.integers(1, 13, 2)
    target = rng.integers(1, 11, (2, 6)).astype("int32")
    p_long = _predict(long, {"encoder_tokens": source, "decoder_tokens": target})
    p_short = _predict(
        short, {"encoder_tokens": source[:, :5], "decoder_tokens": target}
    )
    np.testing.assert_allclose(p_long, p_short, atol=1e-5)


def test_translator_learns_to_reverse():
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    n, length, start = 1024, 5, 1
    source = rng.integers(2, 11, (n, length)).astype("int32")
    target = source[:, ::-1]
    decoder_in = np.concatenate(
        [np.full((n, 1), start, "int32"), target[:, :-1]], axis=1
    )
    model = _tiny_translator(
        source_length=length,
        vocabulary_size=11,
        target_sequence_length=length,
        d_model=32,
        ff_dim=64,
        decoder_layers=1,
        dropout=0.0,
        compile=dict(learning_rate=3e-3),
    )
    inputs = {"encoder_tokens": source, "decoder_tokens": decoder_in}
    history = model.fit(inputs, target, epochs=12, batch_size=64, verbose=0)
    losses = history.history["loss"]
    assert losses[-1] < 0.3 * losses[0], losses


# -- ViT -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("input_shape", "patch_size", "num_patches"),
    [((32, 32, 3), 8, 16), ((32, 32, 1), 8, 16), ((24, 16, 1), (8, 4), 12)],
)
def test_vit_patches_and_shapes(input_shape, patch_size, num_patches):
    model = build_transformer(
        "vit",
        input_shape=input_shape,
        patch_size=patch_size,
        num_classes=5,
        d_model=16,
        num_heads=2,
        ff_dim=32,
        num_layers=1,
        compile=False,
    )
    assert model.get_layer("patch_embedding").output.shape == (None, num_patches, 16)
    assert model.get_layer("position_embedding").embeddings.shape == (
        num_patches + 1,
        16,
    )
    assert model.output_shape == (None, 5)
    images = np.random.default_rng(0).random((2, *input_shape), dtype=np.float32)
    probabilities = _predict(model, images)
    np.testing.assert_allclose(probabilities.sum(axis=-1), 1.0, rtol=1e-5)


def test_vit_head_reads_only_the_class_token():
    # Pre-norm blocks with one layer: the head sees the [CLS] output, which
    # still depends on every patch through attention.
    keras.utils.set_random_seed(4)
    model = build_transformer(
        "vit",
        input_shape=(8, 8, 1),
        patch_size=4,
        num_classes=3,
        d_model=8,
        num_heads=2,
        ff_dim=8,
        num_layers=1,
        dropout=0.0,
        compile=False,
    )
    images = np.random.default_rng(0).random((1, 8, 8, 1), dtype=np.float32)
    changed = images.copy()
    changed[0, 4:, 4:] += 1.0  # only the last patch
    assert not np.allclose(_predict(model, images), _predict(model, changed))


# -- arguments -----------------------------------------------------------------

_TEXT = dict(vocabulary_size=10, sequence_length=4, num_classes=2)
_VIT = dict(input_shape=(8, 8, 1), patch_size=4, num_classes=2)


@pytest.mark.parametrize(
    ("variant", "arguments", "argument"),
    [
        ("encoder", dict(_TEXT, d_model=10, num_heads=3), "d_model"),
        ("decoder", _TEXT, "variant"),
        ("vit", dict(_VIT, patch_size=3), "patch_size"),
        ("vit", dict(_VIT, patch_size=None), "patch_size"),
        ("encoder", dict(_TEXT, num_layers=0), "num_layers"),
        ("encoder", dict(_TEXT, dropout=1.0), "dropout"),
        ("encoder", dict(_TEXT, num_classes=1), "num_classes"),
        ("encoder", dict(vocabulary_size=10, num_classes=2), "sequence_length"),
        ("encoder", dict(_TEXT, patch_size=4), "patch_size"),
        ("vit", dict(_VIT, vocabulary_size=10), "vocabulary_size"),
        ("vit", dict(_VIT, input_shape=(8, 8)), "input_shape"),
        (
            "encoder_decoder",
            dict(vocabulary_size=10, sequence_length=4, decoder_layers=0),
            "decoder_layers",
        ),
        ("encoder_decoder", dict(_TEXT), "num_classes"),
        (
            "encoder_decoder",
            dict(vocabulary_size=10, sequence_length=4, task="binary"),
            "task",
        ),
        ("encoder", dict(_TEXT, task="sequence"), "task"),
        ("encoder", dict(_TEXT, position="rotary"), "position"),
        ("encoder", dict(_TEXT, compile="yes"), "compile"),
    ],
)
def test_bad_arguments_name_the_argument(variant, arguments, argument):
    with pytest.raises(AnnzooError, match=f"`{argument}`"):
        build_transformer(variant, **arguments)


def test_compile_options():
    model = build_transformer("encoder", **_TEXT)
    assert model.optimizer is not None
    uncompiled = build_transformer("encoder", **_TEXT, compile=False)
    assert getattr(uncompiled, "optimizer", None) is None
    model = build_transformer(
        "encoder", **_TEXT, compile=dict(optimizer="sgd", learning_rate=0.5)
    )
    assert isinstance(model.optimizer, keras.optimizers.SGD)


@pytest.mark.parametrize("hidden_units", [(), (8,)])
def test_classifier_head_drops_features_once_per_layer(hidden_units):
    """dropout=p means rate p: one Dropout before the head, one per hidden layer."""
    model = build_transformer(
        "encoder",
        vocabulary_size=20,
        sequence_length=6,
        num_classes=3,
        d_model=8,
        num_heads=2,
        ff_dim=8,
        num_layers=1,
        hidden_units=hidden_units,
        dropout=0.3,
    )
    head = [
        layer.name
        for layer in model.layers
        if isinstance(layer, keras.layers.Dropout) and layer.name.startswith("head")
    ]
    assert (
        head
        == ["head_dropout"]
        + [f"head_dense{i}_dropout" for i in (1,)][: len(hidden_units)]
    )

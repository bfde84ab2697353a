"""The captioner family ("Show, Attend and Tell"): counts, regions, causality.

Expected values come from the layer equations (parameter counts, the initial
state), a numpy reshape (the region order) and input comparisons (causality);
the attention scores themselves are checked in tests/test_seq2seq.py.
"""

from __future__ import annotations

import keras
import numpy as np
import pytest

import annzoo
from annzoo.errors import AnnzooError
from annzoo.models import build_captioner
from tests.test_seq2seq import check_causal


def _np(x):
    return np.asarray(keras.ops.convert_to_numpy(x), dtype=np.float64)


def _predict(model, x):
    return keras.ops.convert_to_numpy(model(x, training=False))


def _dense(n_in, n_out, bias=True):
    return n_in * n_out + (n_out if bias else 0)


def _conv_stages(channels, filters):
    # 3x3 convolutions without bias, then batch norm: gamma, beta and the two
    # moving statistics (all counted by count_params).
    count = 0
    for width in filters:
        count += 3 * 3 * channels * width + 4 * width
        channels = width
    return count


def _captioner_count(channels, filters, vocabulary, e, u, cell, attention):
    rnn = (
        3 * (e * u + u * u + 2 * u)  # GRU, reset_after=True
        if cell == "gru"
        else 4 * (e * u + u * u + u)
    )
    m = filters[-1]
    score = {"bahdanau": u * u + m * u + 2 * u, "luong": 0, "luong_general": u * m}
    return (
        _conv_stages(channels, filters)
        + (2 if cell == "lstm" else 1) * _dense(m, u)  # h0 (and c0) from the mean
        + vocabulary * e
        + rnn
        + score[attention]
        + _dense(u + m, u, bias=False)  # tanh(W_c [context; h_t])
        + _dense(u, vocabulary)
    )


def test_captioner_preset_count():
    formula = (
        (9 * 3 * 32 + 9 * 32 * 64 + 9 * 64 * 128)  # convolutions, no bias
        + 4 * (32 + 64 + 128)  # batch norm
        + 128 * 128
        + 128  # decoder_init_h on the mean region
        + 20 * 64  # word embedding
        + 3 * (64 * 128 + 128 * 128 + 2 * 128)  # GRU
        + (128 * 128 + 128 * 128 + 128 + 128)  # W_q, W_m, b, v
        + 256 * 128  # W_c, no bias
        + 128 * 20
        + 20  # output
    )
    assert formula == 254_580
    assert formula == _captioner_count(3, (32, 64, 128), 20, 64, 128, "gru", "bahdanau")
    model = annzoo.create_model("captioner", compile=False)
    assert model.count_params() == formula
    assert annzoo.model_info("captioner").reference.params == formula
    info = annzoo.model_info("captioner")
    assert info.family == "captioning" and info.task == "sequence"
    assert info.input_shape == ((32, 32, 3), (9,))
    assert info.output_shape == (9, 20)
    assert model.get_layer("encoder_features").output.shape[1:3] == (4, 4)
    assert tuple(model.get_layer("attention").output[1].shape) == (None, 9, 16)


def _tiny(**kwargs):
    options = dict(
        input_shape=(16, 12, 3),
        vocabulary_size=11,
        sequence_length=6,
        filters=(4, 8),
        embedding_dim=8,
        units=12,
        compile=False,
    )
    return build_captioner(**{**options, **kwargs})


_CONFIGS = [
    dict(cell="gru", attention="bahdanau"),
    dict(cell="lstm", attention="luong_general"),
    dict(cell="gru", attention="luong", units=8),
]


@pytest.mark.parametrize("config", _CONFIGS)
def test_small_counts_and_shapes(config):
    model = _tiny(**config)
    units = config.get("units", 12)
    expected = _captioner_count(
        3, (4, 8), 11, 8, units, config["cell"], config["attention"]
    )
    assert model.count_params() == expected
    assert sorted(t.name for t in model.inputs) == ["decoder_tokens", "images"]
    assert model.output_shape == (None, 6, 11)
    # 16x12 halved twice: a 4x3 grid of 12 regions with 8 channels.
    assert tuple(model.get_layer("encoder_features").output.shape) == (None, 4, 3, 8)
    context, weights = model.get_layer("attention").output
    assert tuple(weights.shape) == (None, 6, 12)
    assert tuple(context.shape) == (None, 6, 8)
    has_cell_state = "decoder_init_c" in [layer.name for layer in model.layers]
    assert has_cell_state == (config["cell"] == "lstm")


def test_regions_and_initial_state():
    keras.utils.set_random_seed(0)
    model = _tiny(cell="lstm")
    images = np.random.default_rng(0).random((2, 16, 12, 3), dtype=np.float32)
    cut = keras.Model(
        model.get_layer("images").output,
        [
            model.get_layer("encoder_features").output,
            model.get_layer("regions").output,
            model.get_layer("decoder_init_h").output,
            model.get_layer("decoder_init_c").output,
        ],
    )
    features, regions, h0, c0 = (_np(t) for t in cut(images, training=False))
    # Regions in row-major order of the grid.
    np.testing.assert_array_equal(regions, features.reshape(2, 12, 8))
    # Xu et al.: h0 = tanh(W_h mean(a) + b_h), c0 likewise.
    mean = features.reshape(2, 12, 8).mean(axis=1)
    for state, name in ((h0, "decoder_init_h"), (c0, "decoder_init_c")):
        kernel, bias = model.get_layer(name).get_weights()
        np.testing.assert_allclose(state, np.tanh(mean @ kernel + bias), atol=1e-5)


@pytest.mark.parametrize("config", _CONFIGS)
def test_decoder_is_causal_and_attends_everywhere(config):
    keras.utils.set_random_seed(1)
    model = _tiny(**config)
    rng = np.random.default_rng(0)
    images = rng.random((3, 16, 12, 3), dtype=np.float32)
    target = rng.integers(1, 11, (3, 6)).astype("int32")
    check_causal(model, "images", images, target)
    probe = keras.Model(
        model.inputs, [model.output, model.get_layer("attention").output[1]]
    )
    _, weights = probe.predict({"images": images, "decoder_tokens": target}, verbose=0)
    # No region is masked: every weight positive, each step's weights sum to 1.
    assert np.all(weights > 0)
    np.testing.assert_allclose(weights.sum(axis=-1), 1.0, rtol=1e-5)


def _two_colour_task(n, rng):
    """Left half one colour, right half another; caption: both colour ids."""
    palette = np.eye(3, dtype=np.float32)
    left, right = rng.integers(0, 3, n), rng.integers(0, 3, n)
    images = rng.uniform(0, 0.2, (n, 16, 16, 3)).astype("float32")
    images[:, :, :8] += palette[left][:, None, None, :]
    images[:, :, 8:] += palette[right][:, None, None, :]
    captions = np.zeros((n, 4), "int32")
    captions[:, 0], captions[:, 1], captions[:, 2] = 4 + left, 7 + right, 2
    return images, captions


@pytest.mark.slow
def test_learns_a_toy_caption_task():
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    images, captions = _two_colour_task(640, rng)
    decoder = annzoo.text.shift_right(captions, 1)
    model = build_captioner(
        (16, 16, 3),
        10,
        4,
        filters=(8, 16),
        embedding_dim=8,
        units=16,
        compile=dict(learning_rate=1e-2),
    )
    # Small batches: enough steps for the batch-norm moving statistics
    # (momentum 0.9, annzoo.models.cnn.BN_MOMENTUM) to settle before evaluating
    # in inference mode.
    history = model.fit(
        {"images": images[:512], "decoder_tokens": decoder[:512]},
        captions[:512],
        epochs=8,
        batch_size=16,
        verbose=0,
    )
    losses = history.history["loss"]
    assert losses[-1] < 0.2 * losses[0], losses
    logs = model.evaluate(
        {"images": images[512:], "decoder_tokens": decoder[512:]},
        captions[512:],
        verbose=0,
        return_dict=True,
    )
    assert logs["token_accuracy"] > 0.95, logs


@pytest.mark.slow
def test_save_and_reload_predict_identically(tmp_path):
    keras.utils.set_random_seed(3)
    model = _tiny(cell="lstm", dropout=0.1, compile=True)
    rng = np.random.default_rng(2)
    inputs = {
        "images": rng.random((2, 16, 12, 3), dtype=np.float32),
        "decoder_tokens": np.array([[1, 5, 6, 2, 0, 0], [1, 7, 2, 0, 0, 0]], "int32"),
    }
    labels = np.array([[5, 6, 2, 0, 0, 0], [7, 2, 0, 0, 0, 0]], "int32")
    model.train_on_batch(inputs, labels)
    path = tmp_path / "captioner.keras"
    model.save(path)
    reloaded = keras.saving.load_model(path)
    np.testing.assert_array_equal(_predict(reloaded, inputs), _predict(model, inputs))


_ARGS = dict(input_shape=(16, 16, 3), vocabulary_size=10, sequence_length=5)


@pytest.mark.parametrize(
    ("arguments", "argument"),
    [
        (dict(_ARGS, attention=None), "attention"),
        (dict(_ARGS, attention="none"), "attention"),
        (dict(_ARGS, attention="cosine"), "attention"),
        (dict(_ARGS, attention="luong", filters=(8, 16), units=12), "attention"),
        (dict(_ARGS, cell="simple"), "cell"),
        (dict(_ARGS, filters=()), "filters"),
        (dict(_ARGS, filters=(8, 0)), "filters"),
        (dict(_ARGS, input_shape=(4, 4, 3), filters=(8, 8, 8)), "input_shape"),
        (dict(_ARGS, input_shape=(None, None, 3)), "input_shape"),
        (dict(_ARGS, input_shape=(16, 16)), "input_shape"),
        (dict(_ARGS, vocabulary_size=0), "vocabulary_size"),
        (dict(_ARGS, sequence_length=0), "sequence_length"),
        (dict(_ARGS, units=0), "units"),
        (dict(_ARGS, embedding_dim=0), "embedding_dim"),
        (dict(_ARGS, dropout=-0.1), "dropout"),
        (dict(_ARGS, task="multiclass"), "task"),
        (dict(_ARGS, compile="yes"), "compile"),
    ],
)
def test_bad_arguments_name_the_argument(arguments, argument):
    with pytest.raises(AnnzooError, match=f"`{argument}`"):
        build_captioner(**arguments)

"""Tests for annzoo.models.rnn: recurrent equations, masks, shapes, CRF tagging.

Expected values are written independently of the code: the recurrent cells'
equations in numpy, parameter counts from the layer formulas, and masking
checked by comparing padded and unpadded inputs.
"""

from __future__ import annotations

import keras
import numpy as np
import pytest

import annzoo
from annzoo.errors import AnnzooError
from annzoo.models.rnn import build_rnn, decode_tags


def _np(x):
    return np.asarray(keras.ops.convert_to_numpy(x), dtype=np.float64)


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def _recurrent_output(model, x, layer="rnn1"):
    """The top recurrent layer's output (the model cut before its head)."""
    cut = keras.Model(model.input, model.get_layer(layer).output)
    return _np(cut(x, training=False))


def _random_weights(layer, rng):
    layer.set_weights([rng.normal(0, 0.5, size=w.shape) for w in layer.get_weights()])
    return [np.asarray(w, np.float64) for w in layer.get_weights()]


def _numpy_lstm(x, kernel, recurrent, bias):
    # Keras' column order in the kernels: input, forget, cell candidate, output.
    units = recurrent.shape[0]
    h = np.zeros((x.shape[0], units))
    c = np.zeros_like(h)
    for t in range(x.shape[1]):
        z = x[:, t] @ kernel + h @ recurrent + bias
        i, f, g, o = (z[:, k * units : (k + 1) * units] for k in range(4))
        c = _sigmoid(f) * c + _sigmoid(i) * np.tanh(g)
        h = _sigmoid(o) * np.tanh(c)
    return h


def _numpy_gru(x, kernel, recurrent, bias):
    # Keras' default GRU, reset_after=True (the cuDNN variant): the reset gate
    # multiplies the recurrent product *after* the matrix product,
    #   h~ = tanh(x W_h + b_h + r * (h U_h + b_rh)),
    # with two bias rows (input, recurrent). Column order: update z, reset r,
    # candidate h. Keras keeps the old state with weight z:
    #   h = z * h_prev + (1 - z) * h~.
    units = recurrent.shape[0]
    b_in, b_rec = bias
    h = np.zeros((x.shape[0], units))
    for t in range(x.shape[1]):
        xi = x[:, t] @ kernel + b_in
        hr = h @ recurrent + b_rec
        z = _sigmoid(xi[:, :units] + hr[:, :units])
        r = _sigmoid(xi[:, units : 2 * units] + hr[:, units : 2 * units])
        candidate = np.tanh(xi[:, 2 * units :] + r * hr[:, 2 * units :])
        h = z * h + (1 - z) * candidate
    return h


def _numpy_simple(x, kernel, recurrent, bias):
    h = np.zeros((x.shape[0], recurrent.shape[0]))
    for t in range(x.shape[1]):
        h = np.tanh(x[:, t] @ kernel + h @ recurrent + bias)
    return h


@pytest.mark.parametrize(
    "cell, equations",
    [("lstm", _numpy_lstm), ("gru", _numpy_gru), ("simple", _numpy_simple)],
)
def test_last_output_matches_numpy_equations(cell, equations):
    rng = np.random.default_rng(0)
    model = build_rnn(
        (4, 3), 5, cell=cell, units=(5,), task="regression", compile=False
    )
    weights = _random_weights(model.get_layer(f"{cell}1"), rng)
    # An identity head: the model's output is the recurrent layer's last state.
    model.get_layer("head_logits").set_weights([np.eye(5), np.zeros(5)])
    x = rng.normal(size=(2, 4, 3)).astype("float32")
    expected = equations(x.astype(np.float64), *weights)
    np.testing.assert_allclose(_np(model(x)), expected, atol=1e-5)


def test_stacked_sequence_outputs_match_numpy():
    rng = np.random.default_rng(1)
    model = build_rnn(
        (5, 2), 3, cell="gru", units=(4, 3), output="sequence", compile=False
    )
    first = _random_weights(model.get_layer("gru1"), rng)
    second = _random_weights(model.get_layer("gru2"), rng)
    x = rng.normal(size=(2, 5, 2)).astype("float32")
    got = _recurrent_output(model, x, "gru2")
    hidden = np.stack(
        [_numpy_gru(x[:, : t + 1].astype(np.float64), *first) for t in range(5)], 1
    )
    for t in range(5):
        np.testing.assert_allclose(
            got[:, t], _numpy_gru(hidden[:, : t + 1], *second), atol=1e-5
        )


def test_bidirectional_last_output_concatenates_both_directions():
    rng = np.random.default_rng(2)
    model = build_rnn((4, 3), 2, cell="lstm", units=(3,), bidirectional=True)
    layer = model.get_layer("bidirectional1")
    weights = _random_weights(layer, rng)
    x = rng.normal(size=(2, 4, 3)).astype("float32")
    forward = _numpy_lstm(x.astype(np.float64), *weights[:3])
    backward = _numpy_lstm(x[:, ::-1].astype(np.float64), *weights[3:])
    np.testing.assert_allclose(
        _recurrent_output(model, x, "bidirectional1"),
        np.concatenate([forward, backward], axis=-1),
        atol=1e-5,
    )


@pytest.mark.parametrize(
    "cell, bidirectional", [("gru", False), ("lstm", True), ("simple", False)]
)
def test_trailing_padding_does_not_change_last_output(cell, bidirectional):
    keras.utils.set_random_seed(0)
    model = build_rnn(
        (None,),
        3,
        vocabulary_size=10,
        embedding_dim=4,
        cell=cell,
        units=(6, 5),
        bidirectional=bidirectional,
        compile=False,
    )
    tokens = np.array([[3, 1, 4, 1, 5]], dtype="int32")
    padded = np.array([[3, 1, 4, 1, 5, 0, 0, 0]], dtype="int32")
    np.testing.assert_allclose(_np(model(padded)), _np(model(tokens)), atol=1e-6)
    # The mask is what makes them equal: a real token instead changes it.
    other = np.array([[3, 1, 4, 1, 5, 2, 2, 2]], dtype="int32")
    assert np.abs(_np(model(other)) - _np(model(tokens))).max() > 1e-4


def test_padded_steps_do_not_count_in_the_tagging_loss():
    keras.utils.set_random_seed(0)
    model = build_rnn(
        (6,), 4, vocabulary_size=10, embedding_dim=4, units=(5,), output="sequence"
    )
    tokens = np.array([[1, 2, 3, 0, 0, 0], [4, 5, 6, 7, 0, 0]], dtype="int32")
    labels = np.array([[0, 1, 2, 0, 0, 0], [3, 2, 1, 0, 0, 0]])
    changed = labels.copy()
    changed[tokens == 0] = 3
    loss = model.evaluate(tokens, labels, verbose=0, return_dict=True)["loss"]
    same = model.evaluate(tokens, changed, verbose=0, return_dict=True)["loss"]
    assert loss == pytest.approx(same, rel=1e-6)
    real = labels.copy()
    real[0, 0] = 3  # a real step's label does count
    moved = model.evaluate(tokens, real, verbose=0, return_dict=True)["loss"]
    assert moved != pytest.approx(loss, rel=1e-6)


@pytest.mark.parametrize(
    "kwargs, input_shape, output_shape",
    [
        (dict(input_shape=(7,), vocabulary_size=20), (None, 7), (None, 3)),
        (dict(input_shape=(None, 2)), (None, None, 2), (None, 3)),
        (dict(input_shape=(7, 2), units=(4, 3, 2)), (None, 7, 2), (None, 3)),
        (
            dict(input_shape=(7,), vocabulary_size=20, output="sequence"),
            (None, 7),
            (None, 7, 3),
        ),
        (
            dict(input_shape=(None, 2), bidirectional=True, output="sequence"),
            (None, None, 2),
            (None, None, 3),
        ),
    ],
)
def test_shapes(kwargs, input_shape, output_shape):
    model = build_rnn(num_outputs=3, units=kwargs.pop("units", (4,)), **kwargs)
    assert tuple(model.input_shape) == input_shape
    assert tuple(model.output_shape) == output_shape
    assert model.inputs[0].name == (
        "tokens" if "vocabulary_size" in kwargs else "series"
    )


@pytest.mark.parametrize(
    "task, num_outputs, activation",
    [
        ("binary", 1, "sigmoid"),
        ("multiclass", 4, "softmax"),
        ("regression", 2, "linear"),
    ],
)
def test_tasks(task, num_outputs, activation):
    model = build_rnn((5, 2), num_outputs, units=(3,), task=task)
    assert model.output_shape == (None, num_outputs)
    assert model.get_layer("predictions").get_config()["activation"] == activation
    x = np.random.default_rng(0).normal(size=(4, 5, 2)).astype("float32")
    y = (
        np.zeros((4, num_outputs), "float32")
        if task != "multiclass"
        else np.zeros(4, "int32")
    )
    logs = model.train_on_batch(x, y, return_dict=True)
    assert np.isfinite(logs["loss"])


def test_token_inputs_are_int32_and_model_info_shapes():
    model = build_rnn((None,), 5, vocabulary_size=30, output="sequence", crf=True)
    assert "int32" in str(model.inputs[0].dtype)
    info = annzoo.model_info("bilstm_crf_tagger")
    assert info.input_shape == (None,)
    assert info.output_shape == (None, 9)
    assert annzoo.model_info("imdb_bilstm").output_shape == (1,)


def _lstm(d, u):
    return 4 * (d * u + u * u + u)


def _gru_reset_after(d, u):
    return 3 * (d * u + u * u + 2 * u)


def _dense(m, n):
    return m * n + n


@pytest.mark.parametrize(
    "name, expected",
    [
        # Embedding(59, 32) + GRU(128) + Dense(18).
        ("char_rnn", 59 * 32 + _gru_reset_after(32, 128) + _dense(128, 18)),
        # keras.io IMDB Bi-LSTM; its published summary says 2,757,761.
        (
            "imdb_bilstm",
            20_000 * 128 + 2 * _lstm(128, 64) + 2 * _lstm(128, 64) + _dense(128, 1),
        ),
        # Embedding(5000, 100) + BiLSTM(100) + Dense(9) + CRF(9).
        (
            "bilstm_crf_tagger",
            5000 * 100 + 2 * _lstm(100, 100) + _dense(200, 9) + (9 * 9 + 9 + 9),
        ),
    ],
)
def test_preset_parameter_counts(name, expected):
    if name == "imdb_bilstm":
        assert expected == 2_757_761
    model = annzoo.create_model(name, compile=False)
    assert model.count_params() == expected
    assert annzoo.model_info(name).reference.params == expected


def _tagging_data(rng, n, steps=8, vocabulary=13):
    """Tag of a token = (id of the token before it) mod 3: needs the context."""
    tokens = rng.integers(1, vocabulary, size=(n, steps)).astype("int32")
    tags = np.zeros((n, steps), "int32")
    tags[:, 1:] = tokens[:, :-1] % 3
    lengths = rng.integers(3, steps + 1, size=n)
    padded = np.arange(steps)[None] >= lengths[:, None]
    tokens[padded] = 0
    tags[padded] = -1
    return tokens, tags


@pytest.mark.slow
def test_crf_tagger_learns_and_decodes():
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    tokens, tags = _tagging_data(rng, 128)
    model = build_rnn(
        (None,),
        3,
        vocabulary_size=13,
        embedding_dim=8,
        units=(16,),
        bidirectional=True,
        output="sequence",
        crf=True,
        compile={"learning_rate": 0.02},
    )
    real = tags != -1

    def accuracy():
        decoded = decode_tags(model, tokens)
        assert decoded.shape == tokens.shape and decoded.dtype == np.int32
        np.testing.assert_array_equal(decoded[~real], -1)
        assert set(np.unique(decoded[real])) <= {0, 1, 2}
        return float(np.mean(decoded[real] == tags[real]))

    before = accuracy()
    history = model.fit(tokens, tags, epochs=15, batch_size=32, verbose=0)
    losses = history.history["loss"]
    assert losses[-1] < losses[0]
    after = accuracy()
    assert after > 0.6 > 1 / 3 + 0.1, (before, after)
    # Predictions are emissions, (batch, steps, tags), not probabilities.
    assert model.predict(tokens[:2], verbose=0).shape == (2, 8, 3)


def test_decode_tags_needs_a_crf_model():
    model = build_rnn((5,), 3, vocabulary_size=9, output="sequence")
    with pytest.raises(AnnzooError, match="`model`"):
        decode_tags(model, np.ones((1, 5), "int32"))


@pytest.mark.parametrize(
    "kwargs, argument",
    [
        (dict(cell="transformer"), "cell"),
        (dict(units=0), "units"),
        (dict(units=(8, -1)), "units"),
        (dict(units=()), "units"),
        (dict(crf=True), "crf"),
        (dict(crf=True, output="sequence", task="regression"), "crf"),
        (dict(recurrent_dropout=1.0), "recurrent_dropout"),
        (dict(dropout=-0.1), "dropout"),
        (dict(vocabulary_size=0), "vocabulary_size"),
        (dict(vocabulary_size=10, embedding_dim=0), "embedding_dim"),
        (dict(output="all"), "output"),
        (dict(bidirectional="yes"), "bidirectional"),
        (dict(task="ranking"), "task"),
        (dict(num_outputs=1), "num_outputs"),
        (dict(input_shape=(5, 2, 1)), "input_shape"),
        (dict(input_shape=(5, None)), "input_shape"),
        (dict(vocabulary_size=10, input_shape=(5, 2)), "input_shape"),
        (dict(compile="yes"), "compile"),
    ],
)
def test_bad_arguments(kwargs, argument):
    arguments = dict(input_shape=(5, 2), num_outputs=3)
    if "vocabulary_size" in kwargs and "input_shape" not in kwargs:
        arguments["input_shape"] = (5,)
    arguments.update(kwargs)
    with pytest.raises(AnnzooError, match=f"`{argument}`.*Received: "):
        build_rnn(**arguments)

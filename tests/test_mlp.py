"""Tests of annzoo.build_mlp: the forward pass against numpy, structure, compile.

Every expected output is computed here in numpy (float64) from weights set by
hand or read back from the model, never from annzoo's own helpers.
"""

from __future__ import annotations

import math

import keras
import numpy as np
import pytest

import annzoo

ATOL = 1e-6


def _np(x):
    return np.asarray(keras.ops.convert_to_numpy(x), dtype=np.float64)


def _forward(model, x):
    """Inference-mode output as float64 numpy."""
    return _np(model(keras.ops.convert_to_tensor(x.astype("float32")), training=False))


def sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def softmax(z):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def relu(z):
    return np.maximum(z, 0.0)


def _dense_layers(model):
    return [layer for layer in model.layers if isinstance(layer, keras.layers.Dense)]


def _weights(layer):
    return [_np(w) for w in layer.weights]


# ---------------------------------------------------------------------------
# The course's seed network: m inputs -> 2 ReLU units -> 1 sigmoid unit.
# ---------------------------------------------------------------------------


def test_seed_network_matches_numpy_formula_with_both_relu_branches():
    m = 3
    model = annzoo.build_mlp(
        m, 1, hidden_units=(2,), activation="relu", task="binary", compile=False
    )
    W1 = np.array([[1.0, -1.0], [2.0, 0.5], [-1.0, 1.5]])
    b1 = np.array([0.5, -0.25])
    w2 = np.array([[1.5], [-2.0]])
    b2 = np.array([0.1])
    model.get_layer("hidden1").set_weights([W1, b1])
    model.get_layer("head_logits").set_weights([w2, b2])

    x = np.array(
        [
            [1.0, 0.0, 0.0],  # z = [1.5, -1.25]: unit 2 off
            [-1.0, 0.0, 0.0],  # z = [-0.5, 0.75]: unit 1 off
            [-1.0, -1.0, 0.0],  # z = [-2.5, 0.25]: unit 1 off
            [0.5, 0.5, 0.5],  # z = [1.5, 0.25]: both on
            [-2.0, -1.0, 0.0],  # z = [-3.5, 1.25]: unit 1 off
            [0.0, -1.0, -1.0],  # z = [-0.5, -2.25]: both off
        ]
    )
    z1 = x @ W1 + b1
    # The batch exercises both sides of every ReLU.
    assert (z1[:, 0] < 0).any() and (z1[:, 0] > 0).any()
    assert (z1[:, 1] < 0).any() and (z1[:, 1] > 0).any()
    assert (z1 < 0).all(axis=1).any()  # a sample with no active unit
    expected = sigmoid(relu(z1) @ w2 + b2)
    # Hand-checked values for the first two samples.
    np.testing.assert_allclose(expected[0, 0], sigmoid(1.5 * 1.5 + 0.1))
    np.testing.assert_allclose(expected[1, 0], sigmoid(-2.0 * 0.75 + 0.1))
    np.testing.assert_allclose(expected[5, 0], sigmoid(0.1))

    got = _forward(model, x)
    assert got.shape == (6, 1)
    np.testing.assert_allclose(got, expected, atol=ATOL, rtol=0)

    # The hidden activations themselves are relu(W1 x + b1).
    hidden = keras.Model(model.input, model.get_layer("hidden1_act").output)
    np.testing.assert_allclose(_forward(hidden, x), relu(z1), atol=ATOL, rtol=0)


def test_seed_network_parameter_count():
    # m*2 + 2 hidden weights, 2 + 1 output weights.
    for m in (1, 4, 30):
        model = annzoo.build_mlp(m, 1, hidden_units=(2,), task="binary", compile=False)
        assert model.count_params() == 2 * m + 2 + 2 + 1
        assert model.input_shape == (None, m)
        assert model.output_shape == (None, 1)


# ---------------------------------------------------------------------------
# Zero hidden layers: logistic / softmax / linear regression.
# ---------------------------------------------------------------------------


def test_logistic_regression_is_sigmoid_of_affine():
    rng = np.random.default_rng(0)
    model = annzoo.build_mlp(5, 1, hidden_units=(), task="binary", compile=False)
    assert len(_dense_layers(model)) == 1
    assert model.count_params() == 5 + 1
    w = rng.normal(size=(5, 1))
    b = np.array([-0.3])
    model.get_layer("head_logits").set_weights([w, b])
    x = rng.normal(size=(8, 5))
    got = _forward(model, x)
    np.testing.assert_allclose(got, sigmoid(x @ w + b), atol=ATOL, rtol=0)
    assert ((got > 0) & (got < 1)).all()


def test_softmax_regression_is_softmax_of_affine():
    rng = np.random.default_rng(1)
    model = annzoo.build_mlp(4, 3, hidden_units=(), task="multiclass", compile=False)
    assert model.count_params() == 4 * 3 + 3
    W = rng.normal(size=(4, 3))
    b = np.array([0.1, -0.2, 0.3])
    model.get_layer("head_logits").set_weights([W, b])
    x = rng.normal(size=(7, 4))
    got = _forward(model, x)
    np.testing.assert_allclose(got, softmax(x @ W + b), atol=ATOL, rtol=0)
    np.testing.assert_allclose(got.sum(axis=1), np.ones(7), atol=ATOL)


def test_linear_regression_is_affine_and_unbounded():
    model = annzoo.build_mlp(2, 2, hidden_units=(), task="regression", compile=False)
    W = np.array([[3.0, -1.0], [2.0, 4.0]])
    b = np.array([0.5, -0.5])
    model.get_layer("head_logits").set_weights([W, b])
    x = np.array([[1.0, 1.0], [-2.0, 0.5], [0.0, 0.0], [10.0, -3.0]])
    expected = x @ W + b
    got = _forward(model, x)
    np.testing.assert_allclose(got, expected, atol=1e-5, rtol=1e-6)
    assert (got > 1).any() and (got < 0).any()
    assert got.max() > 20  # far outside any squashing function's range


def test_multidimensional_input_is_flattened():
    rng = np.random.default_rng(2)
    shape = (4, 3, 2)
    model = annzoo.build_mlp(
        shape,
        2,
        hidden_units=(5,),
        activation="tanh",
        task="multiclass",
        compile=False,
    )
    assert model.input_shape == (None, *shape)
    W1 = rng.normal(size=(24, 5)) * 0.5
    b1 = rng.normal(size=(5,))
    W2 = rng.normal(size=(5, 2))
    b2 = rng.normal(size=(2,))
    model.get_layer("hidden1").set_weights([W1, b1])
    model.get_layer("head_logits").set_weights([W2, b2])
    x = rng.normal(size=(6, *shape))
    flat = x.reshape(6, -1)  # row-major, as Keras' Flatten with channels_last
    expected = softmax(np.tanh(flat @ W1 + b1) @ W2 + b2)
    np.testing.assert_allclose(_forward(model, x), expected, atol=ATOL, rtol=0)


def test_integer_input_shape_equals_one_tuple():
    a = annzoo.build_mlp(7, 2, hidden_units=(3,), compile=False)
    b = annzoo.build_mlp((7,), 2, hidden_units=(3,), compile=False)
    assert a.input_shape == b.input_shape == (None, 7)
    assert a.count_params() == b.count_params() == 7 * 3 + 3 + 3 * 2 + 2


# ---------------------------------------------------------------------------
# Structure: depth, widths, activations, dropout, batch norm.
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("hidden", [(), (4,), (8, 3), (5, 4, 3, 2)])
def test_depth_and_widths(hidden):
    model = annzoo.build_mlp(6, 3, hidden_units=hidden, compile=False)
    dense = _dense_layers(model)
    # len(hidden) hidden layers plus the output layer.
    assert [d.units for d in dense] == [*hidden, 3]
    widths = [6, *hidden, 3]
    expected = sum(a * b + b for a, b in zip(widths[:-1], widths[1:], strict=True))
    assert model.count_params() == expected


def test_single_int_hidden_units_is_one_layer():
    model = annzoo.build_mlp(6, 3, hidden_units=4, compile=False)
    assert [d.units for d in _dense_layers(model)] == [4, 3]


_NP_ACTIVATIONS = {
    "relu": relu,
    "tanh": np.tanh,
    "sigmoid": sigmoid,
}


@pytest.mark.parametrize("activation", ["relu", "tanh", "sigmoid", "gelu"])
def test_hidden_activation_is_applied(activation):
    rng = np.random.default_rng(3)
    model = annzoo.build_mlp(
        3,
        1,
        hidden_units=(4, 4),
        activation=activation,
        task="regression",
        compile=False,
    )
    # The activation sits after every hidden layer and nowhere else.
    acts = [
        layer for layer in model.layers if isinstance(layer, keras.layers.Activation)
    ]
    assert [a.name for a in acts] == ["hidden1_act", "hidden2_act", "predictions"]
    x = rng.normal(size=(9, 3)) * 2
    params = [
        _weights(model.get_layer(n)) for n in ("hidden1", "hidden2", "head_logits")
    ]
    if activation == "gelu":
        # Keras 3's "gelu" is the exact form x * Phi(x) (approximate=False).
        erf = np.vectorize(math.erf)

        def f(z):
            return 0.5 * z * (1 + erf(z / np.sqrt(2)))
    else:
        f = _NP_ACTIVATIONS[activation]
    h = x
    for W, b in params[:2]:
        h = f(h @ W + b)
    expected = h @ params[2][0] + params[2][1]
    np.testing.assert_allclose(_forward(model, x), expected, atol=1e-5, rtol=1e-5)


def test_tanh_network_with_hand_set_weights():
    model = annzoo.build_mlp(
        2, 1, hidden_units=(2,), activation="tanh", task="regression", compile=False
    )
    W1 = np.array([[1.0, -2.0], [0.5, 1.0]])
    b1 = np.array([0.0, 0.3])
    w2 = np.array([[2.0], [-1.0]])
    b2 = np.array([0.25])
    model.get_layer("hidden1").set_weights([W1, b1])
    model.get_layer("head_logits").set_weights([w2, b2])
    x = np.array([[1.0, 2.0], [-1.0, 0.0], [3.0, -3.0]])
    expected = np.tanh(x @ W1 + b1) @ w2 + b2
    # First row by hand: tanh([2.0, 0.3]) . [2, -1] + 0.25.
    assert expected[0, 0] == pytest.approx(2 * np.tanh(2.0) - np.tanh(0.3) + 0.25)
    np.testing.assert_allclose(_forward(model, x), expected, atol=ATOL, rtol=0)


def test_dropout_layers_have_the_rate_and_are_off_at_inference():
    rng = np.random.default_rng(4)
    model = annzoo.build_mlp(
        5, 2, hidden_units=(16, 8), dropout=0.4, task="regression", compile=False
    )
    drops = [layer for layer in model.layers if isinstance(layer, keras.layers.Dropout)]
    assert [d.name for d in drops] == ["hidden1_dropout", "hidden2_dropout"]
    assert all(d.rate == pytest.approx(0.4) for d in drops)

    x = rng.normal(size=(32, 5)).astype("float32")
    params = [
        _weights(model.get_layer(n)) for n in ("hidden1", "hidden2", "head_logits")
    ]
    h = x.astype(np.float64)
    for W, b in params[:2]:
        h = relu(h @ W + b)
    expected = h @ params[2][0] + params[2][1]
    first = _np(model.predict(x, verbose=0))
    second = _forward(model, x)
    np.testing.assert_allclose(first, expected, atol=1e-5, rtol=1e-5)
    np.testing.assert_allclose(second, first, atol=1e-6, rtol=0)
    # In training mode dropout is active: outputs differ from inference.
    train = _np(model(keras.ops.convert_to_tensor(x), training=True))
    assert not np.allclose(train, expected, atol=1e-4)


def test_dropout_without_hidden_layers_applies_to_inputs():
    model = annzoo.build_mlp(
        4, 1, hidden_units=(), dropout=0.25, task="binary", compile=False
    )
    drops = [layer for layer in model.layers if isinstance(layer, keras.layers.Dropout)]
    assert len(drops) == 1 and drops[0].rate == pytest.approx(0.25)


def test_no_dropout_layers_by_default():
    model = annzoo.build_mlp(4, 3, hidden_units=(4, 4), compile=False)
    assert not any(isinstance(lay, keras.layers.Dropout) for lay in model.layers)
    assert not any(
        isinstance(lay, keras.layers.BatchNormalization) for lay in model.layers
    )


def test_batch_norm_adds_layers_and_drops_dense_bias():
    model = annzoo.build_mlp(5, 3, hidden_units=(4, 6), batch_norm=True, compile=False)
    bns = [
        layer
        for layer in model.layers
        if isinstance(layer, keras.layers.BatchNormalization)
    ]
    assert [b.name for b in bns] == ["hidden1_bn", "hidden2_bn"]
    # Dense without bias (BN's beta replaces it): 5*4 + 4*6 hidden weights;
    # BN: gamma, beta, moving mean and variance per unit; output 6*3 + 3.
    assert model.count_params() == 5 * 4 + 4 * 4 + 4 * 6 + 4 * 6 + 6 * 3 + 3
    trainable = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
    assert trainable == model.count_params() - 2 * (4 + 6)


def test_batch_norm_forward_in_inference_mode():
    rng = np.random.default_rng(5)
    model = annzoo.build_mlp(
        3, 1, hidden_units=(2,), batch_norm=True, task="regression", compile=False
    )
    W1 = rng.normal(size=(3, 2))
    gamma, beta = np.array([1.5, 0.5]), np.array([0.1, -0.2])
    mean, var = np.array([0.3, -0.4]), np.array([2.0, 0.5])
    w2, b2 = rng.normal(size=(2, 1)), np.array([0.05])
    model.get_layer("hidden1").set_weights([W1])
    model.get_layer("hidden1_bn").set_weights([gamma, beta, mean, var])
    model.get_layer("head_logits").set_weights([w2, b2])
    eps = model.get_layer("hidden1_bn").epsilon
    x = rng.normal(size=(5, 3))
    h = relu(gamma * (x @ W1 - mean) / np.sqrt(var + eps) + beta)
    np.testing.assert_allclose(_forward(model, x), h @ w2 + b2, atol=1e-5, rtol=1e-5)


def test_names():
    model = annzoo.build_mlp(3, 2, hidden_units=(4,), compile=False)
    assert model.name == "mlp"
    assert model.inputs[0].name == "features"
    assert model.layers[-1].name == "predictions"
    assert annzoo.build_mlp(3, 2, compile=False, name="seed").name == "seed"


@pytest.mark.parametrize(
    "task, width, activation",
    [
        ("binary", 3, "sigmoid"),
        ("multiclass", 4, "softmax"),
        ("regression", 2, "linear"),
    ],
)
def test_output_activation_per_task(task, width, activation):
    model = annzoo.build_mlp(3, width, hidden_units=(), task=task, compile=False)
    assert model.output_shape == (None, width)
    out = model.get_layer("predictions")
    assert out.get_config()["activation"] == activation
    # Kept in float32 for mixed precision.
    assert out.dtype_policy.compute_dtype == "float32"


# ---------------------------------------------------------------------------
# compile=
# ---------------------------------------------------------------------------


def test_compile_false_returns_uncompiled_model():
    model = annzoo.build_mlp(3, 1, task="binary", compile=False)
    assert not model.compiled
    assert getattr(model, "optimizer", None) is None


@pytest.mark.parametrize(
    "task, loss_class",
    [
        ("binary", keras.losses.BinaryCrossentropy),
        ("multiclass", keras.losses.SparseCategoricalCrossentropy),
        ("regression", keras.losses.MeanSquaredError),
    ],
)
def test_compile_true_uses_the_task_loss(task, loss_class):
    width = 3 if task == "multiclass" else 1
    model = annzoo.build_mlp(3, width, hidden_units=(2,), task=task)  # default True
    assert model.compiled
    assert isinstance(model.loss, loss_class)
    assert isinstance(model.optimizer, keras.optimizers.Adam)


def test_compile_dict_is_passed_to_compile_model():
    model = annzoo.build_mlp(
        3, 1, task="binary", compile={"optimizer": "sgd", "learning_rate": 0.1}
    )
    assert model.compiled
    assert type(model.optimizer) is keras.optimizers.SGD
    lr = float(keras.ops.convert_to_numpy(model.optimizer.learning_rate))
    assert lr == pytest.approx(0.1, rel=1e-6)
    # The builder's task is the default of the dict.
    assert isinstance(model.loss, keras.losses.BinaryCrossentropy)


# ---------------------------------------------------------------------------
# Training
# ---------------------------------------------------------------------------


def test_training_reduces_loss_on_a_separable_problem():
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 2)).astype("float32")
    y = (x[:, 0] + 2 * x[:, 1] > 0).astype("float32")[:, None]
    model = annzoo.build_mlp(
        2,
        1,
        hidden_units=(4,),
        task="binary",
        compile={"optimizer": "adam", "learning_rate": 0.05},
    )
    before = model.evaluate(x, y, batch_size=64, verbose=0, return_dict=True)
    model.fit(x, y, batch_size=16, epochs=15, verbose=0)
    after = model.evaluate(x, y, batch_size=64, verbose=0, return_dict=True)
    assert after["loss"] < 0.6 * before["loss"]
    assert after["accuracy"] >= 0.9
    # The reported loss is the log loss of the predictions.
    p = np.clip(_forward(model, x), 1e-7, 1 - 1e-7)
    log_loss = -np.mean(y * np.log(p) + (1 - y) * np.log(1 - p))
    assert after["loss"] == pytest.approx(log_loss, rel=1e-4, abs=1e-6)

"""Tests of annzoo.compile_model: losses, metrics and optimizers per task.

Loss and metric values are recomputed here in numpy from the model's
predictions and the labels; optimizer steps from gradients derived by hand.
"""

from __future__ import annotations

import keras
import numpy as np
import pytest

import annzoo

X = np.array(
    [
        [0.5, -1.0, 2.0],
        [1.5, 0.5, -0.5],
        [-1.0, -2.0, 0.25],
        [0.0, 1.0, 1.0],
        [2.0, -0.5, -1.5],
        [-0.5, 0.5, 0.5],
        [1.0, 1.0, -2.0],
        [-1.5, 0.0, 1.0],
    ],
    dtype="float32",
)
N = len(X)
W3 = np.array([[0.8, -0.4, 0.1], [-0.3, 0.6, 0.2], [0.5, 0.1, -0.7]])
B3 = np.array([0.1, -0.2, 0.05])


def _np(x):
    return np.asarray(keras.ops.convert_to_numpy(x), dtype=np.float64)


def _lr(optimizer):
    return float(keras.ops.convert_to_numpy(optimizer.learning_rate))


def _linear(width, task, weights=None, bias=None):
    """A zero-hidden-layer annzoo MLP (3 inputs) with fixed weights."""
    model = annzoo.build_mlp(3, width, hidden_units=(), task=task, compile=False)
    w = W3[:, :width] if weights is None else weights
    b = B3[:width] if bias is None else bias
    model.get_layer("head_logits").set_weights([w, b])
    return model


def _evaluate(model, x, y):
    return model.evaluate(x, y, batch_size=len(x), verbose=0, return_dict=True)


def _metric_classes(model):
    return [m["class_name"] for m in model.get_compile_config()["metrics"]]


def sigmoid(z):
    return 1 / (1 + np.exp(-z))


def softmax(z):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


# ---------------------------------------------------------------------------
# Loss and metrics per task, checked by value
# ---------------------------------------------------------------------------


def test_binary_log_loss_and_accuracy():
    model = _linear(1, "binary")
    annzoo.compile_model(model, task="binary")
    assert isinstance(model.loss, keras.losses.BinaryCrossentropy)
    assert not model.loss.get_config()["from_logits"]
    assert _metric_classes(model) == ["BinaryAccuracy"]

    p = sigmoid(X @ W3[:, :1] + B3[:1])[:, 0]
    y = np.array([1, 0, 0, 1, 1, 1, 0, 0], dtype="float32")
    log_loss = -np.mean(y * np.log(p) + (1 - y) * np.log(1 - p))
    accuracy = np.mean((p > 0.5) == (y == 1))
    assert 0 < accuracy < 1  # both right and wrong predictions
    result = _evaluate(model, X, y[:, None])
    assert set(result) == {"loss", "accuracy"}
    assert result["loss"] == pytest.approx(log_loss, rel=1e-5)
    assert result["accuracy"] == pytest.approx(accuracy)


def test_multiclass_sparse_cross_entropy_and_accuracy():
    model = _linear(3, "multiclass")
    annzoo.compile_model(model, task="multiclass")  # label_format="sparse"
    assert isinstance(model.loss, keras.losses.SparseCategoricalCrossentropy)
    assert _metric_classes(model) == ["SparseCategoricalAccuracy"]

    p = softmax(X @ W3 + B3)
    y = np.array([2, 0, 1, 1, 0, 2, 0, 2])
    cross_entropy = -np.mean(np.log(p[np.arange(N), y]))
    accuracy = np.mean(p.argmax(axis=1) == y)
    assert 0 < accuracy < 1
    result = _evaluate(model, X, y)
    assert set(result) == {"loss", "accuracy"}
    assert result["loss"] == pytest.approx(cross_entropy, rel=1e-5)
    assert result["accuracy"] == pytest.approx(accuracy)


def test_multiclass_one_hot_cross_entropy_and_accuracy():
    model = _linear(3, "multiclass")
    annzoo.compile_model(model, task="multiclass", label_format="one_hot")
    assert isinstance(model.loss, keras.losses.CategoricalCrossentropy)
    assert _metric_classes(model) == ["CategoricalAccuracy"]

    p = softmax(X @ W3 + B3)
    labels = np.array([2, 0, 1, 1, 0, 2, 0, 2])
    y = np.eye(3, dtype="float32")[labels]
    cross_entropy = -np.mean(np.sum(y * np.log(p), axis=1))
    accuracy = np.mean(p.argmax(axis=1) == labels)
    result = _evaluate(model, X, y)
    assert result["loss"] == pytest.approx(cross_entropy, rel=1e-5)
    assert result["accuracy"] == pytest.approx(accuracy)


def test_regression_mse_and_mae():
    model = _linear(2, "regression")
    annzoo.compile_model(model, task="regression")
    assert isinstance(model.loss, keras.losses.MeanSquaredError)
    assert _metric_classes(model) == ["MeanAbsoluteError"]

    pred = X @ W3[:, :2] + B3[:2]
    y = np.array(
        [
            [1.0, -1.0],
            [0.5, 2.0],
            [0.0, 0.0],
            [3.0, 1.0],
            [-2.0, 0.5],
            [1.0, 1.0],
            [0.25, -0.75],
            [2.0, -3.0],
        ],
        dtype="float32",
    )
    mse = np.mean((pred - y) ** 2)
    mae = np.mean(np.abs(pred - y))
    result = _evaluate(model, X, y)
    assert set(result) == {"loss", "mae"}
    assert result["loss"] == pytest.approx(mse, rel=1e-5)
    assert result["mae"] == pytest.approx(mae, rel=1e-5)


def test_compile_returns_the_same_model():
    model = _linear(1, "binary")
    assert annzoo.compile_model(model, task="binary") is model
    assert model.compiled


def test_default_task_is_multiclass_with_adam():
    model = _linear(3, "multiclass")
    annzoo.compile_model(model)
    assert isinstance(model.loss, keras.losses.SparseCategoricalCrossentropy)
    assert type(model.optimizer) is keras.optimizers.Adam


# ---------------------------------------------------------------------------
# from_logits, overrides, compile kwargs
# ---------------------------------------------------------------------------


def _raw_scores(width, weights, bias):
    """A model ending in raw scores (no output activation)."""
    inputs = keras.Input((3,))
    dense = keras.layers.Dense(width)
    model = keras.Model(inputs, dense(inputs))
    dense.set_weights([weights, bias])
    return model


def test_from_logits_multiclass():
    model = _raw_scores(3, W3, B3)
    annzoo.compile_model(model, task="multiclass", from_logits=True)
    assert model.loss.get_config()["from_logits"] is True
    logits = X @ W3 + B3
    y = np.array([2, 0, 1, 1, 0, 2, 0, 2])
    log_softmax = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
    expected = -np.mean(log_softmax[np.arange(N), y])
    result = _evaluate(model, X, y)
    assert result["loss"] == pytest.approx(expected, rel=1e-5)
    assert result["accuracy"] == pytest.approx(np.mean(logits.argmax(1) == y))


def test_from_logits_binary_thresholds_scores_at_zero():
    w = np.array([[1.0], [0.0], [0.0]])
    b = np.array([0.0])
    model = _raw_scores(1, w, b)
    annzoo.compile_model(model, task="binary", from_logits=True)
    # Scores = first feature. 0.25 is a positive score below 0.5: a threshold
    # of 0.5 would call it negative, the logit threshold 0 calls it positive.
    x = np.array([[0.25, 0, 0], [-0.3, 0, 0], [2.0, 0, 0], [-1.0, 0, 0]], "float32")
    y = np.array([[1.0], [0.0], [1.0], [1.0]], "float32")
    z = x[:, :1].astype(np.float64)
    # Log loss from logits: softplus(z) - y z.
    expected = np.mean(np.log1p(np.exp(z)) - y * z)
    result = _evaluate(model, x, y)
    assert result["loss"] == pytest.approx(expected, rel=1e-5)
    assert result["accuracy"] == pytest.approx(np.mean((z > 0) == (y == 1)))
    assert result["accuracy"] == pytest.approx(0.75)


def test_loss_and_metrics_overrides_pass_through():
    model = _linear(1, "binary")
    annzoo.compile_model(
        model, task="binary", loss="mean_squared_error", metrics=["mae"]
    )
    p = sigmoid(X @ W3[:, :1] + B3[:1])
    y = np.array([[1], [0], [0], [1], [1], [1], [0], [0]], dtype="float32")
    result = _evaluate(model, X, y)
    assert set(result) == {"loss", "mae"}
    assert result["loss"] == pytest.approx(np.mean((p - y) ** 2), rel=1e-5)
    assert result["mae"] == pytest.approx(np.mean(np.abs(p - y)), rel=1e-5)


def test_loss_instance_override():
    model = _linear(2, "regression")
    loss = keras.losses.MeanAbsoluteError()
    annzoo.compile_model(model, task="regression", loss=loss, metrics=[])
    assert model.loss is loss
    pred = X @ W3[:, :2] + B3[:2]
    y = np.zeros((N, 2), "float32")
    result = _evaluate(model, X, y)
    assert set(result) == {"loss"}
    assert result["loss"] == pytest.approx(np.mean(np.abs(pred)), rel=1e-5)


def test_compile_kwargs_reach_the_model():
    model = _linear(1, "binary")
    annzoo.compile_model(
        model,
        task="binary",
        steps_per_execution=4,
        jit_compile=False,
        run_eagerly=True,
    )
    assert model.steps_per_execution == 4
    assert model.jit_compile is False
    assert model.run_eagerly is True
    config = model.get_compile_config()
    assert config["steps_per_execution"] == 4


# ---------------------------------------------------------------------------
# Optimizers
# ---------------------------------------------------------------------------

# name -> (Keras class, attributes to check, Keras' default learning rate).
OPTIMIZERS = {
    "sgd": (keras.optimizers.SGD, {"momentum": 0.0, "nesterov": False}, 0.01),
    "momentum": (keras.optimizers.SGD, {"momentum": 0.9, "nesterov": False}, 0.01),
    "nesterov": (keras.optimizers.SGD, {"momentum": 0.9, "nesterov": True}, 0.01),
    "adam": (keras.optimizers.Adam, {}, 0.001),
    "adamw": (keras.optimizers.AdamW, {}, 0.001),
    "adagrad": (keras.optimizers.Adagrad, {}, 0.001),
    "rmsprop": (keras.optimizers.RMSprop, {}, 0.001),
    "nadam": (keras.optimizers.Nadam, {}, 0.001),
    "adamax": (keras.optimizers.Adamax, {}, 0.001),
    "adadelta": (keras.optimizers.Adadelta, {}, 0.001),
    "lion": (keras.optimizers.Lion, {}, 0.001),
}


@pytest.fixture(scope="module")
def model():
    return _linear(1, "binary")


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_optimizer_by_name(model, name):
    cls, attributes, default_lr = OPTIMIZERS[name]
    annzoo.compile_model(model, task="binary", optimizer=name)
    assert type(model.optimizer) is cls
    for attribute, value in attributes.items():
        assert getattr(model.optimizer, attribute) == value, attribute
    assert _lr(model.optimizer) == pytest.approx(default_lr, rel=1e-6)

    annzoo.compile_model(model, task="binary", optimizer=name, learning_rate=0.0375)
    assert type(model.optimizer) is cls
    assert _lr(model.optimizer) == pytest.approx(0.0375, rel=1e-6)


def test_each_compile_gets_a_fresh_optimizer(model):
    annzoo.compile_model(model, task="binary", optimizer="adam")
    first = model.optimizer
    annzoo.compile_model(model, task="binary", optimizer="adam")
    assert model.optimizer is not first


def test_optimizer_instance_is_accepted(model):
    optimizer = keras.optimizers.RMSprop(learning_rate=0.5)
    annzoo.compile_model(model, task="binary", optimizer=optimizer)
    assert model.optimizer is optimizer
    assert _lr(optimizer) == pytest.approx(0.5)
    # learning_rate= applies to the instance too.
    optimizer = keras.optimizers.SGD(learning_rate=0.5)
    annzoo.compile_model(model, task="binary", optimizer=optimizer, learning_rate=0.2)
    assert model.optimizer is optimizer
    assert _lr(optimizer) == pytest.approx(0.2, rel=1e-6)


def _one_weight_model(w0):
    inputs = keras.Input((1,))
    dense = keras.layers.Dense(1, use_bias=False, name="w")
    model = keras.Model(inputs, dense(inputs))
    dense.set_weights([np.array([[w0]])])
    return model


def _weight(model):
    return float(_np(model.get_layer("w").kernel)[0, 0])


def test_sgd_step_is_minus_lr_times_gradient():
    lr, w0 = 0.1, 0.5
    x = np.array([[1.0], [2.0], [-1.0], [3.0]], "float32")
    y = np.array([[2.0], [3.0], [0.0], [-1.0]], "float32")
    model = _one_weight_model(w0)
    annzoo.compile_model(model, task="regression", optimizer="sgd", learning_rate=lr)
    # L(w) = mean((w x - y)^2)  =>  dL/dw = mean(2 (w x - y) x).
    grad = np.mean(2 * (w0 * x - y) * x)
    assert grad == pytest.approx(2 * (-1.5 * 1 + -2.0 * 2 + -0.5 * -1 + 2.5 * 3) / 4)
    model.train_on_batch(x, y)
    assert _weight(model) == pytest.approx(w0 - lr * grad, abs=1e-6)
    assert _weight(model) != pytest.approx(w0, abs=1e-3)


def test_momentum_accumulates_velocity():
    lr, w0 = 0.05, 1.0
    x = np.array([[1.0], [-2.0]], "float32")
    y = np.array([[0.0], [1.0]], "float32")
    model = _one_weight_model(w0)
    annzoo.compile_model(
        model, task="regression", optimizer="momentum", learning_rate=lr
    )

    def grad(w):
        return np.mean(2 * (w * x - y) * x)

    # v <- 0.9 v - lr g;  w <- w + v.
    v1 = -lr * grad(w0)
    w1 = w0 + v1
    v2 = 0.9 * v1 - lr * grad(w1)
    w2 = w1 + v2
    model.train_on_batch(x, y)
    assert _weight(model) == pytest.approx(w1, abs=1e-6)
    model.train_on_batch(x, y)
    assert _weight(model) == pytest.approx(w2, abs=1e-6)
    # Plain SGD would land elsewhere.
    assert w2 != pytest.approx(w1 - lr * grad(w1), abs=1e-4)


@pytest.mark.skipif(
    keras.backend.backend() != "tensorflow",
    reason="the double trace is the TensorFlow trainer's",
)
@pytest.mark.parametrize("source", ["arrays", "dataset"])
def test_build_fit_state_traces_the_step_once_and_trains_the_same(monkeypatch, source):
    import tensorflow as tf
    from keras.src.backend.tensorflow.trainer import TensorFlowTrainer

    traces = []
    step = TensorFlowTrainer.train_step

    def counted(self, data):
        traces.append(1)  # Python runs a step only while tracing it
        return step(self, data)

    monkeypatch.setattr(TensorFlowTrainer, "train_step", counted)
    rng = np.random.default_rng(0)
    x = rng.random((40, 3), dtype=np.float32)
    y = rng.integers(0, 4, 40).astype(np.int32)

    def trained(prebuild):
        keras.utils.set_random_seed(0)
        model = annzoo.build_mlp(3, 4, hidden_units=(8,), dropout=0.2, compile=False)
        annzoo.compile_model(model, task="multiclass", optimizer="adam")
        model.steps_per_execution = 4
        data = (
            (x, y)
            if source == "arrays"
            else (tf.data.Dataset.from_tensor_slices((x, y)).batch(8),)
        )
        if prebuild:
            assert annzoo.tasks.build_fit_state(model, *data)
            # Adam's moments and the accuracy's totals exist before any step.
            assert len(model.optimizer.variables) == 2 + 2 * 4
            assert not annzoo.tasks.build_fit_state(model, *data)  # built
        traces.clear()
        kwargs = {"batch_size": 8} if source == "arrays" else {}
        model.fit(*data, epochs=2, verbose=0, shuffle=False, **kwargs)
        return len(traces), [keras.ops.convert_to_numpy(w) for w in model.weights]

    plain_traces, plain_weights = trained(False)
    traces_once, weights = trained(True)
    assert traces_once == 1 <= plain_traces  # Keras 3.15 alone: 2
    for a, b in zip(plain_weights, weights, strict=True):
        np.testing.assert_array_equal(a, b)


def test_build_fit_state_leaves_other_inputs_to_keras():
    model = annzoo.build_mlp(3, 4, hidden_units=(8,))
    assert not annzoo.tasks.build_fit_state(model, [[0.0, 1.0, 2.0]], [1])
    assert not annzoo.tasks.build_fit_state(
        annzoo.build_mlp(3, 4, hidden_units=(8,), compile=False), X, np.zeros(N)
    )


# -- task objects: labels, predictions, what a report draws --------------------


def _task(name):
    from annzoo.tasks import get_task

    return get_task(name)


@pytest.mark.parametrize(
    ("name", "y", "width", "fragment"),
    [
        ("multiclass", np.array([0, 1, 3]), 3, "class ids in [0, 2]"),
        ("multiclass", np.array([0.0, 1.5]), 3, "integer class ids"),
        ("multiclass", np.eye(3)[[0, 1]] * 0.5, 3, "one-hot rows"),
        ("binary", np.array([0, 1, 2]), 1, "must be 0 or 1"),
        ("binary", np.zeros((3, 2)), 1, "must have shape (3,) or (3, 1)"),
        ("regression", np.array([[np.nan], [1.0]]), 1, "finite"),
        ("regression", np.zeros((2, 3)), 2, "must have shape (2, 2)"),
        ("sequence", np.array([[1, 2, 9]]), 9, "token ids in [0, 8]"),
        ("sequence", np.array([[1.0, 2.0]]), 9, "integer token ids"),
        ("tagging", np.array([[0, -2]]), 3, "tag ids (-1 at padding) in [-1, 2]"),
        ("tagging", np.array([[0, 3]]), 3, "in [-1, 2]"),
    ],
)
def test_task_refuses_labels_its_loss_cannot_take(name, y, width, fragment):
    with pytest.raises(annzoo.AnnzooError) as error:
        _task(name).check_labels(y, num_outputs=width, where="`y`")
    assert fragment in str(error.value)
    assert str(error.value).startswith("`y`")


@pytest.mark.parametrize(
    ("name", "y", "width"),
    [
        ("multiclass", np.array([0, 2, 1]), 3),
        ("multiclass", np.eye(3)[[0, 2]], 3),
        ("binary", np.array([[0], [1]]), 1),
        ("regression", np.array([0.5, -3.0]), 1),
        ("sequence", np.array([[4, 5, 2, 0]]), 6),
        ("tagging", np.array([[0, 2, -1]]), 3),
    ],
)
def test_task_accepts_labels_that_fit(name, y, width):
    _task(name).check_labels(y, num_outputs=width, where="`y`")


def test_tagging_labels_need_one_tag_per_token():
    tokens = np.ones((2, 4), dtype="int32")
    expected = r"one tag id per token, shape \(2, 4\)"
    with pytest.raises(annzoo.AnnzooError, match=expected):
        _task("tagging").check_labels(
            np.zeros((2, 3), "int32"), num_outputs=3, where="`y`", x=tokens
        )


def test_task_predictions_are_the_numpy_decisions():
    outputs = np.array([[0.2, 0.7, 0.1], [0.6, 0.3, 0.1]])
    np.testing.assert_array_equal(_task("multiclass").predictions(outputs), [1, 0])
    probabilities = np.array([[0.2], [0.51], [0.5]])
    np.testing.assert_array_equal(_task("binary").predictions(probabilities), [0, 1, 0])
    values = np.array([[1.5], [-2.0]])
    np.testing.assert_array_equal(_task("regression").predictions(values), [1.5, -2.0])


def test_tasks_say_what_a_report_draws_and_what_they_train_on():
    # Classes of one label per sample get a confusion matrix; tags are scored
    # by entity F1 instead; values and token sequences have no classes to confuse.
    drawn = {name for name in annzoo.tasks.TASKS if _task(name).confusion_matrix}
    assert drawn == {"multiclass", "binary"}
    structures = {name: _task(name).structure for name in annzoo.tasks.TASKS}
    assert structures == {
        "binary": "sample",
        "multiclass": "sample",
        "regression": "sample",
        "sequence": "sequence",
        "tagging": "tagging",
        "reconstruction": "sample",
        "generation": "sequence",
        "adversarial": "sample",
        "bernoulli": "sample",
    }
    activations = {name: _task(name).activation for name in annzoo.tasks.TASKS}
    assert activations["binary"] == "sigmoid" and activations["regression"] == "linear"


def test_register_task_refuses_a_second_task_of_the_same_name():
    from annzoo.tasks import Task, register_task

    class Twice(Task):
        name = "multiclass"

    with pytest.raises(annzoo.AnnzooError, match="already registered"):
        register_task(Twice())


def test_reconstruction_compiles_to_the_numpy_mean_squared_error():
    rng = np.random.default_rng(3)
    x = rng.random((6, 5), dtype=np.float32)
    inputs = keras.Input((5,))
    outputs = keras.layers.Dense(5, activation="sigmoid")(inputs)
    model = annzoo.compile_model(keras.Model(inputs, outputs), task="reconstruction")
    predicted = keras.ops.convert_to_numpy(model(x))
    logs = model.evaluate(x, x, verbose=0, return_dict=True)
    np.testing.assert_allclose(logs["loss"], np.mean((x - predicted) ** 2), rtol=1e-5)
    np.testing.assert_allclose(logs["mae"], np.mean(np.abs(x - predicted)), rtol=1e-5)
    assert _task("reconstruction").activation == "sigmoid"
    with pytest.raises(annzoo.AnnzooError, match=r"values in \[0, 1\]"):
        _task("reconstruction").check_labels(x * 255, num_outputs=5, where="`y`")


def test_generation_loss_leaves_padding_out_as_numpy_says():
    # Next-token cross-entropy over the non-padding steps only.
    probabilities = np.array(
        [[[0.1, 0.6, 0.3], [0.2, 0.2, 0.6], [0.5, 0.25, 0.25]]], dtype=np.float32
    )
    labels = np.array([[1, 2, 0]])  # the last step is padding (id 0)
    loss, metrics = _task("generation").loss_and_metrics()
    expected = -(np.log(0.6) + np.log(0.6)) / 2
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(loss(labels, probabilities)), expected, rtol=1e-5
    )
    assert [m.name for m in metrics] == ["token_accuracy"]
    _task("generation").check_labels(labels, num_outputs=3, where="`y`")

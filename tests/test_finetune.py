"""Tests of annzoo.finetune, freeze, unfreeze, replace_head and feature_extractor.

Expected layer lists are written by hand from the models built here; frozen
weights are compared bit for bit before and after a real training step.
"""

from __future__ import annotations

import keras
import numpy as np
import pytest

import annzoo
from annzoo import AnnzooError
from annzoo.layers import GrayscaleToRGB

HEAD = ["head_logits", "predictions"]


def _np(x):
    return np.asarray(keras.ops.convert_to_numpy(x))


def _chain():
    """input -> dense1 -> act1 -> drop1 -> dense2 -> out (Dense with softmax)."""
    inputs = keras.Input((6,), name="features")
    x = keras.layers.Dense(8, name="dense1")(inputs)
    x = keras.layers.Activation("relu", name="act1")(x)
    x = keras.layers.Dropout(0.1, name="drop1")(x)
    x = keras.layers.Dense(5, name="dense2")(x)
    outputs = keras.layers.Dense(3, activation="softmax", name="out")(x)
    return keras.Model(inputs, outputs, name="chain")


def _cnn(**overrides):
    options = dict(filters=(4, 6), batch_norm=True, hidden_units=(8,), dropout=0.2)
    return annzoo.build_cnn((16, 16, 3), 4, **{**options, **overrides})


def _names(model):
    return [layer.name for layer in model.layers]


def _weights(model, names):
    return {n: [_np(w).copy() for w in model.get_layer(n).weights] for n in names}


def _images(n=8, shape=(16, 16, 3), seed=0):
    # Far from zero mean, so batch statistics differ from the moving ones.
    return np.random.default_rng(seed).normal(3.0, 2.0, (n, *shape)).astype("f4")


def _step(model, x, num_classes):
    y = np.arange(len(x)) % num_classes
    loss = model.train_on_batch(x, y, return_dict=True)["loss"]
    assert np.isfinite(loss)


# --- truncation ---------------------------------------------------------------


@pytest.mark.parametrize(
    "truncate, kept",
    [
        (1, ["features", "dense1", "act1", "drop1", "dense2"]),
        (2, ["features", "dense1", "act1", "drop1"]),
        (3, ["features", "dense1", "act1"]),
    ],
)
def test_truncate_counts_layers_from_the_output(truncate, kept):
    new = annzoo.finetune(_chain(), truncate=truncate)
    assert _names(new) == kept + HEAD
    assert new.output_shape == (None, 3)  # the old head's width


def test_an_activation_layer_counts_with_the_dense_before_it():
    inputs = keras.Input((4,), name="x")
    x = keras.layers.Dense(6, name="hidden")(inputs)
    x = keras.layers.Dense(2, name="logits")(x)
    outputs = keras.layers.Activation("sigmoid", name="prob")(x)
    model = keras.Model(inputs, outputs)
    new = annzoo.finetune(model, truncate=1)
    assert _names(new) == ["x", "hidden", *HEAD]
    assert new.get_layer("predictions").activation.__name__ == "sigmoid"  # binary


@pytest.mark.parametrize(
    "truncate, removed",
    [
        (1, HEAD),
        (2, ["head_dense1_dropout", *HEAD]),
        (3, ["head_dense1", "head_dense1_act", "head_dense1_dropout", *HEAD]),
    ],
)
def test_truncate_on_an_annzoo_model(truncate, removed):
    model = _cnn()
    new = annzoo.finetune(model, truncate=truncate)
    kept = [n for n in _names(model) if n not in removed]
    assert _names(new) == kept + HEAD


def test_truncate_on_a_sequential_model():
    model = keras.Sequential(
        [
            keras.Input((5,)),
            keras.layers.Dense(4, name="d1"),
            keras.layers.Dense(3, name="d2"),
            keras.layers.Softmax(name="soft"),
        ]
    )
    new = annzoo.finetune(model, num_classes=2)
    assert _names(new)[1:] == ["d1", *HEAD]
    assert new.output_shape == (None, 2)


# --- freezing, batch norm, learning rate ----------------------------------------


def test_frozen_base_and_batchnorm_statistics_do_not_move():
    model = _cnn()
    new = annzoo.finetune(model, num_classes=3)
    base = [n for n in _names(new)[1:] if n not in HEAD]
    assert all(not new.get_layer(n).trainable for n in base)
    before = _weights(new, base + ["head_logits"])
    _step(new, _images(), 3)
    after = _weights(new, base + ["head_logits"])
    for name in base:  # BN moving mean and variance included
        for a, b in zip(before[name], after[name], strict=True):
            np.testing.assert_array_equal(a, b, err_msg=name)
    assert not np.array_equal(before["head_logits"][0], after["head_logits"][0])


def test_batchnorm_frozen_while_the_rest_trains():
    new = annzoo.finetune(_cnn(), freeze=None)
    names = ["block1_conv1", "block1_conv1_bn"]
    before = _weights(new, names)
    _step(new, _images(), 4)
    after = _weights(new, names)
    assert not np.array_equal(before["block1_conv1"][0], after["block1_conv1"][0])
    for a, b in zip(before["block1_conv1_bn"], after["block1_conv1_bn"], strict=True):
        np.testing.assert_array_equal(a, b)


def test_batchnorm_train_lets_the_statistics_move():
    new = annzoo.finetune(_cnn(), freeze=None, batchnorm="train")
    bn = new.get_layer("block1_conv1_bn")
    mean = _np(bn.moving_mean).copy()
    _step(new, _images(), 4)
    assert not np.allclose(mean, _np(bn.moving_mean))


def test_freeze_rules_select_the_first_layers():
    model = _cnn()
    base = [n for n in _names(model)[1:] if n not in HEAD]  # 12 layers
    assert len(base) == 12

    def frozen(**kwargs):
        new = annzoo.finetune(model, batchnorm="train", compile=False, **kwargs)
        return [n for n in base if not new.get_layer(n).trainable]

    assert frozen(freeze=3) == base[:3]
    assert frozen(freeze=0.5) == base[:6]
    assert frozen(freeze=1.0) == base
    assert frozen(freeze="block2_conv1") == base[: base.index("block2_conv1") + 1]
    assert frozen(freeze=None) == frozen(freeze=0) == []
    assert frozen(freeze="base") == base
    # Batch norm frozen on top of the rule.
    new = annzoo.finetune(model, freeze=2, compile=False)
    assert not new.get_layer("block2_conv1_bn").trainable
    assert new.get_layer("block2_conv1").trainable


def test_unfreeze_restores_training():
    new = annzoo.finetune(_cnn(), num_classes=3)
    assert not new.get_layer("block1_conv1").trainable
    assert annzoo.unfreeze(new, batchnorm="train") is new
    assert all(layer.trainable for layer in new.layers)
    before = _weights(new, ["block1_conv1", "block1_conv1_bn"])
    _step(new, _images(), 3)
    after = _weights(new, ["block1_conv1", "block1_conv1_bn"])
    assert not np.array_equal(before["block1_conv1"][0], after["block1_conv1"][0])
    moving_mean = 2  # gamma, beta, moving_mean, moving_variance
    assert not np.array_equal(
        before["block1_conv1_bn"][moving_mean], after["block1_conv1_bn"][moving_mean]
    )


def test_unfreeze_top_layers_keeps_batchnorm_frozen():
    new = annzoo.finetune(_cnn(), num_classes=3)
    annzoo.unfreeze(new, from_layer="block2_conv1")
    assert not new.get_layer("block1_conv1").trainable
    assert new.get_layer("block2_conv1").trainable
    assert not new.get_layer("block2_conv1_bn").trainable
    assert new.get_layer("head_dense1").trainable
    annzoo.unfreeze(new, count=2)  # nothing new: the last two already train
    assert not new.get_layer("block1_conv1").trainable


def test_freeze_in_place_keeps_the_compile_settings():
    model = annzoo.compile_model(
        _cnn(compile=False), optimizer="sgd", learning_rate=0.05
    )
    assert annzoo.freeze(model, count=4) is model
    assert [layer.trainable for layer in model.layers[1:5]] == [False] * 4
    assert model.get_layer("head_dense1").trainable
    assert not model.get_layer("block2_conv1_bn").trainable  # batchnorm="frozen"
    assert model.get_layer("head_logits").trainable
    assert type(model.optimizer).__name__ == "SGD"
    assert float(model.optimizer.learning_rate) == pytest.approx(0.05, rel=1e-6)
    before = _weights(model, ["block1_conv1", "block2_conv1"])
    _step(model, _images(), 4)
    after = _weights(model, ["block1_conv1", "block2_conv1"])
    np.testing.assert_array_equal(before["block1_conv1"][0], after["block1_conv1"][0])
    assert not np.array_equal(before["block2_conv1"][0], after["block2_conv1"][0])
    annzoo.freeze(model)  # everything but the head
    assert [n for n in _names(model)[1:] if model.get_layer(n).trainable] == HEAD


def test_learning_rate_explicit_and_scaled():
    source = annzoo.compile_model(_chain(), optimizer="sgd", learning_rate=0.05)
    explicit = annzoo.finetune(source, learning_rate=0.003)
    assert float(explicit.optimizer.learning_rate) == pytest.approx(0.003, rel=1e-6)
    scaled = annzoo.finetune(source)
    assert float(scaled.optimizer.learning_rate) == pytest.approx(0.005, rel=1e-6)
    assert type(scaled.optimizer).__name__ == "SGD"  # the source's optimizer
    assert scaled.optimizer is not source.optimizer
    half = annzoo.finetune(source, learning_rate_scale=0.5)
    assert float(half.optimizer.learning_rate) == pytest.approx(0.025, rel=1e-6)
    uncompiled = annzoo.finetune(_cnn(compile=False))
    assert float(uncompiled.optimizer.learning_rate) == pytest.approx(1e-4, rel=1e-6)
    assert getattr(annzoo.finetune(_chain(), compile=False), "optimizer", None) is None


def test_replace_head_trains_everything():
    model = _cnn()
    new = annzoo.replace_head(model, 2, task="binary")
    assert new.output_shape == (None, 2)
    assert new.get_layer("predictions").activation.__name__ == "sigmoid"
    assert all(layer.trainable for layer in new.layers)
    assert float(new.optimizer.learning_rate) == pytest.approx(1e-3, rel=1e-6)


# --- the source stays untouched --------------------------------------------------


def test_source_model_is_not_modified():
    model = _cnn()
    annzoo.freeze(model, count=2, batchnorm="train")
    flags = [layer.trainable for layer in model.layers]
    weights = [_np(w).copy() for w in model.weights]
    names = _names(model)
    new = annzoo.finetune(model, num_classes=3, freeze=None, batchnorm="train")
    _step(new, _images(), 3)
    assert _names(model) == names
    assert [layer.trainable for layer in model.layers] == flags
    for a, b in zip(weights, model.weights, strict=True):
        np.testing.assert_array_equal(a, _np(b))
    shared = {id(layer) for layer in model.layers} & {id(x) for x in new.layers}
    assert not shared


def test_kept_layers_hold_the_source_weights():
    model = _cnn()
    new = annzoo.finetune(model, num_classes=3)
    x = _images(4)
    ours = annzoo.feature_extractor(new)(x, training=False)
    theirs = annzoo.feature_extractor(model)(x, training=False)
    np.testing.assert_array_equal(_np(ours), _np(theirs))


# --- sources on disk -----------------------------------------------------------


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory):
    from annzoo.training import Recipe, train

    recipe = Recipe(
        name="digits_finetune_source",
        model={"name": "cnn", "filters": [4], "hidden_units": [8]},
        data={"dataset": "digits", "batch_size": 16, "limit": 48},
        compile={"optimizer": "sgd", "learning_rate": 0.02},
        fit={"epochs": 1},
        callbacks={"tensorboard": False, "early_stopping": None},
    )
    return train(recipe, output_dir=tmp_path_factory.mktemp("runs"), verbose=0)


def test_finetune_from_a_run_directory(digits_run):
    run_dir = digits_run.run_dir
    assert (run_dir / "best.keras").is_file()
    new = annzoo.finetune(run_dir, num_classes=3)
    assert new.input_shape == (None, 8, 8, 1) and new.output_shape == (None, 3)
    # 0.1 x the run's SGD learning rate, read from the saved optimizer.
    assert type(new.optimizer).__name__ == "SGD"
    assert float(new.optimizer.learning_rate) == pytest.approx(0.002, rel=1e-6)
    saved = keras.saving.load_model(run_dir / "best.keras")
    x = np.random.default_rng(0).random((4, 8, 8, 1), dtype=np.float32)
    np.testing.assert_array_equal(
        _np(annzoo.feature_extractor(new)(x)),
        _np(annzoo.feature_extractor(saved)(x)),
    )
    _step(new, x, 3)


def test_finetune_from_a_keras_file(tmp_path):
    model = _chain()
    path = tmp_path / "chain.keras"
    model.save(path)
    new = annzoo.finetune(str(path), truncate=2, num_classes=4)
    assert _names(new) == ["features", "dense1", "act1", "drop1", *HEAD]
    np.testing.assert_array_equal(
        _np(new.get_layer("dense1").kernel), _np(model.get_layer("dense1").kernel)
    )
    extractor = annzoo.feature_extractor(path, "act1")
    assert extractor.output_shape == (None, 8)


# --- input adaptation -----------------------------------------------------------


def test_grayscale_to_rgb_is_a_channel_repeat():
    x = np.random.default_rng(1).random((2, 5, 4, 1), dtype=np.float32)
    np.testing.assert_array_equal(_np(GrayscaleToRGB()(x)), np.repeat(x, 3, axis=-1))
    layer = GrayscaleToRGB.from_config(GrayscaleToRGB(channels=4).get_config())
    assert layer.channels == 4


def test_input_adaptation_gray_and_smaller(tmp_path, reloader):
    model = _cnn()
    new = annzoo.finetune(model, num_classes=3, input_shape=(8, 8, 1))
    assert new.input_shape == (None, 8, 8, 1) and new.output_shape == (None, 3)
    assert _names(new)[1:3] == ["input_adapter_resize", "input_adapter_rgb"]
    x = np.random.default_rng(2).random((4, 8, 8, 1), dtype=np.float32)
    rgb = annzoo.feature_extractor(new, "input_adapter_rgb")(x)
    resized = _np(keras.ops.image.resize(x, (16, 16)))
    np.testing.assert_allclose(_np(rgb), np.repeat(resized, 3, axis=-1), atol=1e-6)
    # The adapted model computes the source's features of the repeated image.
    ours = _np(annzoo.feature_extractor(new)(x, training=False))
    theirs = _np(annzoo.feature_extractor(model)(np.repeat(resized, 3, -1)))
    np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-5)
    _step(new, x, 3)

    expected = _np(new(x, training=False))
    new.save(tmp_path / "adapted.keras")
    np.save(tmp_path / "x.npy", x)
    reloader.predict(tmp_path / "adapted.keras", tmp_path / "x.npy", tmp_path / "y.npy")
    np.testing.assert_array_equal(np.load(tmp_path / "y.npy"), expected)


def test_input_adaptation_same_size_and_color_to_gray():
    model = _cnn()
    gray = annzoo.finetune(model, input_shape=(16, 16, 1), compile=False)
    assert "input_adapter_resize" not in _names(gray)
    x = np.random.default_rng(3).random((2, 16, 16, 1), dtype=np.float32)
    rgb = annzoo.feature_extractor(gray, "input_adapter_rgb")(x)
    np.testing.assert_array_equal(_np(rgb), np.repeat(x, 3, axis=-1))
    source = annzoo.build_cnn((16, 16, 1), 4, filters=(4,))
    color = annzoo.finetune(source, input_shape=(16, 16, 3))
    conv = color.get_layer("input_adapter_conv")
    assert conv.trainable and conv.kernel.shape == (1, 1, 3, 1)
    assert color.input_shape == (None, 16, 16, 3)


def test_the_sources_own_input_shape_changes_nothing():
    new = annzoo.finetune(_chain(), input_shape=(6,), compile=False)
    assert _names(new) == ["features", "dense1", "act1", "drop1", "dense2", *HEAD]
    same = annzoo.finetune(_cnn(), input_shape=(16, 16, 3), compile=False)
    assert not [n for n in _names(same) if n.startswith("input_adapter")]


# --- feature extractor ---------------------------------------------------------


def test_feature_extractor_defaults_to_the_heads_input():
    model = _cnn()
    extractor = annzoo.feature_extractor(model)
    head_input = model.get_layer("head_logits").input
    assert extractor.output_shape == tuple(head_input.shape) == (None, 8)
    assert getattr(extractor, "optimizer", None) is None
    x = _images(3)
    reference = keras.Model(model.input, head_input)
    np.testing.assert_array_equal(_np(extractor(x)), _np(reference(x)))


def test_feature_extractor_by_name_and_index():
    model = _cnn()
    by_name = annzoo.feature_extractor(model, "block2_pool")
    assert by_name.output_shape == (None, 4, 4, 6)
    by_index = annzoo.feature_extractor(model, 1)
    assert by_index.output_shape == (None, 16, 16, 4)  # block1_conv1
    assert annzoo.feature_extractor(model, -1).output_shape == (None, 4)


# --- errors ----------------------------------------------------------------------


def _merge_model():
    inputs = keras.Input((4,), name="x")
    a = keras.layers.Dense(3, name="a")(inputs)
    b = keras.layers.Dense(3, name="b")(inputs)
    x = keras.layers.Add(name="add")([a, b])
    return keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(x))


def _relu_output():
    inputs = keras.Input((4,))
    x = keras.layers.Dense(3)(inputs)
    return keras.Model(inputs, keras.layers.Dense(2, activation="relu")(x))


@pytest.mark.parametrize(
    "call, argument",
    [
        (lambda m: annzoo.finetune(m, truncate=0), "truncate"),
        (lambda m: annzoo.finetune(m, truncate=4), "truncate"),
        (lambda m: annzoo.finetune(_merge_model(), truncate=2), "truncate"),
        (lambda m: annzoo.finetune(m, freeze="dense9"), "freeze"),
        (lambda m: annzoo.finetune(m, freeze="out"), "freeze"),  # removed layer
        (lambda m: annzoo.finetune(m, freeze=1.5), "freeze"),
        (lambda m: annzoo.finetune(m, freeze=9), "freeze"),
        (lambda m: annzoo.finetune(m, freeze=[1]), "freeze"),
        (lambda m: annzoo.finetune(m, batchnorm="on"), "batchnorm"),
        (lambda m: annzoo.finetune(m, num_classes=1), "num_classes"),
        (lambda m: annzoo.finetune(m, learning_rate=-1.0), "learning_rate"),
        (lambda m: annzoo.finetune(m, learning_rate_scale=0), "learning_rate_scale"),
        (lambda m: annzoo.finetune(m, task="sequence"), "task"),
        (lambda m: annzoo.finetune(_relu_output()), "task"),
        (lambda m: annzoo.finetune(m, input_shape=(8, 8)), "input_shape"),
        (lambda m: annzoo.finetune(m, input_shape=(8, 8, 1)), "input_shape"),
        (lambda m: annzoo.finetune(m, compile={"learning_rate": 0.1}), "compile"),
        (lambda m: annzoo.finetune(42), "model"),
        (lambda m: annzoo.finetune("/nonexistent/run"), "model"),
        (lambda m: annzoo.freeze(m, count=1, fraction=0.5), "count"),
        (lambda m: annzoo.freeze(m, fraction=2.0), "fraction"),
        (lambda m: annzoo.freeze(m, count=-1), "count"),
        (lambda m: annzoo.freeze(m, up_to="nope"), "up_to"),
        (lambda m: annzoo.unfreeze(m, from_layer="nope"), "from_layer"),
        (lambda m: annzoo.unfreeze(m, batchnorm="frozen!"), "batchnorm"),
        (lambda m: annzoo.feature_extractor(m, "nope"), "layer"),
        (lambda m: annzoo.feature_extractor(m, 99), "layer"),
    ],
)
def test_bad_arguments_name_the_argument(call, argument):
    with pytest.raises(AnnzooError, match=f"`{argument}`"):
        call(_chain())


def test_bad_paths_name_the_argument(tmp_path):
    empty = tmp_path / "run"
    empty.mkdir()
    with pytest.raises(AnnzooError, match="`model`.*best.keras"):
        annzoo.finetune(empty)
    text = tmp_path / "model.txt"
    text.write_text("not a model")
    with pytest.raises(AnnzooError, match="`model`"):
        annzoo.finetune(text)

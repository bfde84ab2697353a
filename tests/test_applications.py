"""Tests of the keras.applications presets (annzoo.models.applications).

Nothing is downloaded: every model is built with ``weights=None``. Parameter
counts are checked against keras.applications' own models with their top
and against the backbone + dense-layer formula; the figures are those of the
keras.io applications table (ResNet50 25.6M, MobileNetV2 3.5M, EfficientNetB0
5.3M) at full precision.
"""

from __future__ import annotations

import keras
import numpy as np
import pytest

import annzoo
from annzoo import AnnzooError, UnknownNameError
from annzoo.models.applications import build_application

# preset -> (architecture, pooled features, total params with a 1000-way top).
PRESETS = {
    "resnet50_imagenet": ("ResNet50", 2048, 25_636_712),
    "mobilenetv2_imagenet": ("MobileNetV2", 1280, 3_538_984),
    "efficientnetb0_imagenet": ("EfficientNetB0", 1280, 5_330_571),
}
SMALL = (32, 32, 3)  # the smallest size keras.applications accepts


def _np(x):
    return np.asarray(keras.ops.convert_to_numpy(x))


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(PRESETS))
def test_preset_parameter_counts(name):
    architecture, features, published = PRESETS[name]
    info = annzoo.model_info(name)
    assert info.family == "applications"
    assert info.input_shape == (224, 224, 3) and info.output_shape == (1000,)
    assert info.config["weights"] == "imagenet"
    # The count does not depend on the image size (global pooling).
    model = annzoo.create_model(name, weights=None, input_shape=SMALL, compile=False)
    assert model.count_params() == published
    assert info.reference.matches(published) and info.reference.kind == "total"
    assert "keras.io/api/applications" in info.reference.source
    constructor = getattr(keras.applications, architecture)
    with_top = constructor(include_top=True, weights=None, input_shape=SMALL)
    assert with_top.count_params() == published
    backbone = constructor(
        include_top=False, weights=None, input_shape=SMALL, pooling="avg"
    )
    assert published == backbone.count_params() + features * 1000 + 1000


def test_the_model_is_flat_with_annzoos_head():
    model = build_application("MobileNetV2", SMALL, 10, weights=None)
    names = [layer.name for layer in model.layers]
    assert names[0] == "images" and names[-2:] == ["head_logits", "predictions"]
    assert "Conv_1" in names and "block_16_project" in names  # the backbone's
    assert model.name == "mobilenetv2" and model.optimizer is not None
    assert model.output_shape == (None, 10)
    x = np.random.default_rng(0).random((2, *SMALL), dtype=np.float32)
    probabilities = _np(model(x, training=False))
    np.testing.assert_allclose(probabilities.sum(axis=-1), 1.0, rtol=1e-5)


def test_options_pooling_dropout_task():
    model = build_application(
        "MobileNetV2",
        SMALL,
        1,
        weights=None,
        pooling="max",
        dropout=0.2,
        task="binary",
        compile=False,
    )
    names = [layer.name for layer in model.layers]
    assert names[-3:] == ["head_dropout", "head_logits", "predictions"]
    assert any(
        isinstance(layer, keras.layers.GlobalMaxPooling2D) for layer in model.layers
    )
    assert model.get_layer("predictions").activation.__name__ == "sigmoid"
    # From scratch, any channel count works.
    gray = build_application("ResNet50", (32, 32, 1), 3, weights=None, compile=False)
    assert gray.input_shape == (None, 32, 32, 1)


@pytest.mark.slow
def test_finetune_a_preset_at_smoke_size():
    model = annzoo.create_model(
        "mobilenetv2_imagenet", weights=None, input_shape=SMALL, num_classes=7
    )
    new = annzoo.finetune(model, num_classes=3)
    trainable = [layer.name for layer in new.layers if layer.trainable]
    assert trainable == ["images", "head_logits", "predictions"]
    x = np.random.default_rng(1).random((4, *SMALL), dtype=np.float32)
    before = [_np(w).copy() for w in new.weights]
    loss = new.train_on_batch(x, np.array([0, 1, 2, 0]), return_dict=True)["loss"]
    assert np.isfinite(loss)
    head = {id(w) for w in new.get_layer("head_logits").weights}
    for old, variable in zip(before, new.weights, strict=True):
        moved = not np.array_equal(old, _np(variable))
        assert moved == (id(variable) in head), variable.path
    # Grayscale and smaller images through the same backbone.
    gray = annzoo.finetune(model, num_classes=3, input_shape=(16, 16, 1))
    assert gray.input_shape == (None, 16, 16, 1) and gray.output_shape == (None, 3)
    features = annzoo.feature_extractor(gray)
    assert features.output_shape == (None, 1280)


def test_imagenet_weights_need_three_channels():
    with pytest.raises(AnnzooError, match=r"`input_shape`.*annzoo\.finetune"):
        build_application("ResNet50", (224, 224, 1), 10)


def test_errors_name_the_argument():
    with pytest.raises(UnknownNameError, match="`architecture`"):
        build_application("ResNet51", SMALL, weights=None)
    with pytest.raises(AnnzooError, match="`pooling`"):
        build_application("ResNet50", SMALL, weights=None, pooling="flatten")
    with pytest.raises(AnnzooError, match="`weights`"):
        build_application("ResNet50", SMALL, weights=3)
    with pytest.raises(AnnzooError, match="input_shape=\\(16, 16, 3\\)"):
        build_application("ResNet50", (16, 16, 3), weights=None)
    with pytest.raises(AnnzooError, match="`num_classes`"):
        build_application("ResNet50", SMALL, 1, weights=None)


def test_failed_download_says_what_to_do(monkeypatch):
    from keras.src.utils import file_utils

    def offline(*args, **kwargs):
        raise Exception("URL fetch failure: no network")

    monkeypatch.setattr(file_utils, "get_file", offline)
    with pytest.raises(AnnzooError, match="weights=None"):
        build_application("MobileNetV2", (96, 96, 3), 10)


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_presets_ask_keras_for_the_imagenet_weights_and_none_passes_through(
    name, monkeypatch
):
    """finetuning.md: the `*_imagenet` presets' ImageNet weights download on
    first use, `weights=None` gives untrained ones. Tests have no network, so
    this checks the request annzoo makes of keras.applications (the download
    itself is Keras'): the constructor is replaced by one that records its
    arguments and returns a tiny backbone."""
    architecture = PRESETS[name][0]
    calls = []

    def constructor(**kwargs):
        calls.append(kwargs)
        inputs = kwargs["input_tensor"]
        pooled = keras.layers.GlobalAveragePooling2D()(inputs)
        return keras.Model(inputs, pooled, name="tiny_backbone")

    monkeypatch.setattr(keras.applications, architecture, constructor)
    annzoo.create_model(name, input_shape=SMALL, compile=False)
    annzoo.create_model(name, weights=None, input_shape=SMALL, compile=False)
    assert [call["weights"] for call in calls] == ["imagenet", None]
    for call in calls:
        assert call["include_top"] is False
        assert tuple(call["input_shape"]) == SMALL

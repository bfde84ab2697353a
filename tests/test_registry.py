"""Tests of the model registry: listing, create_model overrides, model_info and
Reference rounding. Expected shapes are written from the papers' settings."""

from __future__ import annotations

import fnmatch
import json

import keras
import numpy as np
import pytest

import annzoo
from annzoo import Reference

REQUIRED = [
    "lenet5",
    "logistic_regression",
    "mnist_convnet",
    "resnet18",
    "resnet20",
    "resnet50",
    "resnet56",
    "vgg16",
]

# name -> (family, task, input shape, outputs), from the original settings:
# 30 breast-cancer features, 32x32 LeNet inputs, 28x28 MNIST, 224x224 ImageNet
# (1000 classes), 32x32 CIFAR-10 (10 classes).
EXPECTED_INFO = {
    "logistic_regression": ("mlp", "binary", (30,), (1,)),
    "lenet5": ("cnn", "multiclass", (32, 32, 1), (10,)),
    "mnist_convnet": ("cnn", "multiclass", (28, 28, 1), (10,)),
    "vgg16": ("cnn", "multiclass", (224, 224, 3), (1000,)),
    "resnet18": ("cnn", "multiclass", (224, 224, 3), (1000,)),
    "resnet50": ("cnn", "multiclass", (224, 224, 3), (1000,)),
    "resnet20": ("cnn", "multiclass", (32, 32, 3), (10,)),
    "resnet56": ("cnn", "multiclass", (32, 32, 3), (10,)),
}


def _trainable(model):
    return int(sum(np.prod(w.shape) for w in model.trainable_weights))


# ---------------------------------------------------------------------------
# Listing
# ---------------------------------------------------------------------------


def test_list_models_is_sorted_and_has_the_required_presets():
    names = annzoo.list_models()
    assert names == sorted(names)
    assert len(set(names)) == len(names)
    assert set(REQUIRED) <= set(names)
    assert all(isinstance(n, str) for n in names)
    # Families are not presets.
    assert not set(names) & set(annzoo.list_families())


@pytest.mark.parametrize("pattern", ["resnet*", "*net5", "nomatch", "*", "?gg16"])
def test_list_models_patterns(pattern):
    everything = annzoo.list_models()
    expected = [n for n in everything if fnmatch.fnmatchcase(n, pattern)]
    assert annzoo.list_models(pattern) == expected


def test_list_models_pattern_examples():
    resnets = annzoo.list_models("resnet*")
    assert {"resnet18", "resnet20", "resnet50", "resnet56"} <= set(resnets)
    assert all(n.startswith("resnet") for n in resnets)
    assert resnets == sorted(resnets)
    assert "lenet5" in annzoo.list_models("*net5")
    assert all(n.endswith("net5") for n in annzoo.list_models("*net5"))
    assert annzoo.list_models("nomatch") == []
    assert annzoo.list_models("vgg16") == ["vgg16"]
    # Shell-style, case-sensitive.
    assert annzoo.list_models("RESNET*") == []


def test_list_families():
    assert annzoo.list_families() == [
        "applications",
        "autoencoder",
        "captioning",
        "cnn",
        "gan",
        "language_model",
        "mlp",
        "rnn",
        "seq2seq",
        "transformer",
    ]


# ---------------------------------------------------------------------------
# create_model
# ---------------------------------------------------------------------------


def test_create_model_overrides_win():
    model = annzoo.create_model("lenet5", num_classes=3, compile=False)
    assert model.output_shape == (None, 3)
    assert model.input_shape == (None, 32, 32, 1)  # the preset's input stays
    assert model.name == "lenet5"
    assert not model.compiled
    # The rest of LeNet-5 is kept: 5x5 valid convolutions, 6 and 16 maps,
    # dense 120 and 84. Trainable parameters by hand:
    # 5*5*1*6+6 = 156; 5*5*6*16+16 = 2416; 400*120+120 = 48120;
    # 120*84+84 = 10164; 84*3+3 = 255.
    assert _trainable(model) == 156 + 2416 + 48120 + 10164 + 255
    assert model.get_layer("block1_conv1").kernel.shape == (5, 5, 1, 6)


def test_create_model_preset_with_new_input_shape():
    model = annzoo.create_model("resnet20", input_shape=(16, 16, 3))
    assert model.name == "resnet20"
    assert model.input_shape == (None, 16, 16, 3)
    assert model.output_shape == (None, 10)
    assert model.compiled  # compiled by default
    assert isinstance(model.loss, keras.losses.SparseCategoricalCrossentropy)
    # Three stages of three basic blocks: 16x16, 8x8, 4x4.
    assert model.get_layer("stage3_block3_add").output.shape == (None, 4, 4, 64)
    assert model.get_layer("stage1_block1_conv1").output.shape == (None, 16, 16, 16)


def test_create_model_preset_name_is_the_model_name():
    model = annzoo.create_model("logistic_regression", compile=False)
    assert model.name == "logistic_regression"
    # Logistic regression: m + 1 = 31 weights.
    assert model.count_params() == 31
    assert model.output_shape == (None, 1)


def test_create_model_name_override():
    model = annzoo.create_model("logistic_regression", name="mine", compile=False)
    assert model.name == "mine"
    assert model.count_params() == 31


def test_create_model_preset_is_the_builder_with_the_preset_arguments():
    model = annzoo.create_model("mnist_convnet", compile=False)
    # keras.io "Simple MNIST convnet": 28 -> 26 -> 13 -> 11 -> 5; 32, 64 maps.
    assert model.get_layer("block2_pool").output.shape == (None, 5, 5, 64)
    dropout = [lay for lay in model.layers if isinstance(lay, keras.layers.Dropout)]
    assert len(dropout) == 1 and dropout[0].rate == pytest.approx(0.5)
    # 320 + 18496 + 16010 (Keras' summary of that example).
    assert model.count_params() == (9 * 32 + 32) + (9 * 32 * 64 + 64) + (1600 * 10 + 10)


@pytest.mark.parametrize("family", ["cnn", "mlp"])
def test_create_model_family(family):
    if family == "cnn":
        model = annzoo.create_model(
            "cnn", input_shape=(8, 8, 1), num_classes=4, filters=(2,), compile=False
        )
        assert model.input_shape == (None, 8, 8, 1)
        assert model.name == "cnn"
    else:
        model = annzoo.create_model(
            "mlp", input_shape=5, num_outputs=4, hidden_units=(3,), compile=False
        )
        assert model.count_params() == 5 * 3 + 3 + 3 * 4 + 4
        assert model.name == "mlp"
    assert model.output_shape == (None, 4)


def test_create_model_family_default_compiles():
    model = annzoo.create_model("mlp", input_shape=3, num_outputs=2, hidden_units=())
    assert model.compiled


# ---------------------------------------------------------------------------
# model_info
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", annzoo.list_models())
def test_model_info_every_preset(name):
    info = annzoo.model_info(name)
    assert isinstance(info, annzoo.ModelInfo)
    assert info.name == name
    assert info.family in annzoo.list_families()
    assert info.task in ("binary", "multiclass", "regression", "sequence", "tagging",
                         "adversarial", "generation", "bernoulli")  # fmt: skip
    assert isinstance(info.input_shape, tuple) and info.input_shape
    # One shape, or one per input (the translator); None is a free length.
    shapes = (
        info.input_shape
        if isinstance(info.input_shape[0], tuple)
        else [info.input_shape]
    )
    for shape in shapes:
        assert all(n is None or (isinstance(n, int) and n > 0) for n in shape)
    assert isinstance(info.output_shape, tuple) and info.output_shape
    assert info.output_shape[-1] >= (2 if info.task == "multiclass" else 1)
    if info.family == "cnn":
        assert len(info.input_shape) == 3
    assert isinstance(info.description, str) and info.description.strip()

    ref = info.reference
    assert isinstance(ref, Reference)
    assert isinstance(ref.params, int) and ref.params > 0
    assert ref.kind in {"total", "trainable"}
    assert isinstance(ref.source, str) and ref.source.strip()
    assert isinstance(ref.rounding, int) and ref.rounding >= 1
    assert ref.params % ref.rounding == 0

    data = info.to_dict()
    text = json.dumps(data)
    back = json.loads(text)
    assert back["name"] == name
    assert back["reference"]["params"] == ref.params
    assert back["reference"]["kind"] == ref.kind
    assert back["input_shape"] == json.loads(json.dumps(info.input_shape))

    if name in EXPECTED_INFO:
        family, task, input_shape, outputs = EXPECTED_INFO[name]
        assert (info.family, info.task, info.input_shape, info.output_shape) == (
            family,
            task,
            input_shape,
            outputs,
        )


def test_model_info_agrees_with_the_built_model():
    for name in ("logistic_regression", "lenet5", "mnist_convnet"):
        info = annzoo.model_info(name)
        model = annzoo.create_model(name, compile=False)
        assert model.input_shape == (None, *info.input_shape)
        assert model.output_shape == (None, *info.output_shape)


def test_model_info_family():
    info = annzoo.model_info("cnn")
    assert info.family == "cnn" and info.name == "cnn"
    assert info.reference is None
    assert info.description
    assert info.task == "multiclass"
    json.dumps(info.to_dict())
    mlp = annzoo.model_info("mlp")
    assert mlp.family == "mlp" and mlp.reference is None


def test_model_info_config_has_preset_values_over_defaults():
    info = annzoo.model_info("resnet20")
    assert info.config["block"] == "basic"
    assert info.config["shortcut"] == "zero_pad"
    assert tuple(np.atleast_1d(info.config["filters"])) == (16, 32, 64)
    # A builder default the preset does not set.
    assert info.config["dropout"] == 0.0


# ---------------------------------------------------------------------------
# Reference
# ---------------------------------------------------------------------------


def test_reference_matches_honours_rounding():
    # He et al. print ResNet-20 as "0.27M": rounding to 10k.
    ref = Reference(params=270_000, kind="trainable", source="Table 6", rounding=10_000)
    assert ref.matches(269_722)
    assert ref.matches(270_000)
    assert ref.matches(274_999)
    assert ref.matches(265_001)
    assert not ref.matches(280_000)
    assert not ref.matches(275_001)
    assert not ref.matches(264_999)
    assert not ref.matches(0)


def test_reference_exact():
    ref = Reference(params=34_826, kind="total", source="keras.io")
    assert ref.rounding == 1
    assert ref.matches(34_826)
    assert not ref.matches(34_825) and not ref.matches(34_827)


def test_reference_coarse_rounding():
    ref = Reference(params=1_700_000, kind="trainable", source="1.7M", rounding=100_000)
    assert ref.matches(1_727_962)
    assert not ref.matches(1_760_000)


def test_reference_rounds_halves_up():
    ref = Reference(params=270_000, kind="trainable", source="0.27M", rounding=10_000)
    assert ref.matches(265_000)


def test_reference_is_frozen():
    ref = Reference(params=1, kind="total", source="x")
    with pytest.raises(AttributeError):
        ref.params = 2

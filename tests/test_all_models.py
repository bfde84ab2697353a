"""The same checks on every registered preset (a new preset is tested automatically).

Build, documented output shape, one training step, save to ``.keras``, reload
in a fresh process without ``custom_objects`` and predict identically, and the
parameter count against the published figure.
"""

from __future__ import annotations

import json

import keras
import numpy as np
import pytest

import annzoo

pytestmark = pytest.mark.speedups_off

MODELS = annzoo.list_models()
# The JAX pass builds, trains and reloads annzoo's own presets, not the
# keras.applications backbones (Keras' own code, which Keras tests on every
# backend); parameter counts do not depend on the backend.
# The PyTorch pass builds, trains and reloads the presets the JAX pass runs that
# have at most this many parameters: the layers and tasks of the larger ones at
# smaller sizes, which keeps the pass short on a CPU (`slow` still applies).
TORCH_PARAMS = 1_000_000
# Building a preset over this many parameters takes seconds to minutes of
# compiling on a CPU: those are `slow` (the full suite), the smaller ones keep
# every check of this file in the fast lane.
FAST_LANE_PARAMS = 100_000
# The presets of annzoo's own families over this many parameters (vgg16,
# resnet50, vit_b16, transformer_base, seq2seq_attention) train, save and
# reload on the JAX pass (the GPU machines' backend, where models that size
# train) and not again on TensorFlow, which checks their build and parameter
# count: their layers are the smaller presets' and the families' own tests',
# trained on TensorFlow, and the train step alone is a minute of compiling
# per backend.
JAX_ONLY_PARAMS = 20_000_000


# A CPU's JAX pass (CI) trains only the presets over JAX_ONLY_PARAMS: the
# smaller ones train on TensorFlow (and up to TORCH_PARAMS on PyTorch), and
# their families' layers train on JAX in test_family_specs' smoke models and
# in the large presets. On a GPU, where the JAX pass is the only one and a
# train step is seconds, every preset trains.
def _cpu_jax() -> bool:
    if keras.backend.backend() != "jax":
        return False
    import jax

    return jax.devices()[0].platform == "cpu"


# Config keys in which a preset may differ from a smaller preset of its family
# and still run exactly the same annzoo code: `depth` repeats the same residual
# blocks (resnet110 is resnet20 with more of them), `architecture` picks
# another keras.applications backbone (Keras' own code, which Keras tests)
# under the same annzoo wrapper. Such a preset's build and published parameter
# count are checked; its training step, save and reload would repeat the
# smaller one's, minutes of compiling on a CPU for no new line of annzoo.
REPEAT_KEYS = {"depth", "architecture"}


def _repeats(name: str) -> str | None:
    """The smaller preset of the same family whose config differs from
    ``name``'s only in REPEAT_KEYS, if there is one."""
    info = annzoo.model_info(name)
    for other in MODELS:
        them = annzoo.model_info(other)
        if other == name or them.family != info.family:
            continue
        if them.reference.params >= info.reference.params:
            continue
        keys = set(info.config) | set(them.config)
        differ = {k for k in keys if info.config.get(k) != them.config.get(k)}
        if differ and differ <= REPEAT_KEYS:
            return other
    return None


def _presets(
    *,
    jax: bool,
    builds: bool,
    torch: bool = False,
    repeats: bool = True,
    trains: bool = False,
) -> list:
    """MODELS as test parameters: marked `jax` and `torch` where those passes
    run them, `slow` where ``builds`` and the preset is large; without the
    presets that repeat a smaller one's code unless ``repeats``; where
    ``trains``, skipped on TensorFlow above JAX_ONLY_PARAMS."""
    presets = []
    for name in MODELS:
        if not repeats and _repeats(name):
            continue
        info = annzoo.model_info(name)
        marks = []
        on_jax = info.family != "applications"
        if jax and on_jax:
            marks.append(pytest.mark.jax)
        if torch and on_jax and info.reference.params <= TORCH_PARAMS:
            marks.append(pytest.mark.torch)
        if builds and info.reference.params > FAST_LANE_PARAMS:
            marks.append(pytest.mark.slow)
        if trains and on_jax and info.reference.params > JAX_ONLY_PARAMS:
            marks.append(
                pytest.mark.skipif(
                    keras.backend.backend() == "tensorflow",
                    reason="trained on the JAX pass (JAX_ONLY_PARAMS)",
                )
            )
        elif trains and not on_jax:
            # Every keras.applications preset differs from the family's smoke
            # model (VGG16, trained in test_family_specs) only in REPEAT_KEYS'
            # `architecture` and in sizes: the same annzoo wrapper and head.
            marks.append(
                pytest.mark.skip(
                    reason="the applications wrapper trains in test_family_specs"
                )
            )
        elif trains and on_jax and _cpu_jax():
            marks.append(
                pytest.mark.skip(
                    reason="trained on TensorFlow (and PyTorch up to TORCH_PARAMS); "
                    "a CPU's JAX pass trains the presets over JAX_ONLY_PARAMS"
                )
            )
        presets.append(pytest.param(name, marks=marks))
    return presets


# Published parameter counts, written here from the sources (not from annzoo):
# name -> (figure, what it counts, rounding used by the source, source).
PUBLISHED = {
    # m + 1 weights for logistic regression on the m = 30 breast-cancer features.
    "logistic_regression": (31, "total", 1, "m + 1 for m = 30 features"),
    # LeCun et al. 1998, Sec. II.B: "about 60,000 trainable parameters".
    "lenet5": (60_000, "trainable", 10_000, "LeCun et al. 1998"),
    # keras.io/examples/vision/mnist_convnet: "Total params: 34,826".
    "mnist_convnet": (34_826, "total", 1, "keras.io Simple MNIST convnet"),
    # keras.applications VGG16, include_top=True: 138,357,544.
    "vgg16": (138_357_544, "total", 1, "keras.applications.VGG16"),
    # torchvision ResNet18_Weights.IMAGENET1K_V1 num_params (BN buffers excluded).
    "resnet18": (11_689_512, "trainable", 1, "torchvision resnet18"),
    # torchvision ResNet50_Weights.IMAGENET1K_V1 num_params.
    "resnet50": (25_557_032, "trainable", 1, "torchvision resnet50"),
    # He et al. 2016, Table 6 (CIFAR-10): 0.27M, 0.46M, 0.66M, 0.85M, 1.7M.
    "resnet20": (270_000, "trainable", 10_000, "He et al. 2016 Table 6"),
    "resnet32": (460_000, "trainable", 10_000, "He et al. 2016 Table 6"),
    "resnet44": (660_000, "trainable", 10_000, "He et al. 2016 Table 6"),
    "resnet56": (850_000, "trainable", 10_000, "He et al. 2016 Table 6"),
    "resnet110": (1_700_000, "trainable", 100_000, "He et al. 2016 Table 6"),
    # Hand formula, Keras GRU reset_after=True: 59*32 + 3*(32*128 + 128*128
    # + 2*128) + (128*18 + 18) = 1,888 + 62,208 + 2,322.
    "char_rnn": (66_418, "total", 1, "hand formula, Keras GRU (reset_after=True)"),
    # keras.io/examples/nlp/bidirectional_lstm_imdb: "Total params: 2,757,761".
    "imdb_bilstm": (2_757_761, "total", 1, "keras.io Bidirectional LSTM on IMDB"),
    # Hand formula: 5000*100 + 2*4*(100*100 + 100*100 + 100) + (200*9 + 9)
    # + (9*9 + 9 + 9) = 500,000 + 160,800 + 1,809 + 99.
    "bilstm_crf_tagger": (662_708, "total", 1, "hand formula, Bi-LSTM + CRF"),
    # keras.io/examples/nlp/text_classification_with_transformer (key_dim =
    # embed_dim = 32): 20000*32 + 200*32 + 10,656 (block) + 660 + 42; the same
    # count from a plain-Keras rebuild in tests/test_transformer.py.
    "transformer_classifier": (
        657_758,
        "total",
        1,
        "keras.io text_classification_with_transformer",
    ),
    # Vaswani et al. 2017 base with 8000 + 8000 untied vocabularies: formula
    # count (the paper reports 65M for its shared 37k vocabulary).
    "transformer_base": (
        56_434_496,
        "total",
        1,
        "Vaswani et al. 2017 base, formula for 8k+8k vocab",
    ),
    # torchvision ViT_B_16_Weights.IMAGENET1K_V1 num_params.
    "vit_b16": (86_567_656, "trainable", 1, "torchvision vit_b_16"),
    # Formula counts, checked by hand from the layer equations: the TF "NMT
    # with attention" tutorial's sizes (GRU 1024, embeddings 256, Bahdanau
    # score) with 8000 + 8000 vocabularies; and Show-Attend-Tell at the size
    # of the shapes_captions data.
    "seq2seq_attention": (24_368_960, "total", 1, "formula, GRU 1024 + Bahdanau"),
    # keras.io/api/applications table (25.6M, 3.5M, 5.3M); the exact totals of
    # keras.applications with include_top=True.
    "resnet50_imagenet": (25_636_712, "total", 1, "keras.io applications table"),
    "mobilenetv2_imagenet": (3_538_984, "total", 1, "keras.io applications table"),
    "efficientnetb0_imagenet": (5_330_571, "total", 1, "keras.io applications"),
    "captioner": (254_580, "total", 1, "formula, small Show-Attend-Tell"),
    # Hand formulas of the two networks, written out in tests/test_gan.py.
    "dcgan_digits": (80_610, "total", 1, "formula, conditional DCGAN 8x8"),
    "dcgan_shapes": (464_996, "total", 1, "formula, DCGAN 32x32x3"),
    # Hand formulas from the layer equations (tests/test_language_model.py
    # recomputes them): char_gpt 100*128 + 128*128 + 4*((4*128*128 + 4*128)
    # + (2*128*512 + 512 + 128) + 4*128) + 2*128 + (128*100 + 100);
    # char_lstm_lm 100*64 + 4*(64*128 + 128*128 + 128) + 4*(128*128 + 128*128
    # + 128) + (128*100 + 100); surnames_lm 120*64 + 14*64 + 3*(64*128 +
    # 128*128 + 2*128) + 3*(128*128 + 128*128 + 2*128) + (128*120 + 120).
    "char_gpt": (835_428, "total", 1, "formula, 4-block causal Transformer"),
    "char_lstm_lm": (249_700, "total", 1, "formula, 2 x LSTM(128) char-rnn"),
    "surnames_lm": (197_624, "total", 1, "formula, conditional 2 x GRU(128)"),
    # Hand formulas, (fan_in + 1) * units summed over the Dense layers:
    # autoencoder_digits 65*128 + 129*64 + 65*8 (encoder 64-128-64-8) + 9*64
    # + 65*128 + 129*64 (decoder 8-64-128-64); vae_digits adds a second code
    # head, 65*8; cvae_digits adds 10 one-hot inputs to the first encoder and
    # decoder layers, 10*128 + 10*64.
    "autoencoder_digits": (34_248, "total", 1, "formula, dense 64-128-64-8 AE"),
    "vae_digits": (34_768, "total", 1, "formula, dense VAE"),
    "cvae_digits": (36_688, "total", 1, "formula, conditional dense VAE"),
}

REQUIRED = {
    "logistic_regression",
    "lenet5",
    "mnist_convnet",
    "vgg16",
    "resnet18",
    "resnet50",
    "resnet20",
    "resnet56",
    "char_rnn",
    "imdb_bilstm",
    "bilstm_crf_tagger",
    "seq2seq_attention",
    "transformer_classifier",
    "transformer_base",
    "vit_b16",
    "captioner",
    "resnet50_imagenet",
    "mobilenetv2_imagenet",
    "efficientnetb0_imagenet",
}


def _trainable(model) -> int:
    return int(sum(np.prod(w.shape) for w in model.trainable_weights))


def _on_accelerator() -> bool:
    if keras.backend.backend() == "jax":
        import jax

        return jax.devices()[0].platform != "cpu"
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        return bool(tf.config.list_logical_devices("GPU"))
    return False


def _inputs(model, n, rng):
    """Random inputs for every model input: token ids for integer inputs."""
    batch = {}
    for tensor in model.inputs:
        shape = tuple(12 if d is None else d for d in tensor.shape[1:])
        if "int" in str(tensor.dtype):
            # Ids 1..7 exist in every vocabulary; 0 is padding.
            batch[tensor.name] = rng.integers(1, 8, size=(n, *shape)).astype("int32")
        else:
            batch[tensor.name] = rng.random((n, *shape), dtype=np.float32)
    return batch if len(batch) > 1 else next(iter(batch.values()))


def _labels(info, output_shape, n, rng):
    """Labels that fit the task and the model's output shape."""
    width = output_shape[-1]
    steps = tuple(12 if d is None else d for d in output_shape[1:-1])
    if info.task in ("multiclass", "sequence", "tagging", "generation"):
        return rng.integers(0, width, size=(n, *steps))
    if info.task == "binary":
        return rng.integers(0, 2, size=(n, *steps, width)).astype("float32")
    return rng.normal(size=(n, *steps, width)).astype("float32")


def _training_batch(info, model, x, y, rng):
    """What one training step takes: ``(x, y)``, except for a GAN (task
    "adversarial"), which trains on images of its output's shape and, when
    conditional, their class ids; ``x`` (noise, labels) is what it generates
    from."""
    if info.task != "adversarial":
        return x, y
    images = rng.random((len(y), *model.output_shape[1:]), dtype=np.float32)
    return images, (x["labels"] if isinstance(x, dict) else None)


@pytest.mark.jax
@pytest.mark.torch
def test_required_presets_are_registered():
    assert REQUIRED <= set(MODELS)


def test_presets_left_to_a_smaller_one_differ_only_in_depth_or_backbone():
    # Computed independently of _repeats: the deeper CIFAR ResNets are the
    # presets that differ from resnet20 only in their block count, the ImageNet
    # backbones those that differ from the smallest one only in `architecture`.
    base = dict(annzoo.model_info("resnet20").config)
    expected = set()
    for name in MODELS:
        config = dict(annzoo.model_info(name).config)
        if name != "resnet20" and {**config, "depth": base["depth"]} == base:
            expected.add(name)
    backbones = [m for m in MODELS if annzoo.model_info(m).family == "applications"]
    smallest = min(backbones, key=lambda m: annzoo.model_info(m).reference.params)
    expected |= set(backbones) - {smallest}
    left = {name for name in MODELS if _repeats(name)}
    assert left == expected
    assert {"resnet44", "resnet56", "resnet110"} <= left
    # Each is still built and counted against its publication.
    counted = {p.values[0] for p in _presets(jax=False, builds=True)}
    assert left <= counted


@pytest.mark.jax
@pytest.mark.torch
def test_every_preset_has_a_published_figure():
    assert set(MODELS) <= set(PUBLISHED), "add the new preset's figure to PUBLISHED"


def _offline(name, *, small=False):
    """keras.applications presets download ImageNet weights unless told not to.
    ``small`` also shrinks an image input larger than 32x32 (the ImageNet
    presets' 224x224: resnet18/50, vgg16, vit_b16, the applications) to 32x32
    for a cheap training step: the same layers and code, smaller activations.
    Their parameter counts are checked at full size."""
    info = annzoo.model_info(name)
    offline = {"weights": None} if info.family == "applications" else {}
    shape = info.config.get("input_shape")
    if small and shape is not None and len(shape) == 3 and max(shape[:2]) > 32:
        offline["input_shape"] = (32, 32, shape[2])
    return offline


@pytest.mark.parametrize("name", _presets(jax=False, builds=True))
def test_parameter_count_matches_publication(name):
    figure, kind, rounding, _ = PUBLISHED[name]
    model = annzoo.create_model(name, compile=False, **_offline(name))
    count = model.count_params() if kind == "total" else _trainable(model)
    # Rounded half up, as the sources print their figures.
    assert (count + rounding // 2) // rounding * rounding == figure, (name, count)
    # The registry states the same figure and says what it counts.
    reference = annzoo.model_info(name).reference
    assert (reference.params, reference.kind, reference.rounding) == (
        figure,
        kind,
        rounding,
    )
    assert reference.source
    assert reference.matches(count)


@pytest.mark.parametrize(
    "name", _presets(jax=True, torch=True, builds=True, repeats=False, trains=True)
)
def test_build_train_save_reload(name, tmp_path, reloader):
    info = annzoo.model_info(name)
    keras.utils.set_random_seed(0)
    offline = _offline(name, small=True)
    model = annzoo.create_model(name, **offline)
    assert model.name == name
    assert model.optimizer is not None, "builders return compiled models by default"
    if len(model.inputs) == 1:
        expected = offline.get("input_shape", info.input_shape)
        assert tuple(model.input_shape) == (None, *expected)
    assert tuple(model.output_shape) == (None, *info.output_shape)

    rng = np.random.default_rng(0)
    x = _inputs(model, 2, rng)
    y = _labels(info, model.output_shape, 2, rng)
    before = [keras.ops.convert_to_numpy(w).copy() for w in model.trainable_weights]
    logs = model.train_on_batch(
        *_training_batch(info, model, x, y, rng), return_dict=True
    )
    assert np.isfinite(logs["loss"])
    after = [keras.ops.convert_to_numpy(w) for w in model.trainable_weights]
    assert any(not np.array_equal(a, b) for a, b in zip(before, after, strict=True))

    expected = keras.ops.convert_to_numpy(model(x, training=False))
    probabilities = ("multiclass", "sequence", "tagging", "generation")
    if info.task in probabilities and not info.config.get("crf"):
        # Probabilities (a CRF tagger outputs emission scores instead).
        np.testing.assert_allclose(expected.sum(axis=-1), 1.0, rtol=1e-5)
    path = tmp_path / f"{name}.keras"
    model.save(path)
    np.savez(tmp_path / "x.npz", **(x if isinstance(x, dict) else {"x": x}))
    reloader.predict(path, tmp_path / "x.npz", tmp_path / "y.npy")
    reloaded = np.load(tmp_path / "y.npy")
    if _on_accelerator():
        # GPU kernels may pick other algorithms in another process, and XLA
        # runs float32 matmuls there with TensorFloat-32 inputs (10-bit
        # mantissa, relative rounding 2^-11): transformer_base's 8000-way
        # softmax differed by up to 5.4e-4 relative on an H200. Not bit for bit.
        np.testing.assert_allclose(reloaded, expected, rtol=2e-3, atol=1e-7)
    else:
        np.testing.assert_array_equal(reloaded, expected)


@pytest.mark.parametrize("name", _presets(jax=True, torch=True, builds=False))
def test_model_info_is_serializable(name):
    info = annzoo.model_info(name)
    data = json.loads(json.dumps(info.to_dict(), default=list))
    assert data["family"] in annzoo.list_families()
    assert data["task"] in annzoo.tasks.TASKS

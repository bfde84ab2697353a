"""Tests of annzoo.build_cnn and annzoo.layers.PaddedIdentity.

Shapes and parameter counts are worked out by hand from the layer formulas;
convolutions are checked against cross-correlations written here in numpy.
"""

from __future__ import annotations

import keras
import numpy as np
import pytest

import annzoo
from annzoo.layers import PaddedIdentity


def _np(x):
    return np.asarray(keras.ops.convert_to_numpy(x), dtype=np.float64)


def _run(model, x):
    out = model(keras.ops.convert_to_tensor(np.asarray(x, "float32")), training=False)
    return [_np(o) for o in out] if isinstance(out, list | tuple) else _np(out)


def _tap(model, *names):
    """A model from ``images`` to the outputs of the named layers."""
    outputs = [model.get_layer(n).output for n in names]
    return keras.Model(model.input, outputs if len(outputs) > 1 else outputs[0])


def _shape(model, name):
    return tuple(model.get_layer(name).output.shape)


def _trainable(model):
    return int(sum(np.prod(w.shape) for w in model.trainable_weights))


def cross_correlate(x, kernel, bias=None, padding="valid"):
    """Stride-1 2D cross-correlation, channels last, written as plain loops.

    x: (n, h, w, c); kernel: (kh, kw, c, f); "same" zero-pads (k - 1) // 2
    before and k // 2 after, so the output keeps the input's size.
    """
    kh, kw = kernel.shape[:2]
    if padding == "same":
        x = np.pad(
            x, [(0, 0), ((kh - 1) // 2, kh // 2), ((kw - 1) // 2, kw // 2), (0, 0)]
        )
    n, h, w, _ = x.shape
    out = np.zeros((n, h - kh + 1, w - kw + 1, kernel.shape[3]))
    for i in range(out.shape[1]):
        for j in range(out.shape[2]):
            patch = x[:, i : i + kh, j : j + kw, :]  # (n, kh, kw, c)
            for f in range(kernel.shape[3]):
                out[:, i, j, f] = (patch * kernel[:, :, :, f]).sum(axis=(1, 2, 3))
    if bias is not None:
        out = out + bias
    return out


# Layer parameter formulas.
def conv_params(k, cin, cout, bias=True):
    return k * k * cin * cout + (cout if bias else 0)


def bn_params(c):
    return 4 * c  # gamma, beta (trainable), moving mean, moving variance


def dense_params(nin, nout):
    return nin * nout + nout


# ---------------------------------------------------------------------------
# Output and intermediate shapes
# ---------------------------------------------------------------------------

SHAPE_CASES = [
    pytest.param(
        (28, 28, 1),
        10,
        dict(filters=(4, 8)),
        {
            "block1_conv1": (28, 28, 4),
            "block1_pool": (14, 14, 4),
            "block2_pool": (7, 7, 8),
            "head_flatten": (7 * 7 * 8,),
        },
        id="grayscale-plain-same-max",
    ),
    pytest.param(
        (32, 32, 3),
        5,
        dict(filters=(4, 8, 8), depth=2),
        {
            "block1_conv2": (32, 32, 4),
            "block1_pool": (16, 16, 4),
            "block2_conv2": (16, 16, 8),
            "block3_pool": (4, 4, 8),
            "head_flatten": (128,),
        },
        id="rgb-depth2",
    ),
    pytest.param(
        (20, 12, 3),
        4,
        dict(filters=(4, 4)),
        {"block1_pool": (10, 6, 4), "block2_pool": (5, 3, 4), "head_flatten": (60,)},
        id="non-square",
    ),
    pytest.param(
        (32, 32, 1),
        10,
        dict(filters=(6, 16), kernel_size=5, padding="valid", hidden_units=(120, 84)),
        {
            "block1_conv1": (28, 28, 6),
            "block1_pool": (14, 14, 6),
            "block2_conv1": (10, 10, 16),
            "block2_pool": (5, 5, 16),
            "head_flatten": (400,),
            "head_dense1": (120,),
            "head_dense2": (84,),
        },
        id="lenet-valid-hidden",
    ),
    pytest.param(
        (13, 9, 2),
        3,
        dict(filters=(3,), padding="valid"),
        # 13-2=11, 9-2=7, then floor halves: 5, 3.
        {"block1_conv1": (11, 7, 3), "block1_pool": (5, 3, 3), "head_flatten": (45,)},
        id="odd-valid-floor-pool",
    ),
    pytest.param(
        (16, 16, 3),
        3,
        dict(filters=(2, 3), pooling="average"),
        {"block1_pool": (8, 8, 2), "block2_pool": (4, 4, 3), "head_flatten": (48,)},
        id="average-pool",
    ),
    pytest.param(
        (9, 9, 1),
        2,
        dict(filters=(2, 3), pooling="none"),
        {"block2_conv1": (9, 9, 3), "head_flatten": (243,)},
        id="no-pool",
    ),
    pytest.param(
        (12, 10, 3),
        7,
        dict(filters=(2, 5), depth=(1, 3), head="avg"),
        {"block2_conv3": (6, 5, 5), "head_pool": (5,)},
        id="depth-per-stage-avg-head",
    ),
    pytest.param(
        (12, 12, 1),
        2,
        dict(filters=(2, 5), head="max", hidden_units=7),
        {"head_pool": (5,), "head_dense1": (7,)},
        id="max-head-hidden",
    ),
    pytest.param(
        (16, 16, 3),
        10,
        dict(filters=(4, 8, 16), block="basic", stem="cifar"),
        {
            "stem_conv": (16, 16, 4),
            "stage1_block1_add": (16, 16, 4),
            "stage2_block1_add": (8, 8, 8),
            "stage3_block1_add": (4, 4, 16),
            "head_flatten": (256,),
        },
        id="basic-cifar",
    ),
    pytest.param(
        (32, 32, 3),
        10,
        dict(filters=(4, 8), block="basic", stem="imagenet", head="avg"),
        {
            "stem_conv": (16, 16, 4),
            "stem_pool": (8, 8, 4),
            "stage1_block1_add": (8, 8, 4),
            "stage2_block1_add": (4, 4, 8),
            "head_pool": (8,),
        },
        id="basic-imagenet",
    ),
    pytest.param(
        (8, 8, 3),
        3,
        dict(filters=(2, 4), block="bottleneck", stem="cifar", head="avg"),
        {
            "stage1_block1_conv1": (8, 8, 2),
            "stage1_block1_add": (8, 8, 8),
            "stage2_block1_conv2": (4, 4, 4),
            "stage2_block1_add": (4, 4, 16),
            "head_pool": (16,),
        },
        id="bottleneck-cifar",
    ),
    pytest.param(
        (30, 18, 3),
        3,
        dict(filters=(2, 4), block="bottleneck", stem="imagenet", head="avg"),
        # ceil halves: 30x18 -> 15x9 (stem conv) -> 8x5 (stem pool) -> 4x3.
        {
            "stem_conv": (15, 9, 2),
            "stem_pool": (8, 5, 2),
            "stage1_block1_add": (8, 5, 8),
            "stage2_block1_add": (4, 3, 16),
        },
        id="bottleneck-imagenet-non-square",
    ),
    pytest.param(
        (15, 15, 3),
        10,
        dict(
            filters=(4, 8, 16),
            depth=2,
            block="basic",
            stem="cifar",
            shortcut="zero_pad",
            head="avg",
        ),
        {
            "stage1_block2_add": (15, 15, 4),
            "stage2_block1_shortcut": (8, 8, 8),
            "stage2_block2_add": (8, 8, 8),
            "stage3_block1_add": (4, 4, 16),
        },
        id="basic-zero-pad-odd",
    ),
    pytest.param(
        (8, 8, 3),
        1,
        dict(filters=(4,), task="binary"),
        {"head_flatten": (64,)},
        id="binary",
    ),
    pytest.param(
        (8, 8, 3),
        3,
        dict(filters=(4,), task="regression", head="avg"),
        {"head_pool": (4,)},
        id="regression",
    ),
]


@pytest.mark.parametrize("input_shape, classes, kwargs, shapes", SHAPE_CASES)
def test_shapes(input_shape, classes, kwargs, shapes):
    model = annzoo.build_cnn(input_shape, classes, compile=False, **kwargs)
    assert model.input_shape == (None, *input_shape)
    assert model.output_shape == (None, classes)
    for name, shape in shapes.items():
        assert _shape(model, name) == (None, *shape), name
    if kwargs.get("shortcut") == "zero_pad" or kwargs.get("stem") == "imagenet":
        # The symbolic shapes are the real ones (PaddedIdentity states its
        # output shape instead of tracing; odd sizes exercise the rounding).
        out = _run(_tap(model, *shapes), np.zeros((2, *input_shape)))
        for name, got in zip(shapes, out, strict=True):
            assert got.shape == (2, *shapes[name]), name


@pytest.mark.parametrize(
    "task, classes, activation",
    [
        ("binary", 1, "sigmoid"),
        ("multiclass", 4, "softmax"),
        ("regression", 2, "linear"),
    ],
)
def test_task_output_activation(task, classes, activation):
    model = annzoo.build_cnn((8, 8, 1), classes, filters=(2,), task=task, compile=False)
    assert model.get_layer("predictions").get_config()["activation"] == activation
    x = np.random.default_rng(0).normal(size=(3, 8, 8, 1))
    out = _run(model, x)
    logits = _run(_tap(model, "head_logits"), x)
    if task == "binary":
        np.testing.assert_allclose(out, 1 / (1 + np.exp(-logits)), atol=1e-6)
    elif task == "multiclass":
        e = np.exp(logits - logits.max(axis=1, keepdims=True))
        np.testing.assert_allclose(out, e / e.sum(axis=1, keepdims=True), atol=1e-6)
    else:
        np.testing.assert_allclose(out, logits, atol=1e-6)


def test_pooling_layer_types():
    def pools(model):
        return {lay.name: type(lay) for lay in model.layers if "pool" in lay.name}

    kw = dict(filters=(2, 2), compile=False)
    assert pools(annzoo.build_cnn((8, 8, 1), 2, **kw)) == {
        "block1_pool": keras.layers.MaxPooling2D,
        "block2_pool": keras.layers.MaxPooling2D,
    }
    assert set(
        pools(annzoo.build_cnn((8, 8, 1), 2, pooling="average", **kw)).values()
    ) == {keras.layers.AveragePooling2D}
    assert pools(annzoo.build_cnn((8, 8, 1), 2, pooling="none", **kw)) == {}
    # Residual stages never pool: they stride.
    res = annzoo.build_cnn((8, 8, 1), 2, block="basic", **kw)
    assert not any(isinstance(lay, keras.layers.MaxPooling2D) for lay in res.layers)
    conv = res.get_layer("stage2_block1_conv1")
    assert tuple(conv.strides) == (2, 2)


def test_residual_stages_halve_spatial_size():
    model = annzoo.build_cnn(
        (32, 24, 3),
        10,
        filters=(4, 8, 16, 32),
        depth=2,
        block="basic",
        stem="cifar",
        compile=False,
    )
    h, w = 32, 24
    for s, width in enumerate((4, 8, 16, 32), start=1):
        if s > 1:
            h, w = h // 2, w // 2
        for b in (1, 2):
            assert _shape(model, f"stage{s}_block{b}_add") == (None, h, w, width)
            assert _shape(model, f"stage{s}_block{b}_out") == (None, h, w, width)
    assert (h, w) == (4, 3)


# ---------------------------------------------------------------------------
# Names
# ---------------------------------------------------------------------------


def test_plain_layer_names():
    model = annzoo.build_cnn(
        (16, 16, 1), 3, filters=(2, 4, 4), depth=(2, 1, 3), compile=False
    )
    names = [lay.name for lay in model.layers]
    assert model.name == "cnn"
    assert model.inputs[0].name == "images"
    assert names[0] == "images"
    expected_convs = [
        "block1_conv1",
        "block1_conv2",
        "block2_conv1",
        "block3_conv1",
        "block3_conv2",
        "block3_conv3",
    ]
    convs = [lay.name for lay in model.layers if isinstance(lay, keras.layers.Conv2D)]
    assert convs == expected_convs
    pools = [
        lay.name for lay in model.layers if isinstance(lay, keras.layers.MaxPooling2D)
    ]
    assert pools == ["block1_pool", "block2_pool", "block3_pool"]
    assert names[-2:] == ["head_logits", "predictions"]
    assert isinstance(model.get_layer("head_logits"), keras.layers.Dense)
    assert (
        names.index("block1_conv2")
        < names.index("block1_pool")
        < names.index("block2_conv1")
    )


def test_residual_layer_names():
    model = annzoo.build_cnn(
        (8, 8, 3),
        2,
        filters=(4, 8),
        depth=2,
        block="basic",
        stem="cifar",
        compile=False,
    )
    names = {lay.name for lay in model.layers}
    for s in (1, 2):
        for b in (1, 2):
            for part in ("conv1", "conv1_bn", "conv2", "conv2_bn", "add", "out"):
                assert f"stage{s}_block{b}_{part}" in names
    # Only the block that changes shape has a shortcut layer.
    assert {n for n in names if n.endswith("_shortcut")} == {"stage2_block1_shortcut"}
    assert {"stem_conv", "head_flatten", "head_logits", "predictions"} <= names


# ---------------------------------------------------------------------------
# Parameter counts, by hand
# ---------------------------------------------------------------------------


def test_params_plain_without_batch_norm():
    model = annzoo.build_cnn(
        (8, 8, 1), 3, filters=(2, 4), hidden_units=(5,), compile=False
    )
    # conv 3x3 1->2: 9*1*2+2 = 20; conv 3x3 2->4: 9*2*4+4 = 76;
    # 8 -> 4 -> 2 after two pools, flatten 2*2*4 = 16; dense 16*5+5 = 85;
    # logits 5*3+3 = 18.
    expected = 20 + 76 + 85 + 18
    assert expected == (
        conv_params(3, 1, 2)
        + conv_params(3, 2, 4)
        + dense_params(16, 5)
        + dense_params(5, 3)
    )
    assert model.count_params() == expected == 199
    assert _trainable(model) == expected
    assert not any(
        isinstance(lay, keras.layers.BatchNormalization) for lay in model.layers
    )


def test_params_plain_with_batch_norm_has_no_conv_bias():
    model = annzoo.build_cnn(
        (8, 8, 1),
        3,
        filters=(2, 4),
        hidden_units=(5,),
        batch_norm=True,
        compile=False,
    )
    assert model.get_layer("block1_conv1").bias is None
    # conv 9*1*2 = 18, BN 4*2 = 8; conv 9*2*4 = 72, BN 4*4 = 16; dense 85; 18.
    total = 18 + 8 + 72 + 16 + 85 + 18
    assert model.count_params() == total == 217
    # Moving mean and variance are not trainable: 2*2 + 2*4.
    assert _trainable(model) == total - 12


def test_params_basic_residual_with_projection():
    model = annzoo.build_cnn(
        (8, 8, 3), 4, filters=(4, 8), block="basic", head="avg", compile=False
    )
    stage1 = (
        conv_params(3, 3, 4, False)
        + bn_params(4)  # conv1: 108 + 16
        + conv_params(3, 4, 4, False)
        + bn_params(4)  # conv2: 144 + 16
        + conv_params(1, 3, 4, False)
        + bn_params(4)  # shortcut 3 -> 4: 12 + 16
    )
    stage2 = (
        conv_params(3, 4, 8, False)
        + bn_params(8)  # 288 + 32
        + conv_params(3, 8, 8, False)
        + bn_params(8)  # 576 + 32
        + conv_params(1, 4, 8, False)
        + bn_params(8)  # 32 + 32
    )
    head = dense_params(8, 4)  # 36
    assert stage1 == 312 and stage2 == 992 and head == 36
    assert model.count_params() == stage1 + stage2 + head
    bn_channels = 3 * 4 + 3 * 8
    assert _trainable(model) == stage1 + stage2 + head - 2 * bn_channels
    # The projection is a strided 1x1 convolution.
    shortcut = model.get_layer("stage2_block1_shortcut")
    assert shortcut.kernel.shape == (1, 1, 4, 8)
    assert tuple(shortcut.strides) == (2, 2)


def test_params_bottleneck():
    model = annzoo.build_cnn(
        (8, 8, 3),
        2,
        filters=(2, 4),
        depth=(1, 2),
        block="bottleneck",
        stem="cifar",
        head="avg",
        compile=False,
    )
    stem = conv_params(3, 3, 2, False) + bn_params(2)  # 54 + 8
    # stage 1: 2 -> (1x1, 2) -> (3x3, 2) -> (1x1, 8); projection 2 -> 8.
    s1 = (
        conv_params(1, 2, 2, False)
        + bn_params(2)
        + conv_params(3, 2, 2, False)
        + bn_params(2)
        + conv_params(1, 2, 8, False)
        + bn_params(8)
        + conv_params(1, 2, 8, False)
        + bn_params(8)
    )
    # stage 2 block 1: 8 -> 4 -> 4 -> 16, projection 8 -> 16 (strided).
    s2b1 = (
        conv_params(1, 8, 4, False)
        + bn_params(4)
        + conv_params(3, 4, 4, False)
        + bn_params(4)
        + conv_params(1, 4, 16, False)
        + bn_params(16)
        + conv_params(1, 8, 16, False)
        + bn_params(16)
    )
    # stage 2 block 2: 16 -> 4 -> 4 -> 16, identity shortcut.
    s2b2 = (
        conv_params(1, 16, 4, False)
        + bn_params(4)
        + conv_params(3, 4, 4, False)
        + bn_params(4)
        + conv_params(1, 4, 16, False)
        + bn_params(16)
    )
    head = dense_params(16, 2)
    assert (stem, s1, s2b1, s2b2, head) == (62, 152, 528, 368, 34)
    assert model.count_params() == stem + s1 + s2b1 + s2b2 + head
    bn_channels = 2 + (2 + 2 + 8 + 8) + (4 + 4 + 16 + 16) + (4 + 4 + 16)
    assert _trainable(model) == model.count_params() - 2 * bn_channels
    assert model.get_layer("stage2_block2_conv3").kernel.shape == (1, 1, 4, 16)


def test_params_zero_pad_has_no_shortcut_parameters():
    kw = dict(filters=(4, 8), block="basic", head="avg", compile=False)
    projection = annzoo.build_cnn((8, 8, 3), 4, **kw)
    zero_pad = annzoo.build_cnn((8, 8, 3), 4, shortcut="zero_pad", **kw)
    shortcuts = [lay for lay in zero_pad.layers if "shortcut" in lay.name]
    assert [lay.name for lay in shortcuts] == [
        "stage1_block1_shortcut",
        "stage2_block1_shortcut",
    ]
    assert all(isinstance(lay, PaddedIdentity) for lay in shortcuts)
    assert all(lay.count_params() == 0 and not lay.weights for lay in shortcuts)
    # Exactly the two projections (1x1 conv + BN) are gone.
    projections = (
        conv_params(1, 3, 4, False)
        + bn_params(4)
        + conv_params(1, 4, 8, False)
        + bn_params(8)
    )
    assert zero_pad.count_params() == projection.count_params() - projections
    assert zero_pad.count_params() == 312 - 28 + 992 - 64 + 36


def test_batch_norm_default_off_for_plain_on_for_residual():
    plain = annzoo.build_cnn((8, 8, 1), 2, filters=(2,), compile=False)
    res = annzoo.build_cnn((8, 8, 1), 2, filters=(2,), block="basic", compile=False)

    def n_bn(m):
        return sum(isinstance(lay, keras.layers.BatchNormalization) for lay in m.layers)

    assert n_bn(plain) == 0
    assert plain.get_layer("block1_conv1").bias is not None
    # conv1_bn, conv2_bn, shortcut_bn (1 -> 2 channels).
    assert n_bn(res) == 3


# ---------------------------------------------------------------------------
# Numeric convolution checks
# ---------------------------------------------------------------------------

IMAGE = np.array(
    [
        [1, 1, 1, 0, 0],
        [0, 1, 1, 1, 0],
        [0, 0, 1, 1, 1],
        [0, 0, 1, 1, 0],
        [0, 1, 1, 0, 0],
    ],
    dtype=np.float64,
)
KERNEL = np.array([[1, 0, 1], [0, 1, 0], [1, 0, 1]], dtype=np.float64)


def _single_conv_model(padding, size):
    model = annzoo.build_cnn(
        (5, 5, 1),
        size,
        filters=(1,),
        kernel_size=3,
        padding=padding,
        pooling="none",
        head="flatten",
        task="regression",
        compile=False,
    )
    model.get_layer("block1_conv1").set_weights(
        [KERNEL.reshape(3, 3, 1, 1), np.zeros(1)]
    )
    model.get_layer("head_logits").set_weights([np.eye(size), np.zeros(size)])
    return model


def test_valid_convolution_of_the_5x5_image():
    expected = np.zeros((3, 3))
    for i in range(3):
        for j in range(3):
            expected[i, j] = sum(
                IMAGE[i + a, j + b] * KERNEL[a, b] for a in range(3) for b in range(3)
            )
    # The classic worked example.
    np.testing.assert_array_equal(expected, [[4, 3, 4], [2, 4, 3], [2, 3, 4]])

    model = _single_conv_model("valid", 9)
    x = IMAGE.reshape(1, 5, 5, 1)
    fmap = _run(_tap(model, "block1_conv1"), x)
    assert fmap.shape == (1, 3, 3, 1)
    np.testing.assert_allclose(fmap[0, :, :, 0], expected, atol=1e-6)
    # The identity head passes the flattened (row-major) map through.
    np.testing.assert_allclose(_run(model, x)[0], expected.ravel(), atol=1e-5)


def test_same_convolution_of_the_5x5_image():
    padded = np.zeros((7, 7))
    padded[1:6, 1:6] = IMAGE
    expected = np.zeros((5, 5))
    for i in range(5):
        for j in range(5):
            expected[i, j] = sum(
                padded[i + a, j + b] * KERNEL[a, b] for a in range(3) for b in range(3)
            )
    # Corners by hand: top-left sees IMAGE[0,0] + IMAGE[1,1] = 2.
    assert expected[0, 0] == 2 and expected[2, 2] == 4
    model = _single_conv_model("same", 25)
    x = IMAGE.reshape(1, 5, 5, 1)
    fmap = _run(_tap(model, "block1_conv1"), x)
    np.testing.assert_allclose(fmap[0, :, :, 0], expected, atol=1e-6)
    np.testing.assert_allclose(_run(model, x)[0], expected.ravel(), atol=1e-5)


def test_activation_follows_convolution_with_bias():
    model = _single_conv_model("valid", 9)
    model.get_layer("block1_conv1").set_weights(
        [KERNEL.reshape(3, 3, 1, 1), np.array([-3.0])]
    )
    x = IMAGE.reshape(1, 5, 5, 1)
    expected = np.maximum(np.array([[4, 3, 4], [2, 4, 3], [2, 3, 4]]) - 3.0, 0.0)
    assert (expected == 0).any() and (expected > 0).any()
    np.testing.assert_allclose(_run(model, x)[0], expected.ravel(), atol=1e-5)


@pytest.mark.parametrize("padding", ["valid", "same"])
def test_multichannel_cross_correlation_is_not_flipped(padding):
    rng = np.random.default_rng(7)
    x = rng.normal(size=(2, 6, 5, 2))
    kernel = rng.normal(size=(3, 3, 2, 3))
    bias = rng.normal(size=(3,))
    model = annzoo.build_cnn(
        (6, 5, 2),
        2,
        filters=(3,),
        padding=padding,
        pooling="none",
        activation="linear",
        compile=False,
    )
    model.get_layer("block1_conv1").set_weights([kernel, bias])
    got = _run(_tap(model, "block1_conv1"), x)
    np.testing.assert_allclose(
        got, cross_correlate(x, kernel, bias, padding), atol=1e-5, rtol=1e-5
    )
    # A flipped kernel (true convolution) gives something else.
    flipped = cross_correlate(x, kernel[::-1, ::-1], bias, padding)
    assert not np.allclose(got, flipped, atol=1e-3)


def test_pooling_matches_numpy():
    rng = np.random.default_rng(8)
    x = rng.normal(size=(2, 6, 4, 1))
    for pooling in ("max", "average"):
        model = annzoo.build_cnn(
            (6, 4, 1),
            2,
            filters=(2,),
            pooling=pooling,
            activation="linear",
            compile=False,
        )
        conv, pooled = _run(_tap(model, "block1_conv1", "block1_pool"), x)
        blocks = conv.reshape(2, 3, 2, 2, 2, 2)  # (n, h/2, 2, w/2, 2, c)
        reduce = blocks.max if pooling == "max" else blocks.mean
        np.testing.assert_allclose(pooled, reduce(axis=(2, 4)), atol=1e-6)


@pytest.mark.parametrize("head", ["flatten", "avg", "max"])
def test_head_matches_numpy(head):
    x = np.random.default_rng(13).normal(size=(2, 6, 4, 1))
    model = annzoo.build_cnn(
        (6, 4, 1), 2, filters=(2,), pooling="none", head=head, compile=False
    )
    layer = "head_flatten" if head == "flatten" else "head_pool"
    feats, pooled = _run(_tap(model, "block1_conv1_act", layer), x)
    expected = {
        "flatten": feats.reshape(2, -1),
        "avg": feats.mean(axis=(1, 2)),
        "max": feats.max(axis=(1, 2)),
    }[head]
    np.testing.assert_allclose(pooled, expected, atol=1e-6)


def test_basic_block_forward_matches_numpy():
    """One identity-shortcut block: relu(BN(conv(relu(BN(conv x)))) + x)."""
    rng = np.random.default_rng(9)
    model = annzoo.build_cnn(
        (5, 5, 2), 2, filters=(2,), block="basic", head="avg", compile=False
    )
    assert "stage1_block1_shortcut" not in {lay.name for lay in model.layers}
    params = {}
    for conv in ("conv1", "conv2"):
        kernel = rng.normal(size=(3, 3, 2, 2)) * 0.5
        bn = [
            rng.uniform(0.5, 1.5, 2),
            rng.normal(size=2) * 0.1,
            rng.normal(size=2) * 0.1,
            rng.uniform(0.5, 2.0, 2),
        ]
        model.get_layer(f"stage1_block1_{conv}").set_weights([kernel])
        model.get_layer(f"stage1_block1_{conv}_bn").set_weights(bn)
        params[conv] = (kernel, bn)
    eps = model.get_layer("stage1_block1_conv1_bn").epsilon

    def bn(z, gamma, beta, mean, var):
        return gamma * (z - mean) / np.sqrt(var + eps) + beta

    x = rng.normal(size=(3, 5, 5, 2))
    h = np.maximum(
        bn(cross_correlate(x, params["conv1"][0], padding="same"), *params["conv1"][1]),
        0,
    )
    y = bn(cross_correlate(h, params["conv2"][0], padding="same"), *params["conv2"][1])
    expected = np.maximum(y + x, 0)
    got = _run(_tap(model, "stage1_block1_out"), x)
    np.testing.assert_allclose(got, expected, atol=1e-5, rtol=1e-5)


def test_zero_pad_shortcut_in_the_network():
    """With every convolution zeroed, a block outputs relu(shortcut(x))."""
    model = annzoo.build_cnn(
        (6, 6, 2),
        2,
        filters=(2, 4),
        block="basic",
        shortcut="zero_pad",
        head="avg",
        compile=False,
    )
    for lay in model.layers:
        if isinstance(lay, keras.layers.Conv2D):
            lay.set_weights([np.zeros(w.shape) for w in lay.weights])
    x = np.random.default_rng(10).normal(size=(2, 6, 6, 2))
    out1, out2 = _run(_tap(model, "stage1_block1_out", "stage2_block1_out"), x)
    np.testing.assert_allclose(out1, np.maximum(x, 0), atol=1e-6)
    sub = np.maximum(x, 0)[:, ::2, ::2, :]  # (2, 3, 3, 2)
    expected = np.concatenate([np.zeros((2, 3, 3, 1)), sub, np.zeros((2, 3, 3, 1))], -1)
    np.testing.assert_allclose(out2, expected, atol=1e-6)


# ---------------------------------------------------------------------------
# PaddedIdentity
# ---------------------------------------------------------------------------


def _padded_reference(x, filters, strides):
    """x[:, ::s, ::s, :] with (filters - c) zero channels, half (rounded
    down) before and the rest after."""
    sub = x[:, ::strides, ::strides, :]
    extra = filters - x.shape[-1]
    before, after = extra // 2, extra - extra // 2
    zeros = np.zeros
    return np.concatenate(
        [zeros((*sub.shape[:3], before)), sub, zeros((*sub.shape[:3], after))], axis=-1
    )


@pytest.mark.parametrize(
    "shape, filters, strides",
    [
        ((2, 7, 7, 3), 8, 2),
        ((1, 4, 4, 16), 32, 2),
        ((2, 5, 6, 4), 4, 1),
        ((1, 7, 5, 2), 5, 3),
    ],
)
def test_padded_identity_values(shape, filters, strides):
    x = np.random.default_rng(11).normal(size=shape)
    layer = PaddedIdentity(filters, strides)
    got = _np(layer(keras.ops.convert_to_tensor(x.astype("float32"))))
    expected = _padded_reference(x, filters, strides)
    n, h, w, _ = shape
    assert got.shape == (n, -(-h // strides), -(-w // strides), filters)
    assert tuple(layer.compute_output_shape(shape)) == got.shape
    np.testing.assert_allclose(got, expected, atol=1e-6)


def test_padded_identity_zero_placement_explicit():
    # 3 -> 8 channels: 5 zero channels, 2 before and 3 after.
    x = np.arange(1, 2 * 4 * 4 * 3 + 1, dtype=np.float64).reshape(2, 4, 4, 3)
    got = _np(PaddedIdentity(8, 2)(keras.ops.convert_to_tensor(x.astype("float32"))))
    assert got.shape == (2, 2, 2, 8)
    assert (got[..., :2] == 0).all() and (got[..., 5:] == 0).all()
    np.testing.assert_array_equal(got[..., 2:5], x[:, 0::2, 0::2, :])
    # 16 -> 32 channels: the data sits in channels 8..23.
    x = np.ones((1, 4, 4, 16), "float32")
    got = _np(PaddedIdentity(32, strides=2)(keras.ops.convert_to_tensor(x)))
    assert got.shape == (1, 2, 2, 32)
    assert (got[..., 8:24] == 1).all()
    assert (got[..., :8] == 0).all() and (got[..., 24:] == 0).all()


def test_padded_identity_rejects_fewer_filters():
    with pytest.raises(ValueError, match="filters"):
        PaddedIdentity(2, 1)(keras.ops.ones((1, 4, 4, 3)))


def test_padded_identity_config_round_trip():
    layer = PaddedIdentity(12, strides=2, name="shortcut_a")
    config = layer.get_config()
    assert config["filters"] == 12 and config["strides"] == 2
    clone = PaddedIdentity.from_config(config)
    assert (clone.filters, clone.strides, clone.name) == (12, 2, "shortcut_a")
    # Through Keras' registry, as a saved model would do it.
    serialized = keras.saving.serialize_keras_object(layer)
    again = keras.saving.deserialize_keras_object(serialized)
    assert isinstance(again, PaddedIdentity)
    assert (again.filters, again.strides) == (12, 2)
    x = np.random.default_rng(12).normal(size=(1, 6, 6, 5)).astype("float32")
    t = keras.ops.convert_to_tensor(x)
    np.testing.assert_array_equal(_np(layer(t)), _np(again(t)))
    np.testing.assert_array_equal(_np(layer(t)), _padded_reference(x, 12, 2))
    assert not layer.weights

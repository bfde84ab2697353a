"""Tests for annzoo.augment: specs, placement, exact semantics of each op.

Expected values come from numpy re-statements of each op's definition (shifts
with zeros, mirrors, convex combinations, pasted boxes), not from the code's
own output.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import warnings

import keras
import matplotlib.image
import numpy as np
import pytest

from annzoo import augment
from annzoo.errors import AnnzooError, UnknownNameError
from annzoo.layers import Augmentation, RandomPadCrop
from annzoo.layers.augment import fused_calls
from tests.conftest import ROOT, subprocess_env

pytestmark = pytest.mark.jax

# Keras' RandAugment takes about 50 s to compile for JAX on a CPU (measured:
# 47.9 s for the first 8x8 batch, then 0.01 s a batch), a fifth of the JAX
# pass's augmentation tests. annzoo's wrapping is the same for every op: on
# JAX it is checked with the others, and RandAugment itself on TensorFlow.
RANDAUGMENT = pytest.param(
    "randaugment",
    marks=pytest.mark.skipif(
        keras.backend.backend() == "jax",
        reason="Keras' RandAugment compiles for about 50 s on JAX's CPU; "
        "checked on TensorFlow",
    ),
)
PER_SAMPLE_OPS = [
    "flip",
    {"name": "pad_crop", "padding": 2},
    "rotation",
    "translation",
    "zoom",
    "contrast",
    RANDAUGMENT,
]


def _images(shape, seed=0, low=0.2, high=0.8):
    """Distinct, non-zero pixel values: any zero pixel came from padding."""
    return np.random.default_rng(seed).uniform(low, high, shape).astype("float32")


def _np(x):
    return np.asarray(keras.ops.convert_to_numpy(x))


def _dense_model(shape, outputs=4):
    model = keras.Sequential(
        [keras.Input(shape), keras.layers.Flatten(), keras.layers.Dense(outputs)],
        name="dense",
    )
    model.compile(optimizer="sgd", loss="mse")
    return model


def _identity_model(shape):
    model = keras.Sequential(
        [keras.Input(shape), keras.layers.Identity()], name="identity"
    )
    model.compile(optimizer="sgd", loss="mse")
    return model


def _shift(image, dy, dx):
    """``image`` moved down by dy and right by dx, zeros shifted in."""
    p = max(abs(dy), abs(dx))
    padded = np.pad(image, ((p, p), (p, p), (0, 0)))
    h, w = image.shape[:2]
    return padded[p - dy : p - dy + h, p - dx : p - dx + w]


def _shifts_of(out, image, padding):
    return [
        (dy, dx)
        for dy in range(-padding, padding + 1)
        for dx in range(-padding, padding + 1)
        if np.array_equal(out, _shift(image, dy, dx))
    ]


# --- specs ---------------------------------------------------------------------


def test_presets_resolve_to_their_definitions():
    # He et al. (2016): 4-pixel pad-and-crop, then horizontal flip.
    assert augment.resolve("cifar") == [
        {"name": "pad_crop", "padding": 4},
        {"name": "flip", "mode": "horizontal"},
    ]
    assert augment.resolve("none") == [] == augment.resolve(None)
    assert augment.resolve("flip") == [{"name": "flip", "mode": "horizontal"}]
    digits = augment.resolve("digits")
    assert [i["name"] for i in digits] == ["rotation", "translation"]  # no flips
    assert [i["name"] for i in augment.resolve("randaugment")] == ["randaugment"]
    assert set(augment.PRESETS) == {"none", "flip", "cifar", "digits", "randaugment"}


def test_resolve_fills_defaults_is_json_and_idempotent():
    spec = [
        "flip",
        "pad_crop",
        "rotation",
        "translation",
        {"name": "zoom", "height": 0.2},
        "contrast",
        {"name": "randaugment", "num_ops": 3},
        "mixup",
        "cutmix",
    ]
    resolved = augment.resolve(spec)
    assert resolved == [
        {"name": "flip", "mode": "horizontal"},
        {"name": "pad_crop", "padding": 4},
        {"name": "rotation", "factor": 0.1, "fill_mode": "constant"},
        {"name": "translation", "height": 0.1, "width": 0.1, "fill_mode": "constant"},
        {"name": "zoom", "height": 0.2, "width": None, "fill_mode": "constant"},
        {"name": "contrast", "factor": 0.2, "value_range": [0, 1]},
        {"name": "randaugment", "num_ops": 3, "factor": 0.5, "value_range": [0, 1]},
        {"name": "mixup", "alpha": 0.2},
        {"name": "cutmix", "alpha": 1.0},
    ]
    assert json.loads(json.dumps(resolved)) == resolved
    assert augment.resolve(resolved) == resolved
    assert augment.resolve(json.loads(json.dumps(resolved))) == resolved
    resolved[0]["mode"] = "vertical"  # a fresh copy every time
    assert augment.resolve("flip")[0]["mode"] == "horizontal"


@pytest.mark.parametrize(
    "spec, names",
    [
        ("cifr", ["spec", "'cifar'"]),  # preset misspelt: suggestion
        (["flp"], ["name", "'flip'"]),  # op misspelt
        ([{"name": "pad_crop", "padding": -1}], ["padding"]),
        ([{"name": "pad_crop", "padding": 2.5}], ["padding"]),
        ([{"name": "flip", "mode": "diagonal"}], ["mode"]),
        ([{"name": "flip", "probability": 0.5}], ["probability"]),
        ([{"name": "pad_crop", "paddding": 4}], ["paddding", "'padding'"]),
        ([{"name": "rotation", "factor": 1.5}], ["factor"]),
        ([{"name": "rotation", "factor": 0}], ["factor"]),
        ([{"name": "rotation", "fill_mode": "mirror"}], ["fill_mode"]),
        ([{"name": "translation", "height": -0.1}], ["height"]),
        ([{"name": "translation", "width": "0.1"}], ["width"]),
        ([{"name": "zoom", "height": 1.0}], ["height"]),
        ([{"name": "contrast", "factor": 2}], ["factor"]),
        ([{"name": "randaugment", "num_ops": 0}], ["num_ops"]),
        ([{"name": "randaugment", "factor": 1.5}], ["factor"]),
        ([{"name": "randaugment", "value_range": (1, 0)}], ["value_range"]),
        ([{"name": "mixup", "alpha": 0}], ["alpha"]),
        ([{"name": "cutmix", "alpha": -1.0}], ["alpha"]),
        (["mixup", "mixup"], ["mixup"]),
        ([{"padding": 4}], ["name"]),
        ([3], ["name"]),
        (42, ["spec"]),
    ],
)
def test_bad_specs_name_the_parameter(spec, names):
    with pytest.raises(AnnzooError) as info:
        augment.resolve(spec)
    message = str(info.value)
    assert "Received" in message
    for name in names:
        assert name in message


def test_unknown_names_raise_unknown_name_error():
    for spec in ("cifr", ["flp"], [{"name": "flip", "mode": "diagonal"}]):
        with pytest.raises(UnknownNameError, match="Did you mean|must be one of"):
            augment.resolve(spec)


def test_other_arguments_are_checked():
    model = _identity_model((8, 8, 1))
    with pytest.raises(AnnzooError, match="batch_mix_fn.*Received"):
        augment.in_model(model, ["flip", "mixup"])
    with pytest.raises(AnnzooError, match="seed.*Received: seed=-1"):
        augment.layers("flip", seed=-1)
    with pytest.raises(AnnzooError, match="num_classes.*Received"):
        augment.batch_mix_fn(["mixup"], 0)
    flat = keras.Sequential([keras.Input((5,)), keras.layers.Dense(2)])
    with pytest.raises(AnnzooError, match="one image input.*Received"):
        augment.in_model(flat, "flip")
    with pytest.raises(AnnzooError, match=r"\[0, 1\].*Received"):
        augment.preview("flip", np.full((2, 4, 4, 1), 3.0), "unused.png")


def test_layers_are_per_sample_ops_with_distinct_seeds():
    built = augment.layers(["pad_crop", "flip", "mixup", "flip", "cutmix"], seed=3)
    assert [type(layer).__name__ for layer in built] == [
        "RandomPadCrop",
        "RandomFlip",
        "RandomFlip",
    ]
    seeds = [layer.seed for layer in built]
    assert len(set(seeds)) == 3 and all(isinstance(s, int) for s in seeds)
    assert [layer.seed for layer in augment.layers(["pad_crop", "flip"], seed=3)] == (
        seeds[:2]
    )
    assert augment.batch_mix_fn("cifar", 10) is None
    assert augment.batch_mix_fn("cifar", None) is None  # no classes needed


def test_pad_crop_layer_config_round_trips():
    layer = RandomPadCrop(3, seed=5, name="crop")
    clone = RandomPadCrop.from_config(layer.get_config())
    assert (clone.padding, clone.seed, clone.name) == (3, 5, "crop")
    aug = Augmentation([layer])
    clone = Augmentation.from_config(aug.get_config())
    assert [type(x).__name__ for x in clone.layers] == ["RandomPadCrop"]
    assert clone.layers[0].padding == 3


# --- placement in the model: identity outside training ---------------------------


@pytest.mark.parametrize(
    "op", PER_SAMPLE_OPS, ids=lambda op: op if isinstance(op, str) else op["name"]
)
def test_in_model_is_identity_outside_training(op):
    x = _images((16, 8, 8, 3))
    y = _images((16, 4), seed=1)
    model = _dense_model((8, 8, 3))
    wrapper = augment.in_model(model, [op], seed=1)
    assert wrapper.compiled
    expected = model.predict(x, verbose=0)
    np.testing.assert_array_equal(wrapper.predict(x, verbose=0), expected)
    np.testing.assert_array_equal(_np(wrapper(x)), _np(model(x)))
    np.testing.assert_array_equal(_np(wrapper(x, training=False)), _np(model(x)))
    assert wrapper.evaluate(x, y, verbose=0) == model.evaluate(x, y, verbose=0)
    trained = _np(wrapper(x, training=True))
    assert trained.shape == expected.shape
    assert np.abs(trained - expected).max() > 1e-3


@pytest.mark.parametrize("spec", ["cifar", "digits"])
def test_fit_augments_and_evaluate_does_not(spec):
    # The identity model's loss against its own input is zero exactly when the
    # input reaches it unchanged.
    x = _images((16, 8, 8, 1))
    wrapper = augment.in_model(_identity_model((8, 8, 1)), spec, seed=0)
    if keras.backend.backend() == "jax":  # rotation/translation stay under XLA
        assert wrapper.jit_compile is True
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "no trainable weights"
        history = wrapper.fit(x, x, batch_size=16, epochs=2, verbose=0)
    assert min(history.history["loss"]) > 1e-3
    assert wrapper.evaluate(x, x, verbose=0) == 0.0


def test_pad_crop_in_training_is_a_zero_filled_shift():
    padding = 2
    x = _images((64, 6, 7, 2), seed=2)
    wrapper = augment.in_model(
        _identity_model((6, 7, 2)),
        [{"name": "pad_crop", "padding": padding}],
        seed=4,
    )
    out = _np(wrapper(x, training=True))
    shifts = []
    for b in range(len(x)):
        found = _shifts_of(out[b], x[b], padding)
        assert len(found) == 1, f"image {b} is not a single shift within ±{padding}"
        shifts.append(found[0])
    assert len(set(shifts)) >= 10  # each image gets its own offset
    every = set(range(-padding, padding + 1))  # uniform over all 2p+1 offsets
    assert {dy for dy, _ in shifts} == every == {dx for _, dx in shifts}
    np.testing.assert_array_equal(_np(wrapper(x)), x)
    np.testing.assert_array_equal(_np(RandomPadCrop(0)(x, training=True)), x)


@pytest.mark.parametrize(
    "mode, mirror",
    [
        ("horizontal", lambda im: im[:, ::-1]),
        ("vertical", lambda im: im[::-1, :]),
    ],
)
def test_flip_in_training_mirrors_some_samples(mode, mirror):
    x = _images((32, 5, 6, 3), seed=3)
    wrapper = augment.in_model(
        _identity_model((5, 6, 3)), [{"name": "flip", "mode": mode}], seed=2
    )
    out = _np(wrapper(x, training=True))
    flipped = []
    for b in range(len(x)):
        same = np.array_equal(out[b], x[b])
        mirrored = np.array_equal(out[b], mirror(x[b]))
        assert same != mirrored, f"image {b} is neither the input nor its mirror"
        flipped.append(mirrored)
    assert any(flipped) and not all(flipped)


@pytest.mark.parametrize("placement", ["pipeline", "model"])
def test_pad_crop_then_flip_matches_the_two_layers_in_turn(monkeypatch, placement):
    # The CIFAR pair runs as one gather, in the pipeline and in the model's
    # Augmentation layer; it must draw what the two layers draw and give
    # their output: a zero-filled shift, then a mirror.
    x = _images((48, 7, 9, 3), seed=5)
    if placement == "pipeline":
        fused = augment.pipeline_fn("cifar", seed=8)
    else:
        layer = Augmentation(augment.layers("cifar", seed=8))

        def fused(images, labels):
            return _np(layer(images, training=True)), labels

    pad_crop, flip = augment.layers("cifar", seed=8)
    flip_passes = []
    transform = keras.layers.RandomFlip.transform_images

    def counted(self, *args, **kwargs):
        flip_passes.append(1)
        return transform(self, *args, **kwargs)

    monkeypatch.setattr(keras.layers.RandomFlip, "transform_images", counted)
    flipped = []
    for _ in range(2):  # the generators move on between batches
        flip_passes.clear()
        out, _ = fused(x, None)
        assert not flip_passes  # no separate pass of the flip over the batch
        expected = _np(flip(pad_crop(x, training=True), training=True))
        assert flip_passes
        np.testing.assert_array_equal(out, expected)
        for b in range(len(x)):
            plain = _shifts_of(out[b], x[b], 4)
            mirrored = _shifts_of(out[b][:, ::-1], x[b], 4)
            assert len(plain) + len(mirrored) == 1, f"image {b}"
            flipped.append(bool(mirrored))
    assert any(flipped) and not all(flipped)
    # Other orders and modes are not fused, and keep working.
    other, _ = augment.pipeline_fn(["flip", "pad_crop"], seed=8)(x, None)
    assert other.shape == x.shape


def _bilinear(image, xs, ys):
    """``image`` (h, w, c) sampled at the points (xs, ys), zero outside."""
    h, w = image.shape[:2]
    x0, y0 = np.floor(xs).astype(int), np.floor(ys).astype(int)
    out = np.zeros(xs.shape + image.shape[2:], np.float64)
    for dy in (0, 1):
        for dx in (0, 1):
            yy, xx = y0 + dy, x0 + dx
            weight = (1 - abs(xs - xx)) * (1 - abs(ys - yy))
            inside = (yy >= 0) & (yy < h) & (xx >= 0) & (xx < w)
            pixel = image[np.clip(yy, 0, h - 1), np.clip(xx, 0, w - 1)]
            out += np.where(inside, weight, 0.0)[..., None] * pixel
    return out


def _point_map(transformation, b, h, w):
    """Image ``b``'s map from an output pixel (x, y) to the input point it is
    sampled at, from a Keras layer's drawn transformation: a rotation by its
    angle about the centre, a shift by its translation, or a zoom about the
    centre by its factors."""
    t = {k: _np(v) for k, v in transformation.items() if hasattr(v, "shape")}
    cy, cx = (h - 1) / 2, (w - 1) / 2
    if "angle" in t:
        a = np.radians(t["angle"][b])
        return lambda x, y: (
            cx + np.cos(a) * (x - cx) - np.sin(a) * (y - cy),
            cy + np.sin(a) * (x - cx) + np.cos(a) * (y - cy),
        )
    if "translations" in t:
        dx, dy = t["translations"][b]
        return lambda x, y: (x - dx, y - dy)
    zx, zy = t["width_zoom"][b, 0], t["height_zoom"][b, 0]
    return lambda x, y: (cx + zx * (x - cx), cy + zy * (y - cy))


@pytest.mark.parametrize("placement", ["pipeline", "model"])
@pytest.mark.parametrize(
    "spec",
    ["digits", ["zoom", "rotation", {"name": "translation", "height": 0.2}], ["zoom"]],
    ids=["rotation-translation", "zoom-rotation-translation", "zoom"],
)
def test_geometric_runs_resample_once_with_each_layers_draws(spec, placement):
    # A run of rotations, translations and zooms is one bilinear interpolation
    # of the input at the composition of the layers' maps, each drawn as the
    # layer itself would draw it. Expected: the maps composed point by point
    # in numpy, and the input sampled there.
    x = _images((6, 12, 12, 2), seed=3)
    if placement == "pipeline":
        fused = augment.pipeline_fn(spec, seed=4)
    else:
        layer = Augmentation(augment.layers(spec, seed=4))

        def fused(images, labels):
            return _np(layer(images, training=True)), labels

    twins = augment.layers(spec, seed=4)  # the same seeds: the same draws
    in_turn = augment.layers(spec, seed=4)
    h, w = x.shape[1:3]
    ys, xs = np.meshgrid(
        np.arange(h, dtype=float), np.arange(w, dtype=float), indexing="ij"
    )
    for _ in range(2):  # the generators move on between batches
        out, _ = fused(x, None)
        drawn = [twin.get_random_transformation(x, training=True) for twin in twins]
        want = np.empty_like(out)
        for b in range(len(x)):
            px, py = xs, ys
            for transformation in reversed(drawn):  # from the last layer back
                px, py = _point_map(transformation, b, h, w)(px, py)
            want[b] = _bilinear(x[b], px, py)
        np.testing.assert_allclose(out, want, atol=2e-5)
        # The layers called in turn interpolate once each: not the same output.
        z = x
        for each in in_turn:
            z = each(z, training=True)
        if len(in_turn) > 1:
            assert np.abs(_np(z) - want).max() > 1e-3


def test_seeded_augmentation_is_reproducible():
    spec = ["pad_crop", "flip", "rotation", "contrast", "mixup", "cutmix"]
    x = _images((8, 10, 10, 3))
    y = np.arange(8)

    def run(seed):
        per_sample = augment.pipeline_fn(spec, seed=seed)
        mix = augment.batch_mix_fn(spec, 8, seed=seed)
        wrapper = augment.in_model(_identity_model((10, 10, 3)), spec[:4], seed=seed)
        outputs = []
        for _ in range(2):  # two consecutive batches
            images, labels = mix(*per_sample(x, y))
            outputs += [images, labels, _np(wrapper(x, training=True))]
        return outputs

    first, again, other = run(7), run(7), run(8)
    for a, b in zip(first, again, strict=True):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(first[0], first[3])  # the sequence moves on
    assert all(not np.array_equal(a, c) for a, c in zip(first, other, strict=True))


def test_pipeline_functions_run_as_one_program_on_jax_with_the_eager_draws(caplog):
    """On JAX the batch functions are compiled as one program each, the
    seed states passed through it; the draws are those of the ops run one by
    one, batch after batch."""
    if keras.backend.backend() != "jax":
        pytest.skip("one XLA program per batch function on JAX only")
    import logging

    import jax

    spec = ["rotation", "translation", "mixup", "cutmix"]
    x = _images((8, 10, 10, 3))
    y = np.arange(8)
    with jax.log_compiles(True), caplog.at_level(logging.WARNING):
        per_sample = augment.pipeline_fn(spec, seed=3)
        mix = augment.batch_mix_fn(spec, 8, seed=3)
        compiled = [mix(*per_sample(x, y)) for _ in range(2)]
    messages = [r.getMessage() for r in caplog.records]
    programs = [m for m in messages if m.startswith("Compiling jit(stateless)")]
    assert len(programs) == 2, programs  # one each, compiled once for 2 batches
    # The same seeds, the same calls (rotation and translation as one
    # resampling) run op by op outside any program.
    calls = fused_calls(augment.layers(spec[:2], seed=3))
    eager_mix = augment.batch_mix_fn(spec, 8, seed=3)
    for images, labels in compiled:
        z = x
        with jax.disable_jit():
            for call in calls:
                z = call(z)
            want_images, want_labels = eager_mix(_np(z), y)
        np.testing.assert_allclose(images, want_images, atol=1e-5)
        np.testing.assert_allclose(labels, want_labels, atol=1e-6)
    assert not np.array_equal(compiled[0][0], compiled[1][0])
    # The runner's setting on JAX: the same batches, left on the device.
    kept = augment.batch_mix_fn(spec, 8, seed=3, keep_on_device=True)(
        *augment.pipeline_fn(spec, seed=3, keep_on_device=True)(x, y)
    )
    assert all(isinstance(t, jax.Array) for t in kept)
    np.testing.assert_array_equal(_np(kept[0]), compiled[0][0])
    np.testing.assert_array_equal(_np(kept[1]), compiled[0][1])


def test_pipeline_fn_on_numpy_returns_numpy_and_keeps_labels():
    x = _images((4, 8, 8, 3))
    y = np.array([3, 1, 4, 1])
    images, labels = augment.pipeline_fn("cifar", seed=0)(x, y)
    assert isinstance(images, np.ndarray) and images.shape == x.shape
    assert images.dtype == np.float32
    assert labels is y
    for b in range(4):  # a shift of the image or of its mirror
        assert _shifts_of(images[b], x[b], 4) or _shifts_of(images[b], x[b, :, ::-1], 4)
    same, _ = augment.pipeline_fn("none")(x, y)
    assert same is x
    # One image at a time, as a per-sample map before batching.
    image, label = augment.pipeline_fn("cifar", seed=1)(x[0], y[0])
    assert image.shape == x[0].shape and label == y[0]
    assert _shifts_of(image, x[0], 4) or _shifts_of(image, x[0, :, ::-1], 4)


@pytest.mark.parametrize("spec", ["contrast", RANDAUGMENT, "rotation", "zoom"])
def test_outputs_stay_in_the_unit_range(spec):
    # The [0, 1] image contract: value_range=(0, 1) reaches Keras' colour ops
    # (their default is (0, 255)), and zero fill stays in range.
    x = _images((8, 8, 8, 3), low=0.0, high=1.0)
    augment_batch = augment.pipeline_fn(
        [{"name": spec, "factor": 1.0}] if spec == "randaugment" else [spec], seed=0
    )
    for _ in range(3):  # a draw may leave a batch unchanged; three may not
        out, _ = augment_batch(x, None)
        assert out.min() >= 0.0 and out.max() <= 1.0 + 1e-6
        if not np.allclose(out, x, atol=1e-3):
            break
    else:
        raise AssertionError(f"{spec}: three draws left the images unchanged")


# --- mixing in the input pipeline --------------------------------------------------


def _partner_and_weight(row, i):
    """The sample's own weight and its partner, read from its soft label."""
    others = row.copy()
    others[i] = -1.0
    return float(row[i]), int(np.argmax(others))


def _check_soft_labels(labels, n):
    assert labels.shape == (n, n)
    assert labels.min() >= 0.0
    np.testing.assert_allclose(labels.sum(axis=1), 1.0, rtol=1e-6)


def _is_mixup(out, x, row, i):
    lam, j = _partner_and_weight(row, i)
    expected_row = np.zeros_like(row)
    expected_row[i] += lam
    expected_row[j] += 1.0 - lam
    return np.allclose(row, expected_row, atol=1e-6) and np.allclose(
        out, lam * x[i] + (1.0 - lam) * x[j], atol=1e-5
    )


def _cutmix_box(out, x, row, i):
    """The pasted box's fraction of the image if ``out`` is a valid cutmix."""
    lam, j = _partner_and_weight(row, i)
    from_own = np.all(out == x[i], axis=-1)
    from_partner = np.all(out == x[j], axis=-1)
    if not np.all(from_own | from_partner):
        return None
    pasted = from_partner & ~from_own
    if pasted.any():
        rows, cols = np.nonzero(pasted)
        box = pasted[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1]
        if not box.all():  # not a rectangle
            return None
    if not np.isclose(pasted.mean(), 1.0 - lam, atol=1e-6):
        return None
    return pasted.mean()


def test_mixup_labels_and_images_share_the_weight():
    n = 16
    x = _images((n, 5, 5, 3), low=0.0, high=1.0)
    mix = augment.batch_mix_fn([{"name": "mixup", "alpha": 0.4}], n, seed=0)
    images, labels = mix(x, np.arange(n))
    assert isinstance(images, np.ndarray) and images.shape == x.shape
    _check_soft_labels(labels, n)
    for i in range(n):
        assert _is_mixup(images[i], x, labels[i], i), f"sample {i}"
    own = labels[np.arange(n), np.arange(n)]
    assert np.sum((own > 0.05) & (own < 0.95)) >= 2  # real blends happened
    # (batch, 1) integer labels and one-hot labels give the same result.
    again = augment.batch_mix_fn([{"name": "mixup", "alpha": 0.4}], n, seed=0)
    images2, labels2 = again(x, np.eye(n, dtype="float32"))
    np.testing.assert_allclose(images2, images, rtol=1e-6)
    np.testing.assert_allclose(labels2, labels, rtol=1e-6)


def test_cutmix_pastes_a_box_whose_area_is_the_label_weight():
    n = 16
    x = _images((n, 12, 10, 3), seed=5, low=0.0, high=1.0)
    mix = augment.batch_mix_fn(["cutmix"], n, seed=1)
    images, labels = mix(x, np.arange(n)[:, None])
    _check_soft_labels(labels, n)
    fractions = []
    for i in range(n):
        fraction = _cutmix_box(images[i], x, labels[i], i)
        assert fraction is not None, f"sample {i} is not a box pasted from one image"
        fractions.append(fraction)
    assert sum(0.0 < f < 1.0 for f in fractions) >= 4


def test_mixup_and_cutmix_together_use_one_per_sample():
    n = 16
    x = _images((n, 8, 8, 3), seed=6, low=0.0, high=1.0)
    mix = augment.batch_mix_fn(["mixup", {"name": "cutmix", "alpha": 1.0}], n, seed=2)
    kinds = set()
    for _ in range(3):
        images, labels = mix(x, np.arange(n))
        _check_soft_labels(labels, n)
        for i in range(n):
            own = labels[i, i]
            if np.isclose(own, 1.0):
                continue
            cut = _cutmix_box(images[i], x, labels[i], i) is not None
            blend = _is_mixup(images[i], x, labels[i], i)
            assert cut or blend, f"sample {i} is neither mixup nor cutmix"
            kinds.add("cutmix" if cut else "mixup")
    assert kinds == {"mixup", "cutmix"}


# --- saving, previews, tf.data ----------------------------------------------


@pytest.mark.slow
def test_in_model_saves_and_reloads_in_a_fresh_process(tmp_path):
    x = _images((6, 8, 8, 3))
    spec = ["rotation", {"name": "pad_crop", "padding": 2}, "flip"]
    model = keras.Sequential(
        [
            keras.Input((8, 8, 3), name="images"),
            keras.layers.Conv2D(4, 3, name="conv"),
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dense(5, activation="softmax", name="head"),
        ],
        name="small",
    )
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate=0.003),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    wrapper = augment.in_model(model, spec, seed=0)
    assert wrapper.name == "small_augmented"
    wrapper.fit(x, np.arange(6) % 5, epochs=1, verbose=0)
    path = tmp_path / "wrapper.keras"
    wrapper.save(path)
    np.save(tmp_path / "x.npy", x)
    expected = wrapper.predict(x, verbose=0)
    np.testing.assert_array_equal(expected, model.predict(x, verbose=0))
    augmented, _ = augment.pipeline_fn(spec, seed=11)(x, None)

    script = textwrap.dedent(
        f"""
        import json, keras, numpy as np
        import annzoo  # registers annzoo's layers; no custom_objects
        model = keras.saving.load_model({str(path)!r})
        from annzoo import augment
        x = np.load({str(tmp_path / "x.npy")!r})
        np.save({str(tmp_path / "pred.npy")!r}, model.predict(x, verbose=0))
        augmented, _ = augment.pipeline_fn({spec!r}, seed=11)(x, None)
        np.save({str(tmp_path / "augmented.npy")!r}, augmented)
        config = model.get_compile_config()
        print(json.dumps({{
            "compiled": model.compiled,
            "loss": config["loss"],
            "lr": config["optimizer"]["config"]["learning_rate"],
            "layers": [type(layer).__name__ for layer in model.layers],
        }}))
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        cwd=ROOT,
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    info = json.loads(result.stdout.strip().splitlines()[-1])
    assert info["compiled"] is True
    assert info["loss"] == "sparse_categorical_crossentropy"
    assert info["lr"] == pytest.approx(0.003)
    assert info["layers"] == ["InputLayer", "Augmentation", "Sequential"]
    np.testing.assert_array_equal(np.load(tmp_path / "pred.npy"), expected)
    # The same seed augments identically in a fresh process.
    np.testing.assert_array_equal(np.load(tmp_path / "augmented.npy"), augmented)


def test_uncompiled_model_gives_uncompiled_wrapper():
    model = keras.Sequential([keras.Input((4, 4, 1)), keras.layers.Flatten()])
    assert not augment.in_model(model, "flip").compiled


@pytest.mark.parametrize(
    "spec, channels",
    [("digits", 1), (["flip", "mixup"], 1), (["pad_crop", "flip", "cutmix"], 3)],
)
def test_preview_writes_a_png_atomically(tmp_path, spec, channels):
    images = _images((5, 16, 16, channels), low=0.0, high=1.0)
    path = tmp_path / "previews" / "augment.png"
    result = augment.preview(spec, images, path, samples=3, variants=2, seed=1)
    assert result == path
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    pixels = matplotlib.image.imread(path)
    assert pixels.ndim == 3 and min(pixels.shape[:2]) > 100
    assert pixels[..., :3].std() > 0.05  # not a blank canvas
    assert [p.name for p in path.parent.iterdir()] == ["augment.png"]


@pytest.mark.skipif(
    keras.backend.backend() != "tensorflow", reason="tf.data needs TensorFlow"
)
def test_pipeline_functions_run_in_tf_data():
    import tensorflow as tf

    x = _images((10, 8, 8, 3))
    y = np.arange(10) % 3
    dataset = (
        tf.data.Dataset.from_tensor_slices((x, y))
        .batch(4)
        .map(augment.pipeline_fn("cifar", seed=0))
    )
    start = 0
    for images, labels in dataset:
        images = images.numpy()
        assert images.dtype == np.float32
        assert images.shape == (min(4, 10 - start), 8, 8, 3)
        np.testing.assert_array_equal(labels.numpy(), y[start : start + 4])
        for b, image in enumerate(images):
            source = x[start + b]
            assert _shifts_of(image, source, 4) or _shifts_of(image, source[:, ::-1], 4)
        start += len(images)
    assert start == 10

    mixed = (
        tf.data.Dataset.from_tensor_slices((x, y))
        .map(augment.pipeline_fn("cifar", seed=0))  # per sample, then batched
        .batch(4)
        .map(augment.batch_mix_fn(["flip", "mixup", "cutmix"], 3, seed=0))
    )
    for images, labels in mixed:
        assert images.shape[1:] == (8, 8, 3) and images.dtype == tf.float32
        assert labels.shape[1:] == (3,)
        np.testing.assert_allclose(labels.numpy().sum(axis=1), 1.0, rtol=1e-6)


def test_keras_layers_run_in_tf_data_under_other_backends():
    # With JAX as the backend, Keras' own layers still run in tf.data (Keras
    # switches them to TensorFlow per call): the pipeline function neither
    # compiles them with JAX nor fuses them with keras.ops there.
    if keras.backend.backend() == "tensorflow":
        pytest.skip("another backend's path")
    tf = pytest.importorskip("tensorflow")
    x = _images((6, 8, 8, 1), seed=2)
    dataset = (
        tf.data.Dataset.from_tensor_slices((x, np.arange(6)))
        .batch(4)
        .map(augment.pipeline_fn("digits", seed=0))
    )
    sizes = []
    for images, labels in dataset:
        assert images.dtype == tf.float32 and images.shape[1:] == (8, 8, 1)
        assert not np.array_equal(images.numpy(), x[: len(images)])  # augmented
        sizes.append(len(labels))
    assert sizes == [4, 2]

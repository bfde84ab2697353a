"""The GAN family: losses and gradient penalty against numpy, the training step
against an independent computation and across backends, save/reload with both
optimizers, sampling, presets' sizes and bad input.

Expected values come from numpy formulas, finite differences or a step
recomputed here with plain gradient tapes; the backend comparison runs the
same saved model, batch and noise in a fresh process on another backend:
TensorFlow against JAX on the TensorFlow pass, PyTorch against TensorFlow on the
PyTorch pass.
"""

from __future__ import annotations

import json

import keras
import numpy as np
import pytest

import annzoo
from annzoo.models import gan as gan_module
from annzoo.models.gan import GAN, build_gan, losses, sample
from tests.conftest import run_python

SMOKE = dict(
    image_shape=(8, 8, 1),
    latent_dim=4,
    generator_filters=(8, 4),
    discriminator_filters=(4,),
    dropout=0.0,
    conditional_classes=3,
)


def _softplus(x):
    return np.logaddexp(0.0, x)


def _numpy(x):
    return keras.ops.convert_to_numpy(x)


# -- the losses, by hand ------------------------------------------------------

REAL = np.array([2.0, -0.5, 0.3, 1.2], dtype=np.float32)
FAKE = np.array([-1.5, 0.4, -0.2, 2.5], dtype=np.float32)


@pytest.mark.jax
@pytest.mark.torch
@pytest.mark.parametrize(
    ("loss", "d_expected", "g_expected"),
    [
        # Binary cross-entropy, written with -log(sigmoid): real scores -> 1,
        # fake scores -> 0; the generator wants its images called real.
        (
            "bce",
            np.mean(-np.log(1 / (1 + np.exp(-REAL))))
            + np.mean(-np.log(1 - 1 / (1 + np.exp(-FAKE)))),
            np.mean(-np.log(1 / (1 + np.exp(-FAKE)))),
        ),
        (
            "hinge",
            np.mean(np.maximum(0, 1 - REAL)) + np.mean(np.maximum(0, 1 + FAKE)),
            -np.mean(FAKE),
        ),
        ("wgan-gp", np.mean(FAKE) - np.mean(REAL), -np.mean(FAKE)),
    ],
)
def test_losses_match_numpy(loss, d_expected, g_expected):
    d = losses.discriminator_loss(loss, REAL[:, None], FAKE[:, None])
    g = losses.generator_loss(loss, FAKE[:, None])
    np.testing.assert_allclose(_numpy(d), d_expected, rtol=1e-6)
    np.testing.assert_allclose(_numpy(g), g_expected, rtol=1e-6)
    # By hand for one pair: bce of (2.0 real, -1.5 fake) is
    # log(1 + e^-2) + log(1 + e^-1.5) = 0.126928 + 0.201413.
    if loss == "bce":
        one = losses.discriminator_loss(loss, REAL[:1], FAKE[:1])
        np.testing.assert_allclose(_numpy(one), 0.328341, atol=1e-6)


@pytest.mark.jax
@pytest.mark.torch
def test_gradient_penalty_of_given_gradients():
    grads = np.array([[[[3.0]], [[4.0]]], [[[0.0]], [[0.5]]]], dtype=np.float32)
    # Norms 5 and 0.5: ((5 - 1)^2 + (0.5 - 1)^2) / 2.
    np.testing.assert_allclose(
        _numpy(losses.gradient_penalty(grads)), (16 + 0.25) / 2, rtol=1e-5
    )
    mixed = losses.interpolate(np.ones((2, 1)), np.zeros((2, 1)), np.array([[0.25]]))
    np.testing.assert_allclose(_numpy(mixed), [[0.25], [0.25]])


# -- a GAN whose every step numpy can follow ------------------------------------


def _linear_gan(loss):
    """A sigmoid-dense generator and a tanh critic, small enough for numpy."""
    keras.utils.set_random_seed(3)
    noise = keras.Input((3,), name="noise")
    x = keras.layers.Dense(4, activation="sigmoid", name="out")(noise)
    generator = keras.Model(noise, keras.layers.Reshape((2, 2, 1))(x))
    images = keras.Input((2, 2, 1), name="images")
    h = keras.layers.Dense(3, activation="tanh", name="hidden")(
        keras.layers.Flatten()(images)
    )
    discriminator = keras.Model(images, keras.layers.Dense(1, name="score")(h))
    model = GAN(generator, discriminator, loss=loss, gradient_penalty=10.0)
    model.compile(keras.optimizers.SGD(0.0), keras.optimizers.SGD(0.0))
    return model


def test_gradient_penalty_step_matches_finite_differences():
    model = _linear_gan("wgan-gp")
    rng = np.random.default_rng(0)
    real = rng.random((3, 2, 2, 1)).astype("float32")
    z = rng.normal(size=(3, 3)).astype("float32")
    eps = rng.random((3, 1, 1, 1)).astype("float32")
    model.draw_noise = lambda batch_size: (z, z, eps)
    logs = model.train_on_batch(real, return_dict=True)

    kg, bg = [w.astype("float64") for w in model.generator.get_weights()]
    k1, b1, k2, b2 = [w.astype("float64") for w in model.discriminator.get_weights()]

    def critic(x):
        return np.tanh(x.reshape(len(x), -1) @ k1 + b1) @ k2 + b2

    fake = (1 / (1 + np.exp(-(z @ kg + bg)))).reshape(3, 2, 2, 1)
    mixed = eps * real + (1 - eps) * fake
    step, grads = 1e-6, np.zeros((3, 4))
    for j in range(4):  # central differences, one pixel at a time
        delta = np.zeros((1, 4))
        delta[0, j] = step
        up = critic(mixed.reshape(3, 4) + delta)[:, 0]
        down = critic(mixed.reshape(3, 4) - delta)[:, 0]
        grads[:, j] = (up - down) / (2 * step)
    penalty = np.mean((np.linalg.norm(grads, axis=1) - 1) ** 2)
    expected = critic(fake).mean() - critic(real).mean() + 10.0 * penalty
    assert penalty > 1e-3  # the penalty term is really exercised
    np.testing.assert_allclose(logs["d_loss"], expected, rtol=1e-4)
    np.testing.assert_allclose(logs["g_loss"], -critic(fake).mean(), rtol=1e-4)
    np.testing.assert_allclose(logs["loss"], logs["d_loss"] + logs["g_loss"], 1e-6)


def test_step_updates_the_discriminator_then_the_generator_and_nothing_else():
    """D moves by -lr * grad of its loss at (G0, D0); G by -lr * grad of its
    loss at (G0, D1): recomputed with plain tapes. A generator update leaking
    into the discriminator (or the reverse) breaks one of the equalities."""
    import tensorflow as tf

    keras.utils.set_random_seed(1)
    model = build_gan(**SMOKE, compile=False)
    rate = 0.1
    model.compile(keras.optimizers.SGD(rate), keras.optimizers.SGD(rate))
    rng = np.random.default_rng(2)
    images = rng.random((4, 8, 8, 1)).astype("float32")
    labels = np.array([0, 1, 2, 1], dtype="int32")
    z_d, z_g = rng.normal(size=(2, 4, 4)).astype("float32")
    eps = rng.random((4, 1, 1, 1)).astype("float32")
    model.draw_noise = lambda batch_size: (z_d, z_g, eps)
    gen, disc = model.generator, model.discriminator
    g0 = [_numpy(v).copy() for v in gen.trainable_variables]
    d0 = [_numpy(v).copy() for v in disc.trainable_variables]

    def scores(images_):
        inputs = {
            "images": tf.convert_to_tensor(images_),
            "labels": tf.constant(labels),
        }
        return disc(inputs, training=True)

    with tf.GradientTape() as tape:
        fake = gen({"noise": z_d, "labels": labels}, training=True)
        d_loss = tf.reduce_mean(tf.nn.softplus(-scores(images))) + tf.reduce_mean(
            tf.nn.softplus(scores(fake))
        )
    grads = tape.gradient(d_loss, disc.trainable_variables)
    d1 = [w - rate * _numpy(g) for w, g in zip(d0, grads, strict=True)]
    for v, w in zip(disc.trainable_variables, d1, strict=True):
        v.assign(w)
    with tf.GradientTape() as tape:
        fake = gen({"noise": z_g, "labels": labels}, training=True)
        g_loss = tf.reduce_mean(tf.nn.softplus(-scores(fake)))
    grads = tape.gradient(g_loss, gen.trainable_variables)
    g1 = [w - rate * _numpy(g) for w, g in zip(g0, grads, strict=True)]
    for v, w in zip(disc.trainable_variables, d0, strict=True):
        v.assign(w)

    logs = model.train_on_batch(images, labels, return_dict=True)
    for network, expected, before in ((disc, d1, d0), (gen, g1, g0)):
        after = [_numpy(v) for v in network.trainable_variables]
        for a, e in zip(after, expected, strict=True):
            np.testing.assert_allclose(a, e, rtol=1e-5, atol=1e-6)
        assert any(not np.allclose(a, b) for a, b in zip(after, before, strict=True))
    np.testing.assert_allclose(logs["d_loss"], _numpy(d_loss), rtol=1e-5)
    assert model.generator_optimizer.iterations.numpy() == 1
    assert model.discriminator_optimizer.iterations.numpy() == 1


# -- the same step on other backends, and a resumed step ----------------------

CHILD = r"""
import sys
import numpy as np
import keras
from annzoo.models.gan import sample

model_path, data_path, out_path = sys.argv[1:4]
data = np.load(data_path)
model = keras.saving.load_model(model_path)
model.draw_noise = lambda batch_size: (data["z_d"], data["z_g"], data["eps"])
out = {"before": sample(model, 4, labels=[0, 1, 2, 0], seed=5)}
logs = model.train_on_batch(data["images"], data["labels"], return_dict=True)
out.update(d_loss=float(logs["d_loss"]), g_loss=float(logs["g_loss"]))
for i, v in enumerate(model.weights):
    out[f"weight{i}"] = keras.ops.convert_to_numpy(v)
for i, v in enumerate(model.optimizer.variables):
    out[f"slot{i}"] = keras.ops.convert_to_numpy(v)
np.savez(out_path, **out)
"""


def _saved_gan(tmp_path, loss):
    keras.utils.set_random_seed(4)
    model = build_gan(**SMOKE, loss=loss, compile=False)
    # SGD with momentum: optimizer slots to carry, and no Adam first step
    # (lr * g / |g|), whose sign flips on gradients near zero across backends.
    model.compile(
        keras.optimizers.SGD(0.05, momentum=0.5),
        keras.optimizers.SGD(0.05, momentum=0.5),
    )
    rng = np.random.default_rng(5)
    data = dict(
        images=rng.random((4, 8, 8, 1)).astype("float32"),
        labels=np.array([0, 2, 1, 2], dtype="int32"),
        z_d=rng.normal(size=(4, 4)).astype("float32"),
        z_g=rng.normal(size=(4, 4)).astype("float32"),
        eps=rng.random((4, 1, 1, 1)).astype("float32"),
    )
    model.save(tmp_path / f"{loss}.keras")
    np.savez(tmp_path / f"{loss}.npz", **data)
    return model, data


def _step(model, data):
    model.draw_noise = lambda batch_size: (data["z_d"], data["z_g"], data["eps"])
    return model.train_on_batch(data["images"], data["labels"], return_dict=True)


def _child(tmp_path, loss, backend, saved=None):
    saved = saved or tmp_path / f"{loss}.keras"
    out = tmp_path / f"{loss}-{backend}.npz"
    result = run_python(
        "-c", CHILD, str(saved), str(tmp_path / f"{loss}.npz"), str(out),
        KERAS_BACKEND=backend,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    return np.load(out)


# The backend each pass compares itself with: the TensorFlow pass with JAX, the
# PyTorch pass (where both are installed) with TensorFlow.
OTHER_BACKEND = {"tensorflow": "jax", "torch": "tensorflow"}


@pytest.mark.slow
@pytest.mark.torch
def test_this_backend_and_another_take_the_same_step(tmp_path):
    backend = OTHER_BACKEND[keras.backend.backend()]
    for loss in ("bce", "wgan-gp"):
        model, data = _saved_gan(tmp_path, loss)
        before = sample(model, 4, labels=[0, 1, 2, 0], seed=5)
        logs = _step(model, data)
        other = _child(tmp_path, loss, backend)
        # Numpy noise: the same samples from the same weights on any backend.
        np.testing.assert_allclose(other["before"], before, atol=1e-6)
        np.testing.assert_allclose(other["d_loss"], logs["d_loss"], rtol=1e-5)
        np.testing.assert_allclose(other["g_loss"], logs["g_loss"], rtol=1e-5)
        for i, v in enumerate(model.weights):
            np.testing.assert_allclose(
                other[f"weight{i}"], _numpy(v), rtol=1e-4, atol=1e-6, err_msg=v.path
            )
        slots = model.optimizer.variables
        assert len([k for k in other.files if k.startswith("slot")]) == len(slots)
        for i, v in enumerate(slots):
            np.testing.assert_allclose(
                other[f"slot{i}"], _numpy(v), rtol=1e-4, atol=1e-6, err_msg=v.path
            )


@pytest.mark.slow
def test_reloaded_gan_resumes_with_both_optimizers(tmp_path):
    """A step after save/reload in a fresh process equals the step the saved
    model takes itself: weights, both optimizers' slots and iterations."""
    model, data = _saved_gan(tmp_path, "bce")
    _step(model, data)
    model.save(tmp_path / "after-one.keras")
    # Both optimizers' variables are in the file, in the pair's list.
    for optimizer in (model.generator_optimizer, model.discriminator_optimizer):
        assert len(optimizer.variables) > 2  # iterations, learning rate, momenta
    logs = _step(model, data)
    resumed = _child(tmp_path, "bce", "tensorflow", tmp_path / "after-one.keras")
    assert resumed["d_loss"] == pytest.approx(float(logs["d_loss"]), abs=0)
    for i, v in enumerate(model.weights):
        np.testing.assert_array_equal(resumed[f"weight{i}"], _numpy(v), err_msg=v.path)
    for i, v in enumerate(model.optimizer.variables):
        np.testing.assert_array_equal(resumed[f"slot{i}"], _numpy(v), err_msg=v.path)
    assert model.generator_optimizer.iterations.numpy() == 2


def test_reload_keeps_the_compile_and_the_sub_models(tmp_path):
    model = build_gan(**{**SMOKE, "conditional_classes": None}, loss="hinge")
    model.optimizer.discriminator.learning_rate = 4e-4
    model.save(tmp_path / "gan.keras")
    text = json.dumps(model.get_compile_config())
    assert "generator_optimizer" in text and "discriminator_optimizer" in text
    reloaded = keras.saving.load_model(tmp_path / "gan.keras")
    assert isinstance(reloaded, GAN) and reloaded.loss_name == "hinge"
    assert isinstance(reloaded.generator, keras.Model)
    assert float(reloaded.discriminator_optimizer.learning_rate) == pytest.approx(4e-4)
    assert float(reloaded.generator_optimizer.learning_rate) == pytest.approx(2e-4)
    assert float(reloaded.generator_optimizer.beta_1) == 0.5
    np.testing.assert_array_equal(sample(reloaded, 3, seed=2), sample(model, 3, seed=2))


# -- fit, sampling, NaN ----------------------------------------------------------


@pytest.mark.jax
@pytest.mark.torch
def test_fit_trains_both_networks_and_logs_both_losses():
    keras.utils.set_random_seed(0)
    model = build_gan(**SMOKE, loss="hinge")
    images = np.random.default_rng(0).random((8, 8, 8, 1)).astype("float32")
    before_g = [_numpy(w).copy() for w in model.generator.trainable_weights]
    before_d = [_numpy(w).copy() for w in model.discriminator.trainable_weights]
    history = model.fit(images, np.arange(8) % 3, batch_size=4, epochs=1, verbose=0)
    assert set(history.history) == {"loss", "d_loss", "g_loss"}
    assert all(np.isfinite(v[0]) for v in history.history.values())
    for before, network in (
        (before_g, model.generator),
        (before_d, model.discriminator),
    ):
        after = [_numpy(w) for w in network.trainable_weights]
        assert any(not np.array_equal(a, b) for a, b in zip(after, before, strict=True))
    assert model.generator_optimizer.iterations.numpy() == 2


@pytest.mark.jax
@pytest.mark.torch
def test_sample_is_seeded_and_conditional():
    keras.utils.set_random_seed(0)
    model = build_gan(**SMOKE, compile=False)
    a, b = sample(model, 5, seed=7), sample(model, 5, seed=7)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, sample(model, 5, seed=8))
    assert a.shape == (5, 8, 8, 1) and a.dtype == np.float32
    assert a.min() >= 0 and a.max() <= 1
    # Labels cycle through the classes by default; the label changes the image.
    noise = np.random.default_rng(7).standard_normal((5, 4)).astype("float32")
    direct = model({"noise": noise, "labels": np.array([0, 1, 2, 0, 1])})
    np.testing.assert_allclose(a, _numpy(direct), atol=1e-6)
    threes = sample(model, 5, labels=2, seed=7)
    assert not np.allclose(threes[:2], a[:2])
    np.testing.assert_allclose(threes[2], a[2], atol=1e-6)  # both label 2


def test_nan_loss_is_reported_to_the_nan_guard():
    from annzoo.training.callbacks import NaNGuard

    model = build_gan(**SMOKE)
    images = np.full((8, 8, 8, 1), np.nan, dtype="float32")
    guard = NaNGuard()
    history = model.fit(images, np.zeros(8, dtype="int32"), batch_size=4, epochs=3,
                        verbose=0, callbacks=[guard])  # fmt: skip
    assert guard.nan_at == (1, 1)
    assert len(history.history["loss"]) == 1 and np.isnan(history.history["loss"][0])


def test_optimizer_pair_scales_both_rates_together():
    options = {"discriminator_optimizer": keras.optimizers.Adam(4e-4)}
    model = build_gan(**SMOKE, compile=options)
    model.optimizer.learning_rate = 1e-4  # what a learning-rate callback does
    assert float(model.generator_optimizer.learning_rate) == pytest.approx(1e-4)
    assert float(model.discriminator_optimizer.learning_rate) == pytest.approx(2e-4)
    assert float(model.optimizer.learning_rate) == pytest.approx(1e-4)


def test_compile_model_gives_each_network_a_copy_of_the_optimizer():
    # What the tuner and the runner call: annzoo.compile_model with a task.
    model = build_gan(**SMOKE, compile=False)
    annzoo.compile_model(model, task="adversarial", optimizer="sgd", learning_rate=0.01)
    g, d = model.generator_optimizer, model.discriminator_optimizer
    assert isinstance(g, keras.optimizers.SGD) and isinstance(d, keras.optimizers.SGD)
    assert g is not d
    assert float(g.learning_rate) == float(d.learning_rate) == pytest.approx(0.01)
    with pytest.raises(annzoo.AnnzooError, match="`loss` and `metrics` must be None"):
        model.compile(loss="mse")
    with pytest.raises(annzoo.AnnzooError, match="not both"):
        model.compile("adam", optimizer="sgd")


# -- presets and bad input -------------------------------------------------------


def _count(image, latent, gen, disc, classes):
    """The layer formulas, written out again: Dense without bias, batch norm
    4 per channel, 4x4 (transposed) convolutions, Embedding classes x features."""
    h, w, c = image
    k = len(gen)
    total = (latent + classes) * (h >> k) * (w >> k) * gen[0] + 4 * gen[0]
    for a, b in zip(gen[:-1], gen[1:], strict=True):
        total += 16 * a * b + 4 * b
    total += 16 * gen[-1] * c + c
    channels = c
    for f in disc:
        total += 16 * channels * f + f
        channels = f
    features = (h >> len(disc)) * (w >> len(disc)) * channels
    return total + features + 1 + classes * features


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("dcgan_digits", _count((8, 8, 1), 32, (64, 32), (32, 64), 10)),
        ("dcgan_shapes", _count((32, 32, 3), 64, (128, 64, 32), (32, 64, 128), 0)),
    ],
)
def test_preset_sizes(name, expected):
    model = annzoo.create_model(name, compile=False)
    assert model.count_params() == expected == annzoo.model_info(name).reference.params
    assert model.generator.output_shape[1:] == annzoo.model_info(name).output_shape
    assert (name == "dcgan_digits") == model.conditional
    assert expected == (80_610 if name == "dcgan_digits" else 464_996)


@pytest.mark.jax
@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        (
            dict(latent_dim=0),
            "`latent_dim` must be a positive integer. Received: latent",
        ),
        (dict(loss="mse"), "`loss` must be one of"),
        (dict(image_shape=(10, 10, 1)), "divisible by 4"),
        (dict(image_shape=(8, 8)), "`image_shape` must have 3 dimensions"),
        (dict(conditional_classes=0), "`conditional_classes` must be a positive"),
        (dict(gradient_penalty=-1.0), "`gradient_penalty` must be a finite number"),
        (dict(compile={"loss": "bce"}), "`compile` must be True, False or a dict"),
        (dict(task="multiclass"), "`task` must be one of ['adversarial']"),
    ],
)
def test_bad_builder_arguments(monkeypatch, kwargs, fragment):
    def refuse(*args, **kw):
        raise AssertionError("built before checking")

    monkeypatch.setattr(gan_module, "_generator", refuse)
    with pytest.raises(annzoo.AnnzooError) as info:
        build_gan(**{**SMOKE, **kwargs})
    assert fragment in str(info.value)


@pytest.mark.jax
def test_bad_labels_are_refused_before_training():
    model = build_gan(**SMOKE)
    images = np.zeros((4, 8, 8, 1), dtype="float32")
    with pytest.raises(annzoo.AnnzooError, match=r"class ids in \[0, 3\).*such as 3"):
        model.fit(images, np.array([0, 1, 2, 3]), verbose=0)
    with pytest.raises(annzoo.AnnzooError, match="Received: y=None"):
        model.fit(images, verbose=0)
    with pytest.raises(annzoo.AnnzooError, match=r"`labels` must be class ids"):
        sample(model, 2, labels=[0, -1])
    with pytest.raises(annzoo.AnnzooError, match=r"shape \(2,\)"):
        sample(model, 2, labels=[0, 1, 2])
    plain = build_gan(**{**SMOKE, "conditional_classes": None})
    with pytest.raises(annzoo.AnnzooError, match="must be None for an unconditional"):
        plain.fit(images, np.zeros(4), verbose=0)
    with pytest.raises(annzoo.AnnzooError, match="`num` must be a positive integer"):
        sample(plain, 0)
    assert model.generator_optimizer.iterations.numpy() == 0  # nothing ran

"""Tests for annzoo.models.autoencoder and annzoo.layers.latent.

Expected values are derived independently of the code: the KL term from its
closed form, the Bernoulli log-likelihood and the networks' forward passes in
NumPy from the layers' weights, the training loss's expectation by Monte Carlo
in NumPy, parameter counts from the layer formulas. The parameter counts of
the registered presets are pinned in tests/test_all_models.py (PUBLISHED).
"""

from __future__ import annotations

import textwrap

import keras
import numpy as np
import pytest

import annzoo
from annzoo.errors import AnnzooError
from annzoo.layers.latent import GaussianLatent, gaussian_kl
from annzoo.models.autoencoder import (
    build_autoencoder,
    decode,
    elbo_terms,
    encode,
    interpolate,
    sample,
)
from tests.conftest import run_python

EPS = 1e-7  # keras.config.epsilon(), the clipping of probabilities


def _np(x):
    return np.asarray(keras.ops.convert_to_numpy(x), dtype=np.float64)


def _dense(layer, x, relu=False):
    kernel, bias = (np.asarray(w, np.float64) for w in layer.get_weights())
    y = x @ kernel + bias
    return np.maximum(y, 0.0) if relu else y


def _numpy_encode(model, x, labels=None, classes=10):
    """The dense encoder's forward pass in NumPy: (mean, log_var)."""
    encoder = model.get_layer("encoder")
    h = x.reshape(len(x), -1).astype(np.float64)
    if labels is not None:
        h = np.concatenate([h, np.eye(classes)[labels]], axis=1)
    i = 1
    while f"hidden{i}" in [layer.name for layer in encoder.layers]:
        h = _dense(encoder.get_layer(f"hidden{i}"), h, relu=True)
        i += 1
    return (
        _dense(encoder.get_layer("z_mean"), h),
        _dense(encoder.get_layer("z_log_var"), h),
    )


def _numpy_decode(model, z, labels=None, classes=10):
    """The dense decoder's forward pass in NumPy: probabilities (n, values)."""
    decoder = model.get_layer("decoder")
    h = np.asarray(z, np.float64)
    if labels is not None:
        h = np.concatenate([h, np.eye(classes)[labels]], axis=1)
    i = 1
    while f"hidden{i}" in [layer.name for layer in decoder.layers]:
        h = _dense(decoder.get_layer(f"hidden{i}"), h, relu=True)
        i += 1
    return 1.0 / (1.0 + np.exp(-_dense(decoder.get_layer("logits"), h)))


def _numpy_nll(x, p):
    """Bernoulli negative log-likelihood per image, summed over values."""
    x = x.reshape(len(x), -1).astype(np.float64)
    p = np.clip(p, EPS, 1 - EPS)
    return -np.sum(x * np.log(p) + (1 - x) * np.log(1 - p), axis=1)


def _numpy_kl(mean, log_var):
    # KL(N(m, s^2) || N(0, 1)) = log(1/s) + (s^2 + m^2)/2 - 1/2, per dimension.
    s2 = np.exp(log_var)
    return np.sum(-0.5 * log_var + 0.5 * (s2 + mean**2) - 0.5, axis=-1)


def _images(n, seed=0, shape=(8, 8, 1)):
    # Gray levels in [0, 1], as the digits (x / 16).
    rng = np.random.default_rng(seed)
    return (rng.integers(0, 17, size=(n, *shape)) / 16).astype(np.float32)


def _small(**options):
    keras.utils.set_random_seed(0)
    config = dict(latent_dim=3, hidden_units=(16,), variational=True)
    return build_autoencoder((8, 8, 1), **{**config, **options})


@pytest.mark.jax
@pytest.mark.torch
def test_kl_term_is_the_gaussian_closed_form():
    rng = np.random.default_rng(1)
    mean = rng.normal(0, 1.5, size=(5, 4)).astype(np.float32)
    log_var = rng.normal(0, 1.0, size=(5, 4)).astype(np.float32)
    kl = gaussian_kl(
        keras.ops.convert_to_tensor(mean), keras.ops.convert_to_tensor(log_var)
    )
    np.testing.assert_allclose(_np(kl), _numpy_kl(mean, log_var), rtol=1e-5)
    # The layer adds the batch mean as its loss, and is the mean when not training.
    layer = GaussianLatent()
    out = layer([mean, log_var], training=False)
    np.testing.assert_array_equal(_np(out), mean)
    np.testing.assert_allclose(
        _np(layer.losses[0]), _numpy_kl(mean, log_var).mean(), rtol=1e-5
    )


@pytest.mark.jax
@pytest.mark.torch
def test_evaluate_reports_bernoulli_nll_at_the_mean_code_and_beta_weighted_kl():
    model = _small(beta=0.5, conditional_classes=10)
    x, labels = _images(6), np.array([0, 3, 9, 3, 5, 1])
    logs = model.evaluate((x, labels), x, batch_size=6, verbose=0, return_dict=True)
    mean, log_var = _numpy_encode(model, x, labels)
    nll = _numpy_nll(x, _numpy_decode(model, mean, labels)).mean()
    kl = _numpy_kl(mean, log_var).mean()
    assert set(logs) == {"loss", "reconstruction", "kl"}
    np.testing.assert_allclose(logs["reconstruction"], nll, rtol=1e-4)
    np.testing.assert_allclose(logs["kl"], kl, rtol=1e-4)
    np.testing.assert_allclose(logs["loss"], nll + 0.5 * kl, rtol=1e-4)
    # encode() returns the same Gaussian parameters.
    means, log_vars = encode(model, x, labels)
    np.testing.assert_allclose(means, mean, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(log_vars, log_var, rtol=1e-4, atol=1e-6)


@pytest.mark.jax
def test_elbo_terms_match_numpy_with_the_same_noise():
    model = _small()
    x = _images(5, seed=2)
    noise = np.random.default_rng(3).standard_normal((4, 5, 3)).astype(np.float32)
    terms = elbo_terms(model, x, samples=4, noise=noise)
    mean, log_var = _numpy_encode(model, x)
    nll = np.mean(
        [
            _numpy_nll(x, _numpy_decode(model, mean + np.exp(log_var / 2) * eps))
            for eps in noise
        ],
        axis=0,
    )
    kl = _numpy_kl(mean, log_var)
    np.testing.assert_allclose(terms["reconstruction"], nll.mean(), rtol=1e-4)
    np.testing.assert_allclose(terms["kl"], kl.mean(), rtol=1e-4)
    np.testing.assert_allclose(terms["negative_elbo"], (nll + kl).mean(), rtol=1e-4)
    # Seeded noise: the same seed, the same estimate.
    assert elbo_terms(model, x, samples=2, seed=5) == elbo_terms(
        model, x, samples=2, seed=5
    )


@pytest.mark.jax
@pytest.mark.torch
def test_training_loss_is_a_sampled_elbo_with_the_posterior_spread():
    # With a zero learning rate, each training step's loss is one draw of
    # -log p(x | mean + s * eps) + KL. Its average over steps must match the
    # NumPy Monte Carlo expectation, which differs clearly from the loss at
    # the mean code when the spread s is large (here s = 2).
    model = _small(compile=False)
    z_log_var = model.get_layer("encoder").get_layer("z_log_var")
    kernel, bias = z_log_var.get_weights()
    z_log_var.set_weights([kernel * 0, bias * 0 + np.log(4.0)])
    model.compile(
        optimizer=keras.optimizers.SGD(learning_rate=0.0),
        loss=annzoo.layers.BernoulliNLL(),
    )
    x = _images(8, seed=4)
    losses = [model.train_on_batch(x, x, return_dict=True)["loss"] for _ in range(40)]
    mean, log_var = _numpy_encode(model, x)
    rng = np.random.default_rng(0)
    draws = (
        np.array(
            [
                np.mean(
                    _numpy_nll(
                        x,
                        _numpy_decode(
                            model,
                            mean
                            + np.exp(log_var / 2) * rng.standard_normal(mean.shape),
                        ),
                    )
                )
                for _ in range(4000)
            ]
        )
        + _numpy_kl(mean, log_var).mean()
    )
    expected, spread = draws.mean(), draws.std() / np.sqrt(len(losses))
    at_mean = (
        _numpy_nll(x, _numpy_decode(model, mean)).mean()
        + _numpy_kl(mean, log_var).mean()
    )
    assert abs(np.mean(losses) - expected) < 4 * spread
    assert abs(at_mean - expected) > 10 * spread
    assert np.std(losses) > 0  # fresh noise at every step


@pytest.mark.jax
def test_reparameterization_carries_the_gradient_to_the_log_variance():
    # beta = 0: the KL term is out, so the log-variance head learns only
    # through the sampled code z = mean + exp(log_var / 2) * eps.
    model = _small(beta=0.0, compile=False)
    model.compile(optimizer=keras.optimizers.SGD(0.05), loss="binary_crossentropy")
    head = model.get_layer("encoder").get_layer("z_log_var")
    before = [w.copy() for w in head.get_weights()]
    x = _images(8, seed=5)
    model.train_on_batch(x, x)
    assert not np.allclose(head.get_weights()[0], before[0])
    # And the negative ELBO (beta = 1, Adam) goes down on a tiny batch.
    model = annzoo.compile_model(
        _small(compile=False), task="bernoulli", learning_rate=0.01
    )
    start = model.evaluate(x, x, verbose=0, return_dict=True)["loss"]
    for _ in range(30):
        model.train_on_batch(x, x)
    assert model.evaluate(x, x, verbose=0, return_dict=True)["loss"] < start - 1.0


def test_plain_autoencoder_reports_reconstruction_and_fits_without_targets():
    keras.utils.set_random_seed(0)
    model = build_autoencoder((8, 8, 1), latent_dim=3, hidden_units=(16,))
    x = _images(6, seed=6)
    logs = model.evaluate(x, x, verbose=0, return_dict=True)
    assert set(logs) == {"loss", "reconstruction"}
    codes = encode(model, x)
    assert codes.shape == (6, 3)
    probabilities = decode(model, codes)
    nll = _numpy_nll(x, probabilities.reshape(6, -1).astype(np.float64))
    np.testing.assert_allclose(logs["loss"], nll.mean(), rtol=1e-4)
    # fit(x) alone reconstructs x: the same loss as fit(x, x).
    history = model.fit(x, epochs=1, batch_size=6, verbose=0, shuffle=False)
    np.testing.assert_allclose(history.history["loss"][0], logs["loss"], rtol=1e-5)


def _conv_count(shape, filters, latent, classes=0):
    """Conv VAE weights from the layer formulas (3x3 kernels, biases)."""
    h, w, c = shape
    count, fan_in = 0, c
    for f in filters:
        count += 9 * fan_in * f + f
        fan_in = f
    grid = (h // 2 ** len(filters)) * (w // 2 ** len(filters)) * filters[-1]
    count += 2 * ((grid + classes) * latent + latent)  # mean and log-variance
    count += (latent + classes) * grid + grid  # the decoder's projection
    for f in reversed(filters):
        count += 9 * fan_in * f + f  # transposed convolutions
        fan_in = f
    return count + 9 * fan_in * c + c  # the last 3x3 convolution to the channels


@pytest.mark.jax
@pytest.mark.torch
def test_conv_vae_has_the_formula_size_and_trains_conditionally():
    keras.utils.set_random_seed(0)
    model = build_autoencoder(
        (8, 8, 2),
        latent_dim=4,
        encoder="conv",
        filters=(4, 8),
        variational=True,
        conditional_classes=3,
    )
    assert model.count_params() == _conv_count((8, 8, 2), (4, 8), 4, classes=3)
    x, labels = _images(4, seed=7, shape=(8, 8, 2)), np.array([0, 1, 2, 1])
    logs = model.train_on_batch((x, labels), x, return_dict=True)
    assert np.isfinite(logs["loss"]) and logs["kl"] > 0
    assert model.output_shape == (None, 8, 8, 2)
    assert decode(model, np.zeros((1, 4)), 2).shape == (1, 8, 8, 2)
    # The label reaches the decoder: the same code, another digit.
    z = np.ones((1, 4), np.float32)
    assert not np.allclose(decode(model, z, 0), decode(model, z, 2))


def test_sample_and_interpolate():
    model = _small(conditional_classes=10)
    one = sample(model, 6, labels=np.arange(6), seed=1)
    assert one.shape == (6, 8, 8, 1)
    np.testing.assert_array_equal(one, sample(model, 6, labels=np.arange(6), seed=1))
    assert not np.allclose(one, sample(model, 6, labels=np.arange(6), seed=2))
    # Codes from the prior N(0, I), drawn by NumPy from the seed.
    z = np.random.default_rng(1).standard_normal((6, 3))
    np.testing.assert_allclose(
        one.reshape(6, -1),
        _numpy_decode(model, z, np.arange(6)),
        rtol=1e-4,
        atol=1e-6,
    )
    x = _images(2, seed=8)
    path = interpolate(model, x[0], x[1], 5, label=4)
    assert path.shape == (5, 8, 8, 1)
    mean, _ = _numpy_encode(model, x, np.array([4, 4]))
    for t, image in zip(np.linspace(0, 1, 5), path, strict=True):
        expected = _numpy_decode(model, (1 - t) * mean[:1] + t * mean[1:], [4])
        np.testing.assert_allclose(image.reshape(1, -1), expected, rtol=1e-4, atol=1e-6)


@pytest.mark.slow  # a fresh interpreter loads Keras: seconds on a quiet CPU
@pytest.mark.jax
def test_reloaded_in_a_fresh_process_encodes_decodes_and_evaluates_identically(
    tmp_path,
):
    model = _small(conditional_classes=10, beta=2.0)
    x, labels = _images(5, seed=9), np.array([1, 2, 3, 4, 5])
    model.fit((x, labels), x, epochs=2, verbose=0)
    z = np.random.default_rng(2).standard_normal((5, 3)).astype(np.float32)
    mean, log_var = encode(model, x, labels)
    logs = model.evaluate((x, labels), x, verbose=0, return_dict=True)
    model.save(tmp_path / "cvae.keras")
    np.savez(tmp_path / "in.npz", x=x, labels=labels, z=z)
    script = textwrap.dedent(
        f"""
        import keras, numpy as np
        import annzoo
        from annzoo.models.autoencoder import encode, decode
        model = keras.saving.load_model({str(tmp_path / "cvae.keras")!r})
        data = np.load({str(tmp_path / "in.npz")!r})
        mean, log_var = encode(model, data["x"], data["labels"])
        logs = model.evaluate((data["x"], data["labels"]), data["x"], verbose=0,
                              return_dict=True)
        np.savez({str(tmp_path / "out.npz")!r}, mean=mean, log_var=log_var,
                 images=decode(model, data["z"], data["labels"]), beta=model.beta,
                 loss=logs["loss"], kl=logs["kl"])
        """
    )
    done = run_python("-c", script)
    assert done.returncode == 0, done.stderr[-2000:]
    out = np.load(tmp_path / "out.npz")
    np.testing.assert_array_equal(out["mean"], mean)
    np.testing.assert_array_equal(out["log_var"], log_var)
    np.testing.assert_array_equal(out["images"], decode(model, z, labels))
    assert float(out["beta"]) == 2.0
    np.testing.assert_allclose(out["loss"], logs["loss"], rtol=1e-6)
    np.testing.assert_allclose(out["kl"], logs["kl"], rtol=1e-6)


@pytest.mark.parametrize(
    ("options", "match"),
    [
        (dict(latent_dim=0), r"`latent_dim` must be a positive integer\. Received: "),
        (dict(latent_dim=2.5), r"`latent_dim` must be a positive integer"),
        (dict(beta=-0.1), r"`beta` must be a finite number >= 0.*beta=-0.1"),
        (dict(beta=float("nan")), r"`beta` must be a finite number >= 0"),
        (dict(conditional_classes=1), r"`conditional_classes` must be None or an"),
        (dict(encoder="lstm"), r"`encoder` must be one of"),
        (dict(encoder="conv", input_shape=(7, 7, 1)), r"divisible by 2 \*\* len"),
        (dict(encoder="conv", input_shape=(8, 8)), r"\(height, width, channels\)"),
        (dict(input_shape=(8, None, 1)), r"`input_shape` must be fully known"),
        (dict(input_shape=(0, 8)), r"`input_shape` must be a non-empty tuple"),
        (dict(task="reconstruction"), r"`task` must be 'bernoulli' for a variational"),
        (dict(latent_dim=10**9), r"latent_dim"),
    ],
)
def test_builder_refuses_bad_arguments_in_one_sentence(options, match):
    arguments = dict(input_shape=(8, 8, 1), latent_dim=2, variational=True)
    with pytest.raises(AnnzooError, match=match):
        build_autoencoder(**{**arguments, **options})


def test_helpers_refuse_bad_input_before_running():
    model = _small(conditional_classes=10)
    x = _images(3)
    bad = r"`labels` must be 3 integer class ids in \[0, 10\).*Received: labels=array"
    with pytest.raises(AnnzooError, match=bad):
        encode(model, x, np.array([0, 1, 10]))
    with pytest.raises(AnnzooError, match=r"`labels` must give a class id"):
        sample(model, 2)
    with pytest.raises(AnnzooError, match=r"`labels` must be 2 integer class ids"):
        sample(model, 2, labels=-1)
    with pytest.raises(
        AnnzooError,
        match=r"`x` must be images of shape \(n, 8, 8, 1\)"
        r".*Received: x of shape \(3, 64\)",
    ):
        encode(model, x.reshape(3, 64), [0, 1, 2])
    with pytest.raises(AnnzooError, match=r"`z` must be codes of shape \(n, 3\)"):
        decode(model, np.zeros((2, 4)), 1)
    with pytest.raises(AnnzooError, match=r"`num` must be a positive integer"):
        sample(model, 0, labels=1)
    with pytest.raises(AnnzooError, match=r"`steps` must be an integer >= 2"):
        interpolate(model, x[0], x[1], 1, label=0)
    plain = build_autoencoder((8, 8, 1), latent_dim=2, hidden_units=(4,))
    with pytest.raises(AnnzooError, match=r"`model` must be variational to sample"):
        sample(plain, 2)
    with pytest.raises(AnnzooError, match=r"`labels` must be None: this model is not"):
        encode(plain, x, [0, 1, 2])
    classifier = annzoo.build_mlp(4, 3)
    with pytest.raises(AnnzooError, match=r"`model` must be an autoencoder built by"):
        decode(classifier, np.zeros((1, 2)))


def test_bernoulli_task_refuses_targets_outside_zero_one():
    task = annzoo.tasks.get_task("bernoulli")
    task.check_labels(_images(2), num_outputs=64, where="`y`")
    with pytest.raises(AnnzooError, match=r"values in \[0, 1\] for task='bernoulli'"):
        task.check_labels(_images(2) * 16, num_outputs=64, where="`y`")

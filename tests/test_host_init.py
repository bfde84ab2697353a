"""New weights filled from NumPy on JAX (`annzoo.speedups.host_init`).

Expected values come from the initializers' published formulas (Glorot and
Bengio 2010; He et al. 2015), not from the code under test.
"""

from __future__ import annotations

import logging
import math
import warnings

import keras
import numpy as np
import pytest

from annzoo import build_mlp
from annzoo.speedups import _core, host_init
from annzoo.speedups.host_init import host_initialization

pytestmark = pytest.mark.jax

JAX = keras.backend.backend() == "jax"
jax_only = pytest.mark.skipif(not JAX, reason="the JAX backend's initialization")


def _variable(initializer, shape, dtype="float32"):
    with host_initialization():
        return keras.Variable(initializer, shape=shape, dtype=dtype).numpy()


@jax_only
def test_weights_follow_the_initializers_distributions():
    fan_in, fan_out = 300, 400
    glorot = _variable(keras.initializers.GlorotUniform(), (fan_in, fan_out))
    limit = math.sqrt(6 / (fan_in + fan_out))
    assert np.abs(glorot).max() <= limit
    assert glorot.var() == pytest.approx(limit**2 / 3, rel=0.03)
    assert abs(glorot.mean()) < 0.01 * limit

    # He normal: a normal truncated at two of its standard deviations, scaled
    # so that the truncated draws have standard deviation sqrt(2 / fan_in).
    he = _variable(keras.initializers.HeNormal(), (fan_in, fan_out))
    assert he.std() == pytest.approx(math.sqrt(2 / fan_in), rel=0.03)
    bound = 2 * math.sqrt(2 / fan_in) / 0.87962566103423978
    assert np.abs(he).max() <= bound * (1 + 1e-6)
    assert np.abs(he).max() > 0.95 * bound  # truncated there, not narrower

    normal = _variable(keras.initializers.RandomNormal(1.0, 0.5), (fan_in, fan_out))
    assert normal.mean() == pytest.approx(1.0, abs=0.005)
    assert normal.std() == pytest.approx(0.5, rel=0.03)
    assert np.abs(normal - 1).max() > 3 * 0.5  # not truncated

    uniform = _variable(keras.initializers.RandomUniform(-3, -1), (1000,))
    assert uniform.min() >= -3 and uniform.max() < -1
    assert uniform.mean() == pytest.approx(-2, abs=0.1)

    np.testing.assert_array_equal(_variable("zeros", (3, 5)), np.zeros((3, 5)))
    np.testing.assert_array_equal(_variable("ones", (7,)), np.ones(7))
    half = _variable(keras.initializers.GlorotUniform(), (64, 64), "bfloat16")
    assert half.dtype == np.dtype(keras.backend.standardize_dtype("bfloat16"))
    assert np.abs(half.astype(np.float32)).max() <= math.sqrt(6 / 128) * 1.01


@jax_only
@pytest.mark.speedup("host_init")
def test_no_program_is_compiled_per_weight_shape(caplog):
    import jax

    def compiled(host: bool) -> list[str]:
        caplog.clear()
        # Prime sizes no other test uses: nothing of them is compiled already.
        inputs = keras.Input((409 if host else 419,))
        with jax.log_compiles(True), caplog.at_level(logging.DEBUG):
            if host:
                with host_initialization():
                    keras.layers.Dense(397)(inputs)
            else:
                keras.layers.Dense(401)(inputs)
        return [
            r.getMessage()
            for r in caplog.records
            if "XLA compilation" in r.getMessage()
        ]

    assert not [m for m in compiled(True) if "_uniform" in m or "broadcast" in m]
    # Without it, JAX compiles the draw and the fill for the new shapes.
    plain = compiled(False)
    assert any("_uniform" in m for m in plain), plain
    assert any("broadcast" in m for m in plain), plain


@jax_only
def test_seeds_keep_weights_repeatable():
    def weights(seed):
        keras.utils.set_random_seed(seed)
        model = build_mlp((12,), 3, hidden_units=(16, 8))  # builds inside it
        return [w.numpy() for w in model.weights]

    first, again, other = weights(7), weights(7), weights(8)
    for a, b in zip(first, again, strict=True):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(first[0], other[0])
    # A fixed integer seed draws the same values each time, as in Keras.
    fixed = keras.initializers.GlorotUniform(seed=3)
    np.testing.assert_array_equal(_variable(fixed, (5, 6)), _variable(fixed, (5, 6)))


@jax_only
def test_other_draws_and_fills_keep_jax():
    """Only a variable's initialization changes: layers' random ops, eager
    draws and ``ops.zeros`` inside the context are JAX's as before."""
    import jax

    outside = keras.random.uniform((6,), seed=5)
    with host_initialization():
        inside = keras.random.uniform((6,), seed=5)
        zeros = keras.ops.zeros((2, 2))
        layer = keras.layers.Dropout(0.5, seed=1)
        dropped = jax.jit(lambda x: layer(x, training=True))(np.ones((64,)))
    np.testing.assert_array_equal(np.asarray(outside), np.asarray(inside))
    assert isinstance(zeros, jax.Array)
    kept = np.asarray(dropped)
    assert set(np.unique(kept)) <= {0.0, 2.0} and 0 < (kept == 0).sum() < 64
    assert not host_init._filling()


@jax_only
@pytest.mark.speedup("host_init")
def test_a_keras_laid_out_otherwise_keeps_its_own_initialization(monkeypatch):
    """A Keras without one of the functions it wraps: the speedup switches
    itself off with a warning naming it, and JAX fills the variables."""
    from keras.src.backend.jax import random

    monkeypatch.setattr(_core, "_VERIFIED", {})  # checked again, restored after
    monkeypatch.setattr(_core, "_OFF", {})
    monkeypatch.delattr(random, "truncated_normal")
    with pytest.warns(RuntimeWarning, match="host_init.*truncated_normal"):
        with host_initialization():
            assert not host_init._active()  # Keras' own initialization
    assert "host_init" in _core._OFF
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # said once, not again
        with host_initialization():
            assert not host_init._active()


def test_is_a_no_op_on_other_backends():
    if JAX:
        pytest.skip("the JAX backend is the one it changes")
    keras.utils.set_random_seed(3)
    plain = keras.Variable(keras.initializers.GlorotUniform(), shape=(4, 5)).numpy()
    keras.utils.set_random_seed(3)
    with host_initialization():
        same = keras.Variable(keras.initializers.GlorotUniform(), shape=(4, 5)).numpy()
    np.testing.assert_array_equal(plain, same)
    assert not host_init._INSTALLED

"""Speedup ``host_init``: new variables' initial values drawn on the host, on JAX.

Public behaviour reproduced: Keras' initializers (``keras.initializers``) and
the zeros/ones fills of new variables, with the same seeds and distributions.
On JAX, Keras fills each new variable by calling ``jax.random`` (the random
initializers) or ``jnp.zeros``/``jnp.ones`` on its shape, and JAX compiles a
small XLA program for every shape it has not seen. A model with many weight
shapes (ResNet-50; every trial of a search that tries new widths; the
optimizer's slots at the first ``fit``) pays for those compilations before its
first step. Inside `host_initialization()`, variables are filled from NumPy
instead and then copied to the device:

- the draws come from NumPy's Philox generator keyed with the same Keras
  seed the initializer would have used (so `keras.utils.set_random_seed`
  still makes a model's weights repeatable, and an initializer with a fixed
  integer seed still draws the same values each time);
- the distributions are Keras': uniform on [minval, maxval); normal; normal
  truncated at two standard deviations (redrawn beyond, as
  ``jax.random.truncated_normal(lower=-2, upper=2)``); the initializers'
  own arithmetic (limits, scales, QR of the orthogonal one) is untouched.

Only variable initialization is affected: the random ops of layers (dropout,
noise, augmentation) and every other use of ``ops.zeros`` keep JAX's. The
other backends, and the variables Keras initializes sharded under a
distribution (large ones), are left alone.

Private Keras symbols: the JAX backend's ``random.uniform``/``normal``/
``truncated_normal``/``jax_draw_seed``, ``numpy.zeros``/``ones`` (wrapped
once, process-wide, the first time the context opens with the speedup on;
inert outside a variable's initialization inside the context) and
``JaxVariable._initialize_with_initializer``/``_initialize_layout``/
``_layout``. Switched off (``ANNZOO_SPEEDUPS``), nothing is wrapped and the
context does nothing.

Measured by ``benchmarks/run.py --only tuning`` (every trial builds new
weight shapes) and ``--only overhead`` (a run builds its model and slots).
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import threading
from typing import Any

import keras
import numpy as np

from annzoo.speedups._core import Speedup, Symbol, active, check_instance, register

__all__ = ["SPEEDUP", "host_initialization", "with_host_initialization"]

NAME = "host_init"
_JAX = "keras.src.backend.jax"


def _variable_probe():
    # A variable holds `_layout` from its construction on.
    return keras.Variable(np.zeros((1,), "float32"), name="annzoo_contract_probe")


SPEEDUP = register(
    Speedup(
        name=NAME,
        summary="new variables filled from NumPy, not one XLA program per shape",
        benchmark="benchmarks/run.py --only tuning (and --only overhead)",
        backends=("jax",),
        symbols=(
            Symbol(f"{_JAX}.random", "uniform", requires="jax"),
            Symbol(f"{_JAX}.random", "normal", requires="jax"),
            Symbol(f"{_JAX}.random", "truncated_normal", requires="jax"),
            Symbol(f"{_JAX}.random", "jax_draw_seed", requires="jax"),
            Symbol(f"{_JAX}.numpy", "zeros", requires="jax"),
            Symbol(f"{_JAX}.numpy", "ones", requires="jax"),
            Symbol(f"{_JAX}.core", "should_shard_at_init", requires="jax"),
            Symbol(
                f"{_JAX}.core",
                "JaxVariable._initialize_with_initializer",
                requires="jax",
            ),
            Symbol(f"{_JAX}.core", "JaxVariable._initialize_layout", requires="jax"),
            Symbol(
                f"{_JAX}.core",
                "JaxVariable._layout",
                probe=_variable_probe,
                backend="jax",
                requires="jax",
            ),
        ),
    )
)

_STATE = threading.local()  # .depth: open contexts; .filling: inside a fill
_INSTALL_LOCK = threading.Lock()
_INSTALLED = False


def _active() -> bool:
    return getattr(_STATE, "depth", 0) > 0


def _filling() -> bool:
    return getattr(_STATE, "filling", False)


def _generator(seed: Any) -> np.random.Generator:
    """NumPy's Philox keyed with the Keras seed ``seed`` would give JAX."""
    from keras.src.backend.jax.random import jax_draw_seed  # JAX only: deferred

    key = np.asarray(jax_draw_seed(seed)).astype(np.uint64).ravel()
    return np.random.Generator(np.random.Philox(key=int(key[0]) << 32 | int(key[-1])))


def _numpy_dtype(dtype: Any) -> np.dtype:
    import jax.numpy as jnp  # JAX only: deferred, an optional dependency

    standard = keras.backend.standardize_dtype(dtype or keras.config.floatx())
    return np.dtype(jnp.dtype(standard))


def _on_device(value: np.ndarray, dtype: Any):
    import jax  # JAX only: deferred, an optional dependency

    # float32 on the host, then the target dtype (bfloat16 and float16 are
    # NumPy dtypes through ml_dtypes): no device program per shape.
    return jax.device_put(np.asarray(value).astype(_numpy_dtype(dtype)))


def _truncated_standard_normal(rng: np.random.Generator, shape) -> np.ndarray:
    sample = rng.standard_normal(shape, dtype=np.float32)
    outside = np.abs(sample) >= 2.0
    while outside.any():  # about 4.6% of draws each round
        sample[outside] = rng.standard_normal(int(outside.sum()), dtype=np.float32)
        outside = np.abs(sample) >= 2.0
    return sample


def _host_uniform(original, shape, minval=0.0, maxval=1.0, dtype=None, seed=None):
    if not _filling():
        return original(shape, minval=minval, maxval=maxval, dtype=dtype, seed=seed)
    rng = _generator(seed)
    low, high = float(minval), float(maxval)
    sample = rng.random(tuple(shape), dtype=np.float32)
    return _on_device(sample * np.float32(high - low) + np.float32(low), dtype)


def _host_normal(original, shape, mean=0.0, stddev=1.0, dtype=None, seed=None):
    if not _filling():
        return original(shape, mean=mean, stddev=stddev, dtype=dtype, seed=seed)
    sample = _generator(seed).standard_normal(tuple(shape), dtype=np.float32)
    return _on_device(sample * np.float32(stddev) + np.float32(mean), dtype)


def _host_truncated_normal(
    original, shape, mean=0.0, stddev=1.0, dtype=None, seed=None
):
    if not _filling():
        return original(shape, mean=mean, stddev=stddev, dtype=dtype, seed=seed)
    sample = _truncated_standard_normal(_generator(seed), tuple(shape))
    return _on_device(sample * np.float32(stddev) + np.float32(mean), dtype)


def _host_fill(original, shape, dtype=None, *, value):
    if not _filling():
        return original(shape, dtype=dtype)
    return _on_device(np.full(tuple(shape), value, dtype=np.float32), dtype)


def _filled_eagerly(variable, initializer) -> bool:
    """Whether Keras fills ``variable`` eagerly, then lays the value out.

    Under a distribution, Keras fills a large variable (or one whose
    initializer takes a layout) sharded, inside a compiled program: those
    are left to Keras. The others are filled whole and then distributed, so
    a distributed run starts from the same weights as a run on one device.
    """
    if not check_instance(NAME, variable):
        return False
    from keras.src.backend.jax.core import should_shard_at_init  # JAX: deferred

    variable._initialize_layout()
    layout = variable._layout
    if layout is None:
        return True
    if "layout" in inspect.signature(initializer).parameters:
        return False
    return not should_shard_at_init(
        getattr(layout, "backend_layout", layout), tuple(variable.shape)
    )


def _initialize_with_initializer(original, self, initializer):
    if not _active() or _filling() or not _filled_eagerly(self, initializer):
        return original(self, initializer)
    _STATE.filling = True
    try:
        return original(self, initializer)
    finally:
        _STATE.filling = False


def _install() -> None:
    """Wraps the JAX backend's draws and fills once (the caller has checked
    that the speedup is active, so every symbol exists); they stay inert
    outside a variable's initialization inside `host_initialization()`."""
    global _INSTALLED
    with _INSTALL_LOCK:
        if _INSTALLED:
            return
        # JAX only: deferred, an optional dependency.
        from keras.src.backend.jax import core, random
        from keras.src.backend.jax import numpy as jnp_backend

        hosts = [
            (random, "uniform", _host_uniform),
            (random, "normal", _host_normal),
            (random, "truncated_normal", _host_truncated_normal),
            (jnp_backend, "zeros", functools.partial(_host_fill, value=0.0)),
            (jnp_backend, "ones", functools.partial(_host_fill, value=1.0)),
        ]
        for module, name, host in hosts:
            original = getattr(module, name)
            wrapper = functools.partial(host, original)
            setattr(module, name, functools.wraps(original)(wrapper))
        # A function, not a partial: the method must still bind ``self``.
        method = "_initialize_with_initializer"
        original_method = getattr(core.JaxVariable, method)
        setattr(
            core.JaxVariable,
            method,
            functools.wraps(original_method)(
                lambda self, initializer: _initialize_with_initializer(
                    original_method, self, initializer
                )
            ),
        )
        _INSTALLED = True


@contextlib.contextmanager
def host_initialization():
    """Fills new Keras variables from NumPy while open, on the JAX backend.

    Re-entrant and per thread; a no-op on the other backends and with the
    ``host_init`` speedup switched off (``ANNZOO_SPEEDUPS``).
    """
    if keras.backend.backend() != "jax" or not active(NAME):
        yield
        return
    _install()
    _STATE.depth = getattr(_STATE, "depth", 0) + 1
    try:
        yield
    finally:
        _STATE.depth -= 1


def with_host_initialization(function):
    """Decorator: ``function`` runs inside `host_initialization()`."""

    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        with host_initialization():
            return function(*args, **kwargs)

    return wrapper

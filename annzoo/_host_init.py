"""New variables' initial values drawn on the host, on the JAX backend.

On JAX, Keras fills each new variable by calling ``jax.random`` (the random
initializers) or ``jnp.zeros``/``jnp.ones`` on its shape, and JAX compiles a
small XLA program for every shape it has not seen: on the 2-core CPU about
0.1 to 0.4 s for a random draw and 0.02 s for a fill. A model with many weight
shapes (ResNet-50; every trial of a search that tries new widths) pays
seconds for it before its first step. Inside `host_initialization()`,
variables are filled from NumPy instead and then copied to the device:

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
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import threading
from typing import Any

import numpy as np

__all__ = ["host_initialization", "with_host_initialization"]

_STATE = threading.local()  # .depth: open contexts; .filling: inside a fill
_INSTALL_LOCK = threading.Lock()
_INSTALLED = False


def _active() -> bool:
    return getattr(_STATE, "depth", 0) > 0


def _filling() -> bool:
    return getattr(_STATE, "filling", False)


def _generator(seed: Any) -> np.random.Generator:
    """NumPy's Philox keyed with the Keras seed ``seed`` would give JAX."""
    from keras.src.backend.jax.random import jax_draw_seed

    key = np.asarray(jax_draw_seed(seed)).astype(np.uint64).ravel()
    return np.random.Generator(np.random.Philox(key=int(key[0]) << 32 | int(key[-1])))


def _numpy_dtype(dtype: Any) -> np.dtype:
    import jax.numpy as jnp
    from keras.src.backend import floatx, standardize_dtype

    return np.dtype(jnp.dtype(standardize_dtype(dtype or floatx())))


def _on_device(value: np.ndarray, dtype: Any):
    import jax

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
    variable._initialize_layout()
    layout = variable._layout
    if layout is None:
        return True
    if "layout" in inspect.signature(initializer).parameters:
        return False
    try:
        from keras.src.backend.jax.core import should_shard_at_init
    except ImportError:  # another Keras: leave laid-out variables to it
        return False
    return not should_shard_at_init(
        getattr(layout, "backend_layout", layout), variable._shape
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
    """Wraps the JAX backend's draws and fills once; they stay inert outside
    a variable's initialization inside `host_initialization()`."""
    global _INSTALLED
    with _INSTALL_LOCK:
        if _INSTALLED:
            return
        from keras.src.backend.jax import core, random
        from keras.src.backend.jax import numpy as jnp_backend

        hosts = [
            (random, "uniform", _host_uniform),
            (random, "normal", _host_normal),
            (random, "truncated_normal", _host_truncated_normal),
            (jnp_backend, "zeros", functools.partial(_host_fill, value=0.0)),
            (jnp_backend, "ones", functools.partial(_host_fill, value=1.0)),
        ]
        variable = getattr(core, "JaxVariable", None)
        method = "_initialize_with_initializer"
        if not hasattr(variable, method) or not all(
            hasattr(module, name) for module, name, _ in hosts
        ):
            # A Keras whose JAX backend is laid out otherwise: its own
            # initialization stays, as it is without annzoo.
            _INSTALLED = True
            return
        for module, name, host in hosts:
            original = getattr(module, name)
            wrapper = functools.partial(host, original)
            setattr(module, name, functools.wraps(original)(wrapper))
        # A function, not a partial: the method must still bind ``self``.
        original_method = getattr(variable, method)
        setattr(
            variable,
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

    Re-entrant and per thread; a no-op on the other backends.
    """
    import keras

    if keras.backend.backend() != "jax":
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

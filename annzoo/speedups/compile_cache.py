"""Speedup ``compile_cache``: compiled programs shared by a search's trials, on JAX.

Public behaviour reproduced: JAX compiling each trial's steps, as it does in
any search. JAX keeps a compiled program per traced function, and each
trial's model has new ones, so trials that compile the same program (all the
validation steps of one architecture, which neither dropout nor the optimizer
changes; the training steps of a repeated configuration, and of the best one
when it is retrained) compile it again. JAX's persistent compilation cache
finds a program by its HLO instead: inside `compile_cache()` it is pointed at
a temporary directory (removed afterwards, so nothing a crash leaves half
written is read by a later search), unless the user has a cache directory of
their own, which is then used as it is. JAX's settings are restored on exit.

Symbols: JAX's ``compilation_cache.reset_cache`` (in
``jax.experimental``, so listed in the contract) and the configuration
options ``jax_compilation_cache_dir`` and
``jax_persistent_cache_min_compile_time_secs``. No Keras internals. Switched
off (``ANNZOO_SPEEDUPS``), every trial compiles its own programs.

Measured by ``benchmarks/run.py --only tuning`` and ``--only tuning_recipe``.
"""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Iterator

import keras

from annzoo.speedups._core import Speedup, Symbol, active, register

__all__ = ["COMPILE_CACHE_MIN_SECONDS", "SPEEDUP", "compile_cache"]

NAME = "compile_cache"
SPEEDUP = register(
    Speedup(
        name=NAME,
        summary="a search's trials share compiled programs through JAX's cache",
        benchmark="benchmarks/run.py --only tuning_recipe (and --only tuning)",
        backends=("jax",),
        symbols=(
            Symbol(
                "jax.experimental.compilation_cache.compilation_cache",
                "reset_cache",
                requires="jax",
            ),
        ),
    )
)

# Compiles shorter than this are not kept in a search's compile cache.
COMPILE_CACHE_MIN_SECONDS = 0.1


@contextlib.contextmanager
def compile_cache() -> Iterator[None]:
    """On JAX (with the speedup on), programs compiled inside are found again
    by their HLO for the length of the block; see the module docstring."""
    if keras.backend.backend() != "jax" or not active(NAME):
        yield
        return
    # JAX only: deferred, an optional dependency.
    import jax
    from jax.experimental.compilation_cache import compilation_cache

    if jax.config.jax_compilation_cache_dir:
        yield
        return
    names = ("jax_compilation_cache_dir", "jax_persistent_cache_min_compile_time_secs")
    saved = {name: getattr(jax.config, name) for name in names}
    with tempfile.TemporaryDirectory(prefix="annzoo-compiled-") as directory:
        jax.config.update("jax_compilation_cache_dir", directory)
        jax.config.update(
            "jax_persistent_cache_min_compile_time_secs", COMPILE_CACHE_MIN_SECONDS
        )
        compilation_cache.reset_cache()
        try:
            yield
        finally:
            for name, value in saved.items():
                jax.config.update(name, value)
            compilation_cache.reset_cache()

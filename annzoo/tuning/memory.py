"""A search process's memory: what a finished trial leaves behind, dropped.

Everything here acts on the whole Python process (the garbage collector's
generations, glibc's heap, JAX's compiled-program caches), not only on the
search's objects. `annzoo.tune` uses it only with ``manage_memory=True``,
which the ``annzoo tune`` command passes (its process runs nothing else);
called from a user's program, a search leaves the process's memory to Python,
JAX and keras-tuner as they are.

Measured by ``benchmarks/run.py --only tuning`` (which tunes as the command
does) and checked by ``tests/test_tuning.py``'s memory tests.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import os
from collections.abc import Iterator

import keras

__all__ = ["JAX_CACHE_BUDGET_MB", "free_memory", "frozen_heap", "rss_mb"]

# JAX keeps every compiled program for the life of the process: each trial's
# train and test steps, and the small programs behind its eager operations
# (initializers, optimizer and metric variables). Clearing them after every
# trial kept memory flat but made every trial compile the small ones again,
# which cost a small search much of its time (`benchmarks/run.py --only
# tuning`). They are cleared when resident memory has grown this much since
# the last clearing.
JAX_CACHE_BUDGET_MB = 512.0

# Whether a search has frozen the heap (`frozen_heap`), for `free_memory`.
_HEAP = {"frozen": False}


def rss_mb() -> float:
    """Resident memory of this process in MiB (Linux /proc, else peak RSS)."""
    try:
        with open("/proc/self/statm") as handle:
            pages = int(handle.read().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError):  # pragma: no cover - not Linux
        import resource  # Unix only: deferred to the fallback

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def trim_heap() -> None:
    """Hands glibc's freed heap pages back to the system, so that resident
    memory reflects what is really in use (glibc keeps them mapped)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def free_memory(state: dict, backend: str | None = None) -> bool:
    """Drops what a finished trial leaves behind; returns whether JAX's
    compiled programs were cleared (see `JAX_CACHE_BUDGET_MB`).

    ``state`` carries the resident memory after the last clearing from one
    trial to the next (the first trial's end sets it).
    """
    gc.collect()
    trim_heap()
    cleared = False
    if (backend or keras.backend.backend()) == "jax":
        rss = rss_mb()
        baseline = state.setdefault("rss_after_clear", rss)
        if rss - baseline > JAX_CACHE_BUDGET_MB:
            import jax  # JAX only: deferred, an optional dependency

            if _HEAP["frozen"]:  # what the caches held may be frozen cycles
                gc.unfreeze()
            jax.clear_caches()
            gc.collect()
            trim_heap()
            state["rss_after_clear"] = rss_mb()
            cleared = True
    if _HEAP["frozen"]:
        gc.freeze()  # what the trial left alive: see `frozen_heap`
    return cleared


@contextlib.contextmanager
def frozen_heap() -> Iterator[None]:
    """Keeps the objects alive before the search out of the garbage collector.

    A collection walks every object, with TensorFlow and Keras imported a
    large share of a small trial's wall time, paid several times per trial
    (``clear_session`` and the per-trial cleanup collect). Objects older than
    the search (modules, the data) are frozen for its duration
    (``gc.freeze``), so collections walk the trials' objects only.

    What survives each trial's cleanup collection (`free_memory`) is frozen
    too: the first trial alone leaves JAX's traces and compiled programs and
    the modules imported on first use, which each later collection would
    walk again. The trial's model is gone by then; freezing does not keep
    anything alive, and reference counting still frees frozen objects (only
    cycles wait, until the search ends or JAX's caches are cleared, when the
    heap is unfrozen to collect them).
    """
    gc.collect()
    gc.freeze()
    _HEAP["frozen"] = True
    try:
        yield
    finally:
        _HEAP["frozen"] = False
        gc.unfreeze()

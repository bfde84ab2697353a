"""Speedups: the only place annzoo touches Keras' or keras-tuner's private internals.

Each speedup makes something Keras already does faster (or, for ``tuner_io``,
crash-safe) without changing what it computes, and each one's module says
which public behaviour it reproduces, what it speeds up, which private
symbols it uses and which benchmark measures it:

===================  ==========================================================
``host_init``        JAX: new variables filled from NumPy, not one XLA program
                     per weight shape (`host_init`)
``dropout_rates``    JAX: a search's trials differing only in dropout rates
                     share one compiled program (`dropout_rates`)
``fit_state``        TensorFlow: the first training step traced once, not
                     twice (`fit_state`)
``compile_cache``    JAX: a search's trials share compiled programs through
                     JAX's compilation cache (`compile_cache`)
``tuner_io``         keras-tuner's files written atomically: crash safety,
                     not speed (`tuner_io`)
``tuner_callbacks``  keras-tuner's per-batch callback left out where it does
                     nothing (`tuner_callbacks`)
===================  ==========================================================

Switching them: the environment variable ``ANNZOO_SPEEDUPS`` is read whenever
a speedup is about to act. Unset or ``1``: all on; ``0``: all off, and annzoo
runs on public Keras and keras-tuner API alone (importing annzoo and training
or tuning then replaces no Keras function); a comma-separated list such as
``host_init,fit_state``: only those; ``-compile_cache``: all but that one.
A name it does not know is an `AnnzooError` naming the known ones.

The contract: every private symbol each speedup uses is declared with it
(`Symbol`), `check_contract` looks each one up in the installed Keras and
keras-tuner, and the test suite fails naming the symbol and the speedup when
one is missing. At run time a speedup whose symbol is missing switches itself
off with one warning naming it, and annzoo goes on with Keras' own behaviour.

Keras versions: ``setup.cfg`` declares the minor these symbols were checked
on (``keras>=3.15,<3.16``); a newer minor is admitted once the contract test
(``tests/test_speedups.py``) passes on it.
"""

from annzoo.speedups._core import (
    ENV,
    Finding,
    Speedup,
    Symbol,
    active,
    check_contract,
    enabled,
    names,
    registry,
    selected,
)
from annzoo.speedups.compile_cache import compile_cache
from annzoo.speedups.dropout_rates import runtime_dropout_rates
from annzoo.speedups.fit_state import build_fit_state
from annzoo.speedups.host_init import host_initialization, with_host_initialization
from annzoo.speedups.tuner_callbacks import without_batch_hooks
from annzoo.speedups.tuner_io import atomic_keras_tuner

__all__ = [
    "ENV",
    "Finding",
    "Speedup",
    "Symbol",
    "active",
    "atomic_keras_tuner",
    "build_fit_state",
    "check_contract",
    "compile_cache",
    "enabled",
    "host_initialization",
    "names",
    "registry",
    "runtime_dropout_rates",
    "selected",
    "with_host_initialization",
    "without_batch_hooks",
]

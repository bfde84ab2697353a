"""Speedup ``dropout_rates``: dropout rates read by the compiled step (JAX).

Public behaviour reproduced: Keras' dropout (``keras.layers.Dropout``, the
recurrent cells' ``dropout``/``recurrent_dropout``, annzoo's
`MultiHeadAttention` ``dropout``), bit for bit. A dropout rate is a Python
float in Keras' layers, so XLA compiles it into the training step as a
constant: two trials of a search that differ only in their dropout rate
compile two programs, and the search's compilation cache (``compile_cache``,
which finds a program by its HLO) cannot give one the other's.
`runtime_dropout_rates` moves each nonzero rate of a model into a variable of
the training loop's state for the length of a ``fit``, so such trials share
one program.

What trains does not change: the variable holds ``1 - rate`` in float32 as
the constant did, and Keras' JAX dropout reads it where it computed
``1.0 - rate``; the losses are the same bit for bit. A rate of 0 keeps its
own program (Keras leaves dropout out of it), and so do layers computing in
another dtype than float32 (the variable would promote their activations).

Private Keras symbols: ``Layer._flatten_layers`` (every sublayer, Keras'
attention's own dropout layer included), ``Layer._seed_generators`` (where
Keras collects the state a layer's random ops carry through the compiled
step; the rate's variable is added there for the ``fit``) and the JAX
backend's ``random.dropout`` (which computes ``1.0 - rate``). Switched off
(``ANNZOO_SPEEDUPS``), the rates stay constants and each rate compiles its
own program.

Measured by ``benchmarks/run.py --only tuning_recipe`` (a search over dropout
rates).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import keras
import numpy as np

from annzoo.speedups._core import (
    Speedup,
    Symbol,
    active,
    check_instance,
    register,
    switch_off,
)

__all__ = ["SPEEDUP", "RuntimeRate", "runtime_dropout_rates"]

NAME = "dropout_rates"


def _layer_probe():
    # A fixed seed and name: the probe draws nothing from the global seed
    # and takes no auto-generated layer name.
    return keras.layers.Dropout(0.5, seed=1, name="annzoo_contract_probe")


SPEEDUP = register(
    Speedup(
        name=NAME,
        summary="trials differing only in dropout rates share one program",
        benchmark="benchmarks/run.py --only tuning_recipe",
        backends=("jax",),
        symbols=(
            Symbol("keras.src.layers.layer", "Layer._flatten_layers"),
            Symbol("keras.src.layers.layer", "Layer._seed_generators", _layer_probe),
            Symbol("keras.src.backend.jax.random", "dropout", requires="jax"),
        ),
    )
)

# Layer attributes holding a dropout rate: Dropout (and its spatial variants,
# Keras' MultiHeadAttention's own), Keras' recurrent cells, and annzoo's
# MultiHeadAttention (its rate on the attention weights).
_DROPOUT_ATTRS = ("rate",)
_CELL_ATTRS = ("dropout", "recurrent_dropout")
# annzoo's attention layer, found through Keras' registry of serializable
# classes, so that this module (below annzoo.layers) does not import it.
_ANNZOO_ATTENTION = "annzoo>MultiHeadAttention"


class RuntimeRate(float):
    """A dropout rate: its value for Python's comparisons (which decide
    whether Keras draws a mask at all), and ``1 - rate`` from a variable for
    the arithmetic (Keras' JAX dropout computes ``keep = 1.0 - rate``)."""

    def __new__(cls, rate: float, keep: keras.Variable):
        self = super().__new__(cls, rate)
        self.keep = keep
        return self

    def __rsub__(self, other):
        if other == 1.0:
            return self.keep.value
        return other - (1.0 - self.keep.value)

    def __sub__(self, other):
        return (1.0 - self.keep.value) - other

    def __mul__(self, other):
        return (1.0 - self.keep.value) * other

    __rmul__ = __mul__

    def __truediv__(self, other):
        return (1.0 - self.keep.value) / other

    def __rtruediv__(self, other):
        return other / (1.0 - self.keep.value)

    def __reduce__(self):  # copies and pickles are plain floats
        return (float, (float(self),))


class _State:
    """Holds a variable where Keras collects a layer's seed-generator states:
    the training loop then passes it in as state (a value, not a constant),
    and ``save_weights`` leaves it out, as it does seed states."""

    def __init__(self, variable):
        self.state = variable


def _rate_attributes(layer) -> tuple[str, ...]:
    if isinstance(layer, keras.layers.Dropout):
        return _DROPOUT_ATTRS
    attention = keras.saving.get_registered_object(_ANNZOO_ATTENTION)
    if attention is not None and isinstance(layer, attention):
        return ("dropout",)
    if isinstance(layer, keras.layers.Layer) and all(
        callable(getattr(layer, name, None))
        for name in ("get_dropout_mask", "get_recurrent_dropout_mask")
    ):  # Keras' recurrent cells (DropoutRNNCell)
        return _CELL_ATTRS
    return ()


@contextlib.contextmanager
def runtime_dropout_rates(model: keras.Model) -> Iterator[int]:
    """Within the block, ``model``'s nonzero dropout rates are values its
    compiled steps read from variables (JAX, with the ``dropout_rates``
    speedup on; elsewhere nothing changes). Yields how many rates it moved;
    on exit the layers hold their floats again."""
    moved = []
    if keras.backend.backend() == "jax" and active(NAME):
        for layer in model._flatten_layers(include_self=False):
            if layer.compute_dtype != "float32" or not _rate_attributes(layer):
                continue
            if not check_instance(NAME, layer):
                break
            for attr in _rate_attributes(layer):
                rate = getattr(layer, attr, None)
                if type(rate) is not float or not 0.0 < rate < 1.0:
                    continue
                keep = keras.Variable(
                    np.float32(1.0 - rate), trainable=False, name=f"keep_{attr}"
                )
                holder = _State(keep)
                layer._seed_generators.append(holder)
                setattr(layer, attr, RuntimeRate(rate, keep))
                moved.append((layer, attr, rate, holder))
        state = {id(v) for v in model.non_trainable_variables}
        if any(id(holder.state) not in state for *_, holder in moved):
            _restore(moved)
            moved = []
            switch_off(
                NAME,
                "the installed Keras no longer collects a layer's "
                "`_seed_generators` states into `non_trainable_variables`",
            )
    try:
        yield len(moved)
    finally:
        _restore(moved)


def _restore(moved) -> None:
    for layer, attr, rate, holder in moved:
        if isinstance(getattr(layer, attr, None), RuntimeRate):
            setattr(layer, attr, rate)
        states = layer._seed_generators
        for i, each in enumerate(states):
            if each is holder:
                del states[i]
                break

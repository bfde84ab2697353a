"""Dropout rates as values the compiled training step reads, for searches on JAX.

A dropout rate is a Python float in Keras' layers, so XLA compiles it into the
training step as a constant: two trials that differ only in their dropout
rate compile two programs, and the search's compilation cache (which finds a
program by its HLO) cannot give one the other's. :func:`runtime_dropout_rates`
moves each nonzero rate of a model into a variable of the training loop's
state for the length of a ``fit``, so such trials share one program.

On the 2-core CPU a GRU char-RNN's first ``fit`` took 0.14-0.15 s instead of
1.0-1.1 s when a trial with another nonzero rate had compiled the step
already. The 20 trials of the ``surnames_char_rnn`` search (seed 0) needed
18 programs (distinct optimizer, batch size and rate); with the rates as
values, 12, and their first calls took 0.64 s instead of 0.92 s on average.

What trains does not change: the variable holds ``1 - rate`` in float32 as
the constant did, and Keras' JAX dropout reads it where it computed
``1.0 - rate``; the losses are the same bit for bit. A rate of 0 keeps its
own program (Keras leaves dropout out of it), and so do layers computing in
another dtype than float32 (the variable would promote their activations).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import keras
import numpy as np

from annzoo.layers.attention import MultiHeadAttention

# Layer attributes holding a dropout rate: Dropout (and its spatial variants,
# Keras' MultiHeadAttention's own), Keras' recurrent cells, and annzoo's
# MultiHeadAttention (its rate on the attention weights).
_DROPOUT_ATTRS = ("rate",)
_CELL_ATTRS = ("dropout", "recurrent_dropout")


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
    if isinstance(layer, MultiHeadAttention):  # annzoo's: attention dropout
        return ("dropout",)
    if hasattr(layer, "get_dropout_mask") and hasattr(
        layer, "get_recurrent_dropout_mask"
    ):
        return _CELL_ATTRS
    return ()


@contextlib.contextmanager
def runtime_dropout_rates(model: keras.Model) -> Iterator[int]:
    """Within the block, ``model``'s nonzero dropout rates are values its
    compiled steps read from variables (JAX only; elsewhere nothing
    changes). Yields how many rates it moved; on exit the layers hold their
    floats again."""
    moved = []
    if keras.backend.backend() == "jax":
        for layer in model._flatten_layers(include_self=False):
            states = getattr(layer, "_seed_generators", None)
            if not isinstance(states, list) or layer.compute_dtype != "float32":
                continue
            for attr in _rate_attributes(layer):
                rate = getattr(layer, attr, None)
                if type(rate) is not float or not 0.0 < rate < 1.0:
                    continue
                keep = keras.Variable(
                    np.float32(1.0 - rate), trainable=False, name=f"keep_{attr}"
                )
                holder = _State(keep)
                states.append(holder)
                setattr(layer, attr, RuntimeRate(rate, keep))
                moved.append((layer, attr, rate, holder))
        state = {id(v) for v in model.non_trainable_variables}
        if any(id(holder.state) not in state for *_, holder in moved):
            _restore(moved)  # this Keras collects state elsewhere: constants
            moved = []
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

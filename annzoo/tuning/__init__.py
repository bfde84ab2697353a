"""Hyperparameter search over the registry's builders with keras-tuner.

:func:`tune` runs a resumable keras-tuner search over a recipe;
:func:`hypermodel` turns a preset or family name into a keras-tuner
``HyperModel`` whose search space is JSON data mapped onto the builder's
arguments (:mod:`annzoo.tuning.spaces`); the builder stays the only model code.

Example:
    >>> from annzoo import tuning
    >>> hm = tuning.hypermodel("mlp", input_shape=30, num_outputs=1, task="binary")
    >>> hm.space["hidden_units"]
    {'type': 'layers', 'depth': [1, 3], 'values': [32, 64, 128, 256]}
"""

from annzoo.tuning.hypermodel import AnnzooHyperModel, hypermodel
from annzoo.tuning.search import TuneResult, tune
from annzoo.tuning.spaces import default_space, describe_space, space_from_spec

__all__ = [
    "AnnzooHyperModel",
    "TuneResult",
    "default_space",
    "describe_space",
    "hypermodel",
    "space_from_spec",
    "tune",
]

"""Input pipelines: NumPy arrays, image folders, CSV files and text -> batches.

Two pipelines with one contract: batches of ``(x, y)`` (``x`` alone without
``y``); a seeded shuffle whose epoch ``k`` order is deterministic; an optional
per-sample ``map_fn(x, y) -> (x, y)`` (augmentation) and per-batch
``batch_map_fn(x, y) -> (x, y)`` (batch-level augmentation such as mixup);
``drop_remainder``.

- `make_dataset` (`annzoo.data.tfdata`): a ``tf.data.Dataset`` (needs
  TensorFlow; works with every Keras backend): shuffled, mapped in parallel,
  batched, prefetched.
- `ArraySequence` (`annzoo.data.sequence`): a ``keras.utils.PyDataset`` over
  NumPy arrays, without TensorFlow (JAX and PyTorch backends).
- In both, epoch ``k``'s order is a pure function of ``(seed, k)``, so a
  resumed run reproduces it (`set_epoch`, with the batch and step choices in
  `annzoo.data.epochs`).
- `make_input` (`annzoo.data.backend`): the one that fits the current backend.

Sources and preprocessing fit on the train split only: `image_folder`,
`load_csv` (`annzoo.data.sources`), `fit_standardizer`, `text_vectorizer`
(`annzoo.data.preprocessing`).

>>> from annzoo import data, datasets
>>> x, y = datasets.load("digits", "train")
>>> train = data.make_input(x, y, batch_size=32, shuffle=True, seed=0)
>>> model.fit(train, epochs=5)

Importing this package imports neither TensorFlow nor Keras; the functions
import them when called.
"""

from __future__ import annotations

from typing import Any

from annzoo.data.backend import make_input, resolve_pipeline
from annzoo.data.epochs import (
    STREAM_BLOCK_STRETCH,
    drop_partial_batch,
    evaluation_batch_size,
    execution_block,
    set_epoch,
    stream_block,
)
from annzoo.data.preprocessing import Standardizer, fit_standardizer, text_vectorizer
from annzoo.data.sequence import _array_sequence_class
from annzoo.data.sources import IMAGE_EXTENSIONS, image_folder, load_csv
from annzoo.data.tfdata import AUTOTUNE, STREAM_PREFETCH, make_dataset

__all__ = [
    "AUTOTUNE",
    "IMAGE_EXTENSIONS",
    "STREAM_BLOCK_STRETCH",
    "STREAM_PREFETCH",
    "ArraySequence",  # noqa: F822  (built on first access by __getattr__)
    "Standardizer",
    "drop_partial_batch",
    "evaluation_batch_size",
    "execution_block",
    "fit_standardizer",
    "image_folder",
    "load_csv",
    "make_dataset",
    "make_input",
    "resolve_pipeline",
    "set_epoch",
    "stream_block",
    "text_vectorizer",
]


def __getattr__(name: str) -> Any:
    # ArraySequence subclasses a Keras class: built on first access, so that
    # importing annzoo.data imports neither Keras nor TensorFlow.
    if name == "ArraySequence":
        cls = _array_sequence_class()
        globals()["ArraySequence"] = cls
        return cls
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

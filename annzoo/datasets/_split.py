"""Deterministic train/validation/test partitions and train-only standardization.

Shared by every dataset source so that all of them split the same way: 70% train,
15% validation, 15% test, drawn with ``numpy.random.default_rng(seed)`` (stable
across processes and platforms) and, for classification, stratified so that each
class's count in every split is the floor or the ceiling of its exact share.
A source that already has some held-out splits (a user's fixed test file) asks
`split_indices` for the missing ones only (``held_out=("validation",)``): each
still takes 15% of the samples it is carved from, and train the rest.
"""

from __future__ import annotations

import numpy as np

__all__ = ["SPLITS", "split_sizes", "split_indices", "standardize"]

SPLITS: tuple[str, ...] = ("train", "validation", "test")

# Held-out splits in whole percent; "train" takes the rest.
_HELD_OUT_PERCENT = {"validation": 15, "test": 15}


def _check_held_out(held_out) -> tuple[str, ...]:
    held_out = tuple(held_out)
    if not set(held_out) <= set(_HELD_OUT_PERCENT) or len(set(held_out)) < len(
        held_out
    ):
        raise ValueError(
            "`held_out` must name distinct splits among ('validation', 'test'). "
            f"Received: held_out={held_out!r}"
        )
    return tuple(s for s in _HELD_OUT_PERCENT if s in held_out)


def split_sizes(
    num_samples: int, *, held_out: tuple[str, ...] = ("validation", "test")
) -> dict[str, int]:
    """Number of samples in "train" and each ``held_out`` split (15% each, rounded
    to the nearest sample), in ``SPLITS`` order; they sum to ``num_samples``."""
    held = {
        s: (_HELD_OUT_PERCENT[s] * num_samples + 50) // 100
        for s in _check_held_out(held_out)
    }
    return {"train": num_samples - sum(held.values()), **held}


def split_indices(
    num_samples: int,
    seed: int,
    labels: np.ndarray | None = None,
    *,
    held_out: tuple[str, ...] = ("validation", "test"),
) -> dict[str, np.ndarray]:
    """Disjoint, shuffled row indices for each split, covering ``range(num_samples)``.

    The splits are "train" and those in ``held_out`` (by default both
    "validation" and "test"; a source with a fixed test split of its own carves
    only ``("validation",)``). With ``labels`` the partition is stratified: for
    each class ``c`` and split ``s``, the count is ``floor`` or ``ceil`` of
    ``count(c) * size(s) / num_samples``.
    """
    sizes = split_sizes(num_samples, held_out=held_out)
    rng = np.random.default_rng(seed)
    if labels is None:
        order = rng.permutation(num_samples)
        parts = np.split(order, np.cumsum(list(sizes.values()))[:-1])
    else:
        labels = np.asarray(labels)
        if labels.shape != (num_samples,):
            raise ValueError(
                f"`labels` must have shape ({num_samples},). "
                f"Received: labels.shape={labels.shape}"
            )
        _, class_of = np.unique(labels, return_inverse=True)
        class_of = class_of.reshape(-1)
        table = _controlled_rounding(np.bincount(class_of), list(sizes.values()))
        chunks: list[list[np.ndarray]] = [[] for _ in sizes]
        for c, row in enumerate(table):
            members = rng.permutation(np.flatnonzero(class_of == c))
            for s, chunk in enumerate(np.split(members, np.cumsum(row)[:-1])):
                chunks[s].append(chunk)
        # Shuffle within each split so that rows are not grouped by class.
        parts = [rng.permutation(np.concatenate(c)) for c in chunks]
    return {s: part.astype(np.int64) for s, part in zip(sizes, parts, strict=True)}


def _controlled_rounding(row_totals, col_totals) -> np.ndarray:
    """Integer table with the given margins whose cells round ``r * c / n``.

    Every cell is the floor or the ceiling of its exact value. Such a table always
    exists (the fractional parts form a feasible flow, and flows with integer
    capacities have integral optima); it is found by augmenting paths.
    """
    rows = np.asarray(row_totals, dtype=np.int64)
    cols = np.asarray(col_totals, dtype=np.int64)
    n = int(rows.sum())
    product = np.outer(rows, cols)
    table = product // n
    can_round_up = product % n != 0
    col_free = cols - table.sum(axis=0)
    up = np.zeros(table.shape, dtype=bool)

    def augment(r: int, seen: np.ndarray) -> bool:
        for c in np.flatnonzero(can_round_up[r] & ~up[r]):
            if seen[c]:
                continue
            seen[c] = True
            if col_free[c] > 0:
                col_free[c] -= 1
                up[r, c] = True
                return True
            # Column c is full: let a row that rounds up there move elsewhere.
            for other in np.flatnonzero(up[:, c]):
                if augment(other, seen):
                    up[other, c] = False
                    up[r, c] = True
                    return True
        return False

    for r, need in enumerate(rows - table.sum(axis=1)):
        for _ in range(int(need)):
            if not augment(r, np.zeros(len(cols), dtype=bool)):  # pragma: no cover
                raise RuntimeError("Stratified split sizes could not be rounded.")
    return table + up


def standardize(x: np.ndarray, train_rows: np.ndarray) -> np.ndarray:
    """``x`` scaled with the mean and standard deviation of ``x[train_rows]``.

    Features that are constant on the training rows are only centered.
    """
    train = np.asarray(x[train_rows], dtype=np.float64)
    mean = train.mean(axis=0)
    std = train.std(axis=0)
    std[std == 0] = 1.0
    return ((np.asarray(x, dtype=np.float64) - mean) / std).astype(np.float32)

"""Argument checks shared by builders, datasets and training.

Each check raises :class:`annzoo.errors.AnnzooError` with the Keras-style
message ``"`name` must be ... Received: name=value"`` before any layer is
built or any step is run.
"""

from __future__ import annotations

import difflib
import numbers
from collections.abc import Iterable, Sequence
from typing import Any

from annzoo.errors import AnnzooError, UnknownNameError


def _received(name: str, value: Any) -> str:
    return f"Received: {name}={value!r}"


def is_int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def check_positive_int(name: str, value: Any) -> int:
    """A strictly positive integer (a size, a count)."""
    if not is_int(value) or value <= 0:
        raise AnnzooError(
            f"`{name}` must be a positive integer. {_received(name, value)}"
        )
    return int(value)


def check_non_negative_int(name: str, value: Any) -> int:
    if not is_int(value) or value < 0:
        raise AnnzooError(
            f"`{name}` must be a non-negative integer. {_received(name, value)}"
        )
    return int(value)


def check_rate(name: str, value: Any) -> float:
    """A dropout-like rate in [0, 1)."""
    if (
        not isinstance(value, numbers.Real)
        or isinstance(value, bool)
        or not 0.0 <= float(value) < 1.0
    ):
        raise AnnzooError(
            f"`{name}` must be a number in [0, 1). {_received(name, value)}"
        )
    return float(value)


def check_positive_float(name: str, value: Any) -> float:
    if (
        not isinstance(value, numbers.Real)
        or isinstance(value, bool)
        or not float(value) > 0.0
        or float(value) == float("inf")
    ):
        raise AnnzooError(
            f"`{name}` must be a finite number > 0. {_received(name, value)}"
        )
    return float(value)


def check_choice(name: str, value: Any, choices: Iterable[str]) -> str:
    """One of a fixed set of names; suggests the closest one when misspelt."""
    choices = list(choices)
    if isinstance(value, str) and value in choices:
        return value
    hint = ""
    if isinstance(value, str):
        close = difflib.get_close_matches(value, choices, n=1)
        if close:
            hint = f" Did you mean {close[0]!r}?"
    raise UnknownNameError(
        f"`{name}` must be one of {sorted(choices)}. {_received(name, value)}.{hint}"
    )


def check_int_sequence(
    name: str, value: Any, *, allow_empty: bool = True, min_value: int = 1
) -> tuple[int, ...]:
    """A tuple of integers >= ``min_value``; a single int becomes a 1-tuple."""
    if is_int(value):
        value = (value,)
    if not isinstance(value, Sequence) or isinstance(value, str):
        raise AnnzooError(
            f"`{name}` must be a sequence of integers >= {min_value}. "
            f"{_received(name, value)}"
        )
    if not allow_empty and len(value) == 0:
        raise AnnzooError(f"`{name}` must not be empty. {_received(name, value)}")
    if not all(is_int(v) and v >= min_value for v in value):
        raise AnnzooError(
            f"`{name}` must contain only integers >= {min_value}. "
            f"{_received(name, value)}"
        )
    return tuple(int(v) for v in value)


def per_stage(name: str, value: Any, num_stages: int, *, min_value: int = 1) -> tuple:
    """An int applied to every stage, or one int per stage."""
    values = check_int_sequence(name, value, allow_empty=False, min_value=min_value)
    if is_int(value):
        return values * num_stages
    if len(values) != num_stages:
        raise AnnzooError(
            f"`{name}` must be an integer or a sequence with one value per stage "
            f"({num_stages}). {_received(name, value)}"
        )
    return values


def check_input_shape(name: str, value: Any, *, rank: int | None = None) -> tuple:
    """A per-sample shape (no batch axis) of positive integers."""
    if is_int(value):
        value = (value,)
    if (
        not isinstance(value, Sequence)
        or isinstance(value, str)
        or len(value) == 0
        or not all(v is None or (is_int(v) and v > 0) for v in value)
    ):
        raise AnnzooError(
            f"`{name}` must be a non-empty tuple of positive integers, the shape of "
            f"one sample without the batch axis. {_received(name, value)}"
        )
    if rank is not None and len(value) != rank:
        raise AnnzooError(
            f"`{name}` must have {rank} dimensions. {_received(name, tuple(value))}"
        )
    return tuple(None if v is None else int(v) for v in value)

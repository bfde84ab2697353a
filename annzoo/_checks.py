"""Argument checks shared by builders, datasets and training.

Each check raises :class:`annzoo.errors.AnnzooError` with the Keras-style
message ``"`name` must be ... Received: name=value"`` before any layer is
built or any step is run.
"""

from __future__ import annotations

import difflib
import numbers
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

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


def check_bool(name: str, value: Any, *, allow_none: bool = False) -> bool | None:
    """``True`` or ``False`` (or None where None means "the default")."""
    if isinstance(value, (bool, np.bool_)) or (allow_none and value is None):
        return None if value is None else bool(value)
    expected = "True, False or None" if allow_none else "True or False"
    raise AnnzooError(f"`{name}` must be {expected}. {_received(name, value)}")


def check_name(name: str, value: Any, *, allow_none: bool = False) -> str | None:
    """A model or layer name: a non-empty string (Keras would accept ``""``)."""
    if allow_none and value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise AnnzooError(
            f"`{name}` must be a non-empty string. {_received(name, value)}"
        )
    return value


def physical_memory() -> int | None:
    """Bytes of physical memory of this machine, or None where unknown."""
    try:
        pages, size = os.sysconf("SC_PHYS_PAGES"), os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):  # not POSIX, or not reported
        return None
    return pages * size if pages > 0 and size > 0 else None


def _bytes(count: float) -> str:
    for unit in ("bytes", "KB", "MB", "GB", "TB", "PB"):
        if count < 1000 or unit == "PB":
            return f"{count:.3g} {unit}"
        count /= 1000
    return ""  # unreachable


def check_parameter_count(name: str, value: Any, count: int) -> None:
    """Refuses a model of ``count`` parameters that cannot fit in memory.

    Checked before any layer is built: Keras would otherwise allocate layer
    after layer and fail with a backend resource error half-way. The bound is
    the weights alone in float32 against physical memory, so a refused model
    could never have been trained here (training needs several times more).
    """
    memory = physical_memory()
    if memory is None or count * 4 <= memory:
        return
    raise AnnzooError(
        f"`{name}` makes a model of about {count:.3g} parameters, "
        f"{_bytes(count * 4)} of float32 weights, more than this machine's "
        f"{_bytes(memory)} of memory; make it smaller. {_received(name, value)}"
    )


def check_parameter_terms(terms: Iterable[tuple[int, Sequence[tuple]]]) -> None:
    """`check_parameter_count` for a model estimated block by block.

    Args:
        terms: ``(count, factors)`` per block of weights: ``count`` weights
            (a Python int, so that absurd sizes cannot overflow) and the
            builder arguments whose sizes multiply into it, each as
            ``(name, value, size)``. Each block is charged to its largest
            factor, and the argument charged with the most weights is the one
            the error names.
    """
    total, charged, values = 0, {}, {}
    for count, factors in terms:
        total += count
        name, value, _ = max(factors, key=lambda factor: factor[2])
        charged[name] = charged.get(name, 0) + count
        values[name] = value
    if charged:
        name = max(charged, key=lambda key: charged[key])
        check_parameter_count(name, values[name], total)


def check_output_path(name: str, value: Any, *, directory: bool) -> Path:
    """Where annzoo will write: a directory to create files in, or a file.

    Checked before any data is loaded or model built, so that a destination
    that can never be written is refused at once rather than after training:
    the path must not exist as the other kind (a file where a directory is
    asked for, or the reverse), must not lie under a file, and its nearest
    existing directory must be writable by this process (``os.access``; the
    superuser passes permission bits, as the kernel lets it write there).
    Files are written atomically, by a rename in their directory, so a file's
    directory must be writable even when the file itself exists.
    """
    kind = "a directory" if directory else "a file"
    received = _received(name, os.fspath(value) if isinstance(value, Path) else value)
    text = os.fspath(value) if isinstance(value, str | os.PathLike) else None
    if not isinstance(text, str) or not text or "\x00" in text:
        raise AnnzooError(
            f"`{name}` must be a path: a non-empty string without NUL bytes. {received}"
        )
    path = Path(os.path.expanduser(text))

    def refuse(why: str) -> AnnzooError:
        return AnnzooError(
            f"`{name}` must be {kind} annzoo can write; {why}. {received}"
        )

    try:
        if path.exists() and path.is_dir() != directory:
            found = "an existing directory" if path.is_dir() else "an existing file"
            raise refuse(f"{str(path)!r} is {found}")
        place = path if directory and path.is_dir() else path.parent
        while not place.exists() and place != place.parent:
            place = place.parent
        if not place.is_dir():
            raise refuse(f"{str(place)!r} is a file, not a directory")
    except AnnzooError:
        raise
    except (OSError, ValueError) as error:  # unreadable parents, NUL bytes
        raise refuse(f"it cannot be inspected ({error})") from None
    if not os.access(place, os.W_OK | os.X_OK):
        raise refuse(f"this process may not create files in {str(place)!r}")
    return path


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


# --------------------------------------------------------------------------
# Arrays of data: vectorized, one pass, no full-size temporaries.

# Elements per chunk when an exact NaN/inf scan is needed (bounds the memory of
# the boolean temporary on large arrays).
_CHUNK = 1 << 22


def all_finite(array: Any) -> bool:
    """Whether a numeric array holds no NaN or infinity.

    Integer and boolean arrays are always finite. For floats the sum is taken
    in float64 (buffered, no copy): NaN and infinities propagate into it, and
    float32 or float16 values cannot overflow a float64 sum, so a finite sum
    proves every value finite. Only a non-finite sum (or a float64 array whose
    sum overflowed) is scanned exactly, in chunks.
    """
    array = np.asarray(array)
    if array.dtype.kind not in "fc" or array.size == 0:
        return True
    wide = np.complex128 if array.dtype.kind == "c" else np.float64
    with np.errstate(over="ignore", invalid="ignore"):
        if np.isfinite(np.sum(array, dtype=wide)):
            return True
    flat = array.reshape(-1)
    return all(
        np.isfinite(flat[i : i + _CHUNK]).all() for i in range(0, flat.size, _CHUNK)
    )


def non_finite_summary(array: Any) -> str:
    """``"3 NaN or infinite values, the first (nan) in sample 5"`` (error paths)."""
    array = np.asarray(array)
    rows = array.reshape(len(array), -1) if array.ndim > 1 else array[:, None]
    bad = ~np.isfinite(rows)
    first = int(np.flatnonzero(bad.any(axis=1))[0])
    value = rows[first][bad[first]][0]
    return (
        f"{int(bad.sum())} NaN or infinite values in {int(bad.any(axis=1).sum())} "
        f"of {len(rows)} samples, the first ({value}) in sample {first}"
    )


def looks_channels_first(sample_shape: tuple) -> bool:
    """``(channels, height, width)`` with 1, 3 or 4 channels and a wide last axis.

    annzoo's image models take channels-last ``(height, width, channels)``
    samples; a PyTorch-style ``(3, 32, 32)`` sample would be read as a 3x32
    image with 32 channels.
    """
    return (
        len(sample_shape) == 3
        and sample_shape[0] in (1, 3, 4)
        and sample_shape[1] > 4
        and sample_shape[2] > 4
    )


def channels_first_hint(sample_shape: tuple) -> str:
    c, h, w = sample_shape
    return (
        f"The samples look channels-first, (channels, height, width) = {sample_shape}, "
        "but annzoo's models take channels-last images (height, width, channels): "
        f"transpose them with x = np.transpose(x, (0, 2, 3, 1)) to get {(h, w, c)}."
    )


def check_steps_per_epoch(
    name: str,
    steps: Any,
    *,
    num_samples: int,
    batch_size: int,
    batch_multiple: int = 1,
) -> int | None:
    """``None``, or at most the number of batches one pass over the data yields.

    A finite input pipeline (tf.data, a PyDataset) runs out of data when an
    epoch asks for more steps than it has batches: Keras then warns and ends
    training early instead of finishing the epochs asked for.
    """
    if steps is None:
        return None
    steps = check_positive_int(name, steps)
    full, rest = divmod(int(num_samples), int(batch_size))
    batches = full + (1 if rest and rest >= batch_multiple else 0)
    if steps > batches:
        raise AnnzooError(
            f"`{name}` must be at most {batches}, the number of batches in one "
            f"epoch of the train split ({num_samples} samples in batches of "
            f"{batch_size}); more steps would run out of data and end training "
            f"early. Lower it, or leave it null for whole epochs. "
            f"{_received(name, steps)}"
        )
    return steps


def first_value(array: Any) -> Any:
    """The array's first element as a plain Python value (for error messages)."""
    first = array.flat[0] if array.size else None
    return (
        first.item() if hasattr(first, "item") and not isinstance(first, str) else first
    )

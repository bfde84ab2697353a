"""The JSON form of a tensor in an export's description."""

from __future__ import annotations

from typing import Any

__all__ = ["tensor"]


def tensor(name: str, shape: Any, dtype: Any) -> dict[str, Any]:
    return {
        "name": name,
        "shape": [None if d is None else int(d) for d in shape],
        "dtype": str(dtype),
    }

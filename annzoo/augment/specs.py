"""Augmentation specs: the ops, their parameters and presets, and `resolve`.

A spec is data a recipe can store; this module checks it and fills in every
parameter, without Keras (the layers are built in `annzoo.augment.per_sample`).
"""

from __future__ import annotations

import copy
import difflib
import numbers
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from annzoo._checks import (
    check_choice,
    check_non_negative_int,
    check_positive_float,
    check_positive_int,
)
from annzoo.errors import AnnzooError

Spec = str | Sequence[str | Mapping[str, Any]] | None

_FILL_MODES = ("constant", "reflect", "wrap", "nearest")
_FLIP_MODES = ("horizontal", "vertical", "horizontal_and_vertical")


# --- parameter checks: each returns the normalised value or raises ----------


def _check_unit(
    name: str, value: Any, *, low_open: bool = True, high_open: bool = False
) -> float:
    """A number in (0, 1], [0, 1] or (0, 1) as the flags say."""
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool)
    if ok:
        v = float(value)
        ok = (v > 0.0 if low_open else v >= 0.0) and (
            v < 1.0 if high_open else v <= 1.0
        )
    if not ok:
        interval = f"{'(' if low_open else '['}0, 1{')' if high_open else ']'}"
        raise AnnzooError(
            f"`{name}` must be a number in {interval}. Received: {name}={value!r}"
        )
    return float(value)


def _fraction(name, value):  # rotation, translation, contrast: (0, 1]
    return _check_unit(name, value)


def _zoom(name, value):  # a zoom of 100% would shrink the image to nothing
    return _check_unit(name, value, high_open=True)


def _zoom_width(name, value):
    return None if value is None else _zoom(name, value)


def _strength(name, value):  # RandAugment's magnitude: [0, 1]
    return _check_unit(name, value, low_open=False)


def _value_range(name, value):
    if (
        isinstance(value, Sequence)
        and not isinstance(value, str)
        and len(value) == 2
        and all(isinstance(v, numbers.Real) and not isinstance(v, bool) for v in value)
        and value[0] < value[1]
    ):
        return [value[0], value[1]]
    raise AnnzooError(
        f"`{name}` must be a pair (low, high) with low < high, the range of the "
        f"pixel values. Received: {name}={value!r}"
    )


def _choice(choices):
    return lambda name, value: check_choice(name, value, choices)


# --- the ops: parameters with their defaults and checks --------------------

# op -> {parameter: (default, check)}; the order of the keys is the order a
# resolved spec lists them in.
_PARAMS: dict[str, dict[str, tuple[Any, Callable[[str, Any], Any]]]] = {
    "flip": {"mode": ("horizontal", _choice(_FLIP_MODES))},
    "pad_crop": {"padding": (4, check_non_negative_int)},
    "rotation": {
        "factor": (0.1, _fraction),
        "fill_mode": ("constant", _choice(_FILL_MODES)),
    },
    "translation": {
        "height": (0.1, _fraction),
        "width": (0.1, _fraction),
        "fill_mode": ("constant", _choice(_FILL_MODES)),
    },
    "zoom": {
        "height": (0.1, _zoom),
        "width": (None, _zoom_width),
        "fill_mode": ("constant", _choice(_FILL_MODES)),
    },
    "contrast": {"factor": (0.2, _fraction), "value_range": ((0, 1), _value_range)},
    "randaugment": {
        "num_ops": (2, check_positive_int),
        "factor": (0.5, _strength),
        "value_range": ((0, 1), _value_range),
    },
    "mixup": {"alpha": (0.2, check_positive_float)},
    "cutmix": {"alpha": (1.0, check_positive_float)},
}

#: The op names and their default parameters.
OPS: Mapping[str, Mapping[str, Any]] = {
    op: {k: d for k, (d, _) in params.items()} for op, params in _PARAMS.items()
}
#: The ops that mix pairs of images and their labels (input pipeline only).
MIXING_OPS = ("mixup", "cutmix")

#: Named specs. Rotation factors are fractions of a full turn (0.03 ~ 11 deg).
PRESETS: Mapping[str, tuple] = {
    "none": (),
    "flip": ("flip",),
    # He et al. (2016), section 4.2: 4-pixel pad-and-crop plus horizontal flip.
    "cifar": ({"name": "pad_crop", "padding": 4}, {"name": "flip"}),
    # Digits are not mirror-symmetric: small rotations and shifts, no flips.
    "digits": (
        {"name": "rotation", "factor": 0.03},
        {"name": "translation", "height": 0.1, "width": 0.1},
    ),
    # Cubuk et al. (2020): 2 random ops per batch at magnitude 0.5.
    "randaugment": ({"name": "randaugment", "num_ops": 2, "factor": 0.5},),
}


# --- specs -------------------------------------------------------------------


def _resolve_item(index: int, item: Any) -> dict[str, Any]:
    where = f"Augmentation {index} of the spec"
    if isinstance(item, str):
        item = {"name": item}
    if not isinstance(item, Mapping) or "name" not in item:
        raise AnnzooError(
            f"{where} must be an op name or a dict with a 'name' key, one of "
            f"{sorted(_PARAMS)}. Received: {item!r}"
        )
    try:
        op = check_choice("name", item["name"], _PARAMS)
    except AnnzooError as error:
        raise type(error)(f"{where}: {error}") from None
    params = _PARAMS[op]
    for key in item:
        if key != "name" and key not in params:
            close = difflib.get_close_matches(str(key), params, n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise AnnzooError(
                f"{where}: {op!r} has no parameter {key!r}; its parameters are "
                f"{sorted(params)}. Received: {key}={item[key]!r}.{hint}"
            )
    resolved: dict[str, Any] = {"name": op}
    for key, (default, check) in params.items():
        try:
            resolved[key] = check(key, item.get(key, default))
        except AnnzooError as error:
            raise type(error)(f"{where} ({op!r}): {error}") from None
    return resolved


def resolve(spec: Spec) -> list[dict[str, Any]]:
    """Validates a spec and returns it normalised, every parameter filled in.

    Args:
        spec: a preset name (one of ``PRESETS``: ``"none"``, ``"flip"``,
            ``"cifar"``, ``"digits"``, ``"randaugment"``), ``None`` (no
            augmentation), or a list whose items are op names or dicts
            ``{"name": op, **params}``. The ops (defaults in ``OPS``):
            ``flip`` (``mode``: ``"horizontal"``, ``"vertical"`` or
            ``"horizontal_and_vertical"``), ``pad_crop`` (``padding`` pixels),
            ``rotation`` (``factor`` in (0, 1], a fraction of a full turn),
            ``translation`` (``height``, ``width``: fractions of the size),
            ``zoom`` (``height`` in (0, 1); ``width`` likewise or ``None`` to
            keep the aspect ratio), ``contrast`` (``factor`` in (0, 1]),
            ``randaugment`` (``num_ops``, ``factor`` in [0, 1]), ``mixup`` and
            ``cutmix`` (``alpha`` > 0 of the Beta distribution). Rotation,
            translation and zoom also take ``fill_mode`` (default
            ``"constant"``: zeros), contrast and randaugment ``value_range``
            (default ``(0, 1)``).

    Returns:
        A new list of dicts ``{"name": op, **params}`` made of JSON types;
        ``resolve(resolve(spec)) == resolve(spec)``.

    Raises:
        UnknownNameError: an unknown preset, op or mode name (the message
            suggests the closest one).
        AnnzooError: an unknown parameter, a value out of range, or mixup or
            cutmix twice.

    Example:
        >>> resolve("cifar")
        [{'name': 'pad_crop', 'padding': 4}, {'name': 'flip', 'mode': 'horizontal'}]
        >>> resolve([{"name": "mixup", "alpha": 0.4}])
        [{'name': 'mixup', 'alpha': 0.4}]
    """
    if spec is None:
        return []
    if isinstance(spec, str):
        try:
            spec = PRESETS[check_choice("spec", spec, PRESETS)]
        except AnnzooError as error:
            raise type(error)(
                f"{error} A spec is a preset name or a list of ops from "
                f"{sorted(_PARAMS)}."
            ) from None
    if not isinstance(spec, Sequence):
        raise AnnzooError(
            "`spec` must be a preset name, None or a list of ops (names or dicts "
            f"with a 'name' key). Received: spec={spec!r}"
        )
    items = [_resolve_item(i, copy.deepcopy(item)) for i, item in enumerate(spec)]
    for op in MIXING_OPS:
        if sum(item["name"] == op for item in items) > 1:
            raise AnnzooError(
                f"`spec` may contain {op!r} at most once. Received: spec={spec!r}"
            )
    return items


def _describe(items: Sequence[Mapping[str, Any]]) -> str:
    if not items:
        return "none"
    parts = []
    for item in items:
        args = ", ".join(f"{k}={v!r}" for k, v in item.items() if k != "name")
        parts.append(f"{item['name']}({args})")
    return " + ".join(parts)


def _seeds(seed: int | None, count: int, *, stream: int = 0) -> list[int | None]:
    """Distinct, reproducible seeds derived from one seed (one stream per use)."""
    if seed is None:
        return [None] * count
    seed = check_non_negative_int("seed", seed)
    state = np.random.SeedSequence([seed, stream]).generate_state(count)
    return [int(s) % (2**31 - 1) for s in state]


def _mixing_items(items):
    return [item["name"] for item in items if item["name"] in MIXING_OPS]


def mixing_ops(spec: Spec) -> list[str]:
    """Names of the ops in ``spec`` that mix labels too (mixup, cutmix)."""
    return _mixing_items(resolve(spec))

"""Search spaces: JSON data that maps keras-tuner hyperparameters onto a builder.

A space is a dict ``{argument: entry}`` where ``argument`` is an argument of the
builder behind a preset or family (see :func:`annzoo.create_model`) or one of
the special keys ``learning_rate``, ``optimizer`` (given to
:func:`annzoo.compile_model`) and ``batch_size`` (given to ``model.fit``).
An entry is one of::

    {"type": "int", "min": 1, "max": 4, "step": 1, "sampling": "linear"}
    {"type": "float", "min": 1e-4, "max": 1e-2, "sampling": "log"}
    {"type": "choice", "values": ["gru", "lstm"]}
    {"type": "boolean"}
    {"type": "fixed", "value": 0.1}
    {"type": "layers", "depth": [1, 3], "values": [32, 64, 128]}

``int``, ``float``, ``choice`` and ``boolean`` accept a ``"default"``. As
shorthand a list is a choice and a scalar (or string) is fixed (a tuple is
refused as ambiguous); a dict without ``"type"`` is read as layers
(``depth``), choice (``values``), fixed (``value``) or int/float
(``min``/``max``: int when both are integers).

``layers`` is for sequence-valued arguments (``hidden_units``, ``filters``,
``units``): an Int ``<arg>_depth`` and, per layer ``i`` (from 1), a Choice
``<arg>_<i>`` declared inside ``hp.conditional_scope("<arg>_depth", [i..max])``
so that it is active only when the depth is at least ``i``; the builder gets a
tuple of the active layers' values. Choices may hold values keras-tuner cannot
(None, lists, mixed types): the hyperparameter then holds a label (``"none"``,
``"[64, 32]"``) that is decoded before the builder sees it.

The default space of a family is declared by the family, next to its builder
(``FamilySpec.search_space``), plus :data:`COMMON_SPACE`. A preset starts from
its own configuration: the arguments it fixes are not tuned unless a user's
space names them, so only the common keys and ``dropout`` (when the builder has
it) are searched by default.
Input and output sizes (:data:`NEVER_TUNED`) are never tuned.
"""

from __future__ import annotations

import copy
import difflib
import inspect
import json
import numbers
from collections.abc import Mapping
from typing import Any

from annzoo import registry
from annzoo.errors import AnnzooError
from annzoo.tasks import OPTIMIZERS

__all__ = [
    "COMMON_SPACE",
    "NEVER_TUNED",
    "SPECIAL_KEYS",
    "default_space",
    "describe_space",
    "normalize_entry",
    "space_from_spec",
]

SPECIAL_KEYS = ("learning_rate", "optimizer", "batch_size")
# The model's contract with its data (and the builder's bookkeeping): a search
# over these would search over different problems, not different models.
NEVER_TUNED = frozenset(
    "input_shape num_classes num_outputs vocabulary_size sequence_length "
    "target_vocabulary_size target_sequence_length task variant compile name".split()
)

COMMON_SPACE: dict[str, Any] = {
    "optimizer": {"type": "choice", "values": ["adam", "adamw", "rmsprop"]},
    # keras-tuner's Float default is `min`; 1e-3 is Keras' own default rate.
    "learning_rate": dict(
        type="float", min=1e-4, max=1e-2, sampling="log", default=1e-3
    ),
    "batch_size": {"type": "choice", "values": [16, 32, 64, 128], "default": 32},
}

_FIELDS = {
    "int": ({"min", "max"}, {"step", "sampling", "default"}),
    "float": ({"min", "max"}, {"step", "sampling", "default"}),
    "choice": ({"values"}, {"default"}),
    "boolean": (set(), {"default"}),
    "fixed": ({"value"}, set()),
    "layers": ({"depth", "values"}, set()),
}
_SAMPLINGS = ("linear", "log", "reverse_log")
_SCALARS = (bool, int, float, str)


def _fail(key: str, expected: str, received: Any) -> AnnzooError:
    return AnnzooError(f"`space.{key}` {expected}. Received: {key}={received!r}")


def _is_int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def normalize_entry(key: Any, value: Any) -> dict[str, Any]:
    """The long form of one space entry, checked; raises AnnzooError naming it."""
    if not isinstance(key, str):
        raise AnnzooError(f"Space keys must be argument names. Received: {key!r}")
    if isinstance(value, tuple):
        ambiguous = "is a tuple: use a list (choice) or {'type': 'fixed', 'value': ...}"
        raise _fail(key, ambiguous, value)
    try:
        value = json.loads(json.dumps(value))
    except (TypeError, ValueError):
        raise _fail(key, "must be JSON data (numbers, strings, lists)", value) from None
    if isinstance(value, list):
        value = {"type": "choice", "values": value}
    elif not isinstance(value, dict):
        value = {"type": "fixed", "value": value}
    entry = dict(value)
    if "type" not in entry:
        entry["type"] = _infer_type(key, entry)
    kind = entry["type"]
    if kind not in _FIELDS:
        raise _fail(key, f"has an unknown type; expected one of {list(_FIELDS)}", kind)
    required, optional = _FIELDS[kind]
    missing = sorted(required - set(entry))
    unknown = sorted(set(entry) - required - optional - {"type"})
    if missing or unknown:
        raise _fail(
            key,
            f"of type {kind!r} needs the fields {sorted(required)} and may have "
            f"{sorted(optional)} (missing {missing}, unknown {unknown})",
            value,
        )
    if kind in ("int", "float"):
        _check_range(key, entry)
    elif kind == "choice":
        values = entry["values"]
        if not values:
            raise _fail(key, "must list at least one value", value)
        if all(_is_number(v) for v in values) and any(
            isinstance(v, float) for v in values
        ):
            entry["values"] = values = [float(v) for v in values]
        if len({json.dumps(v) for v in values}) != len(values):
            raise _fail(key, "must not list a value twice", value)
        _labels(key, values)
        if "default" in entry and entry["default"] not in values:
            raise _fail(key, f"`default` must be one of {values}", entry["default"])
    elif kind == "boolean" and not isinstance(entry.get("default", False), bool):
        raise _fail(key, "`default` must be true or false", entry["default"])
    elif kind == "layers":
        depth, widths = entry["depth"], entry["values"]
        pair = isinstance(depth, list) and len(depth) == 2
        if not (pair and all(map(_is_int, depth)) and 0 <= depth[0] <= depth[1] > 0):
            raise _fail(
                key, "`depth` must be [min, max] with 0 <= min <= max, max >= 1", depth
            )
        if not isinstance(widths, list) or not widths:
            raise _fail(key, "`values` must be a non-empty list of layer sizes", widths)
        distinct = len(set(map(json.dumps, widths))) == len(widths)
        if not (distinct and all(_is_int(w) and w > 0 for w in widths)):
            raise _fail(key, "`values` must be distinct positive integers", widths)
    _check_special(key, entry)
    return entry


def _infer_type(key: str, entry: dict) -> str:
    if "depth" in entry:
        return "layers"
    if "values" in entry:
        return "choice"
    if "value" in entry:
        return "fixed"
    if "min" in entry or "max" in entry:
        bounds = [entry.get("min"), entry.get("max")]
        return "int" if all(_is_int(b) for b in bounds) else "float"
    raise _fail(key, f"needs a `type` (one of {list(_FIELDS)})", entry)


def _check_range(key: str, entry: dict) -> None:
    kind = entry["type"]
    valid = _is_int if kind == "int" else _is_number
    low, high = entry["min"], entry["max"]
    bounds = {"min": low, "max": high}
    if not valid(low) or not valid(high):
        raise _fail(key, f"`min` and `max` must be {kind} numbers", bounds)
    if low > high:
        raise _fail(key, "`min` must not exceed `max`", bounds)
    if kind == "float":  # canonical: 0 and 0.0 describe the same range
        for field in ("min", "max", "step", "default"):
            if _is_number(entry.get(field)):
                entry[field] = float(entry[field])
        low, high = entry["min"], entry["max"]
    sampling = entry.setdefault("sampling", "linear")
    if sampling not in _SAMPLINGS:
        raise _fail(key, f"`sampling` must be one of {list(_SAMPLINGS)}", sampling)
    if sampling != "linear" and low <= 0:
        raise _fail(key, f"with sampling={sampling!r} needs `min` > 0", low)
    if kind == "int" and sampling == "linear":
        entry.setdefault("step", 1)
    if "step" in entry:
        step = entry["step"]
        smallest = 1 if sampling != "linear" else 0
        if not valid(step) or step <= smallest:
            raise _fail(key, f"`step` must be a {kind} > {smallest}", step)
    if "default" in entry and not (
        valid(entry["default"]) and low <= entry["default"] <= high
    ):
        raise _fail(
            key, f"`default` must be a {kind} in [{low}, {high}]", entry["default"]
        )


def _check_rates(key: str, entry: dict) -> None:
    """Dropout rates must lie in [0, 1): refused here, not trial by trial."""
    if key != "dropout" and not key.endswith("_dropout"):
        return
    values = {
        "int": [entry.get("min"), entry.get("max")],
        "float": [entry.get("min"), entry.get("max")],
        "choice": entry.get("values"),
        "fixed": [entry.get("value")],
    }.get(entry["type"])
    if values is None:  # boolean, layers: refused by their own checks
        return
    if not all(_is_number(v) and 0 <= v < 1 for v in values):
        raise _fail(key, "must give dropout rates in [0, 1)", entry)


def _check_special(key: str, entry: dict) -> None:
    """The settings' values are known here (builder arguments: by the builder)."""
    _check_rates(key, entry)
    checks = {
        "optimizer": (lambda v: isinstance(v, str) and v in OPTIMIZERS, "names"),
        "batch_size": (lambda v: _is_int(v) and v > 0, "positive integers"),
        "learning_rate": (lambda v: _is_number(v) and v > 0, "numbers > 0"),
    }
    if key not in checks:
        return
    kind, (valid, what) = entry["type"], checks[key]
    if kind in ("boolean", "layers") or (key != "learning_rate" and kind == "float"):
        values = [None]
    else:
        values = {"choice": entry.get("values"), "fixed": [entry.get("value")]}
        values = values.get(kind, [entry.get("min")])
    if not all(valid(v) for v in values):
        names = f" among {sorted(OPTIMIZERS)}" if key == "optimizer" else ""
        raise _fail(key, f"must give {what}{names}", entry)


def _label(value: Any) -> str:
    if value is None:
        return "none"
    return value if isinstance(value, str) else json.dumps(value)


def _labels(key: str, values: list) -> dict[str, Any] | None:
    """None when keras-tuner can hold ``values`` as they are, else label -> value."""
    types = {type(v) for v in values}
    # keras-tuner's Choice turns True/False into 1/0, which builders refuse.
    if len(types) == 1 and types <= set(_SCALARS) and bool not in types:
        return None
    labels = {_label(v): v for v in values}
    if len(labels) != len(values):
        raise _fail(key, "lists values that read the same as labels", values)
    return labels


# -- resolving a name ---------------------------------------------------------


def _target(name: Any, fixed: Mapping[str, Any]) -> tuple[str, dict, dict]:
    """(family, preset config, builder parameters), with ``fixed`` checked."""
    family, config = registry.resolve(name)  # raises UnknownNameError
    parameters = dict(inspect.signature(registry.builder(family)).parameters)
    for key in fixed:
        if key == "compile":
            raise AnnzooError(
                "`compile` cannot be fixed: the hypermodel compiles each trial's "
                "model; pass compile_model options as `compile_options`."
            )
        if key not in parameters and key not in SPECIAL_KEYS:
            raise AnnzooError(
                f"{key!r} is not an argument of the {family!r} builder nor one of "
                f"{list(SPECIAL_KEYS)}.{_suggest(key, [*parameters, *SPECIAL_KEYS])} "
                f"Received: {key}={fixed[key]!r}"
            )
    for key in SPECIAL_KEYS:
        if key in fixed:
            normalize_entry(key, {"type": "fixed", "value": fixed[key]})
    for key, parameter in parameters.items():
        variadic = parameter.kind in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD)
        required = parameter.default is parameter.empty and not variadic
        if required and key not in fixed and key not in config:
            raise AnnzooError(
                f"`{key}` is required by the {family!r} builder and is never tuned; "
                f"pass it as a fixed argument: hypermodel({name!r}, {key}=...). "
                f"Received fixed arguments: {sorted(fixed)}"
            )
    return family, config, parameters


def _suggest(key: str, choices: list[str]) -> str:
    close = difflib.get_close_matches(key, choices, n=1)
    return f" Did you mean {close[0]!r}?" if close else ""


def default_space(name: str, /, **fixed: Any) -> dict[str, dict[str, Any]]:
    """The default search space of preset or family ``name``, in long form.

    A family searches :data:`COMMON_SPACE` and its own default space
    (``FamilySpec.search_space``); a preset searches :data:`COMMON_SPACE` and
    ``dropout`` only, so that it keeps its architecture. Arguments in
    ``fixed`` are left out.

    Example:
        >>> default_space("mlp", input_shape=4, num_outputs=3)["hidden_units"]
        {'type': 'layers', 'depth': [1, 3], 'values': [32, 64, 128, 256]}
    """
    family, config, parameters = _target(name, fixed)
    spec = registry.family_spec(family)
    table = dict(spec.search_space)
    if config:
        table = {k: v for k, v in table.items() if k == "dropout"}
    given = {**config, **fixed}
    space = {}
    for key, value in {**COMMON_SPACE, **table}.items():
        needs = spec.space_requires.get(key)
        if key in fixed or (needs is not None and given.get(needs) is None):
            continue
        if key in parameters or key in SPECIAL_KEYS:
            space[key] = normalize_entry(key, copy.deepcopy(value))
    return space


def space_from_spec(
    spec: Mapping[str, Any] | None,
    *,
    name: str | None = None,
    fixed: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Checks a space spec and returns its long form.

    Without ``name``, only the entries' format is checked (``None`` entries,
    removals, are kept). With ``name``, ``spec`` overrides
    ``default_space(name, **fixed)``: its entries replace or add keys (which
    must be builder arguments or special keys, neither sizes nor fixed), and
    ``None`` removes a key so the builder's default is used.

    Example:
        >>> space_from_spec({"dropout": [0.0, 0.5], "activation": None},
        ...                 name="mlp", fixed={"input_shape": 4, "num_outputs": 3})
    """
    if spec is None:
        spec = {}
    if not isinstance(spec, Mapping):
        raise AnnzooError(
            f"A search space must be a mapping of argument -> entry. Received: {spec!r}"
        )
    if name is None:
        return {
            k: None if v is None else normalize_entry(k, v) for k, v in spec.items()
        }
    fixed = dict(fixed or {})
    space = default_space(name, **fixed)
    family, _, parameters = _target(name, fixed)
    for key, value in spec.items():
        if key in NEVER_TUNED:
            raise _fail(
                key,
                "is an input/output size or a setting that is never tuned; "
                "pass it as a fixed argument",
                value,
            )
        if key not in parameters and key not in SPECIAL_KEYS:
            choices = [*parameters, *SPECIAL_KEYS]
            raise _fail(
                key,
                f"is not an argument of the {family!r} builder nor one of "
                f"{list(SPECIAL_KEYS)}.{_suggest(str(key), choices)} Expected some "
                f"of {sorted(set(choices) - NEVER_TUNED)}",
                value,
            )
        if key in fixed:
            raise _fail(key, f"is also fixed ({key}={fixed[key]!r}); keep one", value)
        if value is None:
            space.pop(key, None)
            continue
        entry = normalize_entry(key, value)
        annotation = str(parameters[key].annotation) if key in parameters else ""
        if entry["type"] == "layers" and "tuple" not in annotation:
            raise _fail(
                key,
                "is not sequence-valued; type 'layers' is for arguments such "
                "as hidden_units, filters or units",
                value,
            )
        space[key] = entry
    return space


def describe_space(spec: Mapping[str, Any]) -> str:
    """A canonical JSON string of ``spec``: equal for equal spaces, whatever order.

    Shorthand entries are expanded first, so ``[3, 5]`` and
    ``{"type": "choice", "values": [3, 5]}`` describe the same space.
    """
    return json.dumps(space_from_spec(spec), sort_keys=True, separators=(",", ":"))

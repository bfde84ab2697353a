"""The model registry: one name -> one builder call.

Families (``"mlp"``, ``"cnn"``) are builder functions registered with
:func:`register`; presets are named argument sets for a family, registered with
:func:`register_preset` next to the family's code, each carrying the published
parameter count it reproduces and where that figure comes from.
"""

from __future__ import annotations

import fnmatch
import inspect
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from annzoo._checks import check_choice
from annzoo._host_init import with_host_initialization
from annzoo.errors import AnnzooError

__all__ = [
    "Reference",
    "ModelInfo",
    "register",
    "register_preset",
    "create_model",
    "list_models",
    "list_families",
    "model_info",
]

_FAMILIES: dict[str, Callable[..., Any]] = {}
# family -> function(resolved config) -> {"input_shape": ..., "output_shape": ...}
# for families whose shapes are not simply `input_shape` and `(num_classes,)`.
_SHAPES: dict[str, Callable[[dict[str, Any]], dict[str, tuple]]] = {}
_PRESETS: dict[str, _Preset] = {}


@dataclass(frozen=True)
class Reference:
    """A published parameter count.

    Attributes:
        params: the figure as published (``270_000`` for "0.27M").
        kind: ``"total"`` (every weight, including batch-norm moving
            statistics) or ``"trainable"`` (what PyTorch and most papers count).
        source: where the figure is published.
        rounding: the granularity the source rounds to (``10_000`` for
            "0.27M", 1 for an exact figure).
    """

    params: int
    kind: str
    source: str
    rounding: int = 1

    def matches(self, count: int) -> bool:
        """Whether ``count`` gives this figure when rounded as the source rounds."""
        if self.rounding == 1:
            return count == self.params
        # Half up, as "0.265M" is printed "0.27M" (Python's round() goes to even).
        half_up = (count + self.rounding // 2) // self.rounding * self.rounding
        return half_up == self.params


@dataclass(frozen=True)
class _Preset:
    name: str
    family: str
    description: str
    config: dict[str, Any]
    reference: Reference | None


@dataclass(frozen=True)
class ModelInfo:
    """What :func:`model_info` returns about a registered name."""

    name: str
    family: str
    task: str
    input_shape: tuple
    output_shape: tuple
    description: str
    reference: Reference | None = None
    config: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def register(family: str, *, shapes: Callable | None = None) -> Callable:
    """Decorator registering a family builder under ``family``.

    Args:
        family: the family's name.
        shapes: optional ``function(config) -> {"input_shape": ...,
            "output_shape": ...}`` for :func:`model_info`, where the shapes are
            not simply ``config["input_shape"]`` and ``(num_classes,)`` (token
            sequences, several inputs, one output per time step).
    """

    def decorate(builder: Callable) -> Callable:
        if family in _FAMILIES or family in _PRESETS:
            raise AnnzooError(f"`family` {family!r} is already registered.")
        # On JAX, new weights are filled from NumPy: no XLA program per
        # weight shape (ResNet-50's build: 4.2 s -> 0.3 s on the 2-core CPU).
        builder = with_host_initialization(builder)
        _FAMILIES[family] = builder
        if shapes is not None:
            _SHAPES[family] = shapes
        return builder

    return decorate


def register_preset(
    name: str,
    family: str,
    *,
    description: str,
    reference: Reference | None = None,
    **config: Any,
) -> None:
    """Registers ``name`` as ``family``'s builder called with ``config``."""
    if name in _PRESETS or name in _FAMILIES:
        raise AnnzooError(f"`name` {name!r} is already registered.")
    check_choice("family", family, _FAMILIES)
    _check_arguments(family, config)
    _PRESETS[name] = _Preset(name, family, description, dict(config), reference)


def _check_arguments(family: str, arguments: dict[str, Any]) -> None:
    parameters = inspect.signature(_FAMILIES[family]).parameters
    unknown = sorted(set(arguments) - set(parameters))
    if unknown:
        raise AnnzooError(
            f"{unknown[0]!r} is not an argument of the {family!r} builder. "
            f"Expected some of {sorted(parameters)}. Received: {unknown}"
        )


def _lookup(name: Any) -> tuple[str, dict[str, Any], _Preset | None]:
    _ensure_loaded()
    check_choice("name", name, [*_PRESETS, *_FAMILIES])
    if name in _PRESETS:
        preset = _PRESETS[name]
        return preset.family, dict(preset.config), preset
    return name, {}, None


def create_model(name: str, /, **overrides: Any):
    """Builds the registered preset or family ``name``.

    Args:
        name: a preset (``"resnet20"``) or family (``"cnn"``); see
            :func:`list_models` and :func:`list_families`.
        **overrides: builder arguments; they win over the preset's values.

    Returns:
        A ``keras.Model``, compiled unless ``compile=False`` is passed.

    Example:
        >>> model = annzoo.create_model("lenet5", num_classes=3, dropout=0.1)
    """
    family, config, _ = _lookup(name)
    _check_arguments(family, overrides)
    config.update(overrides)
    if name in _PRESETS and "name" not in overrides:
        config.setdefault("name", name)
    return _FAMILIES[family](**config)


def list_models(pattern: str = "*") -> list[str]:
    """Sorted preset names matching the shell-style ``pattern``."""
    _ensure_loaded()
    return sorted(n for n in _PRESETS if fnmatch.fnmatchcase(n, pattern))


def list_families() -> list[str]:
    """Sorted family names (builders usable with :func:`create_model`)."""
    _ensure_loaded()
    return sorted(_FAMILIES)


def model_info(name: str) -> ModelInfo:
    """Family, task, input and output shapes and the reference of ``name``."""
    family, config, preset = _lookup(name)
    parameters = inspect.signature(_FAMILIES[family]).parameters
    defaults = {k: p.default for k, p in parameters.items() if p.default is not p.empty}
    resolved = {**defaults, **config}
    outputs = resolved.get("num_classes", resolved.get("num_outputs"))
    input_shape = resolved.get("input_shape")
    if isinstance(input_shape, int):
        input_shape = (input_shape,)
    shapes = {
        "input_shape": tuple(input_shape) if input_shape else (),
        "output_shape": (outputs,) if outputs else (),
    }
    if family in _SHAPES:
        shapes.update({k: tuple(v) for k, v in _SHAPES[family](resolved).items()})
    return ModelInfo(
        name=name,
        family=family,
        task=resolved.get("task", "multiclass"),
        input_shape=shapes["input_shape"],
        output_shape=shapes["output_shape"],
        description=preset.description
        if preset
        else (inspect.getdoc(_FAMILIES[family]) or "").split("\n")[0],
        reference=preset.reference if preset else None,
        config=resolved,
    )


def _ensure_loaded() -> None:
    # The families register themselves on import; importing here lets
    # ``annzoo.registry`` be used on its own.
    import annzoo.models  # noqa: F401


def builder_parameters(name: str) -> list[str]:
    """The argument names of the builder behind preset or family ``name``."""
    family, _, _ = _lookup(name)
    return list(inspect.signature(_FAMILIES[family]).parameters)

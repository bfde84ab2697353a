"""The switch and the contract behind `annzoo.speedups`.

Each speedup module declares a `Speedup`: its name, the private Keras or
keras-tuner symbols it uses (`Symbol`), the backends it applies to and the
benchmark that measures it, and registers it here. Every use of a speedup then
asks `active` first: whether ``ANNZOO_SPEEDUPS`` selects it and whether the
installed Keras still has what it relies on. A speedup whose symbols are
missing switches itself off with one warning naming the symbol; annzoo then
runs on Keras' public behaviour, as with the speedup switched off by hand.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
import importlib.util
import os
import threading
import warnings
from collections.abc import Callable
from typing import Any

import keras

from annzoo.errors import AnnzooError

__all__ = [
    "ENV",
    "Finding",
    "Speedup",
    "Symbol",
    "active",
    "check_contract",
    "check_instance",
    "enabled",
    "names",
    "register",
    "switch_off",
]

ENV = "ANNZOO_SPEEDUPS"
_ALL = ("", "1", "all", "on", "true", "yes")
_NONE = ("0", "none", "off", "false", "no")


@dataclasses.dataclass(frozen=True)
class Symbol:
    """A private name a speedup relies on.

    Attributes:
        module: the module that defines it, e.g.
            ``"keras.src.backend.jax.random"``.
        attribute: the name in that module, dotted for a class attribute
            (``"JaxVariable._initialize_with_initializer"``).
        probe: for an attribute that exists on instances only: a function
            returning an instance of the class named by ``attribute``'s
            prefix, on which the contract check looks for it.
        backend: the Keras backend whose objects carry it (instance
            attributes of one backend's trainer); None: any backend.
        requires: a package the module needs (``"jax"``): where it is not
            installed the symbol is not checked, since the speedup never runs.
    """

    module: str
    attribute: str
    probe: Callable[[], Any] | None = None
    backend: str | None = None
    requires: str | None = None

    def __str__(self) -> str:
        return f"{self.module}.{self.attribute}"

    @property
    def owner(self) -> str:
        """The dotted attribute path of the class or module holding it."""
        return self.attribute.rpartition(".")[0]

    @property
    def name(self) -> str:
        return self.attribute.rpartition(".")[2]


@dataclasses.dataclass(frozen=True)
class Speedup:
    """A switchable speedup (see the package docstring).

    Attributes:
        name: what ``ANNZOO_SPEEDUPS`` calls it.
        summary: what it speeds up, in one line.
        benchmark: the command that measures it.
        symbols: every private Keras or keras-tuner name it uses.
        backends: the Keras backends it acts on (elsewhere it does nothing).
        correctness: True where it is kept for correctness rather than speed
            (switched off, keras-tuner's own behaviour applies).
    """

    name: str
    summary: str
    benchmark: str
    symbols: tuple[Symbol, ...] = ()
    backends: tuple[str, ...] = ("jax", "tensorflow", "torch")
    correctness: bool = False


_REGISTRY: dict[str, Speedup] = {}
_LOCK = threading.Lock()
_VERIFIED: dict[str, bool] = {}  # name -> the static symbols resolved
_OFF: dict[str, str] = {}  # name -> why it switched itself off
_CHECKED_TYPES: set[tuple[str, type]] = set()


def register(speedup: Speedup) -> Speedup:
    """Adds ``speedup`` to the registry; returns it."""
    if speedup.name in _REGISTRY:
        raise AnnzooError(f"A speedup named {speedup.name!r} is registered already.")
    _REGISTRY[speedup.name] = speedup
    return speedup


def names() -> tuple[str, ...]:
    """The names of the registered speedups."""
    return tuple(_REGISTRY)


def registry() -> dict[str, Speedup]:
    """The registered speedups by name (a copy)."""
    return dict(_REGISTRY)


@functools.lru_cache(maxsize=16)
def _parse(raw: str, known: tuple[str, ...]) -> frozenset[str]:
    value = raw.strip().lower()
    if value in _ALL:
        return frozenset(known)
    if value in _NONE:
        return frozenset()
    chosen: set[str] = set()
    left_out: set[str] = set()
    unknown = []
    for item in filter(None, (part.strip() for part in value.split(","))):
        name = item[1:].strip() if item.startswith("-") else item
        if name not in known:
            unknown.append(item)
        elif item.startswith("-"):
            left_out.add(name)
        else:
            chosen.add(name)
    if unknown or not (chosen or left_out):
        raise AnnzooError(
            f"`{ENV}` must be 1 (all speedups, the default), 0 (none) or a "
            "comma-separated list of speedup names, each optionally prefixed "
            "with '-' to leave it out; "
            + (f"unknown: {', '.join(map(repr, unknown))}; " if unknown else "")
            + f"known names: {', '.join(known)}. Received: {ENV}={raw!r}"
        )
    return frozenset(chosen or known) - left_out


def selected() -> frozenset[str]:
    """The speedups ``ANNZOO_SPEEDUPS`` selects (read at every call)."""
    return _parse(os.environ.get(ENV, ""), names())


def _check_name(name: str) -> Speedup:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise AnnzooError(
            f"`name` must be one of the speedups {', '.join(_REGISTRY)}. "
            f"Received: name={name!r}"
        ) from None


def enabled(name: str) -> bool:
    """Whether ``ANNZOO_SPEEDUPS`` selects speedup ``name`` and it has not
    switched itself off (a private symbol it needs is missing).

    Raises:
        AnnzooError: ``name`` is not a registered speedup, or
            ``ANNZOO_SPEEDUPS`` names one that is not.
    """
    _check_name(name)
    return name in selected() and name not in _OFF


def switch_off(name: str, reason: str) -> None:
    """Switches speedup ``name`` off for the rest of the process, with one
    warning saying why; annzoo then runs on Keras' public behaviour."""
    with _LOCK:
        if name in _OFF:
            return
        _OFF[name] = reason
    warnings.warn(
        f"annzoo: the {name!r} speedup is off: {reason}. annzoo goes on with "
        f"Keras' own behaviour; set {ENV}=-{name} to silence this, or install "
        "the Keras and keras-tuner versions annzoo declares.",
        RuntimeWarning,
        stacklevel=3,
    )


def _resolve(symbol: Symbol) -> Any:
    """The object ``symbol`` names; AttributeError or ImportError otherwise."""
    value: Any = importlib.import_module(symbol.module)
    for part in symbol.attribute.split("."):
        value = getattr(value, part)
    return value


def _resolve_owner(symbol: Symbol) -> Any:
    value: Any = importlib.import_module(symbol.module)
    for part in filter(None, symbol.owner.split(".")):
        value = getattr(value, part)
    return value


def _missing(symbol: Symbol) -> str | None:
    """Why ``symbol`` cannot be found (None: found). Instance attributes are
    looked for on ``symbol.probe()``."""
    try:
        if symbol.probe is None:
            _resolve(symbol)
            return None
        owner = _resolve_owner(symbol)
        instance = symbol.probe()
        if isinstance(owner, type) and not isinstance(instance, owner):
            return f"the probe made a {type(instance).__name__}, not a {owner}"
        if not hasattr(instance, symbol.name):
            return f"a {type(instance).__name__} has no attribute {symbol.name!r}"
        return None
    except (ImportError, AttributeError) as error:
        return f"{type(error).__name__}: {error}"


def _static(speedup: Speedup) -> list[Symbol]:
    """The symbols that can be resolved without making an object."""
    return [s for s in speedup.symbols if s.probe is None]


def active(name: str) -> bool:
    """Whether speedup ``name`` is to act now: `enabled`, and (checked once
    per process) every module-level and class-level symbol it uses exists.
    A missing one switches it off with a warning naming it."""
    if not enabled(name):
        return False
    if _VERIFIED.get(name):
        return True
    for symbol in _static(_REGISTRY[name]):
        why = _missing(symbol)
        if why is not None:
            switch_off(name, f"the installed Keras has no `{symbol}` ({why})")
            return False
    _VERIFIED[name] = True
    return True


def check_instance(name: str, obj: Any) -> bool:
    """Whether ``obj`` has the instance attributes speedup ``name`` reads on
    objects of its class (checked once per class); a missing one switches
    the speedup off with a warning naming it. Returns `active` otherwise."""
    if not active(name):
        return False
    key = (name, type(obj))
    if key in _CHECKED_TYPES:
        return True
    for symbol in _REGISTRY[name].symbols:
        if symbol.probe is None:
            continue
        try:
            owner = _resolve_owner(symbol)
        except (ImportError, AttributeError):
            continue  # another backend's class: not this object's
        if isinstance(owner, type) and isinstance(obj, owner):
            if not hasattr(obj, symbol.name):
                switch_off(
                    name,
                    f"a {type(obj).__name__} has no `{symbol.name}` "
                    f"(`{symbol}` in the installed Keras)",
                )
                return False
    _CHECKED_TYPES.add(key)
    return True


@dataclasses.dataclass(frozen=True)
class Finding:
    """One symbol of the contract: found (``ok``), missing, or not checked
    here (``ok is None``: its backend or package is not the one in use)."""

    speedup: str
    symbol: str
    ok: bool | None
    detail: str = ""


def _installed(package: str) -> bool:
    return importlib.util.find_spec(package) is not None


def check_contract(names: tuple[str, ...] | None = None) -> list[Finding]:
    """Looks up every private symbol of the given speedups (default: all) in
    the installed Keras and keras-tuner; one `Finding` per symbol.

    Instance attributes are looked for on a small object each symbol's probe
    makes (a layer, a compiled model), so this is meant for tests and
    diagnostics, not for the training path.
    """
    findings = []
    for name in names or tuple(_REGISTRY):
        for symbol in _check_name(name).symbols:
            if symbol.requires and not _installed(symbol.requires):
                findings.append(
                    Finding(name, str(symbol), None, f"{symbol.requires} missing")
                )
                continue
            if symbol.backend and symbol.backend != keras.backend.backend():
                findings.append(
                    Finding(name, str(symbol), None, f"{symbol.backend} only")
                )
                continue
            why = _missing(symbol)
            findings.append(Finding(name, str(symbol), why is None, why or ""))
    return findings

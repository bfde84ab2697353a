"""The model registry: one name -> one builder call.

Families (``"mlp"``, ``"cnn"``) are builder functions registered with
:func:`register`, each with a :class:`FamilySpec` declaring, next to the
builder, what the rest of annzoo needs to know about it (its tasks, the data it
trains on, its search space, a smoke configuration for tests, how predictions
read raw input and what its run report draws); presets are named argument
sets for a family, registered with :func:`register_preset` next to the family's
code, each carrying the published parameter count it reproduces and where that
figure comes from.

Registration is lazy: the families register themselves when `annzoo.models`
is imported, and the functions below import it on first use, so that
``import annzoo`` and ``import annzoo.registry`` load no Keras.

What the ``annzoo`` command shows without building anything (``annzoo list``,
``annzoo info NAME``) is read from ``registry_metadata.json``, a table this
registry writes (`write_metadata`, ``python -m annzoo.registry``) and
`plain_info` reads without importing Keras; ``tests/test_registry.py`` checks
that the table agrees with the registry, so the builders and presets stay the
one source of truth.
"""

from __future__ import annotations

import difflib
import fnmatch
import importlib
import inspect
import json
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from annzoo._checks import check_choice
from annzoo.errors import AnnzooError, UnknownNameError

__all__ = [
    "FamilySpec",
    "Reference",
    "ModelInfo",
    "register",
    "register_preset",
    "create_model",
    "list_models",
    "list_families",
    "model_info",
    "family_spec",
    "plain_family",
    "plain_info",
    "plain_names",
    "write_metadata",
]

_FAMILIES: dict[str, Callable[..., Any]] = {}
_SPECS: dict[str, FamilySpec] = {}
_PRESETS: dict[str, _Preset] = {}

# How `annzoo predict` reads raw input for a family.
PREDICT_INPUTS = ("arrays", "text")
# What a run's report may draw beyond the learning curves.
REPORTS = (
    "confusion_matrix",
    "entities",
    "decoded",
    "attention",
    "samples",
    "reconstructions",
)


@dataclass(frozen=True)
class FamilySpec:
    """What annzoo needs to know about a family, declared next to its builder.

    The runner, the tuner, ``predict``, ``finetune`` and the tests read this
    instead of branching on family names: a new family is one module with its
    builder and spec, registered with :func:`register`.

    Attributes:
        tasks: the task names (:mod:`annzoo.tasks`) its builder accepts.
        data: the dataset structures it trains on (``"sample"``,
            ``"tagging"``, ``"sequence"``; see :class:`annzoo.datasets.ArrayDataset`).
        dataset_arguments: ``function(train_split) -> dict`` of the builder
            arguments a dataset determines (input shape, vocabulary sizes,
            output width, task): how a recipe's data fills the builder.
        search_space: the default hyperparameter space of
            :func:`annzoo.tuning.default_space`, in its format.
        space_requires: default-space keys that only mean something when
            another builder argument is set (``{"embedding_dim":
            "vocabulary_size"}``).
        smoke: builder arguments of a tiny model, for tests and smoke runs.
        predict: how ``annzoo predict`` can read raw input for the family's
            runs: ``"arrays"`` (.npy, .npz, .csv or image files) and/or
            ``"text"`` (raw strings tokenized with the run's vocabulary).
        report: what a run's report draws beyond the learning curves
            (``"confusion_matrix"``, ``"entities"``, ``"decoded"``,
            ``"attention"``; generative models' ``"samples"`` and
            ``"reconstructions"``, with their measures), when the task and
            model allow it.
        shapes: ``function(config) -> {"input_shape": ..., "output_shape":
            ...}`` for :func:`model_info`, where the shapes are not simply
            ``config["input_shape"]`` and ``(num_classes,)``.
        training_split: ``function(split) -> split``: the dataset split as
            the family trains on it, where that is not the dataset's own
            ``(x, y)`` (an autoencoder's targets are its inputs); None keeps it.
        fit_arrays: ``function(split, model) -> (x, y)``: what ``fit`` takes
            from a (training) split, where that is not the split's ``(x, y)``
            (a language model's next-token labels); None keeps them.
    """

    tasks: tuple[str, ...]
    data: tuple[str, ...]
    dataset_arguments: Callable[[Any], dict[str, Any]]
    search_space: Mapping[str, Any]
    smoke: Mapping[str, Any]
    predict: tuple[str, ...] = ("arrays",)
    report: tuple[str, ...] = ()
    space_requires: Mapping[str, str] = field(default_factory=dict)
    shapes: Callable[[dict[str, Any]], dict[str, tuple]] | None = None
    training_split: Callable[[Any], Any] | None = None
    fit_arrays: Callable[[Any, Any], tuple[Any, Any]] | None = None

    def __post_init__(self) -> None:
        for kind in self.predict:
            check_choice("spec.predict", kind, PREDICT_INPUTS)
        for item in self.report:
            check_choice("spec.report", item, REPORTS)
        for structure in self.data:
            check_choice("spec.data", structure, ("sample", "tagging", "sequence"))
        if not self.tasks:
            raise AnnzooError(
                "`spec.tasks` must name at least one task. Received: spec.tasks=()"
            )


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
    # A family's: every task its builder can train for (a preset's: its task).
    tasks: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def register(family: str, *, spec: FamilySpec) -> Callable:
    """Decorator registering a family builder under ``family``.

    Args:
        family: the family's name.
        spec: what the rest of annzoo needs to know about the family.
    """
    if not isinstance(spec, FamilySpec):
        raise AnnzooError(
            f"`spec` must be an annzoo.registry.FamilySpec. Received: spec={spec!r}"
        )

    def decorate(builder: Callable) -> Callable:
        if family in _FAMILIES or family in _PRESETS:
            raise AnnzooError(f"`family` {family!r} is already registered.")
        parameters = inspect.signature(builder).parameters
        unknown = sorted(set(spec.smoke) - set(parameters))
        if unknown:
            raise AnnzooError(
                f"`spec.smoke` of family {family!r} must hold builder arguments. "
                f"Received: {unknown}"
            )
        # Deferred: annzoo.speedups imports Keras, which the registry's
        # plain-data side (`plain_info`) must not; a builder is only ever
        # registered by a family module that has imported Keras already.
        from annzoo.speedups import with_host_initialization

        # On JAX, new weights are filled from NumPy: no XLA program per
        # weight shape (the `host_init` speedup; `benchmarks/run.py --only
        # overhead`).
        builder = with_host_initialization(builder)
        _FAMILIES[family] = builder
        _SPECS[family] = spec
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
    _load_families()  # a preset of one of annzoo's families, registered from outside
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


_LOADED = False


def _load_families() -> None:
    """Imports `annzoo.models`, whose modules register every family and preset.

    By name, through importlib: the models sit above the registry in annzoo's
    import layers, and only this lazy registration needs them.
    """
    global _LOADED
    if not _LOADED:
        _LOADED = True  # first, so that a lookup during that import does not recurse
        try:
            importlib.import_module("annzoo.models")
        except BaseException:
            _LOADED = False
            raise


def close_names(name: str, names: list[str]) -> list[str]:
    """Every name of ``names`` that ``name`` may have meant: those starting with
    it or containing it (``resnet`` -> every ResNet), then the close spellings."""
    names = sorted(names)
    lower = name.lower()
    found = [n for n in names if n.startswith(lower)]
    found += [n for n in names if lower in n and n not in found]
    found += [
        n
        for n in difflib.get_close_matches(lower, names, n=10, cutoff=0.6)
        if n not in found
    ]
    return found


def check_name(name: Any, presets: list[str], families: list[str]) -> str:
    """``name`` when it is a preset or family; otherwise an error naming every
    close match (`close_names`)."""
    if isinstance(name, str) and (name in presets or name in families):
        return name
    close = close_names(name, [*presets, *families]) if isinstance(name, str) else []
    hint = (
        f" Did you mean {', '.join(map(repr, close))}?"
        if close
        else " `annzoo list` shows every model and family."
    )
    raise UnknownNameError(
        f"`name` must be a registered model or family. Received: name={name!r}.{hint}"
    )


def _lookup(name: Any) -> tuple[str, dict[str, Any], _Preset | None]:
    _load_families()
    check_name(name, list(_PRESETS), list(_FAMILIES))
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
    _load_families()
    return sorted(n for n in _PRESETS if fnmatch.fnmatchcase(n, pattern))


def list_families() -> list[str]:
    """Sorted family names (builders usable with :func:`create_model`)."""
    _load_families()
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
    spec = _SPECS[family]
    if spec.shapes is not None:
        try:
            shapes.update({k: tuple(v) for k, v in spec.shapes(resolved).items()})
        except (KeyError, TypeError):  # a family without default sizes (rnn)
            pass
    task = _real_task(resolved.get("task", spec.tasks[0]), shapes)
    return ModelInfo(
        name=name,
        family=family,
        task=task,
        tasks=(task,) if preset else family_tasks(spec),
        input_shape=shapes["input_shape"],
        output_shape=shapes["output_shape"],
        description=preset.description
        if preset
        else (inspect.getdoc(_FAMILIES[family]) or "").split("\n")[0],
        reference=preset.reference if preset else None,
        config=resolved,
    )


def _real_task(task: str, shapes: dict[str, tuple]) -> str:
    """The name of the `annzoo.tasks` Task a model trains for, from its compile
    task and shapes: a builder compiles a tagger, and a translator without
    ``task="sequence"``, with the "multiclass" loss, but a class per token is
    "tagging" (one input) or "sequence" (an encoder and a decoder input)."""
    output, inputs = shapes["output_shape"], shapes["input_shape"]
    if task != "multiclass" or len(output) < 2:
        return task
    several_inputs = bool(inputs) and isinstance(inputs[0], tuple | list)
    return "sequence" if several_inputs else "tagging"


def family_tasks(spec: FamilySpec) -> tuple[str, ...]:
    """Every task a family trains for: its builder's tasks, and "tagging" or
    "sequence" where it trains on such data (`FamilySpec.data`)."""
    found = list(spec.tasks)
    for structure in spec.data:
        if structure != "sample" and structure not in found:
            found.append(structure)
    return tuple(found)


def builder(family: str) -> Callable[..., Any]:
    """The builder function registered as ``family``."""
    _load_families()
    check_choice("family", family, _FAMILIES)
    return _FAMILIES[family]


def family_spec(name: str) -> FamilySpec:
    """The :class:`FamilySpec` of the family behind preset or family ``name``."""
    family, _, _ = _lookup(name)
    return _SPECS[family]


def resolve(name: str) -> tuple[str, dict[str, Any]]:
    """``(family, preset arguments)`` of preset or family ``name`` (``{}`` for a
    family)."""
    family, config, _ = _lookup(name)
    return family, config


def builder_parameters(name: str) -> list[str]:
    """The argument names of the builder behind preset or family ``name``."""
    family, _, _ = _lookup(name)
    return list(inspect.signature(_FAMILIES[family]).parameters)


# -- the plain table: what the CLI shows without importing Keras ---------------

METADATA_FILE = Path(__file__).with_name("registry_metadata.json")


def _tuples(value: Any) -> Any:
    # JSON has no tuples; ModelInfo holds no lists (tests/test_registry.py).
    if isinstance(value, list):
        return tuple(_tuples(v) for v in value)
    if isinstance(value, dict):
        return {k: _tuples(v) for k, v in value.items()}
    return value


def metadata_table() -> dict[str, Any]:
    """What `write_metadata` writes: every preset's and family's `model_info`.

    ``{"presets": [...], "families": [...], "models": {name: info dict}}``; a
    family without default sizes (``rnn``) has empty shapes.
    """
    models = {}
    for name in [*list_models(), *list_families()]:
        models[name] = model_info(name).to_dict()
    return {"presets": list_models(), "families": list_families(), "models": models}


def write_metadata(path: str | Path | None = None) -> Path:
    """Writes `metadata_table` as JSON (default: ``registry_metadata.json``)."""
    # Deferred: annzoo.io imports Keras; only this maintenance step writes.
    from annzoo import io as aio

    text = json.dumps(metadata_table(), indent=1) + "\n"
    return aio.write_text(METADATA_FILE if path is None else path, text)


_PLAIN: dict[str, Any] | None = None


def _plain_table() -> dict[str, Any]:
    global _PLAIN
    if _PLAIN is None:
        _PLAIN = _tuples(json.loads(METADATA_FILE.read_text(encoding="utf-8")))
    return _PLAIN


def plain_names(pattern: str = "*") -> list[str]:
    """`list_models` from the plain table: sorted preset names, without Keras."""
    return sorted(
        n for n in _plain_table()["presets"] if fnmatch.fnmatchcase(n, pattern)
    )


def plain_families(pattern: str = "*") -> list[str]:
    """`list_families` from the plain table: sorted family names, without Keras."""
    return sorted(
        n for n in _plain_table()["families"] if fnmatch.fnmatchcase(n, pattern)
    )


def plain_family(name: str) -> str:
    """The family of preset or family ``name``, from the plain table."""
    table = _plain_table()
    check_name(name, table["presets"], table["families"])
    return name if name in table["families"] else table["models"][name]["family"]


def plain_info(name: str) -> ModelInfo:
    """`model_info` from the plain table, without importing Keras.

    Every preset and family is in the table (tests/test_registry.py keeps it
    equal to `metadata_table`).
    """
    table = _plain_table()
    check_name(name, table["presets"], table["families"])
    info = dict(table["models"][name])
    if info["reference"] is not None:
        info["reference"] = Reference(**info["reference"])
    return ModelInfo(**info)


if __name__ == "__main__":  # python -m annzoo.registry: rewrite the table
    # Through the imported module: as __main__ this file is a second copy
    # whose registry the families never fill.
    from annzoo import registry as _registry

    print(_registry.write_metadata())

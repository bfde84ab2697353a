"""Recipes: a declarative, serializable description of a training run.

A recipe names a registered model and its arguments, a dataset, the input
pipeline and augmentation, the compile and fit settings and the callbacks.
It round-trips through JSON and YAML, the run directory stores the resolved
recipe as ``recipe.json``, and ``annzoo train RUN_DIR/recipe.json`` runs it
again. Every field can be overridden from the command line with
``--set SECTION.FIELD=VALUE`` (``--set model.dropout=0.3``,
``--set data.batch_size=64``); an unknown field is an error that names it.

Example:
    >>> recipe = Recipe(
    ...     name="digits_cnn",
    ...     model={"name": "cnn", "filters": [32, 64]},
    ...     data={"dataset": "digits", "batch_size": 32},
    ...     fit={"epochs": 30},
    ... )
    >>> recipe = recipe.override(["fit.epochs=3", "model.dropout=0.2"])
    >>> annzoo.training.train(recipe)
"""

from __future__ import annotations

import copy
import difflib
import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from annzoo._checks import (
    check_choice,
    check_non_negative_int,
    check_positive_float,
    check_positive_int,
    check_rate,
)
from annzoo.errors import AnnzooError, UnknownNameError

__all__ = ["Recipe", "load_recipe", "SECTION_DEFAULTS"]

# Each section's fields and defaults. A field absent here is unknown, except in
# `model`, whose fields are the builder's arguments.
SECTION_DEFAULTS: dict[str, dict[str, Any]] = {
    "data": {
        "dataset": None,
        "options": {},  # passed to annzoo.datasets.load (data_dir, download...)
        "batch_size": 32,
        "shuffle": True,
        "cache": "memory",  # None, "memory" or a file path prefix
        "limit": None,  # use only the first N samples of each split (smoke runs)
        "pipeline": "auto",  # "auto", "tf.data" or "numpy"
        "label_format": "sparse",  # "sparse" integer labels or "one_hot"
        # Raw-text datasets: words kept (by frequency in the train split) and
        # tokens per sample after padding or truncation.
        "text": {"max_tokens": 20000, "sequence_length": 200},
        # Train on train + validation (a retrained tuning winner); the run then
        # has no validation data, so callbacks must monitor "loss".
        "merge_validation": False,
        # Drop each epoch's last, smaller training batch: "auto" where it
        # would be compiled again (XLA; see annzoo.data.drop_partial_batch).
        "drop_remainder": "auto",
    },
    "augment": {
        "ops": [],  # an annzoo.augment spec: preset name or list of ops
        "placement": "model",  # "model" (on the accelerator) or "pipeline" (CPU)
    },
    "compile": {
        "optimizer": "adam",
        "learning_rate": None,
        "weight_decay": None,
        # None, or {"boundaries": [epochs...], "values": [lr...]}: a step
        # schedule in epochs (He et al.'s CIFAR schedule is one).
        "schedule": None,
        "jit_compile": "auto",
        # Steps per compiled call: 32 trains small models 1.4-1.7x faster than
        # 1 on a 2-core CPU (benchmarks/RESULTS.md, dispatch); per-batch
        # callbacks (NaN guard, progress bar) then see every 32nd step.
        "steps_per_execution": 32,
        # None (float32), or "bfloat16" / "float16" compute with float32
        # variables (Keras' mixed_ policies): an opt-in for accelerators.
        "mixed_precision": None,
    },
    "fit": {
        "epochs": 50,
        "seed": 0,
        "steps_per_epoch": None,
    },
    "finetune": {
        # Start from trained weights instead of building `model`: a .keras
        # file, an annzoo run directory (its best.keras) or a registered
        # preset (keras.applications backbones download their weights).
        "source": None,
        "truncate": 1,  # layers removed from the end before the new head
        "freeze": "base",  # "base", a layer count, a fraction or a layer name
        "batchnorm": "frozen",  # keep batch normalization in inference mode
        # Two stages: `head_epochs` epochs training the new head on the frozen
        # base at compile.learning_rate, then everything at that rate times
        # `learning_rate_scale`. Without head_epochs: one stage, the base
        # frozen as `freeze` says, at the reduced rate.
        "head_epochs": None,
        "learning_rate_scale": 0.1,
    },
    "distribute": {
        # "auto", "none", "mirrored" (TensorFlow), "data-parallel" or
        # "model-parallel" (JAX); see annzoo.training.distribute.
        "strategy": "auto",
        "devices": None,  # how many of the visible devices (None: all)
        "model_axis": None,  # model-parallel: devices each kernel is split over
        # Multiply the learning rate by the number of replicas (the global
        # batch grows with them); off: the rate is the recipe's.
        "scale_learning_rate": False,
    },
    "callbacks": {
        "monitor": "val_loss",
        "early_stopping": {"patience": 10},  # None removes it
        "checkpoint": True,  # best.keras
        "backup": True,  # state for resuming an interrupted run
        "reduce_lr": None,  # e.g. {"factor": 0.5, "patience": 3}
        "csv": True,  # metrics.csv
        "tensorboard": True,  # tensorboard/ logs
        "terminate_on_nan": True,
    },
}

PIPELINES = ("auto", "tf.data", "numpy")
PLACEMENTS = ("model", "pipeline")


def _suggest(name: str, choices: Iterable[str]) -> str:
    close = difflib.get_close_matches(name, list(choices), n=1)
    return f" Did you mean {close[0]!r}?" if close else ""


@dataclass
class Recipe:
    """A training run described as data; see the module docstring.

    Attributes:
        name: names the run directory (``OUTPUT_DIR/NAME``).
        model: ``{"name": preset_or_family, **builder_arguments}``.
        data: dataset and input pipeline (see ``SECTION_DEFAULTS["data"]``).
        augment: augmentation ops and where they run.
        compile: optimizer, learning rate and schedule.
        fit: epochs, seed and steps.
        callbacks: the callback bundle; set a part to ``None``/``False`` to
            remove it.
        finetune: start from trained weights (``source``), with a new head,
            frozen layers, a reduced learning rate and optionally two stages.
        distribute: data-parallel or model-parallel training over several
            devices or processes (``annzoo.training.distribute``).
        search_space: an optional keras-tuner search space for ``annzoo tune``.
        description: one line for humans.
    """

    name: str
    model: dict[str, Any]
    data: dict[str, Any]
    augment: dict[str, Any] = field(default_factory=dict)
    compile: dict[str, Any] = field(default_factory=dict)
    fit: dict[str, Any] = field(default_factory=dict)
    callbacks: dict[str, Any] = field(default_factory=dict)
    finetune: dict[str, Any] = field(default_factory=dict)
    distribute: dict[str, Any] = field(default_factory=dict)
    search_space: dict[str, Any] | None = None
    description: str = ""

    def __post_init__(self) -> None:
        for section in (
            "model",
            "data",
            "augment",
            "compile",
            "fit",
            "callbacks",
            "finetune",
            "distribute",
        ):
            value = getattr(self, section)
            if not isinstance(value, Mapping):
                raise AnnzooError(
                    f"`{section}` must be a mapping of fields. "
                    f"Received: {section}={value!r}"
                )
            value = copy.deepcopy(dict(value))
            if section in SECTION_DEFAULTS:
                defaults = SECTION_DEFAULTS[section]
                for key in value:
                    if key not in defaults:
                        raise AnnzooError(
                            f"`{section}.{key}` is not a recipe field. Expected some "
                            f"of {sorted(defaults)}.{_suggest(key, defaults)} "
                            f"Received: {section}.{key}={value[key]!r}"
                        )
                value = {**copy.deepcopy(defaults), **value}
            setattr(self, section, value)

    # -- serialization -------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        return json.loads(
            json.dumps({f.name: getattr(self, f.name) for f in fields(self)})
        )

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Recipe:
        if not isinstance(data, Mapping):
            raise AnnzooError(
                f"A recipe must be a mapping. Received: {type(data).__name__}"
            )
        known = {f.name for f in fields(cls)}
        for key in data:
            if key not in known:
                raise AnnzooError(
                    f"`{key}` is not a recipe section. Expected some of "
                    f"{sorted(known)}.{_suggest(key, known)} Received: {key}=..."
                )
        for key in ("name", "model", "data"):
            if key not in data:
                raise AnnzooError(
                    f"A recipe needs `{key}`. Received sections: {sorted(data)}"
                )
        return cls(**dict(data))

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=False) + "\n"

    def to_yaml(self) -> str:
        import yaml

        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    def save(self, path: str | os.PathLike) -> Path:
        """Writes the recipe atomically as JSON or YAML (by the file suffix)."""
        from annzoo import io as aio

        path = Path(path)
        text = self.to_yaml() if path.suffix in (".yaml", ".yml") else self.to_json()
        return aio.write_text(path, text)

    # -- overrides -----------------------------------------------------------

    def override(self, assignments: Iterable[str]) -> Recipe:
        """A copy with ``SECTION.FIELD[.SUBFIELD]=VALUE`` assignments applied.

        Values are parsed as YAML (``3``, ``0.5``, ``[32, 64]``, ``null``,
        ``true``), anything else stays a string.
        """
        import yaml

        data = self.to_dict()
        for assignment in assignments:
            if "=" not in assignment:
                raise AnnzooError(
                    "`--set` takes SECTION.FIELD=VALUE, for example "
                    f"model.dropout=0.3. Received: {assignment!r}"
                )
            key, raw = assignment.split("=", 1)
            try:
                value = yaml.safe_load(raw) if raw.strip() else ""
            except yaml.YAMLError:
                value = raw
            path = key.strip().split(".")
            if path[0] in ("name", "description"):
                if len(path) != 1:
                    raise AnnzooError(f"`{path[0]}` has no fields. Received: {key!r}")
                data[path[0]] = value
                continue
            if path[0] not in data or path[0] in ("name", "description"):
                raise AnnzooError(
                    f"`{key}` is not a recipe field: `{path[0]}` is not a section. "
                    f"Expected one of {sorted(data)}.{_suggest(path[0], data)}"
                )
            if len(path) < 2:
                raise AnnzooError(
                    "`--set` needs SECTION.FIELD, not a whole section. "
                    f"Received: {key!r}"
                )
            node = data[path[0]]
            if node is None:
                node = data[path[0]] = {}
            for depth, part in enumerate(path[1:-1], start=1):
                if not isinstance(node.get(part), dict):
                    if part in node and node[part] is not None:
                        raise AnnzooError(
                            f"`{'.'.join(path[: depth + 1])}` is not a mapping, so "
                            f"`{key}` cannot be set. Received: {key!r}"
                        )
                    node[part] = {}
                node = node[part]
            node[path[-1]] = value
        recipe = Recipe.from_dict(data)
        return recipe

    # -- validation ----------------------------------------------------------

    def validate(self) -> Recipe:
        """Checks every field; raises :class:`AnnzooError` naming the first bad one."""
        from annzoo import augment, datasets, registry, tasks

        if not isinstance(self.name, str) or not self.name or "/" in self.name:
            raise AnnzooError(
                "`name` must be a non-empty string without '/'. "
                f"Received: name={self.name!r}"
            )
        model_name = self.model.get("name")
        check_choice(
            "model.name",
            model_name,
            [*registry.list_models(), *registry.list_families()],
        )
        parameters = set(registry.builder_parameters(model_name)) - {"compile"}
        for key in self.model:
            if key != "name" and key not in parameters:
                raise AnnzooError(
                    f"`model.{key}` is not an argument of the {model_name!r} builder. "
                    f"Expected some of {sorted(parameters)}.{_suggest(key, parameters)}"
                )

        data = self.data
        entry = datasets._base._resolve(data["dataset"], argument="data.dataset")
        _check_dataset_path(data["dataset"], entry)
        check_positive_int("data.batch_size", data["batch_size"])
        if data["limit"] is not None:
            check_positive_int("data.limit", data["limit"])
        check_choice("data.pipeline", data["pipeline"], PIPELINES)
        check_choice("data.label_format", data["label_format"], tasks.LABEL_FORMATS)
        _check_options("data.text", data["text"], {"max_tokens", "sequence_length"})
        if not isinstance(data["merge_validation"], bool):
            raise AnnzooError(
                "`data.merge_validation` must be true or false. "
                f"Received: data.merge_validation={data['merge_validation']!r}"
            )
        _check_auto_or_bool("data.drop_remainder", data["drop_remainder"])
        monitor = self.callbacks["monitor"]
        if data["merge_validation"] and str(monitor).startswith("val_"):
            raise AnnzooError(
                "`callbacks.monitor` must be a training metric such as 'loss' when "
                "data.merge_validation is true (there is no validation data). "
                f"Received: callbacks.monitor={monitor!r}"
            )
        for key, value in (data["text"] or {}).items():
            check_positive_int(f"data.text.{key}", value)
        if not isinstance(data["options"], Mapping):
            raise AnnzooError(
                f"`data.options` must be a mapping. Received: {data['options']!r}"
            )

        check_choice("augment.placement", self.augment["placement"], PLACEMENTS)
        mixing = augment.mixing_ops(self.augment["ops"])
        if mixing and self.augment["placement"] == "model":
            raise AnnzooError(
                f"`augment.placement` must be 'pipeline' for {mixing[0]!r}, which "
                "mixes labels as well as images. Received: augment.placement='model'"
            )

        comp = self.compile
        if comp["learning_rate"] is not None:
            check_positive_float("compile.learning_rate", comp["learning_rate"])
        try:
            tasks.check_compile_options({"optimizer": comp["optimizer"]})
        except UnknownNameError as error:
            message = str(error).replace("`optimizer`", "`compile.optimizer`")
            raise UnknownNameError(message) from None
        if comp["learning_rate"] is not None:
            check_positive_float("compile.learning_rate", comp["learning_rate"])
        if comp["weight_decay"] is not None:
            check_rate("compile.weight_decay", comp["weight_decay"])
        check_positive_int("compile.steps_per_execution", comp["steps_per_execution"])
        _check_auto_or_bool("compile.jit_compile", comp["jit_compile"])
        _check_schedule(comp["schedule"])
        tasks.check_mixed_precision("compile.mixed_precision", comp["mixed_precision"])

        check_positive_int("fit.epochs", self.fit["epochs"])
        check_non_negative_int("fit.seed", self.fit["seed"])
        if self.fit["steps_per_epoch"] is not None:
            check_positive_int("fit.steps_per_epoch", self.fit["steps_per_epoch"])

        cb = self.callbacks
        if not isinstance(cb["monitor"], str) or not cb["monitor"]:
            raise AnnzooError(
                f"`callbacks.monitor` must be a metric name such as 'val_loss'. "
                f"Received: callbacks.monitor={cb['monitor']!r}"
            )
        _check_options("callbacks.early_stopping", cb["early_stopping"], {"patience"})
        if cb["early_stopping"]:
            check_non_negative_int(
                "callbacks.early_stopping.patience", cb["early_stopping"]["patience"]
            )
        _check_options(
            "callbacks.reduce_lr", cb["reduce_lr"], {"factor", "patience", "min_lr"}
        )
        if cb["reduce_lr"]:
            factor = cb["reduce_lr"].get("factor", 0.1)
            if not isinstance(factor, int | float) or not 0 < factor < 1:
                raise AnnzooError(
                    "`callbacks.reduce_lr.factor` must be in (0, 1). "
                    f"Received: callbacks.reduce_lr.factor={factor!r}"
                )
            check_non_negative_int(
                "callbacks.reduce_lr.patience", cb["reduce_lr"].get("patience", 10)
            )
        for flag in ("checkpoint", "backup", "csv", "tensorboard", "terminate_on_nan"):
            if not isinstance(cb[flag], bool):
                raise AnnzooError(
                    f"`callbacks.{flag}` must be true or false. "
                    f"Received: callbacks.{flag}={cb[flag]!r}"
                )
        ft = self.finetune
        if ft["source"] is not None:
            if not isinstance(ft["source"], str) or not ft["source"]:
                raise AnnzooError(
                    "`finetune.source` must be a .keras file, a run directory or a "
                    f"preset name. Received: finetune.source={ft['source']!r}"
                )
            source = ft["source"]
            if source not in registry.list_models() and not Path(source).exists():
                raise AnnzooError(
                    "`finetune.source` must be a .keras file, an annzoo run "
                    f"directory or a preset name; {source!r} is not a preset and "
                    f"does not exist. Received: finetune.source={source!r}"
                    f"{_suggest(source, registry.list_models())}"
                )
            check_positive_int("finetune.truncate", ft["truncate"])
            check_choice("finetune.batchnorm", ft["batchnorm"], ("frozen", "train"))
            check_positive_float(
                "finetune.learning_rate_scale", ft["learning_rate_scale"]
            )
            if ft["head_epochs"] is not None:
                check_positive_int("finetune.head_epochs", ft["head_epochs"])
                if ft["head_epochs"] >= self.fit["epochs"]:
                    raise AnnzooError(
                        "`finetune.head_epochs` must be fewer than `fit.epochs` "
                        "(the rest train the whole network). Received: "
                        f"finetune.head_epochs={ft['head_epochs']}, "
                        f"fit.epochs={self.fit['epochs']}"
                    )
        dist = self.distribute
        from annzoo.training.distribute import STRATEGIES

        check_choice("distribute.strategy", dist["strategy"], STRATEGIES)
        for key in ("devices", "model_axis"):
            if dist[key] is not None:
                check_positive_int(f"distribute.{key}", dist[key])
        scale = dist["scale_learning_rate"]
        if not isinstance(scale, bool):
            raise AnnzooError(
                "`distribute.scale_learning_rate` must be true or false. "
                f"Received: distribute.scale_learning_rate={scale!r}"
            )
        space = self.search_space
        if space is not None and not isinstance(space, Mapping):
            raise AnnzooError(
                f"`search_space` must be a mapping or null. Received: {space!r}"
            )
        return self


def _check_dataset_path(dataset: str, entry: Any) -> None:
    """A user's ``csv:PATH`` file or ``images:DIR`` folder must exist."""
    from annzoo.datasets import files

    kinds = {
        files._load_csv: (files.CSV_PREFIX, Path.is_file, "an existing CSV file"),
        files._load_images: (
            files.IMAGES_PREFIX,
            Path.is_dir,
            "an existing folder of class subfolders",
        ),
    }
    if entry.loader not in kinds:
        return
    prefix, exists, what = kinds[entry.loader]
    path = Path(os.path.expanduser(dataset[len(prefix) :]))
    if not exists(path):
        found = "does not exist" if not path.exists() else "is not one"
        raise AnnzooError(
            f"`data.dataset` must be '{prefix}PATH' with PATH {what}; "
            f"{str(path)!r} {found}. Received: data.dataset={dataset!r}"
        )


def _check_options(name: str, value: Any, allowed: set[str]) -> None:
    if value is None or value is False:
        return
    if not isinstance(value, Mapping):
        raise AnnzooError(
            f"`{name}` must be a mapping of options or null. Received: {name}={value!r}"
        )
    for key in value:
        if key not in allowed:
            raise AnnzooError(
                f"`{name}.{key}` is not an option. Expected some of {sorted(allowed)}."
                f"{_suggest(key, allowed)}"
            )


def _check_auto_or_bool(name: str, value: Any) -> None:
    if value not in ("auto", True, False):
        raise AnnzooError(
            f"`{name}` must be 'auto', true or false. Received: {name}={value!r}"
        )


def _check_schedule(schedule: Any) -> None:
    if schedule is None:
        return
    if (
        not isinstance(schedule, Mapping)
        or set(schedule) != {"boundaries", "values"}
        or not isinstance(schedule["boundaries"], list | tuple)
        or not isinstance(schedule["values"], list | tuple)
        or len(schedule["values"]) != len(schedule["boundaries"]) + 1
    ):
        raise AnnzooError(
            "`compile.schedule` must be null or {boundaries: [epoch, ...], values: "
            "[lr, ...]} with one more value than boundaries. "
            f"Received: compile.schedule={schedule!r}"
        )
    boundaries = list(schedule["boundaries"])
    for b in boundaries:
        check_positive_int("compile.schedule.boundaries", b)
    if boundaries != sorted(set(boundaries)):
        raise AnnzooError(
            "`compile.schedule.boundaries` must be strictly increasing epochs. "
            f"Received: compile.schedule.boundaries={boundaries}"
        )
    for v in schedule["values"]:
        check_positive_float("compile.schedule.values", v)


def load_recipe(source: str | os.PathLike) -> Recipe:
    """Reads a recipe from a ``.json``/``.yaml`` file or a ``recipes/NAME.py`` file.

    A Python file must define a module-level ``RECIPE``.
    """
    path = Path(source)
    if not path.is_file():
        raise AnnzooError(
            f"`recipe` must be a .json, .yaml or .py recipe file, or the name of a "
            f"file in recipes/. Received: {str(source)!r}, which does not exist."
        )
    if path.suffix == ".py":
        import importlib.util

        spec = importlib.util.spec_from_file_location(
            f"annzoo_recipe_{path.stem}", path
        )
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        recipe = getattr(module, "RECIPE", None)
        if not isinstance(recipe, Recipe):
            raise AnnzooError(
                f"`recipe` file {str(path)!r} must define RECIPE = "
                f"annzoo.training.Recipe(...). Received: RECIPE={recipe!r}"
            )
        return recipe
    text = path.read_text(encoding="utf-8")
    try:
        if path.suffix in (".yaml", ".yml"):
            import yaml

            data = yaml.safe_load(text)
        else:
            data = json.loads(text)
    except (ValueError, Exception) as error:  # JSONDecodeError, YAMLError
        raise AnnzooError(
            f"`recipe` file {str(path)!r} is not valid "
            f"{'YAML' if path.suffix != '.json' else 'JSON'}: {error}"
        ) from None
    if isinstance(data, Mapping) and "recipe" in data and "name" not in data:
        data = data["recipe"]
    return Recipe.from_dict(data)

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
import importlib.util
import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from annzoo import io as aio
from annzoo import recipes
from annzoo.errors import AnnzooError
from annzoo.training.validation import suggest, validate_recipe

__all__ = ["Recipe", "find_recipe", "load_recipe", "SECTION_DEFAULTS"]

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
        # Further keyword arguments of the optimizer's Keras class, such as
        # {"beta_1": 0.5, "beta_2": 0.9} for Adam (DCGAN's and WGAN-GP's
        # settings) or {"clipnorm": 1.0}; a GAN's generator and discriminator
        # both get them. The learning rate and weight decay have fields above.
        "optimizer_options": {},
        # None, or {"boundaries": [epochs...], "values": [lr...]}: a step
        # schedule in epochs (He et al.'s CIFAR schedule is one).
        "schedule": None,
        "jit_compile": "auto",
        # Steps per compiled call: small models spend most of a one-step call
        # in dispatch (`benchmarks/run.py --only dispatch`); per-batch
        # callbacks (NaN guard, progress bar) then see every 32nd step. Runs
        # and searches on the PyTorch backend use 1 whatever this says (Keras'
        # PyTorch trainer runs one step per call; see build.for_plan), as do
        # runs under tf.distribute.MirroredStrategy.
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
        # base ("auto": a quarter of fit.epochs, at least 1) at
        # compile.learning_rate times `head_learning_rate_scale` (a new
        # linear head on fixed features needs few, large steps), then
        # everything but batch normalization at compile.learning_rate times
        # `learning_rate_scale`. head_epochs null or 0: one stage, the base
        # frozen as `freeze` says, at the second stage's rate. The
        # digits_transfer few-shot case at 4 epochs measures these defaults.
        "head_epochs": "auto",
        "head_learning_rate_scale": 10.0,
        "learning_rate_scale": 1.0,
        # What the second stage unfreezes: "all" (every layer), a count of
        # the last layers, or a fraction of them (the top of the base; the
        # rest stays frozen). Batch normalization follows `batchnorm`.
        "unfreeze": "all",
        # Filled in by the run, for recipe.json: the SHA-256 of the source's
        # model file (its run's manifest entry when it has one; None for a
        # preset). A recipe that names one is refused if the file changed.
        "source_sha256": None,
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
                            f"of {sorted(defaults)}.{suggest(key, defaults)} "
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
                    f"{sorted(known)}.{suggest(key, known)} Received: {key}=..."
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
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    def save(self, path: str | os.PathLike) -> Path:
        """Writes the recipe atomically as JSON or YAML (by the file suffix)."""
        path = Path(path)
        text = self.to_yaml() if path.suffix in (".yaml", ".yml") else self.to_json()
        return aio.write_text(path, text)

    # -- overrides -----------------------------------------------------------

    def override(self, assignments: Iterable[str]) -> Recipe:
        """A copy with ``SECTION.FIELD[.SUBFIELD]=VALUE`` assignments applied.

        Values are parsed as YAML (``3``, ``0.5``, ``[32, 64]``, ``null``,
        ``true``), anything else stays a string.
        """
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
                    f"Expected one of {sorted(data)}.{suggest(path[0], data)}"
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
        """Checks every field; raises :class:`AnnzooError` naming the first bad one.

        See `annzoo.training.validation`. Returns the recipe itself.
        """
        validate_recipe(self)
        return self


def load_recipe(source: str | os.PathLike) -> Recipe:
    """Reads a recipe from a ``.json``/``.yaml`` file or a ``recipes/NAME.py`` file.

    A Python file must define a module-level ``RECIPE``; a YAML or JSON file
    holds the recipe's sections, or them under ``recipe:`` (as the files
    annzoo ships do, beside their ``measured:`` result). `find_recipe` turns
    a name into a file.
    """
    path = Path(source)
    if not path.is_file():
        raise AnnzooError(
            f"`recipe` must be a .json, .yaml or .py recipe file, or the name of a "
            f"file in recipes/. Received: {str(source)!r}, which does not exist."
        )
    if path.suffix == ".py":
        try:
            # Compiled first so that a file that is not Python (binary junk, a
            # truncated copy) is named as such; errors raised while running a
            # valid recipe file are the recipe's own and keep their traceback.
            compile(path.read_bytes(), str(path), "exec")
        except (SyntaxError, ValueError) as error:
            raise AnnzooError(
                f"`recipe` file {str(path)!r} must be a Python file defining RECIPE. "
                f"Received: a file that is not valid Python ({type(error).__name__}: "
                f"{str(error)[:120]})."
            ) from None
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
    kind = "YAML" if path.suffix in (".yaml", ".yml") else "JSON"
    where = f"`recipe` file {str(path)!r} must be a {kind} recipe (a mapping)"
    raw = path.read_bytes()
    if not raw.strip():
        raise AnnzooError(f"{where}. Received: an empty file.")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        raise AnnzooError(
            f"{where}. Received: bytes that are not UTF-8 text (at byte "
            f"{error.start}); is it a binary or damaged file?"
        ) from None
    try:
        data = yaml.safe_load(text) if kind == "YAML" else json.loads(text)
    except (ValueError, yaml.YAMLError) as error:  # JSONDecodeError, YAMLError
        detail = " ".join(str(error).split())[:200]
        raise AnnzooError(
            f"{where}. Received: text that is not valid {kind} ({detail})."
        ) from None
    if isinstance(data, Mapping) and "recipe" in data and "name" not in data:
        data = data["recipe"]
    if not isinstance(data, Mapping):
        raise AnnzooError(
            f"{where}. Received: a {kind} {type(data).__name__}, {data!r:.60}."
        )
    return Recipe.from_dict(data)


def find_recipe(source: str | os.PathLike) -> Path:
    """A recipe file: ``source`` itself, else the recipe annzoo ships under that
    name, else ``recipes/NAME.py`` in the working directory (`annzoo.recipes.find`).
    """
    return recipes.find(source)

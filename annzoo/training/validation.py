"""Recipe validation: every field checked before anything runs or is written.

Each check names the field (``data.batch_size``), what was expected and what
was received, so that a bad recipe is refused in one sentence.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from annzoo import augment, datasets, registry, tasks
from annzoo._checks import (
    check_choice,
    check_non_negative_int,
    check_positive_float,
    check_positive_int,
    check_rate,
)
from annzoo.datasets import files
from annzoo.errors import AnnzooError, UnknownNameError
from annzoo.training.distribute import STRATEGIES

__all__ = ["PIPELINES", "PLACEMENTS", "suggest", "validate_recipe"]

PIPELINES = ("auto", "tf.data", "numpy")
PLACEMENTS = ("model", "pipeline")


def suggest(name: str, choices: Iterable[str]) -> str:
    """`` Did you mean 'x'?`` for the closest of ``choices``, or nothing."""
    close = difflib.get_close_matches(name, list(choices), n=1)
    return f" Did you mean {close[0]!r}?" if close else ""


def validate_recipe(recipe) -> None:
    """Checks every field of ``recipe`` (an `annzoo.training.Recipe`, whose
    module imports this one); raises :class:`AnnzooError` naming the first
    bad one."""
    if not isinstance(recipe.name, str) or not recipe.name or "/" in recipe.name:
        raise AnnzooError(
            "`name` must be a non-empty string without '/'. "
            f"Received: name={recipe.name!r}"
        )
    model_name = recipe.model.get("name")
    check_choice(
        "model.name",
        model_name,
        [*registry.list_models(), *registry.list_families()],
    )
    parameters = set(registry.builder_parameters(model_name)) - {"compile"}
    for key in recipe.model:
        if key != "name" and key not in parameters:
            raise AnnzooError(
                f"`model.{key}` is not an argument of the {model_name!r} builder. "
                f"Expected some of {sorted(parameters)}.{suggest(key, parameters)}"
            )

    data = recipe.data
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
    monitor = recipe.callbacks["monitor"]
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

    check_choice("augment.placement", recipe.augment["placement"], PLACEMENTS)
    mixing = augment.mixing_ops(recipe.augment["ops"])
    if mixing and recipe.augment["placement"] == "model":
        raise AnnzooError(
            f"`augment.placement` must be 'pipeline' for {mixing[0]!r}, which "
            "mixes labels as well as images. Received: augment.placement='model'"
        )

    comp = recipe.compile
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
    tasks.check_optimizer_options(
        comp["optimizer"],
        comp["optimizer_options"],
        name="compile.optimizer_options",
        optimizer_name="compile.optimizer",
        build=False,  # no backend yet: `compile_recipe_model` builds it
        own_fields={
            "learning_rate": "compile.learning_rate",
            "weight_decay": "compile.weight_decay",
        },
    )
    check_positive_int("compile.steps_per_execution", comp["steps_per_execution"])
    _check_auto_or_bool("compile.jit_compile", comp["jit_compile"])
    _check_schedule(comp["schedule"])
    tasks.check_mixed_precision("compile.mixed_precision", comp["mixed_precision"])

    check_positive_int("fit.epochs", recipe.fit["epochs"])
    check_non_negative_int("fit.seed", recipe.fit["seed"])
    if recipe.fit["steps_per_epoch"] is not None:
        check_positive_int("fit.steps_per_epoch", recipe.fit["steps_per_epoch"])

    cb = recipe.callbacks
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
    ft = recipe.finetune
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
                f"{suggest(source, registry.list_models())}"
            )
        check_positive_int("finetune.truncate", ft["truncate"])
        check_choice("finetune.batchnorm", ft["batchnorm"], ("frozen", "train"))
        _check_unfreeze(ft["unfreeze"])
        check_positive_float("finetune.learning_rate_scale", ft["learning_rate_scale"])
        check_positive_float(
            "finetune.head_learning_rate_scale", ft["head_learning_rate_scale"]
        )
        if ft["head_epochs"] not in (None, 0, "auto"):
            if isinstance(ft["head_epochs"], str):
                raise AnnzooError(
                    "`finetune.head_epochs` must be 'auto', a positive integer, 0 or "
                    f"null. Received: finetune.head_epochs={ft['head_epochs']!r}"
                )
            check_positive_int("finetune.head_epochs", ft["head_epochs"])
            if ft["head_epochs"] >= recipe.fit["epochs"]:
                raise AnnzooError(
                    "`finetune.head_epochs` must be fewer than `fit.epochs` "
                    "(the rest train the whole network). Received: "
                    f"finetune.head_epochs={ft['head_epochs']}, "
                    f"fit.epochs={recipe.fit['epochs']}"
                )
    dist = recipe.distribute
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
    space = recipe.search_space
    if space is not None and not isinstance(space, Mapping):
        raise AnnzooError(
            f"`search_space` must be a mapping or null. Received: {space!r}"
        )


def _check_dataset_path(dataset: str, entry: Any) -> None:
    """A user's ``csv:PATH`` file or ``images:DIR`` folder must exist."""
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
                f"{suggest(key, allowed)}"
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


def _check_unfreeze(value: Any) -> None:
    """`finetune.unfreeze`: "all", a positive layer count or a fraction in (0, 1]."""
    if value == "all":
        return
    ok = not isinstance(value, bool) and (
        (isinstance(value, int) and value >= 1)
        or (isinstance(value, float) and 0.0 < value <= 1.0)
    )
    if not ok:
        raise AnnzooError(
            "`finetune.unfreeze` must be 'all', a positive number of layers (the "
            "last ones) or a fraction of the layers in (0, 1]. Received: "
            f"finetune.unfreeze={value!r}"
        )

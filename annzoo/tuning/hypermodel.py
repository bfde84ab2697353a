"""keras-tuner hypermodels over the registry: one name -> one searchable builder.

The hypermodel holds no model code: each trial draws the arguments of the space
(:mod:`annzoo.tuning.spaces`), calls :func:`annzoo.create_model` with them and
compiles with :func:`annzoo.compile_model`, so a tuned model is exactly what the
builder makes for those arguments.
"""

from __future__ import annotations

import collections.abc
import inspect
import sys
from collections.abc import Mapping
from typing import Any

import keras
import keras_tuner

from annzoo import registry, tasks
from annzoo.errors import AnnzooError
from annzoo.speedups import (
    build_fit_state,
    host_initialization,
    runtime_dropout_rates,
)
from annzoo.training.checks import check_metric_name, reported_metrics
from annzoo.tuning import spaces
from annzoo.tuning.fid import FID_OBJECTIVE, FrechetJudge, FrechetObjective

__all__ = ["AnnzooHyperModel", "hypermodel"]

_COMPILE_ARGUMENTS = ("task", "optimizer", "learning_rate")


class AnnzooHyperModel(keras_tuner.HyperModel):
    """A keras-tuner ``HyperModel`` searching a builder's arguments.

    Prefer :func:`hypermodel` to build one; the arguments are the same.

    Args:
        name: a preset or family name, as for :func:`annzoo.create_model`.
        space: overrides of the default space (see :mod:`annzoo.tuning.spaces`).
        fixed: builder arguments that stay fixed, and optionally the settings
            ``optimizer``, ``learning_rate`` and ``batch_size``; they leave the
            space.
        compile_options: further :func:`annzoo.compile_model` arguments
            (``jit_compile``, ``steps_per_execution``, ``label_format``...).
        optimizer_options: keyword arguments of every trial's optimizer
            (``{"beta_1": 0.5}``, ``weight_decay``...), checked against each
            optimizer the trials may use (the fixed one, or each choice of
            the space's ``optimizer``).
        tunable: keras-tuner's flag (whether new hyperparameters are added to
            the tuner's space).

    Attributes:
        model_name: ``name``.
        fixed: the fixed builder arguments.
        settings: the fixed ``optimizer``, ``learning_rate``, ``batch_size``.
        compile_options: as given.
        optimizer_options: as given.
    """

    def __init__(
        self,
        name: str,
        *,
        space: Mapping[str, Any] | None = None,
        fixed: Mapping[str, Any] | None = None,
        compile_options: Mapping[str, Any] | None = None,
        optimizer_options: Mapping[str, Any] | None = None,
        tunable: bool = True,
    ) -> None:
        fixed = dict(fixed or {})
        self._space = spaces.space_from_spec(space, name=name, fixed=fixed)
        compile_options = dict(compile_options or {})
        for key in _COMPILE_ARGUMENTS:
            if key in compile_options:
                raise AnnzooError(
                    f"`compile_options` must not set `{key}`: pass it as a fixed "
                    f"argument (hypermodel({name!r}, {key}=...)) or search it in "
                    f"`space`. Received: compile_options={compile_options!r}"
                )
        tasks.check_compile_options(compile_options)
        super().__init__(name=f"annzoo_{name}", tunable=tunable)
        self.model_name = name
        self.settings = {k: fixed.pop(k) for k in spaces.SPECIAL_KEYS if k in fixed}
        self.fixed = fixed
        self.compile_options = compile_options
        self.optimizer_options = dict(optimizer_options or {})
        optimizers = self._optimizers()
        for optimizer in optimizers:
            try:
                tasks.check_optimizer_options(optimizer, self.optimizer_options)
            except AnnzooError as error:
                if len(optimizers) == 1:
                    raise
                raise AnnzooError(
                    f"{error} (The space draws `optimizer` among {optimizers}, "
                    "and every choice must take the options: fix `optimizer` or "
                    "narrow its choices.)"
                ) from None
        self._task = model_task(name, fixed)
        # A GAN's objective (`annzoo.tuning.fid`): set by the recipe's
        # hypermodel, else made by `fit` from its data and validation images.
        self.fid_judge: FrechetJudge | None = None

    def _optimizers(self) -> list:
        """The optimizers the trials may use: the fixed one, each choice of
        the space's ``optimizer``, or the default ``"adam"``."""
        if "optimizer" in self.settings:
            return [self.settings["optimizer"]]
        entry = self._space.get("optimizer")
        if entry is None:
            return ["adam"]
        if entry.get("type") == "choice":
            return list(entry["values"])
        return [entry.get("value", "adam")]

    @property
    def space(self) -> dict[str, Any]:
        """The resolved search space (long form, JSON-serializable); a copy."""
        return spaces.space_from_spec(self._space)

    def __repr__(self) -> str:
        return (
            f"AnnzooHyperModel({self.model_name!r}, searching {sorted(self._space)}, "
            f"fixed {sorted(self.fixed) + sorted(self.settings)})"
        )

    def arguments(self, hp: keras_tuner.HyperParameters) -> dict[str, dict[str, Any]]:
        """What ``hp`` gives each part of a run, declaring the space on ``hp``.

        Returns:
            ``{"model": builder arguments (fixed and drawn, layers as tuples,
            ``None`` for a ``"none"`` label), "compile": {"optimizer",
            "learning_rate"}, "data": {"batch_size"}}``, each setting present
            only when searched or fixed. The shape of a recipe's sections.
        """
        drawn = {**self.settings, **draw(self._space, hp)}
        settings = {k: drawn.pop(k) for k in spaces.SPECIAL_KEYS if k in drawn}
        return {
            "model": {**self.fixed, **drawn},
            "compile": {k: settings[k] for k in _COMPILE_ARGUMENTS if k in settings},
            "data": {k: settings[k] for k in ("batch_size",) if k in settings},
        }

    def active_values(self, hp: keras_tuner.HyperParameters) -> dict[str, Any]:
        """``hp``'s values of this space's active hyperparameters only.

        Per-layer values beyond the current depth are left out even though
        keras-tuner may still hold them in ``hp.values``; choice values are
        the hyperparameter's own (labels such as ``"none"`` for ``None``).
        """
        return active_values(self._space, hp)

    def build(self, hp: keras_tuner.HyperParameters) -> keras.Model:
        """Builds and compiles the model for ``hp`` in a fresh Keras session."""
        # A trial's layers and graphs would otherwise pile up in the global
        # Keras state for the whole search.
        keras.backend.clear_session()  # collects garbage too
        arguments = self.arguments(hp)
        model = registry.create_model(
            self.model_name, **arguments["model"], compile=False
        )
        optimizer = tasks.get_optimizer(
            arguments["compile"].get("optimizer", "adam"),
            arguments["compile"].get("learning_rate"),
            **self.optimizer_options,
        )
        return tasks.compile_model(
            model, task=self._task, optimizer=optimizer, **self.compile_options
        )

    @property
    def adversarial(self) -> bool:
        """Whether the model is a GAN (task ``"adversarial"``)."""
        return self._task == "adversarial"

    def default_objective(self) -> str | None:
        """The objective when none is asked for: ``val_fid`` for a GAN (its
        losses do not measure its images), None (the recipe's monitor) else."""
        return FID_OBJECTIVE if self.adversarial else None

    def reported_metrics(self, *, validation: bool = True) -> list[str]:
        """The names a trial's model logs each epoch: its task's loss and
        metrics (`annzoo.training.checks.reported_metrics`), and their
        ``val_`` forms; a GAN's three losses and, with validation images,
        ``val_fid`` (`annzoo.tuning.fid`)."""
        if self.adversarial:
            names = ["loss", "d_loss", "g_loss"]
            return names + [FID_OBJECTIVE] if validation else names
        return reported_metrics(
            self._task,
            label_format=self.compile_options.get("label_format", "sparse"),
            crf=bool(self.fixed.get("crf")),
            validation=validation,
        )

    def check_objective(self, objective: Any) -> str:
        """Refuses, before any trial, an objective no trial would report
        (keras-tuner would fail every trial at its end instead)."""
        why = f"task {self._task!r}, with validation data"
        return check_metric_name("objective", objective, self.reported_metrics(), why)

    def check_data(self, x: Any) -> None:
        """Raises when ``x`` comes in batches but a batch size is set."""
        if not _is_batched(x):
            return
        for where, names in (("searched", self._space), ("fixed", self.settings)):
            if "batch_size" in names:
                raise AnnzooError(
                    f"`batch_size` is {where}, but the training data is already "
                    f"batched ({type(x).__name__}), so it would be ignored. "
                    "Remove it (space={'batch_size': None}, or from the fixed "
                    "arguments) or pass arrays."
                )

    def fit(self, hp: keras_tuner.HyperParameters, model: keras.Model, *args, **kwargs):
        """``model.fit(*args, batch_size=<drawn>, **kwargs)``; returns the History."""
        self.check_data(args[0] if args else kwargs.get("x"))
        if "batch_size" in self._space:
            if "batch_size" in kwargs:
                raise AnnzooError(
                    "`batch_size` is searched; do not pass it to fit. Received: "
                    f"batch_size={kwargs['batch_size']!r}"
                )
            # Declared by build already: this retrieves the trial's value.
            batch_size = _draw_entry(hp, "batch_size", self._space["batch_size"])
            kwargs["batch_size"] = batch_size
        elif "batch_size" in self.settings:
            kwargs.setdefault("batch_size", self.settings["batch_size"])
        if self.adversarial:
            kwargs = self._with_fid(args, kwargs)
        return self.fit_model(model, *args, **kwargs)

    def _with_fid(self, args: tuple, kwargs: dict) -> dict:
        """A GAN's fit: its validation images become the ``val_fid`` measure
        (a GAN has no evaluation step), computed by a `FrechetObjective` that
        runs before the other callbacks (early stopping, keras-tuner's own)."""
        validation = kwargs.pop("validation_data", None)
        if self.fid_judge is None and validation is not None:
            x = args[0] if args else kwargs.get("x")
            y = args[1] if len(args) > 1 else kwargs.get("y")
            real_x, real_y = (
                validation[:2] if isinstance(validation, tuple | list)
                else (validation, None)
            )  # fmt: skip
            if y is None:
                raise AnnzooError(
                    "`y` must hold the training images' class ids for a GAN's "
                    "val_fid: its classifier trains on labelled images "
                    "(annzoo.tuning.fid). Received: y=None"
                )
            self.fid_judge = FrechetJudge(x, y, real_x, real_y)
        if self.fid_judge is not None:
            callbacks = list(kwargs.get("callbacks") or [])
            kwargs["callbacks"] = [FrechetObjective(self.fid_judge), *callbacks]
        return kwargs

    def fit_model(self, model: keras.Model, *args, **kwargs):
        """``model.fit(*args, **kwargs)`` once the batch size is settled, with
        the model's fit variables built first (`annzoo.speedups.build_fit_state`:
        the step is then traced once, not twice) and, on JAX, its nonzero
        dropout rates read by the compiled step as values, so that trials
        differing only in them share one program
        (`annzoo.speedups.runtime_dropout_rates`)."""
        x = args[0] if args else kwargs.get("x")
        y = args[1] if len(args) > 1 else kwargs.get("y")
        build_fit_state(model, x, y)
        # JAX: optimizer slots filled from NumPy.
        with host_initialization(), runtime_dropout_rates(model):
            return model.fit(*args, **kwargs)


# -- drawing a space on keras-tuner hyperparameters -----------------------------


def _defaults(entry: dict) -> dict:
    return {"default": entry["default"]} if "default" in entry else {}


def _draw_entry(hp: Any, key: str, entry: dict) -> Any:
    kind = entry["type"]
    if kind in ("int", "float"):
        draw_number = hp.Int if kind == "int" else hp.Float
        return draw_number(
            key,
            entry["min"],
            entry["max"],
            step=entry.get("step"),
            sampling=entry["sampling"],
            **_defaults(entry),
        )
    if kind == "boolean":
        return hp.Boolean(key, **_defaults(entry))
    if kind == "choice":
        labels = spaces._labels(key, entry["values"])
        if labels is None:
            return hp.Choice(key, entry["values"], **_defaults(entry))
        default = _defaults(entry) and {"default": spaces._label(entry["default"])}
        return _argument(labels[hp.Choice(key, list(labels), **default)])
    if kind == "fixed":
        value = entry["value"]
        return (
            hp.Fixed(key, value)
            if isinstance(value, spaces._SCALARS)
            else _argument(value)
        )
    low, high = entry["depth"]
    depth = hp.Int(f"{key}_depth", low, high)
    layers = []
    for i in range(1, high + 1):
        layer = f"{key}_{i}"
        if i <= depth and layer not in hp.values:
            # A layer registered while inactive has no value when a later depth
            # activates it (keras-tuner raises KeyError); tuners fill it in with
            # `ensure_active_values`, a hand-set depth gets the first choice.
            hp.values[layer] = entry["values"][0]
        with hp.conditional_scope(f"{key}_depth", list(range(i, high + 1))):
            value = hp.Choice(layer, entry["values"])
        if i <= depth:
            layers.append(value)
    return tuple(layers)


def _argument(value: Any) -> Any:
    """JSON lists become the tuples builders take for sequence arguments."""
    return tuple(_argument(v) for v in value) if isinstance(value, list) else value


def draw(space: Mapping[str, dict], hp: Any) -> dict[str, Any]:
    """Declares ``space`` on ``hp`` and returns the drawn arguments, decoded."""
    return {key: _draw_entry(hp, key, entry) for key, entry in space.items()}


def active_values(space: Mapping[str, dict], hp: Any) -> dict[str, Any]:
    """``hp``'s values of the hyperparameters of ``space`` that are active now.

    keras-tuner keeps a conditional value in ``hp.values`` after its parent
    changes (until ``hp.ensure_active_values()``), so the layers beyond the
    current depth are filtered here from the depth, not from ``hp.values``.
    """
    values = {}
    for key, entry in space.items():
        if entry["type"] != "layers":
            if key in hp.values:
                values[key] = hp.values[key]
            continue
        depth_name = f"{key}_depth"
        if depth_name not in hp.values:
            continue
        values[depth_name] = depth = hp.values[depth_name]
        for i in range(1, depth + 1):
            if f"{key}_{i}" in hp.values:
                values[f"{key}_{i}"] = hp.values[f"{key}_{i}"]
    return values


def model_task(name: str, fixed: Mapping[str, Any]) -> str:
    """The model's task: fixed, else the preset's, else the builder default."""
    if "task" in fixed:
        return fixed["task"]
    family, config = registry.resolve(name)
    if "task" in config:
        return config["task"]
    parameter = inspect.signature(registry.builder(family)).parameters.get("task")
    return "multiclass" if parameter is None else parameter.default


def _is_batched(x: Any) -> bool:
    """Datasets, loaders and generators yield batches; arrays and dicts do not."""
    if isinstance(x, keras.utils.PyDataset):
        return True
    # Checked through sys.modules so that this module never imports them.
    tf = sys.modules.get("tensorflow")
    if tf is not None and isinstance(x, tf.data.Dataset):
        return True
    torch_data = sys.modules.get("torch.utils.data")
    if torch_data is not None and isinstance(x, torch_data.DataLoader):
        return True
    return isinstance(x, collections.abc.Iterator)


def hypermodel(
    name: str,
    /,
    *,
    space: Mapping[str, Any] | None = None,
    compile_options: Mapping[str, Any] | None = None,
    optimizer_options: Mapping[str, Any] | None = None,
    **fixed: Any,
) -> AnnzooHyperModel:
    """A keras-tuner hypermodel searching the arguments of preset or family ``name``.

    The space is the default space of ``name`` (see
    :func:`annzoo.tuning.default_space`: a family searches its architecture, a
    preset keeps its architecture and searches only the optimizer, learning
    rate, batch size and dropout), overridden by ``space``, without the
    arguments in ``fixed``. Everything is checked here, before any search.

    Args:
        name: a preset (``"lenet5"``) or family (``"cnn"``).
        space: overrides, in the format of a recipe's ``search_space``: new or
            replaced entries, ``None`` to remove a key.
        compile_options: further :func:`annzoo.compile_model` arguments.
        optimizer_options: keyword arguments of every trial's optimizer
            (``{"beta_1": 0.5}``), checked before any search.
        **fixed: builder arguments that stay fixed (input and output sizes
            are required for a family), and optionally ``optimizer``,
            ``learning_rate`` or ``batch_size``.

    Returns:
        An :class:`AnnzooHyperModel`.

    Example:
        >>> hm = hypermodel("cnn", input_shape=(8, 8, 1), num_classes=10,
        ...                 space={"kernel_size": 3, "dropout": None})
        >>> tuner = keras_tuner.RandomSearch(hm, objective="val_accuracy")
    """
    return AnnzooHyperModel(
        name,
        space=space,
        fixed=fixed,
        compile_options=compile_options,
        optimizer_options=optimizer_options,
    )

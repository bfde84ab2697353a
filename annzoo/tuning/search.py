"""`annzoo.tune`: a keras-tuner search over a recipe's model, resumable and safe.

The search directory ``OUTPUT_DIR/NAME/`` holds:

===========================  ===================================================
``search.json``              what the search is: model, dataset, space,
                             objective, tuner, seed, epochs; a rerun must match
``search/``                  keras-tuner's project (oracle, trials, best-epoch
                             weights), written atomically by annzoo
``stats/``                   per-trial timings and resident memory
``trials.csv``               one row per trial: status, objective, the active
                             hyperparameters, epochs, wall and training time
``trials.png``               the objective per trial and against each
                             hyperparameter
``best_hyperparameters.json`` the best trial's hyperparameters and score
``retrained/``               with ``retrain=True``: the best configuration
                             trained again on train + validation, a normal run
===========================  ===================================================

Rerunning the same search continues it (keras-tuner reloads its oracle; a trial
cut short by a crash runs again); a search whose definition changed is refused
unless ``overwrite=True``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import keras
import numpy as np

from annzoo import _fused_steps, tasks
from annzoo._checks import check_choice, check_non_negative_int, check_positive_int
from annzoo.errors import AnnzooError, CheckpointError
from annzoo import io as aio
from annzoo.training.recipe import Recipe

__all__ = ["TUNERS", "TuneResult", "tune", "search_definition"]

TUNERS = {
    "random": "RandomSearch",
    "hyperband": "Hyperband",
    "bayesian": "BayesianOptimization",
    "grid": "GridSearch",
}
PROJECT = "search"
# A trial that has started this many times without ending (each start was cut
# short by the process dying: out of memory, a segfault, a kill) is marked
# failed instead of being run again forever.
MAX_ATTEMPTS = 3


@dataclasses.dataclass
class TuneResult:
    """The outcome of `tune`."""

    run_dir: Path
    best_hyperparameters: dict[str, Any]
    best_score: float | None
    trials: list[dict[str, Any]]
    completed: int
    retrained: Any = None  # a RunResult with retrain=True


# Samples per validation batch, whatever the trial's batch size: a validation
# is a forward pass, and a GRU's over 1,536 surnames took 11 ms at 256 against
# 15-19 ms at 16 on JAX (52-56 against 145-147 ms on TensorFlow), on the CPU.
VALIDATION_BATCH = 256


# -- keras-tuner's files, written atomically ----------------------------------


@contextlib.contextmanager
def atomic_keras_tuner():
    """Routes keras-tuner's JSON and weight files through annzoo's atomic writes.

    keras-tuner writes ``oracle.json``, ``trial.json`` and checkpoints in place,
    so a process killed mid-write leaves a torn file that the next run cannot
    reload. Inside this context they are written to a temporary file, synced
    and renamed.
    """
    from keras_tuner.src import utils as kt_utils
    from keras_tuner.src.engine import tuner_utils

    def save_json(path, obj):
        text = json.dumps(obj)
        aio.write_text(path, text)
        return text

    def save_model(callback):
        # The best epoch's weights stay in memory until the trial's fit ends
        # (a file write per improving epoch was ~30 ms, a tenth of a small
        # search); a trial killed before then is run again anyway.
        callback._annzoo_best = [np.array(w) for w in callback.model.get_weights()]

    def write_best(callback, logs=None):
        best = getattr(callback, "_annzoo_best", None)
        if best is None:
            return
        model = callback.model
        last = model.get_weights()
        model.set_weights(best)
        try:
            with aio.atomic_path(callback.filepath) as tmp:
                model.save_weights(str(tmp))
        finally:
            model.set_weights(last)
        callback._annzoo_best = None

    kind = tuner_utils.SaveBestEpoch
    saved = kt_utils.save_json, kind._save_model, kind.on_train_end
    kt_utils.save_json = save_json
    kind._save_model, kind.on_train_end = save_model, write_best
    try:
        yield
    finally:
        kt_utils.save_json, kind._save_model, kind.on_train_end = saved


# -- per-trial measurements ---------------------------------------------------


def _rss_mb() -> float:
    """Resident memory of this process in MiB (Linux /proc, else peak RSS)."""
    try:
        with open("/proc/self/statm") as handle:
            pages = int(handle.read().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError):  # pragma: no cover - not Linux
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# JAX keeps every compiled program for the life of the process: each trial's
# train and test steps, and the small programs behind its eager operations
# (initializers, optimizer and metric variables). Clearing them after every
# trial kept memory flat but made every trial compile the small ones again: a
# 20-trial digits MLP search in a fresh process on a 2-core CPU took 62.2-62.9 s
# that way, 40.3-44.3 s when they were kept, for 51-62 MiB more resident memory
# by the last trial. They are cleared when resident memory has grown this much
# since the last clearing.
JAX_CACHE_BUDGET_MB = 512.0


def _trim_heap() -> None:
    # glibc keeps freed heap pages mapped; hand them back so resident memory
    # reflects what is really in use.
    with contextlib.suppress(OSError, AttributeError):
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)


def _free_memory(state: dict, backend: str | None = None) -> bool:
    """Drops what a finished trial leaves behind; returns whether JAX's
    compiled programs were cleared (see `JAX_CACHE_BUDGET_MB`).

    ``state`` carries the resident memory after the last clearing from one
    trial to the next (the first trial's end sets it).
    """
    gc.collect()
    _trim_heap()
    cleared = False
    if (backend or keras.backend.backend()) == "jax":
        rss = _rss_mb()
        baseline = state.setdefault("rss_after_clear", rss)
        if rss - baseline > JAX_CACHE_BUDGET_MB:
            import jax

            if _HEAP["frozen"]:  # what the caches held may be frozen cycles
                gc.unfreeze()
            jax.clear_caches()
            gc.collect()
            _trim_heap()
            state["rss_after_clear"] = _rss_mb()
            cleared = True
    if _HEAP["frozen"]:
        gc.freeze()  # what the trial left alive: see `_frozen_heap`
    return cleared


class _EpochTimer(keras.callbacks.Callback):
    """Adds up the time spent in epochs; copies share one record."""

    def __init__(self, record: dict):
        super().__init__()
        self.record = record

    def __deepcopy__(self, memo):  # keras-tuner copies callbacks per trial
        return _EpochTimer(self.record)

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.record["train_s"] += time.perf_counter() - self._start
        self.record["epochs"] += 1


def _trial_number(trial) -> int:
    try:
        return int(trial.trial_id)
    except ValueError:  # pragma: no cover - keras-tuner ids are numbers
        return sum(map(ord, trial.trial_id))


def _attempts_file(stats_dir: Path, trial_id: str) -> Path:
    # One file per trial (beside stats/, whose files are the trials' records):
    # only the process running a trial writes its count, so workers never race.
    return stats_dir.parent / "attempts" / f"trial_{trial_id}.json"


def _read_attempts(path: Path) -> int:
    try:
        return int(json.loads(path.read_text("utf-8"))["starts"])
    except FileNotFoundError:
        return 0
    except (OSError, ValueError, KeyError, TypeError):
        raise CheckpointError(
            f"{str(path)!r} is unreadable (truncated or corrupt), so this search "
            "cannot be resumed safely; nothing was changed. Rerun with "
            "overwrite=True (--overwrite) to start it again."
        ) from None


def _empty_batch_hooks(tuner_class) -> bool:
    """Whether a tuner class's per-batch hooks are keras-tuner's own (empty)."""
    import keras_tuner

    return all(
        getattr(tuner_class, hook) is getattr(keras_tuner.Tuner, hook)
        for hook in ("on_batch_begin", "on_batch_end")
    )


def _tuner_class(kind: str, stats_dir: Path, record: dict, seed: int):
    import keras_tuner
    from keras_tuner.src.engine import tuner_utils

    base = getattr(keras_tuner, TUNERS[kind])
    memory: dict[str, float] = {}  # `_free_memory`'s state across trials
    per_epoch_only = _empty_batch_hooks(base)  # AnnzooTuner adds no batch hooks

    class EpochTunerCallback(tuner_utils.TunerCallback):
        """keras-tuner's callback calling the tuner's hooks, without the
        per-batch ones, for tuners whose per-batch hooks are empty.

        keras-tuner's passes every batch on with ``self.model``, which on JAX
        writes the training loop's state into the model's variables at every
        call of the training step (and Keras then reads it back); it also
        makes Keras wait for each call to finish before dispatching the next.
        """

        on_batch_begin = keras.callbacks.Callback.on_batch_begin
        on_batch_end = keras.callbacks.Callback.on_batch_end

    class AnnzooTuner(base):
        """keras-tuner's tuner, measuring each trial and freeing memory after it."""

        def on_trial_begin(self, trial):
            record.update(train_s=0.0, epochs=0, start=time.perf_counter())
            # Weights, dropout and shuffling of trial k are seeded too, so the
            # same search seed repeats each trial, not only its hyperparameters.
            keras.utils.set_random_seed(seed * 100_003 + _trial_number(trial))
            super().on_trial_begin(trial)

        def run_trial(self, trial, *args, **kwargs):
            # Counted before training, so a process that dies in this trial
            # leaves the count behind; keras-tuner would otherwise rerun a
            # trial that kills the process (out of memory...) forever.
            attempts = _attempts_file(stats_dir, trial.trial_id)
            started = _read_attempts(attempts)
            if started >= MAX_ATTEMPTS:
                message = (
                    f"the process died during this trial {started} times (out of "
                    "memory, a crash or a kill); not run again"
                )
                print(f"annzoo: trial {trial.trial_id} failed: {message}", flush=True)
                raise keras_tuner.errors.FailedTrialError(message)
            aio.write_json(attempts, {"starts": started + 1})
            return super().run_trial(trial, *args, **kwargs)

        def _build_and_fit_model(self, trial, *args, **kwargs):
            if per_epoch_only:
                kwargs["callbacks"] = [
                    EpochTunerCallback(c.tuner, c.trial)
                    if type(c) is tuner_utils.TunerCallback
                    else c
                    for c in kwargs.get("callbacks") or ()
                ]
            return super()._build_and_fit_model(trial, *args, **kwargs)

        def on_trial_end(self, trial):
            super().on_trial_end(trial)
            cleared = _free_memory(memory)
            stats = {
                "trial_id": trial.trial_id,
                "wall_s": round(time.perf_counter() - record["start"], 4),
                "train_s": round(record["train_s"], 4),
                "epochs": record["epochs"],
                "rss_mb": round(_rss_mb(), 2),
                "tuner_id": getattr(self, "tuner_id", None),
                "compiled_cache_cleared": cleared,
            }
            aio.write_json(stats_dir / f"trial_{trial.trial_id}.json", stats)

    AnnzooTuner.__name__ = f"Annzoo{base.__name__}"
    return AnnzooTuner


# -- the hypermodel of a recipe -------------------------------------------------


def _uses_cudnn_rnn(model) -> bool:
    return any(
        isinstance(layer, keras.layers.LSTM | keras.layers.GRU)
        for layer in _all_layers(model)
    )


def _all_layers(model):
    for layer in model.layers:
        yield layer
        inner = getattr(layer, "forward_layer", None)  # Bidirectional
        if inner is not None:
            yield inner
            yield layer.backward_layer
        if hasattr(layer, "layers"):
            yield from _all_layers(layer)


def _accelerated() -> bool:
    if keras.backend.backend() == "jax":
        import jax

        return jax.default_backend() != "cpu"
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        return bool(tf.config.list_physical_devices("GPU"))
    return False


class _Say:
    """Prints a message once per process."""

    said: set[str] = set()

    @classmethod
    def once(cls, message: str) -> None:
        if message not in cls.said:
            cls.said.add(message)
            print(f"annzoo: {message}", flush=True)


def _validation_batch(model, samples: int) -> int:
    """A trial's validation batch: `VALIDATION_BATCH`, or a divisor of the
    split near it where the step is compiled for fixed shapes."""
    from annzoo import data

    return data.evaluation_batch_size(
        samples, VALIDATION_BATCH, fixed_shapes=bool(model.jit_compile)
    )


def _recipe_hypermodel(recipe: Recipe, splits: dict, fixed: dict, space: dict | None):
    """The hypermodel of a recipe: feeds its data, compiles with XLA where it can."""
    from annzoo.training import sequences
    from annzoo.tuning.hypermodel import AnnzooHyperModel, hypermodel

    backend = keras.backend.backend()
    accelerated = _accelerated()
    jit = True if backend == "jax" or accelerated else recipe.compile["jit_compile"]
    compile_options = {
        "jit_compile": jit,
        "steps_per_execution": recipe.compile["steps_per_execution"],
    }
    # The factory checks the space and the fixed arguments; the subclass below
    # is then built from the same arguments.
    hypermodel(
        recipe.model["name"], space=space, compile_options=compile_options, **fixed
    )

    class RecipeHyperModel(AnnzooHyperModel):
        def build(self, hp):
            model = super().build(hp)
            if jit is True and backend == "tensorflow" and _uses_cudnn_rnn(model):
                # XLA cannot compile TensorFlow's cuDNN LSTM/GRU kernels.
                model.jit_compile = False
                _Say.once(
                    "XLA is off for models with LSTM/GRU layers on TensorFlow "
                    "(their cuDNN kernels cannot be compiled by XLA)."
                )
            return model

        def fit(self, hp, model, *args, **kwargs):
            x, y = sequences.model_inputs(splits["train"], model)
            validation = sequences.model_inputs(splits["validation"], model)
            if backend == "tensorflow":
                # One cheap iterator per epoch (array slices), not Keras'
                # shuffling array pipeline (~10 ms per epoch to start).
                from annzoo import data

                batch = _validation_batch(model, len(validation[1]))
                validation = data.make_dataset(*validation, batch_size=batch)
            return super().fit(
                hp, model, x, y, validation_data=validation, shuffle=True, **kwargs
            )

        def fit_model(self, model, x, y, *, batch_size=None, shuffle=True, **kwargs):
            from annzoo import data

            if batch_size is None:
                return super().fit_model(model, x, y, shuffle=shuffle, **kwargs)
            validation = kwargs.get("validation_data")
            if isinstance(validation, tuple):  # arrays, batched by Keras
                kwargs.setdefault(
                    "validation_batch_size",
                    _validation_batch(model, len(validation[1])),
                )
            # A compiled step would be compiled again for a last, smaller
            # batch: trials then train on whole batches (as the runner does).
            drop = data.drop_partial_batch(
                len(y), batch_size, fixed_shapes=bool(model.jit_compile)
            )
            if backend != "tensorflow":
                if not drop:
                    return super().fit_model(
                        model, x, y, batch_size=batch_size, shuffle=shuffle, **kwargs
                    )
                seed = int(np.random.randint(2**31 - 1))  # from the trial's seed
                train = data.ArraySequence(
                    x, y, batch_size=batch_size, shuffle=shuffle, seed=seed,
                    drop_remainder=True,
                )  # fmt: skip
                data.set_epoch(train, kwargs.get("initial_epoch", 0))
                return super().fit_model(model, train, shuffle=False, **kwargs)
            # As the recipe runner does: a never-ending tf.data stream, one
            # iterator for the whole fit, when the epoch splits into calls of
            # equal length; otherwise a one-pass array pipeline (both start an
            # epoch in well under Keras' ~10 ms).
            steps = len(y) // batch_size if drop else -(-len(y) // batch_size)
            block = data.stream_block(steps, int(model.steps_per_execution or 1))
            seed = int(np.random.randint(2**31 - 1))  # from the trial's seed
            train = data.make_dataset(
                x, y, batch_size=batch_size, shuffle=shuffle, seed=seed,
                repeat=block is not None, drop_remainder=drop,
            )  # fmt: skip
            if block is not None:
                tasks.set_steps_per_execution(model, block)
                kwargs["steps_per_epoch"] = train.steps_per_epoch
            data.set_epoch(train, kwargs.get("initial_epoch", 0))
            # The pipeline shuffles (seeded per epoch); Keras warns otherwise.
            return super().fit_model(model, train, shuffle=False, **kwargs)

    return RecipeHyperModel(
        recipe.model["name"],
        space=space,
        fixed=fixed,
        compile_options=compile_options,
    )


# -- the search -----------------------------------------------------------------


def search_definition(recipe: Recipe, fixed: dict, space_text: str, settings: dict):
    """What makes two searches the same search (``search.json``)."""
    return {
        "recipe": recipe.name,
        "model": recipe.model["name"],
        "dataset": recipe.data["dataset"],
        "fixed": json.loads(json.dumps(fixed, default=list)),
        "space": json.loads(space_text),
        **settings,
    }


def _check_tuner_files(project: Path) -> None:
    """Refuses to resume over keras-tuner state that does not parse.

    keras-tuner would stop with a bare ``JSONDecodeError``, or worse, start
    trials over; the error names the file instead, and nothing is changed.
    """
    if not project.is_dir():
        return
    for path in sorted(project.rglob("*.json")):
        try:
            json.loads(path.read_text("utf-8"))
        except (OSError, ValueError) as error:
            raise CheckpointError(
                f"{str(path)!r} is unreadable ({type(error).__name__}: truncated or "
                "corrupt), so this search cannot be resumed safely; nothing was "
                "changed. Rerun with overwrite=True (--overwrite) to start it again, "
                "or choose another --output-dir."
            ) from None


def _check_same_search(path: Path, definition: dict) -> None:
    if not path.is_file():
        return
    try:
        old = json.loads(path.read_text())
    except ValueError:
        raise AnnzooError(
            f"{str(path)!r} is not valid JSON, so the search in {str(path.parent)!r} "
            "cannot be resumed safely; rerun with overwrite=True (--overwrite)."
        ) from None
    from annzoo.training.runner import _changed_keys, _short

    changed = _changed_keys(old, definition)
    if changed:
        shown = "; ".join(
            f"{k}: {_short(old, k)} -> {_short(definition, k)}" for k in changed[:4]
        )
        raise AnnzooError(
            f"The search in {str(path.parent)!r} was started with a different "
            f"definition ({shown}). Rerun with overwrite=True (--overwrite) to "
            "start it again, or choose another --output-dir."
        )


def _as_recipe(recipe_or_name: Any) -> Recipe:
    from annzoo.training.recipe import load_recipe

    if isinstance(recipe_or_name, Recipe):
        return recipe_or_name
    if isinstance(recipe_or_name, dict):
        return Recipe.from_dict(recipe_or_name)
    if isinstance(recipe_or_name, str | os.PathLike):
        from annzoo.cli import find_recipe

        return load_recipe(find_recipe(str(recipe_or_name)))
    raise AnnzooError(
        "`recipe` must be a Recipe, its dict, a recipe file or the name of one in "
        f"recipes/. Received: {type(recipe_or_name).__name__}"
    )


def _check_settings(tuner, max_trials, objective, seed, mixed_precision, epochs):
    check_choice("tuner", tuner, TUNERS)
    check_positive_int("max_trials", max_trials)
    check_non_negative_int("seed", seed)
    if epochs is not None:
        check_positive_int("epochs", epochs)
    if objective is not None and (not isinstance(objective, str) or not objective):
        raise AnnzooError(
            "`objective` must be a metric name such as 'val_loss' or "
            f"'val_accuracy'. Received: objective={objective!r}"
        )
    tasks.check_mixed_precision("mixed_precision", mixed_precision)


# Whether a search has frozen the heap (`_frozen_heap`), for `_free_memory`.
_HEAP = {"frozen": False}


@contextlib.contextmanager
def _frozen_heap():
    """Keeps the objects alive before the search out of the garbage collector.

    A collection walks every object: 0.25 s with TensorFlow and Keras
    imported, paid several times per trial (``clear_session`` and the
    per-trial cleanup collect), which was most of a small trial's wall time.
    Objects older than the search (modules, the data) are frozen for its
    duration (``gc.freeze``), so collections walk the trials' objects only.

    What survives each trial's cleanup collection (`_free_memory`) is frozen
    too: the first trial alone left about 225,000 objects (JAX's traces and
    compiled programs, modules imported on first use), and each of a trial's
    four collections then took 110-130 ms on the 2-core CPU, walking them
    again. The trial's model is gone by then; freezing does not keep
    anything alive, and reference counting still frees frozen objects (only
    cycles wait, until the search ends or JAX's caches are cleared, when the
    heap is unfrozen to collect them).
    """
    gc.collect()
    gc.freeze()
    _HEAP["frozen"] = True
    try:
        yield
    finally:
        _HEAP["frozen"] = False
        gc.unfreeze()


# Compiles shorter than this are not kept in a search's compile cache.
COMPILE_CACHE_MIN_SECONDS = 0.1


@contextlib.contextmanager
def _compile_cache():
    """On JAX, compiled programs shared by the trials of one search and its
    retraining.

    JAX keeps a compiled program per traced function, and each trial's model
    has new ones, so trials that compile the same program (all the
    validation steps of one architecture, which neither dropout nor the
    optimizer changes; the training steps of a repeated configuration, and
    of the best one when it is retrained) compiled it again. JAX's persistent
    compilation cache finds a program by its HLO instead: for the search it
    is pointed at a temporary directory (removed afterwards, so nothing a
    crash leaves half written is read by a later search), unless the user
    has a cache directory of their own, which is then used as it is.
    """
    import keras

    if keras.backend.backend() != "jax":
        yield
        return
    import jax
    from jax.experimental.compilation_cache import compilation_cache

    if jax.config.jax_compilation_cache_dir:
        yield
        return
    names = ("jax_compilation_cache_dir", "jax_persistent_cache_min_compile_time_secs")
    saved = {name: getattr(jax.config, name) for name in names}
    with tempfile.TemporaryDirectory(prefix="annzoo-compiled-") as directory:
        jax.config.update("jax_compilation_cache_dir", directory)
        jax.config.update(
            "jax_persistent_cache_min_compile_time_secs", COMPILE_CACHE_MIN_SECONDS
        )
        compilation_cache.reset_cache()
        try:
            yield
        finally:
            for name, value in saved.items():
                jax.config.update(name, value)
            compilation_cache.reset_cache()


def tune(
    recipe_or_name: Any,
    *,
    tuner: str = "random",
    max_trials: int = 10,
    objective: str | None = None,
    seed: int = 0,
    epochs: int | None = None,
    output_dir: str | os.PathLike = "tuning",
    overwrite: bool = False,
    retrain: bool = False,
    mixed_precision: str | None = None,
    verbose: int = 1,
) -> TuneResult:
    """Searches a recipe's model hyperparameters with keras-tuner.

    The space is the family's default space (`annzoo.tuning.default_space`)
    with the recipe's ``search_space`` applied over it; the recipe's other
    ``model`` arguments and the sizes its dataset determines stay fixed. Each
    trial starts a fresh Keras session, stops early on the recipe's
    ``early_stopping`` patience and trains with the recipe's epochs as a
    maximum. Trials compile with XLA on the JAX backend and on a TensorFlow
    GPU (except LSTM/GRU, said once).

    Args:
        recipe_or_name: a `Recipe`, its dict, a recipe file or a recipe name.
        tuner: ``"random"``, ``"hyperband"``, ``"bayesian"`` or ``"grid"``.
        max_trials: trials to complete; rerun with more to extend a search
            (Hyperband ignores it: its budget is ``epochs`` per bracket, one
            iteration).
        objective: the metric to optimize; defaults to the recipe's
            ``callbacks.monitor`` (minimized for losses, maximized for
            accuracy-like names).
        seed: seeds the tuner, so the same seed gives the same trial sequence.
        epochs: maximum epochs per trial; defaults to the recipe's.
        output_dir: parent of the search directory ``OUTPUT_DIR/NAME``.
        overwrite: start again even if a different search is in the directory.
        retrain: afterwards, train the best configuration on train + validation
            for the best trial's epochs, evaluate it on test and save a normal
            run directory in ``OUTPUT_DIR/NAME/retrained``.
        mixed_precision: ``"bfloat16"`` or ``"float16"`` compute (for
            accelerators) of the trials and the retrained model; None: the
            recipe's ``compile.mixed_precision``.
        verbose: 1 shows keras-tuner's progress, 0 nothing.

    Returns:
        A `TuneResult`.
    """
    import keras_tuner

    from annzoo import plots
    from annzoo.training import runner, sequences
    from annzoo.training.callbacks import NaNGuard, _mode
    from annzoo.tuning import reports
    from annzoo.tuning.spaces import default_space, describe_space

    recipe = _as_recipe(recipe_or_name).validate()
    _check_settings(tuner, max_trials, objective, seed, mixed_precision, epochs)
    precision = mixed_precision or recipe.compile["mixed_precision"]
    objective = objective or recipe.callbacks["monitor"]
    epochs = epochs or recipe.fit["epochs"]

    splits = sequences.prepare_text(runner._load_splits(recipe), recipe.data["text"])
    train = splits["train"]
    model_args = runner._model_arguments(recipe, train)
    runner._check_splits(
        splits,
        model_args.get("task", "multiclass"),
        train.num_outputs,
        recipe.data["dataset"],
    )
    sizes = sequences.model_arguments(
        set(runner.registry.builder_parameters(recipe.model["name"])), train
    )
    space = dict(recipe.search_space or {})
    tuned = set(default_space(recipe.model["name"], **sizes)) | set(space)
    fixed = {k: v for k, v in model_args.items() if k in sizes or k not in tuned}
    hypermodel = _recipe_hypermodel(recipe, splits, fixed, space or None)
    run_dir = Path(output_dir) / recipe.name
    definition = search_definition(
        recipe,
        fixed,
        describe_space(hypermodel.space),
        # Not max_trials: raising it on a rerun extends the same search.
        {"objective": objective, "tuner": tuner, "seed": seed, "epochs": epochs,
         "mixed_precision": precision},
    )  # fmt: skip
    search_file = run_dir / "search.json"
    if overwrite and run_dir.exists():
        shutil.rmtree(run_dir)
    _check_same_search(search_file, definition)
    _check_tuner_files(run_dir / PROJECT)
    run_dir.mkdir(parents=True, exist_ok=True)
    aio.clean_temporaries(run_dir)
    if not search_file.exists():
        aio.write_json(search_file, definition)

    stats_dir = run_dir / "stats"
    record: dict[str, Any] = {}
    tuner_class = _tuner_class(tuner, stats_dir, record, seed)
    options: dict[str, Any] = dict(
        hypermodel=hypermodel,
        objective=keras_tuner.Objective(objective, _mode(objective)),
        directory=str(run_dir),
        project_name=PROJECT,
        # keras-tuner takes a seed of 0 for "none" and draws a random one.
        seed=seed + 1,
        overwrite=False,
    )
    if tuner == "hyperband":
        options.update(max_epochs=epochs, hyperband_iterations=1)
    else:
        options.update(max_trials=max_trials)
    callbacks = [_EpochTimer(record)]
    patience = (recipe.callbacks["early_stopping"] or {}).get("patience")
    if patience is not None:
        callbacks.append(
            keras.callbacks.EarlyStopping(
                monitor=objective, mode=_mode(objective), patience=patience
            )
        )
    if recipe.callbacks["terminate_on_nan"]:
        callbacks.append(NaNGuard())
    if verbose:
        print(
            f"annzoo: tuning {recipe.model['name']!r} on {recipe.data['dataset']!r} "
            f"with {tuner} search, {max_trials} trials, objective {objective}; "
            f"search directory {run_dir}",
            flush=True,
        )
    # The compilation cache serves the trials and the retraining. Their steps
    # run as Keras' own loop (`annzoo._fused_steps.unfused`): a trial is too
    # short to repay the larger program's compilation (JAX, 2-core CPU: the
    # digits search took 20.8 s fused and 17.5 s unfused; the surnames_char_rnn
    # search spent 11.0% outside training steps fused and 9.6% unfused), and
    # the retraining then takes the best trial's compiled step.
    with _compile_cache(), _fused_steps.unfused():
        with atomic_keras_tuner(), tasks.mixed_precision(precision), _frozen_heap():
            engine = tuner_class(**options)
            engine.search(epochs=epochs, callbacks=callbacks, verbose=verbose)
        if os.environ.get("KERASTUNER_TUNER_ID", "chief") != "chief":
            # A worker of a distributed search: the chief reports.
            return TuneResult(run_dir, {}, None, [], 0)
        trials = reports.collect(engine, hypermodel, stats_dir)
        completed = sum(t["status"] == "COMPLETED" for t in trials)
        best = reports.best(trials, _mode(objective))
        reports.write(run_dir, trials, best, objective, verbose=verbose)
        plots.plot_trials(trials, run_dir / "trials.png", objective=objective)
        result = TuneResult(
            run_dir=run_dir,
            best_hyperparameters=best["hyperparameters"] if best else {},
            best_score=best["score"] if best else None,
            trials=trials,
            completed=completed,
        )
        if retrain and best:
            result.retrained = _retrain(
                recipe, hypermodel, engine, best, run_dir, verbose, precision
            )
        return result


def _retrain(recipe, hypermodel, engine, best, run_dir, verbose, precision):
    """The best configuration trained on train + validation, as a normal run."""
    from annzoo.training import runner

    trial = engine.oracle.get_trial(best["trial_id"])
    arguments = hypermodel.arguments(trial.hyperparameters)
    epochs = max(1, int(best.get("best_step") or 0) + 1)
    data = recipe.to_dict()
    data["name"] = "retrained"
    data["model"] = {"name": recipe.model["name"], **hypermodel.fixed,
                     **arguments["model"]}  # fmt: skip
    data["compile"].update(arguments["compile"], mixed_precision=precision)
    data["data"].update(arguments["data"], merge_validation=True)
    data["fit"]["epochs"] = epochs
    data["callbacks"].update(monitor="loss", early_stopping=None, reduce_lr=None)
    data["search_space"] = None
    retrained = Recipe.from_dict(json.loads(json.dumps(data, default=list)))
    return runner.train(retrained, output_dir=run_dir, verbose=verbose, resume=True)

"""`annzoo.tune` on the JAX backend: programs compiled once per search.

Run by the JAX pass of the suite (``scripts/dev.sh test``); skipped on the
other backends.
"""

from __future__ import annotations

import dataclasses
import logging

import keras
import pytest

from annzoo.training import Recipe
from annzoo.tuning import tune

pytestmark = [
    pytest.mark.skipif(
        keras.backend.backend() != "jax", reason="JAX's compilation cache"
    ),
    pytest.mark.jax,
    pytest.mark.speedups_off,
]


def _recipe() -> Recipe:
    # One architecture; trials differ in the learning rate and batch size only,
    # which do not change the validation step.
    return Recipe.from_dict(
        dict(
            name="tiny_mlp",
            model={"name": "mlp"},
            data={"dataset": "digits", "limit": 96, "pipeline": "numpy"},
            fit={"epochs": 1},
            search_space={
                "hidden_units": [[12]],
                "activation": ["relu"],
                "learning_rate": {"type": "float", "min": 1e-3, "max": 3e-2},
                "dropout": [0.0],
                "optimizer": ["adam"],
                "batch_size": [16, 32],
            },
        )
    )


@pytest.mark.speedup("compile_cache")
def test_trials_share_compiled_validation_steps(tmp_path, caplog):
    import jax

    with jax.log_compiles(True), caplog.at_level(logging.DEBUG):
        result = tune(_recipe(), max_trials=3, seed=0, output_dir=tmp_path, verbose=0)
    assert result.completed == 3
    messages = [r.getMessage() for r in caplog.records]
    hits = [m for m in messages if "cache hit for 'jit_test_step'" in m]
    # The first trial compiles the validation step; the other two find it.
    assert len(hits) == 2, [m for m in messages if "test_step" in m]
    # The search's cache is gone afterwards and JAX's settings are restored.
    assert not jax.config.jax_compilation_cache_dir
    assert jax.config.jax_persistent_cache_min_compile_time_secs == 1.0
    assert not list(tmp_path.rglob("*-cache"))


@pytest.mark.speedup("compile_cache")
def test_retraining_takes_the_best_trials_training_step(tmp_path, caplog):
    import jax

    with jax.log_compiles(True), caplog.at_level(logging.DEBUG):
        result = tune(_recipe(), max_trials=1, seed=0, output_dir=tmp_path,
                      retrain=True, verbose=0)  # fmt: skip
    assert result.retrained is not None
    messages = [r.getMessage() for r in caplog.records]
    # One trial, then the same network and batch size retrained.
    hits = [m for m in messages if "cache hit for 'jit_train_step'" in m]
    assert len(hits) == 1, [m for m in messages if "train_step" in m]


def test_a_users_own_cache_directory_is_kept(tmp_path):
    import jax

    own = tmp_path / "own-cache"
    jax.config.update("jax_compilation_cache_dir", str(own))
    try:
        tune(_recipe(), max_trials=1, seed=0, output_dir=tmp_path / "s", verbose=0)
        assert jax.config.jax_compilation_cache_dir == str(own)
        assert jax.config.jax_persistent_cache_min_compile_time_secs == 1.0
    finally:
        jax.config.update("jax_compilation_cache_dir", None)
        from jax.experimental.compilation_cache import compilation_cache

        compilation_cache.reset_cache()


@pytest.mark.speedup("tuner_callbacks")
def test_trials_leave_jax_state_in_the_training_loop_between_calls(
    tmp_path, monkeypatch
):
    from keras.src.backend.jax.trainer import JAXTrainer

    # keras-tuner's callback passed each batch to the tuner through
    # `self.model`, which on JAX writes the loop's state into the model's
    # variables at every call (and makes Keras wait for each call).
    synced = []
    sync = JAXTrainer.jax_state_sync

    def counting(self):
        if getattr(self, "_jax_state", None) and not self._jax_state_synced:
            synced.append(1)
        return sync(self)

    monkeypatch.setattr(JAXTrainer, "jax_state_sync", counting)
    recipe = _recipe().override(["compile.steps_per_execution=1", "fit.epochs=2"])
    space = {k: v for k, v in recipe.search_space.items() if k != "batch_size"}
    recipe = dataclasses.replace(recipe, search_space={**space, "batch_size": [16]})
    result = tune(recipe, max_trials=1, seed=0, output_dir=tmp_path, verbose=0)
    assert result.trials[0]["epochs"] == 2
    # 96 training digits at batch 16, one step a call: 6 calls an epoch, and
    # 14 syncs in all when each call synced. Keras' own: at each epoch's end,
    # and after its validation.
    assert len(synced) <= 2 * 2, len(synced)


@pytest.mark.speedup("compile_cache")
@pytest.mark.speedup("dropout_rates")
def test_trials_differing_only_in_dropout_share_the_training_step(tmp_path, caplog):
    import jax

    # Three trials, each with its own nonzero dropout rate and everything else
    # equal: with the rates as values of the training state, the first trial
    # compiles the training step and the other two find it in the cache.
    space = {**_recipe().search_space, "dropout": [0.1, 0.2, 0.4]}
    space["learning_rate"] = [1e-2]
    space["batch_size"] = [32]
    recipe = dataclasses.replace(_recipe(), search_space=space)
    with jax.log_compiles(True), caplog.at_level(logging.DEBUG):
        result = tune(recipe, max_trials=3, seed=0, output_dir=tmp_path, verbose=0)
    rates = sorted(t["hyperparameters"]["dropout"] for t in result.trials)
    assert rates == [0.1, 0.2, 0.4]
    messages = [r.getMessage() for r in caplog.records]
    hits = [m for m in messages if "cache hit for 'jit_train_step'" in m]
    assert len(hits) == 2, [m for m in messages if "train_step" in m]


@pytest.mark.speedup("dropout_rates")
def test_runtime_dropout_rates_train_as_the_constant_rates_did():
    import contextlib

    import numpy as np

    from annzoo.layers import MultiHeadAttention
    from annzoo.speedups import dropout_rates as _rates

    x = np.random.default_rng(0).integers(1, 20, (64, 9)).astype("int32")
    y = np.arange(64) % 3

    def losses(runtime):
        keras.utils.set_random_seed(5)
        tokens = keras.Input((9,), dtype="int32")
        z = keras.layers.Embedding(20, 4)(tokens)
        z = MultiHeadAttention(2, 2, dropout=0.1, name="mha")(z, z)
        z = keras.layers.GRU(8, dropout=0.3, recurrent_dropout=0.2, name="gru")(z)
        z = keras.layers.Dropout(0.25)(z)
        model = keras.Model(tokens, keras.layers.Dense(3, activation="softmax")(z))
        model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
        weights = len(model.weights)
        scope = _rates.runtime_dropout_rates if runtime else contextlib.nullcontext
        with scope(model) as moved:
            history = model.fit(x, y, batch_size=16, epochs=2, shuffle=False,
                                verbose=0)  # fmt: skip
            assert len(model.weights) == weights  # saved weights: unchanged
        return history.history["loss"], moved, model

    reference, _, _ = losses(runtime=False)  # Keras' own constant rates
    values, moved, model = losses(runtime=True)
    assert moved == 4  # the attention's, the cell's two, the Dropout layer's
    assert np.isfinite(reference).all()
    assert values == reference  # bit for bit
    cell = model.get_layer("gru").cell
    assert type(cell.dropout) is float and cell.dropout == 0.3
    assert type(model.layers[-2].rate) is float
    assert type(model.get_layer("mha").dropout) is float
    assert not any(isinstance(s, _rates._State) for s in cell._seed_generators)


def test_trial_cleanup_freezes_what_survives_and_frees_the_model(tmp_path, monkeypatch):
    import gc
    import importlib
    import weakref

    memory = importlib.import_module("annzoo.tuning.memory")
    hypermodel = importlib.import_module("annzoo.tuning.hypermodel")
    models, seen = [], []
    build = hypermodel.AnnzooHyperModel.build

    def recording(self, hp):
        model = build(self, hp)
        models.append(weakref.ref(model))
        return model

    free = memory.free_memory

    def measured(state, backend=None):
        cleared = free(state, backend)
        # Collections in the next trial walk only what is not frozen.
        seen.append((len(gc.get_objects()), sum(m() is not None for m in models)))
        memory.JAX_CACHE_BUDGET_MB = float("-inf")  # from trial 2 on, JAX caches too
        return cleared

    monkeypatch.setattr(hypermodel.AnnzooHyperModel, "build", recording)
    monkeypatch.setattr(memory, "free_memory", measured)
    monkeypatch.setattr(memory, "JAX_CACHE_BUDGET_MB", memory.JAX_CACHE_BUDGET_MB)
    result = tune(_recipe(), max_trials=3, seed=0, output_dir=tmp_path, verbose=0,
                  manage_memory=True)  # as `annzoo tune` runs  # fmt: skip
    assert [t["compiled_cache_cleared"] for t in result.trials] == [False, True, True]
    for unfrozen, alive in seen:
        assert unfrozen < 1_000, seen  # about 225,000 after a first trial
        assert alive == 0, seen  # freezing kept no trial's model alive
    assert gc.get_freeze_count() == 0  # all unfrozen after the search

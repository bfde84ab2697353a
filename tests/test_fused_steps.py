"""Fused steps (`annzoo.speedups.fused_steps`): a call of steps_per_execution
steps as one XLA program on JAX, trained exactly as Keras' own loop of single
steps."""

import keras
import numpy as np
import pytest

import annzoo
from annzoo.speedups import fused_steps as _fused_steps
from annzoo.speedups.fused_steps import fuse_steps, fused, unfused

pytestmark = [
    pytest.mark.skipif(
        keras.backend.backend() != "jax",
        reason="steps are fused on the JAX backend only",
    ),
    pytest.mark.speedup("fused_steps"),
    pytest.mark.jax,
]

FEATURES, CLASSES = 12, 4


def _data(count=1000, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((count, FEATURES)).astype("float32")
    y = rng.integers(0, CLASSES, count).astype("int32")
    return x, y


def _model(fuse, spe=8, **compile_kwargs):
    keras.utils.set_random_seed(3)
    model = keras.Sequential(
        [
            keras.Input((FEATURES,)),
            keras.layers.Dense(16, activation="relu"),
            keras.layers.Dropout(0.3),
            keras.layers.BatchNormalization(),
            keras.layers.Dense(CLASSES, activation="softmax"),
        ]
    )
    model.compile(
        optimizer="adam",
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
        steps_per_execution=spe,
        **compile_kwargs,
    )
    return fuse_steps(model) if fuse else model


def _count_calls(model, kind="train"):
    """Wraps the fused function's two compiled callables with counters."""
    calls = model.train_function if kind == "train" else model.test_function
    counts = {"group": 0, "single": 0}
    for name in counts:
        compiled = getattr(calls, name)

        def counted(*args, _name=name, _compiled=compiled):
            counts[_name] += 1
            return _compiled(*args)

        setattr(calls, name, counted)
    return counts


def _same_weights(a, b):
    for left, right in zip(a.get_weights(), b.get_weights(), strict=True):
        np.testing.assert_array_equal(left, right)


def test_fused_training_equals_keras_loop_and_runs_one_program_per_call():
    # 1000 samples at batch 32: 31 whole batches and one of 8. With 8 steps a
    # call an epoch is calls of 8, 8, 8 and 8 batches, the last holding the
    # 7 whole batches (one group, its arguments filled up to 8) and the
    # partial one (a group of its own shape): 5 programs run per epoch.
    x, y = _data()
    plain, fast = _model(False), _model(True)
    fast.make_train_function()
    program = fast.train_function.group
    counts = _count_calls(fast)
    fit = dict(batch_size=32, epochs=2, verbose=0, shuffle=False)
    history = plain.fit(x, y, validation_data=(x[:300], y[:300]), **fit).history
    fast_history = fast.fit(x, y, validation_data=(x[:300], y[:300]), **fit).history
    assert fused(fast) and fused(fast, "test") and not fused(plain)
    assert counts == {"group": 10, "single": 0}
    assert history == fast_history
    _same_weights(plain, fast)
    # Two batch shapes, two programs, however many calls.
    assert program._cache_size() == 2


def test_fused_evaluation_equals_keras_loop():
    x, y = _data(777, seed=1)
    plain, fast = _model(False), _model(True)
    expected = plain.evaluate(x, y, batch_size=50, verbose=0)
    assert fast.evaluate(x, y, batch_size=50, verbose=0) == expected
    assert fused(fast, "test")


def test_batches_over_the_group_budget_run_in_smaller_groups(monkeypatch):
    # A batch of 32 x 12 float32 and 32 int32 labels is 1,664 bytes: a budget
    # of 4,000 bytes fits 2 of them per program, so a call of 8 steps runs 4
    # programs; a budget under one batch runs Keras' own step, one per batch.
    x, y = _data(512)
    plain = _model(False)
    plain.fit(x, y, batch_size=32, epochs=1, verbose=0, shuffle=False)
    for budget, expected in ((4000, {"group": 8, "single": 0}),
                             (1000, {"group": 0, "single": 16})):  # fmt: skip
        monkeypatch.setattr(_fused_steps, "MAX_GROUP_BYTES", budget)
        fast = _model(True)
        fast.make_train_function()
        counts = _count_calls(fast)
        fast.fit(x, y, batch_size=32, epochs=1, verbose=0, shuffle=False)
        assert counts == expected, budget
        _same_weights(plain, fast)


def test_steps_with_convolutions_run_as_keras_runs_them():
    # XLA:CPU runs convolutions in a loop body several times slower: a CNN's
    # calls run Keras' compiled step once per batch (12 batches of 16).
    rng = np.random.default_rng(2)
    x = rng.standard_normal((192, 6, 6, 1)).astype("float32")
    y = rng.integers(0, CLASSES, 192).astype("int32")
    weights = []
    for fuse in (False, True):
        keras.utils.set_random_seed(4)
        model = keras.Sequential([
            keras.Input((6, 6, 1)),
            keras.layers.Conv2D(4, 3, activation="relu"),
            keras.layers.Flatten(),
            keras.layers.Dense(CLASSES, activation="softmax"),
        ])  # fmt: skip
        model.compile(optimizer="adam", loss="sparse_categorical_crossentropy",
                      steps_per_execution=4)  # fmt: skip
        if fuse:
            fuse_steps(model).make_train_function()
            counts = _count_calls(model)
        model.fit(x, y, batch_size=16, epochs=1, verbose=0, shuffle=False)
        weights.append(model.get_weights())
    assert counts == {"group": 0, "single": 12}
    # After its first call the model runs Keras' own function.
    assert not fused(model)
    for left, right in zip(*weights, strict=True):
        np.testing.assert_array_equal(left, right)


def test_an_iterator_ending_inside_a_call_ends_the_epoch_as_in_keras():
    # A generator of 13 batches without a length: calls of 4, 4, 4 and 1.
    x, y = _data(13 * 16)

    def batches():
        for i in range(13):
            yield x[i * 16 : (i + 1) * 16], y[i * 16 : (i + 1) * 16]

    plain, fast = _model(False, spe=4), _model(True, spe=4)
    plain.fit(batches(), epochs=1, verbose=0)
    fast.fit(batches(), epochs=1, verbose=0)
    assert fused(fast)
    assert int(fast.optimizer.iterations.numpy()) == 13
    _same_weights(plain, fast)


def test_settings_that_keras_runs_its_own_way_are_left_to_it():
    x, y = _data(64)
    for kwargs in ({"spe": 1}, {"run_eagerly": True}, {"jit_compile": False}):
        model = _model(True, **kwargs)
        model.fit(x, y, batch_size=16, epochs=1, verbose=0)
        assert not fused(model), kwargs
    # A later compile with steps per call fuses again.
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy",
                  steps_per_execution=4)  # fmt: skip
    model.fit(x, y, batch_size=16, epochs=1, verbose=0)
    assert fused(model)


def test_functions_made_inside_unfused_run_keras_loop():
    x, y = _data(64)
    model = _model(True, spe=4)
    with unfused():
        model.fit(x, y, batch_size=16, epochs=1, verbose=0, validation_data=(x, y))
        assert not fused(model) and not fused(model, "test")
    model.make_train_function(force=True)
    assert fused(model)


def test_annzoo_compiled_models_fuse_their_steps():
    x, y = _data(256)
    model = annzoo.build_mlp(FEATURES, CLASSES, hidden_units=(8,), compile=False)
    annzoo.compile_model(model, task="multiclass", steps_per_execution=4)
    model.fit(x, y, batch_size=32, epochs=1, verbose=0)
    assert fused(model)

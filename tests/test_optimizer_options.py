"""`compile.optimizer_options`: the optimizer's own keyword arguments from a
recipe (Adam's beta_1, beta_2, ...), checked before training, given to both of
a GAN's optimizers and to a plain model's one, and kept by a run's saved
state, so that a resumed run ends as the uninterrupted one.
"""

from __future__ import annotations

import json
import re

import keras
import numpy as np
import pytest

from annzoo import AnnzooError, registry
from annzoo.training import Recipe, load_recipe, train
from annzoo.training.build import compile_recipe_model

from ._interrupt import stopped_then_resumed
from .conftest import ROOT

GAN_SMOKE = registry.family_spec("gan").smoke  # the family's tiny GAN


def _recipe(**compile_fields) -> Recipe:
    return Recipe(
        name="options",
        model={"name": "mlp"},
        data={"dataset": "breast_cancer"},
        compile=compile_fields,
    )


def _value(variable) -> float:
    return float(keras.ops.convert_to_numpy(variable))


def test_both_gan_optimizers_get_the_recipes_options():
    recipe = Recipe(
        name="gan_options",
        model={"name": "gan"},
        data={"dataset": "digits"},
        compile={
            "optimizer": "adam",
            "learning_rate": 3e-4,
            "optimizer_options": {"beta_1": 0.5, "beta_2": 0.9},
        },
    )
    model = registry.create_model("gan", **GAN_SMOKE, compile=False)
    compile_recipe_model(recipe, model, {"task": "adversarial"}, 3e-4)
    optimizers = [model.generator_optimizer, model.discriminator_optimizer]
    assert optimizers[0] is not optimizers[1]
    for optimizer in optimizers:
        assert isinstance(optimizer, keras.optimizers.Adam)
        assert optimizer.beta_1 == 0.5 and optimizer.beta_2 == 0.9
        assert _value(optimizer.learning_rate) == pytest.approx(3e-4)


def test_a_plain_models_optimizer_gets_them_over_the_names_fixed_ones():
    recipe = _recipe(
        optimizer="momentum",
        learning_rate=0.05,
        weight_decay=0.01,
        optimizer_options={"momentum": 0.8, "clipnorm": 1.0},
    ).validate()
    model = registry.create_model("mlp", input_shape=4, num_outputs=3, compile=False)
    compile_recipe_model(recipe, model, {"task": "multiclass"}, 0.05)
    optimizer = model.optimizer
    assert isinstance(optimizer, keras.optimizers.SGD)
    assert optimizer.momentum == 0.8 and optimizer.clipnorm == 1.0
    assert optimizer.weight_decay == 0.01
    # Without options: the name's own settings, Keras' defaults for the rest.
    plain = registry.create_model("mlp", input_shape=4, num_outputs=3, compile=False)
    compile_recipe_model(_recipe(optimizer="momentum"), plain, {}, 0.05)
    assert plain.optimizer.momentum == 0.9 and plain.optimizer.clipnorm is None


def test_the_default_is_empty_and_a_run_records_it():
    assert _recipe().compile["optimizer_options"] == {}
    recipe = _recipe().override(["compile.optimizer_options.beta_1=0.5"])
    assert recipe.compile["optimizer_options"] == {"beta_1": 0.5}
    assert Recipe.from_dict(json.loads(recipe.to_json())).compile == recipe.compile


@pytest.mark.parametrize(
    "optimizer, options, fragments",
    [
        (
            "adam",
            {"beta1": 0.5},
            [
                r"^`compile\.optimizer_options` must hold keyword arguments of "
                r"keras\.optimizers\.Adam \(compile\.optimizer='adam'\), and "
                r"'beta1' is not one: expected some of \[",
                r"'beta_1', 'beta_2'",
                r"Did you mean 'beta_1'\?",
                r"Received: compile\.optimizer_options=\{'beta1': 0\.5\}$",
            ],
        ),
        (
            "sgd",
            {"beta_1": 0.5},
            [r"keras\.optimizers\.SGD \(compile\.optimizer='sgd'\), and 'beta_1'"],
        ),
        (
            "adam",
            {"learning_rate": 0.1},
            [
                r"^`compile\.optimizer_options\.learning_rate` must be set by "
                r"`compile\.learning_rate` instead\."
            ],
        ),
        (
            "adam",
            {"weight_decay": 0.1},
            [r"must be set by `compile\.weight_decay` instead\."],
        ),
        (
            "adam",
            [0.5, 0.9],
            [
                r"^`compile\.optimizer_options` must be a mapping",
                r"Received: compile\.optimizer_options=\[0\.5, 0\.9\]$",
            ],
        ),
        (
            "adam",
            {"beta_1": "half"},
            [
                r"^`compile\.optimizer_options\.beta_1` must be a number, true, "
                r"false or null\. Received: compile\.optimizer_options="
                r"\{'beta_1': 'half'\}$"
            ],
        ),
    ],
)
def test_bad_options_are_refused_in_one_sentence(optimizer, options, fragments):
    recipe = _recipe(optimizer=optimizer, optimizer_options=options)
    with pytest.raises(AnnzooError) as caught:
        recipe.validate()
    message = str(caught.value)
    assert "\n" not in message
    for fragment in fragments:
        assert re.search(fragment, message), message


def test_values_the_class_refuses_together_stop_the_run_before_training(tmp_path):
    recipe = _recipe(
        optimizer="adam", optimizer_options={"clipnorm": 1.0, "clipvalue": 1.0}
    )
    # The recipe's check reads names and types only: it starts no backend
    # (a process joining a JAX job must not have; tests/test_distribute.py).
    recipe.validate()
    with pytest.raises(AnnzooError) as caught:
        train(recipe, output_dir=tmp_path, verbose=0)
    message = str(caught.value)
    assert "\n" not in message
    assert re.search(
        r"^`compile\.optimizer_options` must be values keras\.optimizers\.Adam "
        r"accepts; it refused them \(.*\)\. Received: compile\.optimizer_options="
        r"\{'clipnorm': 1\.0, 'clipvalue': 1\.0\}$",
        message,
    ), message
    assert not list(tmp_path.rglob("metrics.csv"))  # no epoch trained


def test_the_shipped_gan_recipe_asks_for_wgan_gp_betas():
    recipe = load_recipe(ROOT / "annzoo" / "recipes" / "shapes_gan.yaml").validate()
    assert recipe.compile["optimizer_options"] == {"beta_1": 0.5, "beta_2": 0.9}


@pytest.mark.slow
def test_options_survive_the_saved_state_and_a_resume(tmp_path, monkeypatch):
    """A GAN run stopped as epoch 2 begins and rerun ends with the same bits as
    the uninterrupted run, both optimizers still with the recipe's betas (a
    resume that rebuilt Adam at its defaults would diverge)."""
    recipe = load_recipe(ROOT / "recipes" / "digits_gan.py").override(
        ["fit.epochs=2", "data.limit=48", "data.batch_size=16"]
        + ["callbacks.tensorboard=false"]
        + ["compile.optimizer_options={beta_1: 0.3, beta_2: 0.8}"]
    )
    reference = train(recipe, output_dir=tmp_path / "reference", verbose=0).run_dir

    result = stopped_then_resumed(recipe, tmp_path / "killed", monkeypatch)
    assert result.resumed_from == 1
    run = result.run_dir
    saved = json.loads((run / "recipe.json").read_text())
    assert saved["compile"]["optimizer_options"] == {"beta_1": 0.3, "beta_2": 0.8}

    ours = keras.saving.load_model(run / "final.keras")
    theirs = keras.saving.load_model(reference / "final.keras")
    for model in (ours, theirs):
        for optimizer in (model.generator_optimizer, model.discriminator_optimizer):
            assert optimizer.beta_1 == 0.3 and optimizer.beta_2 == 0.8
    for a, b in zip(ours.weights, theirs.weights, strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    for a, b in zip(ours.optimizer.variables, theirs.optimizer.variables, strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))

"""A search's trials get the optimizer options a run would.

``hypermodel(..., optimizer_options=...)`` gives them to every trial's
optimizer (both of a GAN's); a recipe's ``compile.optimizer_options`` and
``compile.weight_decay`` reach its search, which then keeps the recipe's
optimizer unless the recipe's ``search_space`` draws it. Options that one of
the optimizers a search may draw does not take are refused before any trial.
"""

from __future__ import annotations

import functools

import keras_tuner
import pytest

from annzoo import tasks
from annzoo.errors import AnnzooError
from annzoo.training import Recipe
from annzoo.tuning import hypermodel, tune

SMALL_GAN = {"latent_dim": 4, "generator_filters": [8, 4], "discriminator_filters": [4]}


def _floats(optimizer, *names):
    return [float(getattr(optimizer, name)) for name in names]


def test_every_trial_optimizer_gets_the_options():
    gan = hypermodel(
        "gan", image_shape=(8, 8, 1), **SMALL_GAN, optimizer="adam",
        optimizer_options={"beta_1": 0.5, "beta_2": 0.9},
    ).build(keras_tuner.HyperParameters())  # fmt: skip
    for optimizer in (gan.generator_optimizer, gan.discriminator_optimizer):
        assert type(optimizer).__name__ == "Adam"
        assert _floats(optimizer, "beta_1", "beta_2") == [0.5, 0.9]
    # Each optimizer a space may draw takes them: here Adam or AdamW.
    space = {"optimizer": ["adamw", "adam"]}
    built = hypermodel("lenet5", space=space, optimizer_options={"beta_1": 0.5}).build(
        keras_tuner.HyperParameters()
    )
    assert _floats(built.optimizer, "beta_1") == [0.5]


def test_options_that_a_drawn_optimizer_refuses_are_named_before_the_search():
    # lenet5's default space draws adam, adamw or rmsprop; RMSprop has no beta_1.
    with pytest.raises(AnnzooError, match=r"`optimizer_options`.*RMSprop.*'beta_1'"):
        hypermodel("lenet5", optimizer_options={"beta_1": 0.5})
    with pytest.raises(AnnzooError, match=r"`optimizer_options.learning_rate`"):
        hypermodel("lenet5", optimizer="adam", optimizer_options={"learning_rate": 1})


def _recipe(**compile_options):
    return dict(
        name="tiny_gan",
        model={"name": "gan", **SMALL_GAN},
        data={
            "dataset": "digits",
            "limit": 64,
            "pipeline": "numpy",
            "batch_size": 32,
            "merge_validation": True,
        },  # fmt: skip
        fit={"epochs": 1},
        compile={"optimizer": "adamw", **compile_options},
        callbacks={"monitor": "loss", "early_stopping": None},
        search_space={
            "latent_dim": [4],
            "dropout": [0.0],
            "loss": ["bce"],
            "batch_size": [32],
            "learning_rate": [1e-3],
        },  # fmt: skip
    )


def test_a_recipe_search_keeps_its_optimizer_and_options(tmp_path, monkeypatch):
    seen = []
    compile_model = tasks.compile_model

    @functools.wraps(compile_model)  # its signature is read by its checks
    def recording(model, **kwargs):
        if kwargs.get("task") == "adversarial":  # a trial (not the FID's classifier)
            seen.append(kwargs["optimizer"])
        return compile_model(model, **kwargs)

    monkeypatch.setattr(tasks, "compile_model", recording)
    recipe = Recipe.from_dict(
        _recipe(optimizer_options={"beta_1": 0.5}, weight_decay=0.02)
    )
    result = tune(recipe, max_trials=1, seed=0, output_dir=tmp_path, verbose=0)
    assert result.completed == 1
    assert seen, "no trial was compiled"
    for optimizer in seen:
        # The recipe's AdamW, not one drawn from the default space's three.
        assert type(optimizer).__name__ == "AdamW"
        assert _floats(optimizer, "beta_1", "weight_decay") == pytest.approx(
            [0.5, 0.02]
        )


def test_a_recipe_search_drawing_an_optimizer_that_refuses_them_fails_first(tmp_path):
    recipe = _recipe(optimizer_options={"beta_1": 0.5})
    recipe["search_space"]["optimizer"] = ["adam", "rmsprop"]
    with pytest.raises(AnnzooError, match=r"^`compile.optimizer_options` .*RMSprop"):
        tune(Recipe.from_dict(recipe), max_trials=1, output_dir=tmp_path, verbose=0)
    assert not (tmp_path / "tiny_gan").exists()

"""What annzoo does differently on the PyTorch backend, checked on every backend.

Keras' PyTorch trainer runs one training step per call and refuses any other
``steps_per_execution`` at the first step of ``fit``: recipe runs and searches
use 1 there, whatever the recipe says, and keep the recipe's value on
TensorFlow and JAX. The PyTorch pass (``KERAS_BACKEND=torch pytest``) collects
the tests marked ``torch``: these, the family smoke models, the small presets
and a recipe run with its resume (tests/test_training.py).
"""

from __future__ import annotations

import json

import keras
import pytest

from annzoo import tasks
from annzoo.training import build, distribute, load_recipe, train
from annzoo.tuning.recipe_model import recipe_hypermodel
from tests.conftest import ROOT

pytestmark = [pytest.mark.jax, pytest.mark.torch, pytest.mark.speedups_off]

ON_TORCH = keras.backend.backend() == "torch"


def _digits_mlp(*overrides):
    return load_recipe(ROOT / "recipes" / "digits_mlp.py").override(list(overrides))


def test_one_step_per_call_on_torch_and_the_recipes_steps_elsewhere():
    assert tasks.backend_steps_per_execution(32) == (1 if ON_TORCH else 32)
    assert tasks.backend_steps_per_execution(1) == 1
    recipe = _digits_mlp("compile.steps_per_execution=8")
    plan = distribute.plan({**recipe.distribute, "strategy": "none"})
    ran = build.for_plan(recipe, plan)
    assert ran.compile["steps_per_execution"] == (1 if ON_TORCH else 8)
    assert recipe.compile["steps_per_execution"] == 8  # the recipe is left alone


def test_a_recipe_search_compiles_its_trials_with_the_backends_steps():
    recipe = _digits_mlp("compile.steps_per_execution=8")
    hypermodel = recipe_hypermodel(
        recipe, splits={}, fixed={"input_shape": (64,), "num_outputs": 10}, space={}
    )
    steps = hypermodel.compile_options["steps_per_execution"]
    assert steps == (1 if ON_TORCH else 8)


def test_a_recipe_run_records_the_steps_per_call_it_ran(tmp_path):
    recipe = _digits_mlp(
        "fit.epochs=1",
        "data.limit=64",
        "callbacks.early_stopping=null",
        "callbacks.tensorboard=false",
    )
    result = train(recipe, output_dir=tmp_path, verbose=0)
    stored = json.loads((result.run_dir / "recipe.json").read_text())
    assert stored["compile"]["steps_per_execution"] == (1 if ON_TORCH else 32)
    model = keras.saving.load_model(result.run_dir / "final.keras")
    assert int(model.optimizer.iterations.numpy()) == 2  # 64 samples, batch 32
    assert set(result.test_metrics) >= {"loss", "accuracy"}

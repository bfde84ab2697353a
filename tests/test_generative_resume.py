"""Generative runs whose training draws noise resume as if never stopped.

A VAE draws its posterior sample and a WGAN-GP critic its interpolation
weights from seed generators inside the model; a resumed run must continue
their sequences, not restart them. Each run here is stopped as its second
epoch begins (an exception from a callback, in this process), rerun with the
same recipe, and must end with the uninterrupted run's metrics, weights,
optimizer variables and test measures, bit for bit. (The digits GAN with its
default loss is killed with SIGKILL in tests/test_generative_recipes.py.)
"""

from __future__ import annotations

import json

import keras
import numpy as np
import pytest

from annzoo.training import load_recipe, train

from ._interrupt import stopped_then_resumed
from .conftest import ROOT

TINY = [
    "fit.epochs=3",
    "data.limit=48",
    "data.batch_size=16",
    "callbacks.tensorboard=false",
]
CASES = {
    "digits_vae": TINY,
    "digits_gan-wgan-gp": [*TINY, "model.loss=wgan-gp"],
}


def _state(path):
    model = keras.saving.load_model(path)
    variables = [np.asarray(w) for w in model.weights]
    for name in ("optimizer", "generator_optimizer", "discriminator_optimizer"):
        optimizer = getattr(model, name, None)
        if optimizer is not None:
            variables += [np.asarray(v) for v in optimizer.variables]
    return variables


@pytest.mark.slow
@pytest.mark.parametrize("case", CASES)
def test_a_stopped_run_resumes_to_the_uninterrupted_run(case, tmp_path, monkeypatch):
    name = case.split("-")[0]
    recipe = load_recipe(ROOT / "recipes" / f"{name}.py").override(CASES[case])
    reference = train(recipe, output_dir=tmp_path / "reference", verbose=0).run_dir

    result = stopped_then_resumed(recipe, tmp_path / "stopped", monkeypatch)
    assert result.resumed_from == 1
    run = result.run_dir
    assert (run / "metrics.csv").read_text() == (reference / "metrics.csv").read_text()
    ours, theirs = _state(run / "final.keras"), _state(reference / "final.keras")
    assert len(ours) == len(theirs)
    for a, b in zip(ours, theirs, strict=True):
        np.testing.assert_array_equal(a, b)
    measured = json.loads((run / "results.json").read_text())["test"]
    assert measured == json.loads((reference / "results.json").read_text())["test"]

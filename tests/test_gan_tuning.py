"""A GAN search minimises ``val_fid``, the digits FID of its samples.

The measure is checked against the Frechet distance written out with
``scipy.linalg.sqrtm`` on the same classifier features; the search is two
tiny trials on 96 digits, one epoch each.
"""

from __future__ import annotations

import csv
import json

import keras
import numpy as np
import pytest
import scipy.linalg

import annzoo
from annzoo import datasets
from annzoo.errors import AnnzooError
from annzoo.models import gan as gan_module
from annzoo.training import Recipe
from annzoo.tuning import hypermodel, tune
from annzoo.tuning.fid import FID_OBJECTIVE, FrechetJudge

SMALL_GAN = {"latent_dim": 4, "generator_filters": [8, 4], "discriminator_filters": [4]}


def _fid_by_formula(a, b):
    """``|mu_a - mu_b|^2 + tr(S_a + S_b - 2 sqrtm(S_a S_b))`` (Heusel et al.
    2017), with the matrix square root from SciPy, not annzoo's."""
    mu_a, mu_b = a.mean(axis=0), b.mean(axis=0)
    s_a, s_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    root = scipy.linalg.sqrtm(s_a @ s_b)
    return float(((mu_a - mu_b) ** 2).sum() + np.trace(s_a + s_b - 2 * root.real))


@pytest.fixture(scope="module")
def digits():
    return datasets.load("digits", "train", seed=0)


@pytest.mark.slow
def test_val_fid_is_the_frechet_distance_of_the_classifier_features(digits):
    x, y = digits.x[:240], digits.y[:240]
    judge = FrechetJudge(x[:160], y[:160], x[160:], y[160:], epochs=1, seed=3)
    assert judge.num_samples == 80  # at most the real images given
    keras.utils.set_random_seed(1)
    model = annzoo.build_gan((8, 8, 1), **SMALL_GAN, conditional_classes=10)
    score = judge.score(model)

    # The same samples (the judge's seed, the real images' labels) and the
    # same features, with the distance computed independently.
    samples = gan_module.sample(model, 80, labels=y[160:240], seed=3)
    real = judge.features(x[160:240])
    fake = judge.features(samples)
    np.testing.assert_allclose(judge.real_features, real, rtol=1e-6, atol=1e-6)
    assert score == pytest.approx(_fid_by_formula(real, fake), rel=1e-4)
    # Real images against themselves: 0; a fixed sample: the same score again.
    assert _fid_by_formula(real, real) == pytest.approx(0.0, abs=1e-6)
    assert judge.score(model) == score


def test_hypermodel_reports_val_fid_for_a_gan_and_refuses_unlabelled_images():
    hm = hypermodel("gan", image_shape=(8, 8, 1), **SMALL_GAN)
    assert hm.default_objective() == FID_OBJECTIVE
    assert hm.check_objective("val_fid") == "val_fid"
    with pytest.raises(AnnzooError, match="val_loss"):
        hm.check_objective("val_loss")  # a GAN has no evaluation step
    assert hypermodel("mlp", input_shape=4, num_outputs=3).default_objective() is None
    images = np.zeros((4, 8, 8, 1), "float32")
    with pytest.raises(AnnzooError, match="`y` must hold the training images"):
        hm._with_fid((images, None), {"validation_data": (images, None)})


@pytest.mark.slow
def test_two_trial_search_scores_trials_by_val_fid(tmp_path):
    recipe = Recipe.from_dict(
        dict(
            name="tiny_gan",
            model={"name": "gan", **SMALL_GAN},
            # merge_validation, as digits_gan: the search keeps it apart.
            data={
                "dataset": "digits",
                "limit": 96,
                "pipeline": "numpy",
                "batch_size": 32,
                "merge_validation": True,
            },  # fmt: skip
            fit={"epochs": 1},
            callbacks={"monitor": "loss", "early_stopping": None},
            search_space={
                "latent_dim": [4, 8],
                "dropout": [0.0],
                "loss": ["bce"],
                "optimizer": ["adam"],
                "batch_size": [32],
                "learning_rate": [1e-3],
            },  # fmt: skip
        )
    )
    result = tune(recipe, max_trials=2, seed=0, output_dir=tmp_path, verbose=0)
    run = tmp_path / "tiny_gan"
    assert json.loads((run / "search.json").read_text())["objective"] == "val_fid"
    with open(run / "trials.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert [r["status"] for r in rows] == ["COMPLETED"] * 2
    scores = [float(r["score"]) for r in rows]
    assert all(np.isfinite(scores)) and min(scores) > 0
    assert result.best_score == pytest.approx(min(scores))  # minimised
    best = json.loads((run / "best_hyperparameters.json").read_text())
    assert best["score"] == pytest.approx(min(scores))

"""The generative recipes (digits_vae, digits_gan): their measures, their
pictures and a GAN run resumed after kill -9.

The smoke run of every recipe is in tests/test_recipes.py; here, what is
particular to the generative ones, with expected values from formulas written
here in NumPy (and SciPy), never from annzoo's output.
"""

from __future__ import annotations

import dataclasses
import json
import signal
import subprocess
from pathlib import Path

import numpy as np
import pytest
import scipy.linalg

from annzoo import AnnzooError, registry
from annzoo.datasets import load
from annzoo.generation import language_model_vocabulary, next_token_arrays
from annzoo.training import load_recipe, train
from annzoo.training.generative import (
    bernoulli_baseline,
    bigram_bits,
    frechet_distance,
    spread,
)
from annzoo.training.report import evaluate_run

from . import _kill_hooks as hooks
from ._interrupt import stopped_then_resumed
from .conftest import ROOT, subprocess_env

SMOKE = ["fit.epochs=2", "data.limit=48", "data.batch_size=16"]


def _scipy_frechet(a, b):
    """The Frechet distance as usually written, with SciPy's matrix root."""
    mu = a.mean(0) - b.mean(0)
    s_a, s_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    root = scipy.linalg.sqrtm(s_a @ s_b).real
    return mu @ mu + np.trace(s_a + s_b - 2 * root)


def test_frechet_distance_against_its_formula():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(200, 5))
    b = rng.normal(size=(150, 5)) @ rng.normal(size=(5, 5)) + 0.5
    assert frechet_distance(a, b) == pytest.approx(_scipy_frechet(a, b), rel=1e-6)
    assert frechet_distance(a, a) == pytest.approx(0, abs=1e-9)
    # Two features, independent Gaussians: (mu_a - mu_b)^2 + (sd_a - sd_b)^2
    # per feature, with the samples' own means and (n - 1) deviations.
    x = np.array([[0.0, 1.0], [2.0, 1.0], [0.0, 3.0], [2.0, 3.0]])  # cov diag(4/3)
    y = 3 * x + 1  # means 3x + 1, deviations 3x
    sd = np.sqrt(4 / 3)
    # Feature means: x (1, 2), y (4, 7); deviations sd and 3 sd in both.
    expected = (1 - 4) ** 2 + (2 - 7) ** 2 + 2 * (sd - 3 * sd) ** 2
    assert frechet_distance(x, y) == pytest.approx(expected)


def test_spread_by_hand():
    # Group 0: points 0 and 3 on a line (distance 3); group 1: three corners
    # of a unit square (distances 1, 1 and sqrt 2). One lone point: no pair.
    features = np.array([[0, 0], [3, 0], [0, 0], [1, 0], [0, 1], [9, 9]])
    groups = np.array([0, 0, 1, 1, 1, 2])
    expected = (3 + (2 + np.sqrt(2)) / 3) / 2
    assert spread(features, groups) == pytest.approx(expected)


def test_bernoulli_baseline_by_hand():
    train_x = np.array([[0.0, 1.0], [1.0, 1.0]])  # pixel means 0.5 and 1
    test_x = np.array([[1.0, 0.0]])
    eps = 1e-3
    # -log 0.5 for the first pixel, -log(1 - p) with p clipped to 1 - eps.
    expected = np.log(2) - np.log(eps)
    assert bernoulli_baseline(train_x, test_x, eps=eps) == pytest.approx(expected)


def test_bigram_bits_by_hand():
    # After token 1: token 4 twice, token 5 once; 6 ids, so K = 4 targets.
    train_pairs = np.array([[1, 4], [1, 4], [1, 5]])
    test_pairs = np.array([[1, 4], [2, 5]])
    # add-one: p(4 | 1) = (2 + 1) / (3 + 4); p(5 | 2) = (0 + 1) / (0 + 4).
    expected = -(np.log2(3 / 7) + np.log2(1 / 4)) / 2
    assert bigram_bits(train_pairs, test_pairs, 6, 1.0) == pytest.approx(expected)


def test_surnames_become_next_token_arrays_per_language():
    """The language model's spec turns the surnames split into what
    `next_token_arrays` makes of the same names (the documented form)."""

    split = load("surnames", "test", seed=0)
    split = dataclasses.replace(
        split, x=split.x[:40], y=split.y[:40], indices=split.indices[:40]
    )
    names = [
        "".join(split.vocabulary.tokens[i] for i in row if i != 0) for row in split.x
    ]
    vocabulary = language_model_vocabulary(split.vocabulary)
    x, y = next_token_arrays(
        names, vocabulary, sequence_length=split.x.shape[1] + 1, classes=split.y
    )
    spec = registry.family_spec("language_model")
    turned = spec.training_split(split)
    assert turned.vocabulary.tokens == vocabulary.tokens
    got_x, got_y = spec.fit_arrays(turned, _TwoInputs())
    np.testing.assert_array_equal(got_x["tokens"], x["tokens"])
    np.testing.assert_array_equal(got_x["classes"], x["classes"])
    np.testing.assert_array_equal(got_y, y)


class _TwoInputs:
    """Stands for a conditional language model: tokens and a class."""

    inputs = ("tokens", "classes")


@pytest.mark.slow
@pytest.mark.jax
def test_digits_vae_reports_its_elbo_beside_the_pixel_baseline(tmp_path):
    recipe = load_recipe(ROOT / "recipes" / "digits_vae.py").override(SMOKE)
    run = train(recipe, output_dir=tmp_path, verbose=0).run_dir
    results = json.loads((run / "results.json").read_text())
    test = results["test"]
    assert test["negative_elbo"] == pytest.approx(
        test["elbo_reconstruction"] + test["elbo_kl"]
    )
    assert test["elbo_kl"] >= 0
    # The baseline, from the same 48 training and test images.
    train_x = load("digits", "train", seed=0).x[:48].reshape(48, -1)
    test_x = load("digits", "test", seed=0).x[:48].reshape(48, -1)
    p = np.clip(train_x.mean(0), 1e-3, 1 - 1e-3)
    nll = -(test_x * np.log(p) + (1 - test_x) * np.log(1 - p)).sum(1).mean()
    assert test["baseline_pixel_nll"] == pytest.approx(nll, rel=1e-5)
    for png in ("samples.png", "reconstructions.png", "interpolation.png"):
        assert (run / png).is_file() and results[png.replace(".", "_")] == png


# --- the GAN: measures, and a run killed with its two optimizers' state -----

GAN_SETTINGS = [
    "--set",
    "fit.epochs=3",
    "--set",
    "data.limit=48",
    "--set",
    "data.batch_size=16",
    "--set",
    "callbacks.tensorboard=false",
    "--quiet",
]


def _gan_command(output: Path) -> list[str]:
    return hooks.command("train", "digits_gan", "--output-dir", str(output)) + list(
        GAN_SETTINGS
    )


def _outcome(run: Path) -> dict:
    import keras

    import annzoo  # noqa: F401  (registers the GAN class)

    model = keras.saving.load_model(run / "final.keras")
    optimizers = [model.generator_optimizer, model.discriminator_optimizer]
    return {
        "weights": [np.asarray(w).tobytes() for w in model.weights],
        "optimizers": [
            [np.asarray(v).tobytes() for v in opt.variables] for opt in optimizers
        ],
        "metrics.csv": (run / "metrics.csv").read_text(),
        "test": json.loads((run / "results.json").read_text())["test"],
    }


@pytest.mark.slow
def test_digits_gan_resumes_after_kill_9_as_if_never_stopped(tmp_path):
    # The uninterrupted run in this process (TensorFlow on CPU gives the same
    # bits here as in a fresh one), the interrupted one in subprocesses.
    settings = [GAN_SETTINGS[i + 1] for i in range(0, 8, 2)]
    recipe = load_recipe(ROOT / "recipes" / "digits_gan.py").override(settings)
    train(recipe, output_dir=tmp_path / "reference", verbose=0)
    env = subprocess_env(KERAS_BACKEND="tensorflow")
    reference = _outcome(tmp_path / "reference" / "digits_gan")
    test = reference["test"]
    assert 0 <= test["sample_accuracy"] <= 1 and test["frechet_distance"] >= 0
    assert (tmp_path / "reference" / "digits_gan" / "samples.png").is_file()

    events = tmp_path / "events.jsonl"
    point = {"at": "steps", "epoch": 3, "when": "end"}  # epochs 1 and 2 saved
    process = subprocess.Popen(
        _gan_command(tmp_path / "killed"),
        cwd=ROOT,
        env=hooks.environment(env, point, events),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    assert hooks.stop_then_kill(process, timeout=300), process.stderr.read()[-3000:]
    process.stderr.close()
    assert process.returncode == -signal.SIGKILL
    run = tmp_path / "killed" / "digits_gan"
    assert json.loads((run / "state" / "progress.json").read_text())["epoch"] == 2
    done = subprocess.run(
        _gan_command(tmp_path / "killed"), cwd=ROOT,
        env=hooks.environment(env, None, events), capture_output=True, text=True,
        timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert [e["resumed_from"] for e in hooks.events(events, "run")] == [0, 2]
    resumed = _outcome(run)
    assert resumed["metrics.csv"] == reference["metrics.csv"]
    assert resumed["optimizers"] == reference["optimizers"]
    assert resumed["weights"] == reference["weights"]
    assert resumed["test"] == reference["test"]
    with pytest.raises(AnnzooError, match=r"`RUN_DIR` .*task 'adversarial'"):
        evaluate_run(run, which="final")


@pytest.mark.slow
def test_surnames_generator_resumes_to_the_uninterrupted_run(tmp_path, monkeypatch):
    """The language model's data path (training_split, fit_arrays) resumed:
    a run stopped as epoch 2 begins, rerun, ends as the run never stopped."""
    import keras

    recipe = load_recipe(ROOT / "recipes" / "surnames_generator.py").override(
        ["fit.epochs=3", "data.limit=64", "data.batch_size=16"]
        + ["callbacks.tensorboard=false", "callbacks.early_stopping=null"]
    )
    reference = train(recipe, output_dir=tmp_path / "reference", verbose=0).run_dir

    result = stopped_then_resumed(recipe, tmp_path / "killed", monkeypatch)
    assert result.resumed_from == 1
    run = result.run_dir
    assert (run / "metrics.csv").read_text() == (reference / "metrics.csv").read_text()
    for name in ("final.keras", "best.keras"):
        a = keras.saving.load_model(reference / name).weights
        b = keras.saving.load_model(run / name).weights
        for x, y in zip(a, b, strict=True):
            np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
    ours = json.loads((run / "results.json").read_text())
    theirs = json.loads((reference / "results.json").read_text())
    assert ours["test"] == theirs["test"] and ours["names"] == theirs["names"]

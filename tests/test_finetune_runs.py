"""Fine-tuning in recipes: two stages, `annzoo finetune`, digits_transfer."""

from __future__ import annotations

import csv
import importlib.util
import json
import math

import keras
import numpy as np
import pytest

from annzoo.errors import AnnzooError
from annzoo.training import Recipe, train
from tests.conftest import ROOT, run_python

SMALL = dict(name="cnn", filters=[8], hidden_units=[16], batch_norm=True)


def _digits(name, classes, **changes):
    data = dict(
        name=name,
        model=SMALL,
        data={"dataset": "digits", "batch_size": 32, "options": {"classes": classes}},
        fit={"epochs": 2},
        callbacks={"early_stopping": None, "tensorboard": False},
    )
    data.update(changes)
    return Recipe.from_dict(data)


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
    out = tmp_path_factory.mktemp("pretrained")
    return train(_digits("first", [0, 1, 2]), output_dir=out, verbose=0).run_dir


def _weights(path):
    model = keras.saving.load_model(path)
    return {layer.name: layer.get_weights() for layer in model.layers if layer.weights}


def _assert_kept(source_run, run_dir, layers):
    """``layers`` of ``run_dir``'s best model hold the source run's weights, bit
    for bit (frozen since they were loaded)."""
    source, tuned = (
        _weights(source_run / "best.keras"),
        _weights(run_dir / "best.keras"),
    )
    assert layers and set(layers) <= set(source) & set(tuned), (layers, sorted(tuned))
    for name in layers:
        for a, b in zip(source[name], tuned[name], strict=True):
            np.testing.assert_array_equal(a, b, err_msg=name)


def _above_chance(run_dir, accuracy):
    """``accuracy`` beats chance (1 / classes) by twice chance, and by three
    standard errors of a chance classifier on the test split's size."""
    matrix = json.loads((run_dir / "results.json").read_text())["confusion_matrix"]
    classes, samples = len(matrix), sum(map(sum, matrix))
    chance = 1 / classes
    margin = max(chance, 3 * math.sqrt(chance * (1 - chance) / samples))
    assert accuracy > chance + margin, (accuracy, chance, margin, samples)


def _learning_rates(run_dir):
    with open(run_dir / "metrics.csv") as handle:
        return [float(r["learning_rate"]) for r in csv.DictReader(handle)]


@pytest.mark.slow
def test_two_stages_head_then_everything_at_the_reduced_rate(pretrained, tmp_path):
    recipe = _digits(
        "second",
        [5, 6, 7, 8],
        compile={"learning_rate": 0.002},
        fit={"epochs": 3},
        finetune={"source": str(pretrained), "head_epochs": 1,
                  "head_learning_rate_scale": 1.0,
                  "learning_rate_scale": 0.25, "batchnorm": "frozen"},
    )  # fmt: skip
    result = train(recipe, output_dir=tmp_path, verbose=0)
    rates = _learning_rates(result.run_dir)
    assert rates == pytest.approx([0.002, 0.0005, 0.0005])
    saved = json.loads((result.run_dir / "recipe.json").read_text())
    assert saved["finetune"]["source"] == str(pretrained)  # where weights came from
    # Batch normalization stayed frozen through both stages: its weights and
    # moving statistics are the source's, so the source's weights were loaded.
    _assert_kept(pretrained, result.run_dir, ["block1_conv1_bn"])
    _above_chance(result.run_dir, result.test_metrics["accuracy"])  # 4 classes


def test_one_stage_trains_at_the_reduced_rate(pretrained, tmp_path):
    recipe = _digits("one", [5, 6], finetune={"source": str(pretrained / "best.keras"),
                                              "head_epochs": None,
                                              "learning_rate_scale": 0.5,
                                              "truncate": 1, "freeze": "base",
                                              "batchnorm": "frozen"})  # fmt: skip
    result = train(recipe, output_dir=tmp_path, verbose=0)
    assert _learning_rates(result.run_dir) == pytest.approx([0.0005, 0.0005])
    # One stage with the base frozen: every layer but the new head is the
    # source's, bit for bit.
    base = [n for n in _weights(pretrained / "best.keras") if n != "head_logits"]
    _assert_kept(pretrained, result.run_dir, base)


@pytest.mark.parametrize(
    "finetune, match",
    [
        ({"source": ""}, "finetune.source"),
        ({"source": "x.keras"}, "'x.keras' is not a preset and does not exist"),
        ({"source": "lenet5", "head_epochs": 5}, "head_epochs"),
        ({"source": "lenet5", "batchnorm": "free"}, "finetune.batchnorm"),
        ({"source": "lenet5", "learning_rate_scale": 0}, "learning_rate_scale"),
        ({"source": "lenet5", "truncate": 0}, "truncate"),
    ],
)
def test_bad_finetune_settings(finetune, match):
    with pytest.raises(AnnzooError, match=match):
        _digits("bad", [0, 1], finetune=finetune).validate()


@pytest.mark.slow
def test_cli_finetune(pretrained, tmp_path):
    recipe_file = _digits("cli", [7, 8, 9]).save(tmp_path / "recipe.json")
    done = run_python(
        "-m", "annzoo.cli", "finetune", str(pretrained), str(recipe_file),
        "--output-dir", str(tmp_path / "runs"), "--quiet",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    saved = json.loads((tmp_path / "runs" / "cli-finetune" / "recipe.json").read_text())
    assert saved["finetune"]["source"] == str(pretrained.resolve())


@pytest.mark.slow
def test_digits_transfer_comparison_at_smoke_size(tmp_path):
    spec = importlib.util.spec_from_file_location(
        "digits_transfer", ROOT / "recipes" / "digits_transfer.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    summary = module.compare(
        tmp_path,
        seeds=2,
        sizes=(2,),
        overrides=["fit.epochs=2", "finetune.head_epochs=1"],
        verbose=0,
    )
    folder = tmp_path / "digits_transfer_comparison"
    for name in ("transfer.md", "transfer.json", "transfer.png"):
        assert (folder / name).is_file()
    for label in ("fine-tuned", "from scratch"):
        assert len(summary[label][2]["runs"]) == 2
    table = (folder / "transfer.md").read_text()
    assert table.count("\n") == 3 and "| 2 |" in table

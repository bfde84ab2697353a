"""The main job, ``recipes/digits_cnn.py``, end to end at a reduced epoch count."""

from __future__ import annotations

import csv
import json

import keras
import numpy as np
import pytest

from annzoo import datasets
from tests.conftest import run_python


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs")
    done = run_python(
        "recipes/digits_cnn.py",
        "--epochs",
        "4",
        "--batch-size",
        "64",
        "--seed",
        "3",
        "--output-dir",
        str(out),
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return out, done


@pytest.mark.slow
def test_prints_accuracy_progress_and_run_directory(run):
    out, done = run
    assert "test: accuracy" in done.stdout
    assert f"run directory: {out / 'digits_cnn'}" in done.stdout
    assert "Epoch 4/4" in done.stdout  # Keras' per-epoch progress


@pytest.mark.slow
def test_run_directory_contents(run):
    out, _ = run
    run_dir = out / "digits_cnn"
    recipe = json.loads((run_dir / "recipe.json").read_text())
    assert recipe["model"]["name"] == "cnn" and recipe["data"]["dataset"] == "digits"
    assert recipe["fit"]["epochs"] == 4 and recipe["fit"]["seed"] == 3
    assert recipe["data"]["batch_size"] == 64
    assert recipe["model"]["input_shape"] == [8, 8, 1]
    assert recipe["model"]["num_classes"] == 10

    with open(run_dir / "metrics.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3, 4]
    assert {"loss", "accuracy", "val_loss", "val_accuracy"} <= set(rows[0])
    val_losses = [float(r["val_loss"]) for r in rows]

    results = json.loads((run_dir / "results.json").read_text())
    assert results["epochs_run"] == 4 and results["seed"] == 3
    # The best epoch is the one with the lowest validation loss in the CSV.
    assert results["best_epoch"] == int(np.argmin(val_losses)) + 1
    assert results["wall_time_s"] > 0
    assert results["versions"]["keras"] == keras.__version__

    png = (run_dir / "curves.png").read_bytes()
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 10_000
    assert "Total params" in (run_dir / "summary.txt").read_text()
    assert not list(run_dir.glob(".annzoo-tmp-*"))


@pytest.mark.slow
def test_best_model_reproduces_reported_test_accuracy(run):
    out, _ = run
    run_dir = out / "digits_cnn"
    results = json.loads((run_dir / "results.json").read_text())
    model = keras.saving.load_model(run_dir / "best.keras")
    x, y = datasets.load("digits", "test", seed=3)
    predicted = np.argmax(model.predict(x, verbose=0), axis=-1)
    accuracy = float(np.mean(predicted == y))
    assert accuracy == pytest.approx(results["test"]["accuracy"], abs=1e-6)
    assert keras.saving.load_model(run_dir / "final.keras").count_params() == (
        model.count_params()
    )


@pytest.mark.slow
def test_second_run_does_not_overwrite_the_first(run):
    out, _ = run
    first = (out / "digits_cnn" / "results.json").read_bytes()
    done = run_python(
        "recipes/digits_cnn.py", "--epochs", "1", "--quiet", "--output-dir", str(out)
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert (out / "digits_cnn-2" / "best.keras").is_file()
    assert (out / "digits_cnn" / "results.json").read_bytes() == first


def _script_main(argv, capsys):
    """The script's entry point, ``recipe_main`` on its recipe, in this process
    (the script itself runs in a subprocess once, below): exit status, output."""
    from annzoo.cli import recipe_main, script_recipe

    try:
        status = recipe_main(script_recipe("digits_cnn", "tests"), argv)
    except SystemExit as stop:  # argparse: --help, a malformed option
        status = stop.code
    return status, capsys.readouterr()


def test_help_documents_the_options(capsys):
    status, printed = _script_main(["--help"], capsys)
    assert status == 0
    for option in ("--epochs", "--batch-size", "--seed", "--output-dir"):
        assert option in printed.out


@pytest.mark.slow
@pytest.mark.parametrize(
    ("args", "argument"),
    [
        (["--epochs", "0"], "fit.epochs"),
        (["--batch-size", "-4"], "data.batch_size"),
        (["--seed", "-1"], "fit.seed"),
        (["--set", "model.dropout=2"], "dropout"),
        (["--set", "data.bacth_size=2"], "data.bacth_size"),
    ],
)
def test_bad_options_fail_clearly_before_training(tmp_path, args, argument, capsys):
    status, printed = _script_main([*args, "--output-dir", str(tmp_path)], capsys)
    assert status == 2
    assert f"`{argument}`" in printed.err and "Received" in printed.err
    assert "Traceback" not in printed.err
    assert not any(tmp_path.iterdir()), "nothing is written for a refused run"


def test_the_script_refuses_a_bad_option_in_one_line(tmp_path):
    done = run_python(
        "recipes/digits_cnn.py", "--epochs", "0", "--output-dir", str(tmp_path)
    )
    assert done.returncode == 2
    assert "`fit.epochs`" in done.stderr and "Received" in done.stderr
    assert "Traceback" not in done.stderr
    assert not any(tmp_path.iterdir()), "nothing is written for a refused run"


@pytest.mark.slow
def test_full_main_job_reaches_97_percent_test_accuracy(tmp_path):
    # The promise in the README: the default recipe, untouched, on this CPU.
    done = run_python("recipes/digits_cnn.py", "--quiet", "--output-dir", str(tmp_path))
    assert done.returncode == 0, done.stderr[-2000:]
    results = json.loads((tmp_path / "digits_cnn" / "results.json").read_text())
    assert results["test"]["accuracy"] >= 0.97, results["test"]

"""The ``annzoo`` command, each subcommand and its error paths: each command
runs once in a subprocess, as a user runs it; other calls and the error paths
(which stop before anything runs) go through the same entry point in-process."""

from __future__ import annotations

import csv
import json
import re
import signal
import subprocess

import numpy as np
import pytest

from tests.conftest import ROOT, run_python, subprocess_env


def annzoo(*args: str, timeout: float = 600):
    return run_python("-m", "annzoo.cli", *args, timeout=timeout)


def _ok(done):
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def _error(done, *needles):
    assert done.returncode == 2, (
        done.returncode,
        done.stdout[-500:],
        done.stderr[-2000:],
    )
    lines = [
        line for line in done.stderr.splitlines() if line.startswith("annzoo: error")
    ]
    assert len(lines) == 1, done.stderr[-2000:]
    assert "Traceback" not in done.stderr
    for needle in needles:
        assert needle in lines[0]
    return lines[0]


def _in_process(capsys, *args: str):
    """``annzoo ARGS`` through the same entry point, without a new process
    (these commands only read the registry; the others run as subprocesses)."""
    from types import SimpleNamespace

    from annzoo.cli import main

    code = main(list(args))
    out = capsys.readouterr()
    return SimpleNamespace(returncode=code, stdout=out.out, stderr=out.err)


def test_list_info_datasets(capsys):
    listing = _ok(_in_process(capsys, "list", "resnet*"))
    assert "resnet20" in listing and "lenet5" not in listing
    assert "11,689,512 trainable" in listing  # resnet18's published size
    info = json.loads(_ok(_in_process(capsys, "info", "mnist_convnet", "--json")))
    assert info["reference"]["params"] == 34_826 and info["family"] == "cnn"
    assert "digits" in _ok(_in_process(capsys, "datasets"))
    described = _ok(_in_process(capsys, "info", "lenet5", "--summary"))
    assert "LeCun et al. 1998" in described  # the reference source
    assert "Total params: 61,706" in described  # the Keras model summary
    assert "Total params" not in _ok(_in_process(capsys, "info", "lenet5"))
    _error(_in_process(capsys, "info", "resnet2O"), "`name`", "resnet2O")
    _error(_in_process(capsys, "list", "nomatch*"), "`pattern`")
    # The installed command itself, once.
    assert "resnet20" in _ok(annzoo("list", "resnet2*"))


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("cli")
    done = annzoo(
        "train",
        "digits_mlp",
        "--epochs",
        "2",
        "--set",
        "data.limit=120",
        "--output-dir",
        str(out),
    )
    stdout = _ok(done)
    # A quiet start: none of TensorFlow's start-up lines (annzoo.cli._startup).
    for line in ("InitializeLog", "oneDNN", "cuda drivers", "cuInit", "I0000"):
        assert line not in done.stderr, done.stderr[-3000:]
    assert "Epoch 2/2" in stdout and "test: accuracy" in stdout
    return out / "digits_mlp"


@pytest.mark.slow
def test_train_writes_a_run_that_train_can_reproduce(run_dir, tmp_path):
    again = _ok(
        annzoo(
            "train",
            str(run_dir / "recipe.json"),
            "--quiet",
            "--output-dir",
            str(tmp_path),
        )
    )
    assert f"run directory: {tmp_path / 'digits_mlp'}" in again
    first = json.loads((run_dir / "results.json").read_text())["test"]
    second = json.loads((tmp_path / "digits_mlp" / "results.json").read_text())["test"]
    assert second == pytest.approx(first, abs=1e-6)


@pytest.mark.slow
def test_train_errors(capsys):
    # In-process: each error comes before anything is trained or written (the
    # entry point's own exit status 2 is checked in a subprocess below).
    _error(_in_process(capsys, "train", "no_such_recipe"), "`recipe`", "no_such_recipe")
    _error(
        _in_process(capsys, "train", "digits_mlp", "--set", "fit.epoch=3"),
        "`fit.epoch`",
        "Did you mean 'epochs'",
    )
    _error(
        annzoo("train", "digits_mlp", "--set", "compile.optimizer=adamm"),
        "`compile.optimizer`",
    )


@pytest.mark.slow
def test_evaluate(run_dir, capsys):
    results = json.loads((run_dir / "results.json").read_text())
    metrics = json.loads(_ok(annzoo("evaluate", str(run_dir))))
    assert metrics["accuracy"] == pytest.approx(results["test"]["accuracy"], abs=1e-6)
    validation = json.loads(
        _ok(_in_process(capsys, "evaluate", str(run_dir), "--split", "validation"))
    )
    assert validation["split"] == "validation"
    _error(
        _in_process(capsys, "evaluate", str(run_dir.parent / "missing")), "`RUN_DIR`"
    )
    _error(_in_process(capsys, "evaluate", str(run_dir), "--split", "tset"), "`split`")


@pytest.mark.slow
def test_predict_npy_csv_and_images(run_dir, tmp_path, capsys):
    from PIL import Image

    from annzoo import datasets

    x, y = datasets.load("digits", "test", seed=0)
    np.save(tmp_path / "x.npy", x[:5])
    with open(tmp_path / "x.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow([f"p{i}" for i in range(64)])
        writer.writerows(x[5:8].reshape(3, -1).tolist())
    Image.fromarray((x[8, :, :, 0] * 255).astype("uint8")).save(tmp_path / "d.png")
    out = tmp_path / "pred.csv"
    _ok(
        annzoo(
            "predict",
            str(run_dir),
            str(tmp_path / "x.npy"),
            str(tmp_path / "x.csv"),
            str(tmp_path / "d.png"),
            "--output",
            str(out),
        )
    )
    with open(out) as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 9
    outputs = np.load(out.with_suffix(".npy"))
    assert outputs.shape == (9, 10)
    np.testing.assert_allclose(outputs.sum(axis=1), 1.0, rtol=1e-5)
    assert [int(r["prediction"]) for r in rows] == outputs.argmax(axis=1).tolist()
    # The .npy rows are the same images as the first five test samples: the
    # model's own predictions on them must match what `predict` wrote.
    import keras

    model = keras.saving.load_model(run_dir / "best.keras")
    np.testing.assert_allclose(outputs[:5], model.predict(x[:5], verbose=0), atol=1e-6)
    (tmp_path / "bad.txt").write_text("1,2")
    bad = _in_process(capsys, "predict", str(run_dir), str(tmp_path / "bad.txt"))
    _error(bad, "`inputs`")
    np.save(tmp_path / "wrong.npy", np.zeros((2, 5)))
    wrong = _in_process(capsys, "predict", str(run_dir), str(tmp_path / "wrong.npy"))
    _error(wrong, "(8, 8, 1)")


@pytest.mark.slow
def test_export_keras(run_dir, tmp_path, capsys):
    import keras

    out = tmp_path / "m.keras"
    _ok(annzoo("export", str(run_dir), "--format", "keras", "--output", str(out)))
    assert keras.saving.load_model(out).count_params() > 0
    _error(
        _in_process(capsys, "export", str(run_dir), "--format", "tflite"), "`format`"
    )


@pytest.mark.slow
def test_killed_training_resumes_where_it_stopped(tmp_path):
    from tests import _kill_hooks as hooks

    args = ["train", "digits_mlp", "--epochs", "30",
            "--set", "callbacks.early_stopping=null",
            "--set", "data.pipeline=numpy", "--output-dir", str(tmp_path)]  # fmt: skip
    progress = tmp_path / "digits_mlp" / "state" / "progress.json"
    events = tmp_path / "events.jsonl"
    # The process stops itself once epoch 3 is committed (every callback of
    # the epoch done); then it is killed.
    point = {"at": "epoch_end", "epoch": 3}
    proc = subprocess.Popen(
        hooks.command(*args, "--quiet"),
        cwd=ROOT,
        env=hooks.environment(subprocess_env(), point, events),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    assert hooks.stop_then_kill(proc), "the run must stop at the end of epoch 3"
    assert proc.returncode == -signal.SIGKILL, "the run must be killed mid-way"
    assert not (tmp_path / "digits_mlp" / "results.json").exists()
    assert json.loads(progress.read_text())["epoch"] == 3

    # The same command (not quiet: it says where it resumes) trains epochs 4
    # to 30 only. Training is deterministic, so a rerun that started over
    # would leave the same files: what it trained is checked too.
    done = subprocess.run(
        hooks.command(*args),
        cwd=ROOT,
        env=hooks.environment(subprocess_env(), None, events),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"resuming after epoch 3 {tmp_path / 'digits_mlp'}" in done.stdout
    assert f"run directory: {tmp_path / 'digits_mlp'}" in done.stdout
    printed = [int(e) for e in re.findall(r"^Epoch (\d+)/30$", done.stdout, re.M)]
    assert printed == list(range(4, 31)), done.stdout[-2000:]
    for pid, resumed, begun in ((proc.pid, 0, range(1, 4)), (None, 3, range(4, 31))):
        mine = [e for e in hooks.events(events) if (e["pid"] == proc.pid) == bool(pid)]
        assert [e["resumed_from"] for e in mine if e["event"] == "run"] == [resumed]
        assert [e["epoch"] for e in mine if e["event"] == "epoch"] == list(begun)
    with open(tmp_path / "digits_mlp" / "metrics.csv") as handle:
        epochs = [int(r["epoch"]) for r in csv.DictReader(handle)]
    assert epochs == list(range(1, 31)), "each epoch trained and logged exactly once"
    results = json.loads((tmp_path / "digits_mlp" / "results.json").read_text())
    assert results["epochs_run"] == 30
    assert not (tmp_path / "digits_mlp-2").exists()

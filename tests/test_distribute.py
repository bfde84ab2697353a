"""Data-parallel training: real processes and real devices, against one device.

Each configuration trains the same small recipe with the same seed and the
same global batch as a single-device run, and ends within float tolerance of
its weights (the gradient of a batch is the same sum, reduced in another
order). The devices are virtual (XLA host devices, TensorFlow logical CPUs)
and the processes are real, talking through gloo on localhost.
"""

from __future__ import annotations

import json
import re
import subprocess

import numpy as np
import pytest

from annzoo.errors import AnnzooError
from annzoo.training import Recipe, distribute

from . import _kill_hooks as hooks
from .conftest import ROOT, run_python, subprocess_env

TOLERANCE = 1e-5

pytest.importorskip("jax")


def _recipe(tmp_path, epochs=2, compile=None):
    recipe = {
        "name": "dist",
        "model": {"name": "mlp", "hidden_units": [16], "dropout": 0.0},
        # 256 training samples: 8 global batches of 32, none partial.
        "data": {"dataset": "digits", "batch_size": 16, "limit": 256},
        "fit": {"epochs": epochs, "seed": 3},
        "compile": compile or {},
        "callbacks": {"tensorboard": False, "early_stopping": None},
    }
    path = tmp_path / "dist.json"
    path.write_text(json.dumps(recipe))
    return path


def test_array_sequence_shards_split_every_batch_between_processes():
    from annzoo.data import ArraySequence

    x = np.arange(22, dtype="float32")[:, None]
    y = np.arange(22)
    whole = ArraySequence(x, y, batch_size=8, shuffle=True, seed=1, batch_multiple=4)
    parts = [
        ArraySequence(
            x, y, batch_size=8, shuffle=True, seed=1, shard=(i, 2), batch_multiple=4
        )
        for i in range(2)
    ]
    # 22 = 8 + 8 + 6: the last batch is cut to 4 rows (a multiple of the
    # devices), so every process gets 2 of them.
    assert len(whole) == len(parts[0]) == 3
    for index in range(3):
        full = whole[index][1]
        halves = [p[index][1] for p in parts]
        assert len(full) == (8 if index < 2 else 4)
        np.testing.assert_array_equal(np.concatenate(halves), full)
    # A last batch smaller than the multiple is dropped.
    assert len(ArraySequence(x, y, batch_size=8, batch_multiple=8)) == 2
    with pytest.raises(AnnzooError, match="`shard` must be"):
        ArraySequence(x, y, batch_size=8, shard=(2, 2))
    with pytest.raises(AnnzooError, match="`batch_multiple` must be a multiple of 2"):
        ArraySequence(x, y, batch_size=8, shard=(0, 2), batch_multiple=3)


@pytest.mark.parametrize(
    "section, match",
    [
        ({"strategy": "mirror"}, "`distribute.strategy`"),
        ({"devices": 0}, "`distribute.devices`"),
        ({"model_axis": -2}, "`distribute.model_axis`"),
        ({"scale_learning_rate": "yes"}, "`distribute.scale_learning_rate`"),
        ({"replicas": 2}, "`distribute.replicas` is not a recipe field"),
    ],
)
def test_bad_distribute_sections_are_named(section, match):
    with pytest.raises(AnnzooError, match=match):
        Recipe(
            name="r",
            model={"name": "mlp"},
            data={"dataset": "digits"},
            distribute=section,
        ).validate()


def test_strategies_of_the_other_backend_are_refused_with_the_alternative():
    import keras

    backend = keras.backend.backend()
    if backend == "tensorflow":
        with pytest.raises(AnnzooError, match="runs on the JAX backend.*'mirrored'"):
            distribute.plan({"strategy": "data-parallel"})
        with pytest.raises(AnnzooError, match="this machine has 1"):
            distribute.plan({"strategy": "mirrored", "devices": 5})
        # Several processes on TensorFlow: the documented refusal.
        with pytest.raises(AnnzooError, match="keras-team/keras issue 20585"):
            distribute.join("127.0.0.1:1234", 2, 0)
    else:
        with pytest.raises(AnnzooError, match="'mirrored' is TensorFlow's"):
            distribute.plan({"strategy": "mirrored"})
    with pytest.raises(AnnzooError, match="`--process-id` must be an integer in"):
        distribute.join("127.0.0.1:1234", 2, 2)
    with pytest.raises(AnnzooError, match="`--coordinator` must be HOST:PORT"):
        distribute.join("nowhere", 2, 0)
    assert distribute.plan({"strategy": "none"}).describe(8) == "one device, batch 8"


def test_learning_rate_scaling_is_explicit():
    from annzoo.training.build import learning_rates

    recipe = Recipe(
        name="r",
        model={"name": "mlp"},
        data={"dataset": "digits"},
        compile={"learning_rate": 0.01},
    ).validate()
    assert learning_rates(recipe, replicas=4) == (0.01, None)  # never silent
    scaled = Recipe.from_dict(
        {**recipe.to_dict(), "distribute": {"scale_learning_rate": True}}
    )
    assert learning_rates(scaled, replicas=4) == (pytest.approx(0.04), None)


@pytest.mark.slow
def test_mirrored_strategy_on_two_logical_cpus_matches_one_device(tmp_path):
    pytest.importorskip("tensorflow")
    recipe = _recipe(tmp_path)
    done = run_python(
        "tests/_distribute_worker.py",
        "mirrored",
        str(recipe),
        str(tmp_path / "runs"),
        KERAS_BACKEND="tensorflow",
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["mirrored"]["gap"] < TOLERANCE, report
    assert report["mirrored"]["saved"]["devices"] == 2


@pytest.mark.slow
def test_jax_data_and_model_parallel_on_two_host_devices_match_one_device(tmp_path):
    recipe = _recipe(tmp_path)
    done = run_python(
        "tests/_distribute_worker.py",
        "jax",
        str(recipe),
        str(tmp_path / "runs"),
        KERAS_BACKEND="jax",
        XLA_FLAGS="--xla_force_host_platform_device_count=2",
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    for strategy in ("data-parallel", "model-parallel"):
        assert report[strategy]["gap"] < TOLERANCE, report
        assert report[strategy]["saved"]["strategy"] == strategy
        assert report[strategy]["saved"]["devices"] == 2


def _final_weights(run_dir):
    done = run_python(
        "-c",
        "import sys, keras, numpy as np; m = keras.saving.load_model(sys.argv[1]); "
        "np.savez(sys.argv[2], *[np.asarray(w) for w in m.weights])",
        str(run_dir / "final.keras"),
        str(run_dir.parent / f"{run_dir.name}.npz"),
        KERAS_BACKEND="jax",
    )
    assert done.returncode == 0, done.stderr[-2000:]
    with np.load(run_dir.parent / f"{run_dir.name}.npz") as saved:
        return [saved[k] for k in sorted(saved.files, key=lambda k: int(k[4:]))]


@pytest.mark.slow
def test_two_processes_through_workers_2_train_resume_and_match_one_process(
    tmp_path,
):
    """annzoo train --workers 2, killed mid-run and rerun, equals one process."""
    # Optimizer options: each process checks its recipe before it joins the
    # job, and that check must not start JAX (it would refuse to join).
    recipe = _recipe(tmp_path, epochs=4, compile={"optimizer_options": {"beta_1": 0.8}})
    jobs = tmp_path / "jobs"
    command = hooks.command(
        "train", str(recipe), "--workers", "2", "--output-dir", str(jobs), "--quiet"
    )
    events = tmp_path / "events.jsonl"
    # First attempt: process 0 stops itself once epoch 2 is committed (every
    # callback of the epoch done); then the whole job is SIGKILLed.
    point = {"at": "epoch_end", "epoch": 2}
    job = subprocess.Popen(
        command,
        cwd=ROOT,
        env=hooks.environment(subprocess_env(KERAS_BACKEND="jax"), point, events),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    stop = hooks.kill_stopped_job(job, events, timeout=240)
    first_log = job.stdout.read().decode()
    assert stop is not None and stop["point"] == point, first_log[-3000:]
    progress = jobs / "dist" / "state" / "progress.json"
    assert json.loads(progress.read_text())["epoch"] == 2, first_log[-3000:]
    assert not (jobs / "dist" / "results.json").exists()  # really interrupted
    killed = {e["pid"] for e in hooks.events(events)}

    env = hooks.environment(subprocess_env(KERAS_BACKEND="jax"), None, events)
    done = subprocess.run(  # the same command, with process 0's log this time
        command[:-1], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )
    log = done.stdout + done.stderr
    assert done.returncode == 0, log[-4000:]
    assert "resuming after epoch 2" in log
    # Both processes resumed after epoch 2 and trained epochs 3 and 4 only.
    rerun = [e for e in hooks.events(events) if e["pid"] not in killed]
    for process in (0, 1):
        mine = [e for e in rerun if e["process"] == process]
        assert [e["resumed_from"] for e in mine if e["event"] == "run"] == [2]
        assert [e["epoch"] for e in mine if e["event"] == "epoch"] == [3, 4]
    assert "global batch 32 = 16 per replica x 2" in log
    digests = dict(re.findall(r"process (\d): weights sha256 (\w+)", log))
    assert set(digests) == {"0", "1"} and digests["0"] == digests["1"], log[-3000:]
    assert [p.name for p in jobs.iterdir()] == ["dist"]  # one run directory
    results = json.loads((jobs / "dist" / "results.json").read_text())
    assert results["epochs_run"] == 4
    saved = json.loads((jobs / "dist" / "recipe.json").read_text())["distribute"]
    assert saved["strategy"] == "data-parallel" and saved["devices"] == 2

    # One process, one device, the same global batch of 32.
    alone = run_python(
        "-m",
        "annzoo.cli",
        "train",
        str(recipe),
        "--batch-size",
        "32",
        "--distribute",
        "none",
        "--output-dir",
        str(tmp_path / "alone"),
        "--quiet",
        KERAS_BACKEND="jax",
    )
    assert alone.returncode == 0, alone.stderr[-3000:]
    job_weights = _final_weights(jobs / "dist")
    alone_weights = _final_weights(tmp_path / "alone" / "dist")
    pairs = zip(job_weights, alone_weights, strict=True)
    gap = max(float(np.abs(a - b).max()) for a, b in pairs)
    assert gap < TOLERANCE


@pytest.mark.slow
def test_workers_on_tensorflow_are_refused_before_anything_starts(tmp_path):
    pytest.importorskip("tensorflow")
    done = run_python(
        "-m",
        "annzoo.cli",
        "train",
        str(_recipe(tmp_path)),
        "--workers",
        "2",
        "--output-dir",
        str(tmp_path / "runs"),
        KERAS_BACKEND="tensorflow",
        timeout=120,
    )
    assert done.returncode == 2
    assert "keras-team/keras issue 20585" in done.stderr
    assert "KERAS_BACKEND=jax" in done.stderr
    assert not (tmp_path / "runs").exists()


# Trains 1 of 2 epochs data-parallel on both host devices, "dies" before the
# run finishes, then reruns the same recipe limited to one device.
_DEVICE_COUNT_CHANGE = """
import json, sys
import pytest
import annzoo.plots
from annzoo.errors import AnnzooError
from annzoo.training import train

recipe = json.loads(open(sys.argv[1]).read())
recipe["distribute"] = {"strategy": "data-parallel"}
output = sys.argv[2]

def crash(*args, **kwargs):
    raise RuntimeError("killed")

real = annzoo.plots.plot_curves
annzoo.plots.plot_curves = crash
with pytest.raises(RuntimeError, match="killed"):
    train(recipe, output_dir=output, verbose=0)
annzoo.plots.plot_curves = real
saved = json.loads(open(output + "/dist/recipe.json").read())["distribute"]
recipe["distribute"]["devices"] = 1
try:
    train(recipe, output_dir=output, verbose=0)
except AnnzooError as error:
    print(json.dumps({"saved": saved, "error": str(error)}))
else:
    print(json.dumps({"saved": saved, "error": None}))
"""


@pytest.mark.slow
def test_resuming_with_a_different_device_count_is_refused(tmp_path):
    done = run_python(
        "-c",
        _DEVICE_COUNT_CHANGE,
        str(_recipe(tmp_path)),
        str(tmp_path / "runs"),
        KERAS_BACKEND="jax",
        XLA_FLAGS="--xla_force_host_platform_device_count=2",
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["saved"]["devices"] == 2
    assert report["error"] is not None, "the resume on 1 device was not refused"
    assert "`distribute.devices` (2 -> 1)" in report["error"], report["error"]
    # Nothing was trained beside it, and the unfinished run is still there.
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == ["dist"]
    assert not (tmp_path / "runs" / "dist" / "results.json").exists()

"""`annzoo.tune` and `annzoo tune`: searches, resumption, kills, memory, workers.

Searches are tiny (an MLP on 96 digits, one or two epochs per trial); what is
checked is the bookkeeping: trial counts, seeding, refusals, files.
"""

from __future__ import annotations

import csv
import json
import signal
import subprocess
import sys
import time

import keras
import numpy as np
import pytest

from annzoo.errors import AnnzooError
from annzoo.training import Recipe
from annzoo.tuning import tune
from tests import _kill_hooks as hooks
from tests.conftest import ROOT, run_python, subprocess_env

pytestmark = pytest.mark.speedups_off

SPACE = {
    "hidden_units": {"type": "layers", "depth": [1, 2], "values": [8, 16]},
    "learning_rate": {"type": "float", "min": 1e-3, "max": 3e-2, "sampling": "log"},
    "dropout": [0.0, 0.2],
    "optimizer": ["adam", "rmsprop"],
    "batch_size": [16, 32],
}


def _recipe(**changes) -> Recipe:
    data = dict(
        name="tiny_mlp",
        model={"name": "mlp"},
        data={"dataset": "digits", "limit": 96, "pipeline": "numpy"},
        fit={"epochs": 2},
        callbacks={"early_stopping": {"patience": 1}},
        search_space=SPACE,
    )
    data.update(changes)
    return Recipe.from_dict(data)


def _rows(run_dir):
    with open(run_dir / "trials.csv") as handle:
        return list(csv.DictReader(handle))


def test_random_search_reports_every_trial(tmp_path):
    result = tune(_recipe(), max_trials=3, seed=1, output_dir=tmp_path, verbose=0)
    run = tmp_path / "tiny_mlp"
    assert result.run_dir == run and result.completed == 3
    rows = _rows(run)
    assert [r["status"] for r in rows] == ["COMPLETED"] * 3
    scores = [float(r["score"]) for r in rows]
    assert result.best_score == pytest.approx(min(scores))  # val_loss: minimized
    best = json.loads((run / "best_hyperparameters.json").read_text())
    assert best["score"] == pytest.approx(min(scores))
    assert best["hyperparameters"] == result.best_hyperparameters
    for row, trial in zip(rows, result.trials, strict=True):
        values = trial["hyperparameters"]
        # Conditional: the second layer's width only when the depth reaches 2.
        assert ("hidden_units_2" in values) == (values["hidden_units_depth"] == 2)
        assert float(row["wall_s"]) >= float(row["train_s"]) > 0
        assert int(row["epochs"]) in (1, 2)
    for name in ("search.json", "trials.png"):
        assert (run / name).is_file()
    assert not list(run.rglob(".annzoo-tmp-*"))


@pytest.mark.slow
def test_same_seed_same_trials_and_rerun_resumes(tmp_path):
    first = tune(_recipe(), max_trials=2, seed=7, output_dir=tmp_path / "a", verbose=0)
    again = tune(_recipe(), max_trials=2, seed=7, output_dir=tmp_path / "b", verbose=0)
    other = tune(_recipe(), max_trials=2, seed=8, output_dir=tmp_path / "c", verbose=0)

    def values(result):
        return [t["hyperparameters"] for t in result.trials]

    assert values(first) == values(again)
    assert values(first) != values(other)
    # Rerunning the finished search adds nothing and loses nothing.
    rerun = tune(_recipe(), max_trials=2, seed=7, output_dir=tmp_path / "a", verbose=0)
    assert rerun.completed == 2 and values(rerun) == values(first)


@pytest.mark.slow
def test_seed_zero_repeats_the_search_whatever_the_global_random_state(tmp_path):
    # A fresh process starts Python's `random` from the OS; seed 0 (the
    # default) must still give the same trials, as every other seed does.
    import random

    random.seed(11)
    first = tune(_recipe(), max_trials=2, seed=0, output_dir=tmp_path / "a", verbose=0)
    random.seed(12)
    again = tune(_recipe(), max_trials=2, seed=0, output_dir=tmp_path / "b", verbose=0)
    values = [[t["hyperparameters"] for t in r.trials] for r in (first, again)]
    assert values[0] == values[1]


@pytest.mark.slow
@pytest.mark.skipif(
    keras.backend.backend() != "tensorflow", reason="tf.data stream: TensorFlow"
)
def test_trials_train_on_a_stream_of_whole_epochs(tmp_path, monkeypatch):
    # Each trial fits a never-ending tf.data stream: steps_per_epoch batches
    # cover the training split once, and the steps per call divide them, so
    # every epoch trains exactly its own batches.
    import tensorflow as tf

    seen = []
    fit = keras.Model.fit

    def recording(model, x=None, *args, **kwargs):
        seen.append((x, kwargs.get("steps_per_epoch"), model.steps_per_execution))
        return fit(model, x, *args, **kwargs)

    monkeypatch.setattr(keras.Model, "fit", recording)
    result = tune(_recipe(), max_trials=3, seed=2, output_dir=tmp_path, verbose=0)
    n = 96  # the recipe's data.limit (the digits training split is larger)
    assert len(seen) == 3
    for (x, steps, per_call), trial in zip(seen, result.trials, strict=True):
        batch = trial["hyperparameters"]["batch_size"]
        assert isinstance(x, tf.data.Dataset)
        assert steps == -(-n // batch) and steps % per_call == 0
        taken = [len(b[1]) for b in x.take(2 * steps)]
        assert sum(taken) == 2 * n  # two epochs: each sample twice


def _validation_batch_sizes(validation, batch_size) -> set[int]:
    if isinstance(validation, tuple):  # arrays: Keras cuts the batches
        n = len(validation[1])
        return {len(range(start, min(start + batch_size, n))) for start in
                range(0, n, batch_size)}  # fmt: skip
    return {len(labels) for _, labels in validation}


@pytest.mark.slow
def test_compiled_trials_train_on_whole_batches(tmp_path, monkeypatch):
    # XLA would compile each trial's step again for a last, smaller batch:
    # 100 samples at batch 16 or 32 train 6 or 3 whole batches per epoch, and
    # the 100 validation samples are evaluated in batches of one size, the
    # validation batch's whatever the trial's: 50 (not 32 and 4) with the
    # validation batch set to 32, also for a trial at batch 16 (not 25).
    from annzoo.tuning import recipe_model

    monkeypatch.setattr(recipe_model, "VALIDATION_BATCH", 32)
    trained = []
    validated = []
    fit = keras.Model.fit

    def recording(model, *args, **kwargs):
        validated.append(
            _validation_batch_sizes(
                kwargs["validation_data"],
                kwargs.get("validation_batch_size") or kwargs.get("batch_size"),
            )
        )
        history = fit(model, *args, **kwargs)
        epochs = len(history.history["loss"])
        trained.append((int(model.optimizer.iterations.numpy()), epochs))
        return history

    monkeypatch.setattr(keras.Model, "fit", recording)
    recipe = _recipe(
        data={"dataset": "digits", "limit": 100, "pipeline": "numpy"},
        compile={"jit_compile": True},
        search_space=dict(SPACE, hidden_units=[[8]]),
    )
    result = tune(recipe, max_trials=2, seed=3, output_dir=tmp_path, verbose=0)
    assert len(trained) == 2
    for (steps, epochs), trial in zip(trained, result.trials, strict=True):
        assert steps == epochs * (100 // trial["hyperparameters"]["batch_size"])
    assert validated == [{50}, {50}]
    assert 16 in {t["hyperparameters"]["batch_size"] for t in result.trials}


@pytest.mark.slow
def test_a_changed_search_is_refused_unless_overwrite(tmp_path):
    tune(_recipe(), max_trials=1, output_dir=tmp_path, verbose=0)
    # A truncated keras-tuner state file is named, and left as it was.
    from annzoo import CheckpointError

    oracle = next(tmp_path.rglob("oracle.json"))
    kept = oracle.read_bytes()
    oracle.write_bytes(kept[: len(kept) // 2])
    with pytest.raises(CheckpointError, match=r"oracle\.json.* is unreadable"):
        tune(_recipe(), max_trials=1, output_dir=tmp_path, verbose=0)
    assert oracle.read_bytes() == kept[: len(kept) // 2]
    oracle.write_bytes(kept)
    changed = dict(SPACE, dropout=[0.0, 0.5])
    with pytest.raises(AnnzooError, match="space.dropout"):
        tune(_recipe(search_space=changed), max_trials=1, output_dir=tmp_path,
             verbose=0)  # fmt: skip
    with pytest.raises(AnnzooError, match="objective"):
        tune(_recipe(), max_trials=1, objective="val_accuracy", output_dir=tmp_path,
             verbose=0)  # fmt: skip
    result = tune(_recipe(search_space=changed), max_trials=1, output_dir=tmp_path,
                  overwrite=True, verbose=0)  # fmt: skip
    assert result.completed == 1
    assert result.trials[0]["hyperparameters"]["dropout"] in (0.0, 0.5)


@pytest.mark.slow
@pytest.mark.parametrize("tuner", ["hyperband", "bayesian", "grid"])
def test_other_tuners_run(tuner, tmp_path):
    space = {"hidden_units": [[8], [16]], "learning_rate": [1e-2], "dropout": [0.0],
             "optimizer": ["adam"], "batch_size": [32]}  # fmt: skip
    result = tune(_recipe(search_space=space), tuner=tuner, max_trials=2,
                  output_dir=tmp_path, verbose=0)  # fmt: skip
    assert result.completed >= 1 and result.best_hyperparameters


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(tuner="evolution"), "tuner"),
        (dict(max_trials=0), "max_trials"),
        (dict(seed=-1), "seed"),
        (dict(mixed_precision="int8"), "mixed_precision"),
        (dict(objective=""), "objective"),
    ],
)
def test_bad_settings_fail_before_any_trial(kwargs, match, tmp_path):
    with pytest.raises(AnnzooError, match=match):
        tune(_recipe(), output_dir=tmp_path, verbose=0, **kwargs)
    assert not (tmp_path / "tiny_mlp").exists()


@pytest.mark.slow
def test_retrain_trains_the_best_on_train_and_validation(tmp_path):
    result = tune(_recipe(), max_trials=2, output_dir=tmp_path, retrain=True,
                  verbose=0)  # fmt: skip
    retrained = result.retrained
    assert retrained.run_dir == tmp_path / "tiny_mlp" / "retrained"
    saved = json.loads((retrained.run_dir / "recipe.json").read_text())
    assert saved["data"]["merge_validation"] is True
    best = result.best_hyperparameters
    assert saved["data"]["batch_size"] == best["batch_size"]
    assert saved["compile"]["learning_rate"] == pytest.approx(best["learning_rate"])
    assert tuple(saved["model"]["hidden_units"]) == tuple(
        best[f"hidden_units_{i}"] for i in range(1, best["hidden_units_depth"] + 1)
    )
    assert "accuracy" in retrained.test_metrics


@pytest.mark.slow
def test_memory_does_not_grow_across_trials(tmp_path):
    # In a fresh process: the search's own memory, not this test worker's.
    script = f"""
import csv, json
from annzoo.training import Recipe
from annzoo.tuning import tune
space = {{"hidden_units": [[16]], "batch_size": [32], "dropout": [0.0, 0.2],
          "learning_rate": {{"type": "float", "min": 1e-3, "max": 1e-2,
                            "sampling": "log"}}, "optimizer": ["adam", "rmsprop"]}}
recipe = Recipe.from_dict(dict(
    name="tiny_mlp", model={{"name": "mlp"}},
    data={{"dataset": "digits", "limit": 96, "pipeline": "numpy"}},
    fit={{"epochs": 1}}, search_space=space))
result = tune(recipe, max_trials=20, output_dir={str(tmp_path)!r}, verbose=0,
              manage_memory=True)
print(json.dumps([t["rss_mb"] for t in result.trials]))
"""
    done = run_python("-c", script)
    assert done.returncode == 0, done.stderr[-3000:]
    rss = json.loads(done.stdout.strip().splitlines()[-1])
    assert len(rss) == 20
    print(f"resident memory after trials 2 and 20: {rss[1]:.1f} / {rss[19]:.1f} MiB")
    assert rss[19] <= rss[1] * 1.10


def _tune_args(recipe_file, out, *extra):
    return ["tune", str(recipe_file), "--output-dir", str(out), "--quiet", *extra]


def _tune_command(recipe_file, out, *extra):
    return [sys.executable, "-m", "annzoo.cli", *_tune_args(recipe_file, out, *extra)]


def _stopped_and_killed(command, point, events):
    """Runs ``annzoo tune`` until it stops itself at ``point``
    (`tests._kill_hooks`), SIGKILLs it; returns the trials it began."""
    process = subprocess.Popen(
        hooks.command(*command),
        env=hooks.environment(subprocess_env(), point, events),
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
    )
    assert hooks.stop_then_kill(process), f"the search ended before {point}"
    assert process.returncode == -signal.SIGKILL
    (stop,) = [e for e in hooks.events(events, "stop") if e["pid"] == process.pid]
    assert stop["point"] == point
    return _begun(events, process.pid)


def _begun(events, pid) -> list[str]:
    return [e["trial"] for e in hooks.events(events, "trial") if e["pid"] == pid]


def _trained(events, pid) -> set[str]:
    """The trials process ``pid`` trained epochs of."""
    return {e["trial"] for e in hooks.events(events, "epoch") if e["pid"] == pid}


@pytest.mark.slow
def test_search_killed_mid_trial_finishes_with_exact_trials(tmp_path):
    data = {"dataset": "digits", "limit": 600, "pipeline": "numpy"}
    recipe = _recipe(fit={"epochs": 40}, callbacks={"early_stopping": None}, data=data)
    recipe_file = recipe.save(tmp_path / "recipe.json")
    out = tmp_path / "out"
    command = _tune_args(recipe_file, out, "--max-trials", "3", "--epochs", "40")
    events = tmp_path / "events.jsonl"
    # Killed in the second trial's second epoch: trial 0 done, trial 1 training.
    point = {"at": "epoch_begin", "trial": "1", "epoch": 2}
    assert _stopped_and_killed(command, point, events) == ["0", "1"]
    rerun = subprocess.run(
        _tune_command(recipe_file, out, "--max-trials", "3", "--epochs", "2"),
        env=subprocess_env(), cwd=ROOT, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert rerun.returncode != 0 and "epochs" in rerun.stderr  # a changed search
    rerun = subprocess.run(hooks.command(*command),
                           env=hooks.environment(subprocess_env(), None, events),
                           cwd=ROOT, capture_output=True, text=True,
                           timeout=600)  # fmt: skip
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    # The search resumed: trial 0 was kept, not run again; the interrupted
    # trial 1 was run again and trial 2 added (a search started over would
    # end with the same three completed trials).
    pid = hooks.events(events, "trial")[-1]["pid"]
    assert _begun(events, pid) == ["1", "2"]
    assert _trained(events, pid) == {"1", "2"}
    rows = _rows(out / "tiny_mlp")
    assert [r["status"] for r in rows] == ["COMPLETED"] * 3
    assert len({r["trial"] for r in rows}) == 3


@pytest.mark.slow
def test_a_trial_that_keeps_killing_the_process_is_marked_failed(tmp_path):
    """Three real SIGKILLs inside the same trial: the fourth run gives up on it."""
    from annzoo.tuning.directory import MAX_ATTEMPTS

    data = {"dataset": "digits", "limit": 600, "pipeline": "numpy"}
    recipe = _recipe(fit={"epochs": 40}, callbacks={"early_stopping": None}, data=data)
    recipe_file = recipe.save(tmp_path / "recipe.json")
    out = tmp_path / "out"
    command = _tune_args(recipe_file, out, "--max-trials", "2", "--epochs", "40")
    attempts_file = out / "tiny_mlp" / "attempts" / "trial_0.json"
    events = tmp_path / "events.jsonl"
    # Each process stops itself as trial 0's first epoch begins (its start
    # already counted), and is killed there.
    point = {"at": "epoch_begin", "trial": "0", "epoch": 1}
    for kill in range(1, MAX_ATTEMPTS + 1):
        assert _stopped_and_killed(command, point, events) == ["0"]
        assert json.loads(attempts_file.read_text())["starts"] == kill
    done = subprocess.run(hooks.command(*command),
                          env=hooks.environment(subprocess_env(), None, events),
                          cwd=ROOT, capture_output=True, text=True,
                          timeout=600)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    said = (
        "trial 1 (search/trial_0) failed: the process died during this trial "
        f"{MAX_ATTEMPTS} times"
    )
    assert said in done.stdout
    # The last run took trial 0 up again only to give up on it, untrained.
    pid = hooks.events(events, "trial")[-1]["pid"]
    assert _begun(events, pid) == ["0", "1"] and _trained(events, pid) == {"1"}
    rows = _rows(out / "tiny_mlp")
    assert sorted(r["status"] for r in rows) == ["COMPLETED", "FAILED"]
    starts = {
        p.name: json.loads(p.read_text())["starts"]
        for p in attempts_file.parent.iterdir()
    }
    assert starts == {"trial_0.json": MAX_ATTEMPTS, "trial_1.json": 1}


@pytest.mark.slow
def test_cli_role_errors(tmp_path):
    recipe_file = _recipe().save(tmp_path / "recipe.json")
    result = run_python(
        "-m", "annzoo.cli", "tune", str(recipe_file), "--role", "worker"
    )
    assert result.returncode == 2 and "--oracle" in result.stderr
    result = run_python("-m", "annzoo.cli", "tune", str(recipe_file), "--role",
                        "worker", "--oracle", "nohost")  # fmt: skip
    assert result.returncode == 2 and "HOST:PORT" in result.stderr


# Loaded by every process of the distributed search below (a sitecustomize on
# PYTHONPATH): a worker beginning its first trial waits there until the other
# worker has begun one too, so that one worker cannot take every trial while
# the other is still importing. A barrier, not a timing: nothing is asserted
# about how long anything takes.
_BARRIER = """
import os, time
if os.environ.get("KERASTUNER_TUNER_ID", "").startswith("worker"):
    from annzoo.tuning import trials
    tuner_class, begun = trials.tuner_class, os.environ["ANNZOO_TEST_BARRIER"]

    def barrier_tuner_class(*args, **kwargs):
        base = tuner_class(*args, **kwargs)

        class Barrier(base):
            first = True

            def on_trial_begin(self, trial):
                super().on_trial_begin(trial)
                if Barrier.first:
                    Barrier.first = False
                    with open(begun, "a") as handle:
                        handle.write(os.environ["KERASTUNER_TUNER_ID"] + "\\n")
                    for _ in range(6000):  # the other worker, or give up
                        with open(begun) as handle:
                            if len(set(handle.read().split())) >= 2:
                                break
                        time.sleep(0.05)

        return Barrier

    trials.tuner_class = barrier_tuner_class
"""


@pytest.mark.slow
def test_distributed_search_on_localhost(tmp_path):
    recipe_file = _recipe(fit={"epochs": 1}).save(tmp_path / "recipe.json")
    out = tmp_path / "out"
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "sitecustomize.py").write_text(_BARRIER)
    env = subprocess_env(ANNZOO_TEST_BARRIER=str(tmp_path / "begun.txt"))
    env["PYTHONPATH"] = f"{tmp_path / 'site'}:{env['PYTHONPATH']}"
    result = subprocess.run(
        _tune_command(recipe_file, out, "--max-trials", "4", "--workers", "2"),
        env=env, cwd=ROOT, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert result.returncode == 0, (result.stdout[-2000:], result.stderr[-3000:])
    run = out / "tiny_mlp"
    rows = _rows(run)
    assert [r["status"] for r in rows] == ["COMPLETED"] * 4
    assert len({r["trial"] for r in rows}) == 4  # none lost, none run twice
    # Each worker ran at least one trial (the trials' own records say which).
    assert sorted(set((tmp_path / "begun.txt").read_text().split())) == [
        "worker0", "worker1"
    ]  # fmt: skip
    stats = [json.loads(p.read_text()) for p in (run / "stats").glob("trial_*.json")]
    ran = {record["trial_id"]: record["tuner_id"] for record in stats}
    assert len(ran) == 4 and set(ran.values()) == {"worker0", "worker1"}, ran
    chief = json.loads((run / "best_hyperparameters.json").read_text())
    assert chief["score"] == pytest.approx(min(float(r["score"]) for r in rows))


def _listening(port: int) -> bool:
    import socket

    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


@pytest.mark.slow
def test_chief_and_worker_started_by_hand_with_role_oracle_and_worker_id(tmp_path):
    """tuning.md's several-machine commands, on localhost: the chief and a
    worker are separate processes started with `--role`, `--oracle` and
    `--worker-id` themselves (not through `--workers`); the worker runs the
    trials the chief hands out."""
    from annzoo.training.launch import free_port

    recipe_file = _recipe(fit={"epochs": 1}).save(tmp_path / "recipe.json")
    out = tmp_path / "out"
    port = free_port()
    oracle = f"127.0.0.1:{port}"
    env = {k: v for k, v in subprocess_env().items() if not k.startswith("KERASTUNER")}
    common = ("--max-trials", "2", "--oracle", oracle)
    chief = subprocess.Popen(
        _tune_command(recipe_file, out, *common, "--role", "chief"),
        env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    worker = None
    try:
        # The worker starts once the chief's oracle listens (a wait, not a race).
        for _ in range(1200):
            if _listening(port) or chief.poll() is not None:
                break
            time.sleep(0.05)
        assert chief.poll() is None, chief.communicate()
        worker = subprocess.Popen(
            _tune_command(recipe_file, out, *common, "--role", "worker",
                          "--worker-id", "by-hand-0"),
            env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        worker_out, worker_err = worker.communicate(timeout=300)
        chief_out, chief_err = chief.communicate(timeout=120)
    finally:
        for process in (chief, worker):
            if process is not None and process.poll() is None:
                process.kill()
                process.wait()
    assert worker.returncode == 0, worker_err[-3000:]
    assert chief.returncode == 0, chief_err[-3000:]
    run = out / "tiny_mlp"
    rows = _rows(run)
    assert [r["status"] for r in rows] == ["COMPLETED"] * 2
    assert len({r["trial"] for r in rows}) == 2
    stats = [json.loads(p.read_text()) for p in (run / "stats").glob("trial_*.json")]
    ran = {record["trial_id"]: record["tuner_id"] for record in stats}
    assert len(ran) == 2 and set(ran.values()) == {"by-hand-0"}, ran
    # The chief reports the search; the worker only trains.
    assert "completed trials: 2" in chief_out
    assert "completed trials" not in worker_out


def test_mixed_precision_is_scoped_to_the_search(tmp_path):
    import keras

    before = keras.config.dtype_policy().name
    space = dict(SPACE, hidden_units=[[8]], batch_size=[32])
    recipe = _recipe(search_space=space, fit={"epochs": 1})
    result = tune(recipe, max_trials=1, mixed_precision="bfloat16",
                  output_dir=tmp_path, verbose=0)  # fmt: skip
    assert result.completed == 1
    assert keras.config.dtype_policy().name == before


@pytest.mark.slow
@pytest.mark.parametrize("given_by", ["recipe", "argument"])
def test_the_precision_runs_the_trials_and_the_retrained_model(tmp_path, given_by):
    import keras

    space = dict(SPACE, hidden_units=[[8]], batch_size=[32])
    in_recipe = "bfloat16" if given_by == "recipe" else None
    recipe = _recipe(search_space=space, fit={"epochs": 1},
                     compile={"mixed_precision": in_recipe})  # fmt: skip
    argument = "bfloat16" if given_by == "argument" else None
    result = tune(recipe, max_trials=1, retrain=True, mixed_precision=argument,
                  output_dir=tmp_path, verbose=0)  # fmt: skip
    assert keras.config.dtype_policy().name == "float32"
    search = json.loads((result.run_dir / "search.json").read_text())
    assert search["mixed_precision"] == "bfloat16"
    run = result.retrained.run_dir
    saved = json.loads((run / "recipe.json").read_text())
    assert saved["compile"]["mixed_precision"] == "bfloat16"
    model = keras.saving.load_model(run / "best.keras")
    hidden = next(layer for layer in model.layers if layer.weights)
    assert hidden.compute_dtype == "bfloat16"


@pytest.mark.slow
def test_xla_falls_back_for_recurrent_layers_once(tmp_path, monkeypatch, capsys):
    import importlib

    import keras

    from annzoo.tuning import recipe_model

    hypermodel = importlib.import_module("annzoo.tuning.hypermodel")

    if keras.backend.backend() != "tensorflow":
        pytest.skip("the cuDNN fallback concerns the TensorFlow backend")
    # As on a TensorFlow GPU machine: trials ask for XLA.
    monkeypatch.setattr(recipe_model, "accelerated", lambda: True)
    monkeypatch.setattr(recipe_model.Say, "said", set())
    compiled = []
    original = hypermodel.AnnzooHyperModel.build

    def spy(self, hp):
        model = original(self, hp)
        compiled.append(model)
        return model

    monkeypatch.setattr(hypermodel.AnnzooHyperModel, "build", spy)
    recipe = Recipe.from_dict(
        dict(name="tiny_rnn", model={"name": "rnn", "units": [8], "cell": "gru"},
             data={"dataset": "surnames", "limit": 32, "pipeline": "numpy"},
             fit={"epochs": 1}, search_space={"batch_size": [32], "cell": None,
                                              "units": None, "bidirectional": [True]})
    )  # fmt: skip
    result = tune(recipe, max_trials=2, output_dir=tmp_path, verbose=0)
    assert result.completed >= 1
    out = capsys.readouterr().out
    assert out.count("XLA is off for models with LSTM/GRU") == 1
    assert compiled and all(m.jit_compile is False for m in compiled)


@pytest.mark.slow
def test_more_trials_extend_a_finished_search(tmp_path):
    first = tune(_recipe(), max_trials=2, seed=3, output_dir=tmp_path, verbose=0)
    more = tune(_recipe(), max_trials=3, seed=3, output_dir=tmp_path, verbose=0)
    assert first.completed == 2 and more.completed == 3
    assert [t["hyperparameters"] for t in more.trials[:2]] == [
        t["hyperparameters"] for t in first.trials
    ]


@pytest.mark.slow
@pytest.mark.parametrize("manage_memory", [False, True])
def test_only_a_search_asked_to_manages_the_process_memory(
    tmp_path, monkeypatch, manage_memory
):
    """gc.freeze, malloc_trim and clearing JAX's caches act on the whole
    process: a search from user code does none of them unless asked
    (``annzoo tune`` asks)."""
    import gc

    from annzoo.tuning import memory

    called = []
    monkeypatch.setattr(gc, "freeze", lambda: called.append("freeze"))
    monkeypatch.setattr(memory, "trim_heap", lambda: called.append("trim"))
    free = memory.free_memory
    monkeypatch.setattr(
        memory, "free_memory", lambda *a: called.append("free") or free(*a)
    )
    recipe = _recipe(search_space=dict(SPACE, hidden_units=[[8]], batch_size=[32]))
    result = tune(recipe, max_trials=1, output_dir=tmp_path, verbose=0,
                  manage_memory=manage_memory)  # fmt: skip
    assert result.completed == 1
    if manage_memory:
        assert {"freeze", "trim", "free"} <= set(called), called
    else:
        assert called == []


def test_search_freezes_the_older_heap_and_unfreezes_it_after():
    """Collections during a search skip the objects older than it, and only those."""
    import gc
    import weakref

    from annzoo.tuning import memory

    class Node:
        pass

    older = Node()
    older.self = older  # a cycle made before the search
    older_ref = weakref.ref(older)
    del older
    # frozen_heap collects first: garbage from before the search is freed.
    with memory.frozen_heap():
        assert older_ref() is None
        assert gc.get_freeze_count() > 0
        newer = Node()
        newer.self = newer  # a trial's cycle: still collected inside
        newer_ref = weakref.ref(newer)
        del newer
        gc.collect()
        assert newer_ref() is None
    assert gc.get_freeze_count() == 0


@pytest.mark.speedup("tuner_io")
def test_best_epoch_checkpoint_holds_the_best_epochs_weights(tmp_path):
    """keras-tuner's best-epoch weights, kept in memory, written once at the end."""
    import keras_tuner
    from keras_tuner.src.engine import tuner_utils

    from annzoo import build_mlp
    from annzoo import io as aio
    from annzoo.speedups import atomic_keras_tuner

    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    x, y = rng.random((64, 4), dtype=np.float32), rng.integers(0, 2, 64)
    vx, vy = rng.random((32, 4), dtype=np.float32), rng.integers(0, 2, 32)
    model = build_mlp((4,), 2, hidden_units=[8], compile={"learning_rate": 0.05})
    seen = []

    class Record(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            seen.append((logs["val_loss"], [w.copy() for w in model.get_weights()]))

    path = tmp_path / "checkpoint.weights.h5"
    objective = keras_tuner.Objective("val_loss", "min")
    with atomic_keras_tuner(aio.write_text, aio.atomic_path) as rerouted:
        assert rerouted
        saver = tuner_utils.SaveBestEpoch(objective, str(path))
        model.fit(x, y, validation_data=(vx, vy), epochs=6, verbose=0,
                  callbacks=[Record(), saver])  # fmt: skip
    losses = [loss for loss, _ in seen]
    best = seen[int(np.argmin(losses))][1]
    assert int(np.argmin(losses)) < len(seen) - 1  # not simply the last epoch
    assert path.is_file()
    final = model.get_weights()  # the model keeps its last epoch's weights
    for got, want in zip(final, seen[-1][1], strict=True):
        np.testing.assert_array_equal(got, want)
    model.load_weights(str(path))
    for got, want in zip(model.get_weights(), best, strict=True):
        np.testing.assert_array_equal(got, want)


@pytest.mark.slow
def test_jax_compiled_programs_are_cleared_only_past_the_memory_budget(monkeypatch):
    """After each trial on JAX: compiled programs are kept until resident
    memory has grown by more than JAX_CACHE_BUDGET_MB since the last clearing."""
    jax = pytest.importorskip("jax")
    from annzoo.tuning import memory

    budget = memory.JAX_CACHE_BUDGET_MB
    # Resident memory after trials 1..5, each read once by the budget check;
    # a clearing reads it once more (what the clearing freed).
    readings = iter([1000.0, 1000.0 + budget, 1001.0 + budget, 700.0,
                     700.0 + budget + 1, 650.0, 900.0])  # fmt: skip
    monkeypatch.setattr(memory, "rss_mb", lambda: next(readings))
    cleared = []
    monkeypatch.setattr(jax, "clear_caches", lambda: cleared.append(True))
    state: dict = {}
    outcomes = [memory.free_memory(state, backend="jax") for _ in range(5)]
    # Trial 1 sets the baseline (1000); trial 2 is exactly at the budget: kept;
    # trial 3 is 1 MiB past it: cleared, new baseline 700; trial 4 past 700 +
    # budget: cleared again (baseline 650); trial 5 (900) is within it.
    assert outcomes == [False, False, True, True, False]
    assert len(cleared) == 2
    assert state["rss_after_clear"] == 650.0
    # Other backends never touch JAX.
    assert memory.free_memory({}, backend="tensorflow") is False
    assert len(cleared) == 2

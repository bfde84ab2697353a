"""Real faults: SIGKILL at seeded random points, then the same command again.

- Resume equivalence: chains of training processes killed at seeded points
  (during training steps, and the moment a save is seen in progress), each
  rerun with the same command, end with the weights, metrics history, best
  epoch and early-stopping epoch of an uninterrupted run, bit for bit. The
  model has dropout and random augmentation, the pipeline shuffles, and the
  learning rate is reduced on plateau, so every piece of random and callback
  state has to survive. 20 kill points in all; one chain is a 5-kill
  preemption run.
- Saves: 100 processes killed while saving a model and a JSON file through
  annzoo's atomic writer; every file left behind loads.

Every kill is checked to have happened mid-run (the process died of SIGKILL
and the run was not finished).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from annzoo.io import TMP_PREFIX

from .conftest import ROOT, subprocess_env

EPOCHS = 10
RECIPE = {
    "name": "kill",
    "model": {"name": "cnn", "filters": [8], "dropout": 0.3},
    # 320 training images: 10 shuffled batches per epoch.
    "data": {"dataset": "digits", "batch_size": 32, "limit": 320},
    "augment": {"ops": "digits", "placement": "model"},
    "fit": {"epochs": EPOCHS, "seed": 6},
    "compile": {"learning_rate": 0.02},
    "callbacks": {
        "tensorboard": False,
        "monitor": "val_accuracy",
        # With this seed: the rate is halved twice and early stopping ends
        # the run after epoch 8 of 10.
        "early_stopping": {"patience": 2},
        "reduce_lr": {"factor": 0.5, "patience": 0},
    },
}


def _command(recipe: Path, output: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "annzoo.cli",
        "train",
        str(recipe),
        "--output-dir",
        str(output),
        "--quiet",
    ]


def _env() -> dict:
    return subprocess_env(KERAS_BACKEND="tensorflow")


def _progress(run: Path) -> int:
    try:
        return int(json.loads((run / "state" / "progress.json").read_text())["epoch"])
    except (OSError, ValueError, KeyError):
        return 0


def _temporaries(run: Path) -> set[str]:
    found = set()
    for folder in (run, run / "state"):
        try:
            found |= {n for n in os.listdir(folder) if n.startswith(TMP_PREFIX)}
        except OSError:
            pass
    return found


def _kill_once(command, run: Path, kind: str, epoch: int, delay: float) -> str:
    """Starts the command and SIGKILLs it at the point; returns what it hit.

    The point is reached by this process's own work: a save of its own in
    progress (a temporary file the previous process did not leave), or its
    own epochs finished and then ``delay`` seconds into the next one's steps.
    """
    started_at = _progress(run)
    target = max(epoch, started_at + 1)  # at least one epoch of its own
    strays = _temporaries(run)  # a killed save's leftovers, cleaned at start
    process = subprocess.Popen(
        command,
        cwd=ROOT,
        env=_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 180
    hit = None
    try:
        while time.monotonic() < deadline and process.poll() is None:
            done = _progress(run)
            if kind == "save" and done >= target - 1 and _temporaries(run) - strays:
                hit = f"save after epoch {done}"
                break
            late = done > target or target >= 5  # the run ends after epoch 7
            if done >= target and (kind == "step" or late):
                # Saves take milliseconds and the poll can miss them on a
                # loaded machine: then a kill during the steps, labelled so.
                time.sleep(delay)  # somewhere inside the next epoch's steps
                missed = " (no save caught)" if kind == "save" else ""
                hit = f"steps after epoch {done}{missed}"
                break
            time.sleep(0.0002)
        process.send_signal(signal.SIGKILL)
    finally:
        process.wait(timeout=60)
        stderr = process.stderr.read()
        process.stderr.close()
    assert process.returncode == -signal.SIGKILL, stderr[-3000:]
    assert hit is not None, f"no kill point reached: {stderr[-3000:]}"
    assert not (run / "results.json").exists(), f"the run finished before {hit}"
    return hit


def _finish(command) -> None:
    done = subprocess.run(
        command, cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-4000:]


def _outcome(run: Path) -> dict:
    """Everything that must match an uninterrupted run (not the wall time)."""
    import keras

    import annzoo.layers  # noqa: F401  (the augmentation layer's class)

    weights = {
        name: [
            np.asarray(w).tobytes().hex()
            for w in keras.saving.load_model(run / f"{name}.keras").weights
        ]
        for name in ("final", "best")
    }
    results = json.loads((run / "results.json").read_text())
    return {
        "weights": weights,
        "metrics.csv": (run / "metrics.csv").read_text(),
        "best_epoch": results["best_epoch"],
        "epochs_run": results["epochs_run"],
        "test": results["test"],
    }


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The uninterrupted run (in a subprocess, like the interrupted ones)."""
    folder = tmp_path_factory.mktemp("reference")
    recipe = folder / "kill.json"
    recipe.write_text(json.dumps(RECIPE))
    _finish(_command(recipe, folder / "runs"))
    outcome = _outcome(folder / "runs" / "kill")
    # The callbacks did something worth preserving: the rate was reduced.
    rates = [
        float(line.split(",")[-1]) for line in outcome["metrics.csv"].splitlines()[1:]
    ]
    assert min(rates) < max(rates), outcome["metrics.csv"]
    assert outcome["epochs_run"] < EPOCHS  # and early stopping fired
    return outcome


# Four chains, 20 kill points: (kind, epochs committed before the kill,
# delay into the next epoch's steps). Drawn once from a seeded generator.
def _chains(seed: int = 2026) -> list[list[tuple[str, int, float]]]:
    rng = np.random.default_rng(seed)
    chains = []
    for size in (5, 5, 5, 5):
        points, epoch = [], 0
        for _ in range(size):
            kind = "save" if rng.random() < 0.4 else "step"
            # Each kill needs an epoch of its own work; the run stops after 8.
            epoch = int(min(4, epoch + rng.integers(0, 2)))
            points.append((kind, epoch, float(rng.uniform(0.0, 0.15))))
        chains.append(points)
    return chains


CHAINS = _chains()


def test_the_kill_plan_has_twenty_points_of_both_kinds():
    points = [p for chain in CHAINS for p in chain]
    assert len(points) == 20
    assert {kind for kind, _, _ in points} == {"save", "step"}


@pytest.mark.slow
@pytest.mark.parametrize("chain", range(len(CHAINS)))
def test_killed_and_resumed_runs_equal_the_uninterrupted_run(
    chain, reference, tmp_path
):
    recipe = tmp_path / "kill.json"
    recipe.write_text(json.dumps(RECIPE))
    command = _command(recipe, tmp_path / "runs")
    run = tmp_path / "runs" / "kill"
    hits = []
    for kind, epoch, delay in CHAINS[chain]:
        hits.append(_kill_once(command, run, kind, epoch, delay))
    _finish(command)
    outcome = _outcome(run)
    assert [p.name for p in (tmp_path / "runs").iterdir()] == ["kill"]
    assert outcome["epochs_run"] == reference["epochs_run"], hits
    assert outcome["best_epoch"] == reference["best_epoch"], hits
    assert outcome["metrics.csv"] == reference["metrics.csv"], hits
    assert outcome["weights"] == reference["weights"], hits
    assert outcome["test"] == reference["test"], hits


SAVER = r"""
import os, sys
os.environ["KERAS_BACKEND"] = "numpy"
import keras
from annzoo import io

inputs = keras.Input((64,))
model = keras.Model(inputs, keras.layers.Dense(10)(keras.layers.Dense(256)(inputs)))
folder = sys.argv[1]
print("ready", flush=True)
child = None
for line in sys.stdin:  # children are forked from this warm process
    if line.strip() == "wait":  # the test killed the child: report how it died
        _, status = os.waitpid(child, 0)
        print(os.WTERMSIG(status) if os.WIFSIGNALED(status) else -1, flush=True)
        continue
    child = os.fork()
    if child == 0:
        i = 0
        while True:
            i += 1
            model.layers[-1].kernel.assign(model.layers[-1].kernel + 1.0)
            io.save_model(model, os.path.join(folder, "model.keras"))
            state = {"i": i, "pad": "x" * 65536}
            io.write_json(os.path.join(folder, "state.json"), state)
    print(child, flush=True)
"""


@pytest.mark.slow
def test_one_hundred_kills_during_saves_leave_no_unreadable_file(tmp_path):
    import keras

    from annzoo.io import clean_temporaries

    server = subprocess.Popen(
        [sys.executable, "-c", SAVER, str(tmp_path)],
        cwd=ROOT,
        env=subprocess_env(),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert server.stdout.readline().strip() == "ready"
    rng = np.random.default_rng(0)
    kills = mid_save = 0
    try:
        for _ in range(100):
            server.stdin.write("go\n")
            server.stdin.flush()
            child = int(server.stdout.readline())
            while not (tmp_path / "state.json").exists():  # the first save
                time.sleep(0.001)
            time.sleep(float(rng.uniform(0.0, 0.05)))  # a seeded random moment
            os.kill(child, signal.SIGKILL)
            server.stdin.write("wait\n")
            server.stdin.flush()
            kills += int(server.stdout.readline()) == signal.SIGKILL
            mid_save += any(p.name.startswith(TMP_PREFIX) for p in tmp_path.iterdir())
            state = json.loads((tmp_path / "state.json").read_text())
            assert state["i"] >= 1 and len(state["pad"]) == 65536
            model = keras.saving.load_model(tmp_path / "model.keras")
            assert model.count_params() == 64 * 256 + 256 + 256 * 10 + 10
            clean_temporaries(tmp_path)
            assert not any(p.name.startswith(TMP_PREFIX) for p in tmp_path.iterdir())
    finally:
        server.kill()
        server.wait()
    assert kills == 100
    # The kills really landed inside saves, not only between them.
    assert mid_save >= 50, mid_save


def _no_bigger_files_than(limit: int):
    """preexec_fn: writes past ``limit`` bytes fail with EFBIG, as on a full disk."""

    def apply():
        import resource

        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return apply


@pytest.mark.slow
def test_a_save_that_cannot_be_written_stops_the_run_and_keeps_the_last_state(
    reference, tmp_path
):
    """A model save fails for real (file size limit, like a full disk)."""
    recipe = tmp_path / "kill.json"
    recipe.write_text(json.dumps(RECIPE))
    command = _command(recipe, tmp_path / "runs")
    run = tmp_path / "runs" / "kill"
    _kill_once(command, run, "step", 2, 0.0)
    kept = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    model_files = [p for p in kept if p.suffix == ".keras"]
    smallest_model = min(len(kept[p]) for p in model_files)
    largest_other = max(len(v) for p, v in kept.items() if p.suffix != ".keras")
    assert largest_other < smallest_model // 2  # the limit only stops model saves
    limit = smallest_model // 2
    done = subprocess.run(
        command,
        cwd=ROOT,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=300,
        preexec_fn=_no_bigger_files_than(limit),
    )
    assert done.returncode == 2, done.stderr[-3000:]
    message = done.stderr.strip().splitlines()[-1]
    assert message.startswith("annzoo: error: Cannot write ")
    assert str(run) in message and "File too large" in message
    for path in model_files + [run / "state" / "progress.json"]:
        assert path.read_bytes() == kept[path], path  # the last good state
    assert not (run / "results.json").exists()
    # With room again, the same command resumes and ends as if nothing happened.
    _finish(command)
    outcome = _outcome(run)
    assert outcome["weights"] == reference["weights"]
    assert outcome["metrics.csv"] == reference["metrics.csv"]


@pytest.mark.slow
def test_the_same_seed_in_fresh_processes_is_bit_identical_another_is_not(
    reference, tmp_path
):
    """Every chain above reruns the reference's seed in new processes and must
    match it bit for bit; here a second fresh run of the same seed does, and a
    run with another seed does not."""
    recipe = tmp_path / "kill.json"
    recipe.write_text(json.dumps(RECIPE))
    _finish(_command(recipe, tmp_path / "same"))
    assert _outcome(tmp_path / "same" / "kill")["weights"] == reference["weights"]
    _finish([*_command(recipe, tmp_path / "other"), "--seed", "7"])
    other = _outcome(tmp_path / "other" / "kill")["weights"]
    assert other["final"] != reference["weights"]["final"]

"""Real faults: SIGKILL at seeded points, then the same command again.

- Resume equivalence: chains of training processes killed at seeded points
  (in an epoch's training steps, and inside a save: a file's temporary
  created, or written and not yet renamed), each rerun with the same
  command, end with the weights, metrics history, best epoch and
  early-stopping epoch of an uninterrupted run, bit for bit. The model has
  dropout and random augmentation, the pipeline shuffles, and the learning
  rate is reduced on plateau, so every piece of random and callback state
  has to survive. 20 kill points in all; one chain is a 5-kill preemption
  run. The processes stop themselves at their points (`tests._kill_hooks`)
  and are then SIGKILLed, so every save point is hit inside its save.
- Saves: 100 processes killed at seeded random moments while saving a model
  and a JSON file through annzoo's atomic writer; every file left behind loads.

Training is deterministic, so a rerun that started over from epoch 0 would
end with the same files as a resumed one: each process is also checked to
have resumed after the epoch the kill before it left committed and to have
begun only the epochs after it (the last rerun: only those left, and it says
"resuming after epoch N"). Every kill is checked to have happened mid-run
(the process died of SIGKILL and the run was not finished).
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from annzoo.io import TMP_PREFIX

from . import _kill_hooks as hooks
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


REFERENCE_EPOCHS = 8  # with this seed, early stopping ends the run after epoch 8


def _command(recipe: Path, output: Path, *, quiet: bool = True) -> list[str]:
    return hooks.command(
        "train", str(recipe), "--output-dir", str(output), *(["--quiet"] * quiet)
    )


def _env(point: dict | None = None, events: Path | None = None) -> dict:
    env = subprocess_env(KERAS_BACKEND="tensorflow")
    return env if events is None else hooks.environment(env, point, events)


def _progress(run: Path) -> int:
    try:
        return int(json.loads((run / "state" / "progress.json").read_text())["epoch"])
    except (OSError, ValueError, KeyError):
        return 0


def _committed_before(point: dict) -> int:
    """The epochs a kill at ``point`` leaves committed in ``state/``."""
    if point.get("file") == "final.keras":  # after training: every epoch
        return REFERENCE_EPOCHS
    # Inside epoch E's steps, or inside a save at its end (progress.json, the
    # commit, is renamed last): the state after epoch E - 1.
    return point["epoch"] - 1


def _check_resumed(events: list[dict], pid: int, started: int, last: int) -> None:
    """Process ``pid`` resumed after epoch ``started`` and began epochs
    ``started + 1`` to ``last``, no others."""
    runs = [
        e["resumed_from"] for e in events if e["event"] == "run" and e["pid"] == pid
    ]
    assert runs == [started], (runs, started)
    begun = [e["epoch"] for e in events if e["event"] == "epoch" and e["pid"] == pid]
    assert begun == list(range(started + 1, last + 1)), (begun, started, last)


def _kill_once(command, run: Path, point: dict, events: Path) -> str:
    """Runs the command until it stops itself at ``point``, SIGKILLs it and
    checks what it did: resumed after the epoch committed before it, began
    exactly the epochs up to the point's, and (a save point) was killed with
    its temporary file on disk. Returns what the kill hit."""
    started = _progress(run)
    stderr_file = events.with_suffix(".stderr")
    with open(stderr_file, "w") as stderr:
        process = subprocess.Popen(
            command,
            cwd=ROOT,
            env=_env(point, events),
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )
        stopped = hooks.stop_then_kill(process, timeout=300)
    log = stderr_file.read_text()[-3000:]
    assert stopped, f"{point} not reached (exit {process.returncode}): {log}"
    assert process.returncode == -signal.SIGKILL, log
    (stop,) = [e for e in hooks.events(events, "stop") if e["pid"] == process.pid]
    assert stop["point"] == point
    committed = _committed_before(point)
    last = REFERENCE_EPOCHS if point.get("file") == "final.keras" else point["epoch"]
    _check_resumed(hooks.events(events), process.pid, started, last)
    assert _progress(run) == committed, (point, _progress(run))
    assert not (run / "results.json").exists(), f"the run finished before {point}"
    if point["at"] == "save":
        tmp = Path(stop["tmp"])
        assert tmp.name.startswith(TMP_PREFIX) and tmp.is_file(), stop
        assert Path(stop["target"]).name == point["file"]
        return f"save of {point['file']} ({point['phase']}) in epoch {stop['epoch']}"
    return f"steps of epoch {point['epoch']} ({point['when']})"


def _finish(command, events: Path | None = None, started: int | None = None) -> str:
    """Runs the command to the end; with ``events``, checks that it resumed
    after epoch ``started`` and trained the remaining epochs only."""
    done = subprocess.run(
        command,
        cwd=ROOT,
        env=_env(None, events),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    if events is not None:
        pid = hooks.events(events, "run")[-1]["pid"]  # this process, the last
        _check_resumed(hooks.events(events), pid, started, REFERENCE_EPOCHS)
    return done.stdout


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
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "annzoo.cli",
            "train",
            str(recipe),
            "--output-dir",
            str(folder / "runs"),
            "--quiet",
        ],
        cwd=ROOT,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )  # fmt: skip  (plain annzoo: no kill hooks in the reference)
    assert done.returncode == 0, done.stderr[-4000:]
    outcome = _outcome(folder / "runs" / "kill")
    # The callbacks did something worth preserving: the rate was reduced.
    rates = [
        float(line.split(",")[-1]) for line in outcome["metrics.csv"].splitlines()[1:]
    ]
    assert min(rates) < max(rates), outcome["metrics.csv"]
    assert outcome["epochs_run"] == REFERENCE_EPOCHS < EPOCHS  # early stopping fired
    return outcome


# Four chains, 20 kill points, drawn once from a seeded generator. Each
# process resumes after the epoch the one before it committed (none at
# first) and stops itself at its point: in epoch E's training steps (before
# or after its call of steps, or at its validation), or inside a save at the
# end of epoch E (its temporary file created, or written and not renamed) of
# metrics.csv, the epoch's state model, progress.json or (epoch 1, which is
# always the best so far) best.keras. The last chain ends with a kill inside
# the save of final.keras, after the last epoch.
def _chains(seed: int = 2026) -> list[list[dict]]:
    rng = np.random.default_rng(seed)
    chains = []
    for size in (5, 5, 5, 5):
        points, committed = [], 0
        for _ in range(size):
            epoch = int(min(REFERENCE_EPOCHS, committed + 1 + rng.integers(0, 3)))
            if rng.random() < 0.5:
                files = ["metrics.csv", f"epoch-{epoch:04d}.keras", "progress.json"]
                files += ["best.keras"] * (epoch == 1)
                point = {
                    "at": "save",
                    "epoch": epoch,
                    "file": str(rng.choice(files)),
                    "phase": str(rng.choice(["begun", "written"])),
                }
            else:
                when = str(rng.choice(["begin", "end", "validation"]))
                point = {"at": "steps", "epoch": epoch, "when": when}
            points.append(point)
            committed = epoch - 1
        chains.append(points)
    chains[-1][-1] = {"at": "save", "file": "final.keras", "phase": "written"}
    return chains


CHAINS = _chains()


def test_the_kill_plan_has_twenty_points_of_both_kinds():
    points = [p for chain in CHAINS for p in chain]
    assert len(points) == 20
    assert {p["at"] for p in points} == {"save", "steps"}
    saves = [p for p in points if p["at"] == "save"]
    assert len(saves) >= 6 and {p["phase"] for p in saves} == {"begun", "written"}
    for chain in CHAINS:  # each point is reachable from the state before it
        committed = 0
        for point in chain:
            assert point.get("epoch", REFERENCE_EPOCHS) > committed, chain
            committed = _committed_before(point)


@pytest.mark.slow
@pytest.mark.parametrize("chain", range(len(CHAINS)))
def test_killed_and_resumed_runs_equal_the_uninterrupted_run(
    chain, reference, tmp_path
):
    recipe = tmp_path / "kill.json"
    recipe.write_text(json.dumps(RECIPE))
    command = _command(recipe, tmp_path / "runs")
    run = tmp_path / "runs" / "kill"
    events = tmp_path / "events.jsonl"
    hits = [_kill_once(command, run, point, events) for point in CHAINS[chain]]
    # Every save point was hit inside its save (its temporary file on disk).
    saves = [p for p in CHAINS[chain] if p["at"] == "save"]
    assert sum(hit.startswith("save of ") for hit in hits) == len(saves), hits
    # The last rerun resumes after the epoch the last kill left committed and
    # trains only the epochs left (none after a kill while saving final.keras),
    # and says so.
    committed = _committed_before(CHAINS[chain][-1])
    stdout = _finish(
        _command(recipe, tmp_path / "runs", quiet=False), events, committed
    )
    assert f"resuming after epoch {committed} " in stdout, stdout[-2000:]
    trained = [int(e) for e in re.findall(rf"^Epoch (\d+)/{EPOCHS}$", stdout, re.M)]
    assert trained == list(range(committed + 1, REFERENCE_EPOCHS + 1)), stdout[-2000:]
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
    events = tmp_path / "events.jsonl"
    _kill_once(command, run, {"at": "steps", "epoch": 3, "when": "begin"}, events)
    kept = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    model_files = [p for p in kept if p.suffix == ".keras"]
    smallest_model = min(len(kept[p]) for p in model_files)
    largest_other = max(len(v) for p, v in kept.items() if p.suffix != ".keras")
    assert largest_other < smallest_model // 2  # the limit only stops model saves
    limit = smallest_model // 2
    done = subprocess.run(
        command,
        cwd=ROOT,
        env=_env(None, events),
        capture_output=True,
        text=True,
        timeout=300,
        preexec_fn=_no_bigger_files_than(limit),
    )
    assert done.returncode == 2, done.stderr[-3000:]
    # It resumed after epoch 2 and failed saving epoch 3.
    _check_resumed(hooks.events(events), hooks.events(events, "run")[-1]["pid"], 2, 3)
    message = done.stderr.strip().splitlines()[-1]
    assert message.startswith("annzoo: error: Cannot write ")
    assert str(run) in message and "File too large" in message
    for path in model_files + [run / "state" / "progress.json"]:
        assert path.read_bytes() == kept[path], path  # the last good state
    assert not (run / "results.json").exists()
    # With room again, the same command resumes and ends as if nothing happened.
    _finish(command, events, started=2)
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

"""Issue 26's adversarial probes, repeated: the figures of its closing note.

    nice -n 19 .venv/bin/python scripts/probe_reliability.py [--out FILE] [--quick]
        [--only kills,searches,concurrent,inputs] [--seed N]

Not a test (it takes 10 to 20 minutes on two busy cores): it runs real
``annzoo`` processes and prints a progress line per step, and after each
category rewrites its results atomically (``annzoo.io.write_json``) to
``--out`` (default ``probe_results.json``):

i.   kills of training runs: tiny recipes, each killed several times, at a
     save point (``tests/_kill_hooks.py``: the process stops itself exactly
     there and is SIGKILLed) or at a random moment (a random time into a
     random epoch: training steps, validation or saves), resumed to the end
     (a run that finished before its kill is not killed again) and compared
     bit for bit with an uninterrupted run: every array of
     ``best.keras`` and ``final.keras`` (weights and optimizer slots) and
     ``metrics.csv``'s bytes;
ii.  kills of tuning searches (at a save or an epoch's start, or after a
     random delay), resumed to the end: exactly ``max_trials``
     completed trials and the same ``trials.csv`` as an uninterrupted search
     (timing and memory columns aside);
iii. two concurrent writers (same recipe, same ``--output-dir``, started
     together): a mix (two processes reporting one directory, a directory
     whose manifest does not match its files, or whose recipe is not the
     seed of the process that reported it) is counted;
iv.  the issue's list of malformed inputs and damaged files, run in process:
     one-sentence errors, tracebacks, silently accepted, silent restarts.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import io
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests import _kill_hooks as hooks  # noqa: E402

ENV = {
    **os.environ,
    "PYTHONPATH": str(ROOT),
    "TF_CPP_MIN_LOG_LEVEL": "3",
    "PYTHONHASHSEED": "0",
}
ENV.pop(hooks.POINT_ENV, None)
TINY = [
    "--set", "data.limit=300", "--set", "data.pipeline=numpy",
    "--set", "callbacks.tensorboard=false", "--set", "callbacks.early_stopping=null",
]  # fmt: skip
RECIPES = {
    "digits_mlp": ["--set", "model.hidden_units=[16]"],
    "digits_cnn": ["--set", "model.filters=[4]"],
}
STARTED = time.monotonic()


def say(text: str) -> None:
    print(f"[{time.monotonic() - STARTED:7.1f} s] {text}", flush=True)


def annzoo(*args) -> list[str]:
    return hooks.command(*map(str, args))


def run(args, *, timeout=900) -> subprocess.CompletedProcess:
    return subprocess.run(
        annzoo(*args), env=ENV, cwd=ROOT, capture_output=True, text=True,
        timeout=timeout,
    )  # fmt: skip


def start(args, point=None, events: Path | None = None) -> subprocess.Popen:
    env = hooks.environment(ENV, point, events or Path(os.devnull))
    if point is None:
        env.pop(hooks.EVENTS_ENV, None)
    return subprocess.Popen(
        annzoo(*args), env=env, cwd=ROOT, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def kill_at(args, point, events: Path, delay: float | None) -> bool:
    """Runs ``annzoo ARGS`` until the kill point (or ``delay`` seconds) and
    SIGKILLs it there; False when it ended first."""
    process = start(args, point, events)
    if delay is None:
        killed = hooks.stop_then_kill(process, timeout=900)
        process.communicate()
        return killed
    deadline = time.monotonic() + delay
    while time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.02)
    if process.poll() is not None:
        process.communicate()
        return False
    os.kill(process.pid, signal.SIGKILL)
    process.communicate()
    return True


def kill_in_training(args, events: Path, epoch: int, after: float) -> bool:
    """A random moment: ``after`` seconds into epoch ``epoch`` (or the first
    epoch this process trains, when it resumes past it), whatever the process
    is doing then (training steps, validation, saves); False when it ended
    first."""
    process = start(args, {}, events)
    while process.poll() is None:
        begun = [e for e in hooks.events(events, "epoch") if e["pid"] == process.pid]
        if begun and max(e["epoch"] for e in begun) >= min(epoch, begun[0]["epoch"]):
            break
        time.sleep(0.02)
    deadline = time.monotonic() + after
    while time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.005)
    if process.poll() is not None:
        process.communicate()
        return False
    os.kill(process.pid, signal.SIGKILL)
    process.communicate()
    return True


def keras_arrays(path: Path) -> dict[str, bytes]:
    """Every array of a ``.keras`` file (weights and optimizer variables)."""
    import h5py

    with zipfile.ZipFile(path) as archive:
        data = archive.read("model.weights.h5")
    arrays: dict[str, bytes] = {}
    with h5py.File(io.BytesIO(data), "r") as h5:

        def visit(name, item):
            if isinstance(item, h5py.Dataset):
                arrays[name] = item[()].tobytes()

        h5.visititems(visit)
    return arrays


def same_run(a: Path, b: Path) -> dict:
    out = {}
    for name in ("best.keras", "final.keras"):
        out[name] = keras_arrays(a / name) == keras_arrays(b / name)
    out["optimizer_slots"] = any(
        k.startswith("optimizer") for k in keras_arrays(a / "final.keras")
    )
    out["metrics.csv"] = (a / "metrics.csv").read_bytes() == (
        b / "metrics.csv"
    ).read_bytes()
    return out


# -- i. kills of training runs --------------------------------------------------

# Save points inside the epochs: the run still has an epoch to train after a
# kill there, so the next kill finds one (a kill after the last epoch's commit
# would leave the next random kill nothing to land in).
SAVE_POINTS = [
    {"at": "save", "file": "best.keras", "phase": "written"},
    {"at": "save", "file": "progress.json", "phase": "begun"},
    {"at": "save", "file": "metrics.csv", "phase": "written"},
    {"at": "save", "file": "epoch-0002.keras", "phase": "written"},
    {"at": "save", "file": "progress.json", "phase": "written", "epoch": 3},
    {"at": "epoch_end", "epoch": 2},
    {"at": "steps", "when": "end", "epoch": 3},
]
# The saves that finish a run: only for a run's last kill.
LAST_SAVE_POINTS = [
    {"at": "save", "file": "final.keras", "phase": "begun"},
    {"at": "save", "file": "results.json", "phase": "written"},
    {"at": "save", "file": "manifest.json", "phase": "begun"},
]


def probe_training_kills(work: Path, runs: int, kills_per_run: int, rng) -> dict:
    results = []
    names = ["digits_mlp", "digits_mlp", "digits_cnn"] * 2
    for index in range(runs):
        recipe = names[index % len(names)]
        args = ["train", recipe, *TINY, *RECIPES[recipe], "--epochs", "4"]
        args += ["--seed", str(index + 1), "--quiet"]
        reference = work / f"train{index}" / "reference"
        done = run([*args, "--output-dir", reference])
        assert done.returncode == 0, done.stderr[-2000:]
        killed_dir = work / f"train{index}" / "killed"
        events = work / f"train{index}" / "events.jsonl"
        kills, where, ended = 0, [], False
        planned = kills_per_run + (index == 0)  # 6 runs: up to 19 kills
        for k in range(planned):
            target = [*args, "--output-dir", killed_dir]
            if k % 2 == 0:
                epoch, after = rng.randint(1, 4), rng.uniform(0.0, 1.5)
                label = f"random: {after:.2f} s into epoch {epoch}"
                killed = kill_in_training(target, events, epoch, after)
            else:
                last = k == planned - 1
                point = rng.choice(LAST_SAVE_POINTS if last else SAVE_POINTS)
                label = json.dumps(point)
                killed = kill_at(target, point, events, None)
            if killed:
                kills += 1
                where.append(label)
                say(f"training run {index} ({recipe}): kill {kills} at {label}")
            else:
                say(f"training run {index}: finished before {label}")
                ended = True  # the run finished: nothing left to kill or resume
                break
        final = (
            subprocess.CompletedProcess([], 0, "", "")
            if ended
            else run([*args, "--output-dir", killed_dir])
        )
        entry = {"recipe": recipe, "kills": kills, "where": where,
                 "resume_status": final.returncode}  # fmt: skip
        if final.returncode == 0:
            dirs = sorted(p.name for p in killed_dir.iterdir())
            entry["run_dirs"] = dirs  # a new NAME-2 would be a silent restart
            entry.update(same_run(killed_dir / recipe, reference / recipe))
            entry["bit_identical"] = dirs == [recipe] and all(
                entry[k] for k in ("best.keras", "final.keras", "metrics.csv")
            )
        else:
            entry["error"] = (final.stderr.strip().splitlines() or [""])[-1]
            entry["bit_identical"] = False
        say(f"training run {index}: {entry}")
        results.append(entry)
    return {
        "runs": len(results),
        "kills": sum(e["kills"] for e in results),
        "bit_identical_resumes": sum(e["bit_identical"] for e in results),
        "details": results,
    }


# -- ii. kills of tuning searches -----------------------------------------------

TIMING = {"wall_s", "train_s", "rss_mb"}


def trials_table(search: Path) -> list[dict]:
    with open(search / "trials.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    return [{k: v for k, v in r.items() if k not in TIMING} for r in rows]


def probe_search_kills(work: Path, searches: int, kills_per: int, rng) -> dict:
    results = []
    max_trials = 3
    for index in range(searches):
        args = ["tune", "digits_mlp", *TINY, "--max-trials", str(max_trials)]
        args += ["--epochs", "2", "--seed", str(index), "--quiet"]
        reference = work / f"search{index}" / "reference"
        began = time.monotonic()
        done = run([*args, "--output-dir", reference])
        wall = time.monotonic() - began
        assert done.returncode == 0, done.stderr[-2000:]
        killed_dir = work / f"search{index}" / "killed"
        events = work / f"search{index}" / "events.jsonl"
        points = [
            {"at": "epoch_begin", "trial": "1", "epoch": 2},
            {"at": "save", "file": "trial.json", "phase": "written", "trial": "2"},
            {"at": "save", "file": "oracle.json", "phase": "begun", "trial": "1"},
        ]
        kills, where, ended = 0, [], False
        for k in range(kills_per):
            if k % 2 == 1:
                point, delay = None, rng.uniform(0.25, 0.75) * wall
                label = f"random {delay:.1f} s"
            else:
                point, delay = points[(index + k) % len(points)], None
                label = json.dumps(point)
            if kill_at([*args, "--output-dir", killed_dir], point or {}, events, delay):
                kills += 1
                where.append(label)
                say(f"search {index}: kill {kills} at {label}")
            else:
                say(f"search {index}: finished before {label}")
                ended = True
                break
        final = run([*args, "--output-dir", killed_dir])
        entry = {"kills": kills, "where": where, "status": final.returncode,
                 "finished_before_a_kill": ended}  # fmt: skip
        if final.returncode == 0:
            got = trials_table(killed_dir / "digits_mlp")
            want = trials_table(reference / "digits_mlp")
            completed = sum(r["status"] == "COMPLETED" for r in got)
            entry.update(completed=completed, same_trials_csv=got == want)
            entry["ok"] = completed == max_trials and len(got) == max_trials
            entry["ok"] = entry["ok"] and got == want
        else:
            entry["error"] = (final.stderr.strip().splitlines() or [""])[-1]
            entry["ok"] = False
        say(f"search {index}: {entry}")
        results.append(entry)
    return {
        "searches": len(results),
        "kills": sum(e["kills"] for e in results),
        "exact_max_trials_and_same_trials_csv": sum(e["ok"] for e in results),
        "details": results,
    }


# -- iii. two concurrent writers ---------------------------------------------------


def manifest_matches(run_dir: Path) -> bool:
    from annzoo import io as aio

    try:
        listed = json.loads((run_dir / "manifest.json").read_text())["files"]
    except (OSError, ValueError, KeyError):
        return False
    return all(
        (run_dir / name).is_file()
        and aio.file_digest(run_dir / name) == entry["sha256"]
        for name, entry in listed.items()
    )


def probe_concurrent(work: Path, tries: int) -> dict:
    results = []
    for index in range(tries):
        output = work / f"concurrent{index}"
        same_seed = index % 2 == 0
        seeds = [7, 7] if same_seed else [7, 8]
        base = ["train", "digits_mlp", *TINY, *RECIPES["digits_mlp"], "--epochs", "3"]
        procs = [
            start([*base, "--seed", str(s), "--output-dir", output, "--quiet"])
            for s in seeds
        ]
        outs = [p.communicate(timeout=900) for p in procs]
        reported, mixed, refused = {}, [], 0
        for seed, proc, (out, err) in zip(seeds, procs, outs, strict=True):
            lines = [x for x in err.strip().splitlines() if x.startswith("annzoo")]
            if proc.returncode == 2 and lines and "annzoo: error:" in lines[-1]:
                refused += 1
                continue
            if proc.returncode != 0:
                mixed.append(f"exit {proc.returncode}: {err[-300:]}")
                continue
            run_dir = [x for x in out.splitlines() if x.startswith("run directory: ")]
            path = Path(run_dir[-1].split(": ", 1)[1])
            if path in reported:
                mixed.append(f"two processes reported {path}")
            reported[path] = seed
        for path, seed in reported.items():
            saved = json.loads((path / "recipe.json").read_text())
            if saved["fit"]["seed"] != seed:
                mixed.append(f"{path}: recipe of seed {saved['fit']['seed']}")
            if not manifest_matches(path):
                mixed.append(f"{path}: manifest does not match its files")
        entry = {"same_seed": same_seed, "refused": refused,
                 "run_dirs": sorted(p.name for p in reported),
                 "mixed": mixed}  # fmt: skip
        say(f"concurrent writers {index}: {entry}")
        results.append(entry)
    return {
        "tries": len(results),
        "mixed_results": sum(bool(e["mixed"]) for e in results),
        "details": results,
    }


# -- iv. malformed inputs and damaged files, in process ----------------------------


class Outcomes:
    def __init__(self):
        self.rows: list[dict] = []

    def add(self, name, outcome, *, must_refuse=True, restart=False, note=""):
        self.rows.append({"case": name, "outcome": outcome, "must_refuse": must_refuse,
                          "silent_restart": restart, "note": note[:300]})  # fmt: skip
        say(f"input {len(self.rows)}: {name}: {outcome} {note[:160]}")

    def summary(self) -> dict:
        rows = self.rows
        return {
            "tried": len(rows),
            "one_sentence_errors": sum(r["outcome"] == "one-line error" for r in rows),
            "correct_results": sum(
                r["outcome"] == "ok" and not r["must_refuse"] for r in rows
            ),
            "tracebacks": sum(r["outcome"] == "traceback" for r in rows),
            "other_errors": sum(r["outcome"] == "bad error output" for r in rows),
            "silently_accepted": sum(
                r["outcome"] == "ok" and r["must_refuse"] for r in rows
            ),
            "silent_restarts": sum(r["silent_restart"] for r in rows),
            "details": rows,
        }


def cli(argv) -> tuple[str, str]:
    """(outcome, the error line or stdout's tail) of ``annzoo ARGV`` in process."""
    from annzoo.cli import main

    err, out = io.StringIO(), io.StringIO()
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
            status = main([str(a) for a in argv])
    except SystemExit as exit:
        status = exit.code
    except BaseException as error:  # noqa: BLE001 - a traceback for the user
        return "traceback", f"{type(error).__name__}: {error}"[:300]
    lines = [x for x in err.getvalue().strip().splitlines() if x.strip()]
    if status == 0:
        return "ok", out.getvalue()[-200:]
    if status == 2 and lines and lines[-1].startswith(("annzoo: error: ", "usage")):
        if "Traceback" in err.getvalue():
            return "traceback", lines[-1]
        return "one-line error", lines[-1]
    return "bad error output", f"status {status}: {err.getvalue()[-300:]}"


def api(call) -> tuple[str, str]:
    from annzoo.errors import AnnzooError

    try:
        call()
    except AnnzooError as error:
        text = str(error)
        return ("one-line error" if "\n" not in text else "bad error output"), text
    except Exception as error:  # noqa: BLE001
        return "traceback", f"{type(error).__name__}: {error}"[:300]
    return "ok", ""


def _tree(folder: Path) -> dict:
    from annzoo import io as aio

    return {
        str(p.relative_to(folder)): aio.file_digest(p) if p.is_file() else "dir"
        for p in sorted(folder.rglob("*"))
    }


OPENED: list = []  # the runs `rundir.open_run` opened (probe_inputs)


def probe_inputs(work: Path) -> dict:
    import numpy as np

    import annzoo
    from annzoo.training import rundir
    from annzoo.training.callbacks import RunBackup

    open_run = rundir.open_run

    def spied_open_run(*args, **kwargs):
        opened = open_run(*args, **kwargs)
        OPENED.append(opened)
        return opened

    rundir.open_run = spied_open_run

    found = Outcomes()
    base = work / "inputs"
    base.mkdir()
    tiny = ["--set", "data.limit=120", "--set", "callbacks.tensorboard=false",
            "--set", "callbacks.early_stopping=null", "--set", "data.pipeline=numpy",
            "--quiet"]  # fmt: skip
    mlp = ["train", "digits_mlp", *tiny, "--set", "model.hidden_units=[8]"]
    cnn = ["train", "digits_cnn", *tiny, "--set", "model.filters=[4]", "--epochs", "1"]
    assert cli([*mlp, "--epochs", "2", "--output-dir", base / "f"])[0] == "ok"
    assert cli([*cnn, "--output-dir", base / "c"])[0] == "ok"
    finished, image_run = base / "f" / "digits_mlp", base / "c" / "digits_cnn"

    class Interrupted(Exception):
        pass

    backup = RunBackup.on_epoch_end

    def die(self, epoch, logs=None):
        backup(self, epoch, logs)
        raise Interrupted

    RunBackup.on_epoch_end = die
    try:
        cli([*mlp, "--epochs", "2", "--output-dir", base / "u"])
    finally:
        RunBackup.on_epoch_end = backup
    unfinished = base / "u" / "digits_mlp"
    assert not rundir.is_finished(unfinished)
    # The undamaged resume and evaluation: what a correct result equals.
    reference = base / "ref"
    shutil.copytree(unfinished, reference / "digits_mlp")
    assert cli([*mlp, "--epochs", "2", "--output-dir", reference])[0] == "ok"
    evaluated = cli(["evaluate", finished])[1]

    # predict inputs (the run of a channels-last 8x8x1 CNN)
    rng = np.random.default_rng(0)
    good = rng.random((5, 8, 8, 1)).astype("float32")

    def npy(array, **kw):
        buffer = io.BytesIO()
        np.save(buffer, array, **kw)
        return buffer.getvalue()

    header = ",".join(f"c{i}" for i in range(64))
    rows = "\n".join(",".join("0.5" for _ in range(64)) for _ in range(3))
    inputs = {
        "truncated.npy": npy(good)[:-9],
        "zeros.npy": bytes(300),
        "strings.npy": npy(np.array(["a", "b"] * 3)),
        "objects.npy": npy(np.array([{}, 1], dtype=object), allow_pickle=True),
        "empty.npy": npy(np.zeros((0, 8, 8, 1), "float32")),
        "junk.png": b"\x89PNG\r\n\x1a\n" + bytes(range(200)),
        "ragged.csv": (header + "\n1,2,3\n" + rows + "\n").encode(),
        "channels_first.npy": npy(good.reshape(5, 1, 8, 8)),
        "wrong_layout.npy": npy(good.reshape(5, 16, 4)),
        "all_nan.npy": npy(np.full((5, 8, 8, 1), np.nan, "float32")),
        "no_header.csv": (rows + "\n").encode(),
    }
    for name, body in inputs.items():
        (base / name).write_bytes(body)
        out = base / "pred" / f"{name}.csv"
        outcome, note = cli(["predict", image_run, base / name, "--output", out])
        found.add(f"predict {name}", outcome, note=note)
    outcome, note = cli(["predict", image_run, "--text", "x", "--beam-width", "0"])
    found.add("predict --beam-width 0", outcome, note=note)
    (base / "ok.npy").write_bytes(npy(good))
    outcome, note = cli(["predict", image_run, base / "ok.npy", "--output",
                         base / "pred" / "ok.csv"])  # fmt: skip
    found.add("predict a well-formed .npy", outcome, must_refuse=False, note=note)

    # run directories read by evaluate / predict / export
    def damaged_copy(run_dir: Path, tag: str) -> Path:
        copy = base / "copies" / tag / run_dir.name
        shutil.copytree(run_dir, copy)
        return copy

    recipe_damages = {"truncated": lambda b: b[: len(b) // 2], "empty": lambda b: b"",
                      "not UTF-8": lambda b: b"\xff\xfe" + b[2:]}  # fmt: skip
    for label, damage in recipe_damages.items():
        for command in ("evaluate", "predict"):
            copy = damaged_copy(image_run, f"{command}-{label}")
            (copy / "recipe.json").write_bytes(
                damage((copy / "recipe.json").read_bytes())
            )
            argv = [command, copy] + ([base / "ok.npy", "--output",
                                       base / "pred" / f"{label}.csv"]
                                      if command == "predict" else [])  # fmt: skip
            outcome, note = cli(argv)
            found.add(f"{command}: recipe.json {label}", outcome, note=note)

    # a finished run: every file kind damaged, then evaluated (or exported)
    kinds = ["recipe.json", "results.json", "manifest.json", "metrics.csv",
             "best.keras", "final.keras"]  # fmt: skip
    damages = {
        "truncated": lambda p: p.write_bytes(p.read_bytes()[: p.stat().st_size // 2]),
        "zeroed": lambda p: p.write_bytes(bytes(p.stat().st_size)),
        "garbled": lambda p: p.write_bytes(_garble(p.read_bytes())),
        "deleted": lambda p: p.unlink(),
    }
    for kind in kinds:
        for label, damage in damages.items():
            copy = damaged_copy(finished, f"f-{kind}-{label}")
            damage(copy / kind)
            before = _tree(copy)
            command = "export" if kind == "final.keras" else "evaluate"
            argv = [command, copy] + (
                ["--which", "final", "--output", base / "exp" / f"{label}.keras"]
                if command == "export" else []
            )  # fmt: skip
            outcome, note = cli(argv)
            # Deleting the manifest must not turn the checks off; a damaged
            # model is never used; any other damage may give the right result.
            must = (kind, label) == ("manifest.json", "deleted") or kind.endswith(
                ".keras"
            )
            if outcome == "ok" and command == "evaluate":
                # What the undamaged run evaluates to, or a wrong success.
                must = must or note != evaluated
            if outcome != "ok" and _tree(copy) != before:
                note += " (FILES CHANGED)"
            found.add(f"{command} finished run, {kind} {label}", outcome,
                      must_refuse=must, note=note)  # fmt: skip

    # an unfinished run: every file kind damaged, then resumed
    model_file = json.loads((unfinished / "state" / "progress.json").read_text())[
        "model_file"
    ]
    ukinds = ["recipe.json", "metrics.csv", "best.keras", "final.keras",
              "state/progress.json", f"state/{model_file}"]  # fmt: skip
    reference_final = keras_arrays(reference / "digits_mlp" / "final.keras")
    for kind in ukinds:
        for label, damage in damages.items():
            copy = damaged_copy(unfinished, f"u-{kind.replace('/', '_')}-{label}")
            if not (copy / kind).exists():
                continue
            damage(copy / kind)
            before = _tree(copy)
            OPENED.clear()
            outcome, note = cli([*mlp, "--epochs", "2", "--output-dir", copy.parent])
            beside = sorted(p.name for p in copy.parent.iterdir())
            # Trained, but not from the committed epoch 1 of this directory.
            restart = beside != ["digits_mlp"] or any(
                run.path != copy or run.initial_epoch != 1 for run in OPENED
            )
            must = True
            if outcome == "ok":
                same = keras_arrays(copy / "final.keras") == reference_final
                must = not same
                note += f" final weights {'equal' if same else 'DIFFER'}"
            elif _tree(copy) != before:
                note += " (FILES CHANGED)"
            found.add(f"resume unfinished run, {kind} {label}", outcome,
                      must_refuse=must, restart=restart, note=note)  # fmt: skip
    for label, names in {"results.json": ["results.json"],
                         "results.json and manifest.json":
                         ["results.json", "manifest.json"]}.items():  # fmt: skip
        copy = damaged_copy(finished, f"rerun-{label}")
        for name in names:
            (copy / name).unlink()
        before = _tree(copy)
        outcome, note = cli([*mlp, "--epochs", "2", "--output-dir", copy.parent])
        restart = _tree(copy) != before  # retrained over a finished run
        found.add(f"rerun finished run, {label} deleted", outcome,
                  must_refuse=len(names) == 2, restart=restart, note=note)  # fmt: skip

    # train and tune arguments
    junk = base / "junk.json"
    junk.write_bytes(bytes(range(256)))
    a_file = base / "a_file"
    a_file.write_text("x")
    for name, argv in {
        "recipe file of binary junk": ["train", junk],
        "--set callbacks.monitor=val_acc": [*mlp, "--set", "callbacks.monitor=val_acc"],
        "--set model.hidden_units=[10000000000]":
            [*mlp, "--set", "model.hidden_units=[10000000000]"],
        "--output-dir an existing file": [*mlp, "--output-dir", a_file],
        "--output-dir under a file": [*mlp, "--output-dir", a_file / "x"],
        "--set fit.epochs=0": [*mlp, "--set", "fit.epochs=0"],
        "--set compile.learning_rate=.nan":
            [*mlp, "--set", "compile.learning_rate=.nan"],
        "tune --objective bogus": ["tune", "digits_mlp", "--max-trials", "1",
                                   "--objective", "bogus", "--quiet"],
        "tune --output-dir an existing file": ["tune", "digits_mlp", "--output-dir",
                                               a_file, "--quiet"],
    }.items():  # fmt: skip
        if "--output-dir" not in argv:
            argv = [*argv, "--output-dir", base / "args"]
        outcome, note = cli(argv)
        found.add(name, outcome, note=note)

    # a search directory with keras-tuner's files removed
    search_args = ["tune", "digits_mlp", *tiny, "--max-trials", "1", "--epochs", "1"]
    assert cli([*search_args, "--output-dir", base / "s"])[0] == "ok"
    project = base / "s" / "digits_mlp"
    for label in ("oracle.json", "trial.json"):
        copy = base / f"s-{label}" / "digits_mlp"
        shutil.copytree(project, copy)
        victim = (copy / "search" / "oracle.json" if label == "oracle.json"
                  else sorted(copy.glob("search/trial_*/trial.json"))[0])  # fmt: skip
        victim.unlink()
        before = _tree(copy)
        outcome, note = cli([*search_args, "--output-dir", copy.parent])
        if _tree(copy) != before:
            note += " (FILES CHANGED)"
        found.add(f"tune: {label} removed", outcome, note=note)

    # the Python API
    soft = annzoo.build_mlp((30,), 3, compile=False)
    for name, call in {
        "build_mlp(30, 10**13)": lambda: annzoo.build_mlp((30,), 10**13),
        "build_mlp(batch_norm='yes')": lambda: annzoo.build_mlp((30,), 3,
                                                                 batch_norm="yes"),
        "build_mlp(name='')": lambda: annzoo.build_mlp((30,), 3, name=""),
        "compile_model(softmax, task='regression')":
            lambda: annzoo.compile_model(soft, task="regression"),
    }.items():  # fmt: skip
        outcome, note = api(call)
        found.add(name, outcome, note=note)
    return found.summary()


def _garble(body: bytes) -> bytes:
    if not body:
        return body
    at = len(body) // 3
    return body[:at] + bytes([body[at] ^ 0x5A]) + body[at + 1 :]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="probe_results.json")
    parser.add_argument("--quick", action="store_true", help="one of each")
    parser.add_argument(
        "--only", help="comma-separated: kills,searches,concurrent,inputs"
    )
    parser.add_argument("--seed", type=int, default=26)
    args = parser.parse_args(argv)
    sys.path.insert(0, str(ROOT))
    from annzoo import io as aio

    rng = random.Random(args.seed)
    only = set((args.only or "kills,searches,concurrent,inputs").split(","))
    results: dict = {"seed": args.seed, "started": time.strftime("%F %T")}
    out = Path(args.out)
    quick = args.quick
    with tempfile.TemporaryDirectory(prefix="annzoo-probe-") as tmp:
        work = Path(tmp)
        steps = [
            ("inputs", lambda: probe_inputs(work)),
            ("concurrent", lambda: probe_concurrent(work, 1 if quick else 5)),
            ("kills", lambda: probe_training_kills(work, 1 if quick else 6,
                                                   2 if quick else 3, rng)),
            ("searches", lambda: probe_search_kills(work, 1 if quick else 3,
                                                    1 if quick else 2, rng)),
        ]  # fmt: skip
        for name, step in steps:
            if name not in only:
                continue
            say(f"-- {name}")
            try:
                results[name] = step()
            except Exception:  # noqa: BLE001 - the probe itself broke: say so
                results[name] = {"probe_failed": traceback.format_exc()[-3000:]}
                say(f"{name}: the probe failed:\n{results[name]['probe_failed']}")
            results["elapsed_s"] = round(time.monotonic() - STARTED, 1)
            aio.write_json(out, results)
            shown = {k: v for k, v in results[name].items() if k != "details"}
            say(f"{name}: {json.dumps(shown)}")
    say(f"results in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

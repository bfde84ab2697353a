"""Issue 26: a property-based fuzz test of damaged run directories.

One module fixture trains a tiny recipe twice: a finished run, and the same
recipe stopped right after its first epoch was committed (an exception at the
end of the run's backup: on disk, what a kill at that moment leaves).
Hypothesis then draws, for each example, one of the two runs, one or two
damages (a file of the run truncated at an offset, zeroed, garbled or
deleted, for each kind of file the run holds) and the command that reads the
run: ``annzoo train`` (a resume of the unfinished run, a rerun of the
finished one), ``evaluate``, ``predict``, ``export`` or ``finetune``, run in
process. It asserts for each:

- the command exits with status 2 and prints one ``annzoo: error:`` line,
  no traceback; and then no file of the damaged directory changed and no run
  directory was started beside it;
- or it gives the correct result, the one the same command gives on an
  undamaged copy: the same evaluation, predictions, exported weights,
  fine-tuned weights, and for a resume the same final and best weights
  (and optimizer slots) as the undamaged resume;
- never a silent restart: a resume that trains does so in the damaged
  directory from its committed epoch 1, never from epoch 0 and never in a
  new ``NAME-2``; a rerun of a finished run goes to ``NAME-2`` and leaves
  the finished run as it was.

Text files (JSON, CSV) are garbled with a byte whose high bit is set, so a
garbled text file is never valid UTF-8: a damage, not an edit (an edited
recipe of an unfinished run is another recipe). The examples are seeded
(``derandomize=True``) and bounded for CI; ``ANNZOO_FUZZ_EXAMPLES=N`` runs N
fresh examples (see docs/contributing.md). The test prints its tally:
damages tried, one-line errors, correct results, tracebacks, silent
restarts (the last two always 0: the first one fails the test).
"""

from __future__ import annotations

import collections
import io
import json
import os
import shutil
import sys
import tempfile
import traceback
import zipfile
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from annzoo import io as aio  # noqa: E402
from annzoo.cli import main  # noqa: E402
from annzoo.training import rundir  # noqa: E402
from annzoo.training.callbacks import RunBackup  # noqa: E402

VERBOSE = bool(os.environ.get("ANNZOO_FUZZ_VERBOSE"))
EXAMPLES = int(os.environ.get("ANNZOO_FUZZ_EXAMPLES", "0")) or None
FUZZ = settings(
    max_examples=EXAMPLES or 25,
    derandomize=EXAMPLES is None,  # CI: the same examples every run
    deadline=None,
    database=None,
    suppress_health_check=list(hypothesis.HealthCheck),
)
NAME = "fuzzrun"
RECIPE = {
    "name": NAME,
    "model": {"name": "mlp", "hidden_units": [8]},
    "data": {"dataset": "digits", "limit": 64, "pipeline": "numpy"},
    "fit": {"epochs": 2, "seed": 3},
    "callbacks": {"tensorboard": False, "early_stopping": None},
}
TALLY: collections.Counter = collections.Counter()
TEXT_FILES = (".json", ".csv")


class Interrupted(Exception):
    """The process 'dies' here."""


def _tree(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): aio.file_digest(p) if p.is_file() else "dir"
        for p in sorted(folder.rglob("*"))
    }


def keras_arrays(path: Path) -> dict[str, bytes]:
    """Every array of a ``.keras`` file: the weights and optimizer slots."""
    import h5py

    with zipfile.ZipFile(path) as archive:
        data = archive.read("model.weights.h5")
    arrays: dict[str, bytes] = {}
    with h5py.File(io.BytesIO(data), "r") as h5:
        h5.visititems(
            lambda name, item: (
                arrays.__setitem__(name, item[()].tobytes())
                if isinstance(item, h5py.Dataset)
                else None
            )
        )
    return arrays


class Opened:
    """The runs `rundir.open_run` opened during one command."""

    runs: list = []


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    base = tmp_path_factory.mktemp("fuzzruns")
    recipe = base / f"{NAME}.json"
    recipe.write_text(json.dumps(RECIPE))
    train = ["train", recipe, "--quiet", "--output-dir"]
    assert main([str(a) for a in [*train, base / "finished"]]) == 0
    backup = RunBackup.on_epoch_end

    def die_after_the_first_commit(self, epoch, logs=None):
        backup(self, epoch, logs)
        raise Interrupted

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(RunBackup, "on_epoch_end", die_after_the_first_commit)
        with pytest.raises(Interrupted):
            main([str(a) for a in [*train, base / "unfinished"]])
    unfinished = base / "unfinished" / NAME
    progress = json.loads((unfinished / "state" / "progress.json").read_text())
    assert progress["epoch"] == 1 and not rundir.is_finished(unfinished)
    inputs = base / "inputs.npy"
    np.save(inputs, np.random.default_rng(0).random((3, 64)).astype("float32") * 16)
    return SimpleNamespace(
        base=base,
        recipe=recipe,
        inputs=inputs,
        finished=base / "finished" / NAME,
        unfinished=unfinished,
        references={},
    )


@pytest.fixture
def opened(monkeypatch):
    open_run = rundir.open_run

    def spied(*args, **kwargs):
        run = open_run(*args, **kwargs)
        Opened.runs.append(run)
        return run

    monkeypatch.setattr(rundir, "open_run", spied)
    yield Opened.runs
    Opened.runs.clear()


def _files(run_dir: Path) -> list[str]:
    """The kinds of file the fuzz damages, as the run holds them."""
    kinds = ["recipe.json", "results.json", "manifest.json", "metrics.csv",
             "best.keras", "final.keras", "vocabulary.json",
             "state/progress.json"]  # fmt: skip
    found = [k for k in kinds if (run_dir / k).is_file()]
    found += sorted(
        f"state/{p.name}" for p in (run_dir / "state").glob("*.keras")
    )  # the state's model
    return found


damage = st.tuples(
    st.sampled_from(["truncate", "zero", "garble", "delete"]),
    st.integers(0, 2**31),  # where (an offset, taken modulo the size)
    st.integers(1, 255),  # the byte a garble XORs with
)


def _damage(path: Path, kind: str, where: int, xor: int) -> str:
    if not path.is_file():
        return f"{path.name} already gone"
    body = path.read_bytes()
    if kind == "delete" or not body:
        path.unlink()
        return f"{path.name} deleted"
    at = where % len(body)
    if kind == "truncate":
        path.write_bytes(body[:at])
        return f"{path.name} cut to {at} of {len(body)} bytes"
    if kind == "zero":
        path.write_bytes(bytes(len(body)))
        return f"{path.name} zeroed"
    if path.suffix in TEXT_FILES:
        xor |= 0x80  # never valid UTF-8 after it: a damage, not an edit
    path.write_bytes(body[:at] + bytes([body[at] ^ xor]) + body[at + 1 :])
    return f"{path.name} byte {at} of {len(body)} XOR {xor:#x}"


@st.composite
def cases(draw):
    run = draw(st.sampled_from(["unfinished", "finished"]))
    # Weighted towards the cheap commands: a rerun of the finished run and a
    # fine-tuning each train a whole run (the suite's time budget).
    commands = {
        "unfinished": ["train", "evaluate", "predict", "train", "export", "evaluate",
                       "predict", "finetune"],
        "finished": ["evaluate", "predict", "export", "evaluate", "predict",
                     "export", "train", "finetune"],
    }[run]  # fmt: skip
    command = draw(st.sampled_from(commands))
    count = draw(st.integers(1, 2))
    files = draw(st.lists(st.integers(0, 100), min_size=count, max_size=count))
    damages = draw(st.lists(damage, min_size=count, max_size=count))
    return run, command, list(zip(files, damages, strict=True))


def _run(argv, capsys) -> tuple[str, str]:
    """("refused" | "ok", the error line or stdout); fails on a traceback."""
    try:
        status = main([str(a) for a in argv])
    except SystemExit as exit:  # argparse
        err = capsys.readouterr().err
        assert exit.code == 2, err
        return "refused", err.strip().splitlines()[-1]
    except Exception as error:
        TALLY["tracebacks"] += 1
        shown = "".join(traceback.format_exception(error))[-3000:]
        raise AssertionError(f"traceback for {argv}:\n{shown}") from error
    captured = capsys.readouterr()
    lines = [line for line in captured.err.strip().splitlines() if line]
    if status == 0:
        return "ok", captured.out
    assert status == 2, (status, captured.err)
    assert "Traceback" not in captured.err, captured.err
    assert len(lines) == 1 and lines[0].startswith("annzoo: error: "), captured.err
    return "refused", lines[0]


def _command(command: str, run_dir: Path, runs, out: Path) -> list:
    """The command line that reads ``run_dir``, writing outside it to ``out``."""
    if command == "train":
        return ["train", runs.recipe, "--output-dir", run_dir.parent, "--quiet"]
    if command == "evaluate":
        return ["evaluate", run_dir]
    if command == "predict":
        return ["predict", run_dir, runs.inputs, "--output", out / "predictions.csv"]
    if command == "export":
        return ["export", run_dir, "--output", out / "exported.keras"]
    return ["finetune", run_dir, runs.recipe, "--output-dir", out, "--quiet"]


def _result(command: str, run_dir: Path, out: Path, stdout: str):
    """What a command that succeeded gave, to compare with the undamaged."""
    if command == "train":
        return keras_arrays(run_dir / "final.keras"), keras_arrays(
            run_dir / "best.keras"
        )
    if command == "evaluate":
        return json.loads(stdout[stdout.index("{") :])
    if command == "predict":
        return (out / "predictions.csv").read_bytes()
    if command == "export":
        return keras_arrays(out / "exported.keras")
    (tuned,) = out.glob("*/final.keras")  # the fine-tuned run, NAME-finetune
    return keras_arrays(tuned)


def _reference(runs, which: str, command: str, capsys, tmp: Path):
    """The command's result on an undamaged copy (computed once)."""
    key = which, command
    if key not in runs.references:
        copy = Path(tempfile.mkdtemp(dir=tmp)) / NAME
        shutil.copytree(getattr(runs, which), copy)
        out = copy.parent / "out"
        outcome, said = _run(_command(command, copy, runs, out), capsys)
        assert outcome == "ok", (which, command, said)
        ran = copy.parent / f"{NAME}-2" if (
            which == "finished" and command == "train"
        ) else copy  # fmt: skip
        runs.references[key] = _result(command, ran, out, said)
        Opened.runs.clear()
    return runs.references[key]


def test_damaged_run_directories(runs, tmp_path_factory, capsys, opened):
    @FUZZ
    @given(case=cases())
    def check(case):
        which, command, damages = case
        tmp = tmp_path_factory.mktemp("case")
        copy = tmp / "runs" / NAME
        shutil.copytree(getattr(runs, which), copy)
        files = _files(copy)
        done = [
            _damage(copy / files[index % len(files)], *how) for index, how in damages
        ]
        expected = _reference(
            runs, which, command, capsys, tmp_path_factory.getbasetemp()
        )
        before, out = _tree(copy), tmp / "out"
        Opened.runs.clear()
        outcome, said = _run(_command(command, copy, runs, out), capsys)
        TALLY["tried"] += 1
        if VERBOSE:
            print(f"{which} {command} {done}: {outcome}: {said[:200]}",
                  file=sys.__stdout__)  # fmt: skip
        beside = sorted(p.name for p in copy.parent.iterdir())
        if outcome == "refused":
            TALLY["one-line errors"] += 1
            assert _tree(copy) == before, (which, command, done, said)
            assert beside == [NAME], (which, command, done, beside)
            assert not out.exists() or not any(out.rglob("*.keras")), done
            return
        ran = copy
        if command == "train":
            trained = [r for r in Opened.runs if r.path is not None]
            if which == "unfinished":
                # Resumed in place from its committed epoch: never from 0,
                # never in a new directory beside it.
                restarted = beside != [NAME] or any(
                    r.path != copy or r.initial_epoch != 1 for r in trained
                )
            else:
                ran = copy.parent / f"{NAME}-2"
                restarted = _tree(copy) != before or any(
                    r.path == copy for r in trained
                )
            if restarted:
                TALLY["silent restarts"] += 1
            assert not restarted, (which, done, beside, [r.path for r in trained])
        got = _result(command, ran, out, said)
        assert got == expected, (which, command, done, "a wrong result")
        TALLY["correct results"] += 1

    check()
    with capsys.disabled():
        print(
            f"\nfuzz damaged run directories: {TALLY['tried']} damages tried, "
            f"{TALLY['one-line errors']} one-line errors, {TALLY['correct results']} "
            f"correct results, {TALLY['tracebacks']} tracebacks, "
            f"{TALLY['silent restarts']} silent restarts"
        )

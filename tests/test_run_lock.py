"""One writer per run or search directory (issue 26).

The lock is ``flock`` on the directory (`annzoo.io.lock_directory`): a
second holder is refused even in the same process, and the kernel drops it
when its process dies. Concurrency is tested with real processes: children
forked from this one (cheap: TensorFlow is already imported) race for new
run directories and are SIGKILLed while holding a lock, and a training
process stopped in its first epoch holds its run directory while another
asks for it.
"""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import keras
import numpy as np
import pytest

from annzoo import io as aio
from annzoo.cli import main as annzoo
from annzoo.errors import AnnzooError
from annzoo.training import distribute, rundir

from . import _kill_hooks as hooks
from .conftest import ROOT, subprocess_env

RECIPE = {
    "name": "lock",
    "model": {"name": "mlp", "hidden_units": [16]},
    "data": {"dataset": "digits", "limit": 64, "pipeline": "numpy"},
    "fit": {"epochs": 2, "seed": 3},
    "callbacks": {"tensorboard": False, "early_stopping": None},
}
NO_JOB = distribute.Plan("none")


def _write_recipe(folder: Path, **fit) -> Path:
    data = json.loads(json.dumps(RECIPE))
    data["fit"].update(fit)
    path = folder / f"lock-{data['fit']['seed']}.json"
    path.write_text(json.dumps(data))
    return path


def _one_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    return err


def _tree(folder: Path) -> dict[str, str]:
    """Every file and folder under ``folder``, files with their SHA-256."""
    return {
        str(p.relative_to(folder)): aio.file_digest(p) if p.is_file() else "dir"
        for p in sorted(folder.rglob("*"))
    }


def test_a_directory_lock_has_one_holder_until_released(tmp_path):
    first = aio.lock_directory(tmp_path)
    assert first is not None and first.held
    # Another descriptor, even in this process, is refused without waiting.
    assert aio.lock_directory(tmp_path) is None
    assert aio.lock_holder(tmp_path) == os.getpid()
    first.release()
    assert aio.lock_holder(tmp_path) is None
    with aio.lock_directory(tmp_path) as second:
        assert second.held and aio.lock_directory(tmp_path) is None
    assert aio.lock_holder(tmp_path) is None
    with pytest.raises(AnnzooError, match="Cannot open"):
        aio.lock_directory(tmp_path / "missing")


def _fork(work) -> tuple[int, int, int]:
    """Forks a child that waits for a byte on its start pipe, runs ``work()``
    and writes its result (one line) to its report pipe; returns
    (pid, start fd, report fd). The child lingers until killed or until its
    start pipe closes, so the locks it took are held meanwhile."""
    start_r, start_w = os.pipe()
    report_r, report_w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: no pytest, no Python cleanup
        try:
            os.close(start_w)
            os.close(report_r)
            os.read(start_r, 1)
            line = work()
            os.write(report_w, (line + "\n").encode())
            os.read(start_r, 1)  # hold on until the parent closes the pipe
        finally:
            os._exit(0)
    os.close(start_r)
    os.close(report_w)
    return pid, start_w, report_r


def _read_line(fd: int, timeout: float = 60) -> str:
    data = b""
    while not data.endswith(b"\n"):
        ready, _, _ = select.select([fd], [], [], timeout)
        assert ready, "the child did not report"
        chunk = os.read(fd, 4096)
        assert chunk, "the child died without reporting"
        data += chunk
    return data.decode().strip()


def _race(output: Path, count: int, resume: bool) -> list[tuple[int, str]]:
    """``count`` processes open a run of the same name at the same moment;
    returns what each got: its directory, or its error."""
    resolved = {"name": "race", "fit": {"seed": 1}}

    def work() -> str:
        try:
            run = rundir.open_run(output, "race", resolved, resume=resume, plan=NO_JOB)
        except AnnzooError as error:
            return f"error {error}"
        return f"run {run.path.name}"

    children = [_fork(work) for _ in range(count)]
    try:
        for _, start, _ in children:
            os.write(start, b"g")  # all start together
        return [(pid, _read_line(report)) for pid, _, report in children]
    finally:
        # Every start pipe first: each child holds copies of its elders'.
        for _, start, report in children:
            os.close(start)  # the children exit, dropping their locks
            os.close(report)
        for pid, _, _ in children:
            os.waitpid(pid, 0)


def test_concurrent_new_runs_of_one_name_get_distinct_directories(tmp_path):
    got = _race(tmp_path, 4, resume=False)
    names = sorted(line.split()[1] for _, line in got)
    assert names == ["race", "race-2", "race-3", "race-4"], got
    # Each claimed directory is there; nothing else was made.
    assert sorted(p.name for p in tmp_path.iterdir()) == names


def test_concurrent_runs_resuming_one_name_give_one_writer_and_errors(tmp_path):
    got = _race(tmp_path, 3, resume=True)
    winners = [pid for pid, line in got if line == "run race"]
    assert len(winners) == 1, got
    for _, line in got:
        if line != "run race":  # the others name the directory and its holder
            assert line.startswith("error ") and "\n" not in line, line
            assert f"{str(tmp_path / 'race')!r} is in use by process " in line
            assert f"process {winners[0]}," in line and "--no-resume" in line
    assert [p.name for p in tmp_path.iterdir()] == ["race"]


def test_a_killed_holder_leaves_no_stale_lock(tmp_path):
    def work() -> str:
        # Held until the process dies: nothing closes the descriptor.
        lock = aio.lock_directory(tmp_path)
        return "locked" if lock is not None else "busy"

    pid, start, report = _fork(work)
    try:
        os.write(start, b"g")
        assert _read_line(report) == "locked"
        assert aio.lock_directory(tmp_path) is None
        assert aio.lock_holder(tmp_path) == pid
        os.kill(pid, signal.SIGKILL)
        _, status = os.waitpid(pid, 0)
        assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL
    finally:
        os.close(start)
        os.close(report)
    # No unlock ran in the killed process: the kernel dropped its lock.
    lock = aio.lock_directory(tmp_path)
    assert lock is not None and lock.held
    lock.release()


def test_a_run_directory_in_use_is_refused_by_the_cli(tmp_path, capsys):
    recipe = _write_recipe(tmp_path)
    output = tmp_path / "runs"
    (output / "lock").mkdir(parents=True)
    with aio.lock_directory(output / "lock"):  # another writer (this process)
        status = annzoo(["train", str(recipe), "--output-dir", str(output)])
        message = _one_line(capsys)
        assert status == 2
        assert message.startswith(f"annzoo: error: {str(output / 'lock')!r} is in use")
        assert f"process {os.getpid()}" in message
    # Nothing was written, and no directory beside it was started.
    assert _tree(output) == {"lock": "dir"}


def test_a_search_directory_in_use_is_refused(tmp_path):
    from annzoo.tuning import tune

    (tmp_path / "lock").mkdir()
    with aio.lock_directory(tmp_path / "lock"):
        with pytest.raises(AnnzooError, match="in use by process") as caught:
            tune(RECIPE, max_trials=1, output_dir=tmp_path, verbose=0)
    assert str(tmp_path / "lock") in str(caught.value)
    assert "\n" not in str(caught.value)
    assert _tree(tmp_path) == {"lock": "dir"}


def _weights(path: Path) -> list[str]:
    return [
        np.asarray(w).tobytes().hex() for w in keras.saving.load_model(path).weights
    ]


@pytest.mark.slow
def test_a_second_writer_never_mixes_into_a_run_and_a_killed_one_resumes(
    tmp_path, capsys
):
    """A training process, stopped at the end of its first epoch, holds its
    run directory: another seed's run (a third process) is refused naming it
    and its process id (nothing of it lands there), a new run goes beside it
    (``lock-2``);
    killed with SIGKILL, its lock is gone and the same command resumes it,
    ending byte for byte as the uninterrupted run beside it."""
    recipe = _write_recipe(tmp_path)
    other = _write_recipe(tmp_path, seed=4)
    output = tmp_path / "runs"
    run = output / "lock"
    events = tmp_path / "events.jsonl"
    holder = subprocess.Popen(
        hooks.command("train", str(recipe), "--output-dir", str(output), "--quiet"),
        cwd=ROOT,
        env=hooks.environment(
            subprocess_env(KERAS_BACKEND="tensorflow"),
            {"at": "epoch_end", "epoch": 1},
            events,
        ),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = 600
        while not hooks.events(events, "stop"):
            assert holder.poll() is None, holder.stderr.read()[-3000:]
            deadline -= 0.05
            assert deadline > 0
            time.sleep(0.05)
        before = _tree(run)
        assert json.loads((run / "state" / "progress.json").read_text())["epoch"] == 1

        # Another seed, same name, from a third process (`python -m annzoo.cli`):
        # refused in one line naming the directory and the process writing it.
        second = subprocess.run(
            [sys.executable, "-m", "annzoo.cli", "train", str(other), "--output-dir",
             str(output), "--quiet"],
            cwd=ROOT, env=subprocess_env(), capture_output=True, text=True,
            timeout=600,
        )  # fmt: skip
        said = [line for line in second.stderr.splitlines() if "annzoo" in line]
        assert second.returncode == 2 and "Traceback" not in second.stderr, said
        assert len(said) == 1 and said[0].startswith("annzoo: error: "), said
        assert f"{str(run)!r} is in use by process {holder.pid}," in said[0]
        assert _tree(run) == before
        # A new run of the same recipe goes beside it, uninterrupted.
        assert annzoo(["train", str(recipe), "--output-dir", str(output),
                       "--no-resume", "--quiet"]) == 0  # fmt: skip
        assert _tree(run) == before
    finally:
        holder.kill()  # SIGKILL: no cleanup runs in the holder
        holder.wait(timeout=60)
    assert holder.returncode == -signal.SIGKILL
    # The kernel dropped the dead holder's lock: the same command resumes it.
    assert annzoo(["train", str(recipe), "--output-dir", str(output)]) == 0
    out = capsys.readouterr().out
    assert f"resuming after epoch 1 {run}" in out, out[-2000:]
    assert sorted(p.name for p in output.iterdir()) == ["lock", "lock-2"]
    beside = output / "lock-2"
    for name in ("metrics.csv", "recipe.json"):
        assert (run / name).read_bytes() == (beside / name).read_bytes(), name
    for folder in (run, beside):
        assert json.loads((folder / "recipe.json").read_text())["fit"]["seed"] == 3
        assert json.loads((folder / "results.json").read_text())["seed"] == 3
    assert _weights(run / "final.keras") == _weights(beside / "final.keras")
    assert _weights(run / "best.keras") == _weights(beside / "best.keras")

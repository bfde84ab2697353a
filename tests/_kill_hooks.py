"""Kill points that the process under test reaches and signals itself.

A test runs ``python -m tests._kill_hooks ARGS`` (the ``annzoo ARGS``
command) with `POINT_ENV` naming a kill point and `EVENTS_ENV` a file. Before
``annzoo.cli.main`` runs, the process wraps, from the outside:

- ``annzoo.io.atomic_path``, which every file annzoo writes goes through: a
  *save* point is the moment a named file's temporary has been created
  (``"begun"``) or completely written and not yet renamed (``"written"``);
- ``keras.Model.fit``, adding a callback: *epoch_begin*, *steps* and
  *epoch_end* points. A steps point is in the epoch's training steps:
  ``"when": "begin"`` before the first call of steps, ``"end"`` after it
  (Keras calls batch hooks once per call of ``steps_per_execution`` steps;
  the runs killed here train an epoch in one call) or ``"validation"`` when
  the epoch's validation begins. Nothing is written between an epoch's
  saves, so where a kill lands inside the steps changes nothing on disk. An
  epoch_end point comes after every other callback: the epoch committed;
- ``annzoo.training.rundir.open_run`` and ``annzoo.tuning.trials.tuner_class``,
  to record which epoch a run resumes from and which trials a search begins.

At the point the process records a ``stop`` event and stops itself with
SIGSTOP; the test then SIGKILLs it (`stop_then_kill`, `kill_stopped_job`).
Nothing is timed: the kill lands where the point says, every time. Epochs are
1-based as annzoo reports them; points apply to process 0 of a job only.

Events are JSON lines: ``run`` (``resumed_from``), ``trial`` (``trial``),
``epoch`` (``epoch``, ``trial``: an epoch begun) and ``stop`` (``point``,
``tmp``: the temporary a save point left).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
import time
from pathlib import Path

POINT_ENV = "ANNZOO_TEST_KILL_POINT"
EVENTS_ENV = "ANNZOO_TEST_EVENTS"


# ---------------------------------------------------------------- the child


class _State:
    epoch = 0  # the 1-based epoch under way (or last begun)
    trial: str | None = None
    stopped = False


def _process_id() -> int:
    argv = sys.argv
    for i, arg in enumerate(argv):
        if arg == "--process-id" and i + 1 < len(argv):
            return int(argv[i + 1])
        if arg.startswith("--process-id="):
            return int(arg.split("=", 1)[1])
    return 0


def _record(event: str, **fields) -> None:
    path = os.environ.get(EVENTS_ENV)
    if not path:
        return
    line = json.dumps(
        {"event": event, "pid": os.getpid(), "process": _process_id(), **fields}
    )
    # One write of one line with O_APPEND: the processes of a job never mix.
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (line + "\n").encode())
    finally:
        os.close(fd)


def _stop(point: dict, **fields) -> None:
    _State.stopped = True
    _record("stop", point=point, epoch=_State.epoch, trial=_State.trial, **fields)
    os.kill(os.getpid(), signal.SIGSTOP)
    # Only reached when the test continues the process instead of killing it.


def _matches(point: dict, at: str, **where) -> bool:
    if _State.stopped or point.get("at") != at or _process_id() != 0:
        return False
    if "trial" in point and point["trial"] != _State.trial:
        return False
    if "epoch" in point and point["epoch"] not in (None, _State.epoch):
        return False
    if at == "steps":
        return where["when"] == point["when"]
    if at == "save":
        return where["name"] == point["file"] and where["phase"] == point["phase"]
    return True


def install(point: dict | None) -> None:
    """Wraps annzoo and Keras (see the module docstring) for ``point``."""
    import keras

    from annzoo import io as aio
    from annzoo.training import rundir
    from annzoo.tuning import trials

    point = point or {}
    atomic_path = aio.atomic_path

    @contextlib.contextmanager
    def watched_path(path):
        name = Path(path).name
        with atomic_path(path) as tmp:
            if _matches(point, "save", name=name, phase="begun"):
                _stop(point, tmp=str(tmp), target=str(path))
            yield tmp
            if _matches(point, "save", name=name, phase="written"):
                _stop(point, tmp=str(tmp), target=str(path))

    aio.atomic_path = watched_path

    class Watch(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            _State.epoch = epoch + 1
            _record("epoch", epoch=epoch + 1, trial=_State.trial)
            if _matches(point, "epoch_begin"):
                _stop(point)

        def on_epoch_end(self, epoch, logs=None):
            if _matches(point, "epoch_end"):
                _stop(point)

    class WatchSteps(Watch):
        def on_train_batch_begin(self, batch, logs=None):
            if _matches(point, "steps", when="begin"):
                _stop(point, batch=batch)

        def on_train_batch_end(self, batch, logs=None):
            if _matches(point, "steps", when="end"):
                _stop(point, batch=batch)

        def on_test_begin(self, logs=None):
            if _matches(point, "steps", when="validation"):
                _stop(point)

    # Batch hooks only where a point needs them (they cost a sync per call).
    watch = WatchSteps if point.get("at") == "steps" else Watch
    fit = keras.Model.fit

    def watched_fit(model, *args, callbacks=None, **kwargs):
        # Last: its epoch end comes after the run's backup of the epoch.
        callbacks = [*(callbacks or []), watch()]
        return fit(model, *args, callbacks=callbacks, **kwargs)

    keras.Model.fit = watched_fit

    open_run = rundir.open_run

    def watched_open_run(*args, **kwargs):
        run = open_run(*args, **kwargs)
        _record("run", resumed_from=run.initial_epoch)
        return run

    rundir.open_run = watched_open_run

    tuner_class = trials.tuner_class

    def watched_tuner_class(*args, **kwargs):
        base = tuner_class(*args, **kwargs)

        class Watched(base):
            def on_trial_begin(self, trial):
                _State.trial = str(trial.trial_id)
                _State.epoch = 0
                _record("trial", trial=_State.trial)
                super().on_trial_begin(trial)

        Watched.__name__ = base.__name__
        return Watched

    trials.tuner_class = watched_tuner_class


def main(argv: list[str]) -> int:
    point = os.environ.get(POINT_ENV)
    install(json.loads(point) if point else None)
    from annzoo.cli import main as annzoo

    return annzoo(argv)


# ----------------------------------------------------------------- the test


def command(*args: str) -> list[str]:
    """``annzoo ARGS`` through this module."""
    return [sys.executable, "-m", "tests._kill_hooks", *args]


def environment(env: dict, point: dict | None, events: Path) -> dict:
    """``env`` with the kill point and the events file set."""
    env = dict(env)
    env.pop(POINT_ENV, None)
    if point is not None:
        env[POINT_ENV] = json.dumps(point)
    env[EVENTS_ENV] = str(events)
    return env


def events(path: Path, event: str | None = None) -> list[dict]:
    """The events recorded in ``path`` (of one kind, with ``event``)."""
    try:
        lines = path.read_text().splitlines()
    except FileNotFoundError:
        return []
    found = [json.loads(line) for line in lines if line.strip()]
    return [e for e in found if event is None or e["event"] == event]


def stop_then_kill(process, timeout: float = 300) -> bool:
    """Waits for the child ``process`` (a Popen) to stop itself, then
    SIGKILLs it; returns False, the child reaped, when it exited instead."""
    deadline = time.monotonic() + timeout
    while True:
        pid, status = os.waitpid(process.pid, os.WNOHANG | os.WUNTRACED)
        if pid and os.WIFSTOPPED(status):
            os.kill(process.pid, signal.SIGKILL)
            process.wait(timeout=60)
            return True
        if pid:  # it exited: Popen must not wait for it again
            process.returncode = os.waitstatus_to_exitcode(status)
            return False
        if time.monotonic() > deadline:
            process.kill()
            process.wait(timeout=60)
            raise AssertionError(f"no kill point reached in {timeout} s")
        time.sleep(0.01)


def _state(pid: int) -> str | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[0]


def kill_stopped_job(job, path: Path, timeout: float = 300) -> dict | None:
    """For a job (a Popen started with ``start_new_session``) whose process 0
    is a grandchild: waits for its ``stop`` event in ``path`` and for it to be
    stopped, then SIGKILLs the job's process group; returns the event, or
    None when the job ended first."""
    deadline = time.monotonic() + timeout
    while job.poll() is None:
        stops = events(path, "stop")
        if stops and _state(stops[0]["pid"]) in ("T", "t"):
            os.killpg(job.pid, signal.SIGKILL)
            job.wait(timeout=60)
            return stops[0]
        if time.monotonic() > deadline:
            os.killpg(job.pid, signal.SIGKILL)
            job.wait(timeout=60)
            raise AssertionError(f"no kill point reached in {timeout} s")
        time.sleep(0.01)
    return None


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""Shared fixtures (a fresh-process model loader, subprocess helpers) and the
hooks behind the suite's passes.

The passes, all run by ``scripts/dev.sh test`` (markers in setup.cfg):

- ``pytest``: everything, on the TensorFlow backend;
- ``KERAS_BACKEND=jax pytest``: only the tests marked ``jax`` (this file
  deselects the others on any backend but TensorFlow);
- ``KERAS_BACKEND=torch pytest``: likewise, only the tests marked ``torch``;
- ``ANNZOO_SPEEDUPS=0 pytest -m speedups_off``: the model, recipe and tuning
  tests on public Keras API alone;
- ``pytest -m "not slow"``: the fast lane (``scripts/dev.sh fast``).
"""

from __future__ import annotations

import gc
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def subprocess_env(**extra: str) -> dict[str, str]:
    """The environment for child Python processes: this checkout first on the path."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        [str(ROOT), *filter(None, [env.get("PYTHONPATH")])]
    )
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    env.update(extra)
    return env


def run_python(*args: str, timeout: float = 600, **env: str):
    """Runs ``python ARGS`` in a fresh process; returns the CompletedProcess."""
    return subprocess.run(
        [sys.executable, *args],
        cwd=ROOT,
        env=subprocess_env(**env),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


class Reloader:
    """A separate Python process that loads ``.keras`` files and predicts.

    It never built the models it loads, so a model that only reloads because
    its classes happen to be live in the test process fails here.
    """

    def __init__(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, str(ROOT / "tests" / "_reload_worker.py")],
            cwd=ROOT,
            env=subprocess_env(),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )

    def predict(self, model_path: Path, inputs_path: Path, output_path: Path) -> None:
        assert self.process.stdin and self.process.stdout
        self.process.stdin.write(f"{model_path}\t{inputs_path}\t{output_path}\n")
        self.process.stdin.flush()
        reply = self.process.stdout.readline().strip()
        if reply != "ok":
            raise AssertionError(
                f"fresh process failed to reload {model_path}: {reply}"
            )

    def close(self) -> None:
        if self.process.stdin:
            self.process.stdin.close()
        self.process.wait(timeout=60)


@pytest.fixture(scope="session")
def reloader():
    worker = Reloader()
    yield worker
    worker.close()


@pytest.fixture(autouse=True, scope="module")
def _frozen_heap():
    """Test speed only: before each test module, what is alive (modules,
    TensorFlow and Keras, long-lived caches) is collected once and frozen out
    of the garbage collector. A collection walks every tracked object, and
    Keras' ``clear_session`` (per search trial) and keras-tuner collect several
    times per trial: in a worker's heap that doubles a tiny search's time.
    Nothing dead is frozen (collected first), and reference counting still
    frees frozen objects; what annzoo does to the heap itself
    (``tune(manage_memory=True)``) is tested on its own and unfreezes all."""
    gc.collect()
    gc.freeze()
    yield


def pytest_configure(config):
    config.addinivalue_line(
        "markers",
        "speedup(name): asserts the effect of annzoo speedup NAME; skipped when "
        "ANNZOO_SPEEDUPS switches it off",
    )


def pytest_report_header(config):
    import keras

    return (
        f"annzoo: KERAS_BACKEND={keras.backend.backend()}, "
        f"ANNZOO_SPEEDUPS={os.environ.get('ANNZOO_SPEEDUPS', '(unset: all on)')}"
    )


def pytest_collection_modifyitems(config, items):
    # The suite is written for TensorFlow, the default backend; a test runs on
    # another backend only where it is marked with that backend's name
    # (`@pytest.mark.jax`), so the JAX pass needs no list of tests by hand.
    # keras is imported in the hooks, not at the top of this file, which sets
    # TF_CPP_MIN_LOG_LEVEL before anything loads TensorFlow.
    import keras

    backend = keras.backend.backend()
    if backend == "tensorflow":
        return
    selected, deselected = [], []
    for item in items:
        marked = item.get_closest_marker(backend) is not None
        (selected if marked else deselected).append(item)
    if deselected:
        config.hook.pytest_deselected(items=deselected)
        items[:] = selected


def pytest_runtest_setup(item):
    # A test of a speedup's effect has nothing to check with it switched off.
    for marker in item.iter_markers("speedup"):
        from annzoo import speedups

        name = marker.args[0]
        if not speedups.enabled(name):
            pytest.skip(
                f"the {name!r} speedup is off "
                f"(ANNZOO_SPEEDUPS={os.environ.get('ANNZOO_SPEEDUPS')!r})"
            )

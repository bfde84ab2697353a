"""Atomic writes, the checkpoint callback and the run-directory naming."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time

import keras
import numpy as np
import pytest

from annzoo import AnnzooError, CheckpointError
from annzoo import io as aio
from annzoo.training import resolve_run_dir
from annzoo.training.callbacks import BestModelCheckpoint, MetricsLog
from tests.conftest import ROOT, subprocess_env

pytestmark = pytest.mark.speedups_off


def test_write_json_round_trip_and_permissions(tmp_path):
    path = aio.write_json(
        tmp_path / "a" / "b.json", {"x": (1, 2), "y": np.float32(0.5)}
    )
    assert json.loads(path.read_text()) == {"x": [1, 2], "y": 0.5}
    mask = os.umask(0)
    os.umask(mask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~mask


def test_failed_write_keeps_previous_file_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "state.json"
    aio.write_json(target, {"version": 1})
    with pytest.raises(RuntimeError), aio.atomic_path(target) as tmp:
        tmp.write_text("{half a fi")
        raise RuntimeError("killed mid-write")
    assert json.loads(target.read_text()) == {"version": 1}
    assert os.listdir(tmp_path) == ["state.json"]


def test_unwritable_location_raises_checkpoint_error_naming_the_path(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(CheckpointError, match="file/out.json"):
        aio.write_json(blocker / "out.json", {})


def test_clean_temporaries_removes_only_strays(tmp_path):
    (tmp_path / f"{aio.TMP_PREFIX}best-x.keras").write_text("partial")
    (tmp_path / "best.keras").write_text("good")
    removed = aio.clean_temporaries(tmp_path)
    assert [p.name for p in removed] == [f"{aio.TMP_PREFIX}best-x.keras"]
    assert os.listdir(tmp_path) == ["best.keras"]


WRITER = """
import sys
from annzoo import io
i = 0
while True:
    i += 1
    io.write_json(sys.argv[1], {"i": i, "payload": "x" * (1 << 20)})
    print(i, flush=True)
"""


@pytest.mark.slow
def test_sigkill_during_writes_never_leaves_a_broken_file(tmp_path):
    target = tmp_path / "state.json"
    rng = np.random.default_rng(0)
    kills = 0
    for _ in range(5):
        proc = subprocess.Popen(
            [sys.executable, "-c", WRITER, str(target)],
            cwd=ROOT,
            env=subprocess_env(),
            stdout=subprocess.PIPE,
            text=True,
        )
        proc.stdout.readline()  # at least one complete write happened
        time.sleep(float(rng.uniform(0.0, 0.2)))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        kills += proc.returncode == -signal.SIGKILL
        data = json.loads(target.read_text())  # never a torn file
        assert data["i"] >= 1 and len(data["payload"]) == 1 << 20
    assert kills == 5


def _tiny_model():
    inputs = keras.Input((2,))
    return keras.Model(inputs, keras.layers.Dense(1)(inputs))


def test_best_checkpoint_ignores_nan_and_never_keeps_a_worse_model(tmp_path):
    path = tmp_path / "best.keras"
    callback = BestModelCheckpoint(path, monitor="val_loss")
    callback.set_model(_tiny_model())
    callback.on_epoch_end(0, {"val_loss": math.nan})
    assert not path.exists() and callback.best_epoch is None
    callback.on_epoch_end(1, {"val_loss": 0.5})
    saved = path.read_bytes()
    callback.on_epoch_end(2, {"val_loss": 0.7})
    callback.on_epoch_end(3, {"val_loss": math.inf})
    assert path.read_bytes() == saved and callback.best_epoch == 2
    callback.on_epoch_end(4, {"val_loss": 0.1})
    assert callback.best_epoch == 5 and callback.best == pytest.approx(0.1)
    assert BestModelCheckpoint(path, monitor="val_accuracy").mode == "max"


def test_metrics_log_has_one_row_per_epoch(tmp_path):
    log = MetricsLog(tmp_path / "metrics.csv")
    log.on_epoch_end(0, {"loss": 1.0})
    log.on_epoch_end(1, {"loss": 0.5, "val_loss": 0.6})
    lines = (tmp_path / "metrics.csv").read_text().splitlines()
    assert lines == ["epoch,loss,val_loss", "1,1.0,", "2,0.5,0.6"]


def test_run_directory_is_never_reused(tmp_path):
    assert resolve_run_dir(tmp_path, "r") == (tmp_path / "r", False)
    (tmp_path / "r").mkdir()
    assert resolve_run_dir(tmp_path, "r")[0] == tmp_path / "r"  # empty: reusable
    (tmp_path / "r" / "results.json").write_text("{}")
    assert resolve_run_dir(tmp_path, "r") == (tmp_path / "r-2", False)


def test_unfinished_run_of_the_same_recipe_is_resumed(tmp_path):
    run = tmp_path / "r"
    (run / "state").mkdir(parents=True)
    (run / "recipe.json").write_text(json.dumps({"a": 1, "b": {"c": 2}}))
    (run / "state" / "progress.json").write_text("{}")
    assert resolve_run_dir(tmp_path, "r", {"a": 1, "b": {"c": 2}}) == (run, True)
    # Another recipe never takes over the unfinished directory: refused, naming
    # what changed.
    with pytest.raises(AnnzooError, match=r"`b\.c` \(2 -> 3\)"):
        resolve_run_dir(tmp_path, "r", {"a": 1, "b": {"c": 3}})
    # Without resuming, a new directory beside it.
    assert resolve_run_dir(tmp_path, "r") == (tmp_path / "r-2", False)


def test_unfinished_run_without_a_finished_epoch_is_started_over(tmp_path):
    run = tmp_path / "r"
    run.mkdir()
    (run / "recipe.json").write_text(json.dumps({"a": 1}))
    assert resolve_run_dir(tmp_path, "r", {"a": 1}) == (run, False)
    assert resolve_run_dir(tmp_path, "r", {"a": 2}) == (tmp_path / "r-2", False)


@pytest.fixture
def interrupted_run(tmp_path, monkeypatch):
    """A digits MLP run whose process 'died' after training, before finishing."""
    import annzoo.plots
    from annzoo.training import load_recipe, train

    recipe = load_recipe(ROOT / "recipes" / "digits_mlp.py").override(
        ["fit.epochs=2", "data.limit=64", "callbacks.early_stopping=null"]
    )

    def crash(*args, **kwargs):
        raise RuntimeError("killed")

    with monkeypatch.context() as patch:
        patch.setattr(annzoo.plots, "plot_curves", crash)
        with pytest.raises(RuntimeError):
            train(recipe, output_dir=tmp_path, verbose=0)
    run = tmp_path / recipe.name
    assert (run / "state" / "progress.json").is_file()
    assert not (run / "results.json").exists()
    return recipe, run


@pytest.mark.torch
def test_resume_finishes_an_interrupted_run_without_retraining(interrupted_run):
    from annzoo.training import train

    recipe, run = interrupted_run
    result = train(recipe, output_dir=run.parent, verbose=0)
    assert result.run_dir == run and result.resumed_from == 2
    assert result.epochs_run == 2 and (run / "results.json").is_file()


@pytest.mark.torch
def test_resume_with_a_changed_recipe_is_refused(interrupted_run):
    from annzoo.training import train

    recipe, run = interrupted_run
    before = sorted(p.name for p in run.rglob("*"))
    with pytest.raises(AnnzooError, match=r"`fit\.epochs` \(2 -> 3\)"):
        train(recipe.override(["fit.epochs=3"]), output_dir=run.parent, verbose=0)
    assert sorted(p.name for p in run.rglob("*")) == before
    # Asking for a fresh start goes beside it.
    fresh = train(
        recipe.override(["fit.epochs=3"]),
        output_dir=run.parent,
        verbose=0,
        resume=False,
    )
    assert fresh.run_dir == run.parent / f"{recipe.name}-2"


@pytest.mark.parametrize(
    "damage",
    [
        "progress_truncated",
        "progress_garbage",
        "model_truncated",
        "model_deleted",
        "model_byte_flipped",
    ],
)
def test_corrupt_state_is_named_not_silently_restarted(interrupted_run, damage):
    from annzoo.training import train

    recipe, run = interrupted_run
    progress = run / "state" / "progress.json"
    model_file = run / "state" / json.loads(progress.read_text())["model_file"]
    if damage == "progress_truncated":
        progress.write_bytes(progress.read_bytes()[: len(progress.read_bytes()) // 2])
        named = "progress.json"
    elif damage == "progress_garbage":
        progress.write_bytes(b"\x00\xff garbage")
        named = "progress.json"
    elif damage == "model_truncated":
        model_file.write_bytes(model_file.read_bytes()[:100])
        named = model_file.name
    elif damage == "model_byte_flipped":
        # One byte of stored weights: the zip may still open; the checksum
        # recorded in progress.json catches it.
        data = bytearray(model_file.read_bytes())
        data[len(data) // 2] ^= 0xFF
        model_file.write_bytes(bytes(data))
        named = f"{model_file.name}.*damaged"
    else:
        model_file.unlink()
        named = model_file.name
    kept = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    with pytest.raises(CheckpointError, match=named):
        train(recipe, output_dir=run.parent, verbose=0)
    assert {p: p.read_bytes() for p in run.rglob("*") if p.is_file()} == kept


@pytest.mark.torch
def test_finished_run_has_a_manifest_and_damaged_files_are_named(tmp_path):
    import hashlib

    from annzoo.training import evaluate_run, load_recipe, train

    recipe = load_recipe(ROOT / "recipes" / "digits_mlp.py").override(
        ["fit.epochs=1", "data.limit=64", "callbacks.tensorboard=false"]
    )
    run = train(recipe, output_dir=tmp_path, verbose=0).run_dir
    listed = json.loads((run / "manifest.json").read_text())["files"]
    on_disk = sorted(p.name for p in run.iterdir() if p.is_file())
    assert sorted(listed) == [n for n in on_disk if n != "manifest.json"]
    for name, entry in listed.items():
        data = (run / name).read_bytes()
        assert entry == {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}
    assert set(evaluate_run(run)) >= {"loss", "accuracy"}  # intact: loads
    best = run / "best.keras"
    data = bytearray(best.read_bytes())
    data[len(data) // 2] ^= 0xFF
    best.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match=r"best\.keras.* is damaged"):
        evaluate_run(run)
    from annzoo.finetune import finetune

    with pytest.raises(CheckpointError, match=r"best\.keras.* is damaged"):
        finetune(run, num_classes=3)


@pytest.mark.parametrize(
    "overrides",
    [
        ["data.batch_size=32"],  # 40 steps: calls of 20 on a never-ending stream
        ["data.batch_size=34"],  # 37 steps (prime): one pass per epoch
        ["data.batch_size=32", "fit.steps_per_epoch=7"],  # 7 steps per epoch
    ],
)
def test_each_epoch_trains_exactly_its_steps(tmp_path, overrides):
    """Keras runs steps_per_execution steps per call even past an epoch's end
    on a never-ending dataset: the runner must still train each epoch's steps."""
    from annzoo.training import load_recipe, train

    recipe = load_recipe(ROOT / "recipes" / "digits_mlp.py").override(
        [
            "fit.epochs=2",
            "callbacks.early_stopping=null",
            "callbacks.tensorboard=false",
            *overrides,
        ]  # fmt: skip
    )
    run = train(recipe, output_dir=tmp_path, verbose=0).run_dir
    model = keras.saving.load_model(run / "final.keras")
    batch = recipe.data["batch_size"]
    per_epoch = recipe.fit["steps_per_epoch"] or math.ceil(1257 / batch)  # 1257 train
    assert int(model.optimizer.iterations.numpy()) == 2 * per_epoch


def test_a_model_fit_before_runs_the_streams_steps_per_call():
    """A model fit before with 32 steps per call trains exactly the stream's steps."""
    from annzoo import build_mlp, data
    from annzoo.training import load_recipe
    from annzoo.training.inputs import fit_steps

    recipe = load_recipe(ROOT / "recipes" / "digits_mlp.py")
    rng = np.random.default_rng(0)
    x = rng.random((400, 8), dtype=np.float32)
    y = rng.integers(0, 3, 400)
    model = build_mlp((8,), 3, hidden_units=[4], compile={"steps_per_execution": 32})
    model.fit(x, y, batch_size=10, epochs=1, verbose=0)  # 40 steps, 32 per call
    assert int(model.optimizer.iterations.numpy()) == 40
    stream = data.make_dataset(x, y, batch_size=10, shuffle=True, repeat=True)
    stream.execution_block = data.execution_block(40, 32)  # as the runner sets it
    steps = fit_steps(recipe, model, stream)
    assert steps == 40 and model.steps_per_execution == 20
    model.fit(stream, epochs=2, steps_per_epoch=steps, shuffle=False, verbose=0)
    assert int(model.optimizer.iterations.numpy()) == 40 + 2 * 40


def test_a_recipe_in_mixed_bfloat16_trains_saves_and_restores_the_policy(tmp_path):
    from annzoo.cli import build_parser
    from annzoo.cli.recipes import apply_arguments
    from annzoo.training import load_recipe, train

    args = build_parser().parse_args(
        ["train", "digits_mlp", "--epochs", "1", "--mixed-precision", "bfloat16"]
    )
    recipe = apply_arguments(load_recipe(ROOT / "recipes" / "digits_mlp.py"), args)
    assert recipe.compile["mixed_precision"] == "bfloat16"
    recipe = recipe.override(["data.limit=64", "callbacks.tensorboard=false"])
    before = keras.config.dtype_policy().name
    result = train(recipe, output_dir=tmp_path, verbose=0)
    assert keras.config.dtype_policy().name == before == "float32"
    assert all(np.isfinite(v) for v in result.test_metrics.values())
    saved = json.loads((result.run_dir / "recipe.json").read_text())
    assert saved["compile"]["mixed_precision"] == "bfloat16"
    model = keras.saving.load_model(result.run_dir / "best.keras")
    hidden = [layer for layer in model.layers if layer.weights][0]
    assert hidden.compute_dtype == "bfloat16"  # computes in 16 bits
    assert {w.dtype for w in model.weights} == {"float32"}  # stores float32
    assert model.get_layer("predictions").compute_dtype == "float32"
    probabilities = model.predict(np.zeros((2, 8, 8, 1), "float32"), verbose=0)
    assert probabilities.dtype == np.float32


def test_a_failed_mixed_precision_run_restores_the_policy(tmp_path, monkeypatch):
    import annzoo.plots
    from annzoo.training import load_recipe, train

    recipe = load_recipe(ROOT / "recipes" / "digits_mlp.py").override(
        ["fit.epochs=1", "data.limit=64", "compile.mixed_precision=float16"]
    )

    def crash(*args, **kwargs):
        raise RuntimeError("killed")

    monkeypatch.setattr(annzoo.plots, "plot_curves", crash)
    with pytest.raises(RuntimeError, match="killed"):
        train(recipe, output_dir=tmp_path, verbose=0)
    assert keras.config.dtype_policy().name == "float32"


def test_an_unknown_precision_is_refused_before_anything_is_written(tmp_path):
    from annzoo.training import load_recipe, train

    recipe = load_recipe(ROOT / "recipes" / "digits_mlp.py").override(
        ["compile.mixed_precision=int8"]
    )
    with pytest.raises(
        AnnzooError,
        match=r"`compile\.mixed_precision` must be None, 'bfloat16' or 'float16'\. "
        r"Received: compile\.mixed_precision='int8'",
    ):
        train(recipe, output_dir=tmp_path, verbose=0)
    assert list(tmp_path.iterdir()) == []


def test_a_run_saved_before_a_new_recipe_field_still_resumes(interrupted_run):
    from annzoo.training import train

    recipe, run = interrupted_run
    saved = json.loads((run / "recipe.json").read_text())
    del saved["compile"]["mixed_precision"]  # as an older annzoo wrote it
    aio.write_json(run / "recipe.json", saved)
    result = train(recipe, output_dir=run.parent, verbose=0)
    assert result.run_dir == run and result.resumed_from == 2


@pytest.mark.parametrize(
    "jit, drop, steps",
    [
        ("true", "auto", 3),  # compiled for fixed shapes: the 4 left over wait
        ("false", "auto", 4),  # not compiled: every sample, every epoch
        ("false", "true", 3),
        ("true", "false", 4),
    ],
)
def test_training_drops_the_partial_batch_where_it_would_recompile(
    tmp_path, jit, drop, steps
):
    from annzoo.training import load_recipe, train

    recipe = load_recipe(ROOT / "recipes" / "digits_mlp.py").override(
        [
            "fit.epochs=2",
            "data.limit=100",  # 3 batches of 32 and one of 4
            "data.batch_size=32",
            f"compile.jit_compile={jit}",
            f"data.drop_remainder={drop}",
            "callbacks.early_stopping=null",
            "callbacks.tensorboard=false",
        ]
    )
    run = train(recipe, output_dir=tmp_path, verbose=0).run_dir
    model = keras.saving.load_model(run / "final.keras")
    assert int(model.optimizer.iterations.numpy()) == 2 * steps


def test_whole_batches_that_cannot_cover_the_steps_are_refused(tmp_path):
    from annzoo.training import load_recipe, train

    recipe = load_recipe(ROOT / "recipes" / "digits_mlp.py").override(
        [
            "data.limit=100",
            "data.batch_size=32",
            "data.drop_remainder=true",
            "fit.steps_per_epoch=4",
        ]
    )
    with pytest.raises(AnnzooError, match=r"`data\.drop_remainder` is true.*3 whole"):
        train(recipe, output_dir=tmp_path, verbose=0)
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(AnnzooError, match="data.drop_remainder"):
        train(recipe.override(["data.drop_remainder=sometimes"]), output_dir=tmp_path)


@pytest.mark.parametrize("jit, sizes", [(True, {54}), (False, {32, 14})])
def test_evaluation_batches_are_whole_where_the_step_is_compiled_for_fixed_shapes(
    jit, sizes
):
    # 270 samples: at batch 32, 8 batches and one of 14 (a second compiled
    # step); 54 is the largest divisor of 270 between 16 and 64.
    from annzoo.training import build, inputs, load_recipe

    recipe = load_recipe(ROOT / "recipes" / "digits_mlp.py")
    split = inputs.load_splits(recipe)["test"]
    assert len(split) == 270
    model = build.build_model(recipe, inputs.model_arguments(recipe, split))
    model.jit_compile = jit
    pipeline = inputs.input_pipeline(
        recipe, split, model, training=False, num_classes=10
    )
    seen = [np.asarray(y) for _, y in pipeline]
    assert {len(y) for y in seen} == sizes
    np.testing.assert_array_equal(np.concatenate(seen), split.y)


@pytest.mark.jax
def test_nan_guard_lets_keras_dispatch_steps_ahead_and_keeps_the_first_nan(
    monkeypatch,
):
    import threading

    from annzoo.training.callbacks import NaNGuard

    synced_from = []  # threads that wrote JAX's training state into the model
    if keras.backend.backend() == "jax":
        from keras.src.backend.jax.trainer import JAXTrainer

        sync = JAXTrainer.jax_state_sync

        def recording(self):
            if getattr(self, "_jax_state", None) and not self._jax_state_synced:
                synced_from.append(threading.current_thread())
            return sync(self)

        monkeypatch.setattr(JAXTrainer, "jax_state_sync", recording)

    class Watched(NaNGuard):
        threads: list = []

        def on_train_batch_end(self, batch, logs=None):
            self.threads.append(threading.current_thread())
            super().on_train_batch_end(batch, logs)

    # Loss NaN from the first step: inputs with a NaN in every batch (in
    # order: a shuffled batch could miss the NaN rows).
    x = np.ones((64, 3), "float32")
    x[::8, 0] = np.nan
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    model.compile(optimizer="sgd", loss="mse", steps_per_execution=2)
    guard = Watched()
    model.fit(x, np.zeros((64, 1)), batch_size=8, epochs=3, verbose=0,
              shuffle=False, callbacks=[guard])  # fmt: skip
    # Keras runs batch callbacks off the training thread only on backends it
    # calls thread-safe (JAX, PyTorch; not TensorFlow).
    threaded = keras.backend.backend() in ("jax", "torch")
    fitting = threading.current_thread()
    assert guard.threads
    assert all((t is not fitting) is threaded for t in guard.threads)
    # Stopping never wrote the in-flight state from another thread: the loop
    # had donated those buffers to the next step ("Array has been deleted").
    assert all(t is fitting for t in synced_from)
    # Stopped in the first epoch, at its first call (steps 1-2: batch index 1).
    assert guard.nan_at == (1, 2)
    assert model.stop_training

"""`annzoo.export.export`: sources, default paths, atomic replacement, errors.

That every family's exports give its Keras predictions in plain TensorFlow and
in ONNX Runtime, in processes without annzoo, is `test_export_families.py`.
"""

from __future__ import annotations

import importlib
import json
import os
from pathlib import Path

import keras
import numpy as np
import pytest

import annzoo
from annzoo import AnnzooError, UnknownNameError
from annzoo import io as aio
from tests.conftest import run_python

if keras.backend.backend() != "tensorflow":
    pytest.skip(
        "SavedModel and ONNX exports need the TensorFlow backend "
        f"(KERAS_BACKEND={keras.backend.backend()})",
        allow_module_level=True,
    )

import tensorflow as tf  # noqa: E402  (after the backend check)

# The module, even if ``annzoo.export`` is later bound to the function.
export_module = importlib.import_module("annzoo.export")
export = export_module.export

TOLERANCE = 1e-5


def _serve_savedmodel(path, x):
    loaded = tf.saved_model.load(str(path))  # owns the variables serve() reads
    return loaded.serve(x).numpy()


def _fake_run(tmp_path):
    run = tmp_path / "run"
    best = annzoo.build_mlp(4, 2, hidden_units=(8,), compile=False)
    final = annzoo.build_mlp(4, 2, hidden_units=(8,), compile=False)
    aio.save_model(best, run / "best.keras")
    aio.save_model(final, run / "final.keras")
    x = np.random.default_rng(1).random((6, 4), dtype=np.float32)
    return run, x, best.predict(x, verbose=0), final.predict(x, verbose=0)


def test_export_from_run_directory_defaults_inside_it(tmp_path):
    run, x, best, final = _fake_run(tmp_path)
    assert np.abs(best - final).max() > 1e-3  # so `which` is observable

    path = export(run)
    assert path == run / "export" / "model.keras"
    reloaded = keras.saving.load_model(path)
    np.testing.assert_array_equal(reloaded.predict(x, verbose=0), best)
    meta = json.loads((run / "export" / "model.keras.json").read_text())
    assert meta["source"] == str(run / "best.keras")
    assert meta["inputs"][0]["shape"] == [None, 4]

    path = export(run, format="savedmodel", which="final")
    assert path == run / "export" / "savedmodel"
    served = _serve_savedmodel(path, x)
    np.testing.assert_allclose(served, final, rtol=0, atol=TOLERANCE)

    # A .keras file as the source: its directory is the default base.
    path = export(run / "final.keras", tmp_path / "copy.keras")
    np.testing.assert_array_equal(keras.saving.load_model(path).predict(x), final)
    assert not list(tmp_path.rglob(f"{aio.TMP_PREFIX}*"))


def test_onnx_export_of_a_freshly_loaded_model(tmp_path):
    pytest.importorskip("onnxruntime", reason="pip install 'annzoo[export]'")
    import onnxruntime

    run, x, best, _ = _fake_run(tmp_path)
    path = export(run, format="onnx")  # never called since load_model
    assert path == run / "export" / "model.onnx"
    session = onnxruntime.InferenceSession(str(path))
    served = session.run(None, {session.get_inputs()[0].name: x})[0]
    np.testing.assert_allclose(served, best, rtol=0, atol=TOLERANCE)


def _two_models():
    first = annzoo.build_mlp(4, 2, hidden_units=(8,), compile=False)
    second = annzoo.build_mlp(4, 2, hidden_units=(8,), compile=False)
    x = np.random.default_rng(2).random((3, 4), dtype=np.float32)
    return first, second, x


def _leftovers(directory: Path) -> list[str]:
    return [p.name for p in directory.iterdir() if p.name.startswith(aio.TMP_PREFIX)]


@pytest.mark.parametrize("swap", ["exchange", "rename_aside"])
def test_export_over_an_existing_savedmodel_replaces_it_whole(
    tmp_path, monkeypatch, swap
):
    if swap == "rename_aside":  # the path taken where renameat2 is missing
        monkeypatch.setattr(aio, "exchange_paths", lambda a, b: False)
    first, second, x = _two_models()
    path = tmp_path / "savedmodel"
    export(first, path, format="savedmodel")
    (path / "stale.txt").write_text("from the first export")
    export(second, path, format="savedmodel")

    served = _serve_savedmodel(path, x)
    np.testing.assert_allclose(served, second.predict(x), rtol=0, atol=TOLERANCE)
    assert not (path / "stale.txt").exists()
    assert (path / export_module.METADATA_NAME).is_file()
    assert _leftovers(tmp_path) == []


@pytest.mark.parametrize("format", ["savedmodel", "onnx"])
def test_failed_export_keeps_previous_export_and_leaves_no_temporary(
    tmp_path, monkeypatch, format
):
    if format == "onnx":
        pytest.importorskip("onnxruntime", reason="pip install 'annzoo[export]'")
    first, second, x = _two_models()
    path = tmp_path / ("model.onnx" if format == "onnx" else "savedmodel")
    export(first, path, format=format)
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))

    def crash(filepath, *args, **kwargs):
        filepath = Path(filepath)
        if format == "onnx":
            filepath.write_bytes(b"half an onnx file")
        else:
            filepath.mkdir(exist_ok=True)
            (filepath / "saved_model.pb").write_bytes(b"half a graph")
        raise RuntimeError("killed mid-export")

    monkeypatch.setattr(second, "export", crash)
    with pytest.raises(RuntimeError, match="mid-export"):
        export(second, path, format=format)

    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before
    assert _leftovers(tmp_path) == []
    expected = first.predict(x, verbose=0)
    if format == "onnx":
        import onnxruntime

        session = onnxruntime.InferenceSession(str(path))
        served = session.run(None, {session.get_inputs()[0].name: x})[0]
    else:
        served = _serve_savedmodel(path, x)
    np.testing.assert_allclose(served, expected, rtol=0, atol=TOLERANCE)


def test_never_replaces_a_directory_that_is_not_a_savedmodel(tmp_path):
    model = annzoo.build_mlp(4, 2, compile=False)
    (tmp_path / "notes.txt").write_text("a run directory, say")
    with pytest.raises(AnnzooError, match="not a SavedModel.*Received: path="):
        export(model, tmp_path, format="savedmodel")
    assert os.listdir(tmp_path) == ["notes.txt"]


@pytest.mark.parametrize(
    "call, error, pattern",
    [
        (
            lambda m, d: export(m, d / "x", format="tflite"),
            UnknownNameError,
            r"`format` must be one of .*Received: format='tflite'",
        ),
        (
            lambda m, d: export(m, d / "x", format="onx"),
            UnknownNameError,
            r"Received: format='onx'\. Did you mean 'onnx'",
        ),
        (
            lambda m, d: export(d / "missing-run"),
            AnnzooError,
            r"`source` '.*missing-run' does not exist: expected .*Received: source=",
        ),
        (
            lambda m, d: export(d),
            AnnzooError,
            r"`source` .* holds no 'best.keras': expected a run directory"
            r".*Received: source=",
        ),
        (
            lambda m, d: export(m, format="savedmodel"),
            AnnzooError,
            r"`path` is required .*Received: path=None",
        ),
        (
            lambda m, d: export(m, d / "model.h5"),
            AnnzooError,
            r"`path` must end in \.keras.*Received: path=",
        ),
        (
            lambda m, d: export(m, d / "x.keras", which="last"),
            UnknownNameError,
            r"`which` must be one of \['best', 'final'\]. Received: which='last'",
        ),
    ],
    ids=["format", "format-typo", "run-dir", "best-keras", "path", "suffix", "which"],
)
def test_errors_name_the_argument_and_what_was_received(tmp_path, call, error, pattern):
    model = annzoo.build_mlp(4, 2, compile=False)
    with pytest.raises(error, match=pattern):
        call(model, tmp_path)
    assert os.listdir(tmp_path) == []  # validated before anything is written


NOT_TENSORFLOW = """
import json, tempfile
import keras
import annzoo
from annzoo.export import export
model = annzoo.build_mlp(4, 2, compile=False)
directory = tempfile.mkdtemp()
try:
    export(model, directory + "/savedmodel", format="savedmodel")
    message = None
except annzoo.AnnzooError as error:
    message = str(error)
kept = export(model, directory + "/model.keras").is_file()
print(json.dumps({"backend": keras.backend.backend(), "message": message,
                  "keras_export": kept}))
"""


@pytest.mark.slow
def test_savedmodel_on_another_backend_says_tensorflow_is_needed():
    pytest.importorskip("jax")
    result = run_python("-c", NOT_TENSORFLOW, KERAS_BACKEND="jax", timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.splitlines()[-1])
    assert report["backend"] == "jax"
    assert "KERAS_BACKEND=tensorflow" in report["message"]
    assert "Received: backend='jax'" in report["message"]
    assert report["keras_export"]  # the .keras copy works on any backend

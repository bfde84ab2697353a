"""Exports that real clients load: plain TensorFlow, ONNX Runtime, Keras.

The SavedModel and ONNX files are run in fresh processes where importing
annzoo and Keras (and, for ONNX, TensorFlow) fails, as on a serving machine
that has only the runtime; their predictions must equal ``model.predict``.
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

# Makes importing these packages fail as if they were not installed. A spec
# without origin (rather than an exception from find_spec) is what TensorFlow's
# own probing for Keras tolerates.
BLOCK = """
import importlib.abc, importlib.machinery, sys
BLOCKED = {blocked!r}
class _Absent(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            return importlib.machinery.ModuleSpec(name, self)
    def create_module(self, spec):
        raise ModuleNotFoundError(f"No module named {{spec.name!r}}", name=spec.name)
    def exec_module(self, module):
        pass
sys.meta_path.insert(0, _Absent())
"""

SERVE_WITH_TENSORFLOW = """
import json
import numpy as np
import tensorflow as tf
cases = json.loads(sys.argv[1])
for case in cases.values():
    loaded = tf.saved_model.load(case["path"])  # keep it: it owns the variables
    x = np.load(case["inputs"])
    meta = json.loads(open(case["path"] + "/annzoo-export.json").read())
    signature = loaded.signatures[meta["signature"]]
    by_name = signature(**{meta["inputs"][0]["name"]: tf.constant(x)})
    np.savez(
        case["outputs"],
        serve=loaded.serve(x).numpy(),
        one=loaded.serve(x[:1]).numpy(),
        signature=by_name[meta["outputs"][0]["name"]].numpy(),
    )
assert "annzoo" not in sys.modules and "keras" not in sys.modules
print(json.dumps(sorted(sys.modules)))
"""

SERVE_WITH_ONNXRUNTIME = """
import json
import numpy as np
import onnxruntime
cases = json.loads(sys.argv[1])
for case in cases.values():
    session = onnxruntime.InferenceSession(
        case["path"], providers=["CPUExecutionProvider"]
    )
    meta = json.loads(open(case["path"] + ".json").read())
    x = np.load(case["inputs"])
    feed, fetch = meta["inputs"][0]["name"], meta["outputs"][0]["name"]
    np.savez(
        case["outputs"],
        serve=session.run([fetch], {feed: x})[0],
        one=session.run([fetch], {feed: x[:1]})[0],
    )
print(json.dumps(sorted(sys.modules)))
"""


def _randomize_batch_norm(model, seed=0):
    """Moving statistics far from a batch's, so training mode would show."""
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            size = layer.moving_mean.shape
            layer.moving_mean.assign(rng.normal(0.5, 0.5, size).astype("float32"))
            layer.moving_variance.assign(rng.uniform(0.5, 2.0, size).astype("float32"))
            layer.gamma.assign(rng.uniform(0.5, 1.5, size).astype("float32"))
            layer.beta.assign(rng.normal(0.0, 0.5, size).astype("float32"))
    return model


def _models():
    return {
        "mlp": annzoo.build_mlp(8, 3, hidden_units=(16,), compile=False),
        "mnist_convnet": annzoo.create_model("mnist_convnet", compile=False),
        "dropout_batchnorm": _randomize_batch_norm(
            annzoo.build_cnn(
                (12, 12, 1),
                3,
                filters=(4, 8),
                batch_norm=True,
                dropout=0.4,
                hidden_units=(16,),
                compile=False,
            )
        ),
        # Augmentation inside the model: must be absent from every export.
        "augmented": annzoo.augment.in_model(
            annzoo.build_cnn((12, 12, 1), 3, filters=(4,), compile=False),
            ["flip", {"name": "pad_crop", "padding": 2}, "rotation", "contrast"],
            seed=0,
        ),
        # Residual net whose shortcuts are the custom PaddedIdentity layer.
        "resnet20": annzoo.create_model(
            "resnet20", input_shape=(16, 16, 3), compile=False
        ),
    }


MODEL_NAMES = ["mlp", "mnist_convnet", "dropout_batchnorm", "augmented", "resnet20"]


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """Each model with 5 inputs in [0, 1) and its Keras (inference) predictions."""
    root = tmp_path_factory.mktemp("models")
    rng = np.random.default_rng(0)
    cases = {}
    for name, model in _models().items():
        x = rng.random((5, *model.input_shape[1:]), dtype=np.float32)
        np.save(root / f"{name}.npy", x)
        cases[name] = (model, x, model.predict(x, verbose=0))
    return root, cases


def _serve(models, tmp_path_factory, format, script, blocked):
    root, cases = models
    out = tmp_path_factory.mktemp(format)
    jobs = {}
    for name, (model, _, _) in cases.items():
        path = out / (f"{name}.onnx" if format == "onnx" else name)
        assert export(model, path, format=format) == path
        jobs[name] = {
            "path": str(path),
            "inputs": str(root / f"{name}.npy"),
            "outputs": str(out / f"{name}-outputs.npz"),
        }
    result = run_python(
        "-c", BLOCK.format(blocked=blocked) + script, json.dumps(jobs), timeout=120
    )
    assert result.returncode == 0, result.stderr[-3000:]
    imported = {m.split(".")[0] for m in json.loads(result.stdout.splitlines()[-1])}
    assert not imported & set(blocked)
    served = {name: dict(np.load(job["outputs"])) for name, job in jobs.items()}
    return out, served


@pytest.fixture(scope="module")
def savedmodels(models, tmp_path_factory):
    return _serve(
        models,
        tmp_path_factory,
        "savedmodel",
        SERVE_WITH_TENSORFLOW,
        ("annzoo", "keras", "tf_keras"),
    )


@pytest.fixture(scope="module")
def onnx_exports(models, tmp_path_factory):
    pytest.importorskip("onnxruntime", reason="pip install 'annzoo[export]'")
    pytest.importorskip("tf2onnx", reason="pip install 'annzoo[export]'")
    return _serve(
        models,
        tmp_path_factory,
        "onnx",
        SERVE_WITH_ONNXRUNTIME,
        ("annzoo", "keras", "tensorflow", "tf2onnx"),
    )


def test_augmented_model_augments_in_training_only(models):
    # The exports are compared with inference predictions: those must be the
    # bare network's, and training mode must differ, or the check is empty.
    _, cases = models
    model, x, expected = cases["augmented"]
    bare = model.layers[-1]
    np.testing.assert_array_equal(expected, bare.predict(x, verbose=0))
    training = keras.ops.convert_to_numpy(model(x, training=True))
    assert np.abs(training - expected).max() > 1e-4


def test_dropout_batchnorm_model_behaves_differently_in_training(models):
    # Otherwise the inference-mode checks below could not fail.
    _, cases = models
    model, x, expected = cases["dropout_batchnorm"]
    weights = model.get_weights()
    try:
        training = keras.ops.convert_to_numpy(model(x, training=True))
    finally:  # a training-mode call moves the batch-norm statistics
        model.set_weights(weights)
    assert np.abs(training - expected).max() > 1e-2


@pytest.mark.slow
@pytest.mark.parametrize("name", MODEL_NAMES)
def test_savedmodel_serves_keras_predictions_in_plain_tensorflow(
    name, models, savedmodels
):
    _, cases = models
    _, x, expected = cases[name]
    served = savedmodels[1][name]
    for key in ("serve", "signature"):
        np.testing.assert_allclose(served[key], expected, rtol=0, atol=TOLERANCE)
    np.testing.assert_allclose(served["one"], expected[:1], rtol=0, atol=TOLERANCE)
    print(f"savedmodel {name}: max abs diff {np.abs(served['serve'] - expected).max()}")


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_onnx_runs_in_onnxruntime_with_keras_predictions(name, models, onnx_exports):
    _, cases = models
    _, x, expected = cases[name]
    served = onnx_exports[1][name]
    np.testing.assert_allclose(served["serve"], expected, rtol=0, atol=TOLERANCE)
    np.testing.assert_allclose(served["one"], expected[:1], rtol=0, atol=TOLERANCE)
    print(f"onnx {name}: max abs diff {np.abs(served['serve'] - expected).max()}")


@pytest.mark.slow
def test_descriptions_give_names_shapes_dtypes_and_versions(savedmodels, onnx_exports):
    # The dropout_batchnorm model: built with input_shape=(12, 12, 1), 3 classes.
    saved = json.loads(
        (savedmodels[0] / "dropout_batchnorm" / export_module.METADATA_NAME).read_text()
    )
    onnx = json.loads((onnx_exports[0] / "dropout_batchnorm.onnx.json").read_text())
    for meta, format in ((saved, "savedmodel"), (onnx, "onnx")):
        assert meta["format"] == format
        assert meta["keras_version"] == keras.__version__
        assert meta["inputs"] == [
            {"name": "images", "shape": [None, 12, 12, 1], "dtype": "float32"}
        ]
        assert [o["shape"] for o in meta["outputs"]] == [[None, 3]]
    assert saved["endpoint"] == "serve"
    assert saved["tensorflow_version"] == tf.__version__
    assert onnx["opset"]["ai.onnx"] >= 13


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

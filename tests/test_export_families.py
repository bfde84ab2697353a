"""Every family exports: `.keras`, SavedModel in plain TensorFlow, ONNX in ONNX Runtime.

The cases come from the registry, so a new family (or a preset with a new
structure) is exported without editing this file:

- each family's smoke configuration (`FamilySpec.smoke`);
- for each preset that brings a structural choice (a string or boolean builder
  argument: cell, block, stem, variant, crf, task, ...) or a dynamic axis that
  no case of its family has yet, the smoke configuration with the preset's
  choices (so ``bilstm_crf_tagger`` becomes a tiny Bi-LSTM + CRF tagger over
  sequences of any length, ``vit_b16`` a tiny ViT);
- `EXTRA`: builder choices that no preset uses (``cell="simple"``).

The search spaces' other values (``attention="luong_general"`` or ``None``,
``cell="lstm"`` in a seq2seq) are left out: each seq2seq or captioner export
costs seconds of CPU, and CI is near its budget.

Each case's model is built once per module and exported once per format (the
`CLI_CASE` through the CLI, from a run directory); all SavedModels are served
in one fresh process where importing annzoo, Keras and tf_keras fails, all
ONNX files in one where TensorFlow fails too. Every export
must give the Keras model's inference predictions on the same inputs (token
inputs carry padding) within ``atol=1e-5`` (``rtol=0``): an absolute bound,
since the outputs are probabilities or small regression values.
"""

from __future__ import annotations

import contextlib
import fcntl
import importlib
import inspect
import io
import json
import os
import shutil
import subprocess
import sys
import time
import zlib
from pathlib import Path

import keras
import numpy as np
import pytest

import annzoo
from annzoo import AnnzooError, registry
from annzoo import io as aio
from annzoo.layers.crf import CRF, PAD_TAG, viterbi_decode
from annzoo.layers.walk import walk_layers
from annzoo.models.rnn import decode_tags
from tests.conftest import ROOT, run_python, subprocess_env

if keras.backend.backend() != "tensorflow":
    pytest.skip(
        "SavedModel and ONNX exports need the TensorFlow backend "
        f"(KERAS_BACKEND={keras.backend.backend()})",
        allow_module_level=True,
    )

# Exporting two dozen models to three formats takes about a minute on a CPU.
pytestmark = pytest.mark.slow

import tensorflow as tf  # noqa: E402  (after the backend check)

export_module = importlib.import_module("annzoo.export")

ATOL = 1e-5  # |export - keras| for every output value; rtol=0
FORMATS = ("keras", "savedmodel", "onnx")

# Builder arguments that are not structure: a label, pretrained weights (no
# network in tests), the keras.applications architecture (each is Keras' own
# graph of standard layers; the family's smoke one is exported, the others
# take minutes at any size), and compilation.
NOT_STRUCTURE = {"name", "weights", "compile"}
# The keras.applications architecture: not structure for that family (see
# above); a language model's architecture (Transformer, LSTM, GRU) is.
NOT_STRUCTURE_OF = {"applications": {"architecture"}}
# Sizes a preset's structure needs that its family's smoke config lacks.
SMALL = {
    "input_shape": (8, 8, 3),
    "patch_size": 4,
    "target_vocabulary_size": 10,
    "target_sequence_length": 5,
    "decoder_layers": 1,
}
# Builder choices that no preset uses.
EXTRA = {"rnn": [{"cell": "simple"}]}


def _defaults(family):
    parameters = inspect.signature(registry.builder(family)).parameters
    return {k: p.default for k, p in parameters.items() if p.default is not p.empty}


def _is_choice(value):
    return value is None or isinstance(value, str | bool)


def _choices(config, family):
    """The structural (argument, value) pairs of a resolved configuration."""
    ignored = NOT_STRUCTURE | NOT_STRUCTURE_OF.get(family, set())
    choices = {(k, v) for k, v in config.items() if k not in ignored}
    choices = {(k, v) for k, v in choices if _is_choice(v)}
    shape = config.get("input_shape")
    if isinstance(shape, tuple | list) and None in shape:
        choices.add(("dynamic_axes", True))
    return choices


def _preset_case(smoke, config, family):
    """``smoke`` with the structure of a preset's resolved ``config``."""
    case = dict(smoke)
    for key, value in config.items():
        if key in NOT_STRUCTURE | NOT_STRUCTURE_OF.get(family, set()):
            continue
        if _is_choice(value):
            case[key] = value
        elif key == "input_shape" and key in smoke and None in value:
            sizes = zip(value, smoke[key], strict=True)
            case[key] = tuple(None if v is None else s for v, s in sizes)
        elif key not in smoke and key in SMALL:
            case[key] = SMALL[key]
    return case


def export_cases():
    """``{case name: (family, builder arguments)}``, derived from the registry."""
    cases = {}
    for family in annzoo.list_families():
        spec, defaults = registry.family_spec(family), _defaults(family)
        smoke = dict(spec.smoke)
        cases[family] = (family, smoke)
        covered = _choices({**defaults, **smoke}, family)
        presets = {
            preset: annzoo.model_info(preset).config
            for preset in annzoo.list_models()
            if annzoo.model_info(preset).family == family
        }
        while True:  # greedy: the preset bringing the most new choices first
            gains = {p: len(_choices(c, family) - covered) for p, c in presets.items()}
            best = max(sorted(gains), key=gains.get, default=None)
            if best is None or not gains[best]:
                break
            case = _preset_case(smoke, presets.pop(best), family)
            case = {k: v for k, v in case.items() if v != defaults.get(k, object())}
            cases[f"{family}-{best}"] = (family, case)
            covered |= _choices({**defaults, **case}, family)
        for extra in EXTRA.get(family, []):
            if set(extra.items()) - covered:
                label = "-".join(f"{k}={v}" for k, v in extra.items())
                cases[f"{family}-{label}"] = (family, {**smoke, **extra})
                covered |= set(extra.items())
    return cases


CASES = export_cases()
# Exported to SavedModel and ONNX through the CLI only, from a run directory
# holding it as best.keras: two inputs (a dict), a recurrent encoder, attention.
CLI_CASE = "seq2seq"

# Not families: what every export must leave out of the inference graph.
BEHAVIOUR = {
    # Dropout and batch normalization (statistics randomized, as in every
    # case): an export in training mode would differ.
    "dropout_batchnorm": lambda: annzoo.build_cnn(
        (12, 12, 1),
        3,
        filters=(4, 8),
        batch_norm=True,
        dropout=0.4,
        hidden_units=(16,),
        compile=False,
    ),  # fmt: skip
    # A conditional VAE's decoder alone (codes and labels to images): what a
    # VAE is deployed to generate from (`annzoo.export.served_model`).
    "vae_decoder": lambda: annzoo.build_autoencoder(
        (6, 6, 1),
        latent_dim=3,
        hidden_units=(8,),
        variational=True,
        conditional_classes=8,
        compile=False,
    ).get_layer("decoder"),  # fmt: skip
    # Augmentation inside the model: must be absent from every export.
    "augmented": lambda: annzoo.augment.in_model(
        annzoo.build_cnn((12, 12, 1), 3, filters=(4,), compile=False),
        ["flip", {"name": "pad_crop", "padding": 2}, "rotation", "contrast"],
        seed=0,
    ),
}
NAMES = [*CASES, *BEHAVIOUR]

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

# Calls `serve` with the model's input structure (one array, or a dict by input
# name) and the `serving_default` signature by input name, on the batch and on
# its first sample (the batch axis is dynamic).
SERVE_WITH_TENSORFLOW = """
import json, traceback
import numpy as np
import tensorflow as tf
def serve(job):
    loaded = tf.saved_model.load(job["path"])  # keep it: it owns the variables
    meta = json.loads(open(job["path"] + "/annzoo-export.json").read())
    x = dict(np.load(job["inputs"]))
    def structured(arrays):
        if job["structure"] == "dict":
            return {k: tf.constant(v) for k, v in arrays.items()}
        if job["structure"] == "list":
            return [tf.constant(arrays[name]) for name in job["names"]]
        return tf.constant(arrays[job["names"][0]])
    first = {k: v[:1] for k, v in x.items()}
    signature = loaded.signatures[meta["signature"]]
    (output,) = [o["name"] for o in meta["outputs"]]
    by_name = signature(**{k: tf.constant(v) for k, v in x.items()})
    np.savez(
        job["outputs"],
        serve=loaded.serve(structured(x)).numpy(),
        one=loaded.serve(structured(first)).numpy(),
        signature=by_name[output].numpy(),
    )
for job in json.loads(sys.argv[1]).values():
    try:
        serve(job)
    except Exception:  # reported by that case's test, not every test
        open(job["outputs"] + ".error", "w").write(traceback.format_exc())
print(json.dumps(sorted(sys.modules)))
"""

SERVE_WITH_ONNXRUNTIME = """
import json, traceback
import numpy as np
import onnxruntime
def serve(job):
    session = onnxruntime.InferenceSession(
        job["path"], providers=["CPUExecutionProvider"]
    )
    x = dict(np.load(job["inputs"]))
    feeds = [i.name for i in session.get_inputs()]
    assert sorted(feeds) == sorted(x), (feeds, sorted(x))
    (output,) = session.get_outputs()
    np.savez(
        job["outputs"],
        serve=session.run([output.name], x)[0],
        one=session.run([output.name], {k: v[:1] for k, v in x.items()})[0],
    )
for job in json.loads(sys.argv[1]).values():
    try:
        serve(job)
    except Exception:  # reported by that case's test, not every test
        open(job["outputs"] + ".error", "w").write(traceback.format_exc())
print(json.dumps(sorted(sys.modules)))
"""


def _inputs(model, rng, batch=4):
    """Inputs by name: floats in [0, 1); token ids in [1, 8) with padding (0)
    at the end of the second sample; 7 steps where the length is dynamic."""
    x = {}
    for tensor in model.inputs:
        shape = tuple(7 if d is None else d for d in tensor.shape[1:])
        if "int" in str(tensor.dtype):
            ids = rng.integers(1, 8, size=(batch, *shape)).astype(tensor.dtype)
            if ids.ndim == 2 and ids.shape[1] >= 4:
                ids[1, -2:] = 0
            x[tensor.name] = ids
        else:
            x[tensor.name] = rng.random((batch, *shape), dtype=np.float32)
    return x


def _randomize(model, rng):
    """Weights further from their initial values, so a wrong export shows.

    Freshly initialized tiny models predict nearly uniform probabilities
    (embeddings start within 0.05 of zero, biases at zero), which hides a
    perturbed weight under the tolerance: embeddings and biases get noise of
    scale 0.3 (kernels keep their scaled initialization, or a deep model's
    activations grow until float32 round-off exceeds the tolerance). Batch
    normalization gets moving statistics far from a batch's, so that an
    export in training mode would differ too.
    """
    for weight in model.trainable_weights:
        if weight.path.endswith(("embeddings", "bias")):
            noise = rng.normal(0.0, 0.3, weight.shape).astype(weight.dtype)
            weight.assign(keras.ops.convert_to_numpy(weight) + noise)
    for layer in walk_layers(model):
        if isinstance(layer, keras.layers.BatchNormalization):
            size = layer.moving_mean.shape
            layer.moving_mean.assign(rng.normal(0.5, 0.5, size).astype("float32"))
            layer.moving_variance.assign(rng.uniform(0.5, 2.0, size).astype("float32"))
            layer.gamma.assign(rng.uniform(0.5, 1.5, size).astype("float32"))
            layer.beta.assign(rng.normal(0.0, 0.5, size).astype("float32"))


def _model(name):
    """The model of case ``name``, the same in every process that builds it."""
    keras.utils.set_random_seed(0)
    if name in BEHAVIOUR:
        model = BEHAVIOUR[name]()
    else:
        family, config = CASES[name]
        model = annzoo.create_model(family, **config, compile=False)
    _randomize(model, np.random.default_rng(zlib.crc32(name.encode())))
    return model


def _feed(x, structure, names):
    if structure == "list":
        return [x[name] for name in names]
    return x if structure == "dict" else x[names[0]]


def _build(name, root):
    """The case's model (exported as it is) and what its exports must serve:
    the predictions of `served_model` (a GAN's generator; the model itself
    for every other family)."""
    model = _model(name)
    served = export_module.served_model(model)
    assert len(served.outputs) == 1, "extend the serving scripts to several outputs"
    x = _inputs(served, np.random.default_rng(zlib.crc32(name.encode()) + 1))
    np.savez(root / f"{name}-inputs.npz", **x)
    structure = (
        "dict"
        if isinstance(served.input, dict)
        else "list"
        if len(served.inputs) > 1
        else "single"
    )  # fmt: skip  (a list: the GAN generator's and the decoders' (code, label))
    names = [t.name for t in served.inputs]
    expected = served.predict(_feed(x, structure, names), verbose=0)
    np.save(root / f"{name}-expected.npy", expected)
    if any(isinstance(layer, CRF) for layer in model.layers):
        np.save(root / f"{name}-tags.npy", decode_tags(model, x[names[0]]))
    case = {"structure": structure, "names": names, "paths": {}, "errors": {},
            "cpu_seconds": {}}  # fmt: skip
    return model, case


def _export(model, case, format, target):
    start = time.process_time()
    try:
        case["paths"][format] = str(export_module.export(model, target, format=format))
    except AnnzooError as error:  # a refusal: the tests report its sentence
        case["errors"][format] = str(error)
    case["cpu_seconds"][format] = time.process_time() - start


def _job(path, root, name, case):
    return {
        "path": str(path),
        "inputs": str(root / f"{name}-inputs.npz"),
        "outputs": f"{path}-outputs.npz",
        "structure": case["structure"],
        "names": case["names"],
    }


def _serve(jobs, script, blocked):
    result = run_python(
        "-c", BLOCK.format(blocked=blocked) + script, json.dumps(jobs), timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    imported = {m.split(".")[0] for m in json.loads(result.stdout.splitlines()[-1])}
    assert not imported & set(blocked), imported & set(blocked)


def _served(job):
    error = Path(job["outputs"] + ".error")
    if error.exists():
        return {"error": error.read_text()}
    return dict(np.load(job["outputs"]))


def _cli_onnx(run):
    """``annzoo export RUN --format onnx`` in this process: (status, stdout)."""
    from annzoo.cli import main  # here: a broken CLI fails only the CLI's tests

    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        status = main(["export", str(run), "--format", "onnx"])
    return status, stdout.getvalue()


def _export_everything(root):
    """Exports every case to every format and serves them; writes summary.json."""
    cases, models = {}, {}
    for name in NAMES:
        models[name], cases[name] = _build(name, root)

    # The CLI case: a run directory, exported by `python -m annzoo` in a
    # subprocess (SavedModel, while this process exports the other cases) and
    # by the CLI's entry point here (ONNX: one TensorFlow start less).
    run = root / "run"
    aio.save_model(models[CLI_CASE], run / "best.keras")
    command = [sys.executable, "-m", "annzoo", "export", str(run)]
    process = subprocess.Popen(
        [*command, "--format", "savedmodel"],
        cwd=ROOT,
        env=subprocess_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    for name, case in cases.items():
        _export(models[name], case, "keras", root / f"{name}.keras")
        if name != CLI_CASE:
            _export(models[name], case, "savedmodel", root / f"{name}-savedmodel")
            _export(models[name], case, "onnx", root / f"{name}.onnx")
    onnx_status, onnx_stdout = _cli_onnx(run)
    stdout, stderr = process.communicate(timeout=300)
    cli = {
        "savedmodel": (process.returncode, stdout, stderr),
        "onnx": (onnx_status, onnx_stdout, ""),
    }
    for format, default in (("savedmodel", "savedmodel"), ("onnx", "model.onnx")):
        if cli[format][0] == 0:
            cases[CLI_CASE]["paths"][format] = str(run / "export" / default)

    jobs = {}
    for format, script, blocked in (
        ("savedmodel", SERVE_WITH_TENSORFLOW, ("annzoo", "keras", "tf_keras")),
        ("onnx", SERVE_WITH_ONNXRUNTIME, ("annzoo", "keras", "tensorflow", "tf2onnx")),
    ):
        jobs[format] = {
            name: _job(case["paths"][format], root, name, case)
            for name, case in cases.items()
            if format in case["paths"]
        }
        _serve(jobs[format], script, blocked)
    summary = {"run": str(run), "cases": cases, "cli": cli, "jobs": jobs}
    aio.write_json(root / "summary.json", summary)


@contextlib.contextmanager
def _exclusive(path):
    with open(path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """Every case exported to every format and served; the CLI's exports.

    Done once per test session: under pytest-xdist (CI's ``-n auto``), the
    first worker to need it exports into the session's shared temporary
    directory, and the others wait for it and read the results.
    """
    pytest.importorskip("onnxruntime", reason="pip install 'annzoo[export]'")
    pytest.importorskip("tf2onnx", reason="pip install 'annzoo[export]'")
    shared = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        shared = shared.parent  # this session's, common to its workers
    root = shared / "annzoo-export-families"
    with _exclusive(shared / "annzoo-export-families.lock"):
        if not (root / "summary.json").is_file():
            shutil.rmtree(root, ignore_errors=True)  # a worker that failed
            root.mkdir()
            _export_everything(root)
    summary = json.loads((root / "summary.json").read_text())
    cases = summary["cases"]
    for name, case in cases.items():
        x = dict(np.load(root / f"{name}-inputs.npz"))
        case["feed"] = _feed(x, case["structure"], case["names"])
        case["expected"] = np.load(root / f"{name}-expected.npy")
        case["paths"] = {f: Path(p) for f, p in case["paths"].items()}
        if (root / f"{name}-tags.npy").is_file():
            case["tags"] = np.load(root / f"{name}-tags.npy")
    served = {
        format: {name: _served(job) for name, job in jobs.items()}
        for format, jobs in summary["jobs"].items()
    }
    for format in FORMATS:
        print(f"\n{format} export CPU seconds: " + ", ".join(
            f"{name} {case['cpu_seconds'][format]:.1f}"
            for name, case in cases.items() if format in case["cpu_seconds"]
        ))  # fmt: skip
    return {"root": root, "run": Path(summary["run"]), "cases": cases,
            "served": served, "cli": summary["cli"]}  # fmt: skip


def _max_difference(got, expected):
    return float(np.abs(np.asarray(got) - np.asarray(expected)).max())


def test_cases_cover_every_family_and_every_structural_choice():
    # Every family, and every structural value a preset or EXTRA uses, is in
    # some case (where the derivation could miss one).
    assert {family for family, _ in CASES.values()} == set(annzoo.list_families())
    for family in annzoo.list_families():
        defaults = _defaults(family)
        covered = set().union(
            *(
                _choices({**defaults, **c}, family)
                for f, c in CASES.values()
                if f == family
            )
        )
        wanted = set()
        for preset in annzoo.list_models():
            info = annzoo.model_info(preset)
            if info.family == family:
                wanted |= _choices(info.config, family)
        for extra in EXTRA.get(family, []):
            wanted |= set(extra.items())
        assert wanted <= covered, (family, sorted(wanted - covered, key=str))


@pytest.mark.parametrize("name", NAMES)
def test_keras_file_reloads_with_the_same_predictions(name, exported):
    case = exported["cases"][name]
    assert "keras" not in case["errors"], case["errors"]["keras"]
    reloaded = keras.saving.load_model(case["paths"]["keras"], compile=False)
    got = reloaded.predict(case["feed"], verbose=0)
    np.testing.assert_allclose(got, case["expected"], rtol=0, atol=ATOL)
    print(f"keras {name}: max abs diff {_max_difference(got, case['expected']):.3g}")


@pytest.mark.parametrize("name", NAMES)
def test_savedmodel_serves_keras_predictions_without_annzoo(name, exported):
    case = exported["cases"][name]
    assert "savedmodel" not in case["errors"], case["errors"]["savedmodel"]
    served, expected = exported["served"]["savedmodel"][name], case["expected"]
    assert "error" not in served, served["error"][-3000:]
    for key in ("serve", "signature"):
        np.testing.assert_allclose(served[key], expected, rtol=0, atol=ATOL)
    np.testing.assert_allclose(served["one"], expected[:1], rtol=0, atol=ATOL)
    print(f"savedmodel {name}: max abs diff "
          f"{_max_difference(served['serve'], expected):.3g}")  # fmt: skip


@pytest.mark.parametrize("name", NAMES)
def test_onnx_runs_keras_predictions_in_onnxruntime(name, exported):
    case = exported["cases"][name]
    assert "onnx" not in case["errors"], case["errors"]["onnx"]
    served, expected = exported["served"]["onnx"][name], case["expected"]
    assert "error" not in served, served["error"][-3000:]
    np.testing.assert_allclose(served["serve"], expected, rtol=0, atol=ATOL)
    np.testing.assert_allclose(served["one"], expected[:1], rtol=0, atol=ATOL)
    print(f"onnx {name}: max abs diff "
          f"{_max_difference(served['serve'], expected):.3g}")  # fmt: skip


@pytest.mark.parametrize("format", ["savedmodel", "onnx"])
def test_cli_exports_a_run_directory(format, exported):
    # Its predictions are checked with the other cases' (CLI_CASE).
    status, stdout, stderr = exported["cli"][format]
    assert status == 0, stderr[-3000:]
    path = exported["cases"][CLI_CASE]["paths"][format]
    assert stdout.strip() == f"exported: {path}"
    if format == "savedmodel":
        meta_file = path / export_module.METADATA_NAME
    else:
        meta_file = path.with_name(path.name + ".json")
    meta = json.loads(meta_file.read_text())
    assert meta["source"] == str(exported["run"] / "best.keras")


def test_export_descriptions_name_the_model_inputs(exported):
    # The serving scripts feed by these names; a renamed input would break
    # every client.
    for name, case in exported["cases"].items():
        names = sorted(case["names"])
        saved = json.loads(
            (case["paths"]["savedmodel"] / export_module.METADATA_NAME).read_text()
        )
        onnx_file = case["paths"]["onnx"]
        onnx = json.loads(onnx_file.with_name(onnx_file.name + ".json").read_text())
        for meta in (saved, onnx):
            assert sorted(i["name"] for i in meta["inputs"]) == names, (name, meta)
            assert len(meta["outputs"]) == 1


def test_augmented_model_augments_in_training_only(exported):
    # The exports are compared with inference predictions: those must be the
    # bare network's, and training mode must differ, or the check is empty.
    # Built here (the exports may come from another xdist worker).
    model, x = _model("augmented"), exported["cases"]["augmented"]["feed"]
    expected = model.predict(x, verbose=0)
    bare = model.layers[-1]
    np.testing.assert_array_equal(expected, bare.predict(x, verbose=0))
    training = keras.ops.convert_to_numpy(model(x, training=True))
    assert np.abs(training - expected).max() > 1e-4


def test_dropout_batchnorm_model_behaves_differently_in_training(exported):
    # Otherwise the inference-mode checks could not fail.
    model = _model("dropout_batchnorm")  # built here, as above
    x = exported["cases"]["dropout_batchnorm"]["feed"]
    expected = model.predict(x, verbose=0)
    weights = model.get_weights()
    try:
        training = keras.ops.convert_to_numpy(model(x, training=True))
    finally:  # a training-mode call moves the batch-norm statistics
        model.set_weights(weights)
    assert np.abs(training - expected).max() > 1e-2


def test_descriptions_give_names_shapes_dtypes_and_versions(exported):
    # The dropout_batchnorm model: built with input_shape=(12, 12, 1), 3 classes.
    paths = exported["cases"]["dropout_batchnorm"]["paths"]
    saved = json.loads((paths["savedmodel"] / export_module.METADATA_NAME).read_text())
    onnx = json.loads(paths["onnx"].with_name(paths["onnx"].name + ".json").read_text())
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


class _InverseErf(keras.layers.Layer):
    """``erfinv``: TensorFlow has it, tf2onnx has no conversion for it."""

    def call(self, inputs):
        return keras.ops.erfinv(inputs)


def test_onnx_export_refuses_an_op_tf2onnx_cannot_convert(tmp_path):
    pytest.importorskip("tf2onnx", reason="pip install 'annzoo[export]'")
    inputs = keras.Input((3,), name="features")
    model = keras.Model(inputs, _InverseErf()(inputs), name="odd")
    path = tmp_path / "model.onnx"
    with pytest.raises(AnnzooError) as raised:
        export_module.export(model, path, format="onnx")
    assert str(raised.value) == (
        "Cannot export model 'odd' to ONNX: tf2onnx cannot convert the "
        "TensorFlow op(s) Erfinv (opset 15); export it with format='savedmodel' "
        "or format='keras' instead."
    )
    assert list(tmp_path.iterdir()) == []  # nothing half-written is left


# The tagger cases: the export's output is the emission scores; the tags need
# the CRF's transitions, which the export's description carries.
CRF_CASES = [name for name, (_, config) in CASES.items() if config.get("crf")]


@pytest.mark.parametrize("name", CRF_CASES)
def test_crf_tags_from_an_export_equal_annzoo_tags(name, exported):
    case = exported["cases"][name]
    tokens, expected = case["feed"], case["tags"]  # decode_tags(model, tokens)
    assert (tokens == 0).any() and (expected[tokens == 0] == PAD_TAG).all()
    for format, paths in (
        ("savedmodel", case["paths"]["savedmodel"] / export_module.METADATA_NAME),
        ("onnx", case["paths"]["onnx"].with_name(case["paths"]["onnx"].name + ".json")),
    ):
        crf = json.loads(paths.read_text())["crf"]
        emissions = exported["served"][format][name]["serve"]
        tags, _ = viterbi_decode(
            emissions,
            np.asarray(crf["transitions"], "float32"),
            np.asarray(crf["start_transitions"], "float32"),
            np.asarray(crf["end_transitions"], "float32"),
            mask=tokens != 0,
            pad_tag=crf["pad_tag"],
        )
        np.testing.assert_array_equal(tags, expected, err_msg=format)

"""A language model's one-step export (`annzoo.export.export(step=True)`,
``annzoo export RUN_DIR --step``).

Three tiny models, one per architecture (a causal Transformer, an LSTM, and a
GRU conditioned on a class; two layers each), built once for the module. Each
is exported as a SavedModel, and one fresh process where importing annzoo and
Keras fails loads them all with ``tf.saved_model.load`` and (1) steps through
fixed token rows, whose logits must equal the full-sequence model's
``head_logits`` at every position, and (2) decodes greedily with nothing but
the exported step, whose tokens must be `annzoo.generation.generate_text`'s
with ``top_k=1``. Each ONNX step is checked the same way in ONNX Runtime. The
command's ``--step`` writes the same export from a run directory, and refuses
a model that is not a language model before anything is written.
"""

from __future__ import annotations

import json

import keras
import numpy as np
import pytest

import annzoo
from annzoo import io as aio
from annzoo.cli import main
from annzoo.errors import AnnzooError
from annzoo.export import METADATA_NAME, export
from annzoo.generation import generate_text, language_model_vocabulary
from annzoo.text import PAD_ID
from tests.conftest import run_python

if keras.backend.backend() != "tensorflow":
    pytest.skip("SavedModel exports need TensorFlow", allow_module_level=True)

ATOL = 1e-5
VOCABULARY = language_model_vocabulary(["abcdef"])  # 4 specials + 6 letters
CASES = {
    "transformer": dict(sequence_length=8, embedding_dim=8, num_layers=2),
    "lstm": dict(architecture="lstm", embedding_dim=6, units=6, num_layers=2),
    "gru_conditional": dict(
        architecture="gru", embedding_dim=6, units=5, conditional_classes=3
    ),
}
SPECIALS = [PAD_ID, VOCABULARY.start_id, VOCABULARY.unk_id]  # never chosen
STEPS = 6  # greedy tokens written
ROWS = np.array([[1, 5, 7, 4, 9, 6], [1, 8, 8, 2, 5, 4]], dtype=np.int32)
CLASSES = np.array([2, 0], dtype=np.int32)

# Fails the import of these packages as if they were not installed.
SERVE = """
import importlib.abc, importlib.machinery, json, sys
class _Absent(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("annzoo", "keras", "tf_keras"):
            return importlib.machinery.ModuleSpec(name, self)
    def create_module(self, spec):
        raise ModuleNotFoundError(f"No module named {spec.name!r}", name=spec.name)
    def exec_module(self, module):
        pass
sys.meta_path.insert(0, _Absent())
import numpy as np
import tensorflow as tf

def run(path, rows, classes, specials, end, steps):
    loaded = tf.saved_model.load(path)
    meta = json.load(open(path + "/annzoo-export.json"))["step"]
    extra = {"classes": tf.constant(classes)} if meta["conditional"] else {}
    def start(batch):
        return tf.zeros([batch, *meta["cache_shape"][1:]], tf.float32)
    # (1) the logits after each token of fixed rows
    rows = np.asarray(rows, np.int32)
    cache, logits = start(len(rows)), []
    for position in range(rows.shape[1]):
        out = loaded.step(token=tf.constant(rows[:, position]),
                          position=tf.constant(position), cache=cache, **extra)
        cache = out["new_cache"]
        logits.append(out["logits"].numpy())
    # (2) greedy decoding from <start>, the special tokens never chosen
    cache, token, written = start(len(rows)), np.full(len(rows), 1, np.int32), []
    done = np.zeros(len(rows), bool)
    for position in range(steps):
        out = loaded.step(token=tf.constant(token), position=tf.constant(position),
                          cache=cache, **extra)
        cache, scores = out["new_cache"], out["logits"].numpy()
        scores[:, specials] = -np.inf
        token = scores.argmax(axis=-1).astype(np.int32)
        written.append(np.where(done, end, token).tolist())
        done |= token == end
    return {"logits": np.stack(logits, 1).tolist(), "greedy": written}

jobs = json.loads(sys.argv[1])
print(json.dumps({name: run(**job) for name, job in jobs.items()}))
print(json.dumps(sorted(sys.modules)))
"""


def _model(name):
    keras.utils.set_random_seed(0)
    model = annzoo.build_language_model(
        len(VOCABULARY), **CASES[name], dropout=0.0, compile=False
    )
    # Weights away from their near-zero start, so that a wrong step shows.
    rng = np.random.default_rng(1)
    for weight in model.trainable_weights:
        values = keras.ops.convert_to_numpy(weight)
        weight.assign(values + rng.normal(0, 0.5, values.shape).astype("float32"))
    return model


@pytest.fixture(scope="module")
def models():
    return {name: _model(name) for name in CASES}


def _conditional(name):
    return name.endswith("conditional")


def _full_logits(model, conditional):
    """``head_logits`` of the whole rows (padded to the model's length)."""
    logits_model = keras.Model(model.inputs, model.get_layer("head_logits").output)
    length = model.inputs[0].shape[1] or ROWS.shape[1]
    rows = np.zeros((len(ROWS), length), np.int32)
    rows[:, : ROWS.shape[1]] = ROWS
    inputs = {"tokens": rows}
    if conditional:
        inputs["classes"] = CLASSES[:, None]
    logits = keras.ops.convert_to_numpy(logits_model(inputs, training=False))
    return logits[:, : ROWS.shape[1]]


@pytest.fixture(scope="module")
def greedy_text(models):
    """`generate_text`'s greedy text for a model and a label, each once."""
    texts = {}

    def text(name, label):
        if (name, label) not in texts:
            texts[name, label] = generate_text(
                models[name], VOCABULARY, num=1, top_k=1, max_length=STEPS,
                seed=0, labels=label,
            )[0]  # fmt: skip
        return texts[name, label]

    return text


def _texts(ids):
    """Greedy ids as generate_text writes them: up to <end>, as characters."""
    ids = list(ids)
    if VOCABULARY.end_id in ids:
        ids = ids[: ids.index(VOCABULARY.end_id)]
    return "".join(VOCABULARY.tokens[i] for i in ids)


def _check(name, model, logits, greedy, greedy_text):
    """Stepped logits (batch, position, vocabulary) and greedy ids (batch,
    step) against the full-sequence model and generate_text."""
    conditional = _conditional(name)
    np.testing.assert_allclose(
        np.asarray(logits), _full_logits(model, conditional), atol=ATOL, rtol=0,
        err_msg=name,
    )  # fmt: skip
    # generate_text stops a row at <end>; the step loops write <end> on.
    for row, ids in enumerate(np.asarray(greedy)):
        label = int(CLASSES[row]) if conditional else None
        assert _texts(ids) == greedy_text(name, label), (name, row)


@pytest.fixture(scope="module")
def served(models, tmp_path_factory):
    """Every model's SavedModel step, run in one process without annzoo."""
    root = tmp_path_factory.mktemp("step_savedmodels")
    jobs = {}
    for name, model in models.items():
        path = export(model, root / name, format="savedmodel", step=True)
        meta = json.loads((path / METADATA_NAME).read_text())
        assert meta["step"]["conditional"] is _conditional(name)
        assert meta["step"]["architecture"] == CASES[name].get(
            "architecture", "transformer"
        )
        assert meta["signature"] == "serving_default"
        jobs[name] = dict(
            path=str(path), rows=ROWS.tolist(), classes=CLASSES.tolist(),
            specials=SPECIALS, end=VOCABULARY.end_id, steps=STEPS,
        )  # fmt: skip
    result = run_python("-c", SERVE, json.dumps(jobs), timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    *_, served, imported = result.stdout.splitlines()
    imported = {m.split(".")[0] for m in json.loads(imported)}
    assert not imported & {"annzoo", "keras", "tf_keras"}
    return json.loads(served)


@pytest.mark.slow
@pytest.mark.parametrize("name", CASES)
def test_exported_step_matches_the_model_and_generate_text(
    name, models, served, greedy_text
):
    greedy = np.array(served[name]["greedy"]).T  # (batch, step)
    _check(name, models[name], served[name]["logits"], greedy, greedy_text)


@pytest.mark.parametrize("name", CASES)
def test_onnx_step_matches_the_model_and_generate_text(
    name, models, greedy_text, tmp_path
):
    """Each architecture's step in ONNX Runtime; the Transformer's cache
    writes (XlaDynamicUpdateSlice) are rewritten by annzoo in standard ONNX
    ops, the recurrent ones' states are plain outputs."""
    onnxruntime = pytest.importorskip("onnxruntime")
    model, conditional = models[name], _conditional(name)
    path = export(model, tmp_path / "step.onnx", format="onnx", step=True)
    meta = json.loads(path.with_name(path.name + ".json").read_text())["step"]
    session = onnxruntime.InferenceSession(
        str(path), providers=["CPUExecutionProvider"]
    )
    inputs = ["token", "position", "cache"] + (["classes"] if conditional else [])
    assert [i.name for i in session.get_inputs()] == inputs == meta["inputs"]
    names = [o.name for o in session.get_outputs()]
    extra = {"classes": CLASSES} if conditional else {}

    def step(token, position, cache):
        feed = {"token": token, "position": np.array(position, np.int32),
                "cache": cache, **extra}  # fmt: skip
        out = dict(zip(names, session.run(None, feed), strict=True))
        return out["logits"], out["new_cache"]

    def start():
        return np.zeros((len(ROWS), *meta["cache_shape"][1:]), np.float32)

    cache, logits = start(), []
    for position in range(ROWS.shape[1]):
        scores, cache = step(ROWS[:, position], position, cache)
        logits.append(scores)
    cache, written = start(), []
    token = np.full(len(ROWS), VOCABULARY.start_id, np.int32)
    for position in range(STEPS):
        scores, cache = step(token, position, cache)
        scores[:, SPECIALS] = -np.inf
        token = scores.argmax(axis=-1).astype(np.int32)
        written.append(token)
    _check(name, model, np.stack(logits, 1), np.stack(written, 1), greedy_text)


def test_step_export_refuses_other_formats_and_models(tmp_path):
    model = annzoo.build_mlp(4, 3, hidden_units=(4,), compile=False, name="mlp")
    with pytest.raises(AnnzooError, match="SavedModel or ONNX.*format='keras'"):
        export(model, tmp_path / "x.keras", format="keras", step=True)
    with pytest.raises(AnnzooError, match="`step=True`.*must be a language model"):
        export(model, tmp_path / "step", format="savedmodel", step=True)
    assert not (tmp_path / "step").exists()
    with pytest.raises(AnnzooError, match="`step` must be True or False"):
        export(model, tmp_path / "step", format="savedmodel", step="yes")


# -- the command: annzoo export RUN_DIR --step ---------------------------------------


def _cli(capsys, *args):
    code = main(["export", *map(str, args)])
    out = capsys.readouterr()
    return code, out.out, out.err


def _refused(capsys, *args):
    """The command's one error line (exit status 2, no traceback)."""
    code, out, err = _cli(capsys, *args)
    assert code == 2 and not out, (code, out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("annzoo: error: `--step`"), err
    return lines[0]


def test_cli_exports_the_step_of_a_language_model_run(models, tmp_path, capsys):
    import tensorflow as tf

    run = tmp_path / "run"
    run.mkdir()
    aio.save_model(models["lstm"], run / "best.keras")
    code, out, err = _cli(capsys, run, "--step")  # a SavedModel by default
    assert code == 0, err
    path = run / "export" / "step_savedmodel"
    assert out == f"exported: {path}\n"
    meta = json.loads((path / METADATA_NAME).read_text())
    assert meta["source"] == str(run / "best.keras")
    assert meta["step"]["architecture"] == "lstm"
    # Its first step is the model's first position.
    loaded = tf.saved_model.load(str(path))
    cache = tf.zeros([len(ROWS), *meta["step"]["cache_shape"][1:]])
    first = loaded.step(
        token=tf.constant(ROWS[:, 0]), position=tf.constant(0), cache=cache
    )
    np.testing.assert_allclose(
        first["logits"].numpy(), _full_logits(models["lstm"], False)[:, 0],
        atol=ATOL, rtol=0,
    )  # fmt: skip


def test_cli_step_refuses_keras_and_other_models_before_writing(tmp_path, capsys):
    run = tmp_path / "mlp_run"
    run.mkdir()
    mlp = annzoo.build_mlp(4, 3, hidden_units=(4,), compile=False, name="mlp")
    aio.save_model(mlp, run / "best.keras")
    line = _refused(capsys, run, "--step", "--format", "keras")
    assert "SavedModel or ONNX" in line and line.endswith("--step --format keras")
    for format in ("savedmodel", "onnx"):
        line = _refused(capsys, run, "--step", "--format", format)
        assert "must be a language model built by annzoo.build_language_model" in line
        assert f"Received: model='mlp' loaded from {str(run / 'best.keras')!r}" in line
        assert not (run / "export").exists()

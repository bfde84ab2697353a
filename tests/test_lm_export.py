"""A language model's one-step export (`annzoo.export.export(step=True)`).

Two tiny models (a causal Transformer, and a GRU conditioned on a class) are
exported; one fresh process where importing annzoo and Keras fails loads each
SavedModel with ``tf.saved_model.load`` and (1) steps through fixed token
rows, whose logits must equal the full-sequence model's ``head_logits`` at
every position, and (2) decodes greedily with nothing but the exported step,
whose tokens must be `annzoo.generation.generate_text`'s with ``top_k=1``.
The Transformer's ONNX step is checked the same way in ONNX Runtime.
"""

from __future__ import annotations

import json

import keras
import numpy as np
import pytest

import annzoo
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
    "gru_conditional": dict(
        architecture="gru", embedding_dim=6, units=5, conditional_classes=3
    ),
}
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


def _full_logits(model, conditional):
    """``head_logits`` of the whole rows (padded to the model's length)."""
    logits_model = keras.Model(model.inputs, model.get_layer("head_logits").output)
    length = model.inputs[0].shape[1] or ROWS.shape[1]
    rows = np.zeros((len(ROWS), length), np.int32)
    rows[:, : ROWS.shape[1]] = ROWS
    inputs = {"tokens": rows, "classes": CLASSES[:, None]} if conditional else rows
    logits = keras.ops.convert_to_numpy(logits_model(inputs, training=False))
    return logits[:, : ROWS.shape[1]]


@pytest.mark.slow
def test_exported_step_matches_the_model_and_generate_text(tmp_path):
    models, jobs = {}, {}
    specials = [PAD_ID, VOCABULARY.start_id, VOCABULARY.unk_id]
    for name in CASES:
        models[name] = model = _model(name)
        path = export(model, tmp_path / name, format="savedmodel", step=True)
        meta = json.loads((path / METADATA_NAME).read_text())
        conditional = name.endswith("conditional")
        assert meta["step"]["conditional"] is conditional
        assert meta["signature"] == "serving_default"
        jobs[name] = dict(
            path=str(path), rows=ROWS.tolist(), classes=CLASSES.tolist(),
            specials=specials, end=VOCABULARY.end_id, steps=6,
        )  # fmt: skip
    result = run_python("-c", SERVE, json.dumps(jobs), timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    *_, served, imported = result.stdout.splitlines()
    imported = {m.split(".")[0] for m in json.loads(imported)}
    assert not imported & {"annzoo", "keras", "tf_keras"}
    served = json.loads(served)
    for name, model in models.items():
        conditional = name.endswith("conditional")
        np.testing.assert_allclose(
            np.array(served[name]["logits"]),
            _full_logits(model, conditional),
            atol=ATOL,
            rtol=0,
            err_msg=name,
        )
        # generate_text stops a row at <end>; the served loop writes <end> on.
        greedy = np.array(served[name]["greedy"]).T
        for row, ids in enumerate(greedy):
            expected = generate_text(
                model, VOCABULARY, num=1, top_k=1, max_length=6, seed=0,
                labels=int(CLASSES[row]) if conditional else None,
            )[0]  # fmt: skip
            assert _texts(ids) == expected, name


def _texts(ids):
    """Greedy ids as generate_text writes them: up to <end>, as characters."""
    ids = list(ids)
    if VOCABULARY.end_id in ids:
        ids = ids[: ids.index(VOCABULARY.end_id)]
    return "".join(VOCABULARY.tokens[i] for i in ids)


@pytest.mark.slow
def test_onnx_step_matches_the_model_and_generate_text(tmp_path):
    """The Transformer, whose cache writes (XlaDynamicUpdateSlice) annzoo
    rewrites in standard ONNX ops, run by ONNX Runtime."""
    onnxruntime = pytest.importorskip("onnxruntime")
    model = _model("transformer")
    path = export(model, tmp_path / "step.onnx", format="onnx", step=True)
    meta = json.loads(path.with_name(path.name + ".json").read_text())["step"]
    session = onnxruntime.InferenceSession(
        str(path), providers=["CPUExecutionProvider"]
    )
    assert [i.name for i in session.get_inputs()] == ["token", "position", "cache"]
    names = [o.name for o in session.get_outputs()]

    def step(token, position, cache):
        feed = {"token": token, "position": np.array(position, np.int32),
                "cache": cache}  # fmt: skip
        out = dict(zip(names, session.run(None, feed), strict=True))
        return out["logits"], out["new_cache"]

    cache = np.zeros((len(ROWS), *meta["cache_shape"][1:]), np.float32)
    logits = []
    for position in range(ROWS.shape[1]):
        scores, cache = step(ROWS[:, position], position, cache)
        logits.append(scores)
    np.testing.assert_allclose(
        np.stack(logits, 1), _full_logits(model, False), atol=ATOL, rtol=0
    )
    cache = np.zeros((1, *meta["cache_shape"][1:]), np.float32)
    token, written = np.array([VOCABULARY.start_id], np.int32), []
    specials = [PAD_ID, VOCABULARY.start_id, VOCABULARY.unk_id]
    for position in range(6):
        scores, cache = step(token, position, cache)
        scores[:, specials] = -np.inf
        token = scores.argmax(axis=-1).astype(np.int32)
        written.append(int(token[0]))
    expected = generate_text(model, VOCABULARY, num=1, top_k=1, max_length=6)
    assert _texts(written) == expected[0]


def test_step_export_refuses_other_formats_and_models(tmp_path):
    model = annzoo.build_mlp(4, 3, hidden_units=(4,), compile=False)
    with pytest.raises(AnnzooError, match="SavedModel or ONNX.*format='keras'"):
        export(model, tmp_path / "x.keras", format="keras", step=True)
    with pytest.raises(AnnzooError, match="must be a language model"):
        export(model, tmp_path / "step", format="savedmodel", step=True)
    assert not (tmp_path / "step").exists()
    with pytest.raises(AnnzooError, match="`step` must be True or False"):
        export(model, tmp_path / "step", format="savedmodel", step="yes")

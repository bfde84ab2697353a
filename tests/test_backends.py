"""annzoo without TensorFlow: the JAX backend on a machine where it is absent.

A meta-path hook in a fresh process makes ``import tensorflow`` fail exactly as
it does where TensorFlow is not installed; annzoo must still import, build and
train every model, and run the training runner end to end.
"""

from __future__ import annotations

import json
import math

import pytest

from annzoo import list_models
from annzoo import model_info as annzoo_info
from tests.conftest import run_python

pytest.importorskip("jax")

BLOCK_TENSORFLOW = """
import importlib.abc, sys
class _NoTensorFlow(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("tensorflow", "tensorflow_datasets"):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
sys.meta_path.insert(0, _NoTensorFlow())
try:
    import tensorflow
    raise SystemExit("the TensorFlow block did not work")
except ModuleNotFoundError:
    pass
"""


@pytest.mark.slow
def test_import_and_build_every_model_without_tensorflow():
    script = (
        BLOCK_TENSORFLOW
        + """
import json, sys
import numpy as np
import keras
import annzoo
built = {}
for name in annzoo.list_models():
    info = annzoo.model_info(name)
    if info.reference and info.reference.params > 30_000_000:
        # The largest presets (vgg16, vit_b16, transformer_base...) use the same
        # builders as smaller ones here, and build on JAX in the JAX pass.
        continue
    # keras.applications backbones: untrained (no download) and small.
    offline = ({"weights": None, "input_shape": (32, 32, 3)}
               if info.family == "applications" else {})
    model = annzoo.create_model(name, compile=False, **offline)
    built[name] = list(model.output_shape[1:]) == list(info.output_shape)
# One real training step on a small one, on the JAX backend.
model = annzoo.create_model("resnet20", input_shape=(16, 16, 3))
x = np.random.default_rng(0).random((4, 16, 16, 3), dtype=np.float32)
loss = model.train_on_batch(x, np.array([0, 1, 2, 3]), return_dict=True)["loss"]
print(json.dumps({
    "backend": keras.backend.backend(),
    "built": built,
    "loss": float(loss),
    "tensorflow_loaded": "tensorflow" in sys.modules,
}))
"""
    )
    done = run_python("-c", script, KERAS_BACKEND="jax")
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["backend"] == "jax"
    assert report["tensorflow_loaded"] is False
    assert report["built"] and all(report["built"].values()), report["built"]
    # Every family has a preset under the size limit above, so every family
    # was built (read from the registry, not a list kept here).
    families = {annzoo_info(name).family for name in report["built"]}
    assert families == {annzoo_info(name).family for name in list_models()}, families
    assert math.isfinite(report["loss"]), report["loss"]  # neither NaN nor inf


def test_training_runner_without_tensorflow(tmp_path):
    script = (
        BLOCK_TENSORFLOW
        + f"""
import json, sys
from annzoo.training import Recipe, train
recipe = Recipe(name="digits_mlp_jax", model={{"name": "mlp"}},
                data={{"dataset": "digits", "batch_size": 64}}, fit={{"epochs": 2}})
result = train(recipe, output_dir={str(tmp_path)!r}, verbose=0)
print(json.dumps({{"accuracy": result.test_metrics["accuracy"],
                  "tensorflow_loaded": "tensorflow" in sys.modules}}))
"""
    )
    done = run_python("-c", script, KERAS_BACKEND="jax")
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["tensorflow_loaded"] is False
    # Two epochs of an MLP on digits already beat chance (0.1) by far.
    assert report["accuracy"] > 0.5
    run_dir = tmp_path / "digits_mlp_jax"
    for name in (
        "recipe.json",
        "metrics.csv",
        "best.keras",
        "curves.png",
        "results.json",
    ):
        assert (run_dir / name).is_file(), name
    assert (
        json.loads((run_dir / "results.json").read_text())["versions"]["backend"]
        == "jax"
    )


@pytest.mark.slow
def test_tuning_without_tensorflow(tmp_path):
    script = (
        BLOCK_TENSORFLOW
        + f"""
import json, sys
import annzoo
from annzoo.training import Recipe
recipe = Recipe(name="tune_jax", model={{"name": "mlp"}},
                data={{"dataset": "digits", "limit": 64, "pipeline": "numpy"}},
                fit={{"epochs": 1}},
                search_space={{"hidden_units": [[8], [16]], "batch_size": [32]}})
result = annzoo.tune(recipe, max_trials=2, output_dir={str(tmp_path)!r}, verbose=0)
print(json.dumps({{"completed": result.completed,
                  "tensorflow_loaded": "tensorflow" in sys.modules}}))
"""
    )
    done = run_python("-c", script, KERAS_BACKEND="jax")
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report == {"completed": 2, "tensorflow_loaded": False}

"""`annzoo.speedups`: the switch, the contract with Keras' internals, and the
public routes that replaced private uses elsewhere."""

from __future__ import annotations

import json
import re
import sys
import warnings

import keras
import pytest

from annzoo import speedups
from annzoo.errors import AnnzooError
from annzoo.layers.walk import walk_layers
from annzoo.speedups import _core
from tests.conftest import ROOT, run_python

# Both backends (their private symbols differ). Not the ANNZOO_SPEEDUPS=0
# passes: the checks that depend on the switch set it themselves (the
# subprocesses below, monkeypatch), and the rest do not read it.
pytestmark = [pytest.mark.jax]

ALL = set(speedups.names())


@pytest.mark.parametrize("name", sorted(ALL))
def test_every_private_symbol_a_speedup_uses_exists(name):
    """The contract: fails naming the symbol and the speedup when the
    installed Keras or keras-tuner lacks one (then fix the speedup, or keep
    the Keras pin in setup.cfg where it is)."""
    findings = speedups.check_contract((name,))
    assert findings, f"speedup {name!r} declares no symbols"
    missing = [f for f in findings if f.ok is False]
    assert not missing, (
        f"speedup {name!r} relies on private symbols the installed Keras "
        f"{keras.__version__} / keras-tuner lacks: "
        + "; ".join(f"{f.symbol} ({f.detail})" for f in missing)
    )


def test_every_speedup_says_what_measures_it_and_what_it_uses():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        from bench import NAMES
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    for name, speedup in speedups.registry().items():
        module = sys.modules[f"annzoo.speedups.{name}"]
        benchmarks = re.findall(r"--only (\w+)", speedup.benchmark)
        assert benchmarks and set(benchmarks) <= set(NAMES), speedup.benchmark
        doc = module.__doc__ or ""
        assert f"``{name}``" in doc and "benchmarks/run.py --only" in doc, name
        assert "Public behaviour reproduced" in doc or speedup.correctness, name
        assert "Switched" in doc and "off" in doc, name  # what happens when off
        assert not re.search(r"\d+(\.\d+)? ?(ms|s)\b", doc), f"{name}: no figures"


@pytest.mark.parametrize(
    "value, expected",
    [
        (None, ALL),
        ("1", ALL),
        ("all", ALL),
        ("0", set()),
        (" none ", set()),
        ("host_init,fit_state", {"host_init", "fit_state"}),
        ("HOST_INIT, fit_state ,", {"host_init", "fit_state"}),
        ("-fit_state", ALL - {"fit_state"}),
        ("-fit_state,-tuner_io", ALL - {"fit_state", "tuner_io"}),
        ("host_init,fit_state,-fit_state", {"host_init"}),
    ],
)
def test_the_variable_selects_speedups(monkeypatch, value, expected):
    if value is None:
        monkeypatch.delenv(speedups.ENV, raising=False)
    else:
        monkeypatch.setenv(speedups.ENV, value)
    assert set(speedups.selected()) == expected
    for name in ALL:
        assert speedups.enabled(name) == (name in expected and name not in _core._OFF)


@pytest.mark.parametrize("value", ["host_init,fast_steps", "-nothing", ",", "2"])
def test_an_unknown_name_in_the_variable_is_an_error_naming_the_known_ones(
    monkeypatch, value
):
    monkeypatch.setenv(speedups.ENV, value)
    with pytest.raises(AnnzooError) as caught:
        speedups.enabled("host_init")
    message = str(caught.value)
    assert f"Received: ANNZOO_SPEEDUPS={value!r}" in message
    assert all(name in message for name in ALL)


def test_an_unknown_speedup_name_is_an_error():
    with pytest.raises(AnnzooError, match="fast_steps"):
        speedups.enabled("fast_steps")


def test_a_missing_symbol_switches_the_speedup_off_with_one_warning(monkeypatch):
    monkeypatch.setenv(speedups.ENV, "1")
    monkeypatch.setattr(_core, "_REGISTRY", dict(_core._REGISTRY))
    monkeypatch.setattr(_core, "_OFF", {})
    monkeypatch.setattr(_core, "_VERIFIED", {})
    _core.register(
        speedups.Speedup(
            name="probe_speedup",
            summary="a test's",
            benchmark="benchmarks/run.py --only dispatch",
            symbols=(speedups.Symbol("keras.src.layers.layer", "Layer._no_such"),),
        )
    )
    assert speedups.check_contract(("probe_speedup",))[0].ok is False
    with pytest.warns(RuntimeWarning) as said:
        assert not speedups.active("probe_speedup")
    assert len(said) == 1
    message = str(said[0].message)
    assert "probe_speedup" in message
    assert "keras.src.layers.layer.Layer._no_such" in message
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # once only
        assert not speedups.active("probe_speedup")
        assert not speedups.enabled("probe_speedup")
    assert speedups.active("fit_state") == speedups.enabled("fit_state")


# Runs in a fresh process: records Keras' and keras-tuner's functions before
# annzoo is imported, trains a recipe and runs a one-trial search, and
# reports which of them are still the originals (during the trial too).
PATCH_SCRIPT = """
import json, sys
import keras
import keras_tuner.src.utils as kt_utils
from keras_tuner.src.engine import tuner_utils
watched = {
    "kt_utils.save_json": (kt_utils, "save_json"),
    "SaveBestEpoch._save_model": (tuner_utils.SaveBestEpoch, "_save_model"),
    "SaveBestEpoch.on_train_end": (tuner_utils.SaveBestEpoch, "on_train_end"),
}
if keras.backend.backend() == "jax":
    from keras.src.backend.jax import core, random
    from keras.src.backend.jax import numpy as jnp_backend
    for module, names in ((random, ("uniform", "normal", "truncated_normal")),
                          (jnp_backend, ("zeros", "ones"))):
        for name in names:
            watched[f"{module.__name__}.{name}"] = (module, name)
    watched["JaxVariable._initialize_with_initializer"] = (
        core.JaxVariable, "_initialize_with_initializer")
originals = {key: getattr(owner, name) for key, (owner, name) in watched.items()}

def changed():
    return sorted(k for k, (owner, name) in watched.items()
                  if getattr(owner, name) is not originals[k])

import annzoo
from annzoo.training import Recipe, train
from annzoo.tuning import trials, tune

during = []
class Spy(trials.EpochTimer):
    def on_epoch_end(self, epoch, logs=None):
        during.extend(changed())
        super().on_epoch_end(epoch, logs)
    def __deepcopy__(self, memo):
        return Spy(self.record)
trials.EpochTimer = Spy

recipe = Recipe.from_dict(dict(
    name="tiny", model={"name": "mlp", "hidden_units": [8]},
    data={"dataset": "digits", "limit": 96, "pipeline": "numpy"},
    fit={"epochs": 1}, search_space={"hidden_units": [[8]], "batch_size": [32]}))
out = sys.argv[1]
train(recipe, output_dir=out, verbose=0)
model = annzoo.build_mlp(4, 2, hidden_units=(8,), compile=False)
annzoo.compile_model(model, task="multiclass", steps_per_execution=4)
tune(recipe, max_trials=1, output_dir=out + "/search", verbose=0)
print("RESULT", json.dumps({
    "after": changed(), "during_trial": sorted(set(during)),
    "model_methods": sorted(k for k in vars(model) if k.startswith("make_")),
}))
"""


def _patches(tmp_path, setting: str) -> dict:
    done = run_python(
        "-c", PATCH_SCRIPT, str(tmp_path), ANNZOO_SPEEDUPS=setting, timeout=600
    )
    assert done.returncode == 0, done.stderr[-3000:]
    line = next(x for x in done.stdout.splitlines() if x.startswith("RESULT "))
    return json.loads(line.removeprefix("RESULT "))


def test_with_speedups_off_annzoo_patches_nothing_in_keras(tmp_path):
    found = _patches(tmp_path, "0")
    assert found == {"after": [], "during_trial": [], "model_methods": []}


def test_with_speedups_on_the_same_check_sees_them(tmp_path):
    """The check above would notice a patch: with the speedups on, keras-tuner's
    writes are rerouted during a trial (and, on JAX, the initializers are
    wrapped). No speedup replaces a compiled model's own methods."""
    found = _patches(tmp_path, "1")
    assert "kt_utils.save_json" in found["during_trial"]
    assert "kt_utils.save_json" not in found["after"]  # restored after the search
    if keras.backend.backend() == "jax":
        assert "keras.src.backend.jax.random.uniform" in found["after"]
    assert found["model_methods"] == []


def _nested_model() -> keras.Model:
    inner = keras.Sequential(
        [keras.Input((6,)), keras.layers.Dense(4), keras.layers.BatchNormalization()]
    )
    tokens = keras.Input((5,), dtype="int32")
    x = keras.layers.Embedding(10, 6)(tokens)
    x = keras.layers.Bidirectional(keras.layers.GRU(3, dropout=0.1))(x)
    x = keras.layers.Dense(6)(x)
    x = inner(x)
    return keras.Model(tokens, keras.layers.Dense(2)(x))


@pytest.mark.parametrize(
    "make",
    [
        _nested_model,
        lambda: keras.layers.RandAugment(value_range=(0, 1), seed=1),
        lambda: keras.layers.TimeDistributed(keras.layers.Dense(2)),
    ],
)
def test_the_public_layer_walk_reaches_what_keras_tracks(make):
    """`walk_layers` (public attributes only) replaced Keras' private
    ``_flatten_layers`` in finetune and augment: it reaches the same layers."""
    layer = make()

    def ids(layers):  # a Sequential's `layers` leaves its InputLayer out
        return {id(x) for x in layers if not isinstance(x, keras.layers.InputLayer)}

    public = ids(walk_layers(layer))
    assert public == ids(layer._flatten_layers(include_self=True))
    assert ids(walk_layers(layer, include_self=False)) == public - {id(layer)}

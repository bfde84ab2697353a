"""Search spaces and hypermodels: every family builds and trains, specs are checked."""

from __future__ import annotations

import math

import keras
import keras_tuner as kt
import numpy as np
import pytest

import annzoo
from annzoo import registry, tuning
from annzoo.errors import AnnzooError

RNG = np.random.default_rng(0)
N = 8


def _images(shape):
    return RNG.random((N, *shape), dtype=np.float32)


def _tokens(length, vocabulary=12):
    return RNG.integers(1, vocabulary, (N, length)).astype("int32")


FAMILIES = annzoo.list_families()


def _family_fixed(family):
    """The family's smoke configuration less the keys its default space
    searches: sizes (and, for backbones, ``weights=None``) stay fixed, the
    architecture is searched."""
    spec = registry.family_spec(family)
    return {k: v for k, v in spec.smoke.items() if k not in spec.search_space}


def _batch_for(model):
    """Random inputs and labels shaped as ``model`` reads and predicts them."""
    x = {}
    for tensor in model.inputs:
        shape = tuple(6 if d is None else d for d in tensor.shape[1:])
        if "int" in str(tensor.dtype):
            x[tensor.name] = RNG.integers(1, 4, size=(N, *shape)).astype("int32")
        else:
            x[tensor.name] = RNG.random((N, *shape), dtype=np.float32)
    x = x if len(x) > 1 else next(iter(x.values()))
    out = model.output_shape
    steps = tuple(6 if d is None else d for d in out[1:-1])
    if out[-1] == 1:  # binary or regression: one output in [0, 1]
        return x, RNG.integers(0, 2, size=(N, *steps, 1)).astype("float32")
    return x, RNG.integers(0, out[-1], size=(N, *steps))


# Families whose default space searches the architecture. The others (the
# keras.applications backbones) search only the optimizer, learning rate,
# batch size and dropout: their trials build the smoke model that
# tests/test_family_specs.py builds and trains (a minute on a CPU), so their
# spaces are checked like a preset's, without a build.
SEARCHED = [f for f in FAMILIES if registry.family_spec(f).search_space]


@pytest.mark.slow
@pytest.mark.parametrize("family", SEARCHED)
def test_every_family_builds_from_its_default_space_and_trains_one_step(family):
    """Read from the registry: a family registered with its spec is tested."""
    hm = tuning.hypermodel(family, **_family_fixed(family))
    hp = kt.HyperParameters()
    model = hm.build(hp)
    reference = annzoo.create_model(family, **registry.family_spec(family).smoke)
    assert model.output_shape == reference.output_shape
    assert set(hm.active_values(hp)) >= {"optimizer", "learning_rate", "batch_size"}
    x, y = _batch_for(model)
    if registry.family_spec(family).tasks == ("adversarial",):
        # A GAN trains on images (its output's shape) and, when conditional,
        # their class ids; its inputs (noise, labels) are what it generates from.
        y = x.get("labels") if isinstance(x, dict) else None
        x = RNG.random((N, *model.output_shape[1:]), dtype=np.float32)
    history = hm.fit(hp, model, x, y, epochs=1, verbose=0)
    assert math.isfinite(history.history["loss"][0])


# Variants and presets the family loop above does not reach (each family's
# smoke configuration is one variant): name, fixed arguments, (x, y), expected
# output shape without the batch axis.
CASES = {
    "rnn_series": (
        "rnn",
        dict(input_shape=(6, 3), num_outputs=1, task="regression"),
        lambda: (_images((6, 3)), RNG.random((N, 1), dtype=np.float32)),
        (1,),
    ),
    "transformer_vit": (
        "transformer",
        dict(variant="vit", input_shape=(8, 8, 1), patch_size=4, num_classes=3),
        lambda: (_images((8, 8, 1)), RNG.integers(0, 3, N)),
        (3,),
    ),
    "preset_logistic_regression": (
        "logistic_regression",
        {},
        lambda: (_images((30,)), RNG.integers(0, 2, (N, 1))),
        (1,),
    ),
    "preset_lenet5": (
        "lenet5",
        dict(num_classes=4),
        lambda: (_images((32, 32, 1)), RNG.integers(0, 4, N)),
        (4,),
    ),
}


@pytest.mark.slow
@pytest.mark.parametrize("case", sorted(CASES))
def test_builds_from_defaults_and_trains_one_step(case):
    name, fixed, data, output_shape = CASES[case]
    hm = tuning.hypermodel(name, **fixed)
    hp = kt.HyperParameters()
    model = hm.build(hp)
    assert tuple(model.output_shape[1:]) == output_shape
    assert set(hm.active_values(hp)) >= {"optimizer", "learning_rate", "batch_size"}
    x, y = data()
    history = hm.fit(hp, model, x, y, epochs=1, verbose=0)
    assert math.isfinite(history.history["loss"][0])


PRESETS = [name for name in annzoo.list_models() if name not in FAMILIES]


def test_every_preset_searches_training_settings_only():
    """Every registered preset (and family without a space of its own) keeps
    its architecture: its default space is the optimizer, learning rate,
    batch size and at most dropout, and the model arguments a trial passes
    are at most dropout (no build: some take minutes on a CPU; two of CASES
    build and train)."""
    assert len(PRESETS) >= 20 and set(SEARCHED) < set(FAMILIES)
    unsearched = [f for f in FAMILIES if f not in SEARCHED]
    for name in PRESETS + unsearched:
        fixed = _family_fixed(name) if name in FAMILIES else {}
        space = set(tuning.default_space(name, **fixed))
        assert {"optimizer", "learning_rate", "batch_size"} <= space, name
        assert space <= {"optimizer", "learning_rate", "batch_size", "dropout"}, name
        arguments = tuning.hypermodel(name, **fixed).arguments(kt.HyperParameters())
        assert set(arguments["model"]) - set(fixed) <= {"dropout"}, (name, arguments)


def test_cases_name_registered_models():
    for name, *_ in CASES.values():
        assert name in annzoo.list_models() or name in FAMILIES, name


@pytest.mark.slow
@pytest.mark.parametrize(
    "case", [*SEARCHED, "transformer_vit"], ids=[*SEARCHED, "transformer_vit"]
)
def test_random_draws_build(case):
    """Values anywhere in the default space give a valid model (not just defaults)."""
    if case in CASES:
        name, fixed, _, output_shape = CASES[case]
    else:
        name, fixed = case, _family_fixed(case)
        spec = registry.family_spec(case)
        output_shape = annzoo.create_model(case, **spec.smoke).output_shape[1:]
    hm = tuning.hypermodel(name, **fixed)
    hp = kt.HyperParameters()
    hm.build(hp)
    for seed in range(2):
        # What an oracle does: fresh values for the active hyperparameters.
        for h in hp.space:
            hp.values[h.name] = h.random_sample(seed)
        hp.ensure_active_values()
        assert tuple(hm.build(hp).output_shape[1:]) == output_shape


def _dense_units(model):
    return [
        layer.units for layer in model.layers if isinstance(layer, keras.layers.Dense)
    ]


@pytest.mark.slow
def test_conditional_layers_follow_the_depth():
    hm = tuning.hypermodel("mlp", input_shape=4, num_outputs=3)
    hp = kt.HyperParameters()
    hp.values.update(hidden_units_depth=1, hidden_units_1=128)
    model = hm.build(hp)
    assert _dense_units(model) == [128, 3]  # one hidden layer, then the head
    active = hm.active_values(hp)
    assert active["hidden_units_depth"] == 1 and active["hidden_units_1"] == 128
    assert "hidden_units_2" not in active and "hidden_units_3" not in active
    assert not hp.is_active("hidden_units_2")

    hp.values.update(hidden_units_depth=3, hidden_units_2=256, hidden_units_3=32)
    model = hm.build(hp)
    assert _dense_units(model) == [128, 256, 32, 3]
    assert hm.arguments(hp)["model"]["hidden_units"] == (128, 256, 32)
    assert {"hidden_units_2", "hidden_units_3"} <= set(hm.active_values(hp))

    # keras-tuner 1.4.8 keeps values of hyperparameters that became inactive in
    # hp.values (until ensure_active_values): active_values must not.
    hp.values["hidden_units_depth"] = 1
    model = hm.build(hp)
    assert _dense_units(model) == [128, 3]
    assert "hidden_units_2" in hp.values
    assert "hidden_units_2" not in hm.active_values(hp)


def test_depth_can_be_zero():
    hm = tuning.hypermodel("cnn", input_shape=(8, 8, 1), num_classes=3)
    hp = kt.HyperParameters()
    hp.values.update(hidden_units_depth=0, filters_depth=2, filters_1=16, filters_2=64)
    model = hm.build(hp)
    assert _dense_units(model) == [3]
    convs = [c.filters for c in model.layers if isinstance(c, keras.layers.Conv2D)]
    assert convs == [16, 64]
    assert "hidden_units_1" not in hm.active_values(hp)


def test_seeded_values_reach_compile_and_fit():
    hm = tuning.hypermodel(
        "mlp", input_shape=4, num_outputs=3, compile_options={"jit_compile": False}
    )
    hp = kt.HyperParameters()
    hp.values.update(optimizer="rmsprop", learning_rate=0.005, batch_size=16)
    model = hm.build(hp)
    assert isinstance(model.optimizer, keras.optimizers.RMSprop)
    assert float(keras.ops.convert_to_numpy(model.optimizer.learning_rate)) == (
        pytest.approx(0.005)
    )
    assert model.jit_compile is False
    x, y = RNG.random((20, 4), dtype=np.float32), RNG.integers(0, 3, 20)
    history = hm.fit(hp, model, x, y, epochs=1, verbose=0)
    assert history.params["steps"] == 2  # ceil(20 / 16)


def test_none_choice_label_is_decoded():
    hm = tuning.hypermodel("seq2seq", vocabulary_size=12, sequence_length=5)
    assert hm.space["attention"]["values"] == ["bahdanau", "luong_general", None]
    hp = kt.HyperParameters()
    hp.values["attention"] = "none"
    assert hm.arguments(hp)["model"]["attention"] is None
    names = [layer.name for layer in hm.build(hp).layers]
    assert "attention" not in names and "attentional_hidden" not in names


def test_overrides_shorthand_fixed_and_removal():
    hm = tuning.hypermodel(
        "mlp",
        input_shape=4,
        num_outputs=3,
        space={
            "dropout": [0.0, 0.25],
            "activation": "tanh",
            "batch_norm": {"type": "boolean"},
            "optimizer": None,
            "hidden_units": {"type": "fixed", "value": [8, 4]},
        },
    )
    space = hm.space
    assert space["dropout"] == {"type": "choice", "values": [0.0, 0.25]}
    assert space["activation"] == {"type": "fixed", "value": "tanh"}
    assert space["batch_norm"] == {"type": "boolean"}
    assert "optimizer" not in space
    hp = kt.HyperParameters()
    model = hm.build(hp)
    assert _dense_units(model) == [8, 4, 3]
    assert model.get_layer("hidden1_act").activation is keras.activations.tanh
    assert isinstance(model.optimizer, keras.optimizers.Adam)  # compile default
    assert "optimizer" not in hp.values and hp.values["activation"] == "tanh"


def test_fixed_arguments_leave_the_space():
    hm = tuning.hypermodel(
        "mlp", input_shape=4, num_outputs=3, dropout=0.2, optimizer="sgd", batch_size=8
    )
    assert not {"dropout", "optimizer", "batch_size"} & set(hm.space)
    assert hm.fixed == {"input_shape": 4, "num_outputs": 3, "dropout": 0.2}
    hp = kt.HyperParameters()
    arguments = hm.arguments(hp)
    assert arguments["model"]["dropout"] == 0.2
    assert arguments["compile"]["optimizer"] == "sgd"
    assert arguments["data"] == {"batch_size": 8}
    assert isinstance(hm.build(hp).optimizer, keras.optimizers.SGD)


def test_rnn_embedding_only_for_tokens():
    series = tuning.default_space("rnn", input_shape=(6, 3), num_outputs=1)
    tokens = tuning.default_space(
        "rnn", input_shape=(6,), num_outputs=2, vocabulary_size=12
    )
    assert "embedding_dim" not in series and "embedding_dim" in tokens


@pytest.mark.slow
def test_preset_keeps_its_architecture():
    space = tuning.default_space("resnet20")
    assert set(space) == {"optimizer", "learning_rate", "batch_size", "dropout"}
    for name in ("logistic_regression", "lenet5"):
        built = tuning.hypermodel(name).build(kt.HyperParameters())
        assert built.count_params() == annzoo.create_model(name).count_params()
    assert (
        tuning.hypermodel("logistic_regression")
        .build(kt.HyperParameters())
        .count_params()
        == 30 + 1
    )  # one weight per feature and a bias


def test_preset_architecture_can_be_searched_when_named():
    hm = tuning.hypermodel("lenet5", space={"hidden_units": [[120, 84], [64]]})
    hp = kt.HyperParameters()
    hp.values["hidden_units"] = "[64]"
    assert _dense_units(hm.build(hp)) == [64, 10]


@pytest.mark.slow
def test_build_clears_the_session(monkeypatch):
    hm = tuning.hypermodel("mlp", input_shape=4, num_outputs=3)
    keras.layers.Dense(1)
    keras.layers.Dense(1)
    hm.build(kt.HyperParameters())
    # Auto-generated names restart after keras.backend.clear_session().
    assert keras.layers.Dense(1).name == "dense"

    calls = []
    original = keras.backend.clear_session
    monkeypatch.setattr(
        keras.backend, "clear_session", lambda *a, **k: calls.append(original(*a, **k))
    )
    hm.build(kt.HyperParameters())
    hm.build(kt.HyperParameters())
    assert len(calls) == 2


class _Batches(keras.utils.PyDataset):
    def __len__(self):
        return 2

    def __getitem__(self, index):
        return RNG.random((4, 4), dtype=np.float32), RNG.integers(0, 3, 4)


def test_batched_data_refuses_a_batch_size():
    hm = tuning.hypermodel("mlp", input_shape=4, num_outputs=3)
    hp = kt.HyperParameters()
    model = hm.build(hp)
    with pytest.raises(AnnzooError, match="batch_size.*already batched"):
        hm.fit(hp, model, _Batches(), epochs=1, verbose=0)
    hm = tuning.hypermodel(
        "mlp", input_shape=4, num_outputs=3, space={"batch_size": None}
    )
    model = hm.build(hp := kt.HyperParameters())
    history = hm.fit(hp, model, _Batches(), epochs=1, verbose=0)
    assert history.params["steps"] == 2


def test_describe_space_is_canonical():
    rate = {"type": "float", "min": 1e-4, "max": 1e-2, "sampling": "log"}
    a = {"dropout": [0.0, 0.5], "learning_rate": rate}
    b = {
        "learning_rate": {
            "sampling": "log",
            "max": 0.01,
            "min": 0.0001,
            "type": "float",
        },
        "dropout": {"values": [0.0, 0.5], "type": "choice"},
    }
    assert tuning.describe_space(a) == tuning.describe_space(b)
    changed = {**a, "learning_rate": {**a["learning_rate"], "max": 0.1}}
    assert tuning.describe_space(changed) != tuning.describe_space(a)
    hm = tuning.hypermodel("mlp", input_shape=4, num_outputs=3)
    text = tuning.describe_space(hm.space)
    assert text == tuning.describe_space(dict(reversed(hm.space.items())))
    assert '"hidden_units":{"depth":[1,3]' in text  # sorted keys, compact


def test_space_from_spec_without_a_name_normalizes_the_format():
    spec = tuning.space_from_spec({"units": [16, 32], "dropout": None, "cell": "gru"})
    assert spec == {
        "units": {"type": "choice", "values": [16, 32]},
        "dropout": None,
        "cell": {"type": "fixed", "value": "gru"},
    }
    inferred = tuning.space_from_spec({"dropout": {"min": 0.0, "max": 0.5}})
    assert inferred["dropout"]["type"] == "float"


BAD_SPECS = [
    ("dropout", {"type": "gaussian"}, "unknown type"),
    ("dropout", {"type": "float", "min": 0.5, "max": 0.1}, "must not exceed"),
    (
        "learning_rate",
        {"type": "float", "min": 0.0, "max": 0.1, "sampling": "log"},
        "min` > 0",
    ),
    ("dropout", {"type": "choice", "values": []}, "at least one value"),
    ("dropout", {"type": "float", "min": 0.0, "max": 0.5, "stp": 0.1}, "unknown"),
    ("dropout", {"type": "float", "max": 0.5}, "missing"),
    ("batch_size", {"type": "int", "min": 1.5, "max": 3}, "int numbers"),
    (
        "dropout",
        {"type": "float", "min": 0, "max": 0.5, "sampling": "cubic"},
        "sampling",
    ),
    ("hidden_units", {"type": "layers", "depth": [3, 1], "values": [8]}, "depth"),
    ("hidden_units", {"type": "layers", "depth": [1, 2], "values": []}, "values"),
    (
        "hidden_units",
        {"type": "layers", "depth": [1, 2], "values": [8, -1]},
        "positive integers",
    ),
    (
        "dropout",
        {"type": "layers", "depth": [1, 2], "values": [8]},
        "not sequence-valued",
    ),
    (
        "activation",
        {"type": "choice", "values": ["relu"], "default": "tanh"},
        "default",
    ),
    ("batch_norm", {"type": "boolean", "default": "yes"}, "true or false"),
    ("optimizer", ["adam", "adamm"], "names among"),
    ("batch_size", [16, 0], "positive integers"),
    ("dropout", {"oops": 1}, "needs a `type`"),
    ("dropout", (0.0, 0.5), "tuple"),
    ("dropout", {"type": "int", "min": 1, "max": 5, "step": 0}, "step"),
    ("dropout", {"type": "fixed", "value": object()}, "JSON"),
]


@pytest.mark.parametrize(("key", "spec", "message"), BAD_SPECS)
def test_malformed_specs_name_the_key(key, spec, message):
    with pytest.raises(AnnzooError, match=f"space.{key}") as raised:
        tuning.hypermodel("mlp", input_shape=4, num_outputs=3, space={key: spec})
    assert message in str(raised.value)
    assert "Received" in str(raised.value)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(space={"hiden_units": [8]}), "`space.hiden_units` is not an argument"),
        (dict(space={"num_outputs": [2, 3]}), "never tuned"),
        (dict(space={"dropout": [0.1]}, dropout=0.2), "also fixed"),
        (dict(space=[("dropout", 0.1)]), "must be a mapping"),
        (dict(compile=True), "compile_options"),
        (dict(hidden_layers=(8,)), "'hidden_layers' is not an argument"),
        (dict(compile_options={"optimizer": "sgd"}), "must not set `optimizer`"),
        (dict(compile_options={"jit_compiled": True}), "jit_compiled"),
        (dict(learning_rate=-1.0), "learning_rate"),
    ],
)
def test_bad_hypermodel_arguments(kwargs, message):
    with pytest.raises(AnnzooError, match=message):
        tuning.hypermodel("mlp", input_shape=4, num_outputs=3, **kwargs)


def test_missing_size_argument_is_named():
    with pytest.raises(AnnzooError, match="`num_classes` is required"):
        tuning.hypermodel("cnn", input_shape=(8, 8, 1))
    with pytest.raises(AnnzooError, match="`input_shape` is required"):
        tuning.default_space("mlp", num_outputs=2)
    with pytest.raises(AnnzooError, match="name"):
        tuning.hypermodel("no_such_model")


def test_a_choice_of_booleans_reaches_the_builder_as_booleans():
    import keras_tuner

    from annzoo.tuning import hypermodel

    hm = hypermodel(
        "rnn", input_shape=(5,), num_outputs=2, vocabulary_size=9,
        space={"bidirectional": [True, False]},
    )  # fmt: skip
    hp = keras_tuner.HyperParameters()
    arguments = hm.arguments(hp)
    assert arguments["model"]["bidirectional"] is True
    model = hm.build(hp)
    assert any(type(layer).__name__ == "Bidirectional" for layer in model.layers)

"""Every registered family, through its spec (a new family is tested by registering it).

A family declares next to its builder what annzoo needs (`annzoo.registry.FamilySpec`):
its tasks, the dataset structures it trains on and how a dataset fills its builder,
its search space, a smoke configuration. Each test here runs over
`annzoo.list_families()`, so a family added with its spec is checked without
editing this file.
"""

from __future__ import annotations

import inspect

import keras
import numpy as np
import pytest

import annzoo
from annzoo import registry, tasks
from annzoo.datasets import ArrayDataset
from annzoo.text import SEQUENCE_SPECIALS, Vocabulary
from annzoo.training import sequences
from annzoo.tuning.spaces import default_space

pytestmark = [pytest.mark.jax, pytest.mark.torch, pytest.mark.speedups_off]

FAMILIES = annzoo.list_families()
N = 6  # samples of the synthetic splits

# The sizes a dataset decides (FamilySpec.dataset_arguments fills them).
SIZES = {
    "input_shape",
    "num_classes",
    "num_outputs",
    "vocabulary_size",
    "sequence_length",
    "target_vocabulary_size",
    "target_sequence_length",
    "task",
    "image_shape",
    "conditional_classes",
}


def _parameters(family):
    return inspect.signature(registry.builder(family)).parameters


def _vocabulary(size, specials=("<pad>", "<unk>")):
    words = [f"w{i}" for i in range(size - len(specials))]
    return Vocabulary([*specials, *words])


def _split(family, structure, rng):
    """A tiny split of ``structure`` shaped as ``family``'s smoke model reads it."""
    smoke = registry.family_spec(family).smoke
    # Token inputs, except a captioner's images (its vocabulary is the targets').
    images = structure == "sequence" and "input_shape" in smoke
    tokens = "vocabulary_size" in smoke and not images
    fields = dict(name="synthetic", split="train", num_classes=None,
                  class_names=None, feature_names=None, seed=0,
                  indices=np.arange(N), structure=structure)  # fmt: skip
    if tokens:
        vocabulary = _vocabulary(11)
        x = rng.integers(1, len(vocabulary), size=(N, 7)).astype("int32")
        fields["vocabulary"] = vocabulary
    else:
        shape = smoke.get("input_shape", smoke.get("image_shape", (5,)))
        shape = (shape,) if isinstance(shape, int) else tuple(shape)
        x = rng.random((N, *shape), dtype=np.float32)
    if structure == "sequence":
        target = _vocabulary(9, SEQUENCE_SPECIALS)
        y = rng.integers(4, len(target), size=(N, 5)).astype("int32")
        return ArrayDataset(x=x, y=y, task="sequence", target_vocabulary=target,
                            **fields)  # fmt: skip
    if structure == "tagging":
        y = rng.integers(0, 3, size=x.shape).astype("int32")
        fields.update(num_classes=3, class_names=("O", "B-X", "I-X"))
        return ArrayDataset(x=x, y=y, task="tagging", **fields)
    fields.update(num_classes=3, class_names=("a", "b", "c"))
    return ArrayDataset(x=x, y=np.arange(N) % 3, task="multiclass", **fields)


def test_every_family_has_a_spec():
    assert FAMILIES
    for family in FAMILIES:
        assert isinstance(registry.family_spec(family), registry.FamilySpec)


@pytest.mark.parametrize("family", FAMILIES)
def test_spec_names_known_tasks_and_builder_arguments(family):
    spec = registry.family_spec(family)
    parameters = _parameters(family)
    assert set(spec.tasks) <= set(tasks.TASKS)
    for task in spec.tasks:
        assert tasks.get_task(task).name == task
    assert set(spec.smoke) <= set(parameters)
    assert set(spec.search_space) <= set(parameters)
    assert not set(spec.search_space) & SIZES, "sizes come from the data"
    assert set(spec.space_requires) <= set(spec.search_space)
    assert set(spec.space_requires.values()) <= set(parameters)


@pytest.mark.parametrize("family", FAMILIES)
def test_default_space_is_the_spec_space_plus_the_common_keys(family):
    spec = registry.family_spec(family)
    parameters = _parameters(family)
    required = {k for k, p in parameters.items() if p.default is p.empty}
    fixed = {k: v for k, v in spec.smoke.items() if k in SIZES | required}
    space = default_space(family, **fixed)
    expected = {
        key
        for key in spec.search_space
        if key not in fixed
        and (key not in spec.space_requires or spec.space_requires[key] in fixed)
    }
    assert set(space) - {"learning_rate", "optimizer", "batch_size"} == expected


# keras.applications backbones take minutes to build and compile on a CPU at
# any size: the full suite builds them, the fast lane every other family.
@pytest.mark.parametrize(
    "family",
    [
        pytest.param(f, marks=pytest.mark.slow) if f == "applications" else f
        for f in FAMILIES
    ],
)
def test_smoke_model_builds_trains_and_reloads(family, tmp_path, reloader):
    spec = registry.family_spec(family)
    keras.utils.set_random_seed(0)
    model = annzoo.create_model(family, **spec.smoke)
    task = spec.smoke.get("task", _parameters(family)["task"].default)
    assert task in spec.tasks
    rng = np.random.default_rng(0)
    x = {}
    for tensor in model.inputs:
        shape = tuple(7 if d is None else d for d in tensor.shape[1:])
        if "int" in str(tensor.dtype):
            x[tensor.name] = rng.integers(1, 8, size=(2, *shape)).astype("int32")
        else:
            x[tensor.name] = rng.random((2, *shape), dtype=np.float32)
    x = x if len(x) > 1 else next(iter(x.values()))
    out = model.output_shape
    steps = tuple(7 if d is None else d for d in out[1:-1])
    if task in ("multiclass", "sequence", "tagging", "generation"):
        y = rng.integers(0, out[-1], size=(2, *steps))
    elif task == "binary":
        y = rng.integers(0, 2, size=(2, *steps, out[-1])).astype("float32")
    elif task == "bernoulli":  # autoencoders reconstruct their inputs
        y = x
    else:
        y = rng.normal(size=(2, *steps, out[-1])).astype("float32")
    fit_x = x
    if task == "adversarial":
        # A GAN trains on images (its output's shape) and, when conditional,
        # their class ids; its inputs (noise, labels) are what it generates from.
        fit_x = rng.random((2, *out[1:]), dtype=np.float32)
        y = x.get("labels") if isinstance(x, dict) else None
    else:
        tasks.get_task(task).check_labels(y, num_outputs=out[-1], where="`y`")
    logs = model.train_on_batch(fit_x, y, return_dict=True)
    assert np.isfinite(logs["loss"])
    # Every family trains, evaluates and predicts with Keras' own step
    # functions: annzoo replaces none of them (the JAX fused steps that did
    # were removed; benchmarks/RESULTS.md, "Fused steps removed").
    for step in ("make_train_function", "make_test_function", "make_predict_function"):
        assert step not in vars(model), f"{family}: {step} replaced on the model"
        assert getattr(type(model), step).__module__.startswith("keras."), step
    expected = keras.ops.convert_to_numpy(model(x, training=False))
    model.save(tmp_path / "model.keras")
    np.savez(tmp_path / "x.npz", **(x if isinstance(x, dict) else {"x": x}))
    reloader.predict(tmp_path / "model.keras", tmp_path / "x.npz", tmp_path / "y.npy")
    np.testing.assert_allclose(np.load(tmp_path / "y.npy"), expected, rtol=1e-6)


CASES = [
    (family, structure)
    for family in FAMILIES
    for structure in registry.family_spec(family).data
]


@pytest.mark.slow
@pytest.mark.parametrize(("family", "structure"), CASES)
def test_dataset_arguments_build_a_model_that_trains_on_the_dataset(family, structure):
    """The spec's dataset_arguments turn a dataset into a model that fits it."""
    spec = registry.family_spec(family)
    train = _split(family, structure, np.random.default_rng(1))
    if spec.training_split is not None:  # the split as the family trains on it
        train = spec.training_split(train)
    args = spec.dataset_arguments(train)
    assert set(args) <= set(_parameters(family))
    options = {k: v for k, v in spec.smoke.items() if k not in SIZES}
    if structure == "tagging":
        options["output"] = "sequence"
    keras.utils.set_random_seed(0)
    model = annzoo.create_model(family, **options, **args)
    x, y = (spec.fit_arrays or sequences.model_inputs)(train, model)
    # An autoencoder's targets are its inputs (and its output has their shape).
    reconstructs = spec.tasks[0] == "bernoulli"
    y = x if reconstructs else y
    logs = model.train_on_batch(x, y, return_dict=True)
    assert np.isfinite(logs["loss"])
    # The output width is what the data needs: its classes or target vocabulary.
    width = len(train.target_vocabulary) if structure == "sequence" else 3
    width = train.x.shape[-1] if reconstructs else width
    if spec.tasks[0] == "adversarial":  # a GAN's images have the data's channels
        width = train.x.shape[-1]
    if spec.tasks[0] == "generation":  # a language model: the next token
        width = len(train.vocabulary)
    assert model.output_shape[-1] == width


def test_register_refuses_a_family_without_a_spec():
    with pytest.raises(annzoo.AnnzooError, match="`spec` must be"):
        registry.register("nameless", spec=None)


def test_register_refuses_smoke_arguments_the_builder_lacks():
    spec = registry.FamilySpec(
        tasks=("regression",), data=("sample",), dataset_arguments=dict,
        search_space={}, smoke={"widht": 3},
    )  # fmt: skip
    with pytest.raises(annzoo.AnnzooError, match="widht"):
        registry.register("misspelled", spec=spec)(lambda width=1, task="x": None)
    assert "misspelled" not in annzoo.list_families()

"""Recipes: serialization round trips, command-line overrides and validation."""

from __future__ import annotations

import json

import pytest

from annzoo import AnnzooError
from annzoo.training import Recipe, load_recipe
from annzoo.training.recipe import SECTION_DEFAULTS

pytestmark = [pytest.mark.jax, pytest.mark.torch, pytest.mark.speedups_off]


def _recipe(**sections):
    base = dict(
        name="t",
        model={"name": "cnn", "filters": [8, 16]},
        data={"dataset": "digits", "batch_size": 16},
    )
    base.update(sections)
    return Recipe(**base)


def test_defaults_fill_every_section():
    recipe = _recipe()
    for section, defaults in SECTION_DEFAULTS.items():
        assert set(getattr(recipe, section)) == set(defaults)
    assert recipe.data["batch_size"] == 16  # given values win over defaults
    assert recipe.fit["epochs"] == SECTION_DEFAULTS["fit"]["epochs"]


@pytest.mark.parametrize("suffix", [".json", ".yaml"])
def test_round_trip_through_files(tmp_path, suffix):
    recipe = _recipe(
        augment={"ops": ["flip", {"name": "pad_crop", "padding": 2}]},
        compile={"schedule": {"boundaries": [3], "values": [0.1, 0.01]}},
        search_space={"dropout": {"min": 0.0, "max": 0.5}},
    )
    path = recipe.save(tmp_path / f"r{suffix}")
    assert load_recipe(path) == recipe
    if suffix == ".json":
        assert json.loads(path.read_text())["model"] == {
            "name": "cnn",
            "filters": [8, 16],
        }


def test_python_recipe_files_load():
    recipe = load_recipe("recipes/digits_cnn.py")
    assert recipe.name == "digits_cnn" and recipe.model["name"] == "cnn"


def test_overrides_reach_any_field_and_parse_values():
    recipe = _recipe().override(
        [
            "model.dropout=0.3",
            "model.filters=[4, 8, 16]",
            "data.batch_size=64",
            "fit.epochs=3",
            "callbacks.early_stopping=null",
            "callbacks.reduce_lr.factor=0.5",
            "data.options.data_dir=/tmp/x",
            "name=renamed",
        ]
    )
    assert recipe.model["dropout"] == 0.3
    assert recipe.model["filters"] == [4, 8, 16]
    assert recipe.data["batch_size"] == 64 and recipe.fit["epochs"] == 3
    assert recipe.callbacks["early_stopping"] is None
    assert recipe.callbacks["reduce_lr"] == {"factor": 0.5}
    assert recipe.data["options"] == {"data_dir": "/tmp/x"}
    assert recipe.name == "renamed"
    recipe.validate()


@pytest.mark.parametrize(
    ("assignment", "named"),
    [
        ("data.bacth_size=4", "`data.bacth_size`"),
        ("fitt.epochs=3", "`fitt.epochs`"),
        ("fit=3", "SECTION.FIELD"),
        ("epochs", "SECTION.FIELD=VALUE"),
    ],
)
def test_unknown_override_fields_are_named(assignment, named):
    with pytest.raises(AnnzooError) as info:
        _recipe().override([assignment])
    assert named in str(info.value)


def test_misspelt_field_gets_a_suggestion():
    with pytest.raises(AnnzooError, match="Did you mean 'batch_size'"):
        _recipe().override(["data.bacth_size=4"])


@pytest.mark.parametrize(
    ("assignment", "named"),
    [
        ("model.name=resnet2O", "`model.name`"),
        ("model.dropoot=0.1", "`model.dropoot`"),
        ("data.dataset=digitz", "`data.dataset`"),
        ("data.batch_size=0", "`data.batch_size`"),
        ("data.limit=-1", "`data.limit`"),
        ("data.pipeline=torch", "`data.pipeline`"),
        ("data.label_format=onehot", "`data.label_format`"),
        ("augment.placement=gpu", "`augment.placement`"),
        ("augment.ops=[mixup]", "`augment.placement`"),
        ("compile.optimizer=adamm", "`compile.optimizer`"),
        ("compile.learning_rate=0", "`compile.learning_rate`"),
        ("compile.weight_decay=-1", "`compile.weight_decay`"),
        ("compile.steps_per_execution=0", "`compile.steps_per_execution`"),
        ("compile.schedule={boundaries: [5, 2], values: [1, 2, 3]}", "boundaries"),
        ("compile.schedule={boundaries: [5], values: [1]}", "`compile.schedule`"),
        ("fit.epochs=0", "`fit.epochs`"),
        ("fit.seed=-3", "`fit.seed`"),
        ("fit.steps_per_epoch=0", "`fit.steps_per_epoch`"),
        ("callbacks.early_stopping.patience=-1", "patience"),
        ("callbacks.early_stopping.patiense=3", "patiense"),
        ("callbacks.reduce_lr.factor=2", "`callbacks.reduce_lr.factor`"),
        ("callbacks.csv=maybe", "`callbacks.csv`"),
        ("callbacks.monitor=''", "`callbacks.monitor`"),
    ],
)
def test_validation_names_the_bad_field(assignment, named):
    recipe = _recipe().override([assignment])
    with pytest.raises(AnnzooError) as info:
        recipe.validate()
    assert named in str(info.value)


def test_bad_recipe_files_are_named(tmp_path):
    broken = tmp_path / "broken.json"
    broken.write_text('{"name": "x", "model": ')
    with pytest.raises(AnnzooError, match="broken.json.*not valid JSON"):
        load_recipe(broken)
    with pytest.raises(AnnzooError, match="does not exist"):
        load_recipe(tmp_path / "missing.yaml")
    lacking = tmp_path / "lacking.json"
    lacking.write_text('{"name": "x", "model": {"name": "mlp"}}')
    with pytest.raises(AnnzooError, match="`data`"):
        load_recipe(lacking)


def test_builder_arguments_are_checked_before_anything_is_written(tmp_path):
    from annzoo.training import train

    recipe = _recipe().override(["model.dropout=1.5"])
    with pytest.raises(AnnzooError, match="`dropout`.*Received: dropout=1.5"):
        train(recipe, output_dir=tmp_path, verbose=0)
    assert not any(tmp_path.iterdir())

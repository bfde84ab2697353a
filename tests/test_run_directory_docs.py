"""docs/recipes.md's run-directory table against what real runs write.

The table is parsed (file, when, content); a tiny run is trained, predicted
and exported, and every entry of its directory must be a row of the table,
every row marked "always" must be there, and the conditional rows that apply
to it (a classifier: confusion.png; predict: predictions/; export: export/)
must be there too, while those that do not (attention.png, vocabulary.json)
must not.
"""

from __future__ import annotations

import re

import keras
import numpy as np
import pytest

from annzoo import datasets
from annzoo.export import export
from annzoo.predict import predict_files
from annzoo.training import Recipe, train
from tests.conftest import ROOT

DOC = ROOT / "docs" / "recipes.md"


def _documented() -> dict[str, str]:
    """``{"recipe.json": "always", "tensorboard/": "...", ...}`` from the table."""
    text = DOC.read_text()
    section = text.split("## The run directory", 1)[1].split("\n#", 1)[0]
    rows = re.findall(r"^\| `([^`]+)` \| ([^|]+) \|", section, flags=re.M)
    assert rows, "no run-directory table in docs/recipes.md"
    return {name: when.strip() for name, when in rows}


def _entries(run_dir) -> set[str]:
    return {p.name + ("/" if p.is_dir() else "") for p in run_dir.iterdir()}


def _tensorboard_expected() -> bool:
    if keras.backend.backend() != "tensorflow":
        return False
    try:
        import tensorboard  # noqa: F401
    except ImportError:
        return False
    return True


def test_the_table_lists_every_file_a_classifier_run_writes(tmp_path):
    documented = _documented()
    recipe = Recipe(
        name="tiny_cnn",
        model={"name": "cnn", "filters": [4], "batch_norm": True},
        data={"dataset": "digits", "batch_size": 32, "limit": 64},
        fit={"epochs": 1, "seed": 0},
    )
    run_dir = train(recipe, output_dir=tmp_path, verbose=0).run_dir
    inputs = tmp_path / "images.npy"
    np.save(inputs, datasets.load("digits", "test").x[:3])
    predict_files(run_dir, [inputs])
    export(run_dir)  # format="keras": export/model.keras

    entries = _entries(run_dir)
    assert entries <= set(documented), entries - set(documented)
    always = {name for name, when in documented.items() if when == "always"}
    assert always <= entries, always - entries
    expected = {"best.keras", "metrics.csv", "confusion.png", "predictions/"}
    expected |= {"export/"} | ({"tensorboard/"} if _tensorboard_expected() else set())
    assert expected <= entries, expected - entries
    # Only while unfinished, or for other kinds of model.
    assert not entries & {"state/", "attention.png", "vocabulary.json"}
    # What the predictions/ and export/ rows say they hold.
    assert {p.name for p in (run_dir / "predictions").iterdir()} == {
        "predictions.csv",
        "predictions.npy",
    }
    assert {p.name for p in (run_dir / "export").iterdir()} == {
        "model.keras",
        "model.keras.json",
    }


@pytest.mark.slow
def test_the_table_lists_every_file_an_attention_decoder_run_writes(tmp_path):
    documented = _documented()
    recipe = Recipe(
        name="tiny_dates",
        model={
            "name": "seq2seq",
            "embedding_dim": 8,
            "units": 16,
            "cell": "gru",
            "attention": "bahdanau",
        },
        data={"dataset": "dates", "batch_size": 32, "limit": 64},
        fit={"epochs": 1, "seed": 0},
    )
    run_dir = train(recipe, output_dir=tmp_path, verbose=0).run_dir
    entries = _entries(run_dir)
    assert entries <= set(documented), entries - set(documented)
    assert {"attention.png", "vocabulary.json"} <= entries
    assert "confusion.png" not in entries  # a sequence model: no matrix

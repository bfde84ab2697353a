"""`annzoo predict RUN_DIR --text ...` and `annzoo.predict.predict_texts`.

Tiny runs of the token recipes: the check is that raw text goes through the
run's own vocabulary and the right decoding, not that the predictions are
good. The translator trains 3 epochs on 512 dates (a few seconds more than one
epoch on 64), enough for its output to depend on its input: a one-epoch model
writes the same string for every text, so a wrong encoding of the text would
still match.
"""

from __future__ import annotations

import csv
import json

import keras
import pytest

from annzoo.decode import decode
from annzoo.errors import AnnzooError
from annzoo.predict import predict_texts
from annzoo.text import Vocabulary
from annzoo.training import load_recipe, train
from tests.conftest import ROOT, run_python

SMOKE = ["fit.epochs=1", "data.limit=64", "data.batch_size=16"]
# Enough training for the translator's output to depend on its input.
DATES = ["fit.epochs=3", "data.limit=512", "data.batch_size=32"]
TEXTS = ["3 March 2021", "1. Mai 1999", "12/03/1987", "30 déc. 1850"]


def _run(name, tmp_path_factory, overrides=SMOKE):
    recipe = load_recipe(ROOT / "recipes" / f"{name}.py").override(overrides)
    return train(recipe, output_dir=tmp_path_factory.mktemp(name), verbose=0).run_dir


@pytest.fixture(scope="module")
def dates_run(tmp_path_factory):
    return _run("dates_seq2seq_attention", tmp_path_factory, DATES)


@pytest.fixture(scope="module")
def ner_run(tmp_path_factory):
    return _run("ner_bilstm_crf", tmp_path_factory)


def test_translator_decodes_raw_text(dates_run):
    saved = json.loads((dates_run / "vocabulary.json").read_text())
    assert saved["tokenizer"] == "characters"
    targets = Vocabulary(saved["targets"])
    path, predictions = predict_texts(dates_run, ["3 March 2021", "1. Mai 1999"])
    assert len(predictions) == 2
    # Greedy output uses only target characters (digits and '-').
    allowed = set(targets.tokens[4:])
    assert all(set(p) <= allowed for p in predictions)
    with open(path) as handle:
        rows = list(csv.reader(handle))
    assert rows[0] == ["source", "prediction"] and rows[1][0] == "3 March 2021"
    _, beam = predict_texts(dates_run, ["3 March 2021"], beam_width=3)
    assert set(beam[0]) <= allowed
    # The same texts decode() gives with the run's model.
    assert predictions == _decoded_by_hand(
        dates_run, ["3 March 2021", "1. Mai 1999"], 1
    )
    assert beam == _decoded_by_hand(dates_run, ["3 March 2021"], 3)


def test_translator_output_depends_on_the_text(dates_run):
    """Each text gets its own translation, so the equality with decode()
    above would fail if the text were encoded otherwise (here: its characters
    reversed)."""
    _, predictions = predict_texts(dates_run, TEXTS)
    assert len(set(predictions)) == len(TEXTS), predictions
    assert predictions == _decoded_by_hand(dates_run, TEXTS, 1)
    reversed_text = _decoded_by_hand(dates_run, [t[::-1] for t in TEXTS], 1)
    assert reversed_text != predictions


def test_tagger_tags_each_word(ner_run):
    tags = json.loads((ner_run / "vocabulary.json").read_text())["tags"]
    _, predictions = predict_texts(ner_run, ["Anna Schmidt joined Acme Ltd in Paris ."])
    pairs = predictions[0].split(" ")
    assert [p.rsplit("/", 1)[0] for p in pairs] == [
        "Anna", "Schmidt", "joined", "Acme", "Ltd", "in", "Paris", ".",
    ]  # fmt: skip
    assert all(p.rsplit("/", 1)[1] in tags for p in pairs)


def _decoded_by_hand(run_dir, texts, beam_width):
    """What `annzoo.decode` makes of ``texts`` with the run's best model: the
    characters encoded with the saved input vocabulary, decoded, joined."""
    saved = json.loads((run_dir / "vocabulary.json").read_text())
    model = keras.saving.load_model(run_dir / "best.keras")
    length = model.get_layer("encoder_tokens").output.shape[1]
    x = Vocabulary(saved["inputs"]).encode_batch(
        [list(t) for t in texts], length=length
    )
    targets = Vocabulary(saved["targets"])
    return decode(model, x, beam_width=beam_width, vocabulary=targets).texts(targets)


@pytest.mark.slow
def test_cli_text_and_errors(dates_run, tmp_path):
    texts = ["5 June 2001", "12/03/1987"]
    result = run_python(
        "-m", "annzoo.cli", "predict", str(dates_run), "--text", texts[0],
        "--text", texts[1], "--beam-width", "3", "--output", str(tmp_path / "out.csv"),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    # The command prints and writes what decode() produces from the same model.
    expected = _decoded_by_hand(dates_run, texts, 3)
    assert expected[0] != expected[1]  # the model tells the texts apart
    printed = [line for line in result.stdout.splitlines() if "\t" in line]
    assert printed == [f"{t}\t{p}" for t, p in zip(texts, expected, strict=True)]
    with open(tmp_path / "out.csv") as handle:
        rows = list(csv.reader(handle))
    assert rows[1:] == [list(pair) for pair in zip(texts, expected, strict=True)]
    both = run_python("-m", "annzoo.cli", "predict", str(dates_run))
    assert both.returncode == 2 and "--text" in both.stderr
    with pytest.raises(AnnzooError, match="vocabulary.json"):
        predict_texts(tmp_path, ["x"])
    with pytest.raises(AnnzooError, match="texts"):
        predict_texts(dates_run, [""])

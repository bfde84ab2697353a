"""`annzoo.metrics` and the ``"sequence"`` task, against hand-derived values."""

from __future__ import annotations

import keras
import numpy as np
import pytest

import annzoo
from annzoo.errors import AnnzooError
from annzoo.metrics import TokenAccuracy, bio_spans, entity_scores, exact_match


def test_token_accuracy_skips_padding():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 5, size=(6, 7))
    probabilities = rng.random((6, 7, 5))
    metric = TokenAccuracy()
    metric.update_state(labels, probabilities)
    valid = labels != 0
    expected = (probabilities.argmax(-1) == labels)[valid].mean()
    np.testing.assert_allclose(float(metric.result()), expected, rtol=1e-6)
    metric.reset_state()
    assert float(metric.result()) == 0.0
    clone = TokenAccuracy.from_config(metric.get_config())
    assert clone.ignore_class == 0 and clone.name == "token_accuracy"


def test_sequence_task_loss_averages_over_real_tokens_only():
    inputs = keras.Input((3,), dtype="int32")
    outputs = keras.layers.Embedding(4, 4)(inputs)
    outputs = keras.layers.Softmax()(outputs)
    model = keras.Model(inputs, outputs)
    annzoo.compile_model(model, task="sequence")
    x = np.array([[1, 2, 3], [3, 1, 0]], dtype="int32")
    y = np.array([[1, 2, 0], [3, 0, 0]], dtype="int32")
    p = np.asarray(model.predict(x, verbose=0), dtype="float64")
    rows, steps = np.nonzero(y)
    expected = -np.log(p[rows, steps, y[rows, steps]]).mean()
    result = model.evaluate(x, y, verbose=0, return_dict=True)
    np.testing.assert_allclose(result["loss"], expected, rtol=1e-5)
    hits = p.argmax(-1)[rows, steps] == y[rows, steps]
    np.testing.assert_allclose(result["token_accuracy"], hits.mean(), rtol=1e-6)
    with pytest.raises(AnnzooError, match="label_format"):
        annzoo.compile_model(model, task="sequence", label_format="one_hot")


def test_bio_spans_follow_conlleval():
    tags = ["B-PER", "I-PER", "O", "I-LOC", "B-LOC", "I-ORG", "I-ORG", "B-PER"]
    assert bio_spans(tags) == {
        ("PER", 0, 1),
        ("LOC", 3, 3),  # a stray I- starts an entity
        ("LOC", 4, 4),
        ("ORG", 5, 6),
        ("PER", 7, 7),
    }
    assert bio_spans(["O", "O"]) == set()


def test_entity_scores_by_hand():
    gold = [["B-PER", "I-PER", "O", "B-LOC"], ["B-ORG", "O"]]
    guess = [["B-PER", "O", "O", "B-LOC"], ["B-ORG", "B-LOC"]]
    # gold: PER(0,1) LOC(3,3) ORG(0,0) = 3; found: PER(0,0) LOC(3,3) ORG LOC = 4
    # correct: LOC(3,3), ORG(0,0) = 2 -> P = 2/4, R = 2/3, F1 = 4/7
    result = entity_scores(gold, guess)
    assert result["precision"] == pytest.approx(0.5)
    assert result["recall"] == pytest.approx(2 / 3)
    assert result["f1"] == pytest.approx(4 / 7)
    assert result["support"] == 3
    assert result["per_type"]["PER"]["f1"] == 0.0
    assert result["per_type"]["LOC"] == {
        "precision": 0.5,
        "recall": 1.0,
        "f1": pytest.approx(2 / 3),
        "support": 1,
    }
    with pytest.raises(AnnzooError, match="as long as"):
        entity_scores([["O"]], [["O", "O"]])


def test_exact_match():
    assert exact_match([[1, 2], [3]], [[1, 2], [4]]) == 0.5
    assert exact_match([], []) == 0.0


@pytest.mark.parametrize(
    "build",
    [
        lambda: annzoo.build_mlp(3, 2, task="sequence"),
        lambda: annzoo.build_cnn((8, 8, 1), 2, task="sequence"),
        lambda: annzoo.build_rnn((5,), 2, vocabulary_size=9, task="sequence"),
    ],
)
def test_per_sample_builders_refuse_the_sequence_task(build):
    with pytest.raises(AnnzooError, match="task"):
        build()


def test_translator_trains_on_the_sequence_task():
    model = annzoo.build_transformer(
        "encoder_decoder",
        vocabulary_size=6,
        sequence_length=4,
        d_model=8,
        num_heads=2,
        ff_dim=8,
        num_layers=1,
        task="sequence",
    )
    x = np.array([[3, 4, 5, 0]] * 4, dtype="int32")
    y = np.array([[4, 5, 2, 0]] * 4, dtype="int32")
    inputs = {"encoder_tokens": x, "decoder_tokens": annzoo.text.shift_right(y, 1)}
    history = model.fit(inputs, y, epochs=1, verbose=0)
    assert "token_accuracy" in history.history

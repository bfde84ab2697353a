"""Tests for annzoo.layers.crf: the linear-chain CRF, its loss and decoding.

Expected values come from brute force in numpy: every one of the
``num_tags ** length`` tag paths of a sequence is scored with the CRF's
definition, ``start[y_0] + sum_t E[t, y_t] + sum_t A[y_{t-1}, y_t] + end[y_last]``
over the real steps only, giving log Z (logsumexp over paths), the gold path's
log-likelihood and the best path with its score. Weights and emissions are
random floats, so ties between paths do not occur.
"""

from __future__ import annotations

import itertools

import keras
import numpy as np
import pytest

from annzoo.errors import AnnzooError
from annzoo.layers import CRF, CRFLoss, viterbi_decode

pytestmark = pytest.mark.jax

NUM_TAGS = 3


def _np(x):
    return np.asarray(keras.ops.convert_to_numpy(x))


def _random_crf(seed, num_tags=NUM_TAGS, name=None):
    rng = np.random.default_rng(seed)
    crf = CRF(num_tags, name=name)
    crf.build((None, None, num_tags))
    crf.set_weights(
        [
            rng.normal(size=(num_tags, num_tags)),
            rng.normal(size=num_tags),
            rng.normal(size=num_tags),
        ]
    )
    return crf


def _brute_force(emissions, tags, mask, transitions, start, end):
    """Per sequence: gold log-likelihood, best path (-1 at padding), best score."""
    emissions = np.asarray(emissions, np.float64)
    transitions, start, end = (
        np.asarray(w, np.float64) for w in (transitions, start, end)
    )
    batch, time, num_tags = emissions.shape
    log_likelihood = np.zeros(batch)
    best_tags = np.full((batch, time), -1)
    best_score = np.zeros(batch)

    for b in range(batch):
        (steps,) = np.nonzero(mask[b])
        if steps.size == 0:  # one path, the empty one, of score 0
            continue

        def score(path, b=b, steps=steps):
            return (
                start[path[0]]
                + end[path[-1]]
                + sum(emissions[b, t, y] for t, y in zip(steps, path, strict=True))
                + sum(
                    transitions[i, j] for i, j in zip(path[:-1], path[1:], strict=True)
                )
            )

        paths = list(itertools.product(range(num_tags), repeat=len(steps)))
        scores = np.array([score(p) for p in paths])
        log_z = np.log(np.sum(np.exp(scores - scores.max()))) + scores.max()
        log_likelihood[b] = score(tuple(tags[b, steps])) - log_z
        best_tags[b, steps] = paths[int(scores.argmax())]
        best_score[b] = scores.max()
    return log_likelihood, best_tags, best_score


def _case(kind, seed=0):
    """Emissions, gold tags (-1 at padding) and mask for a batch of 4, T=5."""
    rng = np.random.default_rng(100 + seed)
    lengths = np.array([5, 3, 1, 4])
    steps = np.arange(5)
    if kind == "post":  # padding at the end
        mask = steps[None] < lengths[:, None]
    elif kind == "pre":  # padding at the start (pad_sequences' default)
        mask = steps[None] >= 5 - lengths[:, None]
    else:
        mask = np.ones((4, 5), bool)
    emissions = rng.normal(size=(4, 5, NUM_TAGS)).astype("float32")
    tags = np.where(mask, rng.integers(0, NUM_TAGS, (4, 5)), -1)
    return emissions, tags, mask


@pytest.mark.parametrize("kind", ["post", "pre", "none"])
def test_log_likelihood_and_viterbi_match_brute_force(kind):
    emissions, tags, mask = _case(kind)
    crf = _random_crf(seed=1)
    weights = crf.get_weights()
    want_ll, want_tags, want_score = _brute_force(emissions, tags, mask, *weights)
    given_mask = None if kind == "none" else mask

    ll = _np(crf.log_likelihood(emissions, tags, given_mask))
    np.testing.assert_allclose(ll, want_ll, rtol=1e-5, atol=1e-5)

    got_tags, got_score = crf.decode(emissions, given_mask)
    np.testing.assert_array_equal(_np(got_tags), want_tags)
    np.testing.assert_allclose(_np(got_score), want_score, rtol=1e-5, atol=1e-5)

    np_tags, np_score = viterbi_decode(emissions, *weights, mask=given_mask)
    np.testing.assert_array_equal(np_tags, want_tags)
    np.testing.assert_allclose(np_score, want_score, rtol=1e-6, atol=1e-6)


def test_viterbi_uses_transitions():
    # Emissions favour tag 0 at every step, but 0 -> 0 costs 5, so the best
    # path avoids two 0s in a row. By hand: 0 1 1 0 scores 1.5+0.1+0.2+1.3 =
    # 3.1, ahead of 0 1 0 1 (2.75) and 1 0 1 0 (2.7); brute force agrees.
    emissions = np.array(
        [[[1.5, 0.0, -1.0], [1.2, 0.1, -1.1], [1.1, 0.2, -0.9], [1.3, 0.05, -1.2]]],
        "float32",
    )
    transitions = np.zeros((3, 3), "float32")
    transitions[0, 0] = -5.0
    crf = CRF(3)
    crf.build((None, None, 3))
    crf.set_weights([transitions, np.zeros(3), np.zeros(3)])
    mask = np.ones((1, 4), bool)
    weights = crf.get_weights()
    _, want_tags, want_score = _brute_force(emissions, mask * 0, mask, *weights)
    np.testing.assert_array_equal(want_tags, [[0, 1, 1, 0]])
    np.testing.assert_allclose(want_score, [3.1], rtol=1e-6)
    tags, score = crf.decode(emissions)
    np.testing.assert_array_equal(_np(tags), want_tags)
    np.testing.assert_allclose(_np(score), want_score, rtol=1e-6)


def test_empty_sequence_and_custom_pad_tag():
    emissions, tags, mask = _case("post", seed=3)
    mask[1] = False
    crf = _random_crf(seed=4)
    ll = _np(crf.log_likelihood(emissions, tags, mask))
    want_ll, want_tags, _ = _brute_force(emissions, tags, mask, *crf.get_weights())
    np.testing.assert_allclose(ll, want_ll, rtol=1e-5, atol=1e-5)  # row 1: log 1
    got_tags, got_score = crf.decode(emissions, mask, pad_tag=7)
    np.testing.assert_array_equal(_np(got_tags), np.where(mask, want_tags, 7))
    assert _np(got_score)[1] == 0.0


def test_loss_is_mean_negative_log_likelihood():
    emissions, tags, mask = _case("post", seed=5)
    crf = _random_crf(seed=6)
    want_ll, _, _ = _brute_force(emissions, tags, mask, *crf.get_weights())
    # The loss reads the mask from the tags: -1 marks padding.
    loss = CRFLoss(crf)(tags, emissions)
    np.testing.assert_allclose(_np(loss), -want_ll.mean(), rtol=1e-5)
    weights = np.array([1.0, 0.0, 2.0, 0.5])
    loss = CRFLoss(crf)(tags, emissions, sample_weight=weights)
    np.testing.assert_allclose(_np(loss), -(weights * want_ll).mean(), rtol=1e-5)
    # Another padding value, and a (batch, T, 1) y_true.
    padded_with_9 = np.where(mask, tags, 9)[..., None]
    loss = CRFLoss(crf, pad_tag=9, reduction=None)(padded_with_9, emissions)
    np.testing.assert_allclose(_np(loss), -want_ll, rtol=1e-5, atol=1e-5)


def test_config_round_trip_and_errors():
    crf = CRF(4, initializer="random_normal", name="tagger_crf")
    clone = CRF.from_config(crf.get_config())
    assert clone.get_config() == crf.get_config()
    assert clone.num_tags == 4 and clone.name == "tagger_crf"
    # A deserialized loss binds to the CRF layer last created under its name.
    loss = CRFLoss(crf, pad_tag=0)
    config = keras.saving.serialize_keras_object(loss)
    restored = keras.saving.deserialize_keras_object(config)
    assert restored.crf is clone and restored.pad_tag == 0
    config["config"]["crf"] = "no_such_crf"
    with pytest.raises(AnnzooError, match="no_such_crf"):
        keras.saving.deserialize_keras_object(config)
    with pytest.raises(AnnzooError, match="num_tags"):
        CRF(0)
    with pytest.raises(AnnzooError, match="num_tags=4"):
        crf.build((None, 5, 3))
    with pytest.raises(AnnzooError, match="crf"):
        CRFLoss("crf")


def test_batches_of_different_lengths_train():
    # A PyDataset with a new sequence length per batch: the TensorFlow graph
    # sees an unknown number of steps (a scan of unknown length).
    class Batches(keras.utils.PyDataset):
        def __len__(self):
            return 3

        def __getitem__(self, i):
            rng = np.random.default_rng(i)
            tokens = rng.integers(1, 6, (4, 3 + i)).astype("int32")
            tokens[0, -1:] = 0
            return tokens, np.where(tokens > 0, tokens % NUM_TAGS, -1)

    keras.utils.set_random_seed(0)
    tokens = keras.Input((None,), dtype="int32")
    x = keras.layers.Embedding(6, 4, mask_zero=True)(tokens)
    crf = CRF(NUM_TAGS)
    model = keras.Model(tokens, crf(keras.layers.Dense(NUM_TAGS)(x)))
    model.compile(keras.optimizers.Adam(0.1), loss=CRFLoss(crf))
    losses = model.fit(Batches(), epochs=2, verbose=0).history["loss"]
    assert np.all(np.isfinite(losses)) and losses[1] < losses[0]


# The synthetic tagging task: BIO tags of "entity" words (tokens 1-4) among
# other words (5-8). An entity word is B after O (or at the start) and I after
# B or I, so the tag depends on the token and on the previous tag. O -> I,
# B -> B, I -> B and start -> I never occur in the data.
TAG_O, TAG_B, TAG_I = 0, 1, 2
FORBIDDEN = [(TAG_O, TAG_I), (TAG_B, TAG_B), (TAG_I, TAG_B)]


def _tagging_data(n, seed, max_length=8):
    rng = np.random.default_rng(seed)
    tokens = np.zeros((n, max_length), "int32")
    tags = np.full((n, max_length), -1, "int32")
    for row, length in enumerate(rng.integers(3, max_length + 1, n)):
        previous = TAG_O
        for t, token in enumerate(rng.integers(1, 9, length)):
            entity = token <= 4
            previous = (TAG_B if previous == TAG_O else TAG_I) if entity else TAG_O
            tokens[row, t], tags[row, t] = token, previous
    return tokens, tags


def _bilstm_crf():
    tokens = keras.Input((None,), dtype="int32", name="tokens")
    x = keras.layers.Embedding(9, 8, mask_zero=True, name="embedding")(tokens)
    x = keras.layers.Bidirectional(
        keras.layers.LSTM(8, return_sequences=True), name="bilstm"
    )(x)
    x = keras.layers.Dense(3, name="emissions")(x)
    crf = CRF(3, name="crf")
    model = keras.Model(tokens, crf(x), name="bilstm_crf")
    model.compile(keras.optimizers.Adam(0.05), loss=CRFLoss(crf))
    return model, crf


@pytest.mark.slow
def test_bilstm_crf_learns_saves_and_reloads(tmp_path, reloader):
    keras.utils.set_random_seed(0)
    x, y = _tagging_data(256, seed=0)
    x_test, y_test = _tagging_data(64, seed=1)
    model, crf = _bilstm_crf()
    losses = model.fit(x, y, batch_size=32, epochs=5, verbose=0).history["loss"]
    assert losses[-1] < 0.1 * losses[0], losses

    emissions = model.predict(x_test, verbose=0)
    assert emissions.shape == (64, 8, 3)
    real = x_test != 0
    tags = _np(crf.decode(emissions, mask=real)[0])
    np_tags, _ = viterbi_decode(emissions, *crf.get_weights(), mask=real)
    np.testing.assert_array_equal(tags, np_tags)
    assert np.all(tags[~real] == -1)
    # A perfect tagger exists (the tag is a function of the current and the
    # previous token); always answering O would score about 0.5. Five epochs
    # reach 1.0 on both backends and several seeds; 0.95 leaves room.
    accuracy = np.mean(tags[real] == y_test[real])
    assert accuracy > 0.95, accuracy

    # Gold paths never use the forbidden transitions, so their gradient only
    # ever pushes them down: they end below every allowed transition.
    transitions, start, _ = crf.get_weights()
    forbidden = np.array([transitions[i, j] for i, j in FORBIDDEN])
    allowed = np.delete(transitions.ravel(), [i * 3 + j for i, j in FORBIDDEN])
    assert forbidden.max() < allowed.min(), transitions
    assert start[TAG_I] < min(start[TAG_O], start[TAG_B]), start

    path = tmp_path / "bilstm_crf.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)  # no custom_objects
    np.testing.assert_array_equal(loaded.predict(x_test, verbose=0), emissions)
    loaded_crf = loaded.get_layer("crf")
    for got, want in zip(loaded_crf.get_weights(), crf.get_weights(), strict=True):
        np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(_np(loaded_crf.decode(emissions, mask=real)[0]), tags)
    # The reloaded loss is bound to the reloaded layer, ready to train on.
    assert loaded.loss.crf is loaded_crf
    np.testing.assert_allclose(
        loaded.evaluate(x_test, y_test, verbose=0),
        model.evaluate(x_test, y_test, verbose=0),
        rtol=1e-6,
    )

    # A fresh process that only imports annzoo loads it too (compiled).
    np.save(tmp_path / "tokens.npy", x_test)
    reloader.predict(path, tmp_path / "tokens.npy", tmp_path / "out.npy")
    np.testing.assert_allclose(np.load(tmp_path / "out.npy"), emissions, atol=1e-6)

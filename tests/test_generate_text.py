"""Text generation: cache against recomputation, sampling filters by brute force,
seeded draws against their distribution, stopping, bits per character, errors."""

from __future__ import annotations

import itertools
import math

import keras
import numpy as np
import pytest

import annzoo
from annzoo import AnnzooError
from annzoo.generation import (
    IncrementalDecoder,
    bits_per_character,
    filter_probabilities,
    generate_text,
    language_model_vocabulary,
    next_token_arrays,
)

# Not in the ANNZOO_SPEEDUPS=0 passes: the speedups act on building and
# training steps, which the language model family's smoke model goes through
# there (test_family_specs); none acts on decoding.

VOCABULARY = language_model_vocabulary(["abcdefgh"])  # 4 specials + 8 letters
V = len(VOCABULARY)
BANNED = [0, VOCABULARY.start_id, VOCABULARY.unk_id]


def _model(architecture, conditional=None, seed=0):
    keras.utils.set_random_seed(seed)
    sizes = dict(sequence_length=10, num_heads=2, ff_dim=16)
    if architecture != "transformer":
        sizes = dict(units=8)
    return annzoo.build_language_model(
        V, architecture=architecture, embedding_dim=8, num_layers=2,
        conditional_classes=conditional, dropout=0.0, **sizes,
    )  # fmt: skip


def _full_logits(model, tokens, classes=None):
    """Logits at every position, from the whole model (padded to its length)."""
    logits = keras.Model(model.input, model.get_layer("head_logits").output)
    length = model.input_shape[0][1] if classes is not None else model.input_shape[1]
    padded = np.zeros((len(tokens), length or tokens.shape[1]), dtype="int32")
    padded[:, : tokens.shape[1]] = tokens
    x = padded if classes is None else {"tokens": padded, "classes": classes}
    return keras.ops.convert_to_numpy(logits(x, training=False))


@pytest.mark.jax
@pytest.mark.parametrize(
    "architecture, conditional",
    [("transformer", None), ("transformer", 3), ("lstm", None), ("gru", 3)],
)
def test_cached_logits_match_full_sequence_logits(architecture, conditional):
    model = _model(architecture, conditional)
    rng = np.random.default_rng(1)
    tokens = np.concatenate(
        [np.ones((2, 1), "int32"), rng.integers(4, V, size=(2, 9)).astype("int32")], 1
    )
    classes = None if conditional is None else np.array([[0], [2]], "int32")
    full = _full_logits(model, tokens, classes)
    decoder = IncrementalDecoder(model)
    cached = [decoder.start(tokens[:, :3], classes)]  # prefill of 3 positions
    cached += [decoder.step(tokens[:, t]) for t in range(3, 10)]
    np.testing.assert_allclose(np.stack(cached, 1), full[:, 2:10], atol=2e-5)


# On JAX for the Transformer's key/value cache; an LSTM's cache is its
# recurrent state, the same Keras layer call on every backend (and its
# step-by-step decoding runs op by op, half a minute on JAX on a CPU).
@pytest.mark.parametrize(
    "architecture", [pytest.param("transformer", marks=pytest.mark.jax), "lstm"]
)
def test_greedy_with_the_cache_writes_the_recomputed_tokens(architecture):
    model = _model(architecture, 3, seed=2)
    labels = [0, 1, 2]
    kwargs = dict(prompt="ab", num=3, labels=labels, top_k=1, max_length=10)
    cached = generate_text(model, VOCABULARY, **kwargs)
    recomputed = generate_text(model, VOCABULARY, use_cache=False, **kwargs)
    assert cached == recomputed
    # And both are what this loop writes, step by step from the whole model.
    classes = np.array(labels, "int32")[:, None]
    for row, text in enumerate(cached):
        tokens = [VOCABULARY.start_id, *(VOCABULARY.id(c) for c in "ab")]
        while len(tokens) - 1 < 10:
            logits = _full_logits(model, np.array([tokens]), classes[row : row + 1])
            step = logits[0, len(tokens) - 1]
            step[BANNED] = -np.inf
            token = int(np.argmax(step))
            if token == VOCABULARY.end_id:
                break
            tokens.append(token)
        assert text == VOCABULARY.decode(tokens)


def _softmax(z):
    z = np.asarray(z, dtype=np.float64)
    e = np.exp(z - z.max())
    return e / e.sum()


def test_temperature_divides_the_logits():
    logits = np.array([2.0, -1.0, 0.5, 0.0])
    for t in (0.25, 1.0, 3.0):
        expected = np.exp(logits / t) / np.exp(logits / t).sum()
        np.testing.assert_allclose(
            filter_probabilities(logits, temperature=t), expected, rtol=1e-12
        )


def test_top_k_keeps_exactly_the_k_largest():
    rng = np.random.default_rng(0)
    for _ in range(20):
        logits = rng.normal(size=9)
        k = int(rng.integers(1, 10))
        p = filter_probabilities(logits, top_k=k)
        largest = set(np.argsort(logits)[-k:])
        assert set(np.flatnonzero(p)) == largest
        np.testing.assert_allclose(p[list(largest)], _softmax(logits[list(largest)]))
    # Ties: exactly k kept, the lower ids first.
    p = filter_probabilities(np.log([0.2, 0.2, 0.2, 0.2, 0.1, 0.1]), top_k=2)
    np.testing.assert_allclose(p, [0.5, 0.5, 0, 0, 0, 0])


def _smallest_reaching(q, p):
    """Brute force: the size of the smallest set of tokens whose probability
    reaches p, over every subset."""
    for size in range(1, len(q) + 1):
        for subset in itertools.combinations(range(len(q)), size):
            if q[list(subset)].sum() >= p - 1e-12:
                return size
    raise AssertionError


@pytest.mark.parametrize(
    "q",
    [
        [0.5, 0.3, 0.15, 0.05],
        [0.25, 0.25, 0.25, 0.25],  # all tied
        [0.4, 0.2, 0.2, 0.1, 0.1],  # ties inside and at the boundary
        [0.1, 0.3, 0.05, 0.3, 0.15, 0.1],
        [1.0, 0.0, 0.0],
    ],
)
@pytest.mark.parametrize("p", [0.05, 0.3, 0.5, 0.55, 0.7, 0.9, 0.95, 1.0])
def test_top_p_keeps_the_smallest_set_that_reaches_p(q, p):
    q = np.asarray(q, dtype=np.float64)
    with np.errstate(divide="ignore"):
        logits = np.log(q)
    kept = filter_probabilities(logits, top_p=p) > 0
    assert kept.sum() == _smallest_reaching(q, p) or (p == 1.0 and kept.all())
    assert q[kept].sum() >= p - 1e-12
    # A set of the most likely tokens: nothing dropped beats anything kept.
    if (~kept).any():
        assert q[~kept].max() <= q[kept].min()
    np.testing.assert_allclose(
        filter_probabilities(logits, top_p=p)[kept], q[kept] / q[kept].sum()
    )


def test_top_p_applies_to_the_top_k_distribution():
    logits = np.log([0.4, 0.3, 0.2, 0.1])
    # top_k=3 renormalizes to [4/9, 3/9, 2/9]; 0.75 needs the first two
    # (7/9 >= 0.75), while the unfiltered 0.4 + 0.3 = 0.7 would need three.
    p = filter_probabilities(logits, top_k=3, top_p=0.75)
    np.testing.assert_allclose(p, [4 / 7, 3 / 7, 0, 0])


@pytest.mark.jax
def test_seeded_draws_follow_the_filtered_softmax():
    model = _model("transformer", seed=3)
    logits = _full_logits(model, np.array([[VOCABULARY.start_id]]))[0, 0]
    # The expected distribution, by numpy: letters and <end> only, tempered,
    # the five most likely kept.
    allowed = [i for i in range(V) if i not in BANNED]
    z = logits[allowed] / 0.5
    best = np.argsort(z)[-5:]
    expected = np.zeros(V)
    expected[np.array(allowed)[best]] = _softmax(z[best])
    n = 3000
    texts = generate_text(
        model, VOCABULARY, num=n, temperature=0.5, top_k=5, max_length=1, seed=7
    )
    ids = [VOCABULARY.end_id if t == "" else VOCABULARY.id(t) for t in texts]
    observed = np.bincount(ids, minlength=V) / n
    assert set(np.flatnonzero(observed)) <= set(np.flatnonzero(expected))
    # Total variation: its expectation here is below 0.02 (sum of
    # sqrt(p (1 - p) / n) / 2); 0.04 fails any wrong filter or sampler.
    assert 0.5 * np.abs(observed - expected).sum() < 0.04
    again = generate_text(
        model, VOCABULARY, num=n, temperature=0.5, top_k=5, max_length=1, seed=7
    )
    assert again == texts
    other = generate_text(
        model, VOCABULARY, num=50, temperature=0.5, top_k=5, max_length=1, seed=8
    )
    assert other != texts[:50]


@pytest.mark.slow
@pytest.mark.jax
@pytest.mark.parametrize("architecture", ["transformer", "gru"])
def test_a_trained_model_writes_its_text_and_stops_at_end(architecture):
    keras.utils.set_random_seed(0)
    model = _model(architecture)
    annzoo.compile_model(model, task="generation", learning_rate=0.03)
    x, y = next_token_arrays(["abcab", "hgf"], VOCABULARY, sequence_length=10)
    for _ in range(150):
        model.train_on_batch(x, y)
    assert generate_text(model, VOCABULARY, prompt="ab", top_k=1) == ["abcab"]
    assert generate_text(model, VOCABULARY, prompt="h", top_k=1) == ["hgf"]
    # Without an end in reach, max_length stops it.
    assert generate_text(model, VOCABULARY, prompt="ab", top_k=1, max_length=4) == [
        "abca"
    ]


def test_bits_per_character():
    model = _model("lstm")
    x, y = next_token_arrays(["abc", "hhgfe", ""], VOCABULARY, sequence_length=10)
    probs = model.predict(x, verbose=0)
    # numpy: -log2 of each non-padding target's probability, averaged (the 11
    # targets are 3 + 5 + 0 letters and 3 ends).
    targets = [(r, t) for r in range(3) for t in range(10) if y[r, t] != 0]
    assert len(targets) == 11
    expected = np.mean([-math.log2(probs[r, t, y[r, t]]) for r, t in targets])
    np.testing.assert_allclose(bits_per_character(model, x, y), expected, rtol=1e-6)
    # Keras' loss (nats, padding ignored) agrees.
    loss = model.evaluate(x, y, verbose=0, return_dict=True)["loss"]
    np.testing.assert_allclose(loss / math.log(2), expected, rtol=1e-4)
    # A model that knows nothing (uniform over V tokens) scores log2(V).
    head = model.get_layer("head_logits")
    head.set_weights([np.zeros_like(w) for w in head.get_weights()])
    np.testing.assert_allclose(bits_per_character(model, x, y), math.log2(V))


@pytest.mark.parametrize(
    "kwargs, fragment",
    [
        (dict(temperature=0), "`temperature` must be a finite number > 0"),
        (dict(temperature=-1.0), "`temperature`"),
        (dict(top_p=0.0), "`top_p` must be None or a number in \\(0, 1\\]"),
        (dict(top_p=1.5), "`top_p`"),
        (dict(top_k=0), "`top_k` must be None or an integer >= 1"),
        (dict(prompt="ab$z"), "'\\$', 'z' are not in it"),
        (dict(labels=3), "`labels` must be a class id in \\[0, 3\\)"),
        (dict(labels=[0, -1]), "`labels`"),
        (dict(labels=None), "`labels` must be given"),
        (dict(max_length=11), "`max_length` must be at most"),
        (dict(num=0), "`num` must be a positive integer"),
    ],
)
def test_bad_generation_arguments_are_named(kwargs, fragment):
    model = _model("transformer", 3)
    options = {"labels": [0, 1], "num": 2, **kwargs}
    with pytest.raises(AnnzooError, match=fragment) as caught:
        generate_text(model, VOCABULARY, **options)
    assert "Received" in str(caught.value)


def test_generate_text_refuses_a_model_that_is_not_a_language_model():
    classifier = annzoo.build_rnn((None,), 3, vocabulary_size=V, compile=False)
    with pytest.raises(AnnzooError, match="`model` must be a language model"):
        generate_text(classifier, VOCABULARY)
    with pytest.raises(AnnzooError, match="`vocabulary` must have the model's"):
        generate_text(_model("gru"), language_model_vocabulary(["ab"]))

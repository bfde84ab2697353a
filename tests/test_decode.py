"""`annzoo.decode`: greedy and beam search against brute-force enumeration.

The model under test is a conditional bigram model with known probabilities:
the distribution of token t+1 depends only on token t and on the source's
first token, so the probability of every output sequence can be computed by
hand and the best one found by enumerating all of them.
"""

from __future__ import annotations

import functools
import itertools

import keras
import numpy as np
import pytest

import annzoo
from annzoo.decode import decode
from annzoo.errors import AnnzooError

pytestmark = pytest.mark.jax

VOCAB = 5  # 0 pad, 1 start, 2 end, 3 and 4 ordinary tokens
START, END = 1, 2
SOURCE_VOCAB = 3
STEPS = 4


def _tables(seed):
    rng = np.random.default_rng(seed)
    transition = rng.normal(size=(VOCAB, VOCAB)) * 2.0
    # Never predict padding or start, as a trained model would not.
    transition[:, [0, 1]] = -30.0
    bias = rng.normal(size=(SOURCE_VOCAB, VOCAB))
    bias[:, [0, 1]] = -30.0
    return transition, bias


def _bigram_model(transition, bias):
    source = keras.Input((2,), dtype="int32", name="encoder_tokens")
    tokens = keras.Input((STEPS,), dtype="int32", name="decoder_tokens")
    scores = keras.layers.Embedding(
        VOCAB, VOCAB, embeddings_initializer=keras.initializers.Constant(transition)
    )(tokens)
    conditioning = keras.layers.Embedding(
        SOURCE_VOCAB, VOCAB, embeddings_initializer=keras.initializers.Constant(bias)
    )(source)
    # Only the first source token conditions the output.
    conditioning = keras.layers.Cropping1D((0, 1))(conditioning)
    conditioning = keras.layers.Flatten()(conditioning)
    conditioning = keras.layers.RepeatVector(STEPS)(conditioning)
    logits = keras.layers.Add()([scores, conditioning])
    outputs = keras.layers.Softmax(name="predictions")(logits)
    return keras.Model(
        {"encoder_tokens": source, "decoder_tokens": tokens}, outputs, name="bigram"
    )


def _log_softmax(row):
    row = row - row.max()
    return row - np.log(np.exp(row).sum())


def _log_probability(transition, bias, source_first, tokens):
    score, previous = 0.0, START
    for token in tokens:
        score += _log_softmax(transition[previous] + bias[source_first])[token]
        previous = token
    return score


def _best_by_enumeration(transition, bias, source_first, max_length):
    """The best score of a sequence that ends at END or has max_length tokens."""
    best = -np.inf
    for length in range(1, max_length + 1):
        for body in itertools.product(range(VOCAB), repeat=length):
            if END in body[:-1] or not (body[-1] == END or length == max_length):
                continue
            best = max(best, _log_probability(transition, bias, source_first, body))
    return best


@pytest.fixture(scope="module")
def bigram():
    transition, bias = _tables(0)
    return _bigram_model(transition, bias), transition, bias


SOURCES = np.array([[0, 1], [1, 2], [2, 0], [1, 1], [0, 0], [2, 2]], dtype="int32")


def _greedy_by_hand(transition, bias, source_first, max_length):
    tokens, previous = [], START
    for _ in range(max_length):
        previous = int(np.argmax(transition[previous] + bias[source_first]))
        tokens.append(previous)
        if previous == END:
            break
    return tokens


def test_greedy_follows_the_most_probable_token(bigram):
    model, transition, bias = bigram
    result = decode(model, SOURCES)
    assert result.ids.shape == (len(SOURCES), STEPS)
    for i, source in enumerate(SOURCES):
        expected = _greedy_by_hand(transition, bias, source[0], STEPS)
        n = len(expected)
        assert result.ids[i, :n].tolist() == expected
        assert (result.ids[i, n:] == 0).all()  # padding after the end token
        ended = expected[-1] == END
        assert result.lengths[i] == n - ended
        assert result.tokens(i).tolist() == expected[: n - ended]


def test_beam_width_one_equals_greedy():
    for seed in range(4):
        model = _bigram_model(*_tables(seed))
        greedy = decode(model, SOURCES)
        beam = decode(model, SOURCES, beam_width=1)
        np.testing.assert_array_equal(greedy.ids, beam.ids)
        np.testing.assert_array_equal(greedy.lengths, beam.lengths)
        np.testing.assert_allclose(greedy.scores, beam.scores, rtol=1e-6)


def test_wide_beam_finds_the_best_sequence_found_by_enumeration():
    # With width >= VOCAB ** (STEPS - 1) no partial sequence is ever pruned.
    for seed in range(3):
        transition, bias = _tables(seed)
        model = _bigram_model(transition, bias)
        result = decode(model, SOURCES, beam_width=VOCAB ** (STEPS - 1))
        for i, source in enumerate(SOURCES):
            best = _best_by_enumeration(transition, bias, source[0], STEPS)
            tokens = [t for t in result.ids[i] if t]  # up to END, if produced
            # Ties are possible (the same transitions in another order), so
            # compare probabilities: the returned sequence's own, and the best.
            own = _log_probability(transition, bias, source[0], tokens)
            np.testing.assert_allclose(result.scores[i], own, rtol=1e-4)
            np.testing.assert_allclose(result.scores[i], best, rtol=1e-4)


def test_beam_is_never_worse_than_greedy(bigram):
    model, _, _ = bigram
    greedy = decode(model, SOURCES)
    for width in (2, 3, 8):
        beam = decode(model, SOURCES, beam_width=width)
        assert (beam.scores >= greedy.scores - 1e-5).all()


def test_decoding_stops_at_the_end_token():
    transition, bias = _tables(1)
    transition[:, END] = 40.0  # END is certain after any token
    model = _bigram_model(transition, bias)
    for width in (1, 3):
        result = decode(model, SOURCES, beam_width=width)
        assert (result.ids[:, 0] == END).all() and (result.ids[:, 1:] == 0).all()
        assert (result.lengths == 0).all()


def test_max_length_and_batches_of_any_size(bigram):
    model, transition, bias = bigram
    whole = decode(model, SOURCES, max_length=2)
    assert whole.ids.shape == (len(SOURCES), 2)
    chunked = decode(model, SOURCES, max_length=2, batch_size=4)  # 4 + 2 rows
    np.testing.assert_array_equal(whole.ids, chunked.ids)
    for i, source in enumerate(SOURCES):
        expected = _greedy_by_hand(transition, bias, source[0], 2)
        assert whole.ids[i, : len(expected)].tolist() == expected
    assert decode(model, SOURCES[:0]).ids.shape == (0, STEPS)


def test_vocabulary_gives_the_special_ids_and_texts(bigram):
    model, _, _ = bigram
    vocabulary = annzoo.text.Vocabulary(["<pad>", "<start>", "<end>", "a", "b"])
    result = decode(model, {"encoder_tokens": SOURCES}, vocabulary=vocabulary)
    texts = result.texts(vocabulary)
    for i, text in enumerate(texts):
        assert text == "".join("ab"[t - 3] for t in result.tokens(i))


def test_transformer_translator_decodes():
    model = annzoo.build_transformer(
        "encoder_decoder",
        vocabulary_size=7,
        sequence_length=5,
        target_sequence_length=4,
        d_model=8,
        num_heads=2,
        ff_dim=8,
        num_layers=1,
        dropout=0.0,
    )
    source = np.array([[3, 4, 5, 0, 0], [6, 5, 0, 0, 0]], dtype="int32")
    greedy = decode(model, source)
    assert greedy.ids.shape == (2, 4)
    np.testing.assert_array_equal(greedy.ids, decode(model, source, beam_width=1).ids)
    with pytest.raises(AnnzooError, match="attention"):
        decode(model, source, return_attention=True)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(beam_width=0), "beam_width"),
        (dict(max_length=9), "max_length"),
        (dict(length_penalty=-1), "length_penalty"),
        (dict(batch_size=0), "batch_size"),
    ],
)
def test_bad_arguments_are_named(bigram, kwargs, match):
    model, _, _ = bigram
    with pytest.raises(AnnzooError, match=match):
        decode(model, SOURCES, **kwargs)


def test_bad_inputs_are_named(bigram):
    model, _, _ = bigram
    with pytest.raises(AnnzooError, match=r"shape \(num_samples, 2\)"):
        decode(model, SOURCES[:, :1])
    with pytest.raises(AnnzooError, match="encoder_tokens"):
        decode(model, {"tokens": SOURCES})
    with pytest.raises(AnnzooError, match="decoder_tokens"):
        decode(annzoo.build_mlp(3, 2), np.zeros((2, 3)))


# -- return_attention=True: the weights each produced token was computed with.

ATTENTION_SOURCES = np.array(
    [[3, 4, 5, 6, 7, 8], [9, 10, 11, 0, 0, 0], [4, 0, 0, 0, 0, 0], [5, 6, 7, 8, 0, 0]],
    dtype="int32",
)


@functools.cache
def _attentive_model(seed, *, ends):
    """A smoke-size seq2seq with Bahdanau attention and random weights.

    The weights are drawn with NumPy (Keras' initializers draw differently on
    each backend), the decoder's inputs and the attention scores at a scale
    where each step attends visibly differently. It never produces padding
    or the start token, as a trained model would not (a produced padding id
    is masked in the next step's input, so the next token would attend as
    this one did). ``ends`` False: never the end token either, every sample
    runs to max_length; True: the end token first, every row after it zero.
    """
    rng = np.random.default_rng(seed)
    model = annzoo.build_seq2seq(
        12, 6, 10, 5, embedding_dim=4, units=8, attention="bahdanau", compile=False
    )
    sharp = {"decoder_embedding", "attention"}
    for layer in model.layers:
        for weight in layer.weights:
            scale = 2.5 if layer.name in sharp else 0.5
            weight.assign(rng.normal(0.0, scale, weight.shape).astype("float32"))
    bias = model.get_layer("head_logits").bias
    logits = keras.ops.convert_to_numpy(bias).copy()
    logits[[0, START]] = -30.0
    logits[END] = 30.0 if ends else -30.0
    bias.assign(logits)
    return model


# (seed, ends, beam_width); the seed is one where beam search reorders its
# beams, so that weights not following the returned sequence's parents show.
ATTENTION_CASES = {
    "greedy": (0, False, 1),
    "beams": (0, False, 3),
    "ending": (0, True, 3),
}


def _attention_by_hand(model, sources, decoder_tokens):
    """Weights (N, T, S), teacher-forced on ``decoder_tokens``: the attention
    layer's query and memory read from the graph, the additive score, the
    mask and the softmax written here in NumPy."""
    layer = model.get_layer("attention")
    probe = keras.Model(model.inputs, layer.input)
    query, memory = probe.predict_on_batch(
        {"encoder_tokens": sources, "decoder_tokens": decoder_tokens}
    )
    w_q, w_m, b, v = (keras.ops.convert_to_numpy(w) for w in layer.weights)
    hidden = np.tanh((query @ w_q)[:, :, None, :] + (memory @ w_m + b)[:, None])
    scores = (hidden @ v).astype(np.float64)
    scores = np.where((sources != 0)[:, None, :], scores, -np.inf)
    weights = np.exp(scores - scores.max(axis=-1, keepdims=True))
    return weights / weights.sum(axis=-1, keepdims=True)


@pytest.mark.parametrize("case", ATTENTION_CASES)
def test_returned_attention_is_what_each_produced_token_attended_with(case):
    seed, ends, beam_width = ATTENTION_CASES[case]
    model, sources = _attentive_model(seed, ends=ends), ATTENTION_SOURCES
    result = decode(model, sources, beam_width=beam_width, return_attention=True)
    steps, positions = result.ids.shape[1], sources.shape[1]
    assert steps == 5
    assert result.attention.shape == (len(sources), steps, positions)
    assert result.attention.dtype == np.float32
    last = np.minimum(result.lengths, steps - 1)
    ended = result.ids[np.arange(len(sources)), last] == END
    produced = result.lengths + ended  # tokens produced, the end token included
    assert (produced == (1 if ends else steps)).all(), result.ids
    # Token t was produced from decoder input [start, tokens before t] (the
    # decoder is causal): its weights are row t of one teacher-forced pass
    # over the whole returned sequence.
    tokens = np.zeros_like(result.ids)
    tokens[:, 0] = START
    tokens[:, 1:] = result.ids[:, :-1]
    expected = _attention_by_hand(model, sources, tokens)
    for i, source in enumerate(sources):
        n = int(produced[i])
        weights = result.attention[i]
        # Rows of produced tokens sum to 1 over the source, with exact zeros
        # on its padding; rows after the end are zero.
        np.testing.assert_allclose(weights[:n].sum(axis=1), 1.0, rtol=1e-5)
        assert (weights[:n, source == 0] == 0).all()
        assert (weights[:n, source != 0] > 0).all()
        assert (weights[n:] == 0).all()
        np.testing.assert_allclose(weights[:n], expected[i, :n], rtol=1e-4, atol=1e-6)

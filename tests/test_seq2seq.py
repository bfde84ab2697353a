"""RecurrentAttention and the seq2seq family.

Expected values are derived independently of the code: the three attention
scores written in numpy from the papers' formulas, parameter counts from the
layer equations, causality and padding checked by comparing inputs that must
(or must not) give the same outputs.
"""

from __future__ import annotations

import keras
import numpy as np
import pytest

import annzoo
from annzoo.errors import AnnzooError
from annzoo.layers import RecurrentAttention
from annzoo.models import build_seq2seq

pytestmark = pytest.mark.jax


def _np(x):
    return np.asarray(keras.ops.convert_to_numpy(x), dtype=np.float64)


def _predict(model, x):
    return keras.ops.convert_to_numpy(model(x, training=False))


def _probe(model):
    """The model returning ``[predictions, attention weights]``, as decode does."""
    return keras.Model(
        model.inputs, [model.output, model.get_layer("attention").output[1]]
    )


# -- RecurrentAttention against numpy ------------------------------------------


def _numpy_attention(score, q, m, weights, mask):
    """Bahdanau et al. 2015 (additive) and Luong et al. 2015 (dot, general)."""
    if score == "additive":
        w_q, w_m, b, v = weights
        # e_ts = v^T tanh(W_q q_t + W_m m_s + b), one step and position at a time.
        e = np.zeros((q.shape[0], q.shape[1], m.shape[1]))
        for i in range(q.shape[0]):
            for t in range(q.shape[1]):
                for s in range(m.shape[1]):
                    e[i, t, s] = v @ np.tanh(q[i, t] @ w_q + m[i, s] @ w_m + b)
    elif score == "dot":
        e = np.einsum("btd,bsd->bts", q, m)
    else:
        (w,) = weights
        e = np.einsum("btd,de,bse->bts", q, w, m)
    visible = np.ones(e.shape, bool) if mask is None else mask[:, None, :] > 0
    e = np.where(visible, e, -np.inf)
    top = np.max(e, axis=-1, keepdims=True)
    top = np.where(np.isfinite(top), top, 0.0)
    exp = np.exp(e - top)
    total = exp.sum(axis=-1, keepdims=True)
    a = np.divide(exp, total, out=np.zeros_like(exp), where=total > 0)
    return a @ m, a


@pytest.mark.parametrize("with_mask", [False, True])
@pytest.mark.parametrize(
    ("score", "units", "memory_dim"),
    [("additive", 5, 6), ("additive", None, 6), ("dot", None, 4), ("general", None, 6)],
)
def test_attention_matches_numpy(score, units, memory_dim, with_mask):
    rng = np.random.default_rng(0)
    q = rng.normal(size=(3, 4, 4)).astype("float32")
    m = rng.normal(size=(3, 5, memory_dim)).astype("float32")
    # Sample 0 sees everything, 1 its first two positions, 2 nothing.
    mask = np.array([[1, 1, 1, 1, 1], [1, 1, 0, 0, 0], [0, 0, 0, 0, 0]], bool)
    layer = RecurrentAttention(score, units=units)
    layer(q, m)  # builds the weights
    weights = [rng.normal(0, 0.5, size=w.shape) for w in layer.get_weights()]
    layer.set_weights(weights)
    if score == "additive":
        assert [w.shape for w in weights] == [
            (4, units or memory_dim),
            (memory_dim, units or memory_dim),
            (units or memory_dim,),
            (units or memory_dim,),
        ]
    context, a = layer(q, m, memory_mask=mask if with_mask else None)
    expected_context, expected = _numpy_attention(
        score,
        q.astype(np.float64),
        m.astype(np.float64),
        weights,
        mask if with_mask else None,
    )
    assert tuple(context.shape) == (3, 4, memory_dim)
    assert tuple(a.shape) == (3, 4, 5)
    np.testing.assert_allclose(_np(a), expected, atol=1e-5)
    np.testing.assert_allclose(_np(context), expected_context, atol=1e-5)
    a = _np(a)
    if with_mask:
        assert np.all(a[~np.broadcast_to(mask[:, None, :], a.shape)] == 0.0)
        np.testing.assert_allclose(a[:2].sum(axis=-1), 1.0, rtol=1e-5)
        assert np.all(a[2] == 0.0) and np.all(_np(context)[2] == 0.0)
    else:
        np.testing.assert_allclose(a.sum(axis=-1), 1.0, rtol=1e-5)


def test_attention_config_round_trip_and_memory_mask_from_keras():
    layer = RecurrentAttention("additive", units=7, name="attention")
    clone = RecurrentAttention.from_config(layer.get_config())
    assert (clone.score, clone.units, clone.name) == ("additive", 7, "attention")
    # The memory's Keras mask (from an Embedding with mask_zero) is used.
    tokens = keras.Input((4,), dtype="int32")
    query = keras.Input((3, 6))
    memory = keras.layers.Embedding(9, 6, mask_zero=True)(tokens)
    _, weights = RecurrentAttention("dot")(query, memory)
    model = keras.Model([query, tokens], weights)
    ids = np.array([[5, 3, 0, 0]], "int32")
    a = _np(model([np.ones((1, 3, 6), "float32"), ids]))
    assert np.all(a[..., 2:] == 0.0)
    np.testing.assert_allclose(a.sum(axis=-1), 1.0, rtol=1e-5)


@pytest.mark.parametrize(
    ("arguments", "shapes", "argument"),
    [
        (dict(score="dot"), ((1, 2, 4), (1, 3, 5)), "score"),
        (dict(score="cosine"), None, "score"),
        (dict(score="general", units=4), None, "units"),
        (dict(score="additive", units=0), None, "units"),
    ],
)
def test_attention_bad_arguments(arguments, shapes, argument):
    with pytest.raises(AnnzooError, match=f"`{argument}`"):
        layer = RecurrentAttention(**arguments)
        q, m = (np.zeros(s, "float32") for s in shapes)
        layer(q, m)


# -- parameter counts, by formulas written here --------------------------------


def _dense(n_in, n_out, bias=True):
    return n_in * n_out + (n_out if bias else 0)


def _gru(d, u):
    # reset_after=True: kernel d x 3u, recurrent u x 3u, two bias rows of 3u.
    return 3 * (d * u + u * u + 2 * u)


def _lstm(d, u):
    return 4 * (d * u + u * u + u)


def _score(kind, q, m, u):
    return {"bahdanau": q * u + m * u + 2 * u, "luong": 0, "luong_general": q * m}[kind]


def _seq2seq_count(vs, vt, e, u, cell, layers, bidirectional, attention):
    rnn = _gru if cell == "gru" else _lstm
    directions = 2 if bidirectional else 1
    count = vs * e + vt * e  # two embeddings
    d = e
    for _ in range(layers):
        count += directions * rnn(d, u)
        d = directions * u
    if bidirectional:  # [h_f; h_b] (and [c_f; c_b]) -> Dense(u, tanh)
        count += (2 if cell == "lstm" else 1) * _dense(2 * u, u)
    count += rnn(e, u)  # decoder
    if attention is not None:
        count += _score(attention, u, d, u) + _dense(u + d, u, bias=False)
    return count + _dense(u, vt)


@pytest.mark.skipif(
    keras.backend.backend() != "tensorflow",
    reason="a parameter count does not depend on the backend (20 s to build on JAX)",
)
def test_seq2seq_attention_preset_count():
    # TF "NMT with attention" sizes: embedding 256, GRU 1024, 8000 + 8000 ids.
    formula = (
        2 * 8000 * 256
        + 2 * 3 * (256 * 1024 + 1024 * 1024 + 2 * 1024)
        + (1024 * 1024 + 1024 * 1024 + 1024 + 1024)  # W_q, W_m, b, v
        + 2 * 1024 * 1024  # W_c on [context; h], no bias
        + 1024 * 8000
        + 8000
    )
    assert formula == 24_368_960
    assert formula == _seq2seq_count(8000, 8000, 256, 1024, "gru", 1, False, "bahdanau")
    model = annzoo.create_model("seq2seq_attention", compile=False)
    assert model.count_params() == formula
    assert annzoo.model_info("seq2seq_attention").reference.params == formula


_CONFIGS = [
    dict(cell="gru", encoder_layers=1, bidirectional=False, attention="bahdanau"),
    dict(cell="lstm", encoder_layers=2, bidirectional=True, attention="bahdanau"),
    dict(cell="gru", encoder_layers=1, bidirectional=True, attention="luong_general"),
    dict(cell="lstm", encoder_layers=1, bidirectional=False, attention="luong"),
    dict(cell="gru", encoder_layers=2, bidirectional=False, attention=None),
]


def _tiny(source_length=8, target_length=6, **kwargs):
    options = dict(embedding_dim=8, units=12, compile=False)
    return build_seq2seq(13, source_length, 11, target_length, **{**options, **kwargs})


@pytest.mark.parametrize("config", _CONFIGS)
def test_small_counts_and_shapes(config):
    model = _tiny(**config)
    expected = _seq2seq_count(
        13,
        11,
        8,
        12,
        config["cell"],
        config["encoder_layers"],
        config["bidirectional"],
        config["attention"],
    )
    assert model.count_params() == expected
    assert sorted(t.name for t in model.inputs) == ["decoder_tokens", "encoder_tokens"]
    assert model.output_shape == (None, 6, 11)
    assert model.layers[-1].name == "predictions"
    if config["attention"] is None:
        with pytest.raises(ValueError):
            model.get_layer("attention")
    else:
        context, weights = model.get_layer("attention").output
        assert tuple(weights.shape) == (None, 6, 8)
        memory = 24 if config["bidirectional"] else 12
        assert tuple(context.shape) == (None, 6, memory)


def test_model_info_shapes():
    info = annzoo.model_info("seq2seq_attention")
    assert info.family == "seq2seq" and info.task == "sequence"
    assert info.input_shape == ((40,), (40,))
    assert info.output_shape == (40, 8000)


# -- causality and padding -----------------------------------------------------


def _batch(rng, source_length=8, target_length=6, padded=True):
    source = rng.integers(1, 13, (3, source_length)).astype("int32")
    if padded:
        source[1, 5:] = 0
        source[2, 2:] = 0
    target = rng.integers(1, 11, (3, target_length)).astype("int32")
    return source, target


def _causality_batches(target):
    """For each step t, the targets changed after t: other ids, then padding."""
    changes = []
    for t in range(target.shape[1] - 1):
        other = target.copy()
        other[:, t + 1 :] = other[:, t + 1 :] % 10 + 1
        prefix = target.copy()  # a prefix padded with 0, as decoding feeds it
        prefix[:, t + 1 :] = 0
        changes += [(t, other, True), (t, prefix, False)]
    return changes


def check_causal(model, source_name, source, target):
    """Outputs up to t are unchanged when decoder tokens after t change."""
    changes = _causality_batches(target)
    # One call over every variant (fast on every backend).
    batch = {
        source_name: np.concatenate([source] * (len(changes) + 1)),
        "decoder_tokens": np.concatenate([target] + [c for _, c, _ in changes]),
    }
    outputs = np.split(_predict(model, batch), len(changes) + 1)
    base = outputs[0]
    np.testing.assert_allclose(base.sum(axis=-1), 1.0, rtol=1e-5)
    for (t, _, differs), out in zip(changes, outputs[1:], strict=True):
        np.testing.assert_allclose(out[:, : t + 1], base[:, : t + 1], atol=1e-5)
        if differs:  # sanity: later tokens do change later outputs
            assert not np.allclose(out[:, t + 1 :], base[:, t + 1 :], atol=1e-5)


@pytest.mark.parametrize("config", _CONFIGS)
def test_decoder_is_causal(config):
    keras.utils.set_random_seed(1)
    model = _tiny(**config)
    source, target = _batch(np.random.default_rng(0))
    check_causal(model, "encoder_tokens", source, target)


@pytest.mark.parametrize("config", _CONFIGS[:3])
def test_source_padding_is_ignored(config):
    keras.utils.set_random_seed(2)
    long = _tiny(source_length=10, **config)
    short = _tiny(source_length=5, **config)
    # Recurrent weights do not depend on the length: same shapes, same values.
    short.set_weights(long.get_weights())
    rng = np.random.default_rng(1)
    source = np.zeros((2, 10), "int32")
    source[0, :5] = rng.integers(1, 13, 5)
    source[1, :2] = rng.integers(1, 13, 2)
    target = rng.integers(1, 11, (2, 6)).astype("int32")
    p_long, w_long = _probe(long).predict(
        {"encoder_tokens": source, "decoder_tokens": target}, verbose=0
    )
    p_short, w_short = _probe(short).predict(
        {"encoder_tokens": source[:, :5], "decoder_tokens": target}, verbose=0
    )
    np.testing.assert_allclose(p_long, p_short, atol=1e-5)
    np.testing.assert_allclose(w_long[:, :, :5], w_short, atol=1e-5)
    # Padded source positions get exactly zero attention; the rest sums to 1.
    assert np.all(w_long[:, :, 5:] == 0.0) and np.all(w_long[1, :, 2:] == 0.0)
    np.testing.assert_allclose(w_long.sum(axis=-1), 1.0, rtol=1e-5)
    # Sanity: the source tokens do matter.
    changed = source.copy()
    changed[:, 0] = changed[:, 0] % 12 + 1
    other = _predict(long, {"encoder_tokens": changed, "decoder_tokens": target})
    assert not np.allclose(other, p_long, atol=1e-5)


# -- learning, saving ----------------------------------------------------------


def _reverse_task(n, length, rng):
    """Sources of 3..length ids in 4..11, targets reversed + <end> (2)."""
    source = np.zeros((n, length), "int32")
    target = np.zeros((n, length + 1), "int32")
    lengths = rng.integers(3, length + 1, n)
    for i, k in enumerate(lengths):
        tokens = rng.integers(4, 12, k)
        source[i, :k] = tokens
        target[i, :k] = tokens[::-1]
        target[i, k] = 2
    return source, target, lengths


@pytest.mark.slow
def test_learns_to_reverse_with_attention():
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    length = 6
    source, target, lengths = _reverse_task(1024, length, rng)
    decoder = annzoo.text.shift_right(target, 1)
    model = build_seq2seq(
        12,
        length,
        12,
        length + 1,
        embedding_dim=16,
        units=32,
        compile=dict(learning_rate=1e-2),
    )
    train, test = slice(0, 896), slice(896, None)
    history = model.fit(
        {"encoder_tokens": source[train], "decoder_tokens": decoder[train]},
        target[train],
        epochs=10,
        batch_size=64,
        verbose=0,
    )
    losses = history.history["loss"]
    assert losses[-1] < 0.1 * losses[0], losses
    logs = model.evaluate(
        {"encoder_tokens": source[test], "decoder_tokens": decoder[test]},
        target[test],
        verbose=0,
        return_dict=True,
    )
    assert logs["token_accuracy"] > 0.9, logs
    # Output step t of a reversal reads source position k - 1 - t: the learned
    # attention should put its largest weight there.
    _, weights = _probe(model).predict(
        {"encoder_tokens": source[test], "decoder_tokens": decoder[test]}, verbose=0
    )
    hits = total = 0
    for w, k in zip(weights, lengths[test], strict=True):
        hits += int(np.sum(np.argmax(w[:k], axis=-1) == np.arange(k)[::-1]))
        total += int(k)
    assert hits / total > 0.8, hits / total


@pytest.mark.slow
@pytest.mark.parametrize("config", [_CONFIGS[0], _CONFIGS[1], _CONFIGS[4]])
def test_save_and_reload_predict_identically(config, tmp_path):
    keras.utils.set_random_seed(3)
    model = _tiny(dropout=0.1, **{**config, "compile": True})
    source, target = _batch(np.random.default_rng(2))
    inputs = {"encoder_tokens": source, "decoder_tokens": target}
    model.train_on_batch(inputs, target)
    path = tmp_path / "seq2seq.keras"
    model.save(path)
    reloaded = keras.saving.load_model(path)
    np.testing.assert_array_equal(_predict(reloaded, inputs), _predict(model, inputs))
    assert reloaded.get_layer("predictions").output.shape == (None, 6, 11)


# -- arguments -----------------------------------------------------------------

_ARGS = dict(vocabulary_size=10, sequence_length=4)


@pytest.mark.parametrize(
    ("arguments", "argument"),
    [
        (dict(_ARGS, cell="rnn"), "cell"),
        (dict(_ARGS, attention="cosine"), "attention"),
        (dict(_ARGS, attention="luong", bidirectional=True), "attention"),
        (dict(_ARGS, units=0), "units"),
        (dict(_ARGS, embedding_dim=-1), "embedding_dim"),
        (dict(_ARGS, vocabulary_size=0), "vocabulary_size"),
        (dict(_ARGS, sequence_length=None), "sequence_length"),
        (dict(_ARGS, target_vocabulary_size=0), "target_vocabulary_size"),
        (dict(_ARGS, target_sequence_length=2.5), "target_sequence_length"),
        (dict(_ARGS, encoder_layers=0), "encoder_layers"),
        (dict(_ARGS, bidirectional="yes"), "bidirectional"),
        (dict(_ARGS, dropout=1.0), "dropout"),
        (dict(_ARGS, task="multiclass"), "task"),
        (dict(_ARGS, compile="yes"), "compile"),
    ],
)
def test_bad_arguments_name_the_argument(arguments, argument):
    with pytest.raises(AnnzooError, match=f"`{argument}`"):
        build_seq2seq(**arguments)


def test_defaults_and_compile():
    model = build_seq2seq(10, 4)
    assert model.output_shape == (None, 4, 10)
    assert model.optimizer is not None
    assert isinstance(model.get_layer("attention"), RecurrentAttention)
    assert model.get_layer("attention").score == "additive"
    assert build_seq2seq(10, 4, attention="none").output_shape == (None, 4, 10)
    uncompiled = build_seq2seq(10, 4, compile=False)
    assert getattr(uncompiled, "optimizer", None) is None

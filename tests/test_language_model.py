"""The language_model family: parameter formulas, causality, padding, data, errors.

What the registry-driven tests (test_all_models, test_family_specs) do not
check: the preset counts against formulas written here, that no position sees
a later one, that padding changes nothing before it and counts in no loss,
the training arrays, conditioning on a class, and the builder's refusals.
"""

from __future__ import annotations

import keras
import numpy as np
import pytest

import annzoo
from annzoo import AnnzooError
from annzoo.generation import (
    language_model_vocabulary,
    next_token_arrays,
)
from annzoo.text import Vocabulary

# Not in the ANNZOO_SPEEDUPS=0 passes: the speedups act on building and
# training steps, which the language model family's smoke model goes through
# there (test_family_specs); none acts on decoding.

ARCHITECTURES = ["transformer", "lstm", "gru"]
SIZES = {
    "transformer": dict(sequence_length=9, num_heads=2, ff_dim=12),
    "lstm": dict(units=6),
    "gru": dict(units=6),
}


def _tiny(architecture, conditional=None, **extra):
    keras.utils.set_random_seed(0)
    options = {**SIZES[architecture], **extra}
    return annzoo.build_language_model(
        11,
        architecture=architecture,
        embedding_dim=8,
        num_layers=2,
        conditional_classes=conditional,
        dropout=0.0,
        **options,
    )


def _count(config):
    """Weights of a language model, from the layer equations (Keras' layers
    with biases; GRU with reset_after=True has two bias vectors)."""
    v, d, n = config["vocabulary_size"], config["embedding_dim"], config["num_layers"]
    total = v * d + (config.get("conditional_classes") or 0) * d
    if config.get("architecture", "transformer") == "transformer":
        f = config.get("ff_dim") or 4 * d
        total += config["sequence_length"] * d  # learned positions
        attention = 4 * (d * d + d)  # Q, K, V and output projections
        feed_forward = d * f + f + f * d + d
        total += n * (attention + feed_forward + 2 * 2 * d) + 2 * d
        width = d
    else:
        u = config.get("units") or 256
        gates, biases = (4, 1) if config["architecture"] == "lstm" else (3, 2)
        inputs = d
        for _ in range(n):
            total += gates * (inputs * u + u * u + biases * u)
            inputs = u
        width = u
    return total + width * v + v


@pytest.mark.parametrize("name", ["char_gpt", "char_lstm_lm", "surnames_lm"])
def test_preset_counts_match_the_formula(name):
    config = dict(annzoo.model_info(name).config)
    model = annzoo.create_model(name, compile=False)
    assert model.count_params() == _count(config)
    assert annzoo.model_info(name).reference.params == _count(config)


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_counts_of_other_sizes_match_the_formula(architecture):
    config = dict(
        vocabulary_size=11, embedding_dim=8, num_layers=2, conditional_classes=3,
        architecture=architecture, **SIZES[architecture],
    )  # fmt: skip
    assert _tiny(architecture, 3).count_params() == _count(config)


@pytest.mark.jax
@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_no_position_sees_a_later_one(architecture):
    model = _tiny(architecture)
    rng = np.random.default_rng(0)
    tokens = rng.integers(1, 11, size=(3, 9)).astype("int32")
    changed = tokens.copy()
    changed[:, 5:] = rng.integers(1, 11, size=(3, 4))
    a = keras.ops.convert_to_numpy(model(tokens, training=False))
    b = keras.ops.convert_to_numpy(model(changed, training=False))
    np.testing.assert_allclose(a[:, :5], b[:, :5], rtol=1e-5, atol=1e-6)
    assert np.abs(a[:, 5:] - b[:, 5:]).max() > 1e-4  # later positions do change


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_padding_changes_nothing_before_it_and_counts_in_no_loss(architecture):
    model = _tiny(architecture)
    tokens = np.array([[1, 4, 5, 6, 0, 0, 0, 0, 0], [1, 7, 8, 9, 10, 4, 5, 0, 0]])
    labels = np.array([[4, 5, 6, 2, 0, 0, 0, 0, 0], [7, 8, 9, 10, 4, 5, 2, 0, 0]])
    probs = keras.ops.convert_to_numpy(model(tokens, training=False))
    # The first row alone, unpadded (the RNNs read any length).
    if architecture != "transformer":
        alone = keras.ops.convert_to_numpy(model(tokens[:1, :4], training=False))
        np.testing.assert_allclose(probs[0, :4], alone[0], rtol=1e-5, atol=1e-6)
    # The loss is the mean cross-entropy over the 11 non-padding targets.
    picked = np.take_along_axis(probs, labels[..., None], axis=-1)[..., 0]
    expected = -np.log(picked[labels != 0]).mean()
    loss = model.evaluate(tokens, labels, verbose=0, return_dict=True)["loss"]
    np.testing.assert_allclose(loss, expected, rtol=1e-4)


def test_conditioning_adds_the_class_vector_to_every_step():
    model = _tiny("gru", 3)
    tokens = np.array([[1, 4, 5, 6], [1, 4, 5, 6]], dtype="int32")
    classes = np.array([[0], [2]], dtype="int32")
    out = keras.ops.convert_to_numpy(model({"tokens": tokens, "classes": classes}))
    assert np.abs(out[0] - out[1]).max() > 1e-4  # the class changes every step
    # With class 2's vector set equal to class 0's, the outputs are equal.
    table = model.get_layer("class_embedding").embeddings
    table.assign(keras.ops.stack([table[0], table[1], table[0]]))
    out = keras.ops.convert_to_numpy(model({"tokens": tokens, "classes": classes}))
    np.testing.assert_allclose(out[0], out[1], rtol=1e-6)


def test_conditional_transformer_reloads_in_a_fresh_process(tmp_path, reloader):
    model = _tiny("transformer", 4)
    rng = np.random.default_rng(0)
    x = {
        "tokens": rng.integers(1, 11, size=(2, 9)).astype("int32"),
        "classes": np.array([[1], [3]], dtype="int32"),
    }
    model.train_on_batch(x, rng.integers(0, 11, size=(2, 9)))
    expected = keras.ops.convert_to_numpy(model(x, training=False))
    model.save(tmp_path / "lm.keras")
    np.savez(tmp_path / "x.npz", **x)
    reloader.predict(tmp_path / "lm.keras", tmp_path / "x.npz", tmp_path / "y.npy")
    np.testing.assert_array_equal(np.load(tmp_path / "y.npy"), expected)


def test_next_token_arrays_shift_the_labels_left():
    vocabulary = Vocabulary(["<pad>", "<start>", "<end>", "<unk>", "a", "b"])
    x, y = next_token_arrays(["ab", "b", "abab?"], vocabulary, sequence_length=5)
    # Written by hand: <start> = 1, <end> = 2, <unk> = 3, a = 4, b = 5.
    np.testing.assert_array_equal(
        x, [[1, 4, 5, 0, 0], [1, 5, 0, 0, 0], [1, 4, 5, 4, 5]]
    )
    np.testing.assert_array_equal(
        y, [[4, 5, 2, 0, 0], [5, 2, 0, 0, 0], [4, 5, 4, 5, 3]]
    )
    x, _ = next_token_arrays(["a", "b"], vocabulary, sequence_length=3, classes=[1, 0])
    np.testing.assert_array_equal(x["classes"], [[1], [0]])


def test_language_model_vocabulary_replaces_the_specials():
    source = Vocabulary(["<pad>", "<unk>", "e", "a", "é"])
    vocabulary = language_model_vocabulary(source)
    assert vocabulary.tokens == ("<pad>", "<start>", "<end>", "<unk>", "e", "a", "é")
    built = language_model_vocabulary(["aab", "b", "bc"])
    assert built.tokens == ("<pad>", "<start>", "<end>", "<unk>", "b", "a", "c")


@pytest.mark.parametrize(
    "arguments, fragment",
    [
        (dict(architecture="lstm", num_heads=2), "`num_heads` applies to"),
        (dict(architecture="transformer", units=8), "`units` applies to"),
        (dict(architecture="transformer", sequence_length=None), "`sequence_length`"),
        (dict(num_heads=3), "`num_heads` must divide `embedding_dim`"),
        (dict(conditional_classes=0), "`conditional_classes` must be"),
        (dict(architecture="rnn"), "`architecture` must be one of"),
        (dict(task="multiclass"), "`task` must be one of"),
    ],
)
def test_bad_arguments_are_named_before_building(arguments, fragment):
    options = {"sequence_length": 8, "embedding_dim": 8, **arguments}
    with pytest.raises(AnnzooError, match=fragment) as caught:
        annzoo.build_language_model(12, **options)
    assert "Received" in str(caught.value)

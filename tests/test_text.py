"""`annzoo.text`: vocabularies, encoding and teacher-forcing shifts."""

from __future__ import annotations

import numpy as np
import pytest

from annzoo.errors import AnnzooError
from annzoo.text import (
    INPUT_SPECIALS,
    SEQUENCE_SPECIALS,
    Vocabulary,
    shift_right,
    tokenize_words,
)


def test_build_orders_specials_then_frequency_then_alphabet():
    vocab = Vocabulary.build(["abca", "cb"], specials=SEQUENCE_SPECIALS)
    # counts: a 2, b 2, c 2 -> alphabetical among ties
    assert vocab.tokens == ("<pad>", "<start>", "<end>", "<unk>", "a", "b", "c")
    assert (vocab.start_id, vocab.end_id, vocab.unk_id) == (1, 2, 3)
    assert Vocabulary.build(["cb", "abca"], specials=SEQUENCE_SPECIALS) == vocab
    words = Vocabulary.build([["the", "cat"], ["the"]], max_size=3)
    assert words.tokens == ("<pad>", "<unk>", "the")


def test_encode_pads_truncates_and_keeps_the_end_token():
    vocab = Vocabulary.build(["abc"], specials=SEQUENCE_SPECIALS)
    a, b, c = (vocab.id(t) for t in "abc")
    assert vocab.encode("ab", length=5, end=True).tolist() == [a, b, 2, 0, 0]
    assert vocab.encode("abc", length=3, end=True).tolist() == [a, b, 2]
    assert vocab.encode("ab", length=4, start=True).tolist() == [1, a, b, 0]
    assert vocab.encode("az", length=2).tolist() == [a, 3]  # unknown -> <unk>
    batch = vocab.encode_batch(["a", "cb"], length=3, end=True)
    assert batch.dtype == np.int32 and batch.tolist() == [[a, 2, 0], [c, b, 2]]
    assert vocab.decode(batch[1]) == "cb"
    assert vocab.decode([1, a, 2, b]) == "a"  # stops at <end>, skips <start>
    assert Vocabulary.from_dict(vocab.to_dict()) == vocab


def test_shift_right_is_teacher_forcing_input():
    targets = np.array([[4, 5, 2, 0], [6, 2, 0, 0]], dtype=np.int32)
    expected = np.array([[1, 4, 5, 2], [1, 6, 2, 0]], dtype=np.int32)
    np.testing.assert_array_equal(shift_right(targets, 1), expected)
    with pytest.raises(AnnzooError, match="2-D"):
        shift_right(targets[0], 1)


def test_bad_vocabularies_are_refused():
    with pytest.raises(AnnzooError, match="padding"):
        Vocabulary(["a", "<pad>"])
    with pytest.raises(AnnzooError, match="repeat"):
        Vocabulary(["<pad>", "a", "a"])
    with pytest.raises(AnnzooError, match="<unk>"):
        Vocabulary(["<pad>", "a"]).id("b")
    with pytest.raises(AnnzooError, match="max_size"):
        Vocabulary.build(["ab"], specials=INPUT_SPECIALS, max_size=2)
    with pytest.raises(AnnzooError, match="<start>"):
        _ = Vocabulary.build(["ab"]).start_id


def test_tokenize_words():
    assert tokenize_words("A great film!<br />Really, great.") == [
        "a",
        "great",
        "film",
        "really",
        "great",
    ]

"""`class_share`: the share of generated names a classifier assigns to the
class they were asked for, checked by counting on a stub classifier whose
predictions the test decides."""

from __future__ import annotations

import numpy as np
import pytest

from annzoo.text import SEQUENCE_SPECIALS, Vocabulary
from annzoo.training.generative import class_share

VOCABULARY = Vocabulary([*SEQUENCE_SPECIALS, "a", "b", "c", "d"])
# The stub's rule, written on the characters: a name's class is fixed by its
# first letter; an empty name (all padding) is class 0.
CLASS_OF_FIRST = {"a": 1, "b": 2, "c": 0, "d": 1, "": 0}


class _FirstLetterClassifier:
    """Predicts from the first id alone, as ``keras.Model.predict`` would:
    one probability row per name, the rule's class most probable."""

    def __init__(self):
        self.seen = None

    def predict(self, x, verbose=0):
        self.seen = np.asarray(x)
        first = [VOCABULARY.tokens[i] if i else "" for i in self.seen[:, 0]]
        rows = np.full((len(first), 3), 0.1)
        rows[np.arange(len(first)), [CLASS_OF_FIRST[c] for c in first]] = 0.8
        return rows


def test_shares_by_counting():
    names = {
        "zero": ["ca", "cab", "abc", ""],  # classes 0, 0, 1, 0: 3 of 4
        "one": ["a", "dd", "b", "c", "ab"],  # 1, 1, 2, 0, 1: 3 of 5
        "two": ["ba", "cb", "abcd"],  # 2, 0, 1: 1 of 3
    }
    stub = _FirstLetterClassifier()
    got = class_share(stub, names, VOCABULARY)
    expected = {}
    for k, (name, row) in enumerate(names.items()):
        expected[name] = sum(CLASS_OF_FIRST[n[:1]] == k for n in row) / len(row)
    assert got["per_class"] == pytest.approx(expected)
    assert expected == pytest.approx({"zero": 3 / 4, "one": 3 / 5, "two": 1 / 3})
    # Overall: over every name (7 of 12), not the mean of the three shares.
    assert got["overall"] == pytest.approx(7 / 12)
    # The classifier read every name once, padded with 0 to the longest.
    assert stub.seen.shape == (12, 4)
    assert VOCABULARY.decode(stub.seen[5]) == "dd"


def test_one_class_all_right_and_all_wrong():
    stub = _FirstLetterClassifier()
    got = class_share(stub, {"x": ["c", "cc"], "y": ["b"]}, VOCABULARY)
    assert got == {"per_class": {"x": 1.0, "y": 0.0}, "overall": 2 / 3}

"""What a language model trains on: its vocabulary and next-token arrays.

A language model built by `annzoo.build_language_model` reads ``<start>``
followed by a text and predicts the text followed by ``<end>``: the labels are
the inputs shifted one step left, both padded with 0 (ignored by the loss).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from annzoo._checks import check_positive_int
from annzoo.errors import AnnzooError
from annzoo.text import SEQUENCE_SPECIALS, Vocabulary

__all__ = ["language_model_vocabulary", "next_token_arrays"]


def language_model_vocabulary(
    source: Vocabulary | Iterable[Sequence[str]],
) -> Vocabulary:
    """The vocabulary of a language model: padding, ``<start>``, ``<end>``,
    ``<unk>`` (ids 0 to 3), then the ordinary tokens.

    Args:
        source: an existing `Vocabulary` (a classifier dataset's, whose
            special tokens are replaced and whose other tokens keep their
            order), or token sequences (strings are character sequences),
            ranked by frequency as `Vocabulary.build` ranks them.

    Example:
        >>> vocab = language_model_vocabulary(["Smith", "Jones"])
        >>> vocab.tokens[:5]
        ('<pad>', '<start>', '<end>', '<unk>', 's')
    """
    if isinstance(source, Vocabulary):
        ordinary = [
            t for t in source.tokens if not (t.startswith("<") and t.endswith(">"))
        ]
        return Vocabulary([*SEQUENCE_SPECIALS, *ordinary])
    return Vocabulary.build(source, specials=SEQUENCE_SPECIALS)


def next_token_arrays(
    texts: Iterable[Sequence[str]],
    vocabulary: Vocabulary,
    *,
    sequence_length: int,
    classes: Any = None,
) -> tuple[Any, np.ndarray]:
    """``(x, y)`` for ``model.fit``: inputs and next-token labels.

    Each text becomes the input row ``<start>, t_1, ..., t_n`` and the label
    row ``t_1, ..., t_n, <end>`` (the inputs shifted one step left), both
    padded with 0 to ``sequence_length``; a text longer than
    ``sequence_length - 1`` tokens is cut (its label row then ends without
    ``<end>``). Unknown tokens become ``<unk>``.

    Args:
        texts: strings (characters) or token lists.
        vocabulary: a language-model vocabulary (`language_model_vocabulary`).
        sequence_length: the length of the rows.
        classes: one class id per text, for a conditional model, or None.

    Returns:
        ``(x, y)``: ``x`` int32 ``(n, sequence_length)``, or
        ``{"tokens": ..., "classes": (n, 1)}`` with ``classes``; ``y`` int32
        ``(n, sequence_length)``.
    """
    sequence_length = check_positive_int("sequence_length", sequence_length)
    texts = list(texts)
    start, end = vocabulary.start_id, vocabulary.end_id
    x = np.zeros((len(texts), sequence_length), dtype=np.int32)
    y = np.zeros_like(x)
    for row, text in enumerate(texts):
        ids = [vocabulary.id(t) for t in text]
        inputs = [start, *ids][:sequence_length]
        labels = [*ids, end][:sequence_length]
        x[row, : len(inputs)] = inputs
        y[row, : len(labels)] = labels
    if classes is None:
        return x, y
    classes = np.asarray(classes, dtype=np.int32).reshape(-1, 1)
    if len(classes) != len(texts):
        raise AnnzooError(
            f"`classes` must hold one class id per text ({len(texts)}). "
            f"Received: {len(classes)} class ids"
        )
    return {"tokens": x, "classes": classes}, y

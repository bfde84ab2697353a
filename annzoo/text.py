"""Token vocabularies shared by the text datasets, the sequence models and `decode`.

One convention everywhere in annzoo:

* id 0 is padding (``"<pad>"``): embeddings mask it, losses of sequence tasks
  ignore it, and padding goes at the end of a row;
* a `Vocabulary` built with ``specials=SEQUENCE_SPECIALS`` (the targets of
  sequence-to-sequence datasets) has ``"<start>"`` at id 1, ``"<end>"`` at id 2
  and ``"<unk>"`` at id 3; one built with ``specials=INPUT_SPECIALS`` (inputs
  and taggers) has ``"<unk>"`` at id 1;
* a target row is the tokens, then ``"<end>"``, then padding; the decoder's
  input in training (teacher forcing) is the same row shifted right by one with
  ``"<start>"`` first (`shift_right`).

Tokens are strings: characters (iterate a ``str``) or words (a list of words).
Nothing here imports TensorFlow.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from annzoo._checks import check_positive_int
from annzoo.errors import AnnzooError

__all__ = [
    "PAD",
    "UNK",
    "START",
    "END",
    "PAD_ID",
    "INPUT_SPECIALS",
    "SEQUENCE_SPECIALS",
    "Vocabulary",
    "shift_right",
    "tokenize_words",
]

PAD, UNK, START, END = "<pad>", "<unk>", "<start>", "<end>"
PAD_ID = 0
INPUT_SPECIALS: tuple[str, ...] = (PAD, UNK)
SEQUENCE_SPECIALS: tuple[str, ...] = (PAD, START, END, UNK)


class Vocabulary:
    """An ordered list of tokens; a token's id is its position.

    Args:
        tokens: every token, specials included, padding first; no duplicates.

    Example:
        >>> vocab = Vocabulary.build(["2021-03-04"], specials=SEQUENCE_SPECIALS)
        >>> ids = vocab.encode("2021-03-04", length=12, end=True)
        >>> vocab.decode(ids)
        '2021-03-04'
    """

    def __init__(self, tokens: Sequence[str]):
        tokens = tuple(tokens)
        if not tokens or tokens[0] != PAD:
            raise AnnzooError(
                f"`tokens` must start with the padding token {PAD!r} (id 0). "
                f"Received: tokens[:3]={list(tokens[:3])!r}"
            )
        if not all(isinstance(t, str) and t for t in tokens):
            bad = next(t for t in tokens if not (isinstance(t, str) and t))
            raise AnnzooError(f"`tokens` must be non-empty strings. Received: {bad!r}")
        index: dict[str, int] = {}
        for i, token in enumerate(tokens):
            if token in index:
                raise AnnzooError(
                    f"`tokens` must not repeat a token. Received {token!r} at ids "
                    f"{index[token]} and {i}."
                )
            index[token] = i
        self.tokens = tokens
        self._index = index

    @classmethod
    def build(
        cls,
        sequences: Iterable[Sequence[str]],
        *,
        specials: Sequence[str] = INPUT_SPECIALS,
        max_size: int | None = None,
        min_count: int = 1,
    ) -> Vocabulary:
        """The vocabulary of ``sequences``: specials, then tokens by frequency.

        Ties are broken alphabetically, so the result does not depend on the
        order of ``sequences``.

        Args:
            sequences: token sequences (strings count as character sequences).
            specials: the special tokens, ``"<pad>"`` first.
            max_size: at most this many tokens, specials included.
            min_count: drop tokens seen fewer times.
        """
        counts: Counter[str] = Counter()
        for sequence in sequences:
            counts.update(sequence)
        ranked = sorted(
            (t for t, c in counts.items() if c >= min_count and t not in specials),
            key=lambda t: (-counts[t], t),
        )
        tokens = [*specials, *ranked]
        if max_size is not None:
            max_size = check_positive_int("max_size", max_size)
            if max_size <= len(specials):
                raise AnnzooError(
                    f"`max_size` must exceed the {len(specials)} special tokens. "
                    f"Received: max_size={max_size}"
                )
            tokens = tokens[:max_size]
        return cls(tokens)

    def __len__(self) -> int:
        return len(self.tokens)

    def __contains__(self, token: object) -> bool:
        return token in self._index

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Vocabulary) and other.tokens == self.tokens

    def __hash__(self) -> int:
        return hash(self.tokens)

    def __repr__(self) -> str:
        shown = ", ".join(map(repr, self.tokens[:8]))
        more = ", ..." if len(self) > 8 else ""
        return f"Vocabulary({len(self)} tokens: {shown}{more})"

    def id(self, token: str) -> int:
        """The id of ``token``; an unknown token gets ``"<unk>"``'s id."""
        found = self._index.get(token)
        if found is not None:
            return found
        if UNK not in self._index:
            raise AnnzooError(
                f"Token {token!r} is not in the vocabulary, which has no {UNK!r} "
                "token to stand for unknown tokens."
            )
        return self._index[UNK]

    @property
    def start_id(self) -> int:
        return self._special(START)

    @property
    def end_id(self) -> int:
        return self._special(END)

    @property
    def unk_id(self) -> int:
        return self._special(UNK)

    def _special(self, token: str) -> int:
        if token not in self._index:
            raise AnnzooError(f"This vocabulary has no {token!r} token.")
        return self._index[token]

    def encode(
        self,
        sequence: Sequence[str],
        *,
        length: int,
        start: bool = False,
        end: bool = False,
    ) -> np.ndarray:
        """One row of int32 ids, padded with 0 (or truncated) to ``length``.

        ``start``/``end`` add ``"<start>"`` first / ``"<end>"`` last; a
        truncated row keeps its ``"<end>"`` as the last id.
        """
        length = check_positive_int("length", length)
        ids = [self.id(t) for t in sequence]
        if start:
            ids.insert(0, self.start_id)
        if end:
            ids = ids[: length - 1] + [self.end_id]
        row = np.zeros(length, dtype=np.int32)
        ids = ids[:length]
        row[: len(ids)] = ids
        return row

    def encode_batch(
        self,
        sequences: Iterable[Sequence[str]],
        *,
        length: int,
        start: bool = False,
        end: bool = False,
    ) -> np.ndarray:
        """``encode`` every sequence: an int32 array ``(num_sequences, length)``."""
        rows = [self.encode(s, length=length, start=start, end=end) for s in sequences]
        if not rows:
            return np.zeros((0, length), dtype=np.int32)
        return np.stack(rows)

    def decode(self, ids: Iterable[int], *, join: str | None = "") -> Any:
        """Tokens of ``ids`` up to the first ``"<end>"``, without specials.

        Returns the tokens joined with ``join`` (``""`` for characters, ``" "``
        for words), or the list of tokens with ``join=None``.
        """
        end = self._index.get(END)
        skip = {self._index[s] for s in (PAD, START) if s in self._index}
        tokens = []
        for i in np.asarray(list(ids)).reshape(-1).tolist():
            i = int(i)
            if i == end:
                break
            if i in skip or i < 0:
                continue
            tokens.append(self.tokens[i] if i < len(self.tokens) else UNK)
        return tokens if join is None else join.join(tokens)

    def to_dict(self) -> dict[str, list[str]]:
        return {"tokens": list(self.tokens)}

    @classmethod
    def from_dict(cls, config: Mapping[str, Any]) -> Vocabulary:
        return cls(config["tokens"])


def shift_right(targets: np.ndarray, start_id: int) -> np.ndarray:
    """Teacher-forcing decoder inputs: ``start_id``, then ``targets[:, :-1]``.

    ``targets`` is ``(num_rows, length)`` int ids ending in ``"<end>"`` and
    padding; the result has the same shape and dtype.
    """
    targets = np.asarray(targets)
    if targets.ndim != 2:
        raise AnnzooError(
            "`targets` must be a 2-D array (rows, steps) of token ids. "
            f"Received shape {targets.shape}"
        )
    shifted = np.empty_like(targets)
    shifted[:, 0] = start_id
    shifted[:, 1:] = targets[:, :-1]
    return shifted


_PUNCTUATION = str.maketrans({c: " " for c in '!"#$%&()*+,-./:;<=>?@[\\]^_`{|}~'})


def tokenize_words(text: str) -> list[str]:
    """Lower-cased words of ``text``, punctuation and HTML line breaks removed."""
    return text.replace("<br />", " ").lower().translate(_PUNCTUATION).split()

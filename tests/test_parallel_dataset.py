"""Tests of the French-English corpus "fr_en" (annzoo.datasets.parallel).

The extraction rules are checked on a small catalog written here, whose
expected pairs are worked out by hand; the shipped file is re-checked against
the rules with this file's own regular expressions; the arrays ``load`` returns
are decoded and compared with the file's text tokenized here.
"""

from __future__ import annotations

import csv
import re
import unicodedata

import numpy as np
import pytest
from babel.messages.catalog import Catalog
from babel.messages.mofile import write_mo
from babel.messages.pofile import write_po

from annzoo import datasets
from annzoo.datasets import parallel
from annzoo.errors import AnnzooError

SPLITS = ("train", "validation", "test")
# Letters (any script's), digits, spaces and . , ; : ! ? ' ( ) - only.
ALLOWED = re.compile(r"^(?:[^\W_]|[ .,;:!?'()-])+$")
# Words (a trailing apostrophe kept: "l'") and single punctuation marks.
TOKENS = re.compile(r"[^\W_]+'|[^\W_]+|[.,;:!?()'-]")


def _tokens(text):
    return TOKENS.findall(text.lower())


def _catalog():
    """A French catalog with one entry per rule, and what each should give."""
    catalog = Catalog(locale="fr")
    entries = [
        # (msgid, msgstr, flags, kept as (french, english) or None)
        ("Save changes", "Enregistrer les modifications", (), True),
        ("Delete %(name)s", "Supprimer %(name)s", (), None),  # placeholder
        ("Open {file}", "Ouvrir {file}", (), None),  # placeholder
        ("<b>Bold</b> text", "Texte <b>gras</b>", (), None),  # markup
        ("Save", "Enregistrer", (), None),  # one English word
        ("Clipboard is empty.", "Le presse\u2011papiers est vide.", (), None),
        ("Remove the row", "Supprimer la ligne", ("fuzzy",), None),  # fuzzy
        ("Show all files", "", (), None),  # untranslated
        ("Python Console", "python console", (), None),  # equal ignoring case
        (
            "one two three four five six seven eight nine ten eleven",
            "un deux",
            (),
            None,
        ),  # 11 English tokens
        (
            "Many words here",
            "un deux trois quatre cinq six sept huit neuf dix onze douze treize",
            (),
            None,
        ),  # 13 French tokens
        # A non-breaking space and a typographic apostrophe, cleaned.
        ("Name of the user", "Nom de l\u2019utilisateur\u00a0:", (), True),
        # The same French tokens again (case differs): the first pair stays.
        ("Save all changes", "enregistrer les modifications", (), None),
    ]
    for msgid, msgstr, flags, _ in entries:
        catalog.add(msgid, msgstr, flags=flags)
    # A plural entry: its singular forms.
    catalog.add(
        ("One page deleted", "Several pages deleted"),
        ("Une page supprimée", "Plusieurs pages supprimées"),
    )
    expected = [
        ("Enregistrer les modifications", "Save changes", "demo"),
        ("Nom de l'utilisateur :", "Name of the user", "demo"),
        ("Une page supprimée", "One page deleted", "demo"),
    ]
    return catalog, expected


def test_extract_pairs_applies_each_rule_to_a_po_and_a_mo_catalog(tmp_path):
    catalog, expected = _catalog()
    po, mo = tmp_path / "demo.po", tmp_path / "demo.mo"
    with po.open("wb") as stream:
        write_po(stream, catalog)
    with mo.open("wb") as stream:
        write_mo(stream, catalog)  # compiled catalogs leave fuzzy entries out
    assert parallel.extract_pairs({"demo": [po]}) == expected
    # A .mo file stores its entries sorted by msgid: "Save all changes" now
    # comes before "Save changes" and is the first of the two French twins.
    assert parallel.extract_pairs({"demo": [mo]}) == [
        expected[1],
        expected[2],
        ("enregistrer les modifications", "Save all changes", "demo"),
    ]
    # Deduplication runs across catalogs and sources, the first pair kept.
    assert parallel.extract_pairs({"demo": [po], "other": [mo]}) == expected


def test_extract_pairs_refuses_a_file_that_is_no_catalog(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("not a catalog")
    with pytest.raises(AnnzooError, match=r"`catalogs` must list \.po or \.mo"):
        parallel.extract_pairs({"demo": [path]})


def _rows():
    with parallel.CORPUS_FILE.open(encoding="utf-8", newline="") as stream:
        rows = list(csv.reader(stream, delimiter="\t", quoting=csv.QUOTE_NONE))
    assert rows[0] == ["french", "english", "source"]
    return rows[1:]


def test_the_shipped_corpus_follows_the_rules():
    rows = _rows()
    assert len(rows) >= 5000  # "a few thousand pairs" at least
    seen = set()
    for french, english, source in rows:
        for text in (french, english):
            assert ALLOWED.match(text), text
            assert unicodedata.normalize("NFC", text) == text
            assert text == " ".join(text.split()), text
        english_tokens, french_tokens = _tokens(english), _tokens(french)
        assert sum(t[0].isalnum() for t in english_tokens) >= 2, english
        assert len(english_tokens) <= 10 and len(french_tokens) <= 12, (french,)
        assert french.lower() != english.lower()
        assert tuple(french_tokens) not in seen, french
        seen.add(tuple(french_tokens))
        assert source in parallel.SOURCES
    # Every source contributes, and its licence is a permissive one whose
    # notice ships next to the data.
    assert {source for _, _, source in rows} == set(parallel.SOURCES)
    notice = parallel.CORPUS_FILE.with_name("fr_en_NOTICE.txt").read_text()
    for source, (_, licence, _) in parallel.SOURCES.items():
        assert licence in ("BSD-2-Clause", "BSD-3-Clause", "MIT")
        assert f"\n{source} (" in notice, source
    assert parallel.raw_pairs() == tuple(map(tuple, rows))


def test_load_decodes_to_the_tokenized_pairs_with_train_only_vocabularies():
    rows = _rows()
    splits = {s: datasets.load("fr_en", s, seed=0) for s in SPLITS}
    # Disjoint splits covering every pair, 70/15/15 (15% of 6,225 rounded).
    indices = np.concatenate([splits[s].indices for s in SPLITS])
    assert sorted(indices.tolist()) == list(range(len(rows)))
    n = len(rows)
    held = (15 * n + 50) // 100
    assert [len(splits[s]) for s in SPLITS] == [n - 2 * held, held, held]
    train = splits["train"]
    source_vocab, target_vocab = train.vocabulary, train.target_vocabulary
    assert source_vocab.tokens[:2] == ("<pad>", "<unk>")
    assert target_vocab.tokens[:4] == ("<pad>", "<start>", "<end>", "<unk>")
    train_words = {w for i in train.indices for w in _tokens(rows[i][0])}
    train_targets = {w for i in train.indices for w in _tokens(rows[i][1])}
    assert set(source_vocab.tokens[2:]) == train_words
    assert set(target_vocab.tokens[4:]) == train_targets
    for split in SPLITS:
        data = splits[split]
        assert data.task == data.structure == "sequence"
        assert data.x.shape[1:] == (12,) and data.y.shape[1:] == (11,)
        assert data.vocabulary == source_vocab
        assert data.target_vocabulary == target_vocab
        for row, i in enumerate(data.indices[:200]):
            french, english = rows[i][0], rows[i][1]
            words = [w if w in train_words else "<unk>" for w in _tokens(french)]
            targets = [w if w in train_targets else "<unk>" for w in _tokens(english)]
            assert source_vocab.decode(data.x[row], join=None) == words
            ids = data.y[row]
            assert ids[len(targets)] == target_vocab.end_id
            assert not ids[len(targets) + 1 :].any()  # padding after <end>
            assert [target_vocab.tokens[t] for t in ids[: len(targets)]] == targets
    # Some test words are unseen in training and read as <unk>.
    assert (splits["test"].x == source_vocab.unk_id).any()


def test_the_seed_draws_the_partition_and_the_vocabularies():
    a = datasets.load("fr_en", "train", seed=0)
    b = datasets.load("fr_en", "train", seed=0)
    c = datasets.load("fr_en", "train", seed=1)
    np.testing.assert_array_equal(a.x, b.x)
    np.testing.assert_array_equal(a.indices, b.indices)
    assert set(a.indices.tolist()) != set(c.indices.tolist())
    assert a.vocabulary != c.vocabulary
    a.x[0, 0] = 0  # a copy: the next load is unchanged
    assert datasets.load("fr_en", "train", seed=0).x[0, 0] != 0


def test_detokenize_rejoins_apostrophes_and_punctuation():
    assert parallel.tokenize("L'outil (bêta) : prêt.") == [
        "l'",
        "outil",
        "(",
        "bêta",
        ")",
        ":",
        "prêt",
        ".",
    ]
    assert parallel.detokenize(["l'", "outil", "(", "bêta", ")", "."]) == (
        "l'outil (bêta)."
    )

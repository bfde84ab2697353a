"""``"fr_en"``: short French sentences and their English originals, word by word.

Free software is written in English and translated by volunteers into other
languages through gettext catalogs (``.po``/``.mo`` files): each entry pairs an
English message (``msgid``) with its French translation (``msgstr``). Read in
reverse, French to English, these are genuine human translations, the task of
the course's translation example. The pairs ship in this package as
``fr_en.tsv`` (columns ``french``, ``english``, ``source``), extracted from the
French catalogs of ten packages on the Python Package Index, all under
permissive licences (`SOURCES`; their notices are in ``fr_en_NOTICE.txt``).

The sentences are interface messages ("Le presse-papiers est vide." ->
"Clipboard is empty."), not everyday conversation, and a few translations are
loose (a translator may rephrase). How the file was made, by
`extract_pairs` over the catalogs (`write_corpus`):

* only translated, non-fuzzy entries; for plural entries, the singular form;
* Unicode NFC, non-breaking spaces made spaces, typographic apostrophes made
  ``'``, runs of spaces collapsed;
* dropped: any message with a character other than a letter, digit, space or
  ``.,;:!?'()-`` (this removes every format placeholder such as ``%s``,
  ``{name}`` or ``%(count)d``, every HTML tag, URL, keyboard accelerator ``&``
  or ``_``, and quotation marks), English with fewer than 2 words or more than
  ``MAX_ENGLISH_TOKENS`` tokens, French with more than ``MAX_FRENCH_TOKENS``,
  and pairs whose two sides are equal ignoring case;
* deduplicated on the French side's tokens: the first pair in (source,
  catalog, entry) order is kept.

``load("fr_en", split, seed)`` tokenizes both sides with `tokenize` (lower
case, words with a trailing apostrophe kept whole, ``"l'"``, punctuation marks
as tokens): ``x`` holds French word ids (`annzoo.text.INPUT_SPECIALS`), ``y``
English word ids then ``"<end>"`` (`annzoo.text.SEQUENCE_SPECIALS`), both
padded with 0. Both vocabularies are built from the train split of the given
seed, as for ``"ner"``: they depend on the seed, and words unseen in training
map to ``"<unk>"``. The split is 70/15/15, drawn by the seed.
"""

from __future__ import annotations

import csv
import functools
import re
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from annzoo.datasets._base import ArrayDataset, register_dataset
from annzoo.datasets._split import split_indices, split_sizes
from annzoo.errors import AnnzooError
from annzoo.text import INPUT_SPECIALS, SEQUENCE_SPECIALS, Vocabulary

__all__ = [
    "CORPUS_FILE",
    "MAX_ENGLISH_TOKENS",
    "MAX_FRENCH_TOKENS",
    "NAME",
    "SOURCES",
    "detokenize",
    "extract_pairs",
    "raw_pairs",
    "tokenize",
    "write_corpus",
]

NAME = "fr_en"
CORPUS_FILE = Path(__file__).with_name("fr_en.tsv")
MAX_ENGLISH_TOKENS = 10
MAX_FRENCH_TOKENS = 12
_COLUMNS = ("french", "english", "source")

# Source name -> (package and version the catalogs were read from, licence,
# the catalogs used). The French catalogs ("fr"), or "fr_FR" where a package
# has no "fr"; the .po file, or the compiled .mo where only that ships.
SOURCES: dict[str, tuple[str, str, str]] = {
    "django": ("Django 5.2.17", "BSD-3-Clause", "django/**/locale/fr/LC_MESSAGES/*.po"),
    "django-allauth": (
        "django-allauth 65.22.1",
        "MIT",
        "allauth/locale/fr/LC_MESSAGES/django.po",
    ),
    "django-cms": (
        "django-cms 5.1.3",
        "BSD-3-Clause",
        "cms/locale/fr/LC_MESSAGES/*.po",
    ),
    "django-oscar": (
        "django-oscar 4.2.1",
        "BSD-3-Clause",
        "oscar/locale/fr/LC_MESSAGES/*.po",
    ),
    "jupyterlab-language-pack-fr-FR": (
        "jupyterlab-language-pack-fr-FR 4.5.post3",
        "BSD-3-Clause",
        "jupyterlab_language_pack_fr_FR/locale/fr_FR/LC_MESSAGES/*.mo",
    ),
    "sphinx": (
        "Sphinx 9.0.4",
        "BSD-2-Clause",
        "sphinx/locale/fr/LC_MESSAGES/sphinx.po",
    ),
    "spyder": ("spyder 6.1.8", "MIT", "spyder/locale/fr/LC_MESSAGES/spyder.po"),
    "trac": ("Trac 1.6", "BSD-3-Clause", "trac/locale/fr/LC_MESSAGES/*.mo"),
    "wagtail": (
        "wagtail 8.0.1",
        "BSD-3-Clause",
        "wagtail/**/locale/fr/LC_MESSAGES/*.po",
    ),
    "wtforms": (
        "WTForms 3.2.2",
        "BSD-3-Clause",
        "wtforms/locale/fr/LC_MESSAGES/wtforms.po",
    ),
}

# Letters, digits, spaces and these marks; anything else drops the message.
_ALLOWED = re.compile(r"[^\W_]|[ .,;:!?'()\-]")
_TOKEN = re.compile(r"[^\W_]+'|[^\W_]+|[^\w\s]")
_SPACES = {"\u00a0": " ", "\u202f": " ", "\u2009": " ", "\u2019": "'"}


def tokenize(text: str) -> list[str]:
    """Lower-cased word and punctuation tokens: ``"L'outil (beta)."`` gives
    ``["l'", "outil", "(", "beta", ")", "."]``."""
    return _TOKEN.findall(text.lower())


def detokenize(tokens: Sequence[str]) -> str:
    """Tokens joined back into readable text (for display; not exact)."""
    text = " ".join(tokens)
    text = re.sub(r"' ", "'", text)
    text = re.sub(r"\( ", "(", text)
    return re.sub(r" ([.,;:!?)])", r"\1", text)


def _clean(text: str) -> str:
    text = unicodedata.normalize("NFC", text)
    for old, new in _SPACES.items():
        text = text.replace(old, new)
    return " ".join(text.split())


def _usable(text: str) -> bool:
    return bool(text) and all(_ALLOWED.fullmatch(c) for c in text)


def _singular(value: Any) -> str:
    # Plural entries hold (singular, plural) ids and one string per form.
    if isinstance(value, (tuple, list)):
        return value[0] if value else ""
    return value or ""


def extract_pairs(
    catalogs: Mapping[str, Iterable[str | Path]],
) -> list[tuple[str, str, str]]:
    """``(french, english, source)`` pairs of gettext catalogs, by the rules of
    this module's docstring.

    Args:
        catalogs: source name -> paths of its French ``.po`` (or ``.mo``)
            files, read in the order given.

    Returns:
        The pairs, in (source, catalog, entry) order, deduplicated on the
        French tokens.
    """
    # Babel is an annzoo dependency; its catalog readers load only here.
    from babel.messages.mofile import read_mo
    from babel.messages.pofile import read_po

    pairs: list[tuple[str, str, str]] = []
    seen: set[tuple[str, ...]] = set()
    for source, paths in catalogs.items():
        for path in paths:
            path = Path(path)
            if path.suffix not in (".po", ".mo"):
                raise AnnzooError(
                    "`catalogs` must list .po or .mo files. "
                    f"Received: {str(path)!r} for source {source!r}"
                )
            with path.open("rb") as stream:
                catalog = read_po(stream) if path.suffix == ".po" else read_mo(stream)
            for message in catalog:
                if not message.id or message.fuzzy:
                    continue
                english = _clean(_singular(message.id))
                french = _clean(_singular(message.string))
                if not (_usable(english) and _usable(french)):
                    continue
                english_tokens, french_tokens = tokenize(english), tokenize(french)
                words = sum(t[0].isalnum() for t in english_tokens)
                if (
                    words < 2
                    or len(english_tokens) > MAX_ENGLISH_TOKENS
                    or len(french_tokens) > MAX_FRENCH_TOKENS
                    or english.lower() == french.lower()
                ):
                    continue
                key = tuple(french_tokens)
                if key not in seen:
                    seen.add(key)
                    pairs.append((french, english, source))
    return pairs


def write_corpus(
    catalogs: Mapping[str, Iterable[str | Path]], path: str | Path | None = None
) -> Path:
    """Writes `extract_pairs` of ``catalogs`` to ``fr_en.tsv`` (maintenance).

    Example, with each package's wheel unpacked under ``wheels/NAME``:

        >>> write_corpus({name: sorted(Path("wheels", name).glob(pattern))
        ...               for name, (_, _, pattern) in SOURCES.items()})
    """
    # Deferred: annzoo.io imports Keras; only this maintenance step writes.
    from annzoo import io as aio

    rows = ["\t".join(_COLUMNS)]
    rows += ["\t".join(pair) for pair in extract_pairs(catalogs)]
    return aio.write_text(CORPUS_FILE if path is None else path, "\n".join(rows) + "\n")


class _Pool(NamedTuple):
    french: tuple[str, ...]
    english: tuple[str, ...]
    sources: tuple[str, ...]
    french_tokens: tuple[tuple[str, ...], ...]
    english_tokens: tuple[tuple[str, ...], ...]


@functools.cache
def _pool() -> _Pool:
    with CORPUS_FILE.open(encoding="utf-8", newline="") as stream:
        rows = list(csv.reader(stream, delimiter="\t", quoting=csv.QUOTE_NONE))
    if not rows or tuple(rows[0]) != _COLUMNS:
        raise AnnzooError(
            f"{CORPUS_FILE} must start with the header row {list(_COLUMNS)}; "
            "reinstall annzoo."
        )
    french, english, sources = zip(*rows[1:], strict=True)
    return _Pool(
        french,
        english,
        sources,
        tuple(tuple(tokenize(s)) for s in french),
        tuple(tuple(tokenize(s)) for s in english),
    )


def raw_pairs() -> tuple[tuple[str, str, str], ...]:
    """Every ``(french, english, source)`` pair as written in ``fr_en.tsv``.

    Row ``i`` is the example that `load` returns where ``indices`` holds ``i``.
    """
    pool = _pool()
    return tuple(zip(pool.french, pool.english, pool.sources, strict=True))


def _frozen(array: np.ndarray) -> np.ndarray:
    array.setflags(write=False)
    return array


@functools.lru_cache(maxsize=16)
def _arrays(seed: int) -> tuple[Vocabulary, Vocabulary, np.ndarray, np.ndarray]:
    """The train-split vocabularies of ``seed`` and every pair's ids."""
    pool = _pool()
    train = split_indices(len(pool.french), seed)["train"]
    vocabulary = Vocabulary.build(
        (pool.french_tokens[i] for i in train), specials=INPUT_SPECIALS
    )
    target_vocabulary = Vocabulary.build(
        (pool.english_tokens[i] for i in train), specials=SEQUENCE_SPECIALS
    )
    x = vocabulary.encode_batch(pool.french_tokens, length=MAX_FRENCH_TOKENS)
    y = target_vocabulary.encode_batch(
        pool.english_tokens, length=MAX_ENGLISH_TOKENS + 1, end=True
    )
    return vocabulary, target_vocabulary, _frozen(x), _frozen(y)


def _load(name: str, split: str, seed: int) -> ArrayDataset:
    vocabulary, target_vocabulary, x, y = _arrays(seed)
    rows = split_indices(len(x), seed)[split]
    # Fancy indexing copies, so the cached arrays are never handed out.
    return ArrayDataset(
        x=x[rows],
        y=y[rows],
        name=name,
        split=split,
        seed=seed,
        indices=rows,
        task="sequence",
        num_classes=None,
        class_names=None,
        feature_names=None,
        structure="sequence",
        vocabulary=vocabulary,
        target_vocabulary=target_vocabulary,
    )


def _info(name: str) -> dict[str, Any]:
    pool = _pool()
    counts: dict[str, int] = {}
    for source in pool.sources:
        counts[source] = counts.get(source, 0) + 1
    return {
        "task": "sequence",
        "num_classes": None,
        "input_shape": (MAX_FRENCH_TOKENS,),
        "class_names": None,
        "num_samples": split_sizes(len(pool.french)),
        "target_length": MAX_ENGLISH_TOKENS + 1,
        "sources": {
            source: {"package": package, "license": licence, "pairs": counts[source]}
            for source, (package, licence, _) in SOURCES.items()
        },
        "source": (
            "the French gettext catalogs of ten packages of the Python Package "
            "Index (see 'sources'); notices in annzoo/datasets/fr_en_NOTICE.txt"
        ),
        "description": (
            "Short French interface messages (x, up to "
            f"{MAX_FRENCH_TOKENS} word ids) and the English messages they "
            f"translate (y, up to {MAX_ENGLISH_TOKENS} word ids then <end>), "
            "lower-cased, punctuation as tokens, padded with 0; the "
            "vocabularies are built from the train split of the given seed, so "
            "they depend on the seed and unseen words map to <unk>. Messages "
            "with placeholders, markup or quotes are left out, and the French "
            "side is deduplicated (annzoo.datasets.parallel)."
        ),
    }


register_dataset(NAME, _load, info=_info)

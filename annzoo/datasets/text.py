"""Three small text datasets generated from Faker and Babel data, without network.

Registered under:

- ``"surnames"``: real surnames from Faker's locale data, labelled with their
  language (14 classes); ``x`` holds character ids.
- ``"dates"``: dates written out by Babel in 8 locales and several formats,
  paired with their ISO ``YYYY-MM-DD`` form, for sequence-to-sequence models.
- ``"ner"``: templated English sentences filled with Faker values and tagged
  with BIO tags for PER, ORG, LOC, DATE and MISC.

Each dataset is a fixed pool of examples built once per process with a fixed
internal seed (it changes only with the installed Faker or Babel data); the
``seed`` of `annzoo.datasets.load` draws the 70/15/15 partition of that pool, as
for the embedded datasets, and every `load` returns new arrays. Token ids follow
`annzoo.text`: padding is id 0 at the end of a row, ``x`` uses a `Vocabulary`
with ``INPUT_SPECIALS`` and sequence targets one with ``SEQUENCE_SPECIALS``.
`raw_examples` gives the pool as Python strings.
"""

from __future__ import annotations

import datetime
import functools
import importlib
import unicodedata
from typing import Any, NamedTuple

import numpy as np

from annzoo._checks import check_choice
from annzoo.datasets import _ner_templates as ner_templates
from annzoo.datasets._base import ArrayDataset, register_dataset
from annzoo.datasets._split import split_indices, split_sizes
from annzoo.text import INPUT_SPECIALS, SEQUENCE_SPECIALS, Vocabulary

__all__ = ["raw_examples"]

_POOL_SEED = 20240607

# ----------------------------------------------------------------- surnames --

# Language -> the Faker person locales whose surnames it takes.
SURNAME_LOCALES: dict[str, tuple[str, ...]] = {
    "Croatian": ("hr_HR",),
    "Czech": ("cs_CZ",),
    "Dutch": ("nl_NL",),
    "English": ("en", "en_GB", "en_US"),
    "Finnish": ("fi_FI",),
    "French": ("fr_CA", "fr_FR"),
    "German": ("de_AT", "de_CH", "de_DE"),
    "Irish": ("ga_IE",),
    "Italian": ("it_IT",),
    "Polish": ("pl_PL",),
    "Portuguese": ("pt_BR", "pt_PT"),
    "Slovak": ("sk_SK",),
    "Spanish": ("es_ES",),
    "Swedish": ("sv_SE",),
}
# Provider attributes that hold surnames (pl_PL keeps its own in the last two).
SURNAME_ATTRIBUTES = (
    "last_names",
    "last_names_male",
    "last_names_female",
    "male_last_names",
    "unisex_last_names",
)
_SURNAME_MAX_LEN = 20
_SURNAME_PUNCTUATION = frozenset(" '-")
# Keep classes within ~10x of each other: Polish alone has ~3,800 names.
_SURNAMES_PER_LANGUAGE = 1000


class _Surnames(NamedTuple):
    names: tuple[str, ...]
    x: np.ndarray
    y: np.ndarray
    vocabulary: Vocabulary
    dropped: dict[str, int]


def _faker_surnames(locale: str) -> set[str]:
    base = importlib.import_module("faker.providers.person").Provider
    provider = importlib.import_module(f"faker.providers.person.{locale}").Provider
    names: set[str] = set()
    for attribute in SURNAME_ATTRIBUTES:
        values = getattr(provider, attribute, None)
        # Skip the generic provider's placeholder list (("Doe",) for pl_PL).
        if values and values is not getattr(base, attribute, None):
            names.update(values)  # an OrderedDict of weights gives its keys
    return names


@functools.cache
def _surnames() -> _Surnames:
    # Distinct names dropped by each rule, in this order.
    bad_characters: set[str] = set()  # e.g. "Bourgondië, van"
    too_long: set[str] = set()
    by_language: dict[str, set[str]] = {}
    for language, locales in SURNAME_LOCALES.items():
        kept = set()
        for name in set().union(*map(_faker_surnames, locales)):
            name = unicodedata.normalize("NFC", name)
            if not all(c.isalpha() or c in _SURNAME_PUNCTUATION for c in name):
                bad_characters.add(name)
            elif len(name) > _SURNAME_MAX_LEN:
                too_long.add(name)
            else:
                kept.add(name)
        by_language[language] = kept
    seen: dict[str, int] = {}
    for kept in by_language.values():
        for name in kept:
            seen[name] = seen.get(name, 0) + 1
    dropped = {
        "bad_characters": len(bad_characters),
        "too_long": len(too_long),
        "several_languages": sum(count > 1 for count in seen.values()),
        "over_cap": 0,
    }
    rng = np.random.default_rng(_POOL_SEED)
    names: list[str] = []
    labels: list[int] = []
    for label, language in enumerate(sorted(by_language)):
        unique = sorted(n for n in by_language[language] if seen[n] == 1)
        if len(unique) > _SURNAMES_PER_LANGUAGE:
            dropped["over_cap"] += len(unique) - _SURNAMES_PER_LANGUAGE
            keep = rng.choice(len(unique), _SURNAMES_PER_LANGUAGE, replace=False)
            unique = [unique[i] for i in sorted(keep)]
        names.extend(unique)
        labels.extend([label] * len(unique))
    vocabulary = Vocabulary.build(names, specials=INPUT_SPECIALS)
    length = max(map(len, names))
    x = vocabulary.encode_batch(names, length=length)
    y = np.asarray(labels, dtype=np.int32)
    return _Surnames(tuple(names), _frozen(x), _frozen(y), vocabulary, dropped)


# -------------------------------------------------------------------- dates --

DATE_LOCALES: tuple[str, ...] = (
    "en_US",
    "en_GB",
    "fr_FR",
    "de_DE",
    "es_ES",
    "it_IT",
    "pt_PT",
    "nl_NL",
)
DATE_FORMATS: tuple[str, ...] = ("medium", "long", "full", "d MMMM y", "MMM d, y")
# Numeric-only renderings ("04.03.2021", "04/03/2021") read differently across
# locales, so these two are left out.
_NUMERIC = frozenset({("de_DE", "medium"), ("pt_PT", "medium")})
_DATE_STYLES = tuple(
    (locale, pattern)
    for locale in DATE_LOCALES
    for pattern in DATE_FORMATS
    if (locale, pattern) not in _NUMERIC
)
_FIRST_DAY = datetime.date(1950, 1, 1)
_LAST_DAY = datetime.date(2049, 12, 31)
_NUM_DATES = 10_000
_TARGET_LENGTH = 11  # "YYYY-MM-DD" and "<end>"


class _Dates(NamedTuple):
    sources: tuple[str, ...]
    targets: tuple[str, ...]
    x: np.ndarray
    y: np.ndarray
    vocabulary: Vocabulary
    target_vocabulary: Vocabulary


@functools.cache
def _dates() -> _Dates:
    # Babel's locale data loads only when a text dataset is generated.
    from babel import Locale
    from babel.dates import format_date

    locales = {code: Locale.parse(code) for code in DATE_LOCALES}
    rng = np.random.default_rng(_POOL_SEED)
    first, last = _FIRST_DAY.toordinal(), _LAST_DAY.toordinal()
    pairs: dict[str, str] = {}
    while len(pairs) < _NUM_DATES:
        days = rng.integers(first, last + 1, size=_NUM_DATES)
        styles = rng.integers(0, len(_DATE_STYLES), size=_NUM_DATES)
        for day, style in zip(days.tolist(), styles.tolist(), strict=True):
            date = datetime.date.fromordinal(day)
            locale, pattern = _DATE_STYLES[style]
            source = format_date(date, format=pattern, locale=locales[locale])
            # A repeated source string keeps its first target (the same date:
            # no two dates share a rendering in these locales and formats).
            pairs.setdefault(source, date.isoformat())
            if len(pairs) == _NUM_DATES:
                break
    sources, targets = tuple(pairs), tuple(pairs.values())
    vocabulary = Vocabulary.build(sources, specials=INPUT_SPECIALS)
    target_vocabulary = Vocabulary.build(targets, specials=SEQUENCE_SPECIALS)
    x = vocabulary.encode_batch(sources, length=max(map(len, sources)))
    y = target_vocabulary.encode_batch(targets, length=_TARGET_LENGTH, end=True)
    return _Dates(
        sources, targets, _frozen(x), _frozen(y), vocabulary, target_vocabulary
    )


# ---------------------------------------------------------------------- ner --

_NUM_SENTENCES = 4000


class _Ner(NamedTuple):
    words: tuple[tuple[str, ...], ...]
    tags: tuple[tuple[str, ...], ...]
    y: np.ndarray
    length: int


@functools.cache
def _ner() -> _Ner:
    pairs = ner_templates.generate(_NUM_SENTENCES, _POOL_SEED)
    words = tuple(w for w, _ in pairs)
    tags = tuple(t for _, t in pairs)
    length = max(map(len, words))
    tag_ids = {tag: i for i, tag in enumerate(ner_templates.TAGS)}
    y = np.full((len(words), length), -1, dtype=np.int32)  # -1: the CRF's padding
    for row, sentence_tags in enumerate(tags):
        y[row, : len(sentence_tags)] = [tag_ids[t] for t in sentence_tags]
    return _Ner(words, tags, _frozen(y), length)


@functools.lru_cache(maxsize=16)
def _ner_inputs(seed: int) -> tuple[Vocabulary, np.ndarray]:
    """The train-split vocabulary of ``seed`` and every sentence's word ids."""
    pool = _ner()
    train = split_indices(len(pool.words), seed)["train"]
    vocabulary = Vocabulary.build(
        (pool.words[i] for i in train), specials=INPUT_SPECIALS
    )
    return vocabulary, _frozen(vocabulary.encode_batch(pool.words, length=pool.length))


# ------------------------------------------------------------------ loading --


def _frozen(array: np.ndarray) -> np.ndarray:
    array.setflags(write=False)
    return array


def _load(name: str, split: str, seed: int) -> ArrayDataset:
    common: dict[str, Any] = {"feature_names": None}
    if name == "surnames":
        pool = _surnames()
        rows = split_indices(len(pool.y), seed, labels=pool.y)[split]
        x, y = pool.x[rows], pool.y[rows]
        common.update(
            task="multiclass",
            num_classes=len(SURNAME_LOCALES),
            class_names=tuple(sorted(SURNAME_LOCALES)),
            structure="sample",
            vocabulary=pool.vocabulary,
        )
    elif name == "dates":
        pool = _dates()
        rows = split_indices(len(pool.y), seed)[split]
        x, y = pool.x[rows], pool.y[rows]
        common.update(
            task="sequence",
            num_classes=None,
            class_names=None,
            structure="sequence",
            vocabulary=pool.vocabulary,
            target_vocabulary=pool.target_vocabulary,
        )
    else:
        pool = _ner()
        vocabulary, x_all = _ner_inputs(seed)
        rows = split_indices(len(pool.y), seed)[split]
        x, y = x_all[rows], pool.y[rows]
        common.update(
            task="tagging",
            num_classes=len(ner_templates.TAGS),
            class_names=ner_templates.TAGS,
            structure="tagging",
            vocabulary=vocabulary,
        )
    # Fancy indexing copies, so the cached pool is never handed out.
    return ArrayDataset(
        x=x, y=y, name=name, split=split, seed=seed, indices=rows, **common
    )


def _info(name: str) -> dict[str, Any]:
    if name == "surnames":
        pool = _surnames()
        return {
            "task": "multiclass",
            "num_classes": len(SURNAME_LOCALES),
            "input_shape": pool.x.shape[1:],
            "class_names": tuple(sorted(SURNAME_LOCALES)),
            "num_samples": split_sizes(len(pool.y)),
            "vocabulary_size": len(pool.vocabulary),
            "locales": dict(SURNAME_LOCALES),
            "dropped": dict(pool.dropped),
            "source": (
                "Faker locale data: faker.providers.person.<locale>.Provider "
                f"attributes {', '.join(SURNAME_ATTRIBUTES)}"
            ),
            "description": (
                "Surnames labelled with their language, one of "
                f"{len(SURNAME_LOCALES)} (see 'locales'); x: int32 character ids "
                "padded with 0 at the end, vocabulary.decode(row) gives the name "
                "back. Names are NFC-normalized and deduplicated per language; "
                "dropped: names with characters other than letters, space, "
                f"apostrophe and hyphen, names longer than {_SURNAME_MAX_LEN} "
                "characters, every name found in two languages, and, past "
                f"{_SURNAMES_PER_LANGUAGE} names in one language, a fixed random "
                "subset (counts in 'dropped'). Split stratified by language."
            ),
        }
    if name == "dates":
        pool = _dates()
        return {
            "task": "sequence",
            "num_classes": None,
            "input_shape": pool.x.shape[1:],
            "class_names": None,
            "num_samples": split_sizes(len(pool.y)),
            "vocabulary_size": len(pool.vocabulary),
            "target_vocabulary_size": len(pool.target_vocabulary),
            "locales": DATE_LOCALES,
            "formats": DATE_FORMATS,
            "excluded": tuple(sorted(_NUMERIC)),
            "source": "Babel CLDR data: babel.dates.format_date",
            "description": (
                f"Dates from {_FIRST_DAY} to {_LAST_DAY} written by Babel "
                "(e.g. 'jeudi 4 mars 2021', 'Mar 4, 2021') in the listed locales "
                "and formats, except the numeric-only ones in 'excluded'; "
                "distinct source strings. x: int32 character ids padded with 0; "
                "y: int32 ids of the 10 ISO characters YYYY-MM-DD then <end> "
                "(target_vocabulary, SEQUENCE_SPECIALS)."
            ),
        }
    pool = _ner()
    return {
        "task": "tagging",
        "num_classes": len(ner_templates.TAGS),
        "input_shape": (pool.length,),
        "class_names": ner_templates.TAGS,
        "num_samples": split_sizes(len(pool.y)),
        "num_templates": len(ner_templates.TEMPLATES),
        "source": (
            "Faker locale data (person, company, address, currency, language "
            "names) and Babel dates, filled into annzoo's sentence templates"
        ),
        "description": (
            "Templated English sentences with BIO tags for PER, ORG, LOC "
            "(countries, US states, real cities of "
            f"{', '.join(ner_templates.LOCATION_LOCALES)}), DATE (Babel en_US/"
            "en_GB 'long' and en_US 'full') and MISC (languages, currencies). "
            "x: int32 word ids padded with 0, case kept, commas split off; the "
            "vocabulary is built from the train split of the given seed, so it "
            "depends on the seed and unseen words map to <unk>. y: int32 tag "
            "ids, padded with -1."
        ),
    }


def raw_examples(name: str) -> tuple[tuple[Any, Any], ...]:
    """The pool of a text dataset as Python values, in source row order.

    Row ``i`` is the example that `load` returns where ``indices`` holds ``i``.

    Args:
        name: ``"surnames"``, ``"dates"`` or ``"ner"``.

    Returns:
        ``(surname, language)`` pairs, ``(source, iso_date)`` pairs, or
        ``(words, tags)`` pairs of tuples of strings.
    """
    name = check_choice("name", name, ("surnames", "dates", "ner"))
    if name == "surnames":
        pool = _surnames()
        classes = sorted(SURNAME_LOCALES)
        return tuple(zip(pool.names, (classes[i] for i in pool.y), strict=True))
    if name == "dates":
        pool = _dates()
        return tuple(zip(pool.sources, pool.targets, strict=True))
    pool = _ner()
    return tuple(zip(pool.words, pool.tags, strict=True))


for _name in ("surnames", "dates", "ner"):
    register_dataset(_name, _load, info=_info)

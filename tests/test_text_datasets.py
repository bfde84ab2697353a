"""Tests of the text datasets "surnames", "dates" and "ner" (annzoo.datasets.text).

Expectations come from Faker's and Babel's own data, from ``datetime`` parsing
and from the BIO rules, never from annzoo's helpers: the only module function
used is ``raw_examples``, to get the words that ``x`` encodes.
"""

from __future__ import annotations

import datetime
import hashlib
import importlib
import pkgutil
import re
import unicodedata

import numpy as np
import pytest
from babel.dates import format_date

from annzoo import datasets
from annzoo.datasets.text import raw_examples
from annzoo.errors import AnnzooError, UnknownNameError
from tests.conftest import run_python

SPLITS = ("train", "validation", "test")
NAMES = ("surnames", "dates", "ner")
# The locales and formats the "dates" dataset promises (numeric ones excluded).
DATE_LOCALES = ("en_US", "en_GB", "fr_FR", "de_DE", "es_ES", "it_IT", "pt_PT", "nl_NL")
DATE_FORMATS = ("medium", "long", "full", "d MMMM y", "MMM d, y")
ENTITY_TYPES = ("PER", "ORG", "LOC", "DATE", "MISC")


def _splits(name, seed=0):
    return {s: datasets.load(name, s, seed=seed) for s in SPLITS}


def _surname_module_names():
    import faker.providers.person as person

    return [m.name for m in pkgutil.iter_modules(person.__path__)]


def _faker_lists(kind, locale, word):
    """Every list/tuple/dict attribute of a Faker provider whose name has ``word``."""
    provider = importlib.import_module(f"faker.providers.{kind}.{locale}").Provider
    values = set()
    for attribute in dir(provider):
        value = getattr(provider, attribute)
        if word in attribute and isinstance(value, tuple | list | dict):
            values.update(v for v in value if isinstance(v, str))
    return {unicodedata.normalize("NFC", v) for v in values}


def _prefix_mask(mask):
    """True where ``mask`` is a run of True followed only by False, per row."""
    ends = mask.sum(axis=1)
    return np.array_equal(mask, np.arange(mask.shape[1]) < ends[:, None])


# ----------------------------------------------------------------- generic --


def test_registered_and_info_matches_loaded_arrays():
    for name in NAMES:
        assert name in datasets.list_datasets()
        info = datasets.dataset_info(name)
        parts = _splits(name)
        assert info["num_samples"] == {s: len(parts[s]) for s in SPLITS}
        assert tuple(info["input_shape"]) == parts["train"].input_shape
        assert info["task"] == parts["train"].task
        assert info["num_classes"] == parts["train"].num_classes
        assert info["class_names"] == parts["train"].class_names
        assert info["source"] and info["description"]


@pytest.mark.parametrize("name", NAMES)
def test_shapes_dtypes_and_split_sizes(name):
    parts = _splits(name, seed=2)
    total = sum(len(ds) for ds in parts.values())
    if name == "dates":
        assert total == 10_000
    if name == "ner":
        assert total == 4000
    # 15% rounded to nearest for validation and test, the rest for train.
    assert len(parts["validation"]) == len(parts["test"]) == round(0.15 * total)
    for ds in parts.values():
        assert ds.x.dtype == np.int32 and ds.y.dtype == np.int32
        assert ds.x.ndim == 2 and ds.indices.shape == (len(ds),)
        assert ds.feature_names is None and ds.vocabulary is not None
        assert ds.x.min() >= 0 and ds.x.max() < len(ds.vocabulary)
        # Padding (id 0) only at the end of each row, every row non-empty.
        assert _prefix_mask(ds.x != 0) and (ds.x[:, 0] != 0).all()


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("seed", [0, 3])
def test_splits_are_disjoint_and_cover_the_pool(name, seed):
    parts = _splits(name, seed)
    total = len(raw_examples(name))
    indices = [set(parts[s].indices.tolist()) for s in SPLITS]
    assert sum(map(len, indices)) == total
    assert set.union(*indices) == set(range(total))


@pytest.mark.parametrize("name", NAMES)
def test_same_seed_identical_different_seed_different(name):
    for split in SPLITS:
        a = datasets.load(name, split, seed=7)
        b = datasets.load(name, split, seed=7)
        for field in ("x", "y", "indices"):
            np.testing.assert_array_equal(getattr(a, field), getattr(b, field))
        # New arrays on every load: writing to one leaves the next load intact.
        assert a.x is not b.x and not np.shares_memory(a.x, b.x)
        a.x[...] = 0
        a.y[...] = 0
        c = datasets.load(name, split, seed=7)
        np.testing.assert_array_equal(c.x, b.x)
        np.testing.assert_array_equal(c.y, b.y)
    a = datasets.load(name, "test", seed=0)
    b = datasets.load(name, "test", seed=1)
    assert set(a.indices.tolist()) != set(b.indices.tolist())


def test_errors_name_the_argument():
    with pytest.raises(UnknownNameError, match="split"):
        datasets.load("surnames", "dev")
    with pytest.raises(AnnzooError, match="seed"):
        datasets.load("dates", "train", seed=-1)
    with pytest.raises(AnnzooError, match="option"):
        datasets.load("ner", "train", data_dir="/tmp")
    with pytest.raises(UnknownNameError, match="name"):
        raw_examples("names")


@pytest.mark.slow
def test_pools_are_identical_in_a_fresh_process():
    code = (
        "import hashlib, numpy as np\n"
        "from annzoo import datasets\n"
        "h = hashlib.sha256()\n"
        "for name in ('surnames', 'dates', 'ner'):\n"
        "    ds = datasets.load(name, 'validation', seed=5)\n"
        "    for a in (ds.x, ds.y, ds.indices):\n"
        "        h.update(np.ascontiguousarray(a).tobytes())\n"
        "    h.update(repr(ds.vocabulary.tokens).encode())\n"
        "print(h.hexdigest())\n"
    )
    h = hashlib.sha256()
    for name in NAMES:
        ds = datasets.load(name, "validation", seed=5)
        for a in (ds.x, ds.y, ds.indices):
            h.update(np.ascontiguousarray(a).tobytes())
        h.update(repr(ds.vocabulary.tokens).encode())
    # Another hash seed: set iteration order must not leak into the pools.
    result = run_python("-c", code, timeout=300, PYTHONHASHSEED="123")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == h.hexdigest()


# ---------------------------------------------------------------- surnames --


def test_surnames_classes_and_stratified_split():
    parts = _splits("surnames", seed=4)
    train = parts["train"]
    assert train.task == "multiclass" and train.structure == "sample"
    assert train.num_classes == len(train.class_names) >= 8
    assert list(train.class_names) == sorted(train.class_names)
    assert {"English", "French", "German", "Italian", "Spanish"} <= set(
        train.class_names
    )
    labels = np.concatenate([parts[s].y for s in SPLITS])
    counts = np.bincount(labels, minlength=train.num_classes)
    assert (counts > 0).all()
    total = counts.sum()
    for split in SPLITS:
        share = np.bincount(parts[split].y, minlength=len(counts))
        exact = counts * len(parts[split]) / total
        assert (share >= np.floor(exact)).all() and (share <= np.ceil(exact)).all()


def test_surnames_decode_to_faker_names_of_one_language_only():
    info = datasets.dataset_info("surnames")
    locales = info["locales"]
    assert set(locales) == set(info["class_names"])
    available = set(_surname_module_names())
    faker_names = {
        language: set().union(
            *(_faker_lists("person", loc, "last_name") for loc in codes)
        )
        for language, codes in locales.items()
    }
    assert all(set(codes) <= available for codes in locales.values())
    seen = {}
    for ds in _splits("surnames", seed=1).values():
        for row, label in zip(ds.x, ds.y, strict=True):
            name = ds.vocabulary.decode(row)
            language = ds.class_names[label]
            assert name in faker_names[language], (name, language)
            assert seen.setdefault(name, language) == language, name
    # A name listed for two languages is dropped from both.
    for name, language in seen.items():
        others = [lang for lang in faker_names if lang != language]
        assert not any(name in faker_names[lang] for lang in others), name
    assert len(seen) == sum(info["num_samples"].values())
    assert all(len(name) <= info["input_shape"][0] for name in seen)


# ------------------------------------------------------------------- dates --


def test_dates_targets_are_iso_dates_rendered_by_babel():
    ds = datasets.load("dates", "validation", seed=0)
    assert ds.task == "sequence" and ds.structure == "sequence"
    assert ds.num_classes is None and ds.class_names is None
    target_vocab = ds.target_vocabulary
    assert target_vocab.tokens[:4] == ("<pad>", "<start>", "<end>", "<unk>")
    assert ds.num_outputs == len(target_vocab)
    assert ds.y.shape == (len(ds), 11)
    # Ten ISO characters then "<end>" (there is no room for more padding).
    assert (ds.y[:, 10] == target_vocab.end_id).all()
    assert (ds.y[:, :10] > 3).all()
    for row in range(0, len(ds), 7):
        source = ds.vocabulary.decode(ds.x[row])
        iso = target_vocab.decode(ds.y[row])
        date = datetime.date.fromisoformat(iso)
        assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", iso)
        assert datetime.date(1950, 1, 1) <= date <= datetime.date(2049, 12, 31)
        renderings = {
            format_date(date, format=f, locale=loc)
            for loc in DATE_LOCALES
            for f in DATE_FORMATS
        }
        assert source in renderings, (source, iso)
        assert re.search(r"[^\W\d_]", source), source  # never numeric-only


def test_dates_parse_independently_with_strptime():
    checked = 0
    for ds in _splits("dates", seed=0).values():
        for x_row, y_row in zip(ds.x, ds.y, strict=True):
            source = ds.vocabulary.decode(x_row)
            # en_US "long" ("March 4, 2021") and en_GB "long" ("4 March 2021").
            for pattern in ("%B %d, %Y", "%d %B %Y"):
                try:
                    parsed = datetime.datetime.strptime(source, pattern).date()
                except ValueError:
                    continue
                assert parsed.isoformat() == ds.target_vocabulary.decode(y_row)
                checked += 1
    assert checked > 200


def test_dates_pool_has_distinct_sources_and_many_styles():
    pairs = raw_examples("dates")
    sources = [s for s, _ in pairs]
    assert len(set(sources)) == len(sources) == 10_000
    languages = {
        "March": "en",
        "mars": "fr",
        "März": "de",
        "marzo": "es/it",
        "março": "pt",
        "maart": "nl",
    }
    words = {w for s in sources for w in s.replace(",", " ").split()}
    assert set(languages) <= words


# --------------------------------------------------------------------- ner --


def _spans(tags):
    """``(type, start, end)`` of the entities of a BIO tag sequence."""
    spans = []
    for i, tag in enumerate(tags):
        if tag.startswith("B-"):
            spans.append([tag[2:], i, i + 1])
        elif tag.startswith("I-"):
            spans[-1][2] = i + 1
    return spans


def test_ner_tags_are_valid_bio_and_align_with_words():
    ds = datasets.load("ner", "train", seed=0)
    assert ds.task == "tagging" and ds.structure == "tagging"
    names = ds.class_names
    assert names[0] == "O" and ds.num_classes == len(names) == 11
    assert set(names[1:]) == {f"{p}-{t}" for t in ENTITY_TYPES for p in "BI"}
    assert ds.y.min() == -1 and ds.y.max() == len(names) - 1
    # One tag per word: the -1 padding of y lines up with the 0 padding of x.
    np.testing.assert_array_equal(ds.x != 0, ds.y != -1)
    assert _prefix_mask(ds.y != -1)
    seen_types = set()
    for row in ds.y:
        previous = "O"
        for tag in (names[t] for t in row if t != -1):
            if tag.startswith("I-"):
                assert previous in (f"B-{tag[2:]}", tag), (previous, tag)
            previous = tag
            seen_types.add(tag[2:] if tag != "O" else tag)
    assert seen_types == {"O", *ENTITY_TYPES}


def _faker_values():
    """Values an entity of each type may take, read from Faker's data."""
    import faker.providers.address as address
    import faker.providers.company as company
    import faker.providers.person as person

    last_names = set()
    for module in pkgutil.iter_modules(person.__path__):
        last_names |= _faker_lists("person", module.name, "last_name")
    places = _faker_lists("address", "en_US", "countr")
    places |= _faker_lists("address", "en_US", "states")
    for module in pkgutil.iter_modules(address.__path__):
        places |= _faker_lists("address", module.name, "cities")
    misc = _faker_lists("person", "en_US", "language_names")
    currency = importlib.import_module("faker.providers.currency").Provider
    misc |= {name for _, name in currency.currencies}
    companies = set()
    for module in pkgutil.iter_modules(company.__path__):
        for word in ("compan", "suffix"):
            companies |= _faker_lists("company", module.name, word)
    return last_names, places, misc, companies - {""}


def test_ner_entities_are_the_faker_values_inserted():
    last_names, places, misc, companies = _faker_values()
    raw = raw_examples("ner")
    ds = datasets.load("ner", "validation", seed=0)
    checked = dict.fromkeys(ENTITY_TYPES, 0)
    for row, index in zip(ds.y, ds.indices, strict=True):
        words, raw_tags = raw[index]
        tags = [ds.class_names[t] for t in row if t != -1]
        assert tags == list(raw_tags)
        for kind, start, end in _spans(tags):
            text = " ".join(words[start:end]).replace(" ,", ",")
            if kind == "PER":
                # "First Last" or "Last"; surnames may have several words.
                tail = [" ".join(words[k:end]) for k in range(start, end)]
                assert any(t in last_names for t in tail), text
            elif kind == "LOC":
                assert text in places, text
            elif kind == "MISC":
                assert text in misc, text
            elif kind == "DATE":
                parsed = None
                for pattern in ("%B %d, %Y", "%d %B %Y", "%A, %B %d, %Y"):
                    try:
                        parsed = datetime.datetime.strptime(text, pattern)
                    except ValueError:
                        continue
                assert parsed is not None, text
            else:  # ORG: Faker builds company names from surnames and suffixes.
                pieces = re.split(r"[\s,-]+", " ".join(words[start:end]))
                runs = {
                    " ".join(pieces[i:j])
                    for i in range(len(pieces))
                    for j in range(i + 1, len(pieces) + 1)
                }
                assert runs & (last_names | companies), text
            checked[kind] += 1
    assert min(checked.values()) > 20, checked


def test_ner_vocabulary_comes_from_the_train_split_of_the_seed():
    raw = raw_examples("ner")
    parts = _splits("ner", seed=0)
    vocab = parts["train"].vocabulary
    assert parts["test"].vocabulary == vocab == parts["validation"].vocabulary
    assert datasets.load("ner", "test").vocabulary == vocab  # seed 0 by default
    train_words = {w for i in parts["train"].indices for w in raw[i][0]}
    assert vocab.tokens[:2] == ("<pad>", "<unk>")
    assert set(vocab.tokens[2:]) == train_words
    assert any(w != w.lower() for w in train_words)  # case is kept
    unknown = 0
    test = parts["test"]
    for x_row, index in zip(test.x, test.indices, strict=True):
        words = raw[index][0]
        for word, token_id in zip(words, x_row, strict=False):
            if word in train_words:
                assert vocab.tokens[token_id] == word
            else:
                assert token_id == vocab.unk_id == 1, word
                unknown += 1
    assert unknown > 0
    other = datasets.load("ner", "test", seed=1)
    assert other.vocabulary != vocab

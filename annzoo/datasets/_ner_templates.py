"""Sentence templates and Faker-drawn entity values of the ``"ner"`` dataset.

A template is English text whose tokens are separated by single spaces
(punctuation included) and whose slots are ``{PER}``, ``{ORG}``, ``{LOC}``,
``{DATE}``, ``{LANG}`` and ``{CUR}``; languages and currencies are both tagged
``MISC``, as in CoNLL-2003. `generate` fills slots with values drawn from
Faker's locale data and tags the words with BIO tags.
"""

from __future__ import annotations

import datetime
import functools
import importlib
import random
import re

__all__ = ["ENTITY_TYPES", "TAGS", "TEMPLATES", "LOCATION_LOCALES", "generate"]

ENTITY_TYPES: tuple[str, ...] = ("PER", "ORG", "LOC", "DATE", "MISC")
# "O" is id 0, then B-/I- per type: the order of ArrayDataset.class_names.
TAGS: tuple[str, ...] = ("O",) + tuple(
    f"{prefix}-{kind}" for kind in ENTITY_TYPES for prefix in ("B", "I")
)
_SLOT_TYPES = {
    "PER": "PER",
    "ORG": "ORG",
    "LOC": "LOC",
    "DATE": "DATE",
    "LANG": "MISC",
    "CUR": "MISC",
}

TEMPLATES: tuple[str, ...] = (
    "{PER} joined {ORG} in {LOC} on {DATE} .",
    "{ORG} opened a new office in {LOC} .",
    "On {DATE} , {PER} flew from {LOC} to {LOC} .",
    "Did {PER} really leave {ORG} on {DATE} ?",
    "{PER} and {PER} met in {LOC} last week .",
    "{PER} speaks {LANG} and {LANG} fluently .",
    "The contract with {ORG} is paid in {CUR} .",
    "Where was {PER} born ?",
    "{ORG} hired {PER} as its new chief executive .",
    "According to {PER} , {ORG} will move to {LOC} by {DATE} .",
    "Prices in {LOC} are quoted in {CUR} .",
    "Is the {LANG} translation ready for {ORG} ?",
    "{PER} was born in {LOC} on {DATE} .",
    "The meeting between {ORG} and {ORG} took place on {DATE} .",
    "Why did {ORG} stop accepting {CUR} in {LOC} ?",
    "{PER} , who works for {ORG} , visited {LOC} .",
    "Nobody at {ORG} speaks {LANG} .",
    "{LOC} and {LOC} signed a trade agreement on {DATE} .",
    "Send the report to {PER} before {DATE} .",
    "Our team in {LOC} reports to {PER} .",
    "How many employees does {ORG} have in {LOC} ?",
    "The invoice from {ORG} is dated {DATE} .",
    "{PER} translated the book from {LANG} into {LANG} .",
    "The exhibition opens on {DATE} .",
    "I met {PER} at the {ORG} headquarters .",
    "Thank you , {PER} !",
    "We have no plans to visit {LOC} .",
    "Shares of {ORG} rose after {PER} resigned on {DATE} .",
    "{PER} exchanged dollars for {CUR} at the airport in {LOC} .",
    "Is {LOC} closer to {LOC} than to {LOC} ?",
)

# Faker locales whose address data lists real city names.
LOCATION_LOCALES: tuple[str, ...] = (
    "de_DE",
    "fi_FI",
    "nl_NL",
    "pl_PL",
    "pt_PT",
    "sv_SE",
)
# Locales of person names (en_US twice as often) and of company names.
_PERSON_LOCALES = ("en_US", "en_US", "de_DE", "fr_FR", "es_ES", "it_IT", "nl_NL")
_COMPANY_LOCALES = ("en_US", "en_US", "en_US", "de_DE", "fr_FR", "nl_NL")
# Babel patterns of DATE values: "March 4, 2021", "4 March 2021",
# "Thursday, March 4, 2021".
_DATE_FORMATS = (("en_US", "long"), ("en_GB", "long"), ("en_US", "full"))
_FIRST_DAY = datetime.date(1950, 1, 1).toordinal()
_LAST_DAY = datetime.date(2049, 12, 31).toordinal()
# Words, with a comma split off as its own token ("Smith, Jones and Lee").
_TOKEN = re.compile(r"[^\s,]+|,")
# Countries such as "Cocos (Keeling) Islands" are left out: no brackets or "&".
_PLAIN = re.compile(r"[^\W\d_]+(?:[ '-][^\W\d_]+)*")


def _plain(values) -> tuple[str, ...]:
    return tuple(sorted({v for v in values if _PLAIN.fullmatch(v)}))


@functools.cache
def _locations() -> tuple[str, ...]:
    us = importlib.import_module("faker.providers.address.en_US").Provider
    cities = []
    for locale in LOCATION_LOCALES:
        module = importlib.import_module(f"faker.providers.address.{locale}")
        cities.extend(module.Provider.cities)
    return _plain([*us.countries, *us.states, *cities])


def _date_text(rng: random.Random) -> str:
    # Babel and Faker are read only when the ner dataset is generated.
    from babel.dates import format_date

    day = datetime.date.fromordinal(rng.randint(_FIRST_DAY, _LAST_DAY))
    locale, pattern = rng.choice(_DATE_FORMATS)
    return format_date(day, format=pattern, locale=locale)


def _fakers(seed: int) -> dict[str, object]:
    # Babel and Faker are read only when the ner dataset is generated.
    from faker import Faker

    fakers = {}
    for i, locale in enumerate(sorted({*_PERSON_LOCALES, *_COMPANY_LOCALES})):
        fakers[locale] = Faker(locale)
        fakers[locale].seed_instance(seed + i)
    return fakers


def generate(
    num_sentences: int, seed: int
) -> list[tuple[tuple[str, ...], tuple[str, ...]]]:
    """``num_sentences`` distinct tagged sentences, the same for the same seed.

    Args:
        num_sentences: How many distinct sentences to return.
        seed: Seeds the template choice and Faker's generators.

    Returns:
        A list of ``(words, tags)`` pairs of equal-length tuples of strings.
    """
    rng = random.Random(seed)
    fakers = _fakers(seed)
    us = fakers["en_US"]
    locations = _locations()

    def person() -> str:
        fake = fakers[rng.choice(_PERSON_LOCALES)]
        # One name in five is a surname alone ("Thank you , Schmidt !").
        if rng.random() < 0.2:
            return fake.last_name()
        return f"{fake.first_name()} {fake.last_name()}"

    draw = {
        "PER": person,
        "ORG": lambda: fakers[rng.choice(_COMPANY_LOCALES)].company(),
        "LOC": lambda: rng.choice(locations),
        "DATE": lambda: _date_text(rng),
        "LANG": us.language_name,
        "CUR": us.currency_name,
    }
    sentences: dict[tuple[str, ...], tuple[str, ...]] = {}
    for _ in range(20 * num_sentences):
        if len(sentences) == num_sentences:
            break
        words: list[str] = []
        tags: list[str] = []
        for piece in rng.choice(TEMPLATES).split(" "):
            slot = piece[1:-1] if piece.startswith("{") else None
            if slot is None:
                words.append(piece)
                tags.append("O")
                continue
            value = _TOKEN.findall(draw[slot]())
            kind = _SLOT_TYPES[slot]
            words.extend(value)
            tags.extend([f"B-{kind}"] + [f"I-{kind}"] * (len(value) - 1))
        sentences.setdefault(tuple(words), tuple(tags))
    if len(sentences) < num_sentences:  # pragma: no cover - templates are varied
        raise RuntimeError(f"Only {len(sentences)} distinct NER sentences.")
    return list(sentences.items())

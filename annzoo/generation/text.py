"""Writing text with a language model, and scoring it in bits per character.

`generate_text` samples from a model built by `annzoo.build_language_model`:
the prompt is read at once, then one token per step, each drawn from the
softmax of the next-token logits after temperature, top-k and top-p
(nucleus) filtering (`filter_probabilities`). Draws come from a NumPy
generator seeded with ``seed``, so a seed gives the same texts again. The
Transformer decodes with a key/value cache, recurrent models with their state
(`annzoo.generation.decoder.IncrementalDecoder`); ``use_cache=False``
recomputes the whole sequence at every step instead, the reference the cache
is tested against.
"""

from __future__ import annotations

import math
import numbers
from typing import Any

import keras
import numpy as np

from annzoo._checks import check_bool, check_positive_int, is_int
from annzoo.errors import AnnzooError
from annzoo.generation.decoder import IncrementalDecoder
from annzoo.models.language_model import architecture_of
from annzoo.text import PAD_ID, UNK, Vocabulary

__all__ = ["bits_per_character", "filter_probabilities", "generate_text"]

# The longest text of a recurrent model that reads any length, by default.
DEFAULT_MAX_LENGTH = 100


def _check_temperature(temperature: Any) -> float:
    if (
        not isinstance(temperature, numbers.Real)
        or isinstance(temperature, bool)
        or not 0.0 < float(temperature) < math.inf
    ):
        raise AnnzooError(
            "`temperature` must be a finite number > 0 (1 samples the model's "
            f"distribution, lower is greedier). Received: temperature={temperature!r}"
        )
    return float(temperature)


def _check_top_k(top_k: Any) -> int | None:
    if top_k is None:
        return None
    if not is_int(top_k) or top_k < 1:
        raise AnnzooError(
            f"`top_k` must be None or an integer >= 1. Received: top_k={top_k!r}"
        )
    return int(top_k)


def _check_top_p(top_p: Any) -> float | None:
    if top_p is None:
        return None
    if (
        not isinstance(top_p, numbers.Real)
        or isinstance(top_p, bool)
        or not 0.0 < float(top_p) <= 1.0
    ):
        raise AnnzooError(
            f"`top_p` must be None or a number in (0, 1]. Received: top_p={top_p!r}"
        )
    return float(top_p)


def filter_probabilities(
    logits: Any,
    *,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
) -> np.ndarray:
    """The distribution a token is drawn from: tempered, top-k, then top-p.

    ``softmax(logits / temperature)``; then, with ``top_k``, only the ``k``
    most likely tokens are kept (exactly ``k``: among equal probabilities the
    lower ids first); then, with ``top_p``, the smallest set of the most
    likely remaining tokens whose probability (renormalized after top-k)
    reaches ``top_p``. The kept probabilities are renormalized to sum to 1;
    the others are 0. Logits of ``-inf`` (forbidden tokens) get 0.

    Args:
        logits: ``(..., vocabulary)`` scores.
        temperature: > 0; below 1 sharpens, above 1 flattens.
        top_k: None or an integer >= 1.
        top_p: None or a number in (0, 1].

    Returns:
        float64 probabilities of the shape of ``logits``.

    Example:
        >>> filter_probabilities([2.0, 1.0, 0.0], top_k=2)  # third token: 0
    """
    temperature = _check_temperature(temperature)
    top_k = _check_top_k(top_k)
    top_p = _check_top_p(top_p)
    z = np.asarray(logits, dtype=np.float64) / temperature
    z = z - z.max(axis=-1, keepdims=True)
    p = np.exp(z)
    p /= p.sum(axis=-1, keepdims=True)
    size = p.shape[-1]
    # Most likely first; stable, so ties keep the lower id first.
    order = np.argsort(-p, axis=-1, kind="stable")
    ranked = np.take_along_axis(p, order, axis=-1)
    keep = np.ones(ranked.shape, dtype=bool)
    if top_k is not None:
        keep[..., top_k:] = False
    if top_p is not None:
        kept = np.where(keep, ranked, 0.0)
        total = np.cumsum(kept / kept.sum(axis=-1, keepdims=True), axis=-1)
        # Every token before the running total reaches top_p, and the one that
        # reaches it (a margin for the rounding of the sum: top_p=1 keeps all).
        count = (total < top_p - 1e-12).sum(axis=-1, keepdims=True) + 1
        keep &= np.arange(size) < count
    mask = np.zeros_like(keep)
    np.put_along_axis(mask, order, keep, axis=-1)
    p = np.where(mask, p, 0.0)
    return p / p.sum(axis=-1, keepdims=True)


def _is_characters(vocabulary: Vocabulary) -> bool:
    ordinary = [t for t in vocabulary.tokens if not t.startswith("<")]
    return all(len(t) == 1 for t in ordinary)


def _prompt_tokens(prompt: Any, vocabulary: Vocabulary) -> list[str]:
    if not isinstance(prompt, str):
        raise AnnzooError(f"`prompt` must be a string. Received: prompt={prompt!r}")
    tokens = list(prompt) if _is_characters(vocabulary) else prompt.split()
    unknown = sorted({t for t in tokens if t not in vocabulary or t.startswith("<")})
    if unknown:
        what = "characters" if _is_characters(vocabulary) else "words"
        raise AnnzooError(
            f"`prompt` must use only {what} of the vocabulary; "
            f"{', '.join(map(repr, unknown))} {'is' if len(unknown) == 1 else 'are'} "
            f"not in it. Received: prompt={prompt!r}"
        )
    return tokens


def _labels(labels: Any, num: int, decoder: IncrementalDecoder) -> np.ndarray | None:
    if not decoder.conditional:
        if labels is not None:
            raise AnnzooError(
                "`labels` must be None for a model that is not conditioned on "
                f"classes (it has no `classes` input). Received: labels={labels!r}"
            )
        return None
    classes = decoder.model.get_layer("class_embedding").input_dim
    if labels is None:
        raise AnnzooError(
            "`labels` must be given for a model conditioned on classes: a class "
            f"id in [0, {classes}) or one per text. Received: labels=None"
        )
    array = np.asarray(labels)
    if array.ndim == 0:
        array = np.full(num, array)
    valid = (
        array.ndim == 1
        and len(array) == num
        and array.dtype.kind in "iu"
        and bool(((array >= 0) & (array < classes)).all())
    )
    if not valid:
        raise AnnzooError(
            f"`labels` must be a class id in [0, {classes}) or {num} of them (one "
            f"per text, num={num}). Received: labels={labels!r}"
        )
    return array.astype(np.int32)


def _logits_model(model: keras.Model) -> keras.Model:
    """``model`` up to ``head_logits`` (its layers, shared)."""
    return keras.Model(model.input, model.get_layer("head_logits").output)


def _full_logits(logits_model, tokens: np.ndarray, classes, fixed: int | None):
    """Next-token logits after the last token, recomputing the whole sequence."""
    length = tokens.shape[1]
    if fixed is not None:  # a fixed-length input: pad at the end (masked)
        padded = np.full((len(tokens), fixed), PAD_ID, dtype=np.int32)
        padded[:, :length] = tokens
        tokens = padded
    inputs = (
        tokens if classes is None else {"tokens": tokens, "classes": classes[:, None]}
    )
    logits = logits_model(inputs, training=False)
    return keras.ops.convert_to_numpy(logits)[:, length - 1].astype(np.float64)


def generate_text(
    model: keras.Model,
    vocabulary: Vocabulary,
    *,
    prompt: str = "",
    num: int = 1,
    labels: Any = None,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    max_length: int | None = None,
    seed: int | None = None,
    use_cache: bool = True,
) -> list[str]:
    """Writes ``num`` texts with a language model, each starting with ``prompt``.

    Every text is read from ``<start>`` and the prompt, then grows one token
    at a time, drawn from `filter_probabilities` of the next-token logits,
    until the model writes ``<end>`` or the text holds ``max_length``
    tokens. Padding, ``<start>`` and ``<unk>`` are never drawn. ``top_k=1`` is greedy
    decoding.

    Args:
        model: a model built by `annzoo.build_language_model`.
        vocabulary: its vocabulary (`language_model_vocabulary`: with
            ``<start>`` and ``<end>``).
        prompt: the beginning of every text (characters of a character
            vocabulary, words separated by spaces otherwise).
        num: how many texts.
        labels: for a model conditioned on classes, a class id or one per
            text; None otherwise.
        temperature: > 0; see `filter_probabilities`.
        top_k: None or an integer >= 1.
        top_p: None or a number in (0, 1].
        max_length: the longest text in tokens, prompt included; by default
            the model's ``sequence_length`` (100 for a recurrent model that
            reads any length), which it cannot exceed.
        seed: seed of the draws; the same seed gives the same texts.
        use_cache: decode incrementally (key/value cache or recurrent state);
            False recomputes the whole sequence at each step (slower, same
            tokens).

    Returns:
        ``num`` strings, without the special tokens.

    Example:
        >>> generate_text(model, vocab, prompt="Mc", num=3, labels=7, seed=0)
    """
    decoder = IncrementalDecoder(model)  # refuses a model that is not an LM
    if not isinstance(vocabulary, Vocabulary):
        raise AnnzooError(
            "`vocabulary` must be an annzoo.text.Vocabulary. Received: "
            f"vocabulary={vocabulary!r}"
        )
    size = model.get_layer("head_logits").units
    if len(vocabulary) != size:
        raise AnnzooError(
            f"`vocabulary` must have the model's {size} tokens. Received: a "
            f"vocabulary of {len(vocabulary)} tokens"
        )
    start_id, end_id = vocabulary.start_id, vocabulary.end_id
    num = check_positive_int("num", num)
    temperature = _check_temperature(temperature)
    top_k, top_p = _check_top_k(top_k), _check_top_p(top_p)
    use_cache = check_bool("use_cache", use_cache)
    prompt_tokens = _prompt_tokens(prompt, vocabulary)
    classes = _labels(labels, num, decoder)
    limit = decoder.max_length
    if max_length is None:
        max_length = limit if limit is not None else DEFAULT_MAX_LENGTH
    max_length = check_positive_int("max_length", max_length)
    if limit is not None and max_length > limit:
        raise AnnzooError(
            f"`max_length` must be at most the model's sequence_length ({limit}). "
            f"Received: max_length={max_length}"
        )
    if len(prompt_tokens) > max_length:
        raise AnnzooError(
            f"`prompt` must be at most max_length={max_length} tokens long. "
            f"Received: a prompt of {len(prompt_tokens)} tokens"
        )
    if seed is not None and not is_int(seed):
        raise AnnzooError(f"`seed` must be None or an integer. Received: seed={seed!r}")
    rng = np.random.default_rng(seed)

    prefix = [start_id, *(vocabulary.id(t) for t in prompt_tokens)]
    tokens = np.tile(np.asarray(prefix, dtype=np.int32), (num, 1))
    # Padding, <start> and <unk> are not text to write.
    banned = [PAD_ID, start_id, *([vocabulary.unk_id] if UNK in vocabulary else [])]
    if use_cache:
        logits = decoder.start(tokens, classes)
    else:
        logits_model = _logits_model(model)
        logits = _full_logits(logits_model, tokens, classes, limit)
    generated: list[list[int]] = [[] for _ in range(num)]
    finished = np.zeros(num, dtype=bool)
    for written in range(len(prompt_tokens), max_length):
        logits[:, banned] = -np.inf
        p = filter_probabilities(
            logits, temperature=temperature, top_k=top_k, top_p=top_p
        )
        cdf = np.cumsum(p, axis=-1)
        draw = rng.random(num) * cdf[:, -1]
        # The first token whose cumulative probability exceeds the draw: never
        # one of probability 0.
        chosen = np.argmax(cdf > draw[:, None], axis=-1).astype(np.int32)
        chosen = np.where(finished, end_id, chosen)
        for row in np.flatnonzero(~finished):
            if chosen[row] == end_id:
                finished[row] = True
            else:
                generated[row].append(int(chosen[row]))
        if finished.all() or written + 1 == max_length:
            break
        if use_cache:
            logits = decoder.step(chosen)
        else:
            tokens = np.concatenate([tokens, chosen[:, None]], axis=1)
            logits = _full_logits(logits_model, tokens, classes, limit)
    join = "" if _is_characters(vocabulary) else " "
    head = join.join(prompt_tokens)
    texts = []
    for ids in generated:
        tail = join.join(vocabulary.tokens[i] for i in ids)
        texts.append(head + (join if head and tail and join else "") + tail)
    return texts


def bits_per_character(
    model: keras.Model, x: Any, y: Any, *, batch_size: int = 256
) -> float:
    """Mean next-token cross-entropy over the non-padding targets, in bits.

    ``-log2 p(y_t | tokens before t)`` averaged over every target ``y_t != 0``
    (``<end>`` included: knowing where a text ends is part of predicting it),
    i.e. the mean loss in nats divided by ``ln 2``. For a character model this
    is the usual bits per character; lower is better, and a model that knows
    nothing of ``V`` equally likely tokens scores ``log2(V)``.

    Args:
        model: a language model (its output: next-token probabilities).
        x: its inputs (`next_token_arrays`).
        y: the next-token labels, 0 at padding.
        batch_size: passed to ``model.predict``.

    Returns:
        Bits per token, a Python float.
    """
    architecture_of(model)
    y = np.asarray(y)
    probabilities = model.predict(x, batch_size=batch_size, verbose=0)
    picked = np.take_along_axis(probabilities, y[..., None].astype(np.int64), axis=-1)
    picked = picked[..., 0].astype(np.float64)
    targets = y != PAD_ID
    if not targets.any():
        raise AnnzooError(
            "`y` must hold at least one target that is not padding (id 0). "
            "Received: only padding"
        )
    # The smallest positive float32 keeps a zero probability finite.
    nats = -np.log(np.maximum(picked[targets], np.finfo(np.float32).tiny))
    return float(nats.mean() / math.log(2))

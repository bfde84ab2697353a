"""Greedy and beam-search decoding for annzoo's sequence-to-sequence models.

Works for every model trained with teacher forcing whose inputs are a source
(``encoder_tokens`` or ``images``) plus ``decoder_tokens`` and whose output is
a softmax over the target vocabulary at every decoder step: `build_seq2seq`,
`build_captioner` and the ``encoder_decoder`` Transformer. Their decoders are
causal, so the output at step t depends only on the source and on
``decoder_tokens[:t + 1]``: decoding feeds the tokens chosen so far (padded
with 0) and reads step t. Each step is one compiled ``predict_on_batch`` over
the whole batch (and its beams), so the cost is ``max_length`` forward passes.

With ``return_attention=True`` the model must have a layer named
``"attention"`` returning ``[context, weights]`` (the recurrent annzoo models
do); the weights the chosen tokens were produced with come back per step.
"""

from __future__ import annotations

import dataclasses
import weakref
from collections.abc import Mapping
from typing import Any

import keras
import numpy as np

from annzoo._checks import check_positive_int
from annzoo.errors import AnnzooError
from annzoo.text import PAD_ID, Vocabulary

__all__ = ["Decoded", "decode", "source_name"]

DECODER_INPUT = "decoder_tokens"


@dataclasses.dataclass(frozen=True)
class Decoded:
    """The result of `decode`.

    Attributes:
        ids: int32 ``(num_samples, max_length)``: the chosen tokens, the end
            token (if produced) and 0 padding after it.
        lengths: tokens before the end token, per sample.
        scores: the log-probability of each returned sequence (end token
            included), the beam's ranking score before length normalization.
        attention: float32 ``(num_samples, max_length, source_positions)``
            weights of each produced token (rows after the end are zero), or
            ``None`` when not requested.
    """

    ids: np.ndarray
    lengths: np.ndarray
    scores: np.ndarray
    attention: np.ndarray | None = None

    def tokens(self, index: int) -> np.ndarray:
        """The tokens of sample ``index``, without the end token."""
        return self.ids[index, : self.lengths[index]]

    def texts(self, vocabulary: Vocabulary, *, join: str = "") -> list[str]:
        """Every sample's tokens as text (``join=" "`` for word vocabularies)."""
        return [
            join.join(vocabulary.tokens[i] for i in self.tokens(k))
            for k in range(len(self.ids))
        ]


_PROBES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _probe(model, with_attention: bool):
    """The model, or a view returning ``[predictions, attention weights]``."""
    if not with_attention:
        return model
    if model not in _PROBES:
        try:
            layer = model.get_layer("attention")
        except ValueError:
            raise AnnzooError(
                "`return_attention=True` needs a model with a layer named "
                f"'attention' returning [context, weights]; {model.name!r} has "
                "none (the Transformer translator attends with several heads "
                "per block and returns no single map)."
            ) from None
        outputs = layer.output
        if not isinstance(outputs, (list, tuple)) or len(outputs) != 2:
            raise AnnzooError(
                "The model's 'attention' layer must return [context, weights]. "
                f"Received {type(outputs).__name__} output."
            )
        _PROBES[model] = keras.Model(model.inputs, [model.outputs[0], outputs[1]])
    return _PROBES[model]


def source_name(model, *, why: str = "") -> str:
    """The name of a sequence-to-sequence model's source input.

    Raises an `AnnzooError` (prefixed by ``why``) unless the model's inputs
    are a source and ``"decoder_tokens"``.
    """
    names = [t.name for t in model.inputs]
    if DECODER_INPUT not in names or len(names) != 2:
        raise AnnzooError(
            f"{why}`model` must take two inputs, a source and 'decoder_tokens' (a "
            "model from build_seq2seq, build_captioner or build_transformer("
            f"'encoder_decoder')). Received a model with inputs {names}."
        )
    return next(n for n in names if n != DECODER_INPUT)


def _split_inputs(model, inputs: Any) -> tuple[str, np.ndarray]:
    names = [t.name for t in model.inputs]
    source_key = source_name(model)
    if isinstance(inputs, Mapping):
        if source_key not in inputs:
            raise AnnzooError(
                f"`inputs` must hold the model's source {source_key!r}. Received "
                f"keys {sorted(inputs)}."
            )
        inputs = inputs[source_key]
    source = np.asarray(inputs)
    expected = model.inputs[names.index(source_key)].shape[1:]
    given = source.shape[1:]
    if len(given) != len(expected) or any(
        e is not None and e != s for e, s in zip(expected, given, strict=True)
    ):
        raise AnnzooError(
            f"`inputs` must be a batch of {source_key!r} of shape (num_samples, "
            f"{', '.join(str(e) for e in expected)}). Received shape {source.shape}."
        )
    return source_key, source


def decode(
    model,
    inputs: Any,
    *,
    max_length: int | None = None,
    beam_width: int = 1,
    start_id: int | None = None,
    end_id: int | None = None,
    vocabulary: Vocabulary | None = None,
    length_penalty: float = 0.0,
    return_attention: bool = False,
    batch_size: int = 128,
) -> Decoded:
    """Generates target sequences for a batch of sources.

    Greedy decoding (``beam_width=1``) picks the most probable token at each
    step; beam search keeps the ``beam_width`` most probable partial sequences
    and returns the best finished one. Both stop a sequence at the end token
    and the whole batch once every sequence has ended or ``max_length`` tokens
    are produced. Beam search with width 1 is exactly greedy decoding.

    Args:
        model: a model with inputs ``{source, "decoder_tokens"}`` and a
            per-step softmax output, as trained with teacher forcing.
        inputs: the sources, ``(num_samples, ...)`` (token ids or images), or a
            dict holding them under the model's source input name.
        max_length: tokens to produce at most, end token included; defaults to
            (and may not exceed) the model's ``decoder_tokens`` length.
        beam_width: 1 for greedy decoding, more for beam search.
        start_id / end_id: the special ids; default to those of
            ``vocabulary``, else annzoo's convention (1 and 2).
        vocabulary: the target `annzoo.text.Vocabulary`, for the special ids.
        length_penalty: beam ranking divides a finished sequence's
            log-probability by ``length ** length_penalty`` (0: no penalty).
        return_attention: also return each token's attention weights.
        batch_size: sources decoded together (times ``beam_width`` rows).

    Returns:
        A `Decoded` (``ids``, ``lengths``, ``scores``, ``attention``).

    Example:
        >>> result = annzoo.decode(model, test.x[:8], vocabulary=test.target_vocabulary)
        >>> result.texts(test.target_vocabulary)
        ['2021-03-04', ...]
    """
    beam_width = check_positive_int("beam_width", beam_width)
    batch_size = check_positive_int("batch_size", batch_size)
    if not isinstance(length_penalty, (int, float)) or length_penalty < 0:
        raise AnnzooError(
            "`length_penalty` must be a number >= 0. "
            f"Received: length_penalty={length_penalty!r}"
        )
    if vocabulary is not None:
        start_id = vocabulary.start_id if start_id is None else start_id
        end_id = vocabulary.end_id if end_id is None else end_id
    start_id = 1 if start_id is None else start_id
    end_id = 2 if end_id is None else end_id
    source_key, source = _split_inputs(model, inputs)
    steps = model.inputs[[t.name for t in model.inputs].index(DECODER_INPUT)].shape[1]
    if max_length is None:
        if steps is None:
            raise AnnzooError(
                "`max_length` is required: the model accepts decoder sequences of "
                "any length."
            )
        max_length = steps
    max_length = check_positive_int("max_length", max_length)
    if steps is not None and max_length > steps:
        raise AnnzooError(
            f"`max_length` must be at most the model's decoder length {steps}. "
            f"Received: max_length={max_length}"
        )
    width = steps or max_length
    predict = _probe(model, return_attention).predict_on_batch
    parts = []
    for begin in range(0, len(source), batch_size):
        chunk = source[begin : begin + batch_size]
        parts.append(
            _beam_search(
                predict,
                source_key,
                chunk,
                rows=min(batch_size, len(source)),
                width=width,
                max_length=max_length,
                beam_width=beam_width,
                ids=(start_id, end_id),
                length_penalty=float(length_penalty),
                attention=return_attention,
            )
        )
    if not parts:
        empty = np.zeros((0, max_length), np.int32)
        return Decoded(empty, np.zeros(0, np.int32), np.zeros(0, np.float32))
    ids, lengths, scores, attention = (
        None if p[0] is None else np.concatenate(p) for p in zip(*parts, strict=True)
    )
    return Decoded(ids, lengths, scores, attention)


def _beam_search(
    predict,
    source_key,
    source,
    *,
    rows,
    width,
    max_length,
    beam_width,
    ids,
    length_penalty,
    attention,
):
    start_id, end_id = ids
    n, k = len(source), beam_width
    # Pad the last chunk to the full batch: one compiled shape for every call.
    padded = np.concatenate([source, np.repeat(source[:1], rows - n, axis=0)])
    beams_source = np.repeat(padded, k, axis=0)
    decoder = np.full((rows, k, width), PAD_ID, dtype=np.int32)
    decoder[:, :, 0] = start_id
    produced = np.zeros((rows, k, max_length), dtype=np.int32)
    # Only the first beam is live at the start, so no sequence appears twice.
    scores = np.full((rows, k), -np.inf)
    scores[:, 0] = 0.0
    finished = np.zeros((rows, k), dtype=bool)
    lengths = np.zeros((rows, k), dtype=np.int32)
    maps = None
    for t in range(max_length):
        feed = {source_key: beams_source, DECODER_INPUT: decoder.reshape(-1, width)}
        outputs = predict(feed)
        probabilities = np.asarray(outputs[0] if attention else outputs)[:, t]
        vocab = probabilities.shape[-1]
        with np.errstate(divide="ignore"):
            logp = np.log(probabilities.astype(np.float64)).reshape(rows, k, vocab)
        # A finished beam proposes only itself (padding), at no cost.
        logp[finished] = -np.inf
        logp[finished, PAD_ID] = 0.0
        candidates = (scores[:, :, None] + logp).reshape(rows, k * vocab)
        order = np.argsort(-candidates, axis=1, kind="stable")[:, :k]
        parent, token = np.divmod(order, vocab)
        picked = np.take_along_axis(candidates, order, axis=1)
        was_finished = np.take_along_axis(finished, parent, axis=1)
        token = np.where(was_finished, PAD_ID, token)
        take = (np.arange(rows)[:, None], parent)
        decoder, produced, lengths = decoder[take], produced[take], lengths[take]
        produced[:, :, t] = token
        if attention:
            weights = np.asarray(outputs[1])[:, t].reshape(rows, k, -1)[take]
            if maps is None:
                maps = np.zeros((rows, k, max_length, weights.shape[-1]), np.float32)
            maps = maps[take]
            maps[:, :, t] = np.where(was_finished[..., None], 0.0, weights)
        ended = ~was_finished & (token == end_id)
        lengths = lengths + (~was_finished & ~ended)
        finished = was_finished | ended
        scores = picked
        if t + 1 < width:
            decoder[:, :, t + 1] = np.where(finished, PAD_ID, token)
        if finished[:n].all():
            break
    ranked = scores.copy()
    if length_penalty:
        ranked = scores / np.maximum(lengths + finished, 1) ** length_penalty
    best = np.argmax(ranked, axis=1)[:n]
    pick = (np.arange(n), best)
    return (
        produced[pick],
        lengths[pick],
        scores[pick].astype(np.float32),
        None if maps is None else maps[pick],
    )

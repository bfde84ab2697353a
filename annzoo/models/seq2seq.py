"""Recurrent encoder-decoders (sequence to sequence), with or without attention.

:func:`build_seq2seq` is the GRU/LSTM translator of Sutskever et al. (2014) and
Cho et al. (2014), with the global attention of Luong et al. (2015) scored as
in Bahdanau et al. (2015) or Luong et al.; it is trained with teacher forcing
and decoded with :func:`annzoo.decode`. :func:`attention_decoder` is the
decoder it shares with :func:`annzoo.build_captioner`.
"""

from __future__ import annotations

from typing import Any

import keras

from annzoo import tasks
from annzoo._checks import (
    check_bool,
    check_choice,
    check_name,
    check_parameter_terms,
    check_positive_int,
    check_rate,
)
from annzoo.errors import AnnzooError
from annzoo.layers import RecurrentAttention
from annzoo.models._common import (
    SEQUENCE_DROPOUT_RATES,
    check_compile,
    finish,
    functional_model,
    output_head,
    target_arguments,
    token_arguments,
)
from annzoo.registry import FamilySpec, Reference, register, register_preset

__all__ = ["build_seq2seq", "attention_decoder", "decoder_initial_state"]

CELLS = {"gru": "GRU", "lstm": "LSTM"}
GATES = {"gru": 3, "lstm": 4}  # kernels of size (input + units) x units per cell
# attention= name -> RecurrentAttention score.
ATTENTIONS = {"bahdanau": "additive", "luong": "dot", "luong_general": "general"}
NO_ATTENTION = "none"


def _shapes(config: dict[str, Any]) -> dict[str, tuple]:
    """Input and output shapes of a ``seq2seq`` config, for ``model_info``."""
    source = config["sequence_length"]
    target = config.get("target_sequence_length") or source
    vocabulary = config.get("target_vocabulary_size") or config["vocabulary_size"]
    # Two inputs: (encoder_tokens, decoder_tokens).
    return {"input_shape": ((source,), (target,)), "output_shape": (target, vocabulary)}


def check_decoder_arguments(
    embedding_dim: Any, units: Any, cell: Any, attention: Any, dropout: Any, task: Any
) -> tuple[int, int, str, str | None, float, str]:
    """The decoder options shared by ``seq2seq`` and ``captioner``, checked."""
    embedding_dim = check_positive_int("embedding_dim", embedding_dim)
    units = check_positive_int("units", units)
    cell = check_choice("cell", cell, CELLS)
    if attention is not None:
        attention = check_choice("attention", attention, [*ATTENTIONS, NO_ATTENTION])
        attention = None if attention == NO_ATTENTION else attention
    dropout = check_rate("dropout", dropout)
    task = tasks.check_task(task)
    if task != "sequence":
        raise AnnzooError(
            "`task` must be 'sequence' (a softmax over the target vocabulary at "
            f"every decoder step). Received: task={task!r}"
        )
    return embedding_dim, units, cell, attention, dropout, task


def check_dot_attention(attention: str | None, units: int, memory: int, what: str):
    """Luong's dot score needs decoder states as wide as the memory."""
    if attention == "luong" and units != memory:
        raise AnnzooError(
            f"`attention`='luong' (dot score q . m) needs the decoder's `units` "
            f"({units}) to equal the size of {what} ({memory}); use "
            "attention='luong_general' or 'bahdanau'. Received: attention='luong'"
        )


def decoder_initial_state(features: Any, cell: str, units: int) -> list:
    """The decoder's initial state(s): ``Dense(units, tanh)`` of ``features``.

    ``features`` is one tensor (used for every state) or one tensor per state:
    ``[h]`` for a GRU, ``[h, c]`` for an LSTM. The layers are named
    ``decoder_init_h`` and ``decoder_init_c``.
    """
    names = ("h", "c") if cell == "lstm" else ("h",)
    if not isinstance(features, (list, tuple)):
        features = [features] * len(names)
    return [
        keras.layers.Dense(units, activation="tanh", name=f"decoder_init_{n}")(f)
        for n, f in zip(names, features, strict=True)
    ]


def decoder_weight_terms(
    vocabulary_size: int,
    embedding_dim: int,
    units: int,
    cell: str,
    *,
    vocabulary: str = "vocabulary_size",
) -> list[tuple[int, list[tuple]]]:
    """A lower bound of `attention_decoder`'s weights, for
    `annzoo._checks.check_parameter_terms`: the embedding, the recurrent
    kernels and the output kernel (``vocabulary`` names the vocabulary's
    builder argument)."""
    vocab = (vocabulary, vocabulary_size, vocabulary_size)
    embed = ("embedding_dim", embedding_dim, embedding_dim)
    width = ("units", units, units)
    return [
        (vocabulary_size * embedding_dim, [vocab, embed]),
        (GATES[cell] * (embedding_dim + units) * units, [width, embed]),
        (units * vocabulary_size, [vocab, width]),
    ]


def attention_decoder(
    decoder_tokens,
    memory,
    initial_state: list,
    *,
    vocabulary_size: int,
    embedding_dim: int,
    units: int,
    cell: str,
    attention: str | None,
    dropout: float,
):
    """The teacher-forced recurrent decoder, attending over ``memory``.

    ``decoder_embedding`` (id 0 masked) -> ``decoder_{cell}`` started from
    ``initial_state`` -> with attention, Luong et al.'s (2015) global
    attention: ``attention`` (query = the decoder output ``h_t``, memory =
    every encoder output or region, padding masked by the memory's Keras
    mask) gives ``[context c_t, weights]``, and the attentional hidden state
    ``tanh(W_c [c_t; h_t])`` (``attentional_hidden``, no bias) -> dropout ->
    ``head_logits`` -> softmax ``predictions`` over ``vocabulary_size``.

    The decoder is causal: the recurrent layer reads left to right and the
    attention scores each step on its own, so the output at step t depends
    only on ``decoder_tokens[:t + 1]`` and the memory.

    Returns:
        The ``predictions`` tensor ``(batch, T, vocabulary_size)``.
    """
    x = keras.layers.Embedding(
        vocabulary_size, embedding_dim, mask_zero=True, name="decoder_embedding"
    )(decoder_tokens)
    rnn = getattr(keras.layers, CELLS[cell])
    x = rnn(units, return_sequences=True, dropout=dropout, name=f"decoder_{cell}")(
        x, initial_state=initial_state
    )
    if attention is not None:
        score = ATTENTIONS[attention]
        context, _ = RecurrentAttention(
            score, units=units if score == "additive" else None, name="attention"
        )(x, memory)
        x = keras.layers.Concatenate(name="attention_concat")([context, x])
        x = keras.layers.Dense(
            units, activation="tanh", use_bias=False, name="attentional_hidden"
        )(x)
    if dropout:
        x = keras.layers.Dropout(dropout, name="head_dropout")(x)
    return output_head(x, vocabulary_size, "sequence")


def _dataset_arguments(train: Any) -> dict[str, Any]:
    return {
        **token_arguments(train, length="sequence_length"),
        **target_arguments(train),
    }


SPEC = FamilySpec(
    tasks=("sequence",),
    data=("sequence",),
    dataset_arguments=_dataset_arguments,
    search_space={
        "cell": ["gru", "lstm"],
        "units": [64, 128, 256],
        "embedding_dim": [32, 64],
        "attention": ["bahdanau", "luong_general", None],
        "dropout": SEQUENCE_DROPOUT_RATES,
    },
    smoke=dict(
        vocabulary_size=12,
        sequence_length=6,
        target_vocabulary_size=10,
        target_sequence_length=5,
        embedding_dim=4,
        units=8,
    ),  # fmt: skip
    predict=("text",),
    report=("decoded", "attention"),
    shapes=_shapes,
)


@register("seq2seq", spec=SPEC)
def build_seq2seq(
    vocabulary_size: int,
    sequence_length: int,
    target_vocabulary_size: int | None = None,
    target_sequence_length: int | None = None,
    *,
    embedding_dim: int = 64,
    units: int = 128,
    cell: str = "gru",
    encoder_layers: int = 1,
    bidirectional: bool = False,
    attention: str | None = "bahdanau",
    dropout: float = 0.0,
    task: str = "sequence",
    compile: bool | dict = True,
    name: str = "seq2seq",
) -> keras.Model:
    """Builds a recurrent encoder-decoder translator, trained with teacher forcing.

    Encoder: ``encoder_embedding`` -> ``encoder_layers`` recurrent layers
    (``encoder_{cell}{i}``, or ``encoder_bidirectional{i}`` around them),
    returning every step's output (the attention's memory) and the last
    layer's final state. Without ``bidirectional`` the final state (``h``,
    and ``c`` for an LSTM) is the decoder's initial state as is (Sutskever et
    al. 2014, Cho et al. 2014); with it, each direction has ``units`` units,
    the outputs are ``2 * units`` wide, and the forward and backward final
    states are concatenated and projected by ``decoder_init_h`` (and
    ``decoder_init_c``), ``Dense(units, tanh)`` as Bahdanau et al. (2015)
    initialise their decoder.

    Decoder (:func:`attention_decoder`): ``decoder_embedding`` ->
    ``decoder_{cell}`` -> with attention, a layer named ``attention``
    (:class:`annzoo.layers.RecurrentAttention`) returning ``[context,
    weights]``, weights ``(batch, target_sequence_length, sequence_length)``
    zero at source padding, then ``attentional_hidden`` = ``tanh(W_c
    [context; h_t])`` -> ``head_logits`` -> softmax ``predictions``. This is
    Luong et al.'s (2015) global attention for every score, as in the
    TensorFlow "NMT with attention" tutorial; Bahdanau et al.'s own decoder
    feeds the context into the recurrent cell instead. The decoder is causal
    (output t depends on ``decoder_tokens[:t + 1]`` and the source only), so
    :func:`annzoo.decode` can decode with it.

    Input contract: ``encoder_tokens`` int32 ``(sequence_length,)`` in
    ``[0, vocabulary_size)`` and ``decoder_tokens`` int32
    ``(target_sequence_length,)`` in ``[0, target_vocabulary_size)``, **id 0
    being padding** (at the end; both embeddings mask it). ``decoder_tokens``
    is the target shifted right with ``"<start>"`` first
    (:func:`annzoo.text.shift_right`); the labels are the target itself,
    padding ignored by the loss (``task="sequence"``).

    Args:
        vocabulary_size: number of source token ids, padding included.
        sequence_length: length of the source sequences.
        target_vocabulary_size: number of target ids; defaults to
            ``vocabulary_size`` (separate embeddings either way).
        target_sequence_length: length of the decoder sequences; defaults to
            ``sequence_length``.
        embedding_dim: size of both token embeddings.
        units: state size of the decoder and of each encoder layer (of each
            direction when bidirectional), and of the additive attention's
            hidden layer and the attentional hidden state.
        cell: ``"gru"`` (Keras' ``reset_after=True`` variant) or ``"lstm"``.
        encoder_layers: stacked encoder layers; the decoder has one.
        bidirectional: bidirectional encoder layers.
        attention: ``"bahdanau"`` (additive score ``v^T tanh(W_q h_t + W_m
            m_s + b)``), ``"luong"`` (dot score ``h_t . m_s``; needs the
            memory as wide as ``units``, so not with ``bidirectional``),
            ``"luong_general"`` (``h_t^T W m_s``), or ``None`` / ``"none"``
            (no attention: the final encoder state is all the decoder sees).
        dropout: rate in [0, 1) on the inputs of every recurrent layer and
            before ``head_logits``.
        task: ``"sequence"`` (the only one).
        compile: ``True``, ``False`` or a dict of ``annzoo.compile_model``
            arguments.
        name: the model's name.

    Returns:
        A ``keras.Model`` mapping ``{"encoder_tokens", "decoder_tokens"}`` to
        ``predictions`` ``(target_sequence_length, target_vocabulary_size)``.

    Example:
        >>> model = annzoo.build_seq2seq(8000, 40, 8000, 40, attention="luong")
        >>> model.fit({"encoder_tokens": x, "decoder_tokens": shift_right(y, 1)}, y)
    """
    vocabulary_size = check_positive_int("vocabulary_size", vocabulary_size)
    sequence_length = check_positive_int("sequence_length", sequence_length)
    target_vocabulary_size = check_positive_int(
        "target_vocabulary_size",
        vocabulary_size if target_vocabulary_size is None else target_vocabulary_size,
    )
    target_sequence_length = check_positive_int(
        "target_sequence_length",
        sequence_length if target_sequence_length is None else target_sequence_length,
    )
    embedding_dim, units, cell, attention, dropout, task = check_decoder_arguments(
        embedding_dim, units, cell, attention, dropout, task
    )
    encoder_layers = check_positive_int("encoder_layers", encoder_layers)
    bidirectional = check_bool("bidirectional", bidirectional)
    memory_size = 2 * units if bidirectional else units
    check_dot_attention(attention, units, memory_size, "the encoder outputs")
    compile = check_compile(compile, task)
    # A lower bound (the embeddings, the recurrent and output kernels),
    # refused before anything is allocated.
    encoder = [
        (
            vocabulary_size * embedding_dim,
            [("vocabulary_size", vocabulary_size, vocabulary_size),
             ("embedding_dim", embedding_dim, embedding_dim)],
        ),
        (
            encoder_layers * GATES[cell] * units * (embedding_dim + units),
            [("units", units, units), ("encoder_layers", encoder_layers,
             encoder_layers), ("embedding_dim", embedding_dim, embedding_dim)],
        ),
    ]  # fmt: skip
    check_parameter_terms(
        encoder
        + decoder_weight_terms(
            target_vocabulary_size, embedding_dim, units, cell,
            vocabulary="target_vocabulary_size",
        )
    )  # fmt: skip
    name = check_name("name", name)

    encoder_tokens = keras.Input(
        (sequence_length,), dtype="int32", name="encoder_tokens"
    )
    decoder_tokens = keras.Input(
        (target_sequence_length,), dtype="int32", name="decoder_tokens"
    )
    x = keras.layers.Embedding(
        vocabulary_size, embedding_dim, mask_zero=True, name="encoder_embedding"
    )(encoder_tokens)
    rnn = getattr(keras.layers, CELLS[cell])
    for i in range(1, encoder_layers + 1):
        last = i == encoder_layers
        layer = rnn(
            units,
            return_sequences=True,
            return_state=last,
            dropout=dropout,
            name=f"encoder_{cell}{i}",
        )
        if bidirectional:
            layer = keras.layers.Bidirectional(layer, name=f"encoder_bidirectional{i}")
        x = layer(x)
    memory, states = x[0], list(x[1:])
    if bidirectional:
        # [h_f, (c_f,) h_b, (c_b)] -> [h_f;h_b] (and [c_f;c_b]) -> Dense(tanh).
        half = len(states) // 2
        states = decoder_initial_state(
            [
                keras.layers.Concatenate(name=f"encoder_final_{n}")([f, b])
                for n, f, b in zip("hc", states[:half], states[half:], strict=False)
            ],
            cell,
            units,
        )
    outputs = attention_decoder(
        decoder_tokens,
        memory,
        states,
        vocabulary_size=target_vocabulary_size,
        embedding_dim=embedding_dim,
        units=units,
        cell=cell,
        attention=attention,
        dropout=dropout,
    )
    model = functional_model(
        {"encoder_tokens": encoder_tokens, "decoder_tokens": decoder_tokens},
        outputs,
        name=name,
        depth={"encoder_layers": encoder_layers},
    )
    return finish(model, task, compile)


# Parameter formulas behind the reference (Keras layers, biases included):
#   Embedding(V, d):                  V * d
#   GRU(u) on d inputs, reset_after:  3 * (d*u + u*u + 2*u)
#   LSTM(u) on d inputs:              4 * (d*u + u*u + u)
#   RecurrentAttention additive, u hidden, query q, memory m: q*u + m*u + 2*u
#   Dense(n) on m inputs: m*n + n (m*n without bias)
PRESETS: dict[str, dict[str, Any]] = {
    "seq2seq_attention": dict(
        description=(
            "GRU encoder-decoder with Bahdanau (additive) attention, the sizes "
            "of the TensorFlow 'Neural machine translation with attention' "
            "tutorial (embedding 256, 1024 GRU units), for 8000-id source and "
            "target vocabularies and 40-token sequences."
        ),
        reference=Reference(
            params=24_368_960,
            kind="total",
            source=(
                "count by formula (Keras layers, GRU reset_after=True): "
                "embeddings 2 * 8000*256 = 4,096,000; encoder and decoder GRU "
                "2 * 3*(256*1024 + 1024*1024 + 2*1024) = 7,876,608; additive "
                "attention 1024*1024 + 1024*1024 + 2*1024 = 2,099,200; "
                "attentional hidden state (no bias) 2048*1024 = 2,097,152; "
                "output 1024*8000 + 8000 = 8,200,000; total 24,368,960"
            ),
        ),
        vocabulary_size=8000,
        sequence_length=40,
        target_vocabulary_size=8000,
        target_sequence_length=40,
        embedding_dim=256,
        units=1024,
        cell="gru",
        attention="bahdanau",
    ),
}

for _name, _preset in PRESETS.items():
    register_preset(_name, "seq2seq", **_preset)

"""Language models that write: decoder-only Transformers and recurrent networks.

One builder, :func:`build_language_model`, predicts the next token at every
step of a token sequence (task ``"generation"``): a GPT-style causal
Transformer (pre-norm :class:`annzoo.layers.TransformerEncoderBlock` layers
called with the causal mask) or a stack of LSTM or GRU layers, optionally
conditioned on a class (a language for surnames). What it trains on comes
from `annzoo.generation.data` (`next_token_arrays`); `annzoo.generation`
runs it one token at a time (`IncrementalDecoder`, with a key/value cache for
the Transformer) and writes text with it (`generate_text`).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import keras
import numpy as np

from annzoo import tasks
from annzoo._checks import (
    check_choice,
    check_name,
    check_parameter_terms,
    check_positive_int,
    check_rate,
)
from annzoo.errors import AnnzooError
from annzoo.layers.attention import TokenAndPositionEmbedding
from annzoo.layers.transformer import TransformerEncoderBlock
from annzoo.models._common import check_compile, finish, functional_model
from annzoo.registry import FamilySpec, Reference, register, register_preset
from annzoo.text import PAD_ID, SEQUENCE_SPECIALS, Vocabulary

__all__ = ["architecture_of", "build_language_model"]

ARCHITECTURES = ("transformer", "lstm", "gru")
RECURRENT = {"lstm": "LSTM", "gru": "GRU"}
# Arguments that only some architectures use: passing one to another is a
# mistake worth reporting rather than ignoring.
_ONLY_FOR = {
    "num_heads": ("transformer",),
    "ff_dim": ("transformer",),
    "units": ("lstm", "gru"),
}
_DEFAULT_HEADS = 4
_DEFAULT_UNITS = 256


def _shapes(config: dict[str, Any]) -> dict[str, tuple]:
    """Input and output shapes of a ``language_model`` config (``model_info``)."""
    steps = config.get("sequence_length")
    shape = {
        "input_shape": (steps,),
        "output_shape": (steps, config["vocabulary_size"]),
    }
    if config.get("conditional_classes"):
        shape["input_shape"] = ((steps,), (1,))
    return shape


def _dataset_arguments(train: Any) -> dict[str, Any]:
    """Sizes from a split already in language-model form (`next_token_arrays`:
    ``x`` the inputs, ``vocabulary`` with ``<start>`` and ``<end>``)."""
    x = train.x["tokens"] if isinstance(train.x, dict) else train.x
    args: dict[str, Any] = {
        "vocabulary_size": len(train.vocabulary),
        "sequence_length": int(np.shape(x)[1]),
        "task": "generation",
    }
    if isinstance(train.x, dict) and "classes" in train.x and train.num_classes:
        args["conditional_classes"] = int(train.num_classes)
    return args


def _texts_as_inputs(split: Any) -> Any:
    """A split of token texts (a classifier's, such as the surnames) as a
    language model reads it: ``<start>`` and the text, padded, in the
    language-model vocabulary (`annzoo.generation.language_model_vocabulary`'s
    order); the labels stay the split's classes (what a conditional model is
    conditioned on). One more step than the texts, for ``<start>``."""
    source = split.vocabulary
    ordinary = [t for t in source.tokens if not (t.startswith("<") and t.endswith(">"))]
    vocabulary = Vocabulary([*SEQUENCE_SPECIALS, *ordinary])
    lookup = np.array([vocabulary.id(t) for t in source.tokens], dtype=np.int32)
    lookup[PAD_ID] = PAD_ID
    ids = lookup[np.asarray(split.x)]
    x = np.zeros((len(ids), ids.shape[1] + 1), dtype=np.int32)
    x[:, 0] = vocabulary.start_id
    x[:, 1:] = ids
    return dataclasses.replace(split, x=x, vocabulary=vocabulary)


def _next_tokens(split: Any, model: Any) -> tuple[Any, np.ndarray]:
    """``(inputs, next-token labels)`` of a split made by `_texts_as_inputs`:
    the labels are the inputs shifted one step left with ``<end>`` after the
    text (as `annzoo.generation.next_token_arrays` makes them)."""
    x = np.asarray(split.x)
    y = np.zeros_like(x)
    y[:, :-1] = x[:, 1:]
    last = (x != PAD_ID).sum(axis=1) - 1  # where the text ends
    y[np.arange(len(x)), last] = split.vocabulary.end_id
    if len(model.inputs) == 2:  # conditional: the class of each text
        classes = np.asarray(split.y, dtype=np.int32).reshape(-1, 1)
        return {"tokens": x, "classes": classes}, y
    return x, y


SPEC = FamilySpec(
    tasks=("generation",),
    # Token texts with a class each (the surnames): `_texts_as_inputs` makes
    # the language model's inputs of them, `_next_tokens` its labels.
    data=("sample",),
    dataset_arguments=_dataset_arguments,
    search_space={
        "num_layers": {"type": "int", "min": 1, "max": 3},
        # Every width is divisible by the default 4 heads.
        "embedding_dim": [32, 64, 128],
        "dropout": [0.0, 0.1, 0.2],
    },
    smoke=dict(
        vocabulary_size=12,
        sequence_length=8,
        embedding_dim=8,
        num_layers=1,
    ),  # fmt: skip  (the Transformer's heads and width by default: 4 and 4 x 8)
    predict=("text",),
    report=("samples",),
    shapes=_shapes,
    training_split=_texts_as_inputs,
    fit_arrays=_next_tokens,
)


@register("language_model", spec=SPEC)
def build_language_model(
    vocabulary_size: int,
    *,
    architecture: str = "transformer",
    sequence_length: int | None = None,
    embedding_dim: int = 128,
    num_layers: int = 2,
    num_heads: int | None = None,
    ff_dim: int | None = None,
    units: int | None = None,
    dropout: float = 0.1,
    conditional_classes: int | None = None,
    task: str = "generation",
    compile: bool | dict = True,
    name: str = "language_model",
) -> keras.Model:
    """Builds a next-token language model: a causal Transformer, LSTM or GRU.

    ``architecture="transformer"`` (decoder-only, GPT-2 style): ``tokens`` ->
    token and learned position embeddings -> dropout -> ``num_layers``
    pre-norm :class:`annzoo.layers.TransformerEncoderBlock` layers with the
    causal mask (position t attends to positions <= t; GELU feed-forward) ->
    final LayerNorm -> ``head_logits`` -> softmax over the vocabulary at every
    step. ``"lstm"`` and ``"gru"``: token embedding -> dropout ->
    ``num_layers`` recurrent layers of ``units`` (each followed by dropout)
    -> the same head.

    With ``conditional_classes``, a second input ``classes`` (one class id per
    sequence) selects a learned vector of ``embedding_dim`` values that is
    added to every token's embedding, so every step knows the class (the
    language of a surname).

    Input contract: ``tokens`` are int32 ids in ``[0, vocabulary_size)``,
    ``<start>`` first, **id 0 padding at the end** (masked in attention, in
    the recurrent layers and in the loss); ``classes`` int32 ids in
    ``[0, conditional_classes)``, shape ``(1,)`` (or a plain vector). The
    labels are the tokens shifted one step left, ``<end>`` after the last
    character (see `annzoo.generation.next_token_arrays`). Output: probabilities
    ``(steps, vocabulary_size)``.

    Args:
        vocabulary_size: number of token ids, padding and specials included.
        architecture: ``"transformer"``, ``"lstm"`` or ``"gru"``.
        sequence_length: length of the token rows; the Transformer needs it
            (its position table), a recurrent model takes any length when it
            is None.
        embedding_dim: size of the token (and class) embeddings; the
            Transformer's width ``d_model``.
        num_layers: Transformer blocks or recurrent layers.
        num_heads: attention heads (Transformer only; 4 by default), each of
            size ``embedding_dim // num_heads``, which must divide exactly.
        ff_dim: feed-forward width (Transformer only; ``4 * embedding_dim``
            by default).
        units: state size of each recurrent layer (LSTM and GRU only; 256 by
            default).
        dropout: rate in [0, 1) of the embedding and residual dropouts (the
            Transformer) or of the dropout after the embedding and after each
            recurrent layer.
        conditional_classes: number of classes to condition on, or None.
        task: ``"generation"``.
        compile: ``True`` (Adam, next-token cross-entropy ignoring padding,
            token accuracy), ``False``, or a dict of ``annzoo.compile_model``
            arguments.
        name: the model's name.

    Returns:
        A ``keras.Model`` mapping ``tokens`` (and ``classes``) to
        ``predictions``.

    Example:
        >>> model = annzoo.build_language_model(120, sequence_length=21)
        >>> model.fit(*annzoo.generation.next_token_arrays(names, vocab, ...))
    """
    task = tasks.check_task(task, ("generation",))
    vocabulary_size = check_positive_int("vocabulary_size", vocabulary_size)
    architecture = check_choice("architecture", architecture, ARCHITECTURES)
    given = {"num_heads": num_heads, "ff_dim": ff_dim, "units": units}
    for argument, allowed in _ONLY_FOR.items():
        if given[argument] is not None and architecture not in allowed:
            raise AnnzooError(
                f"`{argument}` applies to architecture "
                f"{' or '.join(map(repr, allowed))} only; leave it unset for "
                f"architecture={architecture!r}. Received: "
                f"{argument}={given[argument]!r}"
            )
    if sequence_length is not None:
        sequence_length = check_positive_int("sequence_length", sequence_length)
    elif architecture == "transformer":
        raise AnnzooError(
            "`sequence_length` must be a positive integer for "
            "architecture='transformer' (the size of its position table). "
            "Received: sequence_length=None"
        )
    embedding_dim = check_positive_int("embedding_dim", embedding_dim)
    num_layers = check_positive_int("num_layers", num_layers)
    dropout = check_rate("dropout", dropout)
    if conditional_classes is not None:
        conditional_classes = check_positive_int(
            "conditional_classes", conditional_classes
        )
    if architecture == "transformer":
        num_heads = check_positive_int(
            "num_heads", _DEFAULT_HEADS if num_heads is None else num_heads
        )
        if embedding_dim % num_heads:
            raise AnnzooError(
                "`num_heads` must divide `embedding_dim` (each head has "
                f"embedding_dim // num_heads values). Received: num_heads="
                f"{num_heads}, embedding_dim={embedding_dim}"
            )
        ff_dim = check_positive_int(
            "ff_dim", 4 * embedding_dim if ff_dim is None else ff_dim
        )
    else:
        units = check_positive_int("units", _DEFAULT_UNITS if units is None else units)
    compile = check_compile(compile, task)
    name = check_name("name", name)
    check_parameter_terms(
        _weight_terms(
            vocabulary_size, sequence_length, embedding_dim, num_layers, ff_dim,
            units, architecture,
        )
    )  # fmt: skip

    tokens = keras.Input((sequence_length,), dtype="int32", name="tokens")
    inputs = [tokens]
    if architecture == "transformer":
        x = TokenAndPositionEmbedding(
            vocabulary_size,
            sequence_length,
            embedding_dim,
            kind="learned",
            mask_zero=True,
            name="embedding",
        )(tokens)
    else:
        x = keras.layers.Embedding(
            vocabulary_size, embedding_dim, mask_zero=True, name="embedding"
        )(tokens)
    if conditional_classes is not None:
        classes = keras.Input((1,), dtype="int32", name="classes")
        inputs.append(classes)
        # (batch, 1, d): broadcast over the steps by the addition.
        condition = keras.layers.Embedding(
            conditional_classes, embedding_dim, name="class_embedding"
        )(classes)
        x = keras.layers.Add(name="conditioned")([x, condition])
    if dropout:
        x = keras.layers.Dropout(dropout, name="embedding_dropout")(x)
    if architecture == "transformer":
        for i in range(1, num_layers + 1):
            block = TransformerEncoderBlock(
                num_heads,
                embedding_dim // num_heads,
                ff_dim,
                dropout=dropout,
                activation="gelu",
                norm_first=True,
                name=f"block{i}",
            )
            x = block(x, use_causal_mask=True)
        x = keras.layers.LayerNormalization(epsilon=1e-6, name="final_norm")(x)
    else:
        layer_class = getattr(keras.layers, RECURRENT[architecture])
        for i in range(1, num_layers + 1):
            x = layer_class(units, return_sequences=True, name=f"{architecture}{i}")(x)
            if dropout:
                x = keras.layers.Dropout(dropout, name=f"{architecture}{i}_dropout")(x)
    logits = keras.layers.Dense(vocabulary_size, name="head_logits")(x)
    outputs = keras.layers.Activation("softmax", dtype="float32", name="predictions")(
        logits
    )
    model = functional_model(
        inputs if len(inputs) > 1 else tokens,
        outputs,
        name=name,
        depth={"num_layers": num_layers},
    )
    return finish(model, task, compile)


def _weight_terms(
    vocabulary_size, sequence_length, embedding_dim, num_layers, ff_dim, units,
    architecture,
):  # fmt: skip
    """A lower bound of the weights, for `check_parameter_terms`."""
    vocab = ("vocabulary_size", vocabulary_size, vocabulary_size)
    embed = ("embedding_dim", embedding_dim, embedding_dim)
    layers = ("num_layers", num_layers, num_layers)
    terms = [(2 * vocabulary_size * embedding_dim, [vocab, embed])]
    if architecture == "transformer":
        terms.append((sequence_length * embedding_dim, [embed]))
        width = ("ff_dim", ff_dim, ff_dim)
        per_block = 4 * embedding_dim**2 + 2 * embedding_dim * ff_dim
        terms.append((num_layers * per_block, [embed, width, layers]))
    else:
        width = ("units", units, units)
        terms.append(
            (num_layers * 3 * (embedding_dim + units) * units, [width, layers])
        )
        terms.append((units * vocabulary_size, [vocab, width]))
    return terms


# -- running a built model one token at a time ----------------------------------


def architecture_of(model: Any) -> str:
    """``"transformer"``, ``"lstm"`` or ``"gru"`` for a model built by
    :func:`build_language_model`; an error naming ``model`` otherwise."""
    names = {layer.name: layer for layer in getattr(model, "layers", [])}
    found = None
    if isinstance(names.get("block1"), TransformerEncoderBlock):
        found = "transformer"
    for architecture, class_name in RECURRENT.items():
        if isinstance(names.get(f"{architecture}1"), getattr(keras.layers, class_name)):
            found = architecture
    input_names = [t.name for t in getattr(model, "inputs", None) or []]
    embedding, head = names.get("embedding"), names.get("head_logits")
    # A next-token model predicts over its own input vocabulary at every step
    # (a tagger of the same shape predicts tags).
    vocabulary = getattr(
        embedding, "vocabulary_size", getattr(embedding, "input_dim", 0)
    )
    if (
        found is None
        or input_names[:1] != ["tokens"]
        or len(getattr(model, "output_shape", ())) != 3
        or getattr(head, "units", -1) != vocabulary
    ):
        shown = getattr(model, "name", type(model).__name__)
        raise AnnzooError(
            "`model` must be a language model built by "
            "annzoo.build_language_model (a causal Transformer, LSTM or GRU "
            f"over `tokens`). Received: model={shown!r}"
        )
    return found


# Parameter formulas behind the references (Keras layers, biases included):
#   Embedding(V, d): V*d;  learned positions: T*d;  class embedding: C*d
#   pre-norm block, h heads of d/h: attention 4*d*d + 4*d, feed-forward
#     2*d*f + f + d, two LayerNorms 4*d;  final LayerNorm 2*d
#   LSTM(u) on n inputs: 4*(n*u + u*u + u);  GRU(u), reset_after: 3*(n*u + u*u + 2*u)
#   head Dense(V) on m inputs: m*V + V
PRESETS: dict[str, dict[str, Any]] = {
    "char_gpt": dict(
        description=(
            "Small character-level GPT: 100 ids (padding, <start>, <end>, "
            "<unk> and 96 characters), 128-character context, 4 pre-norm "
            "causal blocks of width 128 with 4 heads and a 512-wide GELU "
            "feed-forward, untied output layer."
        ),
        reference=Reference(
            params=835_428,
            kind="total",
            source=(
                "hand formula from the Keras layer definitions: embeddings "
                "100*128 + 128*128 = 29,184; 4 blocks of (4*128*128 + 4*128) + "
                "(2*128*512 + 512 + 128) + 4*128 = 198,272 each, 793,088; final "
                "LayerNorm 256; head 128*100 + 100 = 12,900; total 835,428"
            ),
        ),
        vocabulary_size=100,
        sequence_length=128,
        embedding_dim=128,
        num_layers=4,
        num_heads=4,
        ff_dim=512,
        dropout=0.1,
    ),
    "char_lstm_lm": dict(
        description=(
            "Character-level LSTM language model with the sizes of Karpathy's "
            "char-rnn defaults (2 layers of 128), over 100 ids and a 64-d "
            "character embedding; any length."
        ),
        reference=Reference(
            params=249_700,
            kind="total",
            source=(
                "hand formula from the Keras layer definitions: Embedding "
                "100*64 = 6,400; LSTM 4*(64*128 + 128*128 + 128) = 98,816; LSTM "
                "4*(128*128 + 128*128 + 128) = 131,584; head 128*100 + 100 = "
                "12,900; total 249,700"
            ),
        ),
        vocabulary_size=100,
        architecture="lstm",
        embedding_dim=64,
        num_layers=2,
        units=128,
        dropout=0.1,
    ),
    "surnames_lm": dict(
        description=(
            "Surname writer conditioned on the language: the embedded "
            "'surnames' dataset's 14 languages and its 116 characters plus "
            "padding, <start>, <end> and <unk> (120 ids); a language embedding "
            "added to each 64-d character embedding, 2 GRU layers of 128; "
            "names of any length."
        ),
        reference=Reference(
            params=197_624,
            kind="total",
            source=(
                "hand formula from the Keras layer definitions: Embedding "
                "120*64 = 7,680; class embedding 14*64 = 896; GRU with "
                "reset_after=True 3*(64*128 + 128*128 + 2*128) = 74,496; GRU "
                "3*(128*128 + 128*128 + 2*128) = 99,072; head 128*120 + 120 = "
                "15,480; total 197,624"
            ),
        ),
        vocabulary_size=120,
        architecture="gru",
        embedding_dim=64,
        num_layers=2,
        units=128,
        dropout=0.1,
        conditional_classes=14,
    ),
}

for _name, _preset in PRESETS.items():
    register_preset(_name, "language_model", **_preset)

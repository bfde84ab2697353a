"""Recurrent networks: many-to-one classifiers/regressors and many-to-many taggers.

One builder, :func:`build_rnn`, covers character- and word-level classifiers
(token ids through an ``Embedding``), time-series models (float features),
stacked and bidirectional ``SimpleRNN`` / ``GRU`` / ``LSTM`` layers, per-step
tagging and the Bi-LSTM + CRF tagger of Huang, Xu and Yu (2015) and Lample et
al. (2016). :func:`decode_tags` turns a CRF tagger's emissions into tags.
"""

from __future__ import annotations

from typing import Any

import keras
import numpy as np

from annzoo import tasks
from annzoo._checks import (
    check_bool,
    check_choice,
    check_input_shape,
    check_int_sequence,
    check_name,
    check_parameter_terms,
    check_positive_int,
    check_rate,
)
from annzoo.errors import AnnzooError
from annzoo.layers.crf import CRF, CRFLoss
from annzoo.models._common import (
    SEQUENCE_DROPOUT_RATES,
    check_compile,
    check_outputs,
    finish,
    functional_model,
    output_arguments,
    output_head,
    shape_arguments,
    token_arguments,
)
from annzoo.registry import FamilySpec, Reference, register, register_preset

__all__ = ["build_rnn", "decode_tags"]

CELLS = {"lstm": "LSTM", "gru": "GRU", "simple": "SimpleRNN"}
OUTPUTS = ("last", "sequence")
PAD_ID = 0


def _shapes(config: dict[str, Any]) -> dict[str, tuple]:
    """Input and output shapes of an ``rnn`` config, for ``model_info``."""
    input_shape = config["input_shape"]
    input_shape = (input_shape,) if isinstance(input_shape, int) else input_shape
    num_outputs = config["num_outputs"]
    if config.get("output", "last") == "sequence":
        return {
            "input_shape": input_shape,
            "output_shape": (input_shape[0], num_outputs),
        }
    return {"input_shape": input_shape, "output_shape": (num_outputs,)}


def _check_input(input_shape: Any, vocabulary_size: int | None) -> tuple:
    if vocabulary_size is not None:
        input_shape = check_input_shape("input_shape", input_shape, rank=1)
    else:
        input_shape = check_input_shape("input_shape", input_shape, rank=2)
        if input_shape[1] is None:
            raise AnnzooError(
                "`input_shape` must be (steps, features) with a known number of "
                f"features (steps may be None). Received: input_shape={input_shape}"
            )
    return input_shape


def _dataset_arguments(train: Any) -> dict[str, Any]:
    if train.vocabulary is not None:
        args = token_arguments(train, length=None)
    else:
        args = shape_arguments(train)
    return {**args, **output_arguments(train, width="num_outputs")}


SPEC = FamilySpec(
    tasks=tasks.SAMPLE_TASKS,
    data=("sample", "tagging"),
    dataset_arguments=_dataset_arguments,
    search_space={
        "cell": ["gru", "lstm"],
        "units": {"type": "layers", "depth": [1, 2], "values": [32, 64, 128]},
        "bidirectional": {"type": "boolean"},
        "embedding_dim": [32, 64, 128],
        "dropout": SEQUENCE_DROPOUT_RATES,
    },
    # An embedding exists only for token inputs.
    space_requires={"embedding_dim": "vocabulary_size"},
    smoke=dict(
        input_shape=(6,),
        num_outputs=3,
        vocabulary_size=12,
        embedding_dim=4,
        units=(8,),
    ),  # fmt: skip
    predict=("arrays", "text"),
    report=("confusion_matrix", "entities"),
    shapes=_shapes,
)


@register("rnn", spec=SPEC)
def build_rnn(
    input_shape: int | tuple[int | None, ...],
    num_outputs: int,
    *,
    vocabulary_size: int | None = None,
    embedding_dim: int = 64,
    cell: str = "lstm",
    units: int | tuple[int, ...] = (64,),
    bidirectional: bool = False,
    dropout: float = 0.0,
    recurrent_dropout: float = 0.0,
    output: str = "last",
    crf: bool = False,
    task: str = "multiclass",
    compile: bool | dict = True,
    name: str = "rnn",
) -> keras.Model:
    """Builds a recurrent network: embedding (for tokens), recurrent stack, head.

    Input contract:

    * Tokens (``vocabulary_size`` given): input ``tokens``, int32 ids of shape
      ``(steps,)`` (``steps`` may be None), in ``[0, vocabulary_size)``. **Id 0
      is padding**: the ``Embedding`` has ``mask_zero=True``, so padded steps
      are skipped by the recurrent layers (the state passes through them
      unchanged), whether the padding is at the end or at the start.
    * Series (``vocabulary_size=None``): input ``series``, float32 of shape
      ``(steps, features)``, already scaled; no masking.

    Outputs:

    * ``output="last"`` (many-to-one): the last state of the top recurrent layer
      feeds the task head: ``(num_outputs,)`` probabilities (classification)
      or values (regression, forecasting).
    * ``output="sequence"`` (many-to-many tagging): a Dense head at every
      step, ``(steps, num_outputs)``. With token inputs, the embedding's mask
      reaches the loss (Keras propagates it), so padded steps do not count in
      the loss: their labels can be anything.
    * ``crf=True`` (with ``output="sequence"`` and ``task="multiclass"``):
      ``head_logits`` emission scores go through an :class:`annzoo.layers.CRF`
      layer named ``crf``; the model is compiled with
      ``CRFLoss(crf)`` (tags padded with **-1**) and no metric.
      ``model.predict`` returns the emissions, not probabilities;
      :func:`decode_tags` returns the Viterbi tags (-1 at padded steps). To
      recompile, pass ``loss=CRFLoss(model.get_layer("crf"))``.

    Args:
        input_shape: ``(steps,)`` for tokens, ``(steps, features)`` for series;
            ``steps`` may be None (any length).
        num_outputs: classes for ``"multiclass"`` (tags when tagging), labels
            for ``"binary"``, targets for ``"regression"``.
        vocabulary_size: number of token ids, padding id 0 included; None for
            float series.
        embedding_dim: size of the token embedding (tokens only).
        cell: ``"lstm"``, ``"gru"`` (Keras' default ``reset_after=True``
            variant) or ``"simple"`` (``SimpleRNN``, tanh).
        units: state size of each recurrent layer; its length is the depth.
            With ``bidirectional=True`` each direction has this size.
        bidirectional: wrap each recurrent layer in ``Bidirectional``
            (forward and backward outputs concatenated).
        dropout: rate in [0, 1) of dropout on the inputs of each recurrent
            layer (Keras' ``dropout`` argument of the cell).
        recurrent_dropout: rate in [0, 1) of dropout on the recurrent state.
        output: ``"last"`` or ``"sequence"``.
        crf: put a linear-chain CRF on top of a ``"sequence"`` tagger.
        task: ``"binary"``, ``"multiclass"`` or ``"regression"``.
        compile: ``True`` compiles with the task's defaults (CRF loss for a
            CRF tagger), ``False`` returns the model uncompiled, a dict is
            passed to ``annzoo.compile_model``.
        name: the model's name.

    Returns:
        A ``keras.Model`` mapping ``tokens`` (or ``series``) to
        ``predictions`` (or, with ``crf=True``, to the ``crf`` emissions).

    Example:
        >>> model = annzoo.build_rnn((None,), 18, vocabulary_size=59, cell="gru")
        >>> model.fit(padded_char_ids, language_ids, epochs=10)
    """
    task = tasks.check_task(task, tasks.SAMPLE_TASKS)
    if vocabulary_size is not None:
        vocabulary_size = check_positive_int("vocabulary_size", vocabulary_size)
        embedding_dim = check_positive_int("embedding_dim", embedding_dim)
    input_shape = _check_input(input_shape, vocabulary_size)
    num_outputs = check_outputs("num_outputs", num_outputs, task)
    cell = check_choice("cell", cell, CELLS)
    units = check_int_sequence("units", units, allow_empty=False)
    bidirectional = check_bool("bidirectional", bidirectional)
    dropout = check_rate("dropout", dropout)
    recurrent_dropout = check_rate("recurrent_dropout", recurrent_dropout)
    output = check_choice("output", output, OUTPUTS)
    crf = check_bool("crf", crf)
    if crf and (output != "sequence" or task != "multiclass"):
        raise AnnzooError(
            "`crf` needs output='sequence' and task='multiclass' (a CRF "
            f"scores tag sequences). Received: crf=True, output={output!r}, "
            f"task={task!r}"
        )
    compile = check_compile(compile, task)
    check_parameter_terms(
        _weight_terms(
            input_shape, num_outputs, vocabulary_size, embedding_dim, cell, units,
            bidirectional,
        )
    )  # fmt: skip
    name = check_name("name", name)

    if vocabulary_size is not None:
        inputs = keras.Input(input_shape, dtype="int32", name="tokens")
        x = keras.layers.Embedding(
            vocabulary_size, embedding_dim, mask_zero=True, name="embedding"
        )(inputs)
    else:
        inputs = keras.Input(input_shape, name="series")
        x = inputs

    layer_class = getattr(keras.layers, CELLS[cell])
    for i, width in enumerate(units, start=1):
        last = i == len(units)
        layer = layer_class(
            width,
            dropout=dropout,
            recurrent_dropout=recurrent_dropout,
            return_sequences=output == "sequence" or not last,
            name=f"{cell}{i}",
        )
        if bidirectional:
            layer = keras.layers.Bidirectional(layer, name=f"bidirectional{i}")
        x = layer(x)

    if crf:
        emissions = keras.layers.Dense(num_outputs, name="head_logits")(x)
        crf_layer = CRF(num_outputs, name="crf")
        model = functional_model(
            inputs, crf_layer(emissions), name=name, depth={"units": units}
        )
        if compile is False or compile is None:
            return model
        options = {} if compile is True else dict(compile)
        options.setdefault("loss", CRFLoss(crf_layer))
        options.setdefault("metrics", [])
        return finish(model, task, options)

    # Dense acts on the last axis, so on a sequence it is applied at every
    # step (what TimeDistributed(Dense) does) and it passes the mask on.
    outputs = output_head(x, num_outputs, task)
    model = functional_model(inputs, outputs, name=name, depth={"units": units})
    return finish(model, task, compile)


def _weight_terms(
    input_shape, num_outputs, vocabulary_size, embedding_dim, cell, units,
    bidirectional,
):  # fmt: skip
    """A lower bound of `build_rnn`'s weights (the embedding, the recurrent
    and output kernels), for `annzoo._checks.check_parameter_terms`."""
    terms = []
    if vocabulary_size is not None:
        vocab = ("vocabulary_size", vocabulary_size, vocabulary_size)
        embed = ("embedding_dim", embedding_dim, embedding_dim)
        terms.append((vocabulary_size * embedding_dim, [vocab, embed]))
        fan_in, source = embedding_dim, embed
    else:
        features = input_shape[-1] or 1
        fan_in, source = features, ("input_shape", input_shape, features)
    gates = {"lstm": 4, "gru": 3, "simple": 1}[cell]
    directions = 2 if bidirectional else 1
    for width in units:
        layer = ("units", units, width)
        count = directions * gates * (fan_in + width) * width
        terms.append((count, [source, layer]))
        fan_in, source = directions * width, layer
    outputs = ("num_outputs", num_outputs, num_outputs)
    terms.append((fan_in * num_outputs, [source, outputs]))
    return terms


def decode_tags(model: keras.Model, x: Any, *, batch_size: int = 32) -> np.ndarray:
    """The best (Viterbi) tag path of each sequence for a CRF tagger.

    Args:
        model: a model built with ``crf=True`` (its ``predict`` gives the
            emissions).
        x: int token ids ``(batch, steps)``, 0 at padded steps.
        batch_size: passed to ``model.predict``.

    Returns:
        int32 ``(batch, steps)`` tags, -1 at padded steps (``x == 0``).

    Example:
        >>> tags = decode_tags(tagger, tokens)
    """
    layers = [layer for layer in model.layers if isinstance(layer, CRF)]
    if len(layers) != 1:
        raise AnnzooError(
            "`model` must have exactly one annzoo.layers.CRF layer (build it with "
            f"crf=True). Received: model={model.name!r} with {len(layers)} CRF layers"
        )
    return tasks.get_task("tagging").predict(model, x, batch_size=batch_size)


# Parameter formulas behind the references (Keras layers, biases included):
#   Embedding(V, d):                 V * d
#   GRU(u) on d inputs, reset_after: 3 * (d*u + u*u + 2*u)   (two bias vectors)
#   LSTM(u) on d inputs:             4 * (d*u + u*u + u)
#   Bidirectional: twice the layer; Dense(n) on m inputs: m*n + n
#   CRF(n): n*n transitions + n start + n end
PRESETS: dict[str, dict[str, Any]] = {
    "char_rnn": dict(
        description=(
            "Character-level GRU classifier of surnames by language, after the "
            "PyTorch tutorial 'Classifying Names with a Character-Level RNN' "
            '(18 languages; 57 characters: ASCII letters and " .,;\'"). Token '
            "ids: 57 characters + padding (0) + out-of-vocabulary = 59; "
            "Embedding(59, 32) -> GRU(128) -> Dense(18, softmax); any length."
        ),
        reference=Reference(
            params=66_418,
            kind="total",
            source=(
                "hand formula from the Keras layer definitions: Embedding 59*32 "
                "= 1,888; GRU with reset_after=True 3*(32*128 + 128*128 + 2*128) "
                "= 62,208; Dense 128*18 + 18 = 2,322; total 66,418"
            ),
        ),
        input_shape=(None,),
        num_outputs=18,
        vocabulary_size=59,
        embedding_dim=32,
        cell="gru",
        units=(128,),
    ),
    "imdb_bilstm": dict(
        description=(
            "keras.io 'Bidirectional LSTM on IMDB': 20,000-word vocabulary, "
            "reviews cut/padded to 200 tokens, Embedding(20000, 128) -> "
            "BiLSTM(64, sequences) -> BiLSTM(64) -> Dense(1, sigmoid)."
        ),
        reference=Reference(
            params=2_757_761,
            kind="total",
            source=(
                "keras.io/examples/nlp/bidirectional_lstm_imdb, model.summary(): "
                "'Total params: 2,757,761' (= 20000*128 + 2*2*4*(128*64 + 64*64 "
                "+ 64) + 129)"
            ),
        ),
        input_shape=(200,),
        num_outputs=1,
        vocabulary_size=20_000,
        embedding_dim=128,
        cell="lstm",
        units=(64, 64),
        bidirectional=True,
        task="binary",
    ),
    "bilstm_crf_tagger": dict(
        description=(
            "Bi-LSTM + CRF named-entity tagger (Lample et al. 2016 sizes: "
            "100-d word embeddings, 100 LSTM units per direction) over a "
            "5,000-word vocabulary (id 0 padding), 9 CoNLL-2003 BIO tags "
            "(O + B/I x PER, ORG, LOC, MISC); any sentence length. predict "
            "gives emissions; annzoo.models.rnn.decode_tags gives tags."
        ),
        reference=Reference(
            params=662_708,
            kind="total",
            source=(
                "hand formula from the Keras layer definitions: Embedding "
                "5000*100 = 500,000; BiLSTM 2*4*(100*100 + 100*100 + 100) = "
                "160,800; Dense 200*9 + 9 = 1,809; CRF 9*9 + 9 + 9 = 99; "
                "total 662,708"
            ),
        ),
        input_shape=(None,),
        num_outputs=9,
        vocabulary_size=5_000,
        embedding_dim=100,
        cell="lstm",
        units=(100,),
        bidirectional=True,
        output="sequence",
        crf=True,
    ),
}

for _name, _preset in PRESETS.items():
    register_preset(_name, "rnn", **_preset)

"""Image captioning with attention over image regions ("Show, Attend and Tell").

:func:`build_captioner` follows Xu et al. (2015): a convolutional encoder turns
the image into a grid of feature vectors (regions), the decoder's initial
state comes from their mean, and a recurrent decoder attends over the regions
at every word. The decoder is :func:`annzoo.models.seq2seq.attention_decoder`,
shared with the translator.
"""

from __future__ import annotations

from typing import Any

import keras

from annzoo._checks import (
    check_input_shape,
    check_int_sequence,
    check_name,
    check_parameter_terms,
    check_positive_int,
)
from annzoo.errors import AnnzooError
from annzoo.models._common import (
    SEQUENCE_DROPOUT_RATES,
    check_compile,
    finish,
    functional_model,
    shape_arguments,
    target_arguments,
)
from annzoo.models.cnn import _check_spatial_size, _conv_bn_act
from annzoo.models.seq2seq import (
    attention_decoder,
    check_decoder_arguments,
    check_dot_attention,
    decoder_initial_state,
    decoder_weight_terms,
)
from annzoo.registry import FamilySpec, Reference, register, register_preset

__all__ = ["build_captioner"]


def _shapes(config: dict[str, Any]) -> dict[str, tuple]:
    """Input and output shapes of a ``captioner`` config, for ``model_info``."""
    length = config["sequence_length"]
    # Two inputs: (images, decoder_tokens).
    return {
        "input_shape": (tuple(config["input_shape"]), (length,)),
        "output_shape": (length, config["vocabulary_size"]),
    }


def _dataset_arguments(train: Any) -> dict[str, Any]:
    # The captions are the captioner's only vocabulary.
    return {**shape_arguments(train), **target_arguments(train, prefix="")}


SPEC = FamilySpec(
    tasks=("sequence",),
    data=("sequence",),
    dataset_arguments=_dataset_arguments,
    search_space={
        "filters": {"type": "layers", "depth": [2, 3], "values": [16, 32, 64]},
        "cell": ["gru", "lstm"],
        "units": [64, 128],
        "embedding_dim": [32, 64],
        "attention": ["bahdanau", "luong_general"],
        "dropout": SEQUENCE_DROPOUT_RATES,
    },
    smoke=dict(
        input_shape=(16, 16, 3),
        vocabulary_size=10,
        sequence_length=5,
        filters=(4, 8),
        embedding_dim=4,
        units=8,
    ),  # fmt: skip
    # Captions are decoded with annzoo.decode(model, images); `annzoo predict`
    # has no image-to-caption path.
    predict=(),
    report=("decoded", "attention"),
    shapes=_shapes,
)


@register("captioning", spec=SPEC)
def build_captioner(
    input_shape: tuple[int, int, int],
    vocabulary_size: int,
    sequence_length: int,
    *,
    filters: int | tuple[int, ...] = (32, 64, 128),
    embedding_dim: int = 64,
    units: int = 128,
    cell: str = "gru",
    attention: str = "bahdanau",
    dropout: float = 0.0,
    task: str = "sequence",
    compile: bool | dict = True,
    name: str = "captioner",
) -> keras.Model:
    """Builds a "Show, Attend and Tell" captioner (Xu et al. 2015), small scale.

    Encoder: one stage per entry of ``filters``, each a 3x3 convolution,
    batch normalization, ReLU and 2x2 max pooling (``block{i}_conv1``,
    ``block{i}_pool``, the plain stages of :func:`annzoo.build_cnn`); the last
    feature map, ``(grid_height, grid_width, filters[-1])``, is the layer
    ``encoder_features`` (``model.get_layer("encoder_features").output.shape
    [1:3]`` is the attention grid), reshaped by ``regions`` into
    ``grid_height * grid_width`` region vectors in row-major order. Xu et
    al. use a pretrained VGG's 14x14x512 map; this encoder is trained with
    the decoder.

    Decoder: the initial state is ``decoder_init_h`` (and ``decoder_init_c``
    for an LSTM), ``Dense(units, tanh)`` of the mean region
    (``regions_mean``), as in Xu et al.; then
    :func:`annzoo.models.seq2seq.attention_decoder`: ``decoder_embedding`` ->
    ``decoder_{cell}`` -> ``attention`` (:class:`annzoo.layers.
    RecurrentAttention`, returning ``[context, weights]`` with weights
    ``(batch, sequence_length, grid_height * grid_width)``) ->
    ``attentional_hidden`` = ``tanh(W_c [context; h_t])`` -> ``head_logits``
    -> softmax ``predictions``. Unlike Xu et al. (whose LSTM reads the
    context), the context enters after the recurrent layer (Luong et al.
    2015), which keeps the decoder causal and shared with the translator.

    Input contract: ``images`` float32 ``input_shape`` (height, width,
    channels; channels last, already scaled, e.g. to [0, 1]), height and
    width at least ``2 ** len(filters)``; ``decoder_tokens`` int32
    ``(sequence_length,)`` in ``[0, vocabulary_size)``, id 0 padding at the
    end: the caption shifted right with ``"<start>"`` first
    (:func:`annzoo.text.shift_right`); the labels are the caption ids
    (words, ``"<end>"``, padding).

    Args:
        input_shape: ``(height, width, channels)`` of the images.
        vocabulary_size: number of caption token ids, padding included.
        sequence_length: length of the decoder sequences.
        filters: channels of each encoder stage; its length is the depth
            (each stage halves the grid).
        embedding_dim: size of the word embedding.
        units: state size of the decoder, of the additive attention's hidden
            layer and of the attentional hidden state.
        cell: ``"gru"`` or ``"lstm"``.
        attention: ``"bahdanau"`` (additive), ``"luong"`` (dot; needs
            ``filters[-1] == units``) or ``"luong_general"``. A captioner
            always attends.
        dropout: rate in [0, 1) on the inputs of the recurrent layer and
            before ``head_logits``.
        task: ``"sequence"`` (the only one).
        compile: ``True``, ``False`` or a dict of ``annzoo.compile_model``
            arguments.
        name: the model's name.

    Returns:
        A ``keras.Model`` mapping ``{"images", "decoder_tokens"}`` to
        ``predictions`` ``(sequence_length, vocabulary_size)``.

    Example:
        >>> model = annzoo.build_captioner((32, 32, 3), 20, 9)
        >>> model.fit({"images": x, "decoder_tokens": shift_right(y, 1)}, y)
    """
    input_shape = check_input_shape("input_shape", input_shape, rank=3)
    if None in input_shape:
        raise AnnzooError(
            "`input_shape` must be fully known (the regions are a fixed grid). "
            f"Received: input_shape={input_shape}"
        )
    vocabulary_size = check_positive_int("vocabulary_size", vocabulary_size)
    sequence_length = check_positive_int("sequence_length", sequence_length)
    filters = check_int_sequence("filters", filters, allow_empty=False)
    if attention is None or attention == "none":
        raise AnnzooError(
            "`attention` must be 'bahdanau', 'luong' or 'luong_general': a "
            "captioner attends over image regions. Received: "
            f"attention={attention!r}"
        )
    embedding_dim, units, cell, attention, dropout, task = check_decoder_arguments(
        embedding_dim, units, cell, attention, dropout, task
    )
    check_dot_attention(attention, units, filters[-1], "the regions (filters[-1])")
    # 3x3 'same' convolutions and 2x2 pools: fails naming `input_shape` when
    # the grid would vanish.
    _check_spatial_size(
        input_shape, (1,) * len(filters), "plain", 3, 1, "same", "max", "none"
    )
    # A lower bound of the weights (convolution kernels and the decoder's),
    # refused before anything is allocated.
    terms, fan_in = [], ("input_shape", input_shape, input_shape[2])
    for width in filters:
        layer = ("filters", filters, width)
        terms.append((9 * fan_in[2] * width, [fan_in, layer]))
        fan_in = layer
    check_parameter_terms(
        terms + decoder_weight_terms(vocabulary_size, embedding_dim, units, cell)
    )
    compile = check_compile(compile, task)
    name = check_name("name", name)

    images = keras.Input(input_shape, name="images")
    x = images
    for i, width in enumerate(filters, start=1):
        x = _conv_bn_act(x, width, 3, 1, "same", True, "relu", f"block{i}_conv1")
        x = keras.layers.MaxPooling2D(2, name=f"block{i}_pool")(x)
    x = keras.layers.Identity(name="encoder_features")(x)
    grid_height, grid_width, channels = x.shape[1:]
    regions = keras.layers.Reshape(
        (grid_height * grid_width, channels), name="regions"
    )(x)
    mean = keras.layers.GlobalAveragePooling1D(name="regions_mean")(regions)
    decoder_tokens = keras.Input(
        (sequence_length,), dtype="int32", name="decoder_tokens"
    )
    outputs = attention_decoder(
        decoder_tokens,
        regions,
        decoder_initial_state(mean, cell, units),
        vocabulary_size=vocabulary_size,
        embedding_dim=embedding_dim,
        units=units,
        cell=cell,
        attention=attention,
        dropout=dropout,
    )
    model = functional_model(
        {"images": images, "decoder_tokens": decoder_tokens},
        outputs,
        name=name,
        depth={"filters": filters},
    )
    return finish(model, task, compile)


PRESETS: dict[str, dict[str, Any]] = {
    "captioner": dict(
        description=(
            "Show, Attend and Tell style captioner for 32x32 RGB images and the "
            "embedded 'shapes_captions' dataset (20 caption ids, 9 steps): "
            "three conv-BN-ReLU-pool stages (32, 64, 128 filters) give a 4x4 "
            "grid of 16 regions; GRU(128) decoder with Bahdanau attention."
        ),
        reference=Reference(
            params=254_580,
            kind="total",
            source=(
                "count by formula (Keras layers; batch-norm moving statistics "
                "included; GRU reset_after=True): convolutions without bias "
                "9*3*32 + 9*32*64 + 9*64*128 = 93,024; batch norm "
                "4*(32 + 64 + 128) = 896; decoder_init_h 128*128 + 128 = "
                "16,512; embedding 20*64 = 1,280; GRU 3*(64*128 + 128*128 + "
                "2*128) = 74,496; additive attention 128*128 + 128*128 + 2*128 "
                "= 33,024; attentional hidden state 256*128 = 32,768; output "
                "128*20 + 20 = 2,580; total 254,580"
            ),
        ),
        input_shape=(32, 32, 3),
        vocabulary_size=20,
        sequence_length=9,
        filters=(32, 64, 128),
        embedding_dim=64,
        units=128,
        cell="gru",
        attention="bahdanau",
    ),
}

for _name, _preset in PRESETS.items():
    register_preset(_name, "captioning", **_preset)

"""The graphs of the transformer family's three variants (encoder classifier,
encoder-decoder translator, Vision Transformer), built from annzoo.layers;
:func:`annzoo.models.transformer.build_transformer` checks the arguments and
picks one."""

from __future__ import annotations

import keras

from annzoo.layers import (
    ClassToken,
    PatchEmbedding,
    PositionEmbedding,
    TokenAndPositionEmbedding,
    TransformerDecoderBlock,
    TransformerEncoderBlock,
)
from annzoo.models._common import dense_stack, functional_model, output_head


def _classifier_head(x, num_classes, hidden_units, dropout, task):
    # Dropout, then ReLU hidden layers each followed by dropout (keras.io).
    # (Without hidden layers, dense_stack would drop the features a second time.)
    if dropout:
        x = keras.layers.Dropout(dropout, name="head_dropout")(x)
    if hidden_units:
        x = dense_stack(
            x, hidden_units, activation="relu", dropout=dropout, prefix="head_dense"
        )
    return output_head(x, num_classes, task)


def _encoder_stack(x, num_layers, block_options, prefix):
    for i in range(1, num_layers + 1):
        x = TransformerEncoderBlock(**block_options, name=f"{prefix}_block{i}")(x)
    return x


def _embed(tokens, vocabulary_size, sequence_length, d_model, position, dropout, name):
    x = TokenAndPositionEmbedding(
        vocabulary_size,
        sequence_length,
        d_model,
        kind=position,
        mask_zero=True,
        name=name,
    )(tokens)
    if dropout:
        x = keras.layers.Dropout(dropout, name=f"{name}_dropout")(x)
    return x


def _encoder_classifier(
    vocabulary_size,
    sequence_length,
    num_classes,
    d_model,
    num_layers,
    position,
    block_options,
    hidden_units,
    task,
    name,
):
    tokens = keras.Input((sequence_length,), dtype="int32", name="tokens")
    x = _embed(
        tokens,
        vocabulary_size,
        sequence_length,
        d_model,
        position,
        0.0,  # the keras.io example has no embedding dropout
        "embedding",
    )
    x = _encoder_stack(x, num_layers, block_options, "encoder")
    # Masked mean: padded positions are excluded from the average.
    x = keras.layers.GlobalAveragePooling1D(name="pool")(x)
    outputs = _classifier_head(
        x,
        num_classes,
        hidden_units,
        block_options["dropout"],
        task,
    )
    depth = {"num_layers": num_layers, "hidden_units": hidden_units}
    return functional_model(tokens, outputs, name=name, depth=depth)


def _translator(source, target, d_model, layers, position, block_options, name):
    (source_vocabulary, source_length), (target_vocabulary, target_length) = (
        source,
        target,
    )
    encoder_layers, decoder_layers = layers
    dropout = block_options["dropout"]
    encoder_tokens = keras.Input((source_length,), dtype="int32", name="encoder_tokens")
    decoder_tokens = keras.Input((target_length,), dtype="int32", name="decoder_tokens")
    context = _embed(
        encoder_tokens,
        source_vocabulary,
        source_length,
        d_model,
        position,
        dropout,
        "encoder_embedding",
    )
    context = _encoder_stack(context, encoder_layers, block_options, "encoder")
    x = _embed(
        decoder_tokens,
        target_vocabulary,
        target_length,
        d_model,
        position,
        dropout,
        "decoder_embedding",
    )
    for i in range(1, decoder_layers + 1):
        x = TransformerDecoderBlock(**block_options, name=f"decoder_block{i}")(
            x, context
        )
    outputs = output_head(x, target_vocabulary, "multiclass")
    return functional_model(
        {"encoder_tokens": encoder_tokens, "decoder_tokens": decoder_tokens},
        outputs,
        name=name,
        depth={"num_layers": encoder_layers, "decoder_layers": decoder_layers},
    )


def _vit(
    input_shape,
    patch_size,
    num_classes,
    d_model,
    num_layers,
    block_options,
    hidden_units,
    task,
    name,
):
    images = keras.Input(input_shape, name="images")
    x = PatchEmbedding(patch_size, d_model, name="patch_embedding")(images)
    num_patches = x.shape[1]
    x = ClassToken(name="class_token")(x)
    positions = PositionEmbedding(
        num_patches + 1,
        d_model,
        embeddings_initializer=keras.initializers.RandomNormal(stddev=0.02),
        name="position_embedding",
    )(x)
    x = keras.layers.Add(name="add_position")([x, positions])
    if block_options["dropout"]:
        x = keras.layers.Dropout(block_options["dropout"], name="embedding_dropout")(x)
    x = _encoder_stack(x, num_layers, block_options, "encoder")
    x = keras.layers.LayerNormalization(epsilon=1e-6, name="encoder_norm")(x)
    # The [CLS] position: crop the patches away, then drop the length-1 axis.
    x = keras.layers.Cropping1D((0, num_patches), name="class_token_output")(x)
    x = keras.layers.Flatten(name="class_token_features")(x)
    outputs = _classifier_head(
        x,
        num_classes,
        hidden_units,
        0.0,  # ViT has no dropout before its head
        task,
    )
    depth = {"num_layers": num_layers, "hidden_units": hidden_units}
    return functional_model(images, outputs, name=name, depth=depth)


def weight_terms(
    variant: str,
    *,
    d_model: int,
    num_heads: int,
    key_dim: int,
    key_dim_given: bool,
    ff_dim: int,
    num_layers: int,
    decoder_layers: int = 0,
    position: str = "learned",
    vocabulary_size: int = 0,
    sequence_length: int = 0,
    target_vocabulary_size: int = 0,
    target_sequence_length: int = 0,
    input_shape: tuple = (),
    patch_size: tuple = (),
    hidden_units: tuple = (),
    num_classes: int = 0,
) -> list[tuple[int, list[tuple]]]:
    """A lower bound of a variant's weights, block by block, for
    `annzoo._checks.check_parameter_terms`: embeddings, attention and
    feed-forward kernels, the head (biases and norms left out)."""
    d = ("d_model", d_model, d_model)
    heads = [("num_heads", num_heads, num_heads)]
    if key_dim_given:  # else key_dim = d_model // num_heads, charged to those
        heads.append(("key_dim", key_dim, key_dim))
    ff = ("ff_dim", ff_dim, ff_dim)
    attention = 4 * d_model * num_heads * key_dim  # query, key, value, output
    feed_forward = 2 * d_model * ff_dim
    terms = []

    def blocks(count, name, attentions):
        depth = (name, count, count)
        terms.append((count * attentions * attention, [d, *heads, depth]))
        terms.append((count * feed_forward, [d, ff, depth]))

    def tokens(vocabulary, vocab_value, length, length_value):
        terms.append(
            (vocab_value * d_model, [(vocabulary, vocab_value, vocab_value), d])
        )
        if position == "learned":
            terms.append(
                (length_value * d_model, [(length, length_value, length_value), d])
            )

    blocks(num_layers, "num_layers", 1)
    if variant == "encoder_decoder":
        blocks(decoder_layers, "decoder_layers", 2)
        tokens("vocabulary_size", vocabulary_size, "sequence_length", sequence_length)
        tokens(
            "target_vocabulary_size",
            target_vocabulary_size,
            "target_sequence_length",
            target_sequence_length,
        )
        target = (
            "target_vocabulary_size",
            target_vocabulary_size,
            target_vocabulary_size,
        )
        terms.append((d_model * target_vocabulary_size, [target, d]))
        return terms
    if variant == "vit":
        (height, width, channels), (ph, pw) = input_shape, patch_size
        channels = channels or 1  # unknown: Keras refuses it when building
        shape = ("input_shape", input_shape, max(channels, height * width))
        patch = ("patch_size", patch_size, ph * pw)
        terms.append((ph * pw * channels * d_model, [patch, shape, d]))
        patches = (height // ph) * (width // pw) + 1
        terms.append((patches * d_model, [("input_shape", input_shape, patches), d]))
    else:
        tokens("vocabulary_size", vocabulary_size, "sequence_length", sequence_length)
    fan_in, source = d_model, d
    for units in hidden_units:
        layer = ("hidden_units", hidden_units, units)
        terms.append((fan_in * units, [source, layer]))
        fan_in, source = units, layer
    outputs = ("num_classes", num_classes, num_classes)
    terms.append((fan_in * num_classes, [source, outputs]))
    return terms  # fmt: skip

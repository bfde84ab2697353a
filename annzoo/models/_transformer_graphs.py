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
from annzoo.models._common import dense_stack, output_head


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
    return keras.Model(tokens, outputs, name=name)


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
    return keras.Model(
        {"encoder_tokens": encoder_tokens, "decoder_tokens": decoder_tokens},
        outputs,
        name=name,
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
    return keras.Model(images, outputs, name=name)

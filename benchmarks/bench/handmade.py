"""The benchmark networks written by hand in plain Keras, the way a user would.

Each function takes the sizes of an annzoo model and builds the same layers
with ``keras.Sequential`` or the functional API, nothing from annzoo: Dense
layers carry their activation, Keras' own ``MultiHeadAttention``, a position
embedding written as in the keras.io examples. `check_twins` makes sure the
twin has the annzoo model's parameter count, so a benchmark never compares
different networks.
"""

from __future__ import annotations

import keras
from keras import layers, ops


def compile_like(model: keras.Model, *, learning_rate, compile_settings: dict):
    """Compiles a hand-written multiclass model as annzoo compiles its twin."""
    optimizer = keras.optimizers.Adam(
        **({} if learning_rate is None else {"learning_rate": learning_rate})
    )
    model.compile(
        optimizer=optimizer,
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
        jit_compile=compile_settings["jit_compile"],
        steps_per_execution=compile_settings["steps_per_execution"],
    )
    return model


def mlp(input_shape, num_outputs, *, hidden_units, dropout, activation="relu"):
    model = keras.Sequential([keras.Input(tuple(input_shape))], name="hand_mlp")
    if len(input_shape) > 1:
        model.add(layers.Flatten())
    if not hidden_units and dropout:
        model.add(layers.Dropout(dropout))
    for units in hidden_units:
        model.add(layers.Dense(units, activation=activation))
        if dropout:
            model.add(layers.Dropout(dropout))
    model.add(layers.Dense(num_outputs, activation="softmax"))
    return model


def cnn(
    input_shape,
    num_classes,
    *,
    filters,
    kernel_size,
    batch_norm,
    hidden_units,
    dropout,
    activation="relu",
):
    """Plain stages: conv (no bias under batch norm), BN, ReLU, 2x2 max pooling."""
    model = keras.Sequential([keras.Input(tuple(input_shape))], name="hand_cnn")
    for width in filters:
        model.add(
            layers.Conv2D(
                width, kernel_size, padding="same", use_bias=not batch_norm,
                activation=None if batch_norm else activation,
            )
        )  # fmt: skip
        if batch_norm:
            model.add(layers.BatchNormalization())
            model.add(layers.Activation(activation))
        model.add(layers.MaxPooling2D(2))
    model.add(layers.Flatten())
    if not hidden_units and dropout:
        model.add(layers.Dropout(dropout))
    for units in hidden_units:
        model.add(layers.Dense(units, activation=activation))
        if dropout:
            model.add(layers.Dropout(dropout))
    model.add(layers.Dense(num_classes, activation="softmax"))
    return model


def rnn(sequence_length, num_outputs, *, vocabulary_size, embedding_dim, cell, units):
    recurrent = {"lstm": layers.LSTM, "gru": layers.GRU, "simple": layers.SimpleRNN}
    model = keras.Sequential(
        [
            keras.Input((sequence_length,), dtype="int32"),
            layers.Embedding(vocabulary_size, embedding_dim, mask_zero=True),
        ],
        name="hand_rnn",
    )
    for i, width in enumerate(units, start=1):
        model.add(recurrent[cell](width, return_sequences=i < len(units)))
    model.add(layers.Dense(num_outputs, activation="softmax"))
    return model


class PositionEmbedding(layers.Layer):
    """Adds a learned embedding of each position (keras.io's text examples)."""

    def __init__(self, sequence_length, output_dim, **kwargs):
        super().__init__(**kwargs)
        self.positions = layers.Embedding(sequence_length, output_dim)
        self.supports_masking = True

    def call(self, x):
        length = ops.shape(x)[1]
        return x + self.positions(ops.arange(length))


def transformer(
    vocabulary_size,
    sequence_length,
    num_classes,
    *,
    d_model,
    num_heads,
    ff_dim,
    num_layers,
    dropout,
):
    """Post-norm encoder blocks (Vaswani et al.), masked mean pooling, softmax."""
    tokens = keras.Input((sequence_length,), dtype="int32")
    x = layers.Embedding(vocabulary_size, d_model, mask_zero=True)(tokens)
    x = PositionEmbedding(sequence_length, d_model)(x)
    for _ in range(num_layers):
        # No dropout on the attention weights (annzoo's default, keras.io's).
        attended = layers.MultiHeadAttention(num_heads, d_model // num_heads)(x, x)
        x = layers.LayerNormalization(epsilon=1e-6)(
            layers.Add()([x, layers.Dropout(dropout)(attended)])
        )
        inner = layers.Dense(ff_dim, activation="relu")(x)
        outer = layers.Dense(d_model)(inner)
        x = layers.LayerNormalization(epsilon=1e-6)(
            layers.Add()([x, layers.Dropout(dropout)(outer)])
        )
    x = layers.GlobalAveragePooling1D()(x)
    x = layers.Dropout(dropout)(x)
    outputs = layers.Dense(num_classes, activation="softmax")(x)
    return keras.Model(tokens, outputs, name="hand_transformer")


def check_twins(annzoo_model: keras.Model, hand_model: keras.Model) -> None:
    """Raises unless both models have the same number of parameters."""
    a, b = annzoo_model.count_params(), hand_model.count_params()
    if a != b:
        raise RuntimeError(
            f"The hand-written twin of {annzoo_model.name!r} has {b:,} parameters, "
            f"the annzoo model {a:,}: they are not the same network."
        )

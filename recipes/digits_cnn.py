"""Digits CNN: a small convnet on scikit-learn's 8x8 handwritten digits.

Two 3x3 convolution stages (32 and 64 filters, batch norm, max pooling), a
128-unit dense layer with dropout, Adam, early stopping on the validation
loss and a best-model checkpoint. No download; well under a minute on a
2-core CPU.

    python recipes/digits_cnn.py --epochs 40 --set model.dropout=0.2
"""

import sys

from annzoo.cli import recipe_main
from annzoo.training import Recipe

RECIPE = Recipe(
    name="digits_cnn",
    description=__doc__,
    model=dict(
        name="cnn",
        filters=[32, 64],
        kernel_size=3,
        batch_norm=True,
        hidden_units=[128],
        dropout=0.3,
    ),
    data=dict(dataset="digits", batch_size=32),
    fit=dict(epochs=60),
    callbacks=dict(early_stopping=dict(patience=10)),
)

if __name__ == "__main__":
    sys.exit(recipe_main(RECIPE))

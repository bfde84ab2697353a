"""Digits MLP: a two-hidden-layer perceptron on the flattened 8x8 digits.

The fully connected baseline for digits_cnn: same data, same training
settings, no convolutions.

    python recipes/digits_mlp.py --epochs 40
"""

import sys

from annzoo.cli import recipe_main
from annzoo.training import Recipe

RECIPE = Recipe(
    name="digits_mlp",
    description=__doc__,
    model=dict(name="mlp", hidden_units=[128, 64], dropout=0.2),
    data=dict(dataset="digits", batch_size=32),
    fit=dict(epochs=100),
    callbacks=dict(early_stopping=dict(patience=10)),
)

if __name__ == "__main__":
    sys.exit(recipe_main(RECIPE))

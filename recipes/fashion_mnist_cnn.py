"""Fashion-MNIST CNN: a VGG-style convnet with batch norm and dropout.

Two stages of two 3x3 convolutions (32 and 64 filters) with batch norm and
max pooling, a 128-unit dense layer with dropout 0.4, horizontal flips.
Downloads fashion_mnist through TensorFlow Datasets on first use (about 30 MB).

    python recipes/fashion_mnist_cnn.py --epochs 10
"""

import sys

from annzoo.cli import recipe_main
from annzoo.training import Recipe

RECIPE = Recipe(
    name="fashion_mnist_cnn",
    description=__doc__,
    model=dict(
        name="cnn",
        filters=[32, 64],
        depth=2,
        batch_norm=True,
        hidden_units=[128],
        dropout=0.4,
    ),
    data=dict(dataset="tfds:fashion_mnist", batch_size=128),
    augment=dict(ops=["flip"]),
    fit=dict(epochs=30),
    callbacks=dict(early_stopping=dict(patience=5)),
)

if __name__ == "__main__":
    sys.exit(recipe_main(RECIPE))

"""MNIST CNN: the keras.io "Simple MNIST convnet" on TFDS mnist.

Two conv/max-pool stages, dropout 0.5, a softmax layer: 34,826 parameters,
batch 128, Adam, 15 epochs, as in the keras.io example. Downloads mnist
through TensorFlow Datasets on first use (about 11 MB).

    python recipes/mnist_cnn.py --set data.options.data_dir=~/tensorflow_datasets
"""

import sys

from annzoo.cli import recipe_main
from annzoo.training import Recipe

RECIPE = Recipe(
    name="mnist_cnn",
    description=__doc__,
    model=dict(name="mnist_convnet"),
    data=dict(dataset="tfds:mnist", batch_size=128),
    fit=dict(epochs=15),
    callbacks=dict(early_stopping=dict(patience=4)),
)

if __name__ == "__main__":
    sys.exit(recipe_main(RECIPE))

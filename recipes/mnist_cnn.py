"""MNIST CNN: the keras.io "Simple MNIST convnet" on TFDS mnist.

The recipe is annzoo/recipes/mnist_cnn.yaml, installed with annzoo;
this script runs it as ``annzoo train mnist_cnn`` does, with its options:

    python recipes/mnist_cnn.py --epochs 5 --set data.batch_size=64
"""

import sys

from annzoo.cli import recipe_main, script_recipe

RECIPE = script_recipe("mnist_cnn", __name__)

if __name__ == "__main__":
    sys.exit(recipe_main(RECIPE))

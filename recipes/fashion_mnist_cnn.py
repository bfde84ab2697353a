"""Fashion-MNIST CNN: a VGG-style convnet with batch norm and dropout.

The recipe is annzoo/recipes/fashion_mnist_cnn.yaml, installed with annzoo;
this script runs it as ``annzoo train fashion_mnist_cnn`` does, with its options:

    python recipes/fashion_mnist_cnn.py --epochs 5 --set data.batch_size=64
"""

import sys

from annzoo.cli import recipe_main, script_recipe

RECIPE = script_recipe("fashion_mnist_cnn", __name__)

if __name__ == "__main__":
    sys.exit(recipe_main(RECIPE))

"""Fashion-MNIST CNN: a VGG-style convnet with batch norm and dropout.

The recipe is annzoo/recipes/fashion_mnist_cnn.yaml, installed with annzoo;
this script runs it as ``annzoo train fashion_mnist_cnn`` does, with its options:

    python recipes/fashion_mnist_cnn.py --epochs 5 --set data.batch_size=64
"""

import sys

from annzoo import recipes
from annzoo.cli import recipe_main
from annzoo.training import load_recipe

RECIPE = load_recipe(recipes.path("fashion_mnist_cnn"))

if __name__ == "__main__":
    sys.exit(recipe_main(RECIPE))

"""CIFAR-10 VGG: a VGG-style convnet with batch norm and dropout.

The recipe is annzoo/recipes/cifar10_vgg.yaml, installed with annzoo;
this script runs it as ``annzoo train cifar10_vgg`` does, with its options:

    python recipes/cifar10_vgg.py --epochs 5 --set data.batch_size=64
"""

import sys

from annzoo.cli import recipe_main, script_recipe

RECIPE = script_recipe("cifar10_vgg", __name__)

if __name__ == "__main__":
    sys.exit(recipe_main(RECIPE))

"""Digits MLP: a two-hidden-layer perceptron on the flattened 8x8 digits.

The recipe is annzoo/recipes/digits_mlp.yaml, installed with annzoo;
this script runs it as ``annzoo train digits_mlp`` does, with its options:

    python recipes/digits_mlp.py --epochs 5 --set data.batch_size=64
"""

import sys

from annzoo.cli import recipe_main, script_recipe

RECIPE = script_recipe("digits_mlp", __name__)

if __name__ == "__main__":
    sys.exit(recipe_main(RECIPE))

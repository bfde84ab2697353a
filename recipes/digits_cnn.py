"""Digits CNN: a small convnet on scikit-learn's 8x8 handwritten digits.

The recipe is annzoo/recipes/digits_cnn.yaml, installed with annzoo;
this script runs it as ``annzoo train digits_cnn`` does, with its options:

    python recipes/digits_cnn.py --epochs 5 --set data.batch_size=64
"""

import sys

from annzoo.cli import recipe_main, script_recipe

RECIPE = script_recipe("digits_cnn", __name__)

if __name__ == "__main__":
    sys.exit(recipe_main(RECIPE))

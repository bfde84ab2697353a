"""Digits GAN: a DCGAN of scikit-learn's 8x8 digits, conditional on the digit.

The recipe is annzoo/recipes/digits_gan.yaml, installed with annzoo;
this script runs it as ``annzoo train digits_gan`` does, with its options:

    python recipes/digits_gan.py --epochs 5 --set data.batch_size=64
"""

import sys

from annzoo.cli import recipe_main, script_recipe

RECIPE = script_recipe("digits_gan", __name__)

if __name__ == "__main__":
    sys.exit(recipe_main(RECIPE))

"""Digits VAE: a variational autoencoder of scikit-learn's 8x8 digits.

The recipe is annzoo/recipes/digits_vae.yaml, installed with annzoo;
this script runs it as ``annzoo train digits_vae`` does, with its options:

    python recipes/digits_vae.py --epochs 5 --set data.batch_size=64
"""

import sys

from annzoo.cli import recipe_main, script_recipe

RECIPE = script_recipe("digits_vae", __name__)

if __name__ == "__main__":
    sys.exit(recipe_main(RECIPE))

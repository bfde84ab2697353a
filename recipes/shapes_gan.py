"""Shapes GAN: a DCGAN of the 32x32 colour shapes, conditional on the pair of shapes.

The recipe is annzoo/recipes/shapes_gan.yaml, installed with annzoo;
this script runs it as ``annzoo train shapes_gan`` does, with its options:

    python recipes/shapes_gan.py --epochs 5 --set data.batch_size=64
"""

import sys

from annzoo.cli import recipe_main, script_recipe

RECIPE = script_recipe("shapes_gan", __name__)

if __name__ == "__main__":
    sys.exit(recipe_main(RECIPE))

"""Shapes captioner: describe a picture in words, and show where it looked.

The recipe is annzoo/recipes/shapes_captioner.yaml, installed with annzoo;
this script runs it as ``annzoo train shapes_captioner`` does, with its options:

    python recipes/shapes_captioner.py --epochs 5 --set data.batch_size=64
"""

import sys

from annzoo.cli import recipe_main, script_recipe

RECIPE = script_recipe("shapes_captioner", __name__)

if __name__ == "__main__":
    sys.exit(recipe_main(RECIPE))

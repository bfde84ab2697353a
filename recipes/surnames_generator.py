"""Surnames generator: new surnames, character by character, per language.

The recipe is annzoo/recipes/surnames_generator.yaml, installed with annzoo;
this script runs it as ``annzoo train surnames_generator`` does, with its options:

    python recipes/surnames_generator.py --epochs 5 --set data.batch_size=64
"""

import sys

from annzoo.cli import recipe_main, script_recipe

RECIPE = script_recipe("surnames_generator", __name__)

if __name__ == "__main__":
    sys.exit(recipe_main(RECIPE))

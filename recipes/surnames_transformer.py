"""Surnames Transformer: the char-RNN's task with self-attention instead.

The recipe is annzoo/recipes/surnames_transformer.yaml, installed with annzoo;
this script runs it as ``annzoo train surnames_transformer`` does, with its options:

    python recipes/surnames_transformer.py --epochs 5 --set data.batch_size=64
"""

import sys

from annzoo.cli import recipe_main, script_recipe

RECIPE = script_recipe("surnames_transformer", __name__)

if __name__ == "__main__":
    sys.exit(recipe_main(RECIPE))

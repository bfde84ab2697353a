"""Dates seq2seq with attention: translate written dates into ISO 8601.

The recipe is annzoo/recipes/dates_seq2seq_attention.yaml, installed with annzoo;
this script runs it as ``annzoo train dates_seq2seq_attention`` does, with its options:

    python recipes/dates_seq2seq_attention.py --epochs 5 --set data.batch_size=64
"""

import sys

from annzoo import recipes
from annzoo.cli import recipe_main
from annzoo.training import load_recipe

RECIPE = load_recipe(recipes.path("dates_seq2seq_attention"))

if __name__ == "__main__":
    sys.exit(recipe_main(RECIPE))

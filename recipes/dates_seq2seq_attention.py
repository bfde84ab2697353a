"""Dates seq2seq with attention: translate written dates into ISO 8601.

The recipe is annzoo/recipes/dates_seq2seq_attention.yaml, installed with annzoo;
this script runs it as ``annzoo train dates_seq2seq_attention`` does, with its options:

    python recipes/dates_seq2seq_attention.py --epochs 5 --set data.batch_size=64
"""

import sys

from annzoo.cli import recipe_main, script_recipe

RECIPE = script_recipe("dates_seq2seq_attention", __name__)

if __name__ == "__main__":
    sys.exit(recipe_main(RECIPE))

"""Surnames char-RNN: which language is this surname from?

The recipe is annzoo/recipes/surnames_char_rnn.yaml, installed with annzoo;
this script runs it as ``annzoo train surnames_char_rnn`` does, with its options:

    python recipes/surnames_char_rnn.py --epochs 5 --set data.batch_size=64
"""

import sys

from annzoo.cli import recipe_main, script_recipe

RECIPE = script_recipe("surnames_char_rnn", __name__)

if __name__ == "__main__":
    sys.exit(recipe_main(RECIPE))

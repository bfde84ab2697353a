"""IMDB Bi-LSTM: sentiment of movie reviews, as in keras.io's example.

The recipe is annzoo/recipes/imdb_bilstm.yaml, installed with annzoo;
this script runs it as ``annzoo train imdb_bilstm`` does, with its options:

    python recipes/imdb_bilstm.py --epochs 5 --set data.batch_size=64
"""

import sys

from annzoo.cli import recipe_main, script_recipe

RECIPE = script_recipe("imdb_bilstm", __name__)

if __name__ == "__main__":
    sys.exit(recipe_main(RECIPE))

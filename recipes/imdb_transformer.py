"""IMDB Transformer: sentiment of movie reviews with one Transformer block.

The recipe is annzoo/recipes/imdb_transformer.yaml, installed with annzoo;
this script runs it as ``annzoo train imdb_transformer`` does, with its options:

    python recipes/imdb_transformer.py --epochs 5 --set data.batch_size=64
"""

import sys

from annzoo.cli import recipe_main, script_recipe

RECIPE = script_recipe("imdb_transformer", __name__)

if __name__ == "__main__":
    sys.exit(recipe_main(RECIPE))

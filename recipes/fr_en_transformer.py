"""French to English: a small Transformer translator on real sentences.

The recipe is annzoo/recipes/fr_en_transformer.yaml, installed with annzoo;
this script runs it as ``annzoo train fr_en_transformer`` does, with its options:

    python recipes/fr_en_transformer.py --epochs 5 --set data.batch_size=64
"""

import sys

from annzoo.cli import recipe_main, script_recipe

RECIPE = script_recipe("fr_en_transformer", __name__)

if __name__ == "__main__":
    sys.exit(recipe_main(RECIPE))

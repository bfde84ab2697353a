"""KJV char-GPT: the King James Bible written character by character.

The recipe is annzoo/recipes/kjv_char_gpt.yaml, installed with annzoo;
this script runs it as ``annzoo train kjv_char_gpt`` does, with its options:

    python recipes/kjv_char_gpt.py --epochs 5 --set data.batch_size=64
"""

import sys

from annzoo.cli import recipe_main, script_recipe

RECIPE = script_recipe("kjv_char_gpt", __name__)

if __name__ == "__main__":
    sys.exit(recipe_main(RECIPE))

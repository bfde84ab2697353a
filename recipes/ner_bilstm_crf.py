"""NER Bi-LSTM + CRF: tag persons, organisations, places, dates and misc.

The recipe is annzoo/recipes/ner_bilstm_crf.yaml, installed with annzoo;
this script runs it as ``annzoo train ner_bilstm_crf`` does, with its options:

    python recipes/ner_bilstm_crf.py --epochs 5 --set data.batch_size=64
"""

import sys

from annzoo.cli import recipe_main, script_recipe

RECIPE = script_recipe("ner_bilstm_crf", __name__)

if __name__ == "__main__":
    sys.exit(recipe_main(RECIPE))

"""Diabetes regression: an MLP predicting disease progression, trained on MSE.

The recipe is annzoo/recipes/diabetes_regression.yaml, installed with annzoo;
this script runs it as ``annzoo train diabetes_regression`` does, with its options:

    python recipes/diabetes_regression.py --epochs 5 --set data.batch_size=64
"""

import sys

from annzoo.cli import recipe_main, script_recipe

RECIPE = script_recipe("diabetes_regression", __name__)

if __name__ == "__main__":
    sys.exit(recipe_main(RECIPE))

"""Breast cancer, logistic regression: one sigmoid neuron trained by log loss.

The recipe is annzoo/recipes/breast_cancer_logistic.yaml, installed with annzoo;
this script runs it as ``annzoo train breast_cancer_logistic`` does, with its options:

    python recipes/breast_cancer_logistic.py --epochs 5 --set data.batch_size=64
"""

import sys

from annzoo.cli import recipe_main, script_recipe

RECIPE = script_recipe("breast_cancer_logistic", __name__)

if __name__ == "__main__":
    sys.exit(recipe_main(RECIPE))

"""Breast cancer, MLP: the logistic regression with two hidden ReLU layers.

The recipe is annzoo/recipes/breast_cancer_mlp.yaml, installed with annzoo;
this script runs it as ``annzoo train breast_cancer_mlp`` does, with its options:

    python recipes/breast_cancer_mlp.py --epochs 5 --set data.batch_size=64
"""

import sys

from annzoo.cli import recipe_main, script_recipe

RECIPE = script_recipe("breast_cancer_mlp", __name__)

if __name__ == "__main__":
    sys.exit(recipe_main(RECIPE))

"""CIFAR-10 ResNet-20, trained as in He et al. 2016 (Sec. 4.2).

The recipe is annzoo/recipes/cifar10_resnet20.yaml, installed with annzoo;
this script runs it as ``annzoo train cifar10_resnet20`` does, with its options:

    python recipes/cifar10_resnet20.py --epochs 5 --set data.batch_size=64
"""

import sys

from annzoo.cli import recipe_main, script_recipe

RECIPE = script_recipe("cifar10_resnet20", __name__)

if __name__ == "__main__":
    sys.exit(recipe_main(RECIPE))

"""Breast cancer, logistic regression: one sigmoid neuron trained by log loss.

The course's starting point: P(benign) = sigmoid(w . x + b) on the 30
standardized features, fitted by gradient descent on the log loss.

    python recipes/breast_cancer_logistic.py --set compile.learning_rate=0.05
"""

import sys

from annzoo.cli import recipe_main
from annzoo.training import Recipe

RECIPE = Recipe(
    name="breast_cancer_logistic",
    description=__doc__,
    model=dict(name="logistic_regression"),
    data=dict(dataset="breast_cancer", batch_size=32),
    compile=dict(optimizer="sgd", learning_rate=0.1),
    fit=dict(epochs=200),
    callbacks=dict(early_stopping=dict(patience=20)),
)

if __name__ == "__main__":
    sys.exit(recipe_main(RECIPE))

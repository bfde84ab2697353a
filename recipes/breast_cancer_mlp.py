"""Breast cancer, MLP: the logistic regression with two hidden ReLU layers.

Compare with breast_cancer_logistic: same data, split and log loss; a deeper
model with dropout.

    python recipes/breast_cancer_mlp.py --set model.dropout=0.3
"""

import sys

from annzoo.cli import recipe_main
from annzoo.training import Recipe

RECIPE = Recipe(
    name="breast_cancer_mlp",
    description=__doc__,
    model=dict(name="mlp", hidden_units=[32, 16], dropout=0.2),
    data=dict(dataset="breast_cancer", batch_size=32),
    compile=dict(optimizer="adam", learning_rate=0.001),
    fit=dict(epochs=200),
    callbacks=dict(early_stopping=dict(patience=20)),
)

if __name__ == "__main__":
    sys.exit(recipe_main(RECIPE))

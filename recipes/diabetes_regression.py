"""Diabetes regression: an MLP predicting disease progression, trained on MSE.

Ten standardized clinical features; the target is the raw progression score
(about 25 to 346), so the reported loss is a mean squared error in those units
and `mae` its mean absolute error.

    python recipes/diabetes_regression.py --set model.hidden_units=[32]
"""

import sys

from annzoo.cli import recipe_main
from annzoo.training import Recipe

RECIPE = Recipe(
    name="diabetes_regression",
    description=__doc__,
    model=dict(name="mlp", hidden_units=[64, 32], dropout=0.1),
    data=dict(dataset="diabetes", batch_size=16),
    compile=dict(optimizer="adam", learning_rate=0.01),
    fit=dict(epochs=300),
    callbacks=dict(
        early_stopping=dict(patience=30), reduce_lr=dict(factor=0.5, patience=10)
    ),
)

if __name__ == "__main__":
    sys.exit(recipe_main(RECIPE))

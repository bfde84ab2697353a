"""Shapes captioner: describe a picture in words, and show where it looked.

"Show, attend and tell" at toy size on the embedded "shapes_captions"
images (two coloured shapes in a spatial relation, 32x32 RGB): a small CNN
encodes the image into a grid of regions; a GRU decoder, trained with
teacher forcing, attends over the regions (additive attention) before each
word. Reported: exact match of the greedy caption on the test split, and
attention.png, the first test image with each word's attention overlaid.
No download.

    python recipes/shapes_captioner.py --set model.units=256
"""

import sys

from annzoo.cli import recipe_main
from annzoo.training import Recipe

RECIPE = Recipe(
    name="shapes_captioner",
    description=__doc__,
    model=dict(name="captioner"),
    data=dict(dataset="shapes_captions", batch_size=32),
    compile=dict(optimizer="adam", learning_rate=2e-3),
    fit=dict(epochs=60),
    callbacks=dict(early_stopping=dict(patience=8)),
)

if __name__ == "__main__":
    sys.exit(recipe_main(RECIPE))

"""Digits ViT: a small Vision Transformer on scikit-learn's 8x8 digits.

The 8x8 image is cut into sixteen 2x2 patches, each embedded by one strided
convolution; a learned [CLS] token and learned position embeddings go in
front of four pre-norm Transformer blocks (4 heads, d_model 64, GELU MLP 128)
and the [CLS] output is classified (Dosovitskiy et al. 2021, at toy size).
AdamW as in the paper. No download; about a minute on a 2-core CPU.

    python recipes/digits_vit.py --set model.num_layers=6
"""

import sys

from annzoo.cli import recipe_main
from annzoo.training import Recipe

RECIPE = Recipe(
    name="digits_vit",
    description=__doc__,
    model=dict(
        name="transformer",
        variant="vit",
        patch_size=2,
        d_model=64,
        num_heads=4,
        ff_dim=128,
        num_layers=4,
        dropout=0.1,
    ),
    data=dict(dataset="digits", batch_size=32),
    compile=dict(optimizer="adamw", learning_rate=1e-3, weight_decay=1e-4),
    fit=dict(epochs=100),
    callbacks=dict(early_stopping=dict(patience=15)),
)

if __name__ == "__main__":
    sys.exit(recipe_main(RECIPE))

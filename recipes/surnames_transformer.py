"""Surnames Transformer: the char-RNN's task with self-attention instead.

Character ids with learned position embeddings go through two post-norm
Transformer encoder blocks (4 heads, d_model 64, feed-forward 128); the
unpadded positions are averaged and classified into 14 languages. Compare
with surnames_char_rnn on the same split. No download.

    python recipes/surnames_transformer.py --set model.num_layers=4
"""

import sys

from annzoo.cli import recipe_main
from annzoo.training import Recipe

RECIPE = Recipe(
    name="surnames_transformer",
    description=__doc__,
    model=dict(
        name="transformer",
        variant="encoder",
        d_model=64,
        num_heads=4,
        ff_dim=128,
        num_layers=2,
        dropout=0.1,
    ),
    data=dict(dataset="surnames", batch_size=64),
    compile=dict(optimizer="adam", learning_rate=1e-3),
    fit=dict(epochs=60),
    callbacks=dict(early_stopping=dict(patience=8)),
)

if __name__ == "__main__":
    sys.exit(recipe_main(RECIPE))

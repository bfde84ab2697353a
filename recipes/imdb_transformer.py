"""IMDB Transformer: sentiment of movie reviews with one Transformer block.

keras.io's "Text classification with Transformer": a 20,000-word vocabulary
from the train split, reviews cut or padded to 200 tokens, token and
position embeddings of 32 dimensions, one block (2 heads, feed-forward 32),
average pooling over the unpadded words, dropout, a 20-unit ReLU layer and
the output (the transformer_classifier preset). Downloads imdb_reviews
through TensorFlow Datasets on first use (about 80 MB). keras.io reports
about 84-88% validation accuracy after 2 epochs.

    python recipes/imdb_transformer.py --set model.num_layers=2
"""

import sys

from annzoo.cli import recipe_main
from annzoo.training import Recipe

RECIPE = Recipe(
    name="imdb_transformer",
    description=__doc__,
    model=dict(name="transformer_classifier"),
    data=dict(
        dataset="tfds:imdb_reviews",
        batch_size=32,
        text=dict(max_tokens=20000, sequence_length=200),
    ),
    fit=dict(epochs=10),
    callbacks=dict(early_stopping=dict(patience=2)),
)

if __name__ == "__main__":
    sys.exit(recipe_main(RECIPE))

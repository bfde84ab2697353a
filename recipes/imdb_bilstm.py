"""IMDB Bi-LSTM: sentiment of movie reviews, as in keras.io's example.

Reviews are split into lower-cased words; the 20,000 most frequent words of
the train split form the vocabulary (0 = padding, 1 = unknown) and each
review is cut or padded to 200 tokens. Embedding(20000, 128) -> BiLSTM(64)
-> BiLSTM(64) -> sigmoid (the imdb_bilstm preset, 2,757,761 parameters).
Downloads imdb_reviews through TensorFlow Datasets on first use (about
80 MB). keras.io reports about 85-88% validation accuracy after 2 epochs.

    python recipes/imdb_bilstm.py --set data.text.sequence_length=400
"""

import sys

from annzoo.cli import recipe_main
from annzoo.training import Recipe

RECIPE = Recipe(
    name="imdb_bilstm",
    description=__doc__,
    model=dict(name="imdb_bilstm"),
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

"""NER Bi-LSTM + CRF: tag persons, organisations, places, dates and misc.

The course's named-entity tagger (Lample et al. 2016 sizes): word
embeddings of 100 dimensions, a bidirectional LSTM with 100 units per
direction, per-word emission scores and a linear-chain CRF trained by the
forward-algorithm likelihood and decoded by Viterbi. Data: the embedded
"ner" sentences (Faker names, companies, places, dates; BIO tags).
Reported: entity-level precision, recall and F1 on the test split (an entity
counts only with its exact span and type). No download.

    python recipes/ner_bilstm_crf.py --set model.cell=gru
"""

import sys

from annzoo.cli import recipe_main
from annzoo.training import Recipe

RECIPE = Recipe(
    name="ner_bilstm_crf",
    description=__doc__,
    model=dict(name="bilstm_crf_tagger"),
    data=dict(dataset="ner", batch_size=32),
    compile=dict(optimizer="adam", learning_rate=1e-3),
    fit=dict(epochs=30),
    callbacks=dict(early_stopping=dict(patience=4)),
)

if __name__ == "__main__":
    sys.exit(recipe_main(RECIPE))

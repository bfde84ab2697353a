"""Dates seq2seq with attention: translate written dates into ISO 8601.

"3. März 2021", "Wednesday, March 3, 2021" or "3 mars 2021" -> "2021-03-03",
character by character (the embedded "dates" dataset: eight languages and
five formats from Babel's locale data). A GRU encoder reads the characters;
a GRU decoder, started from the encoder's last state and trained with
teacher forcing, attends over every encoder output with Bahdanau's additive
score at each step. Reported: exact match of greedy decoding on the test
split, and attention.png, the attention of the first test example (which
source characters each output digit looked at). No download.

    python recipes/dates_seq2seq_attention.py --set model.attention=null
"""

import sys

from annzoo.cli import recipe_main
from annzoo.training import Recipe

RECIPE = Recipe(
    name="dates_seq2seq_attention",
    description=__doc__,
    model=dict(
        name="seq2seq",
        embedding_dim=32,
        units=128,
        cell="gru",
        attention="bahdanau",
    ),
    data=dict(dataset="dates", batch_size=64),
    compile=dict(optimizer="adam", learning_rate=3e-3),
    fit=dict(epochs=20),
    # The loss keeps shrinking long after every character is right: stop on
    # the per-character accuracy instead.
    callbacks=dict(monitor="val_token_accuracy", early_stopping=dict(patience=3)),
)

if __name__ == "__main__":
    sys.exit(recipe_main(RECIPE))

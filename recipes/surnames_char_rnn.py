"""Surnames char-RNN: which language is this surname from?

The course's character-level classifier: each surname is a sequence of
character ids (0 = padding, masked), embedded in 32 dimensions and read by a
GRU with 128 units whose last state is classified into 14 languages (the
embedded "surnames" dataset, from the locale data the Faker package ships).
No download; a few minutes on a 2-core CPU.

    python recipes/surnames_char_rnn.py --set model.cell=lstm
"""

import sys

from annzoo.cli import recipe_main
from annzoo.training import Recipe

RECIPE = Recipe(
    name="surnames_char_rnn",
    description=__doc__,
    model=dict(name="char_rnn"),
    data=dict(dataset="surnames", batch_size=64),
    compile=dict(optimizer="adam", learning_rate=3e-3),
    fit=dict(epochs=60),
    callbacks=dict(early_stopping=dict(patience=8)),
)

if __name__ == "__main__":
    sys.exit(recipe_main(RECIPE))

"""Generation: sampling new samples from annzoo's generative models.

Language models (`annzoo.build_language_model`): `language_model_vocabulary`
and `next_token_arrays` make what they train on, `generate_text` writes with
them (through `IncrementalDecoder`, cached), `bits_per_character` scores them.

Every generative family: `generate` (`annzoo.generate`) makes images with a GAN
or an autoencoder and texts with a language model, by the family's own
helpers (`annzoo.generation.dispatch`).
"""

from annzoo.generation.data import language_model_vocabulary, next_token_arrays
from annzoo.generation.decoder import IncrementalDecoder
from annzoo.generation.dispatch import generate
from annzoo.generation.text import (
    bits_per_character,
    filter_probabilities,
    generate_text,
)

__all__ = [
    "IncrementalDecoder",
    "bits_per_character",
    "filter_probabilities",
    "generate",
    "generate_text",
    "language_model_vocabulary",
    "next_token_arrays",
]

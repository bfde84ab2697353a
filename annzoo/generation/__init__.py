"""Generation: sampling new samples from annzoo's generative models.

`generate_text` writes text with a language model built by
`annzoo.build_language_model` (`annzoo.generation.text`).
"""

from annzoo.generation.text import (
    bits_per_character,
    filter_probabilities,
    generate_text,
)

__all__ = ["bits_per_character", "filter_probabilities", "generate_text"]

"""Model families. Importing this package registers every family and preset."""

from annzoo.models.applications import build_application  # noqa: F401
from annzoo.models.autoencoder import build_autoencoder
from annzoo.models.captioner import build_captioner
from annzoo.models.cnn import build_cnn
from annzoo.models.gan import build_gan
from annzoo.models.language_model import build_language_model
from annzoo.models.mlp import build_mlp
from annzoo.models.rnn import build_rnn
from annzoo.models.seq2seq import build_seq2seq
from annzoo.models.transformer import build_transformer

__all__ = [
    "build_autoencoder",
    "build_captioner",
    "build_cnn",
    "build_gan",
    "build_language_model",
    "build_mlp",
    "build_rnn",
    "build_seq2seq",
    "build_transformer",
]

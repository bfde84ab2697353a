"""annzoo: a Keras 3 model zoo for the classic neural-network families.

Builders return compiled ``keras.Model`` objects::

    import annzoo
    model = annzoo.build_cnn((28, 28, 1), 10, filters=(32, 64))
    model = annzoo.create_model("resnet20")
    annzoo.list_models("resnet*")

Model code is backend-agnostic Keras 3: ``import annzoo`` and every builder work
on the TensorFlow, JAX and PyTorch backends; only the data pipelines import
TensorFlow, and only when used.
"""

import importlib

from annzoo import augment, data, datasets, metrics, text
from annzoo._version import __version__
from annzoo.decode import Decoded, decode
from annzoo.errors import AnnzooError, CheckpointError, UnknownNameError
from annzoo.finetune import (
    feature_extractor,
    finetune,
    freeze,
    replace_head,
    unfreeze,
)
from annzoo.models import (
    build_captioner,
    build_cnn,
    build_mlp,
    build_rnn,
    build_seq2seq,
    build_transformer,
)
from annzoo.registry import (
    ModelInfo,
    Reference,
    create_model,
    list_families,
    list_models,
    model_info,
)
from annzoo.tasks import compile_model

# Submodules reachable as attributes of `annzoo` without importing them first
# (`annzoo.plots.plot_curves(...)`), loaded on first use.
_LAZY_MODULES = (
    "augment",
    "data",
    "export",
    "metrics",
    "plots",
    "predict",
    "text",
    "training",
    "tuning",
)


def __getattr__(name: str):
    # `annzoo.tune` loads keras-tuner only when a search is asked for.
    if name == "tune":
        from annzoo.tuning import tune

        return tune
    if name in _LAZY_MODULES:
        return importlib.import_module(f"annzoo.{name}")
    raise AttributeError(f"module 'annzoo' has no attribute {name!r}")


__all__ = [
    "AnnzooError",
    "CheckpointError",
    "Decoded",
    "ModelInfo",
    "Reference",
    "UnknownNameError",
    "__version__",
    "build_captioner",
    "build_cnn",
    "build_mlp",
    "build_rnn",
    "build_seq2seq",
    "build_transformer",
    "augment",
    "compile_model",
    "create_model",
    "data",
    "datasets",
    "decode",
    "feature_extractor",
    "finetune",
    "freeze",
    "list_families",
    "list_models",
    "metrics",
    "model_info",
    "replace_head",
    "text",
    "tune",
    "unfreeze",
]

"""annzoo: a Keras 3 model zoo for the classic neural-network families.

Builders return compiled ``keras.Model`` objects::

    import annzoo
    model = annzoo.build_cnn((28, 28, 1), 10, filters=(32, 64))
    model = annzoo.create_model("resnet20")
    annzoo.list_models("resnet*")

Model code is backend-agnostic Keras 3: ``import annzoo`` and every builder work
on the TensorFlow, JAX and PyTorch backends; only the data pipelines import
TensorFlow, and only when used. ``import annzoo`` itself imports no Keras:
each name below is loaded from its module on first use.
"""

import importlib
import importlib.util
import sys
import types

from annzoo._version import __version__
from annzoo.errors import AnnzooError, CheckpointError, UnknownNameError

# Every other public name is loaded from its defining module on first use, so
# that `import annzoo` (and with it the `annzoo` command's `--help`, `list`,
# `info` and `datasets`) imports neither Keras nor a backend.
_EXPORTS = {
    "Decoded": "annzoo.decode",
    "decode": "annzoo.decode",
    "feature_extractor": "annzoo.finetune",
    "finetune": "annzoo.finetune",
    "freeze": "annzoo.finetune",
    "replace_head": "annzoo.finetune",
    "unfreeze": "annzoo.finetune",
    "build_captioner": "annzoo.models",
    "build_cnn": "annzoo.models",
    "build_mlp": "annzoo.models",
    "build_rnn": "annzoo.models",
    "build_seq2seq": "annzoo.models",
    "build_transformer": "annzoo.models",
    "ModelInfo": "annzoo.registry",
    "Reference": "annzoo.registry",
    "create_model": "annzoo.registry",
    "list_families": "annzoo.registry",
    "list_models": "annzoo.registry",
    "model_info": "annzoo.registry",
    "compile_model": "annzoo.tasks",
    # `annzoo.tune` loads keras-tuner only when a search is asked for.
    "tune": "annzoo.tuning",
}

# Submodules reachable as attributes of `annzoo` without importing them first
# (`annzoo.plots.plot_curves(...)`), loaded on first use; any other submodule
# is too.
_LAZY_MODULES = (
    "augment",
    "data",
    "datasets",
    "export",
    "layers",
    "metrics",
    "plots",
    "predict",
    "text",
    "training",
    "tuning",
)


def __getattr__(name: str):
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value
    if name in _LAZY_MODULES or (
        not name.startswith("__") and importlib.util.find_spec(f"annzoo.{name}")
    ):
        return importlib.import_module(f"annzoo.{name}")
    raise AttributeError(f"module 'annzoo' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__, *_LAZY_MODULES})


class _Package(types.ModuleType):
    """`annzoo`, whose functions `finetune` and `decode` share their names with
    the submodules defining them: importing such a submodule (which sets the
    package attribute of that name) must not hide the function, as it did not
    when `import annzoo` imported both eagerly."""

    def __setattr__(self, name: str, value) -> None:
        if name in _EXPORTS and isinstance(value, types.ModuleType):
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package

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

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
import importlib.abc
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
    "generate": "annzoo.generation",
    "replace_head": "annzoo.finetune",
    "unfreeze": "annzoo.finetune",
    "build_autoencoder": "annzoo.models",
    "build_captioner": "annzoo.models",
    "build_cnn": "annzoo.models",
    "build_gan": "annzoo.models",
    "build_language_model": "annzoo.models",
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


# annzoo's layers and metrics are registered Keras serializables: a model saved
# with them reloads with plain `keras.saving.load_model` once annzoo is
# imported (docs/models.md). Keras finds a custom class only in its registry,
# filled when the defining module runs, so those modules must run before any
# load; but `import annzoo` itself must not import Keras (the CLI's fast
# commands). So they are imported as soon as Keras is: now if it already is,
# else right after `import keras` finishes, by a one-shot import finder.
_SERIALIZABLES = ("annzoo.layers", "annzoo.metrics")


def _register_serializables() -> None:
    for module in _SERIALIZABLES:
        importlib.import_module(module)


class _RegisterAfterKeras(importlib.abc.MetaPathFinder):
    """Finds nothing itself: when `keras` is imported, it takes Keras' own
    spec from the other finders and runs annzoo's serializable modules right
    after Keras' `__init__`, then leaves `sys.meta_path`."""

    def find_spec(self, name, path=None, target=None):
        if name != "keras":
            return None
        if self in sys.meta_path:
            sys.meta_path.remove(self)
        spec = importlib.util.find_spec("keras")
        if spec is not None and spec.loader is not None:
            spec.loader = _LoaderThenRegister(spec.loader)
        return spec


class _LoaderThenRegister(importlib.abc.Loader):
    def __init__(self, loader) -> None:
        self._loader = loader

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module) -> None:
        self._loader.exec_module(module)
        _register_serializables()

    def __getattr__(self, name: str):
        # get_resource_reader, is_package, get_code...: Keras' own loader's.
        return getattr(self._loader, name)


if "keras" in sys.modules:
    _register_serializables()
else:
    sys.meta_path.insert(0, _RegisterAfterKeras())

__all__ = [
    "AnnzooError",
    "CheckpointError",
    "Decoded",
    "ModelInfo",
    "Reference",
    "UnknownNameError",
    "__version__",
    "build_autoencoder",
    "build_captioner",
    "build_cnn",
    "build_gan",
    "build_language_model",
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
    "generate",
    "list_families",
    "list_models",
    "metrics",
    "model_info",
    "replace_head",
    "text",
    "tune",
    "unfreeze",
]

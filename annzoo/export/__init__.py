"""Export a trained model for clients that do not run annzoo.

Three formats, one call::

    annzoo.export.export("runs/cifar10", format="savedmodel")
    # -> runs/cifar10/export/savedmodel/, served by plain TensorFlow:
    #    tf.saved_model.load(path).serve(images)

=============  ==========================  ====================================
``format``     default path in a run dir   what a client needs
=============  ==========================  ====================================
``keras``      ``export/model.keras``      Keras 3 and annzoo (custom layers)
``savedmodel`` ``export/savedmodel/``      TensorFlow only (``serve`` endpoint)
``onnx``       ``export/model.onnx``       ONNX Runtime only
=============  ==========================  ====================================

Each export comes with a small JSON description (input names, shapes and
dtypes, output shapes, versions): ``<path>.json`` next to a file, or
``annzoo-export.json`` inside a SavedModel; a CRF tagger's also holds the CRF's
transitions, since the export's output is the emission scores and the tags are
their Viterbi path. Everything is written atomically: a
SavedModel is built in a ``.annzoo-tmp-`` sibling directory and swapped into
place, so an interrupted export leaves the previous one complete.

Split by concern: this module resolves sources and targets and writes the
Keras and SavedModel forms and the descriptions; `annzoo.export.onnx` the ONNX
form (tf2onnx's output completed and checked); `annzoo.export.step` a language
model's one-step function (``step=True``).
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import Any

import keras

import annzoo.layers  # noqa: F401  (registers the custom layers for loading)
from annzoo import io as aio
from annzoo._checks import check_bool, check_choice
from annzoo._version import __version__
from annzoo.errors import AnnzooError, CheckpointError
from annzoo.export.describe import tensor as _tensor
from annzoo.export.onnx import export_onnx, export_step_onnx
from annzoo.export.step import (
    check_language_model,
    describe_step,
    write_step_savedmodel,
)
from annzoo.layers.crf import CRF, PAD_TAG
from annzoo.layers.gan import GAN
from annzoo.layers.walk import walk_layers
from annzoo.speedups import host_initialization

__all__ = ["FORMATS", "METADATA_NAME", "export", "served_model"]

FORMATS = ("keras", "savedmodel", "onnx")
WHICH = ("best", "final")
METADATA_NAME = "annzoo-export.json"  # inside a SavedModel directory
_DEFAULT_PATHS = {
    "keras": Path("export", "model.keras"),
    "savedmodel": Path("export", "savedmodel"),
    "onnx": Path("export", "model.onnx"),
}
_DEFAULT_STEP_PATHS = {
    "savedmodel": Path("export", "step_savedmodel"),
    "onnx": Path("export", "step.onnx"),
}
_SERVE_ENDPOINT = "serve"  # the name keras.export.ExportArchive gives it
_SERVING_SIGNATURE = "serving_default"


def export(
    source: keras.Model | str | os.PathLike,
    path: str | os.PathLike | None = None,
    *,
    format: str = "keras",
    which: str = "best",
    step: bool = False,
) -> Path:
    """Exports a model as a `.keras` file, a TensorFlow SavedModel or ONNX.

    The SavedModel and ONNX exports hold the forward pass in inference mode
    (dropout off, batch normalization on its moving statistics, augmentation
    layers inactive) with a dynamic batch axis; they run without annzoo and
    without Keras, in plain TensorFlow and in ONNX Runtime respectively, and
    need the TensorFlow backend to be written (`KERAS_BACKEND=tensorflow`).

    Args:
        source: a `keras.Model`, a `.keras` file, or a run directory written
            by `annzoo.training.train` (its `best.keras` or `final.keras`).
            A GAN exports its generator (`served_model`).
        path: where to write. Defaults, inside the run directory (the
            directory of a `.keras` file): `export/model.keras`,
            `export/savedmodel/` or `export/model.onnx`. Required when
            `source` is a model. An existing export there is replaced.
        format: `"keras"` (a copy of the model, for Keras clients),
            `"savedmodel"` (`tf.saved_model.load(path).serve(x)`) or
            `"onnx"` (`onnxruntime.InferenceSession(path)`).
        which: in a run directory, `"best"` (the best epoch) or `"final"`
            (the last epoch).
        step: for a language model, export its one-step function instead
            of the full-sequence pass: `(token, position, cache[, classes])
            -> (logits, cache)`, so a client generates without recomputing
            the prefix (`annzoo.export.step`). SavedModel or ONNX; default
            paths `export/step_savedmodel/` and `export/step.onnx`. Any
            other model is refused (`annzoo.export.step.NotALanguageModelError`)
            before anything is written.

    Returns:
        The path of the export. Its description is `<path>.json`, or
        `annzoo-export.json` inside a SavedModel.

    Example:
        >>> path = annzoo.export.export("runs/mnist", format="onnx")
        >>> session = onnxruntime.InferenceSession(path)
    """
    check_choice("format", format, FORMATS)
    check_choice("which", which, WHICH)
    step = check_bool("step", step)
    if step and format == "keras":
        raise AnnzooError(
            "`step=True` exports a language model's one-step function as a "
            "SavedModel or ONNX (a .keras file holds the whole model, which "
            "annzoo.generation steps itself). Received: format='keras'"
        )
    if format != "keras":
        _check_backend(format)
    model_file, base = _resolve_source(source, which)
    if step and path is None and base is not None:
        path = base / _DEFAULT_STEP_PATHS[format]
    target = _resolve_target(path, base, format)

    if model_file is None:
        model = source
    else:
        model = _load(model_file)
    if not isinstance(model, keras.Model):
        raise AnnzooError(
            "`source` must be a keras.Model, a .keras file or a run directory. "
            f"Received: source={source!r} of type {type(source).__name__}"
        )
    provenance = None if model_file is None else str(model_file)
    model = served_model(model)
    if step:
        check_language_model(model, provenance)  # before anything is written
        return _export_step(model, target, provenance, format)

    if format == "keras":
        aio.save_model(model, target)
        info = _describe_keras(model)
    elif format == "onnx":
        info = export_onnx(model, target)
    else:
        info = _export_savedmodel(model, target, provenance)
    if format != "savedmodel":
        aio.write_json(
            target.with_name(target.name + ".json"),
            _metadata(model, format, info, provenance),
        )
    return target


def served_model(model: keras.Model) -> keras.Model:
    """The network an export of ``model`` holds: a GAN's generator (noise, and
    labels when conditional, to images: what a GAN is deployed for; its
    discriminator only serves training), else the model itself. An
    autoencoder exports whole (images to reconstructions); its decoder alone
    is ``model.get_layer("decoder")``, a model that exports like any other."""
    return model.generator if isinstance(model, GAN) else model


# --- validation -----------------------------------------------------------------


def _check_backend(format: str) -> None:
    backend = keras.backend.backend()
    if backend != "tensorflow":
        raise AnnzooError(
            f"`format={format!r}` exports need the TensorFlow backend: set "
            "KERAS_BACKEND=tensorflow before Keras is imported, or use "
            f"format='keras'. Received: backend={backend!r}"
        )
    if format == "onnx":
        missing = [
            name
            for name in ("tf2onnx", "onnx")
            if importlib.util.find_spec(name) is None
        ]
        if missing:
            raise AnnzooError(
                f"`format='onnx'` needs the {' and '.join(missing)} package(s): "
                "pip install 'annzoo[export]'. Received: format='onnx'"
            )


def _resolve_source(source: Any, which: str) -> tuple[Path | None, Path | None]:
    """The `.keras` file to load (None for a model) and the default base dir."""
    if isinstance(source, keras.Model):
        return None, None
    if not isinstance(source, (str, os.PathLike)):
        raise AnnzooError(
            "`source` must be a keras.Model, a .keras file or a run directory. "
            f"Received: source={source!r} of type {type(source).__name__}"
        )
    location = Path(source)
    if location.is_dir():
        model_file = location / f"{which}.keras"
        if not model_file.is_file():
            raise AnnzooError(
                f"`source` {str(location)!r} holds no {model_file.name!r}: expected "
                "a run directory written by annzoo.training.train (with "
                "best.keras and final.keras), or a .keras file. "
                f"Received: source={str(source)!r}, which={which!r}"
            )
        return model_file, location
    if location.is_file():
        if location.suffix != ".keras":
            raise AnnzooError(
                "`source` must be a keras.Model, a .keras file or a run directory. "
                f"Received: source={str(source)!r} (a file without .keras)"
            )
        return location, location.parent
    raise AnnzooError(
        f"`source` {str(location)!r} does not exist: expected a .keras file or a "
        "run directory holding best.keras and final.keras. "
        f"Received: source={str(source)!r}"
    )


def _resolve_target(path: Any, base: Path | None, format: str) -> Path:
    if path is None:
        if base is None:
            raise AnnzooError(
                "`path` is required when `source` is a keras.Model (the default "
                "is inside a run directory). Received: path=None"
            )
        target = base / _DEFAULT_PATHS[format]
    elif isinstance(path, (str, os.PathLike)):
        target = Path(path)
    else:
        raise AnnzooError(f"`path` must be a str or a Path. Received: path={path!r}")

    if format == "keras" and target.suffix != ".keras":
        raise AnnzooError(
            "`path` must end in .keras for format='keras'. "
            f"Received: path={str(target)!r}"
        )
    if format == "savedmodel":
        if target.exists() and not target.is_dir():
            raise AnnzooError(
                "`path` must be a directory for format='savedmodel', and "
                f"{str(target)!r} is a file. Received: path={str(target)!r}"
            )
        # Never replace a directory that is not an export: path='runs/x' by
        # mistake must not delete a run.
        if (
            target.is_dir()
            and any(target.iterdir())
            and not (target / "saved_model.pb").is_file()
        ):
            raise AnnzooError(
                f"`path` {str(target)!r} is a directory that is not a SavedModel; "
                "refusing to replace it. Choose a new or empty directory. "
                f"Received: path={str(target)!r}"
            )
    elif target.is_dir():
        raise AnnzooError(
            f"`path` {str(target)!r} is a directory; format={format!r} writes a "
            f"file. Received: path={str(target)!r}"
        )
    return target


def _load(model_file: Path) -> keras.Model:
    aio.check_file(model_file)  # against the run's manifest, when there is one
    try:
        with host_initialization():  # JAX: no XLA program per weight shape
            return keras.saving.load_model(model_file, compile=False)
    except Exception as error:  # corrupt, truncated, or from another Keras
        raise CheckpointError(
            f"Cannot load the model in {str(model_file)!r}: {error}"
        ) from error


# --- formats ---------------------------------------------------------------------


def _export_savedmodel(
    model: keras.Model, target: Path, provenance: str | None
) -> dict[str, Any]:
    # Built in a temporary sibling and swapped into place whole.
    with aio.atomic_directory(target) as tmp:
        model.export(str(tmp), format="tf_saved_model", verbose=False)
        info = _describe_savedmodel(tmp)
        aio.write_json(
            tmp / METADATA_NAME, _metadata(model, "savedmodel", info, provenance)
        )
    return info


def _export_step(
    model: keras.Model, target: Path, provenance: str | None, format: str
) -> Path:
    described = describe_step(model)
    if format == "onnx":
        info = export_step_onnx(model, target)
        info["endpoint"] = described.pop("endpoint")
        metadata = _metadata(model, "onnx", info, provenance)
        aio.write_json(
            target.with_name(target.name + ".json"), {**metadata, "step": described}
        )
        return target
    with aio.atomic_directory(target) as tmp:
        write_step_savedmodel(model, tmp)
        info = _describe_savedmodel(tmp)
        info["endpoint"] = described.pop("endpoint")
        metadata = _metadata(model, "savedmodel", info, provenance)
        aio.write_json(tmp / METADATA_NAME, {**metadata, "step": described})
    return target


# --- descriptions -----------------------------------------------------------------


def _describe_keras(model: keras.Model) -> dict[str, Any]:
    return {
        "inputs": [_tensor(t.name, t.shape, t.dtype) for t in model.inputs],
        "outputs": [
            _tensor(name, t.shape, t.dtype)
            for name, t in zip(model.output_names, model.outputs, strict=True)
        ],
    }


def _describe_savedmodel(directory: Path) -> dict[str, Any]:
    """The `serving_default` signature, read from saved_model.pb."""
    # Deferred: TensorFlow only for SavedModel/ONNX exports (not needed on JAX).
    import tensorflow as tf
    from tensorflow.core.protobuf import saved_model_pb2

    saved = saved_model_pb2.SavedModel()
    saved.ParseFromString((directory / "saved_model.pb").read_bytes())
    signature = saved.meta_graphs[0].signature_def[_SERVING_SIGNATURE]

    def describe(tensors) -> list[dict[str, Any]]:
        return [
            _tensor(
                key,
                [None if d.size < 0 else d.size for d in tensors[key].tensor_shape.dim],
                tf.dtypes.as_dtype(tensors[key].dtype).name,
            )
            for key in sorted(tensors)
        ]

    return {
        "endpoint": _SERVE_ENDPOINT,
        "signature": _SERVING_SIGNATURE,
        "inputs": describe(signature.inputs),
        "outputs": describe(signature.outputs),
        "tensorflow_version": tf.__version__,
    }


def _describe_crf(model: keras.Model) -> dict[str, Any] | None:
    """A CRF tagger's decoding parameters, which its forward pass never reads.

    The model's output is the emission scores (what ``model.predict`` gives);
    the tags are their Viterbi path under the CRF's transitions, which an
    export of the forward pass alone would leave behind.
    """
    layers = [layer for layer in walk_layers(model) if isinstance(layer, CRF)]
    if len(layers) != 1:
        return None
    (crf,) = layers
    transitions, start, end = (
        keras.ops.convert_to_numpy(w).astype(float).tolist()
        for w in (crf.transitions, crf.start_transitions, crf.end_transitions)
    )
    return {
        "layer": crf.name,
        "decoding": "Viterbi over the output (emission scores); real steps are "
        "the non-zero token ids; padded steps get pad_tag",
        "transitions": transitions,
        "start_transitions": start,
        "end_transitions": end,
        "pad_tag": PAD_TAG,
    }


def _metadata(
    model: keras.Model, format: str, info: dict[str, Any], provenance: str | None
) -> dict[str, Any]:
    metadata = {
        "format": format,
        "model_name": model.name,
        "source": provenance,
        "keras_version": keras.__version__,
        "backend": keras.backend.backend(),
        "annzoo_version": __version__,
        **info,
    }
    crf = _describe_crf(model)
    if crf is not None and format != "keras":  # a .keras file keeps the layer
        metadata["crf"] = crf
    return metadata

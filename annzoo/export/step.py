"""A language model's one-step function as a SavedModel (``export(step=True)``).

The SavedModel holds one endpoint, ``step`` (also its ``serving_default``
signature), tracing `annzoo.generation.step.step_function`:

    loaded = tf.saved_model.load(path)
    cache = tf.zeros([batch, *cache_shape])       # from annzoo-export.json
    out = loaded.step(token=ids, position=tf.constant(0), cache=cache)
    out["logits"], out["cache"]                    # next-token logits, new cache

(a conditional model takes ``classes`` too). Generation is a loop around it:
feed ``<start>`` and the prompt one token per call from position 0, then the
token chosen from the logits, and so on, passing the returned cache back; no
step recomputes the prefix. TensorFlow is imported here only.

ONNX is not offered: the cache is written with ``keras.ops.slice_update``,
which TensorFlow runs as ``XlaDynamicUpdateSlice``, an op tf2onnx does not
convert.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import keras

from annzoo.generation.step import step_function

__all__ = ["STEP_ENDPOINT", "describe_step", "write_step_savedmodel"]

STEP_ENDPOINT = "step"


def describe_step(model: keras.Model) -> dict[str, Any]:
    """What a client needs to run the step: the cache's shape and the limits."""
    step = step_function(model)  # refuses a model that is not a language model
    inputs = ["token", "position", "cache"] + (["classes"] if step.conditional else [])
    return {
        "endpoint": STEP_ENDPOINT,
        "architecture": step.architecture,
        "inputs": inputs,
        "outputs": ["logits", "cache"],
        "cache_shape": [None, *step.cache_shape],
        "vocabulary_size": step.vocabulary_size,
        "max_length": step.max_length,
        "conditional": step.conditional,
        "usage": "cache starts as zeros of cache_shape (batch first); feed "
        "<start> and the prompt one token per call from position 0, then each "
        "chosen token, passing the returned cache back; position < max_length",
    }


def write_step_savedmodel(model: keras.Model, directory: Path) -> None:
    """Writes the ``step`` endpoint of ``model`` as a SavedModel in ``directory``."""
    # Deferred: TensorFlow only for SavedModel exports (not needed on JAX).
    import tensorflow as tf

    step = step_function(model)
    specs = [
        tf.TensorSpec((None,), tf.int32, name="token"),
        tf.TensorSpec((), tf.int32, name="position"),
        tf.TensorSpec((None, *step.cache_shape), tf.float32, name="cache"),
    ]
    if step.conditional:
        specs.append(tf.TensorSpec((None,), tf.int32, name="classes"))

        def endpoint(token, position, cache, classes):
            logits, cache = step.function(token, position, cache, classes)
            return {"logits": logits, "cache": cache}

    else:

        def endpoint(token, position, cache):
            logits, cache = step.function(token, position, cache)
            return {"logits": logits, "cache": cache}

    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint(STEP_ENDPOINT, endpoint, input_signature=specs)
    archive.write_out(str(directory), verbose=False)

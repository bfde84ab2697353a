"""A language model's one-step function as a SavedModel (``export(step=True)``).

The SavedModel holds one endpoint, ``step`` (also its ``serving_default``
signature), tracing `annzoo.generation.step.step_function`:

    loaded = tf.saved_model.load(path)
    cache = tf.zeros([batch, *cache_shape])       # from annzoo-export.json
    out = loaded.step(token=ids, position=tf.constant(0), cache=cache)
    out["logits"], out["new_cache"]                # next-token logits, new cache

(a conditional model takes ``classes`` too). Generation is a loop around it:
feed ``<start>`` and the prompt one token per call from position 0, then the
token chosen from the logits, and so on, passing ``new_cache`` back; no
step recomputes the prefix. TensorFlow is imported here only.

ONNX (``format="onnx"``): the same function, inputs and outputs by the same
names, for ONNX Runtime. The cache is written with ``keras.ops.slice_update``,
which TensorFlow runs as ``XlaDynamicUpdateSlice``, an op tf2onnx leaves
unconverted: `rewrite_dynamic_update_slice` replaces it with standard ONNX ops
(the update padded into place, selected by a padded mask).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import keras

from annzoo.errors import AnnzooError
from annzoo.generation.step import step_function
from annzoo.models.language_model import architecture_of

__all__ = [
    "STEP_ENDPOINT",
    "NotALanguageModelError",
    "check_language_model",
    "describe_step",
    "rewrite_dynamic_update_slice",
    "step_onnx",
    "write_step_savedmodel",
]

STEP_ENDPOINT = "step"


class NotALanguageModelError(AnnzooError):
    """A step export asked of a model that is not a language model.

    The message names the option that asked (``step=True``; the command line
    names its ``--step`` with `for_option`), the model expected and the one
    received, by its name and the file it was loaded from.
    """

    def __init__(
        self, model_name: str, source: str | None = None, option: str = "step=True"
    ) -> None:
        self.model_name, self.source, self.option = model_name, source, option
        where = "" if source is None else f" loaded from {source!r}"
        super().__init__(
            f"`{option}` exports a language model's one-step function, so the "
            "model must be a language model built by annzoo.build_language_model "
            "(a causal Transformer, LSTM or GRU over `tokens`). "
            f"Received: model={model_name!r}{where}"
        )

    def for_option(self, option: str) -> NotALanguageModelError:
        """The same refusal, naming ``option`` (``"--step"``) instead."""
        return NotALanguageModelError(self.model_name, self.source, option)


def check_language_model(model: keras.Model, source: str | None = None) -> str:
    """``model``'s architecture; `NotALanguageModelError` if it has no step."""
    try:
        return architecture_of(model)
    except AnnzooError:
        name = getattr(model, "name", type(model).__name__)
        raise NotALanguageModelError(name, source) from None


def describe_step(model: keras.Model) -> dict[str, Any]:
    """What a client needs to run the step: the cache's shape and the limits."""
    check_language_model(model)
    step = step_function(model)
    inputs = ["token", "position", "cache"] + (["classes"] if step.conditional else [])
    return {
        "endpoint": STEP_ENDPOINT,
        "architecture": step.architecture,
        "inputs": inputs,
        "outputs": ["logits", "new_cache"],
        "cache_shape": [None, *step.cache_shape],
        "vocabulary_size": step.vocabulary_size,
        "max_length": step.max_length,
        "conditional": step.conditional,
        "usage": "cache starts as zeros of cache_shape (batch first); feed "
        "<start> and the prompt one token per call from position 0, then each "
        "chosen token, passing the returned cache back; position < max_length",
    }


def _endpoint(model: keras.Model):
    """The traceable step of ``model`` (dict outputs) and its input signature."""
    # Deferred: TensorFlow only for SavedModel and ONNX exports.
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
            return {"logits": logits, "new_cache": cache}

    else:

        def endpoint(token, position, cache):
            logits, cache = step.function(token, position, cache)
            return {"logits": logits, "new_cache": cache}

    return endpoint, specs


def write_step_savedmodel(model: keras.Model, directory: Path) -> None:
    """Writes the ``step`` endpoint of ``model`` as a SavedModel in ``directory``."""
    endpoint, specs = _endpoint(model)
    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint(STEP_ENDPOINT, endpoint, input_signature=specs)
    archive.write_out(str(directory), verbose=False)


def step_onnx(model: keras.Model) -> Any:
    """The step of ``model`` as an ONNX ``ModelProto``, outputs named
    ``logits`` and ``new_cache``; ``XlaDynamicUpdateSlice`` still to rewrite."""
    # Deferred: TensorFlow and tf2onnx only for ONNX exports.
    import tensorflow as tf
    import tf2onnx
    from onnx import helper

    endpoint, specs = _endpoint(model)
    function = tf.function(endpoint, input_signature=specs)
    outputs = function.get_concrete_function().structured_outputs
    proto, _ = tf2onnx.convert.from_function(function, input_signature=specs)
    graph = proto.graph
    # tf2onnx names the outputs after graph tensors (in the order of the
    # flattened dict: sorted keys); the exported names are the step's own.
    produced = [value.name for value in graph.output]
    for name, source in zip(sorted(outputs), produced, strict=True):
        if name == source:
            continue
        graph.node.append(helper.make_node("Identity", [source], [name]))
        value = next(v for v in graph.output if v.name == source)
        value.name = name
    return proto


def rewrite_dynamic_update_slice(graph: Any) -> int:
    """Replaces each ``XlaDynamicUpdateSlice(operand, update, starts)`` node by
    standard ONNX ops; returns how many.

    XLA's semantics: ``update`` overwrites ``operand`` from ``starts``, each
    start clamped to ``[0, operand_dim - update_dim]``. Here: the update and a
    mask of ones are padded (``Pad``, the pads computed from the shapes and the
    clamped starts) to the operand's shape, and ``Where`` selects.
    """
    # Deferred: onnx is an optional extra (annzoo[export]).
    from onnx import TensorProto, helper

    nodes, count = [], 0
    for node in graph.node:
        if node.op_type != "XlaDynamicUpdateSlice":
            nodes.append(node)
            continue
        count += 1
        operand, update, starts = node.input
        (out,) = node.output
        n = f"{node.name}/annzoo"

        def make(op, inputs, name, stem=n, **attributes):
            nodes.append(
                helper.make_node(op, inputs, [f"{stem}/{name}"],
                                 name=f"{stem}/{name}", **attributes)
            )  # fmt: skip
            return f"{stem}/{name}"

        operand_shape = make("Shape", [operand], "operand_shape")
        update_shape = make("Shape", [update], "update_shape")
        room = make("Sub", [operand_shape, update_shape], "room")
        start = make("Cast", [starts], "start", to=TensorProto.INT64)
        zero = make(
            "Constant", [], "zero",
            value=helper.make_tensor("zero", TensorProto.INT64, [], [0]),
        )  # fmt: skip
        start = make("Min", [make("Max", [start, zero], "low"), room], "clamped")
        after = make("Sub", [room, start], "after")
        pads = make("Concat", [start, after], "pads", axis=0)
        placed = make("Pad", [update, pads], "placed")
        one = helper.make_tensor("one", TensorProto.FLOAT, [1], [1.0])
        ones = make("ConstantOfShape", [update_shape], "ones", value=one)
        mask = make("Cast", [make("Pad", [ones, pads], "padded_ones")], "mask",
                    to=TensorProto.BOOL)  # fmt: skip
        nodes.append(
            helper.make_node("Where", [mask, placed, operand], [out], name=f"{n}/Where")
        )
    if count:
        del graph.node[:]
        graph.node.extend(nodes)
    return count

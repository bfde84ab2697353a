"""ONNX exports: tf2onnx's output completed and checked (`annzoo.export`).

tf2onnx passes a TensorFlow op it has no handler for into the graph unchanged
(logging an error) and writes a file ONNX Runtime refuses to load. The two ops
annzoo's models meet are rewritten here in standard ONNX ops: ``Erfc`` (the
exact GELU) and, in a language model's step, ``XlaDynamicUpdateSlice`` (its
cache writes, `annzoo.export.step.rewrite_dynamic_update_slice`); any other
makes the export fail with one sentence, before the file replaces a previous
export.
"""

from __future__ import annotations

import logging
import re
import warnings
from pathlib import Path
from typing import Any

import keras
import numpy as np

from annzoo import io as aio
from annzoo.errors import AnnzooError
from annzoo.export.describe import tensor as _tensor
from annzoo.export.step import rewrite_dynamic_update_slice, step_onnx

__all__ = ["describe_onnx", "export_onnx", "export_step_onnx"]


def export_onnx(model: keras.Model, target: Path) -> dict[str, Any]:
    _mark_called(model)
    converter_log = logging.getLogger("tf2onnx.tfonnx")
    converter_log.addFilter(_rewritten_op_errors)
    try:
        with aio.atomic_path(target) as tmp, warnings.catch_warnings():
            # keras' tf2onnx patch for numpy 2 probes np.object.
            warnings.filterwarnings("ignore", message=".*np.object.*")
            model.export(tmp, format="onnx", verbose=False)
            _complete_onnx(model, tmp)
            info = describe_onnx(tmp)
    finally:
        converter_log.removeFilter(_rewritten_op_errors)
    return info


def _rewritten_op_errors(record: logging.LogRecord) -> bool:
    """Drops tf2onnx's errors about ops that `_complete_onnx` rewrites.

    tf2onnx logs "Tensorflow op [...Erfc] is not supported" and "Unsupported
    ops: Counter({'Erfc': 1})" for every exact GELU, then the export succeeds;
    an error naming any other op is kept (and the export fails).
    """
    message = record.getMessage()
    if message.startswith("Unsupported ops: Counter("):
        return set(re.findall(r"'(\w+)'", message)) != {"Erfc"}
    return not (message.startswith("Tensorflow op [") and ": Erfc]" in message)


def _complete_onnx(model: keras.Model, file: Path) -> None:
    """Rewrites what tf2onnx leaves unconverted, then checks the graph.

    tf2onnx passes a TensorFlow op it has no handler for into the graph
    unchanged (logging an error) and writes a file that ONNX Runtime refuses
    to load. ``Erfc``, from the exact GELU (``activation="gelu"``, ViT and
    Transformer feed-forward blocks), is rewritten as ``1 - Erf(x)`` with
    standard ONNX ops; any other op makes the export fail here, before the
    file replaces a previous export.
    """
    # Deferred: onnx is an optional extra (annzoo[export]).
    import onnx

    proto = onnx.load(str(file))
    opset = {op.domain or "ai.onnx": op.version for op in proto.opset_import}
    rewritten = sum(_rewrite_erfc(graph) for graph in _graphs(proto.graph))
    unknown = sorted(
        {
            node.op_type
            for graph in _graphs(proto.graph)
            for node in graph.node
            if node.domain in ("", "ai.onnx")
            and not onnx.defs.has(node.op_type, opset["ai.onnx"], "")
        }
    )
    if unknown:
        raise AnnzooError(
            f"Cannot export model {model.name!r} to ONNX: tf2onnx cannot convert "
            f"the TensorFlow op(s) {', '.join(unknown)} (opset "
            f"{opset['ai.onnx']}); export it with format='savedmodel' or "
            "format='keras' instead."
        )
    onnx.checker.check_model(proto)
    if rewritten:
        onnx.save(proto, str(file))


def _graphs(graph: Any) -> list[Any]:
    """``graph`` and every subgraph under it (loop and branch bodies)."""
    # Deferred: onnx is an optional extra (annzoo[export]).
    import onnx

    found = [graph]
    for node in graph.node:
        for attribute in node.attribute:
            if attribute.type == onnx.AttributeProto.GRAPH:
                found += _graphs(attribute.g)
            elif attribute.type == onnx.AttributeProto.GRAPHS:
                for subgraph in attribute.graphs:
                    found += _graphs(subgraph)
    return found


def _rewrite_erfc(graph: Any) -> int:
    """Replaces each ``Erfc(x)`` node by ``1 - Erf(x)``; returns how many."""
    # Deferred: onnx is an optional extra (annzoo[export]).
    from onnx import TensorProto, helper

    nodes, count = [], 0
    for node in graph.node:
        if node.op_type != "Erfc" or node.domain not in ("", "ai.onnx"):
            nodes.append(node)
            continue
        count += 1
        stem = f"{node.name}/annzoo"
        (x,), (y,) = node.input, node.output
        nodes += [
            helper.make_node("Erf", [x], [f"{stem}/erf"], name=f"{stem}/Erf"),
            helper.make_node(
                "Constant",
                [],
                [f"{stem}/one"],
                name=f"{stem}/One",
                value=helper.make_tensor("one", TensorProto.FLOAT, [], [1.0]),
            ),
            helper.make_node(
                "Sub", [f"{stem}/one", f"{stem}/erf"], [y], name=f"{stem}/Sub"
            ),
        ]
    if count:
        del graph.node[:]
        graph.node.extend(nodes)
    return count


def _mark_called(model: keras.Model) -> None:
    """Calls the model once on zeros (inference mode) if it has inputs.

    Keras 3.15's ONNX export refuses a model that was never called, which is
    the case of every model fresh from `load_model`, functional ones included.
    """
    try:
        structure = model.input
    except (AttributeError, ValueError):  # a subclassed model: Keras decides
        return
    zeros = keras.tree.map_structure(
        lambda t: np.zeros([1 if d is None else d for d in t.shape], t.dtype),
        structure,
    )
    model(zeros, training=False)


def export_step_onnx(model: keras.Model, target: Path) -> dict[str, Any]:
    """The step as ONNX, its cache writes (and exact GELUs) rewritten."""
    # Deferred: onnx is an optional extra (annzoo[export]).
    import onnx

    converter_log = logging.getLogger("tf2onnx.tfonnx")
    converter_log.addFilter(_rewritten_step_errors)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*np.object.*")
            proto = step_onnx(model)
    finally:
        converter_log.removeFilter(_rewritten_step_errors)
    for graph in _graphs(proto.graph):
        rewrite_dynamic_update_slice(graph)
    with aio.atomic_path(target) as tmp:
        onnx.save(proto, str(tmp))
        _complete_onnx(model, tmp)
        return describe_onnx(tmp)


def _rewritten_step_errors(record: logging.LogRecord) -> bool:
    """`_rewritten_op_errors`, and tf2onnx's errors about the cache's
    ``XlaDynamicUpdateSlice``, which `rewrite_dynamic_update_slice` rewrites."""
    message = record.getMessage()
    rewritten = {"Erfc", "XlaDynamicUpdateSlice"}
    if message.startswith("Unsupported ops: Counter("):
        return not set(re.findall(r"'(\w+)'", message)) <= rewritten
    return not (
        message.startswith("Tensorflow op [")
        and any(f": {op}]" in message for op in rewritten)
    )


def describe_onnx(file: Path) -> dict[str, Any]:
    # Deferred: onnx is an optional extra (annzoo[export]).
    import onnx

    proto = onnx.load(str(file), load_external_data=False)
    graph = proto.graph
    weights = {init.name for init in graph.initializer}

    def describe(values) -> list[dict[str, Any]]:
        described = []
        for value in values:
            if value.name in weights:
                continue
            tensor = value.type.tensor_type
            described.append(
                _tensor(
                    value.name,
                    [
                        d.dim_value if d.HasField("dim_value") else None
                        for d in tensor.shape.dim
                    ],
                    onnx.helper.tensor_dtype_to_np_dtype(tensor.elem_type).name,
                )
            )
        return described

    return {
        "inputs": describe(graph.input),
        "outputs": describe(graph.output),
        "opset": {op.domain or "ai.onnx": op.version for op in proto.opset_import},
        "producer": proto.producer_name,
        "producer_version": proto.producer_version,
    }

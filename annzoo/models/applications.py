"""keras.applications backbones with annzoo's head, ready for fine-tuning.

The backbone is ``keras.applications.<architecture>(include_top=False)``,
with its ImageNet weights when ``weights="imagenet"``; the classifier on top
is annzoo's own head (``head_logits`` + ``predictions``), so that
:func:`annzoo.finetune`, :func:`annzoo.replace_head` and
:func:`annzoo.feature_extractor` find it like on any annzoo model. The model is
flat: the backbone's layers (``conv5_block3_out``, ``block_16_project``...)
are the model's own layers, so they can be frozen and tapped by name.

With ``num_classes=1000`` the model has exactly the parameters of the
keras.applications model with its top, but the ImageNet classifier weights
are not loaded: only the backbone's are. Train the head (``annzoo.finetune``
does, with the backbone frozen) before using it.
"""

from __future__ import annotations

from typing import Any

import keras

from annzoo import tasks
from annzoo._checks import (
    check_choice,
    check_input_shape,
    check_name,
    check_parameter_terms,
    check_rate,
)
from annzoo.errors import AnnzooError
from annzoo.models._common import (
    check_compile,
    check_outputs,
    finish,
    output_arguments,
    output_head,
    shape_arguments,
)
from annzoo.registry import FamilySpec, Reference, register, register_preset

__all__ = ["build_application", "ARCHITECTURES"]

# The image classifiers of keras.applications (constructor names).
ARCHITECTURES = tuple(
    sorted(
        name
        for name in dir(keras.applications)
        if name[:1].isupper() and callable(getattr(keras.applications, name))
    )
)
POOLINGS = ("avg", "max")


def _dataset_arguments(train: Any) -> dict[str, Any]:
    return {**shape_arguments(train), **output_arguments(train, width="num_classes")}


SPEC = FamilySpec(
    tasks=tasks.SAMPLE_TASKS,
    data=("sample",),
    dataset_arguments=_dataset_arguments,
    # A pretrained backbone is fine-tuned, not searched: the search varies only
    # the optimizer, learning rate and batch size (annzoo.tuning.COMMON_SPACE).
    search_space={},
    # VGG16: 22 layers compile in a quarter of MobileNetV2's 157 (the smoke
    # checks annzoo's wrapper and head, not Keras' backbones).
    smoke=dict(
        architecture="VGG16",
        input_shape=(32, 32, 3),
        num_classes=3,
        weights=None,
    ),  # fmt: skip
    predict=("arrays",),
    report=("confusion_matrix",),
)


@register("applications", spec=SPEC)
def build_application(
    architecture: str,
    input_shape: tuple[int, int, int] = (224, 224, 3),
    num_classes: int = 1000,
    *,
    weights: str | None = "imagenet",
    pooling: str = "avg",
    dropout: float = 0.0,
    task: str = "multiclass",
    compile: bool | dict = True,
    name: str | None = None,
) -> keras.Model:
    """Builds a keras.applications backbone with annzoo's classifier head.

    Input contract: float images, channels last, preprocessed the way the
    architecture's ImageNet weights expect, with its own
    ``keras.applications.<module>.preprocess_input`` (ResNet50: BGR with the
    ImageNet means subtracted, from [0, 255]; MobileNetV2: [-1, 1];
    EfficientNet: raw [0, 255], the model rescales itself). The builder adds
    no preprocessing layer.

    ImageNet weights need 3 channels and at least 32x32 pixels (Keras' rule).
    For grayscale or other sizes, build at the ImageNet shape and adapt the
    input with ``annzoo.finetune(model, input_shape=(28, 28, 1))``, which
    repeats the gray channel and resizes. With ``weights=None`` any channel
    count works (from scratch).

    Args:
        architecture: a keras.applications constructor name (``"ResNet50"``,
            ``"MobileNetV2"``, ``"EfficientNetB0"``...).
        input_shape: ``(height, width, channels)``.
        num_classes: output units (1 for ``task="binary"``).
        weights: ``"imagenet"`` (downloaded once to ``~/.keras/models`` on
            first use), ``None`` (random initialization) or the path of a
            weights file for the backbone.
        pooling: global ``"avg"`` or ``"max"`` pooling of the last feature map.
        dropout: rate in [0, 1) before the head.
        task: ``"multiclass"``, ``"binary"`` or ``"regression"``.
        compile: ``True``, ``False`` or a dict of ``annzoo.compile_model``
            arguments.
        name: the model's name; defaults to the architecture in lower case.

    Returns:
        A flat ``keras.Model`` mapping ``images`` to ``predictions``.

    Example:
        >>> model = annzoo.build_application("MobileNetV2", (96, 96, 3), 5)
        >>> model = annzoo.finetune(model)  # backbone frozen, head trains
    """
    architecture = check_choice("architecture", architecture, ARCHITECTURES)
    task = tasks.check_task(task, tasks.SAMPLE_TASKS)
    input_shape = check_input_shape("input_shape", input_shape, rank=3)
    num_classes = check_outputs("num_classes", num_classes, task)
    pooling = check_choice("pooling", pooling, POOLINGS)
    dropout = check_rate("dropout", dropout)
    compile = check_compile(compile, task)
    name = check_name("name", name, allow_none=True)
    if weights is not None and not isinstance(weights, str):
        raise AnnzooError(
            "`weights` must be 'imagenet', None or the path of a weights file. "
            f"Received: weights={weights!r}"
        )
    if weights == "imagenet" and input_shape[-1] != 3:
        raise AnnzooError(
            f"`input_shape` must have 3 channels with weights='imagenet' (the "
            f"ImageNet weights are for RGB images). Received: input_shape="
            f"{input_shape}. Build at 3 channels and adapt the input with "
            "annzoo.finetune(model, input_shape=...), or pass weights=None to "
            "train from scratch."
        )

    # The backbone's size is fixed; what the arguments can blow up is the
    # first convolution (every backbone starts with at least 16 filters of
    # at least 3x3 per input channel) and the head (every backbone ends in at
    # least 512 features, VGG's), refused before anything is allocated.
    channels = input_shape[2] or 1
    check_parameter_terms(
        [
            (9 * 16 * channels, [("input_shape", input_shape, channels)]),
            (512 * num_classes, [("num_classes", num_classes, num_classes)]),
        ]
    )

    inputs = keras.Input(input_shape, name="images")
    backbone = _backbone(architecture, inputs, weights, pooling)
    x = backbone.output
    if dropout:
        x = keras.layers.Dropout(dropout, name="head_dropout")(x)
    outputs = output_head(x, num_classes, task)
    model = keras.Model(inputs, outputs, name=name or architecture.lower())
    return finish(model, task, compile)


def _backbone(architecture: str, inputs, weights: Any, pooling: str):
    constructor = getattr(keras.applications, architecture)
    try:
        return constructor(
            include_top=False,
            weights=weights,
            input_tensor=inputs,
            # Also the shape, for Keras' own checks (minimum size, channels).
            input_shape=tuple(inputs.shape[1:]),
            pooling=pooling,
        )
    except ValueError as error:
        # Keras' own checks: input size too small, channels for imagenet...
        raise AnnzooError(
            f"keras.applications.{architecture} refused the arguments: {error} "
            f"Received: input_shape={tuple(inputs.shape[1:])}, weights={weights!r}"
        ) from error
    except Exception as error:
        if weights != "imagenet":
            raise
        raise AnnzooError(
            f"Could not load the ImageNet weights of {architecture}: {error}. "
            "They are downloaded to ~/.keras/models on first use; without "
            "network access pass weights=None or the path of a local weights "
            "file. Received: weights='imagenet'"
        ) from error


_TABLE = (
    "keras.io/api/applications table ({rounded}); exact total of "
    "keras.applications.{arch}(include_top=True): {exact:,}"
)


def _imagenet_preset(architecture: str, exact: int, rounded: str, note: str):
    return dict(
        description=(
            f"keras.applications {architecture} with ImageNet backbone weights "
            f"and annzoo's 1000-class head (not pretrained); {note}"
        ),
        reference=Reference(
            params=exact,
            kind="total",
            source=_TABLE.format(rounded=rounded, arch=architecture, exact=exact),
        ),
        architecture=architecture,
        input_shape=(224, 224, 3),
        num_classes=1000,
    )


# Totals = backbone without top + the 1000-way dense layer on the pooled
# features: ResNet50 23,587,712 + 2048*1000 + 1000; MobileNetV2 2,257,984 +
# 1280*1000 + 1000; EfficientNetB0 4,049,571 + 1280*1000 + 1000.
PRESETS: dict[str, dict[str, Any]] = {
    "resnet50_imagenet": _imagenet_preset(
        "ResNet50",
        25_636_712,
        "25.6M",
        "inputs through keras.applications.resnet50.preprocess_input.",
    ),
    "mobilenetv2_imagenet": _imagenet_preset(
        "MobileNetV2",
        3_538_984,
        "3.5M",
        "inputs scaled to [-1, 1] (keras.applications.mobilenet_v2).",
    ),
    "efficientnetb0_imagenet": _imagenet_preset(
        "EfficientNetB0",
        5_330_571,
        "5.3M",
        "raw [0, 255] inputs (the model rescales and normalizes itself).",
    ),
}

for _name, _preset in PRESETS.items():
    register_preset(_name, "applications", **_preset)

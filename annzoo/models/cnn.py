"""Convolutional image classifiers: LeNet-style stacks, VGG blocks and ResNets."""

from __future__ import annotations

import math
from typing import Any

import keras

from annzoo import tasks
from annzoo._checks import (
    check_bool,
    check_choice,
    check_input_shape,
    check_int_sequence,
    check_name,
    check_parameter_terms,
    check_positive_int,
    check_rate,
    per_stage,
)
from annzoo.errors import AnnzooError
from annzoo.layers import PaddedIdentity
from annzoo.models._common import (
    DROPOUT_RATES,
    check_activation,
    check_compile,
    check_outputs,
    dense_stack,
    finish,
    functional_model,
    output_arguments,
    output_head,
    shape_arguments,
)
from annzoo.registry import FamilySpec, Reference, register, register_preset

__all__ = ["build_cnn"]

BLOCKS = ("plain", "basic", "bottleneck")
POOLINGS = ("auto", "max", "average", "none")
STEMS = ("none", "cifar", "imagenet")
SHORTCUTS = ("projection", "zero_pad")
HEADS = ("flatten", "avg", "max")
PADDINGS = ("same", "valid")
BOTTLENECK_EXPANSION = 4
# Keras' default batch-norm momentum, 0.99, makes the moving statistics (used
# at inference) forget their start (mean 0, variance 1) only after several
# hundred steps. A convolution of [0, 1] images has an output variance near
# 0.01, so until then inference divides by a 10x too large deviation: the
# digits_cnn recipe (40 steps per epoch) sat at chance on validation for 8
# epochs while its training-mode accuracy was above 0.9 from the first one.
# 0.9 (PyTorch's default, and the one of He et al.'s ResNets) forgets the start
# in about 50 steps (tests/test_cnn_batch_norm.py).
BN_MOMENTUM = 0.9


def _dataset_arguments(train: Any) -> dict[str, Any]:
    return {**shape_arguments(train), **output_arguments(train, width="num_classes")}


SPEC = FamilySpec(
    tasks=tasks.SAMPLE_TASKS,
    data=("sample",),
    dataset_arguments=_dataset_arguments,
    search_space={
        "filters": {"type": "layers", "depth": [1, 3], "values": [16, 32, 64]},
        "kernel_size": [3, 5],
        "batch_norm": {"type": "boolean"},
        "hidden_units": {"type": "layers", "depth": [0, 1], "values": [64, 128]},
        "dropout": DROPOUT_RATES,
    },
    smoke=dict(input_shape=(8, 8, 1), num_classes=3, filters=(4,)),
    predict=("arrays",),
    report=("confusion_matrix",),
)


@register("cnn", spec=SPEC)
def build_cnn(
    input_shape: tuple[int, int, int],
    num_classes: int,
    *,
    filters: int | tuple[int, ...] = (32, 64),
    depth: int | tuple[int, ...] = 1,
    block: str = "plain",
    kernel_size: int = 3,
    strides: int = 1,
    padding: str = "same",
    activation: str = "relu",
    pooling: str = "auto",
    batch_norm: bool | None = None,
    stem: str = "none",
    shortcut: str = "projection",
    head: str = "flatten",
    hidden_units: int | tuple[int, ...] = (),
    dropout: float = 0.0,
    task: str = "multiclass",
    compile: bool | dict = True,
    name: str = "cnn",
) -> keras.Model:
    """Builds a convolutional image classifier.

    The network is a stem, then one stage per entry of ``filters``, then a
    head. A ``"plain"`` stage is ``depth`` convolutions (conv -> [batch norm]
    -> activation) followed by pooling: the classic LeNet design, and VGG's
    when ``depth`` > 1. A ``"basic"`` or ``"bottleneck"`` stage is ``depth``
    residual blocks of He et al. (2016); every stage after the first halves
    the resolution with a strided convolution. The head flattens (or globally
    pools) the features, applies ``hidden_units`` dense layers and ends in
    ``num_classes`` outputs with the task's activation.

    Input contract: float images, channels last ``(height, width, channels)``,
    any size and channel count (grayscale is ``channels=1``), already scaled
    (for example to [0, 1]).

    Args:
        input_shape: ``(height, width, channels)`` of one image.
        num_classes: output units (classes; 1 for ``task="binary"``).
        filters: width of each stage (for bottleneck blocks, the inner width;
            a block outputs 4x as many channels). Its length is the number of
            stages.
        depth: convolutions (plain) or residual blocks per stage: one integer
            for every stage, or one per stage.
        block: ``"plain"``, ``"basic"`` (two 3x3 convolutions) or
            ``"bottleneck"`` (1x1 -> 3x3 -> 1x1).
        kernel_size: size of the plain convolutions.
        strides: stride of the first convolution of each plain stage (2
            halves the resolution without pooling).
        padding: ``"same"`` or ``"valid"`` for the plain convolutions.
        activation: activation after each convolution and hidden dense layer.
        pooling: after each plain stage: ``"max"``, ``"average"`` or
            ``"none"`` (2x2, stride 2). ``"auto"`` is max pooling for plain
            stages; residual stages never pool (they stride).
        batch_norm: batch normalization after each convolution. ``None`` means
            off for plain stages and on for residual ones (which require it).
        stem: ``"none"``; ``"cifar"``, a 3x3 convolution (He et al.'s CIFAR
            ResNets); or ``"imagenet"``, a 7x7 stride-2 convolution and a 3x3
            stride-2 max pooling. The stem has ``filters[0]`` channels.
        shortcut: residual shortcut when the shape changes: ``"projection"``
            (1x1 convolution and batch norm) or ``"zero_pad"`` (subsampling
            and zero channels, without parameters; He et al.'s option A).
        head: ``"flatten"``, or global ``"avg"`` / ``"max"`` pooling.
        hidden_units: dense layers between the features and the output.
        dropout: rate in [0, 1) after each hidden dense layer, or after the
            flattened features when there is none.
        task: ``"multiclass"``, ``"binary"`` or ``"regression"``.
        compile: ``True``, ``False`` or a dict of ``annzoo.compile_model``
            arguments.
        name: the model's name.

    Returns:
        A ``keras.Model`` mapping ``images`` to ``predictions``.

    Example:
        >>> model = annzoo.build_cnn((28, 28, 1), 10, filters=(32, 64))
        >>> model.fit(images, labels, epochs=5)
    """
    task = tasks.check_task(task, tasks.SAMPLE_TASKS)
    input_shape = check_input_shape("input_shape", input_shape, rank=3)
    num_classes = check_outputs("num_classes", num_classes, task)
    filters = check_int_sequence("filters", filters, allow_empty=False)
    depths = per_stage("depth", depth, len(filters))
    block = check_choice("block", block, BLOCKS)
    kernel_size = check_positive_int("kernel_size", kernel_size)
    strides = check_positive_int("strides", strides)
    padding = check_choice("padding", padding, PADDINGS)
    activation = check_activation("activation", activation)
    pooling = check_choice("pooling", pooling, POOLINGS)
    stem = check_choice("stem", stem, STEMS)
    shortcut = check_choice("shortcut", shortcut, SHORTCUTS)
    head = check_choice("head", head, HEADS)
    hidden_units = check_int_sequence("hidden_units", hidden_units)
    dropout = check_rate("dropout", dropout)
    compile = check_compile(compile, task)
    name = check_name("name", name)
    residual = block != "plain"
    if residual and pooling not in ("auto", "none"):
        raise AnnzooError(
            f"`pooling` applies to plain stages only; residual stages downsample "
            f"with strided convolutions. Received: pooling={pooling!r} with "
            f"block={block!r}"
        )
    if residual and batch_norm is False:
        raise AnnzooError(
            f"`batch_norm` cannot be False for residual blocks (block={block!r}): "
            "they are defined with batch normalization. Received: batch_norm=False"
        )
    if residual and shortcut == "zero_pad":
        # A parameter-free shortcut can add channels but never drop them.
        expansion = BOTTLENECK_EXPANSION if block == "bottleneck" else 1
        widths = [filters[0]] + [f * expansion for f in filters]
        if any(b < a for a, b in zip(widths, widths[1:], strict=False)):
            raise AnnzooError(
                "`filters` must not shrink from one residual stage to the next "
                "with shortcut='zero_pad' (it pads channels, it cannot drop "
                f"them); use shortcut='projection'. Received: filters={filters}"
            )
    if pooling == "auto":
        pooling = "none" if residual else "max"
    batch_norm = check_bool("batch_norm", batch_norm, allow_none=True)
    batch_norm = residual if batch_norm is None else batch_norm
    grid = _check_spatial_size(
        input_shape, depths, block, kernel_size, strides, padding, pooling, stem
    )
    check_parameter_terms(
        _weight_terms(
            input_shape, num_classes, filters, depths, block, kernel_size, stem,
            head, hidden_units, grid,
        )
    )  # fmt: skip

    inputs = keras.Input(input_shape, name="images")
    x = _stem(inputs, stem, filters[0], activation)
    for s, (width, count) in enumerate(zip(filters, depths, strict=True), start=1):
        if residual:
            for b in range(1, count + 1):
                stride = 2 if (b == 1 and s > 1) else 1
                x = _residual_block(
                    x, width, block, stride, activation, shortcut, f"stage{s}_block{b}"
                )
        else:
            for c in range(1, count + 1):
                x = _conv_bn_act(
                    x,
                    width,
                    kernel_size,
                    strides if c == 1 else 1,
                    padding,
                    batch_norm,
                    activation,
                    f"block{s}_conv{c}",
                )
            if pooling != "none":
                pool = (
                    keras.layers.MaxPooling2D
                    if pooling == "max"
                    else keras.layers.AveragePooling2D
                )
                x = pool(2, name=f"block{s}_pool")(x)

    if head == "flatten":
        x = keras.layers.Flatten(name="head_flatten")(x)
    elif head == "avg":
        x = keras.layers.GlobalAveragePooling2D(name="head_pool")(x)
    else:
        x = keras.layers.GlobalMaxPooling2D(name="head_pool")(x)
    x = dense_stack(
        x, hidden_units, activation=activation, dropout=dropout, prefix="head_dense"
    )
    outputs = output_head(x, num_classes, task)
    layers = {"filters": filters, "depth": depth, "hidden_units": hidden_units}
    model = functional_model(inputs, outputs, name=name, depth=layers)
    return finish(model, task, compile)


def _weight_terms(
    input_shape, num_classes, filters, depths, block, kernel_size, stem, head,
    hidden_units, grid,
):  # fmt: skip
    """The convolution and dense kernels of `build_cnn`, block by block, for
    `check_parameter_terms` (a lower bound: biases, batch norms and
    projection shortcuts left out)."""
    terms = []

    def add(count, *factors):
        terms.append((count, factors))

    # An unknown channel count (None) is Keras' to refuse when building.
    channels = ("input_shape", input_shape, input_shape[2] or 1)
    kernel = ("kernel_size", kernel_size, kernel_size)
    if stem != "none":
        size = 7 if stem == "imagenet" else 3
        add(
            size * size * channels[2] * filters[0],
            channels,
            ("filters", filters, filters[0]),
        )
        channels = ("filters", filters, filters[0])
    expansion = BOTTLENECK_EXPANSION if block == "bottleneck" else 1
    for width, count in zip(filters, depths, strict=True):
        stage, depth, c = (
            ("filters", filters, width),
            ("depth", depths, count),
            channels[2],
        )
        if block == "plain":
            add(kernel_size**2 * c * width, channels, stage, kernel)
            add((count - 1) * kernel_size**2 * width**2, stage, kernel, depth)
        elif block == "basic":  # 3x3 + 3x3 per block
            add(9 * c * width + (2 * count - 1) * 9 * width**2, channels, stage, depth)
        else:  # 1x1 (c -> w), 3x3, 1x1 (w -> 4w); later blocks start from 4w
            rest = (count - 1) * (2 * expansion + 9) * width**2
            add(c * width + (9 + expansion) * width**2 + rest, channels, stage, depth)
        channels = ("filters", filters, width * expansion)
    features, source = channels[2], channels
    if head == "flatten" and None not in grid:
        pixels = grid[0] * grid[1]
        features *= pixels
        if pixels > channels[2]:
            source = ("input_shape", input_shape, pixels)
    for units in hidden_units:
        layer = ("hidden_units", hidden_units, units)
        add(features * units, source, layer)
        features, source = units, layer
    add(features * num_classes, source, ("num_classes", num_classes, num_classes))
    return terms  # fmt: skip


def _conv_bn_act(
    x, filters, kernel_size, strides, padding, batch_norm, activation, name
):
    x = keras.layers.Conv2D(
        filters,
        kernel_size,
        strides=strides,
        padding=padding,
        use_bias=not batch_norm,
        name=name,
    )(x)
    if batch_norm:
        x = keras.layers.BatchNormalization(momentum=BN_MOMENTUM, name=f"{name}_bn")(x)
    if activation is not None:
        x = keras.layers.Activation(activation, name=f"{name}_act")(x)
    return x


def _stem(x, stem, filters, activation):
    if stem == "cifar":
        return _conv_bn_act(x, filters, 3, 1, "same", True, activation, "stem_conv")
    if stem == "imagenet":
        x = _conv_bn_act(x, filters, 7, 2, "same", True, activation, "stem_conv")
        return keras.layers.MaxPooling2D(
            3, strides=2, padding="same", name="stem_pool"
        )(x)
    return x


def _residual_block(x, width, block, strides, activation, shortcut, name):
    """He et al.'s post-activation block: F(x) + shortcut(x), then activation."""
    out_channels = width * BOTTLENECK_EXPANSION if block == "bottleneck" else width
    if block == "basic":
        y = _conv_bn_act(
            x, width, 3, strides, "same", True, activation, f"{name}_conv1"
        )
        y = _conv_bn_act(y, width, 3, 1, "same", True, None, f"{name}_conv2")
    else:
        # The stride sits on the 3x3 convolution, as in torchvision's ResNet-50.
        y = _conv_bn_act(x, width, 1, 1, "same", True, activation, f"{name}_conv1")
        y = _conv_bn_act(
            y, width, 3, strides, "same", True, activation, f"{name}_conv2"
        )
        y = _conv_bn_act(y, out_channels, 1, 1, "same", True, None, f"{name}_conv3")
    if strides == 1 and x.shape[-1] == out_channels:
        short = x
    elif shortcut == "zero_pad":
        short = PaddedIdentity(out_channels, strides, name=f"{name}_shortcut")(x)
    else:
        short = _conv_bn_act(
            x, out_channels, 1, strides, "same", True, None, f"{name}_shortcut"
        )
    y = keras.layers.Add(name=f"{name}_add")([y, short])
    return keras.layers.Activation(activation, name=f"{name}_out")(y)


def _output_size(n: int, kernel: int, stride: int, padding: str) -> int:
    """Keras' output length of a convolution or pooling window."""
    if padding == "same":
        return math.ceil(n / stride)
    return (n - kernel) // stride + 1


def _check_spatial_size(
    input_shape, depths, block, kernel, strides, padding, pooling, stem
):
    """Fails early, naming ``input_shape``, when the image shrinks to nothing;
    returns the final feature map's ``(height, width)`` (None where unknown)."""

    def steps():  # (where, kernel, stride, padding), in network order
        if stem == "imagenet":
            yield from [("stem_conv", 7, 2, "same"), ("stem_pool", 3, 2, "same")]
        for s, count in enumerate(depths, start=1):
            if block != "plain":
                if s > 1:
                    yield (f"stage{s}_block1", 3, 2, "same")
                continue
            yield (f"block{s}_conv1", kernel, strides, padding)
            # The other convolutions have stride 1: with 'same' padding or a
            # 1x1 kernel they keep the size, so a huge `depth` costs nothing
            # here (and 'valid' ones empty the map within a few steps).
            if padding == "valid" and kernel > 1:
                for c in range(2, count + 1):
                    yield (f"block{s}_conv{c}", kernel, 1, padding)
            if pooling != "none":
                yield (f"block{s}_pool", 2, 2, "valid")

    final = []
    for n in input_shape[:2]:
        if n is None:
            final.append(None)
            continue
        for where, size, stride, pad in steps():
            n = _output_size(n, size, stride, pad)
            if n < 1:
                raise AnnzooError(
                    f"`input_shape` is too small for this network: the feature map "
                    f"has no pixels left at {where}. Use fewer stages, "
                    "padding='same' or a larger input. "
                    f"Received: input_shape={tuple(input_shape)}"
                )
        final.append(n)
    return tuple(final)


def _resnet_imagenet(depths, block):
    return dict(
        input_shape=(224, 224, 3),
        num_classes=1000,
        filters=(64, 128, 256, 512),
        depth=depths,
        block=block,
        stem="imagenet",
        head="avg",
    )


def _resnet_cifar(blocks_per_stage):
    return dict(
        input_shape=(32, 32, 3),
        num_classes=10,
        filters=(16, 32, 64),
        depth=blocks_per_stage,
        block="basic",
        stem="cifar",
        shortcut="zero_pad",
        head="avg",
    )


_HE_2016 = "He et al. 2016, 'Deep Residual Learning for Image Recognition'"
_TORCHVISION = "torchvision.models documentation ({} weights table, 'num_params')"


def _cifar_reference(layers, millions, rounding=10_000):
    # Table 6 prints 0.27M, 0.46M, ... 1.7M: rounded to 10k (100k for 1.7M).
    return Reference(
        params=round(millions * 1_000_000),
        kind="trainable",
        source=f"{_HE_2016}, Table 6 (CIFAR-10): {layers} layers, {millions}M params",
        rounding=rounding,
    )


PRESETS: dict[str, dict[str, Any]] = {
    "lenet5": dict(
        description=(
            "LeNet-5 (LeCun et al. 1998), modern dense variant: full C3 "
            "connectivity, ReLU, max pooling and a softmax output."
        ),
        reference=Reference(
            params=60_000,
            kind="trainable",
            source=(
                "LeCun et al. 1998, 'Gradient-Based Learning Applied to Document "
                "Recognition', Sec. II.B: 'about 60,000 trainable parameters' "
                "(the dense variant has 61,706)"
            ),
            rounding=10_000,
        ),
        input_shape=(32, 32, 1),
        num_classes=10,
        filters=(6, 16),
        kernel_size=5,
        padding="valid",
        pooling="max",
        hidden_units=(120, 84),
    ),
    "mnist_convnet": dict(
        description="The keras.io 'Simple MNIST convnet' example.",
        reference=Reference(
            params=34_826,
            kind="total",
            source="keras.io/examples/vision/mnist_convnet: 'Total params: 34,826'",
        ),
        input_shape=(28, 28, 1),
        num_classes=10,
        filters=(32, 64),
        kernel_size=3,
        padding="valid",
        pooling="max",
        dropout=0.5,
    ),
    "vgg16": dict(
        description="VGG-16 (Simonyan & Zisserman 2015), configuration D, ImageNet.",
        reference=Reference(
            params=138_357_544,
            kind="total",
            source="keras.applications.VGG16 (include_top=True): 138,357,544 params",
        ),
        input_shape=(224, 224, 3),
        num_classes=1000,
        filters=(64, 128, 256, 512, 512),
        depth=(2, 2, 3, 3, 3),
        pooling="max",
        hidden_units=(4096, 4096),
        dropout=0.5,
    ),
    "resnet18": dict(
        description="ResNet-18 (He et al. 2016), basic blocks, ImageNet.",
        reference=Reference(
            params=11_689_512,
            kind="trainable",
            source=_TORCHVISION.format("ResNet18_Weights.IMAGENET1K_V1"),
        ),
        **_resnet_imagenet((2, 2, 2, 2), "basic"),
    ),
    "resnet50": dict(
        description="ResNet-50 (He et al. 2016), bottleneck blocks, ImageNet.",
        reference=Reference(
            params=25_557_032,
            kind="trainable",
            source=_TORCHVISION.format("ResNet50_Weights.IMAGENET1K_V1"),
        ),
        **_resnet_imagenet((3, 4, 6, 3), "bottleneck"),
    ),
    "resnet20": dict(
        description="ResNet-20 for CIFAR-10 (He et al. 2016, Sec. 4.2), option A.",
        reference=_cifar_reference(20, 0.27),
        **_resnet_cifar(3),
    ),
    "resnet32": dict(
        description="ResNet-32 for CIFAR-10 (He et al. 2016, Sec. 4.2), option A.",
        reference=_cifar_reference(32, 0.46),
        **_resnet_cifar(5),
    ),
    "resnet44": dict(
        description="ResNet-44 for CIFAR-10 (He et al. 2016, Sec. 4.2), option A.",
        reference=_cifar_reference(44, 0.66),
        **_resnet_cifar(7),
    ),
    "resnet56": dict(
        description="ResNet-56 for CIFAR-10 (He et al. 2016, Sec. 4.2), option A.",
        reference=_cifar_reference(56, 0.85),
        **_resnet_cifar(9),
    ),
    "resnet110": dict(
        description="ResNet-110 for CIFAR-10 (He et al. 2016, Sec. 4.2), option A.",
        reference=_cifar_reference(110, 1.7, rounding=100_000),
        **_resnet_cifar(18),
    ),
}

for _name, _preset in PRESETS.items():
    register_preset(_name, "cnn", **_preset)

"""Transformers: a text classifier, a translator and the Vision Transformer.

One builder, three variants (``variant=``), built from the tested layers of
:mod:`annzoo.layers`: the encoder classifier of the keras.io text example, the
encoder-decoder of Vaswani et al. (2017) and the ViT of Dosovitskiy et al.
(2021). Sizes of published models are presets at the end of the file.
"""

from __future__ import annotations

from typing import Any

import keras

from annzoo import tasks
from annzoo._checks import (
    check_choice,
    check_input_shape,
    check_int_sequence,
    check_name,
    check_parameter_terms,
    check_positive_int,
    check_rate,
)
from annzoo.errors import AnnzooError
from annzoo.layers.transformer import _pair
from annzoo.models._common import (
    SEQUENCE_DROPOUT_RATES,
    check_activation,
    check_compile,
    check_outputs,
    finish,
    output_arguments,
    shape_arguments,
    target_arguments,
    token_arguments,
)
from annzoo.models._transformer_graphs import (
    _encoder_classifier,
    _translator,
    _vit,
    weight_terms,
)
from annzoo.registry import FamilySpec, Reference, register, register_preset

__all__ = ["build_transformer"]

VARIANTS = ("encoder", "encoder_decoder", "vit")
POSITIONS = ("learned", "sinusoidal")
PAD_ID = 0
# The arguments that only some variants use; passing one to another variant
# is a mistake worth reporting rather than ignoring.
_ONLY_FOR = {
    "vocabulary_size": ("encoder", "encoder_decoder"),
    "sequence_length": ("encoder", "encoder_decoder"),
    "target_vocabulary_size": ("encoder_decoder",),
    "target_sequence_length": ("encoder_decoder",),
    "decoder_layers": ("encoder_decoder",),
    "input_shape": ("vit",),
    "patch_size": ("vit",),
    "num_classes": ("encoder", "vit"),
}
# Per-variant defaults of the arguments whose sound value depends on it.
_DEFAULTS = {
    "encoder": dict(activation="relu", position="learned", norm_first=False),
    "encoder_decoder": dict(activation="relu", position="sinusoidal", norm_first=False),
    "vit": dict(activation="gelu", position="learned", norm_first=True),
}


def _shapes(config: dict[str, Any]) -> dict[str, tuple]:
    """Input and output shapes of a ``transformer`` config, for ``model_info``."""
    variant = config.get("variant", "encoder")
    if variant == "vit":
        return {
            "input_shape": tuple(config["input_shape"]),
            "output_shape": (config["num_classes"],),
        }
    source = config["sequence_length"]
    if variant == "encoder":
        return {"input_shape": (source,), "output_shape": (config["num_classes"],)}
    target = config.get("target_sequence_length") or source
    vocabulary = config.get("target_vocabulary_size") or config["vocabulary_size"]
    # Two inputs: (encoder_tokens, decoder_tokens).
    return {"input_shape": ((source,), (target,)), "output_shape": (target, vocabulary)}


def _dataset_arguments(train: Any) -> dict[str, Any]:
    # The data decides the variant: images make a vision transformer, token
    # targets an encoder-decoder, token inputs with labels an encoder.
    if train.vocabulary is None:
        args = {"variant": "vit", **shape_arguments(train)}
    else:
        args = token_arguments(train, length="sequence_length")
        args["variant"] = "encoder"
    if train.structure == "sequence":
        return {**args, "variant": "encoder_decoder", **target_arguments(train)}
    return {**args, **output_arguments(train, width="num_classes")}


SPEC = FamilySpec(
    tasks=(*tasks.SAMPLE_TASKS, "sequence"),
    data=("sample", "sequence"),
    dataset_arguments=_dataset_arguments,
    search_space={
        "num_layers": {"type": "int", "min": 1, "max": 4},
        # Every d_model is divisible by every head count (key_dim = d / heads).
        "d_model": [32, 64, 128],
        "num_heads": [2, 4, 8],
        "ff_dim": [64, 128, 256],
        "dropout": SEQUENCE_DROPOUT_RATES,
    },
    smoke=dict(
        vocabulary_size=20,
        sequence_length=8,
        num_classes=3,
        d_model=8,
        num_heads=2,
        ff_dim=16,
        num_layers=1,
    ),  # fmt: skip
    predict=("arrays", "text"),
    report=("confusion_matrix", "decoded", "attention"),
    shapes=_shapes,
)


@register("transformer", spec=SPEC)
def build_transformer(
    variant: str = "encoder",
    *,
    vocabulary_size: int | None = None,
    sequence_length: int | None = None,
    target_vocabulary_size: int | None = None,
    target_sequence_length: int | None = None,
    input_shape: tuple[int, int, int] | None = None,
    patch_size: int | tuple[int, int] | None = None,
    num_classes: int | None = None,
    d_model: int = 128,
    num_heads: int = 4,
    key_dim: int | None = None,
    ff_dim: int = 512,
    num_layers: int = 2,
    decoder_layers: int | None = None,
    activation: str | None = None,
    position: str | None = None,
    hidden_units: int | tuple[int, ...] = (),
    dropout: float = 0.1,
    attention_dropout: float = 0.0,
    task: str = "multiclass",
    compile: bool | dict = True,
    name: str = "transformer",
) -> keras.Model:
    """Builds a Transformer: text classifier, translator or Vision Transformer.

    ``variant="encoder"`` (sequence classifier): ``tokens`` -> token and
    position embeddings -> ``num_layers`` post-norm encoder blocks -> global
    average pooling over the unpadded positions -> dropout ->
    ``hidden_units`` dense layers -> ``num_classes`` outputs. Padding never
    reaches the prediction: it is masked in attention and in the pooling.

    ``variant="encoder_decoder"`` (translator, Vaswani et al. 2017): an
    encoder stack over ``encoder_tokens`` and a decoder stack over
    ``decoder_tokens`` (causal self-attention, then cross-attention over the
    encoder's outputs), then a softmax over the target vocabulary at every
    step: output ``(target_sequence_length, target_vocabulary_size)``. It is
    trained with teacher forcing: ``decoder_tokens`` is the target shifted
    right (a start id first), and the labels are the target itself. Unlike
    the paper, embeddings are not scaled by sqrt(d_model) nor tied.

    ``variant="vit"`` (Dosovitskiy et al. 2021): ``images`` -> patches
    embedded by one strided convolution -> a learned ``[CLS]`` token in
    front -> learned position embeddings -> dropout -> ``num_layers``
    pre-norm blocks (GELU MLP, LayerNorm epsilon 1e-6) -> final LayerNorm ->
    head on the ``[CLS]`` position.

    Input contract: ``tokens``, ``encoder_tokens`` and ``decoder_tokens`` are
    int32 ids in ``[0, vocabulary_size)`` of fixed length
    ``sequence_length`` (``target_sequence_length`` for the decoder), **id 0
    being padding** (put it at the end). ``images`` are float, channels last
    ``(height, width, channels)``, already scaled, height and width multiples
    of ``patch_size``; any channel count (1 for grayscale).

    Args:
        variant: ``"encoder"``, ``"encoder_decoder"`` or ``"vit"``.
        vocabulary_size: number of (source) token ids, padding included.
        sequence_length: length of the (source) token sequences.
        target_vocabulary_size: target ids of the translator; defaults to
            ``vocabulary_size`` (the same vocabulary, separate embeddings).
        target_sequence_length: length of the decoder sequences; defaults to
            ``sequence_length``.
        input_shape: ``(height, width, channels)`` of a ViT image.
        patch_size: side of the ViT's square patches, or ``(height, width)``.
        num_classes: outputs of the classifiers (1 for ``task="binary"``).
        d_model: size of the embeddings and of every block's output.
        num_heads: attention heads.
        key_dim: size of each head; defaults to ``d_model // num_heads``
            (which must then divide exactly). The keras.io example uses
            ``key_dim=d_model``.
        ff_dim: width of the feed-forward (MLP) hidden layer.
        num_layers: encoder blocks.
        decoder_layers: decoder blocks of the translator; defaults to
            ``num_layers``.
        activation: feed-forward activation; ``"relu"`` by default, ``"gelu"``
            for ViT.
        position: ``"learned"`` or ``"sinusoidal"`` position embeddings of the
            text variants; learned by default, sinusoidal for the translator
            (as in the paper). ViT's are always learned.
        hidden_units: ReLU dense layers between the pooled features and the
            classifier output (not used by the translator).
        dropout: rate in [0, 1) of the embedding and residual dropouts, and
            of the dropout after pooling and hidden layers.
        attention_dropout: rate in [0, 1) of a dropout on the attention
            weights; 0 by default, as in Vaswani et al., ViT and the keras.io
            examples, so that attention runs fused (see
            ``annzoo.layers.fused_attention``).
        task: ``"multiclass"``, ``"binary"`` or ``"regression"`` for the
            classifiers; ``"multiclass"`` or ``"sequence"`` (the loss and
            accuracy skip padded target steps) for the translator.
        compile: ``True``, ``False`` or a dict of ``annzoo.compile_model``
            arguments.
        name: the model's name.

    Returns:
        A ``keras.Model`` mapping ``tokens`` (``encoder_tokens`` and
        ``decoder_tokens``; ``images``) to ``predictions``.

    Example:
        >>> model = annzoo.build_transformer(
        ...     vocabulary_size=20000, sequence_length=200, num_classes=2)
        >>> model.fit(token_ids, labels, epochs=2)
    """
    variant = check_choice("variant", variant, VARIANTS)
    given = dict(
        vocabulary_size=vocabulary_size,
        sequence_length=sequence_length,
        target_vocabulary_size=target_vocabulary_size,
        target_sequence_length=target_sequence_length,
        decoder_layers=decoder_layers,
        input_shape=input_shape,
        patch_size=patch_size,
        num_classes=num_classes,
    )
    for argument, variants in _ONLY_FOR.items():
        if given[argument] is not None and variant not in variants:
            raise AnnzooError(
                f"`{argument}` applies to variant "
                f"{' or '.join(map(repr, variants))} only; leave it unset for "
                f"variant={variant!r}. Received: {argument}={given[argument]!r}"
            )
    if variant == "encoder_decoder":
        if task not in ("multiclass", "sequence"):
            raise AnnzooError(
                "`task` must be 'sequence' (padding ignored in the loss) or "
                "'multiclass' for variant='encoder_decoder' (a softmax over the "
                f"target vocabulary at every step). Received: task={task!r}"
            )
    else:
        task = tasks.check_task(task, tasks.SAMPLE_TASKS)
    defaults = _DEFAULTS[variant]
    d_model = check_positive_int("d_model", d_model)
    num_heads = check_positive_int("num_heads", num_heads)
    key_dim_given = key_dim is not None
    if key_dim is None:
        if d_model % num_heads:
            raise AnnzooError(
                f"`d_model` must be divisible by `num_heads` (each head gets "
                f"d_model // num_heads features), or pass `key_dim`. "
                f"Received: d_model={d_model}, num_heads={num_heads}"
            )
        key_dim = d_model // num_heads
    key_dim = check_positive_int("key_dim", key_dim)
    ff_dim = check_positive_int("ff_dim", ff_dim)
    num_layers = check_positive_int("num_layers", num_layers)
    activation = check_activation(
        "activation", defaults["activation"] if activation is None else activation
    )
    if position is not None and variant == "vit":
        raise AnnzooError(
            "`position` applies to the text variants only (ViT's position "
            f"embeddings are learned). Received: position={position!r}"
        )
    position = check_choice(
        "position", defaults["position"] if position is None else position, POSITIONS
    )
    hidden_units = check_int_sequence("hidden_units", hidden_units)
    if hidden_units and variant == "encoder_decoder":
        raise AnnzooError(
            "`hidden_units` applies to the classifiers only, not to "
            f"variant='encoder_decoder'. Received: hidden_units={hidden_units}"
        )
    dropout = check_rate("dropout", dropout)
    attention_dropout = check_rate("attention_dropout", attention_dropout)
    compile = check_compile(compile, task)
    name = check_name("name", name)
    sizes = dict(
        d_model=d_model, num_heads=num_heads, key_dim=key_dim,
        key_dim_given=key_dim_given, ff_dim=ff_dim, num_layers=num_layers,
        position=position, hidden_units=hidden_units,
    )  # fmt: skip
    block_options = dict(
        num_heads=num_heads,
        key_dim=key_dim,
        ff_dim=ff_dim,
        dropout=dropout,
        activation=activation,
        norm_first=defaults["norm_first"],
        epsilon=1e-6,
        attention_dropout=attention_dropout,
    )

    if variant == "vit":
        input_shape = check_input_shape("input_shape", input_shape, rank=3)
        if patch_size is None:
            raise AnnzooError(
                "`patch_size` is required for variant='vit'. Received: patch_size=None"
            )
        patch_size = _pair("patch_size", patch_size)
        for axis, size, patch in zip(
            ("height", "width"), input_shape[:2], patch_size, strict=True
        ):
            if size is None or size % patch:
                raise AnnzooError(
                    f"`patch_size` must divide the image {axis} ({size}) exactly. "
                    f"Received: patch_size={patch_size}, input_shape={input_shape}"
                )
        num_classes = _require_outputs(num_classes, task, variant)
        check_parameter_terms(
            weight_terms(
                variant, input_shape=input_shape, patch_size=patch_size,
                num_classes=num_classes, **sizes,
            )
        )  # fmt: skip
        model = _vit(
            input_shape,
            patch_size,
            num_classes,
            d_model,
            num_layers,
            block_options,
            hidden_units,
            task,
            name,
        )
        return finish(model, task, compile)

    vocabulary_size = _require_int("vocabulary_size", vocabulary_size, variant)
    sequence_length = _require_int("sequence_length", sequence_length, variant)
    if variant == "encoder":
        num_classes = _require_outputs(num_classes, task, variant)
        check_parameter_terms(
            weight_terms(
                variant, vocabulary_size=vocabulary_size,
                sequence_length=sequence_length, num_classes=num_classes, **sizes,
            )
        )  # fmt: skip
        model = _encoder_classifier(
            vocabulary_size,
            sequence_length,
            num_classes,
            d_model,
            num_layers,
            position,
            block_options,
            hidden_units,
            task,
            name,
        )
        return finish(model, task, compile)

    target_vocabulary_size = check_positive_int(
        "target_vocabulary_size",
        vocabulary_size if target_vocabulary_size is None else target_vocabulary_size,
    )
    target_sequence_length = check_positive_int(
        "target_sequence_length",
        sequence_length if target_sequence_length is None else target_sequence_length,
    )
    decoder_layers = check_positive_int(
        "decoder_layers", num_layers if decoder_layers is None else decoder_layers
    )
    check_parameter_terms(
        weight_terms(
            variant, vocabulary_size=vocabulary_size, sequence_length=sequence_length,
            target_vocabulary_size=target_vocabulary_size,
            target_sequence_length=target_sequence_length,
            decoder_layers=decoder_layers, **sizes,
        )
    )  # fmt: skip
    model = _translator(
        (vocabulary_size, sequence_length),
        (target_vocabulary_size, target_sequence_length),
        d_model,
        (num_layers, decoder_layers),
        position,
        block_options,
        name,
    )
    return finish(model, task, compile)


def _require_int(argument: str, value: Any, variant: str) -> int:
    if value is None:
        raise AnnzooError(
            f"`{argument}` is required for variant={variant!r}. "
            f"Received: {argument}=None"
        )
    return check_positive_int(argument, value)


def _require_outputs(num_classes: Any, task: str, variant: str) -> int:
    _require_int("num_classes", num_classes, variant)
    return check_outputs("num_classes", num_classes, task)


_VASWANI = "Vaswani et al. 2017, 'Attention Is All You Need'"

PRESETS: dict[str, dict[str, Any]] = {
    "transformer_classifier": dict(
        description=(
            "The keras.io 'Text classification with Transformer' model "
            "(one block, 2 heads, IMDB-sized vocabulary), with padding masked."
        ),
        reference=Reference(
            params=657_758,
            kind="total",
            source=(
                "keras.io/examples/nlp/text_classification_with_transformer "
                "(vocab_size=20000, maxlen=200, embed_dim=32, num_heads=2, "
                "ff_dim=32, MultiHeadAttention key_dim=embed_dim): the same "
                "architecture rebuilt in plain Keras has 657,758 params"
            ),
        ),
        variant="encoder",
        vocabulary_size=20_000,
        sequence_length=200,
        num_classes=2,
        d_model=32,
        num_heads=2,
        key_dim=32,
        ff_dim=32,
        num_layers=1,
        hidden_units=(20,),
        dropout=0.1,
    ),
    "transformer_base": dict(
        description=(
            "The base Transformer of Vaswani et al. 2017 (6+6 layers, d_model "
            "512, 8 heads, d_ff 2048) with separate 8000-id source and target "
            "vocabularies and 64-token sequences."
        ),
        reference=Reference(
            params=56_434_496,
            kind="total",
            source=(
                f"{_VASWANI}, Table 3 'base' configuration; count by formula "
                "for the chosen vocabulary (8000 source + 8000 target ids, "
                "untied embeddings and output layer, sinusoidal positions): "
                "2*8000*512 + 6*(4*(512^2+512) + 2*512*2048+2048+512 + 4*512) "
                "+ 6*(8*(512^2+512) + 2*512*2048+2048+512 + 6*512) "
                "+ 512*8000+8000 = 56,434,496; the paper reports 65M for its "
                "shared 37k vocabulary"
            ),
        ),
        variant="encoder_decoder",
        vocabulary_size=8000,
        target_vocabulary_size=8000,
        sequence_length=64,
        target_sequence_length=64,
        d_model=512,
        num_heads=8,
        ff_dim=2048,
        num_layers=6,
        decoder_layers=6,
        dropout=0.1,
    ),
    "vit_b16": dict(
        description=(
            "ViT-B/16 (Dosovitskiy et al. 2021): 224x224 RGB, 16x16 patches, "
            "12 layers, d 768, 12 heads, MLP 3072, 1000 classes."
        ),
        reference=Reference(
            params=86_567_656,
            kind="trainable",
            source=(
                "torchvision.models documentation (ViT_B_16_Weights."
                "IMAGENET1K_V1, 'num_params': 86,567,656)"
            ),
        ),
        variant="vit",
        input_shape=(224, 224, 3),
        patch_size=16,
        num_classes=1000,
        d_model=768,
        num_heads=12,
        ff_dim=3072,
        num_layers=12,
        dropout=0.0,
    ),
}

for _name, _preset in PRESETS.items():
    register_preset(_name, "transformer", **_preset)

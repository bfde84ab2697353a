"""One function for every generative model: `generate`.

`generate(model, num, ...)` looks ``model`` up in `GENERATORS`, a table with
one row per kind of generative model, each naming the `annzoo.tasks` tasks
it serves (``"adversarial"``, ``"bernoulli"`` and ``"reconstruction"``,
``"generation"``), what it writes (``"images"`` or ``"text"``), its modes and
how it recognizes a model (a GAN or `annzoo.layers.Autoencoder` instance, or
a model `annzoo.models.language_model.architecture_of` accepts); the work is
done by each family's own helpers (`annzoo.models.gan.sample`,
`annzoo.models.autoencoder`'s `sample`, `encode`, `decode` and `interpolate`,
`annzoo.generation.generate_text`), so `generate` gives exactly what they
give for the same seed. The table is here, above the models, because text
generation (`annzoo.generation.text`) sits above them in annzoo's layers:
a family's `FamilySpec` cannot name it. ``annzoo generate`` reads a run's
task and finds the row by `generator_for_task`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from annzoo._checks import check_positive_int, is_int
from annzoo.errors import AnnzooError
from annzoo.generation.text import generate_text
from annzoo.layers.gan import GAN
from annzoo.layers.latent import Autoencoder
from annzoo.models import autoencoder, gan
from annzoo.models.language_model import architecture_of
from annzoo.text import Vocabulary

__all__ = [
    "GENERATORS",
    "Generator",
    "conditional_classes",
    "generate",
    "generating_tasks",
    "generator_for",
    "generator_for_task",
]

MODES = ("sample", "reconstruct", "interpolate")
# How many images or texts `generate` makes when `num` is None (an
# interpolation: how many steps; a reconstruction: one per input).
DEFAULT_NUM = 16
DEFAULT_STEPS = 8
# Options only language models take; None is "not given" (their defaults are
# generate_text's).
_TEXT_OPTIONS = ("prompt", "temperature", "top_k", "top_p", "max_length", "vocabulary")


@dataclass(frozen=True)
class Generator:
    """One kind of generative model, as `generate` serves it.

    Attributes:
        name: what the model is called in messages (``"GAN"``).
        tasks: the `annzoo.tasks` task names of the models it serves.
        output: ``"images"`` (float32 arrays in [0, 1]) or ``"text"``
            (strings).
        modes: the ``mode`` values it takes, the first being the default.
        accepts: ``function(model) -> bool``: whether ``model`` is of this
            kind.
        classes: ``function(model) -> int | None``: how many classes a
            conditional model is conditioned on (None: unconditional).
        run: ``function(model, request) -> images or texts``.
    """

    name: str
    tasks: tuple[str, ...]
    output: str
    modes: tuple[str, ...]
    accepts: Callable[[Any], bool]
    classes: Callable[[Any], int | None]
    run: Callable[[Any, dict[str, Any]], Any]


# -- GANs -------------------------------------------------------------------------


def _gan_classes(model: GAN) -> int | None:
    if not model.conditional:
        return None
    return int(model.generator.get_layer("label_one_hot").num_tokens)


def _gan_run(model: GAN, request: dict[str, Any]) -> np.ndarray:
    return gan.sample(
        model,
        request["num"] or DEFAULT_NUM,
        labels=request["labels"],
        seed=request["seed"],
    )


# -- autoencoders -----------------------------------------------------------------


def _autoencoder_classes(model: Autoencoder) -> int | None:
    decoder = model.get_layer("decoder")
    names = {layer.name for layer in decoder.layers}
    if "decoder_one_hot" not in names:
        return None
    return int(decoder.get_layer("decoder_one_hot").num_tokens)


def _autoencoder_run(model: Autoencoder, request: dict[str, Any]) -> np.ndarray:
    mode, num, labels = request["mode"], request["num"], request["labels"]
    inputs = request["inputs"]
    if mode == "sample":
        return autoencoder.sample(
            model, num or DEFAULT_NUM, labels=labels, seed=request["seed"]
        )
    if inputs is None:
        raise AnnzooError(
            f"`inputs` must be images for mode={mode!r} ("
            + ("the images to reconstruct" if mode == "reconstruct" else "the two "
               "images whose codes the path joins")
            + "). Received: inputs=None"
        )  # fmt: skip
    if mode == "reconstruct":
        count = len(inputs) if hasattr(inputs, "__len__") else None
        if num is not None and num != count:
            raise AnnzooError(
                "`num` must be None or the number of `inputs` for mode='reconstruct' "
                f"(one reconstruction per input). Received: num={num}, {count} inputs"
            )
        codes = autoencoder.encode(model, inputs, labels)
        codes = codes[0] if model.variational else codes  # a VAE's means
        return autoencoder.decode(model, codes, labels)
    # mode == "interpolate": from the first input's code to the second's.
    shape = np.shape(inputs) if _numeric(inputs) else None
    if shape is None or len(shape) < 1 or shape[0] != 2:
        raise AnnzooError(
            "`inputs` must be two images (shape (2, ...)) for mode='interpolate'. "
            f"Received: inputs of shape {shape}"
        )
    if _autoencoder_classes(model) is not None and not is_int(labels):
        raise AnnzooError(
            "`labels` must be one class id for mode='interpolate' of a conditional "
            "autoencoder (both ends and the path share it). Received: "
            f"labels={labels!r}"
        )
    steps = DEFAULT_STEPS if num is None else num
    if steps < 2:
        raise AnnzooError(
            "`num` must be at least 2 for mode='interpolate' (both ends are "
            f"included). Received: num={num}"
        )
    return autoencoder.interpolate(model, inputs[0], inputs[1], steps, label=labels)


def _numeric(inputs: Any) -> bool:
    try:
        return np.asarray(inputs).dtype.kind in "biuf"
    except (TypeError, ValueError):
        return False


# -- language models --------------------------------------------------------------


def _is_language_model(model: Any) -> bool:
    try:
        architecture_of(model)
    except AnnzooError:
        return False
    return True


def _language_model_classes(model: Any) -> int | None:
    names = {layer.name for layer in model.layers}
    if "class_embedding" not in names:
        return None
    return int(model.get_layer("class_embedding").input_dim)


def _text_run(model: Any, request: dict[str, Any]) -> list[str]:
    vocabulary = request["vocabulary"]
    if not isinstance(vocabulary, Vocabulary):
        raise AnnzooError(
            "`vocabulary` must be the language model's annzoo.text.Vocabulary (a "
            "run's is vocabulary.json's 'inputs' list). Received: "
            f"vocabulary={vocabulary!r:.80}"
        )
    options = {
        key: request[key]
        for key in ("temperature", "top_k", "top_p", "max_length")
        if request[key] is not None
    }
    return generate_text(
        model,
        vocabulary,
        prompt="" if request["prompt"] is None else request["prompt"],
        num=request["num"] or DEFAULT_NUM,
        labels=request["labels"],
        seed=request["seed"],
        **options,
    )


GENERATORS: tuple[Generator, ...] = (
    Generator(
        name="GAN",
        tasks=("adversarial",),
        output="images",
        modes=("sample",),
        accepts=lambda model: isinstance(model, GAN),
        classes=_gan_classes,
        run=_gan_run,
    ),
    Generator(
        name="autoencoder",
        tasks=("bernoulli", "reconstruction"),
        output="images",
        modes=MODES,
        accepts=lambda model: isinstance(model, Autoencoder),
        classes=_autoencoder_classes,
        run=_autoencoder_run,
    ),
    Generator(
        name="language model",
        tasks=("generation",),
        output="text",
        modes=("sample",),
        accepts=_is_language_model,
        classes=_language_model_classes,
        run=_text_run,
    ),
)


def generating_tasks() -> tuple[str, ...]:
    """Every task whose models `generate` serves, in `GENERATORS`' order."""
    return tuple(task for row in GENERATORS for task in row.tasks)


def generator_for_task(task: str) -> Generator:
    """The row of `GENERATORS` serving models of ``task``; an error naming the
    tasks that generate otherwise."""
    for row in GENERATORS:
        if task in row.tasks:
            return row
    raise AnnzooError(
        "`task` must be one whose models generate ("
        f"{', '.join(map(repr, generating_tasks()))}). Received: task={task!r}"
    )


def generator_for(model: Any) -> Generator:
    """The row of `GENERATORS` that serves ``model``; an error otherwise."""
    for row in GENERATORS:
        if row.accepts(model):
            return row
    shown = getattr(model, "name", None) or type(model).__name__
    raise AnnzooError(
        "`model` must be a generative model built by annzoo: a GAN "
        "(build_gan), an autoencoder (build_autoencoder) or a language model "
        "(build_language_model), of the tasks "
        f"{', '.join(map(repr, generating_tasks()))}. Received: model={shown!r} "
        f"({type(model).__name__})"
    )


def conditional_classes(model: Any) -> int | None:
    """How many classes generative ``model`` is conditioned on (None: none)."""
    return generator_for(model).classes(model)


def _check_seed(seed: Any) -> int | None:
    if seed is None:
        return None
    if not is_int(seed) or seed < 0:
        raise AnnzooError(
            f"`seed` must be None or an integer >= 0. Received: seed={seed!r}"
        )
    return int(seed)


def generate(
    model: Any,
    num: int | None = None,
    *,
    mode: str | None = None,
    labels: Any = None,
    prompt: str | None = None,
    temperature: float | None = None,
    top_k: int | None = None,
    top_p: float | None = None,
    max_length: int | None = None,
    seed: int | None = None,
    inputs: Any = None,
    vocabulary: Vocabulary | None = None,
) -> np.ndarray | list[str]:
    """Images or texts from any of annzoo's generative models.

    * A GAN (`annzoo.build_gan`): ``num`` images from noise.
    * An autoencoder (`annzoo.build_autoencoder`): ``mode="sample"`` decodes
      ``num`` codes drawn from a VAE's prior; ``mode="reconstruct"`` encodes
      and decodes ``inputs`` (a VAE's mean code); ``mode="interpolate"``
      decodes ``num`` codes evenly spaced from the first of two ``inputs``'
      code to the second's.
    * A language model (`annzoo.build_language_model`): ``num`` texts after
      ``prompt``, with ``temperature``, ``top_k``, ``top_p`` and
      ``max_length`` as `annzoo.generation.generate_text` takes them (that
      function writes them, given ``vocabulary``).

    Noise, codes and tokens are drawn by NumPy from ``seed``: the same seed
    gives the same images or texts, exactly what the family's own helper
    (`annzoo.models.gan.sample`, `annzoo.models.autoencoder.sample`,
    ``generate_text``) gives for it. Every argument is checked before the
    model runs.

    Args:
        model: a GAN, autoencoder or language model built by annzoo (or
            reloaded from ``.keras``).
        num: how many images or texts (an interpolation: how many steps, at
            least 2; a reconstruction: None or the number of ``inputs``);
            None gives 16 (an interpolation 8).
        mode: ``"sample"`` (the default), or for an autoencoder
            ``"reconstruct"`` or ``"interpolate"``.
        labels: for a model conditioned on classes, one class id for all or
            one per sample; None cycles through the classes (0, 1, ..., K-1,
            0, ...) when sampling. Must be None for an unconditional model.
            An interpolation takes one id.
        prompt: the beginning of every text (language models only).
        temperature: > 0 (language models only; 1 when None).
        top_k: None or an integer >= 1 (language models only).
        top_p: None or a number in (0, 1] (language models only).
        max_length: the longest text in tokens (language models only).
        seed: an integer >= 0; None draws fresh noise each call.
        inputs: images for ``mode="reconstruct"`` (``(n, *image_shape)``) or
            two images for ``mode="interpolate"``, values in [0, 1].
        vocabulary: a language model's `annzoo.text.Vocabulary` (required for
            language models).

    Returns:
        float32 images ``(num, height, width, channels)`` in [0, 1], or a
        list of ``num`` strings.

    Example:
        >>> images = annzoo.generate(gan, 16, labels=3, seed=0)
        >>> names = annzoo.generate(lm, 5, prompt="Mac", vocabulary=vocab,
        ...                         labels=4, temperature=0.8, seed=0)
    """
    row = generator_for(model)
    mode = row.modes[0] if mode is None else mode
    if mode not in row.modes:
        raise AnnzooError(
            f"`mode` must be one of {', '.join(map(repr, row.modes))} for a "
            f"{row.name}. Received: mode={mode!r}"
        )
    if num is not None:
        num = check_positive_int("num", num)
    seed = _check_seed(seed)
    given = dict(
        prompt=prompt,
        temperature=temperature,
        top_k=top_k,
        top_p=top_p,
        max_length=max_length,
        vocabulary=vocabulary,
    )
    if row.output != "text":
        for key in _TEXT_OPTIONS:
            if given[key] is not None:
                raise AnnzooError(
                    f"`{key}` must be None for a {row.name}, which generates "
                    f"{row.output}: it is a language model's option. Received: "
                    f"{key}={given[key]!r:.80}"
                )
    if inputs is not None and mode == "sample":
        raise AnnzooError(
            "`inputs` must be None when sampling (mode='sample' draws new "
            "samples; an autoencoder's mode='reconstruct' or 'interpolate' "
            "reads inputs). Received: inputs of shape "
            f"{np.shape(inputs) if _numeric(inputs) else '?'}"
        )
    classes = row.classes(model)
    if labels is None and classes is not None and mode == "sample":
        labels = np.arange(num or DEFAULT_NUM) % classes
    if seed is None and row.output == "images" and mode == "sample":
        # The family helpers take an integer seed: a fresh one per call.
        seed = int(np.random.default_rng().integers(2**31))
    request = dict(given, mode=mode, num=num, labels=labels, seed=seed, inputs=inputs)
    return row.run(model, request)

"""``"shapes_captions"``: generated images of two shapes, each with one caption.

Every image is 32x32x3 float32 in [0, 1]: a dark, slightly noisy background and
two shapes (circle, square or triangle) of two different flat colours, placed
side by side or one above the other. Its caption names both shapes and their
relation, e.g. ``"a red circle left of a blue square"`` or ``"a green triangle
above a white circle"``.

The caption is a function of the image, so a captioner can in principle reach
zero error:

* the shape named first is the one whose colour comes first in `COLOURS`
  (red, green, blue, yellow, magenta, cyan, white), never a coin flip;
* the shapes lie in different halves of the image (a gap of two columns or rows
  between the halves) and are offset along the other axis by at most 4.5 pixels,
  while their centres are at least 10 pixels apart along the relation's axis,
  so only one of "left of", "right of", "above", "below" describes them;
* shape colours are exact (each channel 0 or 1) and no background pixel is
  brighter than 0.2, so a colour identifies its shape's pixels.

The pool of 3000 images is drawn once per process from a fixed seed, with
vectorized numpy; ``load``'s seed only draws the 70/15/15 partition.

``load(NAME, split, target="shapes")`` is the same images as a classification
dataset (for image-only models such as a GAN conditioned on a class): ``y`` is
the pair of shapes an image holds, whatever their colours and places, one of
`PAIRS` (``"circle+square"``; 6 classes, the pairs of two different shapes
twice as frequent as the others), with the same partition as the captions.
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

import numpy as np

from annzoo.datasets._base import ArrayDataset, register_dataset
from annzoo.datasets._split import split_indices, split_sizes
from annzoo.errors import AnnzooError
from annzoo.text import SEQUENCE_SPECIALS, Vocabulary

__all__ = ["COLOURS", "SHAPES", "RELATIONS", "NAME", "PAIRS", "TARGETS"]

NAME = "shapes_captions"

# The order matters: it decides which shape a caption names first.
COLOURS: dict[str, tuple[float, float, float]] = {
    "red": (1.0, 0.0, 0.0),
    "green": (0.0, 1.0, 0.0),
    "blue": (0.0, 0.0, 1.0),
    "yellow": (1.0, 1.0, 0.0),
    "magenta": (1.0, 0.0, 1.0),
    "cyan": (0.0, 1.0, 1.0),
    "white": (1.0, 1.0, 1.0),
}
SHAPES: tuple[str, ...] = ("circle", "square", "triangle")
# Relation of the first-named shape to the second; axis 1 is x, axis 0 is y.
RELATIONS: tuple[str, ...] = ("left of", "right of", "above", "below")
# The classes of ``target="shapes"``: an image's two shapes, unordered.
PAIRS: tuple[str, ...] = tuple(
    f"{a}+{b}" for i, a in enumerate(SHAPES) for b in SHAPES[i:]
)
TARGETS = ("caption", "shapes")

_IMAGE_SIZE = 32
_NUM_IMAGES = 3000
_POOL_SEED = 1729
_SIDES = (8, 12)  # bounding-box side of a shape, inclusive range
_JITTER = 2  # cross-axis offset of each shape from the shared centre line
_BACKGROUND_MAX = 0.2
_INPUT_SHAPE = (_IMAGE_SIZE, _IMAGE_SIZE, 3)


class _Pool(NamedTuple):
    x: np.ndarray
    y: np.ndarray
    captions: tuple[str, ...]
    vocabulary: Vocabulary


def _shape_masks(
    kind: np.ndarray, x0: np.ndarray, y0: np.ndarray, side: np.ndarray
) -> np.ndarray:
    """Boolean masks ``(n, 32, 32)`` of one shape per image, in its bounding box.

    Every shape fills its ``side x side`` box to the edges (a circle of diameter
    ``side``, a triangle with its apex on the top edge and its base the bottom
    edge), so the box measured from the pixels is the box drawn.
    """
    grid = np.arange(_IMAGE_SIZE, dtype=np.float32)
    u = grid[None, None, :] - x0[:, None, None]  # column inside the box
    v = grid[None, :, None] - y0[:, None, None]  # row inside the box
    s = side[:, None, None].astype(np.float32)
    centre = (s - 1) / 2
    inside = (u >= 0) & (u < s) & (v >= 0) & (v < s)
    circle = (u - centre) ** 2 + (v - centre) ** 2 <= (s / 2) ** 2
    triangle = np.abs(u - centre) <= v / 2 + 0.5
    k = kind[:, None, None]
    return inside & (
        (k == SHAPES.index("square"))
        | ((k == SHAPES.index("circle")) & circle)
        | ((k == SHAPES.index("triangle")) & triangle)
    )


def _place(rng: np.random.Generator, n: int, first_side, second_side, relation):
    """Top-left corners ``(x0, y0)`` of the first- and second-named shapes."""
    size = _IMAGE_SIZE
    half = size // 2
    sides = (first_side, second_side)
    # Main axis: one shape in [1, half - 1), the other in [half + 1, size - 1).
    # ``lead`` is the shape nearer the origin (left or top).
    first_leads = np.isin(
        relation, [RELATIONS.index("left of"), RELATIONS.index("above")]
    )
    lead_side = np.where(first_leads, first_side, second_side)
    trail_side = np.where(first_leads, second_side, first_side)
    lead = rng.integers(1, half - 1 - lead_side, endpoint=True)
    trail = rng.integers(half + 1, size - 1 - trail_side, endpoint=True)
    main = (np.where(first_leads, lead, trail), np.where(first_leads, trail, lead))
    # Cross axis: both boxes centred near one shared line, each jittered.
    low = 1 + _SIDES[1] // 2 + _JITTER
    high = size - 1 - _SIDES[1] + _SIDES[1] // 2 - _JITTER
    line = rng.integers(low, high, size=n, endpoint=True)
    cross = tuple(
        line - s // 2 + rng.integers(-_JITTER, _JITTER, size=n, endpoint=True)
        for s in sides
    )
    horizontal = relation < 2
    x0 = tuple(np.where(horizontal, m, c) for m, c in zip(main, cross, strict=True))
    y0 = tuple(np.where(horizontal, c, m) for m, c in zip(main, cross, strict=True))
    return x0, y0


def _generate(num_images: int, seed: int) -> tuple[np.ndarray, list[list[str]]]:
    """Images ``(num_images, 32, 32, 3)`` float32 and their caption words."""
    rng = np.random.default_rng(seed)
    n = num_images
    palette = np.array(list(COLOURS.values()), dtype=np.float32)
    names = list(COLOURS)
    # Two different colours; the one earlier in COLOURS is named first.
    a = rng.integers(0, len(palette), size=n)
    b = (a + rng.integers(1, len(palette), size=n)) % len(palette)
    colour = (np.minimum(a, b), np.maximum(a, b))
    kind = tuple(rng.integers(0, len(SHAPES), size=n) for _ in range(2))
    side = tuple(
        rng.integers(_SIDES[0], _SIDES[1], size=n, endpoint=True) for _ in range(2)
    )
    relation = rng.integers(0, len(RELATIONS), size=n)
    x0, y0 = _place(rng, n, side[0], side[1], relation)

    # Background: a dark level per image plus per-pixel noise, below 0.2, so
    # it never equals a shape colour (every shape colour has a channel at 1).
    level = rng.uniform(0.0, 0.12, size=(n, 1, 1, 1))
    noise = rng.uniform(0.0, _BACKGROUND_MAX - 0.12, size=(n, *_INPUT_SHAPE))
    images = (level + noise).astype(np.float32)
    for i in range(2):
        mask = _shape_masks(kind[i], x0[i], y0[i], side[i])
        images = np.where(mask[..., None], palette[colour[i]][:, None, None, :], images)

    captions = [
        [
            "a",
            names[colour[0][j]],
            SHAPES[kind[0][j]],
            *RELATIONS[relation[j]].split(),
            "a",
            names[colour[1][j]],
            SHAPES[kind[1][j]],
        ]
        for j in range(n)
    ]
    return images, captions


@functools.cache
def _pool() -> _Pool:
    """The fixed pool of images and encoded captions, read-only (callers copy)."""
    x, words = _generate(_NUM_IMAGES, _POOL_SEED)
    vocabulary = Vocabulary.build(words, specials=SEQUENCE_SPECIALS)
    length = max(len(w) for w in words) + 1  # + "<end>"
    y = vocabulary.encode_batch(words, length=length, end=True)
    x.setflags(write=False)
    y.setflags(write=False)
    return _Pool(x, y, tuple(" ".join(w) for w in words), vocabulary)


@functools.cache
def _pair_labels() -> np.ndarray:
    """The `PAIRS` id of each pool image: its caption's two shapes (words 3
    and last), read-only (callers copy)."""
    ids = []
    for caption in _pool().captions:
        words = caption.split()
        first, second = sorted((words[2], words[-1]), key=SHAPES.index)
        ids.append(PAIRS.index(f"{first}+{second}"))
    labels = np.asarray(ids, dtype=np.int32)
    labels.setflags(write=False)
    return labels


def _check_target(target: Any) -> str:
    if target not in TARGETS:
        raise AnnzooError(
            f"`target` of {NAME!r} must be one of {', '.join(map(repr, TARGETS))}. "
            f"Received: target={target!r}"
        )
    return target


def _load(name: str, split: str, seed: int, target: str = "caption") -> ArrayDataset:
    pool = _pool()
    idx = split_indices(len(pool.y), seed)[split]
    if _check_target(target) == "shapes":
        return ArrayDataset(
            x=pool.x[idx],
            y=_pair_labels()[idx],
            name=name,
            split=split,
            task="multiclass",
            num_classes=len(PAIRS),
            class_names=PAIRS,
            feature_names=None,
            seed=seed,
            indices=idx,
        )
    return ArrayDataset(
        x=pool.x[idx],  # fancy indexing copies: callers may write
        y=pool.y[idx],
        name=name,
        split=split,
        task="sequence",
        num_classes=None,
        class_names=None,
        feature_names=None,
        seed=seed,
        indices=idx,
        structure="sequence",
        vocabulary=None,
        target_vocabulary=pool.vocabulary,
    )


_INFO: dict[str, Any] = {
    "task": "sequence",
    "structure": "sequence",
    "num_classes": None,
    "input_shape": _INPUT_SHAPE,
    "class_names": None,
    "num_samples": split_sizes(_NUM_IMAGES),
    "source": "generated by annzoo with numpy",
    "description": (
        "32x32x3 float32 images in [0, 1]: two flat-coloured shapes (circle, "
        "square, triangle; red, green, blue, yellow, magenta, cyan, white) on a "
        "dark noisy background, side by side or one above the other. y: int32 "
        "caption word ids such as 'a red circle left of a blue square', then "
        "'<end>', then 0 padding (target_vocabulary). The shape named first is "
        "the one whose colour comes first in the list above."
    ),
}


def _info(name: str, target: str = "caption") -> dict[str, Any]:
    if _check_target(target) == "caption":
        return _INFO
    return {
        **_INFO,
        "task": "multiclass",
        "structure": "sample",
        "num_classes": len(PAIRS),
        "class_names": PAIRS,
        "description": (
            "The shapes_captions images (32x32x3 float32 in [0, 1]) labelled "
            "with the pair of shapes each holds, whatever their colours and "
            f"places: {', '.join(PAIRS)} (int32 ids in that order)."
        ),
    }


register_dataset(NAME, _load, info=_info, options=("target",))

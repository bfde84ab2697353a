"""`preview`: a PNG grid of augmented versions of some images."""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
from keras import ops

from annzoo._checks import check_non_negative_int, check_positive_int
from annzoo.augment.mixing import batch_mix_fn
from annzoo.augment.pipeline import pipeline_fn
from annzoo.augment.specs import Spec, _describe, resolve
from annzoo.errors import AnnzooError
from annzoo.plots import _pyplot, _save


def _as_float_images(images) -> np.ndarray:
    batch = np.asarray(ops.convert_to_numpy(images))
    if batch.ndim == 3:
        batch = batch[None]
    if batch.ndim != 4 or batch.shape[-1] not in (1, 3) or batch.shape[0] == 0:
        raise AnnzooError(
            "`images` must be a non-empty batch (batch, height, width, channels) "
            "with 1 or 3 channels. Received: images.shape="
            f"{getattr(batch, 'shape', None)}"
        )
    if batch.dtype == np.uint8:
        return batch.astype("float32") / 255.0
    batch = batch.astype("float32")
    low, high = float(batch.min()), float(batch.max())
    if low < -1e-6 or high > 1 + 1e-6 or math.isnan(low + high):
        raise AnnzooError(
            "`images` must be floats in [0, 1] (or uint8). Received: images with "
            f"values in [{low}, {high}]"
        )
    return batch


def preview(
    spec: Spec,
    images,
    path: str | os.PathLike,
    *,
    samples: int = 8,
    variants: int = 4,
    seed: int = 0,
    title: str | None = None,
) -> Path:
    """Draws a grid of augmented versions of some images, as a PNG.

    Row ``i`` shows image ``i``: the original first, then ``variants``
    augmented versions. Mixup and cutmix mix each image with another image of
    the same ``samples`` rows; those panels are labelled with the image's own
    share ``w`` of the label.

    Args:
        spec: a spec, see :func:`resolve`.
        images: a batch ``(n, height, width, channels)``, 1 (grayscale) or 3
            (RGB) channels, float in [0, 1] or uint8.
        path: where the PNG goes (written atomically).
        samples: how many images (rows) to show, at most ``n``.
        variants: augmented versions per image (columns after the original).
        seed: seed of the augmentation.
        title: figure title (default: the resolved spec).

    Returns:
        ``path`` as a ``Path``.

    Example:
        >>> preview("cifar", x_train[:8], "runs/cifar/augmentation.png")
    """
    items = resolve(spec)
    samples = check_positive_int("samples", samples)
    variants = check_non_negative_int("variants", variants)
    batch = _as_float_images(images)[:samples]
    count = batch.shape[0]
    ids = np.arange(count)
    augment = pipeline_fn(items, seed=seed)
    mix = batch_mix_fn(items, max(count, 2), seed=seed)
    columns, notes = [batch], [None]
    for _ in range(variants):
        out, _ = augment(batch, ids)
        note = None
        if mix is not None:
            out, soft = mix(np.asarray(out, "float32"), ids)
            note = [f"w={w:.2f}" for w in soft[ids, ids]]
        columns.append(np.asarray(out))
        notes.append(note)

    plt = _pyplot()
    fig, axes = plt.subplots(
        count,
        variants + 1,
        figsize=(1.4 * (variants + 1), 1.4 * count + 0.6),
        squeeze=False,
    )
    for col, (column, note) in enumerate(zip(columns, notes, strict=True)):
        for row in range(count):
            ax = axes[row][col]
            image = np.clip(column[row], 0.0, 1.0)
            if image.shape[-1] == 1:
                ax.imshow(image[..., 0], cmap="gray", vmin=0.0, vmax=1.0)
            else:
                ax.imshow(image)
            ax.set_xticks([])
            ax.set_yticks([])
            if note:
                ax.set_xlabel(note[row], fontsize=7)
            if row == 0:
                ax.set_title("original" if col == 0 else f"augmented {col}", fontsize=8)
    fig.suptitle(title or f"augmentation: {_describe(items)}", fontsize=9)
    return _save(fig, path, dpi=100)

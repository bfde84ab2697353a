"""The PNGs of generative runs: grids of samples and of reconstructions.

`plot_image_grid` draws ``samples.png`` (one row per label for a conditional
model) and `plot_reconstructions` draws ``reconstructions.png`` (test images
above their reconstructions); `plot_sample_mosaic` draws the same kind of grid
as one picture, cheap enough to draw after every epoch
(``samples/epoch-NNN.png``, `annzoo.training.samples`). They use
`annzoo.plots`' figure helpers, so matplotlib loads lazily and every file is
written atomically.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from annzoo.errors import AnnzooError
from annzoo.plots import _pyplot, _save

__all__ = [
    "mosaic",
    "plot_image_grid",
    "plot_reconstructions",
    "plot_sample_mosaic",
    "plot_samples",
]


def _check_images(images, argument: str) -> np.ndarray:
    images = np.asarray(images, dtype="float32")
    if images.ndim == 3:
        images = images[..., None]
    if images.ndim != 4 or images.shape[-1] not in (1, 3) or not len(images):
        raise AnnzooError(
            f"`{argument}` must be images of shape (num, height, width[, 1 or 3]). "
            f"Received: {argument} of shape {images.shape}"
        )
    return images


def _show(ax, image: np.ndarray) -> None:
    if image.shape[-1] == 1:
        ax.imshow(image[..., 0], cmap="gray_r", vmin=0.0, vmax=1.0)
    else:
        ax.imshow(np.clip(image, 0.0, 1.0))
    ax.set_xticks([])
    ax.set_yticks([])


def plot_image_grid(
    images,
    path: str | os.PathLike,
    *,
    columns: int,
    row_labels: Sequence[str] | None = None,
    title: str | None = None,
) -> Path:
    """Images in rows of ``columns``, in order; values in [0, 1].

    Args:
        images: ``(rows * columns, height, width[, channels])``.
        path: the PNG to write.
        columns: images per row.
        row_labels: one name per row (a conditional model's class), or None.
        title: the figure's title.
    """
    images = _check_images(images, "images")
    if len(images) % columns:
        raise AnnzooError(
            f"`images` must fill whole rows of {columns}. Received: {len(images)} "
            "images"
        )
    rows = len(images) // columns
    if row_labels is not None and len(row_labels) != rows:
        raise AnnzooError(
            f"`row_labels` must name each of the {rows} rows. Received: "
            f"{len(row_labels)} labels"
        )
    fig, axes = _pyplot().subplots(
        rows, columns, figsize=(0.8 * columns + 0.6, 0.8 * rows + 0.5), squeeze=False
    )
    for k, ax in enumerate(axes.flat):
        _show(ax, images[k])
        if row_labels is not None and k % columns == 0:
            ax.set_ylabel(str(row_labels[k // columns]), rotation=0, ha="right")
    if title:
        fig.suptitle(title)
    return _save(fig, path)


def plot_reconstructions(
    images, reconstructions, path: str | os.PathLike, *, title: str | None = None
) -> Path:
    """Test images (top row) above their reconstructions (bottom row)."""
    images = _check_images(images, "images")
    reconstructions = _check_images(reconstructions, "reconstructions")
    if images.shape != reconstructions.shape:
        raise AnnzooError(
            "`reconstructions` must have the images' shape "
            f"{images.shape}. Received: shape {reconstructions.shape}"
        )
    columns = len(images)
    fig, axes = _pyplot().subplots(
        2, columns, figsize=(0.8 * columns + 0.6, 2.1), squeeze=False
    )
    for k in range(columns):
        _show(axes[0, k], images[k])
        _show(axes[1, k], reconstructions[k])
    axes[0, 0].set_ylabel("test", rotation=0, ha="right")
    axes[1, 0].set_ylabel("decoded", rotation=0, ha="right")
    if title:
        fig.suptitle(title)
    return _save(fig, path)


def mosaic(images, columns: int, *, gap: int = 1) -> np.ndarray:
    """Images tiled row by row into one ``(rows, columns)`` picture, ``gap``
    pixels of background (0) between them: ``(rows * (h + gap) - gap,
    columns * (w + gap) - gap, channels)``."""
    images = _check_images(images, "images")
    if len(images) % columns:
        raise AnnzooError(
            f"`images` must fill whole rows of {columns}. Received: {len(images)} "
            "images"
        )
    rows = len(images) // columns
    n, height, width, channels = images.shape
    out = np.zeros(
        (rows * (height + gap) - gap, columns * (width + gap) - gap, channels),
        dtype="float32",
    )
    for k in range(n):
        top, left = (k // columns) * (height + gap), (k % columns) * (width + gap)
        out[top : top + height, left : left + width] = images[k]
    return out


def plot_sample_mosaic(
    images,
    path: str | os.PathLike,
    *,
    columns: int,
    row_labels: Sequence[str] | None = None,
    title: str | None = None,
) -> Path:
    """`plot_image_grid`'s grid as one image in one panel, row names as ticks.

    About ten times as fast to draw as one panel per image (one image to
    render, not a hundred axes), so a run can draw it after every epoch.
    Values in [0, 1]; grey images are drawn dark on white, as
    `plot_image_grid` draws them.
    """
    images = _check_images(images, "images")
    picture = mosaic(images, columns)
    rows = len(images) // columns
    if row_labels is not None and len(row_labels) != rows:
        raise AnnzooError(
            f"`row_labels` must name each of the {rows} rows. Received: "
            f"{len(row_labels)} labels"
        )
    height = images.shape[1]
    fig, ax = _pyplot().subplots(
        figsize=(0.55 * columns + 1.3, 0.55 * rows * height / images.shape[2] + 0.6)
    )
    if picture.shape[-1] == 1:
        ax.imshow(picture[..., 0], cmap="gray_r", vmin=0.0, vmax=1.0)
    else:
        # White between colour images (their backgrounds are often dark).
        gaps = mosaic(np.ones_like(images), columns) == 0
        ax.imshow(np.where(gaps, 1.0, np.clip(picture, 0.0, 1.0)))
    ax.set_xticks([])
    if row_labels is None:
        ax.set_yticks([])
    else:
        ax.set_yticks([r * (height + 1) + (height - 1) / 2 for r in range(rows)])
        ax.set_yticklabels([str(label) for label in row_labels])
        ax.tick_params(axis="y", length=0)
    for side in ax.spines.values():
        side.set_visible(False)
    if title:
        ax.set_title(title)
    return _save(fig, path)


def plot_samples(
    images,
    path: str | os.PathLike,
    *,
    columns: int | None = None,
    captions: Sequence[str] | None = None,
    title: str | None = None,
) -> Path:
    """Any number of images in a grid, the last row left short; values in [0, 1].

    What ``annzoo generate`` writes: unlike `plot_image_grid`, ``images`` need
    not fill whole rows, and each image may carry a caption (its class).

    Args:
        images: ``(num, height, width[, channels])``.
        path: the PNG to write.
        columns: images per row; None gives ``ceil(sqrt(num))`` (a square).
        captions: one short text per image (drawn above it), or None.
        title: the figure's title.
    """
    images = _check_images(images, "images")
    num = len(images)
    if columns is None:
        columns = int(np.ceil(np.sqrt(num)))
    if isinstance(columns, bool) or not isinstance(columns, int) or columns < 1:
        raise AnnzooError(
            f"`columns` must be None or an integer >= 1. Received: columns={columns!r}"
        )
    columns = min(columns, num)
    if captions is not None and len(captions) != num:
        raise AnnzooError(
            f"`captions` must hold one text per image ({num}). Received: "
            f"{len(captions)} captions"
        )
    rows = -(-num // columns)
    height = 0.8 + (0.25 if captions is not None else 0.0)
    fig, axes = _pyplot().subplots(
        rows,
        columns,
        figsize=(0.8 * columns + 0.4, height * rows + (0.5 if title else 0.2)),
        squeeze=False,
    )
    for k, ax in enumerate(axes.flat):
        if k >= num:
            ax.axis("off")
            continue
        _show(ax, images[k])
        if captions is not None:
            ax.set_title(str(captions[k]), fontsize=8)
    if title:
        fig.suptitle(title)
    return _save(fig, path)

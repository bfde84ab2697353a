"""Every PNG annzoo draws. matplotlib is imported lazily, with the Agg backend."""

from __future__ import annotations

import io
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

from annzoo.training.io import write_bytes

__all__ = ["plot_confusion_matrix", "plot_curves"]


def _pyplot():
    import matplotlib

    if matplotlib.get_backend().lower() not in ("agg", "pdf", "svg"):
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path) -> Path:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    _pyplot().close(fig)
    return write_bytes(path, buffer.getvalue())


def plot_curves(
    history: Mapping[str, Sequence[float]],
    path: str | os.PathLike,
    *,
    title: str | None = None,
    best_epoch: int | None = None,
) -> Path:
    """Plots training curves: one panel per metric, train and validation.

    Args:
        history: ``{"loss": [...], "val_loss": [...], "accuracy": [...]}`` as
            in ``keras.callbacks.History.history``; ``"lr"``/``"learning_rate"``
            are left out.
        path: where the PNG goes (written atomically).
        title: figure title.
        best_epoch: 1-based epoch to mark with a vertical line.

    Returns:
        ``path``.
    """
    plt = _pyplot()
    names = [
        k
        for k in history
        if not k.startswith("val_") and k not in ("lr", "learning_rate", "epoch")
    ]
    if not names:
        names = [k.removeprefix("val_") for k in history]
    fig, axes = plt.subplots(
        1, len(names), figsize=(4.5 * len(names), 3.6), squeeze=False
    )
    for ax, name in zip(axes[0], names, strict=True):
        for key, label, style in (
            (name, "train", "-"),
            (f"val_{name}", "validation", "--"),
        ):
            values = history.get(key)
            if values:
                epochs = range(1, len(values) + 1)
                ax.plot(epochs, values, style, marker="o", markersize=3, label=label)
        if best_epoch:
            ax.axvline(
                best_epoch,
                color="grey",
                linewidth=0.8,
                linestyle=":",
                label=f"best (epoch {best_epoch})",
            )
        ax.set_xlabel("epoch")
        ax.set_ylabel(name)
        ax.set_title(name)
        ax.grid(alpha=0.3)
        ax.legend()
    if title:
        fig.suptitle(title)
    return _save(fig, path)


def plot_confusion_matrix(
    matrix,
    path: str | os.PathLike,
    *,
    class_names: Sequence[str] | None = None,
    title: str | None = None,
) -> Path:
    """Plots a confusion matrix (rows: true class, columns: predicted class).

    Cells show counts; colours show each row's share, so rare classes read
    as clearly as frequent ones.
    """
    import numpy as np

    plt = _pyplot()
    matrix = np.asarray(matrix)
    n = matrix.shape[0]
    names = list(class_names) if class_names else [str(i) for i in range(n)]
    shares = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)
    size = max(4.0, 0.45 * n + 2.5)
    fig, ax = plt.subplots(figsize=(size, size * 0.9))
    image = ax.imshow(shares, cmap="Blues", vmin=0, vmax=1)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="share of true class")
    ax.set_xticks(
        range(n), names, rotation=45 if n > 6 else 0, ha="right" if n > 6 else "center"
    )
    ax.set_yticks(range(n), names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    if n <= 30:
        for i in range(n):
            for j in range(n):
                ax.text(
                    j,
                    i,
                    str(matrix[i, j]),
                    ha="center",
                    va="center",
                    fontsize=8,
                    color="white" if shares[i, j] > 0.6 else "black",
                )
    accuracy = np.trace(matrix) / max(matrix.sum(), 1)
    ax.set_title(f"{title + ': ' if title else ''}accuracy {accuracy:.3f}")
    return _save(fig, path)

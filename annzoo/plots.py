"""Every PNG annzoo draws. matplotlib is imported lazily, with the Agg backend.

Training curves and confusion matrices (the runner draws them for every run:
``curves.png``, ``confusion.png``), attention maps (``attention.png``: a
token-by-token heatmap for sequence-to-sequence models, `plot_attention`, and
per-word overlays on the image for captioners, `plot_attention_overlay`), a
search's ``trials.png`` (`plot_trials`) and mean-and-spread curves
(`plot_spread`, the digits_transfer comparison); `annzoo.augment.preview`
draws its grid with the same helpers. Every file goes through `annzoo.io`, so
it is written atomically.

Conventions, checked on matplotlib's objects by tests/test_plots.py: epochs
and trials are whole numbers on their axes, trials numbered from 1 as in
``trials.csv``; the learning rate is on a log axis; figures use constrained
layout, so a figure title never runs into the panels' titles.
"""

from __future__ import annotations

import io
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from annzoo.errors import AnnzooError
from annzoo.io import write_bytes

__all__ = [
    "plot_attention",
    "plot_attention_overlay",
    "plot_confusion_matrix",
    "plot_curves",
]


class _Figures:
    """``subplots``, ``close`` and ``get_cmap`` on bare ``Figure`` objects.

    annzoo draws files, not windows: a ``matplotlib.figure.Figure`` renders to
    PNG without pyplot, so the user's backend (a notebook's inline display, a
    GUI) is never switched or fed figures it did not ask for.
    """

    @staticmethod
    def subplots(*args, figsize=None, **kwargs):
        # Deferred: matplotlib loads on the first plot, not on `import annzoo`.
        from matplotlib.figure import Figure

        # Constrained layout keeps a figure's title, the panels' titles, tick
        # labels and colour bars apart (tests/test_plots.py measures it).
        fig = Figure(figsize=figsize, layout="constrained")
        return fig, fig.subplots(*args, **kwargs)

    @staticmethod
    def close(fig) -> None:
        fig.clear()

    @staticmethod
    def get_cmap(name: str):
        # Deferred: matplotlib loads on the first plot, not on `import annzoo`.
        import matplotlib

        return matplotlib.colormaps[name]


def _pyplot() -> _Figures:
    return _Figures()


def _save(fig, path, *, dpi: int = 110) -> Path:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight")
    _pyplot().close(fig)
    return write_bytes(path, buffer.getvalue())


def _integer_ticks(axis, last: int | None = None) -> None:
    """Ticks on whole numbers only (epochs, trials, layer counts: no 2.5);
    with ``last``, the axis spans 1 to ``last`` (half a step either side, so
    one epoch is still a whole-number axis)."""
    # Deferred: matplotlib loads on the first plot, not on `import annzoo`.
    from matplotlib.ticker import MaxNLocator

    axis.set_major_locator(
        MaxNLocator(integer=True, steps=[1, 2, 5, 10], min_n_ticks=1)
    )
    if last is not None:
        axis.axes.set_xlim(0.5, max(last, 1) + 0.5)


def _log_scale_if_spread(ax, values, *, ratio: float = 20.0) -> bool:
    """A log y axis for positive values spanning ``ratio`` or more (a loss
    falling from 2 to 0.003 is otherwise a flat line at zero)."""
    values = [v for v in values if v is not None and np.isfinite(v)]
    if values and min(values) > 0 and max(values) / min(values) >= ratio:
        ax.set_yscale("log")
        return True
    return False


_LEARNING_RATE_KEYS = ("learning_rate", "lr")


def _log_axis(axis, values) -> None:
    """A log axis labelled in plain numbers (0.001, 0.002, 0.005): under two
    decades at 1, 2 and 5 per decade, else at the decades, and never the
    crowded minor labels matplotlib adds to an axis without a whole decade."""
    # Deferred: matplotlib loads on the first plot, not on `import annzoo`.
    from matplotlib.ticker import FormatStrFormatter, LogLocator, NullFormatter

    (axis.axes.set_xscale if axis.axis_name == "x" else axis.axes.set_yscale)("log")
    positive = [v for v in values if v is not None and v > 0]
    narrow = positive and max(positive) / min(positive) < 100
    axis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0) if narrow else (1.0,)))
    axis.set_major_formatter(FormatStrFormatter("%g"))
    axis.set_minor_formatter(NullFormatter())


def plot_curves(
    history: Mapping[str, Sequence[float]],
    path: str | os.PathLike,
    *,
    title: str | None = None,
    best_epoch: int | None = None,
) -> Path:
    """Plots training curves: one panel per metric, train and validation.

    Epochs are whole numbers on the x axis. A loss (any metric whose name
    contains ``loss``) that spans a factor of 20 or more is drawn on a log
    axis. The learning rate (``"learning_rate"`` or ``"lr"``) gets its own
    panel, on a log axis, when it changed during the run (a schedule or
    ``reduce_lr``); a constant one is left out.

    Args:
        history: ``{"loss": [...], "val_loss": [...], "accuracy": [...]}`` as
            in ``keras.callbacks.History.history``.
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
        if not k.startswith("val_") and k not in (*_LEARNING_RATE_KEYS, "epoch")
    ]
    if not names:
        names = [k.removeprefix("val_") for k in history if k.startswith("val_")]
    rates = next((list(history[k]) for k in _LEARNING_RATE_KEYS if history.get(k)), [])
    changed = len({float(r) for r in rates}) > 1
    epochs = max((len(values) for values in history.values()), default=1)
    panels = len(names) + changed
    fig, axes = plt.subplots(1, panels, figsize=(4.5 * panels, 3.6), squeeze=False)
    for ax, name in zip(axes[0], names, strict=False):
        drawn = []
        for key, label, style in (
            (name, "train", "-"),
            (f"val_{name}", "validation", "--"),
        ):
            values = history.get(key)
            if values:
                steps = range(1, len(values) + 1)
                ax.plot(steps, values, style, marker="o", markersize=3, label=label)
                drawn.extend(values)
        if best_epoch:
            ax.axvline(
                best_epoch,
                color="grey",
                linewidth=0.8,
                linestyle=":",
                label=f"best (epoch {best_epoch})",
            )
        log = "loss" in name and _log_scale_if_spread(ax, drawn)
        ax.set_xlabel("epoch")
        ax.set_ylabel(f"{name} (log scale)" if log else name)
        ax.set_title(name)
        ax.grid(alpha=0.3, which="major")
        ax.legend(fontsize=8)
        _integer_ticks(ax.xaxis, epochs)
    if changed:
        ax = axes[0][-1]
        ax.plot(range(1, len(rates) + 1), rates, "-", marker="o", markersize=3)
        _log_axis(ax.yaxis, rates)
        ax.set_xlabel("epoch")
        ax.set_ylabel("learning rate (log scale)")
        ax.set_title("learning rate")
        ax.grid(alpha=0.3)
        _integer_ticks(ax.xaxis, epochs)
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
    plt = _pyplot()
    matrix = np.asarray(matrix)
    n = matrix.shape[0]
    names = list(class_names) if class_names else [str(i) for i in range(n)]
    shares = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)
    size = max(4.0, 0.45 * n + 2.5)
    fig, ax = plt.subplots(figsize=(size, size * 0.9))
    image = ax.imshow(shares, cmap="Blues", vmin=0, vmax=1)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="share of true class")
    # Slanted labels only where upright ones would run into each other
    # (class names, not the digits 0-9).
    slant = n > 6 and max(len(name) for name in names) > 2
    ax.set_xticks(
        range(n), names, rotation=45 if slant else 0, ha="right" if slant else "center"
    )
    ax.set_yticks(range(n), names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    if n <= 30:
        for i in range(n):
            for j in range(n):
                # Empty cells in light grey, so the mistakes stand out.
                colour = "white" if shares[i, j] > 0.6 else "black"
                ax.text(
                    j,
                    i,
                    str(matrix[i, j]),
                    ha="center",
                    va="center",
                    fontsize=8,
                    color=colour if matrix[i, j] else "0.75",
                )
    accuracy = np.trace(matrix) / max(matrix.sum(), 1)
    ax.set_title(f"{title + ': ' if title else ''}accuracy {accuracy:.3f}")
    return _save(fig, path)


def _weights_matrix(name: str, weights) -> np.ndarray:
    """``weights`` as a finite, non-empty 2-D float array, else an AnnzooError."""
    try:
        array = np.asarray(weights, dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise AnnzooError(
            f"`{name}` must be a 2-D array of numbers. Received: {type(weights)!r}"
        ) from error
    if array.ndim != 2 or 0 in array.shape:
        raise AnnzooError(
            f"`{name}` must be a non-empty 2-D array. Received: "
            f"{name}.shape={array.shape}"
        )
    if not np.isfinite(array).all():
        raise AnnzooError(f"`{name}` must be finite; it holds NaN or infinity.")
    return array


def _token_label(token) -> str:
    # Character-level models attend over spaces; make them visible.
    text = str(token)
    return "\u2423" if text == " " else text.replace("\n", "\\n")


def plot_attention(
    weights,
    path: str | os.PathLike,
    *,
    source_tokens: Sequence[str],
    target_tokens: Sequence[str],
    title: str | None = None,
) -> Path:
    """Plots the attention of a sequence-to-sequence model as a heatmap.

    Row ``i`` shows how the output token ``target_tokens[i]`` attended over the
    input tokens (the columns); with softmax attention every row sums to 1.

    Args:
        weights: Array-like ``(target_steps, source_steps)``, e.g. one sample of
            the attention scores a decoder returns; slice away padded steps
            first (``weights[:len(target_tokens), :len(source_tokens)]``).
        path: Where the PNG goes (written atomically).
        source_tokens: The input tokens, one per column (a string counts as
            its characters; a space is drawn as ``"\u2423"``).
        target_tokens: The output tokens, one per row.
        title: Figure title.

    Returns:
        ``path``, as a `pathlib.Path`.

    Raises:
        AnnzooError: If ``weights`` is not a finite 2-D array whose shape is
            ``(len(target_tokens), len(source_tokens))``.

    Example:

    >>> weights = np.eye(10)  # a translator that copies its input
    >>> plot_attention(weights, "attention.png",
    ...                source_tokens="2021-03-04", target_tokens="2021-03-04")
    PosixPath('attention.png')
    """
    matrix = _weights_matrix("weights", weights)
    source = [_token_label(t) for t in source_tokens]
    target = [_token_label(t) for t in target_tokens]
    expected = (len(target), len(source))
    if matrix.shape != expected:
        raise AnnzooError(
            "`weights` must have shape (len(target_tokens), len(source_tokens)) = "
            f"{expected}. Received: weights.shape={matrix.shape}"
        )
    plt = _pyplot()
    width = min(max(4.0, 0.32 * len(source) + 2.0), 30.0)
    height = min(max(3.0, 0.32 * len(target) + 1.5), 30.0)
    fig, ax = plt.subplots(figsize=(width, height))
    image = ax.imshow(
        matrix, cmap="viridis", vmin=0.0, vmax=max(matrix.max(), 1e-12), aspect="auto"
    )
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="attention weight")
    ax.set_xticks(range(len(source)), source, rotation=90 if len(source) > 12 else 0)
    ax.set_yticks(range(len(target)), target)
    ax.set_xlabel("input token")
    ax.set_ylabel("output token")
    if title:
        ax.set_title(title)
    return _save(fig, path)


def _grid_of(regions: int, grid) -> tuple[int, int]:
    if grid is None:
        side = int(round(regions**0.5))
        if side * side != regions:
            raise AnnzooError(
                f"`grid` is needed: weights has {regions} regions per word, which "
                "is not a square number. Pass grid=(rows, columns) of the "
                "encoder's feature map. Received: grid=None"
            )
        return side, side
    if (
        not isinstance(grid, Sequence)
        or len(grid) != 2
        or not all(isinstance(g, int | np.integer) and g > 0 for g in grid)
    ):
        raise AnnzooError(
            f"`grid` must be a pair of positive integers (rows, columns). "
            f"Received: grid={grid!r}"
        )
    rows, cols = int(grid[0]), int(grid[1])
    if rows * cols != regions:
        raise AnnzooError(
            f"`grid` must have rows * columns = {regions}, the regions per word in "
            f"`weights`. Received: grid={grid!r}"
        )
    return rows, cols


def _upsample_nearest(maps: np.ndarray, height: int, width: int) -> np.ndarray:
    """Nearest-neighbour resize of ``(n, rows, cols)`` maps to ``(n, height, width)``.

    Output pixel ``(i, j)`` takes cell ``(i * rows // height, j * cols // width)``:
    the cell whose span of the image contains the pixel's top-left corner. When
    the sizes divide, every cell becomes a ``height/rows x width/cols`` block.
    """
    rows, cols = maps.shape[1:]
    row_of = np.arange(height) * rows // height
    col_of = np.arange(width) * cols // width
    return maps[:, row_of[:, None], col_of[None, :]]


def plot_attention_overlay(
    image,
    weights,
    path: str | os.PathLike,
    *,
    words: Sequence[str],
    grid: tuple[int, int] | None = None,
    title: str | None = None,
) -> Path:
    """Plots where a captioner looked for each word: one panel per word.

    Each panel shows ``image`` with that word's attention over the encoder's
    feature grid, resized to the image (nearest neighbour: one flat block per
    grid cell) and drawn semi-transparently on top, more opaque where the
    weight is higher; the panel's title is the word. Each map is scaled by its
    own maximum, so a panel shows where the word looked, not how sharply
    compared to the other words.

    Args:
        image: Array-like ``(height, width, channels)`` with 1 or 3 channels,
            floats in [0, 1] (channels-last, as the captioner's input).
        weights: Array-like ``(num_words, regions)``: for each generated word,
            its attention over the ``rows * columns`` regions of the feature
            grid, in row-major order (as a flattened ``(rows, columns)`` map).
        path: Where the PNG goes (written atomically).
        words: The generated words, one per row of ``weights`` (a string is
            split on whitespace).
        grid: ``(rows, columns)`` of the feature grid; by default the square
            root of ``regions``, which must then be a square number.
        title: Figure title.

    Returns:
        ``path``, as a `pathlib.Path`.

    Raises:
        AnnzooError: If ``image`` is not ``(height, width, 1 or 3)`` in [0, 1],
            ``weights`` is not finite with ``len(words)`` rows, or ``grid`` does
            not match the number of regions.

    Example:

    >>> image = np.zeros((32, 32, 3))
    >>> weights = np.full((2, 16), 1 / 16)  # two words over a 4x4 grid
    >>> plot_attention_overlay(image, weights, "overlay.png", words=["a", "cat"])
    PosixPath('overlay.png')
    """
    try:
        pixels = np.asarray(image, dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise AnnzooError(
            f"`image` must be an array (height, width, channels). "
            f"Received: {type(image)!r}"
        ) from error
    if pixels.ndim != 3 or pixels.shape[-1] not in (1, 3) or 0 in pixels.shape:
        raise AnnzooError(
            "`image` must have shape (height, width, channels) with 1 or 3 "
            f"channels. Received: image.shape={pixels.shape}"
        )
    if not np.isfinite(pixels).all() or pixels.min() < 0 or pixels.max() > 1:
        raise AnnzooError(
            "`image` must hold values in [0, 1]. Received: values in "
            f"[{np.nanmin(pixels):.4g}, {np.nanmax(pixels):.4g}]"
        )
    matrix = _weights_matrix("weights", weights)
    labels = words.split() if isinstance(words, str) else [str(w) for w in words]
    if matrix.shape[0] != len(labels):
        raise AnnzooError(
            f"`weights` must have one row per word: {len(labels)} rows for "
            f"{len(labels)} `words`. Received: weights.shape={matrix.shape}"
        )
    rows, cols = _grid_of(matrix.shape[1], grid)
    height, width = pixels.shape[:2]
    maps = _upsample_nearest(matrix.reshape(-1, rows, cols), height, width)
    peaks = maps.max(axis=(1, 2), keepdims=True)
    maps = maps / np.where(peaks > 0, peaks, 1.0)

    plt = _pyplot()
    per_row = min(len(labels), 5)
    num_rows = -(-len(labels) // per_row)
    fig, axes = plt.subplots(
        num_rows, per_row, figsize=(2.4 * per_row, 2.6 * num_rows), squeeze=False
    )
    shown = pixels[..., 0] if pixels.shape[-1] == 1 else pixels
    # Colour and opacity both follow the weight: unattended regions leave the
    # image as it is, the most attended one is covered at 70%.
    overlay = plt.get_cmap("jet")(maps)
    overlay[..., 3] = 0.7 * maps
    for k, ax in enumerate(axes.flat):
        ax.axis("off")
        if k >= len(labels):
            continue
        ax.imshow(shown, cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
        ax.imshow(overlay[k], interpolation="nearest")
        ax.set_title(labels[k])
    if title:
        fig.suptitle(title)
    return _save(fig, path)


def _trial_numbers(trials: Sequence[Mapping]) -> list[int]:
    """Each trial's number from 1, as in trials.csv (`annzoo.tuning.reports`
    writes it as ``"trial"``); else its position in ``trials``, from 1."""
    return [int(t.get("trial", i)) for i, t in enumerate(trials, start=1)]


def plot_trials(
    trials: Sequence[Mapping], path: str | os.PathLike, *, objective: str
) -> Path:
    """A search at a glance: the objective per trial, then per hyperparameter.

    The first panel shows every completed trial's objective against its
    number (from 1, as in ``trials.csv``) and the best value so far; each
    further panel shows one hyperparameter's values against the objective
    (categorical values on an ordinal axis, the learning rate and any positive
    values spanning 100x or more on a log axis, whole numbers with whole-number
    ticks). The best trial is the star in every panel.
    """
    numbers = _trial_numbers(trials)
    done = [
        (number, t)
        for number, t in zip(numbers, trials, strict=True)
        if t.get("score") is not None
    ]
    # One panel per hyperparameter that varied (a fixed one says nothing here).
    seen: dict[str, set] = {}
    for _, t in done:
        for key, value in t["hyperparameters"].items():
            seen.setdefault(key, set()).add(json.dumps(value, default=str))
    names = sorted(k for k, values in seen.items() if len(values) > 1)
    panels = 1 + len(names)
    columns = min(panels, 4)
    rows = -(-panels // columns)
    plt = _pyplot()
    fig, axes = plt.subplots(
        rows, columns, figsize=(3.6 * columns, 3.0 * rows), squeeze=False
    )
    axes = axes.ravel()
    scores = np.array([t["score"] for _, t in done], dtype=float)
    maximize = any(k in objective for k in ("acc", "auc", "f1"))
    pick = np.argmax if maximize else np.argmin
    best = int(pick(scores)) if len(scores) else None
    star = dict(marker="*", color="tab:red", markersize=11, linestyle="none")
    ax = axes[0]
    if len(scores):
        order = [number for number, _ in done]
        running = np.maximum.accumulate if maximize else np.minimum.accumulate
        ax.plot(order, scores, "o", alpha=0.7, label="trial")
        ax.plot(order, running(scores), "-", label="best so far")
        ax.plot(
            [order[best]], [scores[best]], **star, label=f"best: trial {order[best]}"
        )
        ax.legend(fontsize=8)
    ax.set_xlabel("trial")
    ax.set_ylabel(objective)
    ax.set_title("objective per trial")
    _integer_ticks(ax.xaxis, max(numbers, default=1))
    for ax, name in zip(axes[1:], names, strict=False):
        pairs = [(t["hyperparameters"][name], t["score"], k)
                 for k, (_, t) in enumerate(done)
                 if name in t["hyperparameters"]]  # fmt: skip
        values = [p[0] for p in pairs]
        ys = [p[1] for p in pairs]
        numeric = all(
            isinstance(v, int | float) and not isinstance(v, bool) for v in values
        )
        if numeric:
            xs = values
            positive = values and min(values) > 0
            learning_rate = name.rsplit(".", 1)[-1] in _LEARNING_RATE_KEYS
            if positive and (learning_rate or max(values) / min(values) >= 100):
                _log_axis(ax.xaxis, values)
            elif all(float(v).is_integer() for v in values):
                _integer_ticks(ax.xaxis)
        else:
            labels = sorted({str(v) for v in values})
            xs = [labels.index(str(v)) for v in values]
            ax.set_xticks(range(len(labels)), labels, rotation=30, fontsize=8)
            ax.set_xlim(-0.5, len(labels) - 0.5)
        ax.plot(xs, ys, "o", alpha=0.7)
        for x, y, k in zip(xs, ys, [p[2] for p in pairs], strict=True):
            if k == best:
                ax.plot([x], [y], **star)
        ax.set_xlabel(name)
        ax.set_ylabel(objective)
    for ax in axes[panels:]:
        ax.axis("off")
    return _save(fig, path)


def plot_spread(
    series: Mapping[str, Mapping[Any, Sequence[float]]],
    path: str | os.PathLike,
    *,
    xlabel: str,
    ylabel: str,
    title: str | None = None,
) -> Path:
    """Curves of means with their standard deviation, one per series.

    ``series`` maps a label to ``{x: [values over repeats]}``, for example
    test accuracy over seeds at each training-set size.
    """
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    for label, points in series.items():
        xs = sorted(points)
        means = np.array([np.mean(points[x]) for x in xs])
        stds = np.array([np.std(points[x], ddof=1) if len(points[x]) > 1 else 0.0
                         for x in xs])  # fmt: skip
        ax.errorbar(xs, means, yerr=stds, marker="o", capsize=4, label=label)
        ax.fill_between(xs, means - stds, means + stds, alpha=0.15)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_xticks(sorted({x for points in series.values() for x in points}))
    ax.grid(alpha=0.3)
    ax.legend()
    if title:
        ax.set_title(title)
    return _save(fig, path)

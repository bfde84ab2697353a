"""Tests for the attention plots in annzoo.plots."""

from __future__ import annotations

import matplotlib.image
import numpy as np
import pytest

from annzoo import plots
from annzoo.errors import AnnzooError
from annzoo.io import TMP_PREFIX


def _read_png(path):
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    pixels = matplotlib.image.imread(path)
    assert pixels.ndim == 3 and pixels.shape[0] > 100 and pixels.shape[1] > 100
    # Drawn, not blank: many distinct colours.
    assert len(np.unique(pixels.reshape(-1, pixels.shape[-1]), axis=0)) > 20
    return pixels


def _no_temporaries(directory):
    return not [p for p in directory.iterdir() if p.name.startswith(TMP_PREFIX)]


def _softmax_rows(shape, seed=0):
    logits = np.random.default_rng(seed).normal(size=shape)
    e = np.exp(logits)
    return e / e.sum(axis=1, keepdims=True)


def test_plot_attention_writes_a_png(tmp_path):
    source = list("2021-03-04 ")
    target = ["04", "mar", "2021", "<end>"]
    path = plots.plot_attention(
        _softmax_rows((4, 11)),
        tmp_path / "attention.png",
        source_tokens=source,
        target_tokens=target,
        title="dates",
    )
    assert path == tmp_path / "attention.png"
    _read_png(path)
    assert _no_temporaries(tmp_path)


def test_plot_attention_accepts_character_strings(tmp_path):
    path = plots.plot_attention(
        np.eye(5), tmp_path / "a.png", source_tokens="ab cd", target_tokens="ab cd"
    )
    _read_png(path)


def test_plot_attention_replaces_an_existing_file(tmp_path):
    path = tmp_path / "attention.png"
    path.write_bytes(b"old")
    plots.plot_attention(
        np.eye(3), path, source_tokens=["a", "b", "c"], target_tokens=["x", "y", "z"]
    )
    _read_png(path)
    assert _no_temporaries(tmp_path)


@pytest.mark.parametrize(
    "weights, match",
    [
        (np.ones((3, 4)), r"weights.*\(2, 3\).*\(3, 4\)"),  # transposed
        (np.ones((2, 2)), r"weights.*\(2, 3\).*\(2, 2\)"),
        (np.ones(6), r"weights.*2-D.*\(6,\)"),
        (np.ones((1, 2, 3)), r"weights.*2-D.*\(1, 2, 3\)"),
        (np.full((2, 3), np.nan), r"weights.*finite"),
    ],
)
def test_plot_attention_rejects_bad_weights(tmp_path, weights, match):
    with pytest.raises(AnnzooError, match=match):
        plots.plot_attention(
            weights,
            tmp_path / "bad.png",
            source_tokens=["a", "b", "c"],
            target_tokens=["x", "y"],
        )
    assert list(tmp_path.iterdir()) == []


def test_plot_attention_overlay_writes_a_png(tmp_path):
    image = np.random.default_rng(1).uniform(size=(32, 32, 3)).astype("float32")
    words = ["a", "red", "circle", "left", "of", "a", "blue", "square"]
    path = plots.plot_attention_overlay(
        image,
        _softmax_rows((8, 16)),
        tmp_path / "overlay.png",
        words=words,
        title="caption",
    )
    assert path == tmp_path / "overlay.png"
    pixels = _read_png(path)
    # Eight panels in two rows of five: wider than tall.
    assert pixels.shape[1] > pixels.shape[0]
    assert _no_temporaries(tmp_path)


def test_plot_attention_overlay_grayscale_and_rectangular_grid(tmp_path):
    image = np.linspace(0, 1, 28 * 20).reshape(28, 20, 1)
    path = plots.plot_attention_overlay(
        image, _softmax_rows((2, 12)), tmp_path / "o.png", words="a cat", grid=(4, 3)
    )
    _read_png(path)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(image=np.zeros((32, 32))), r"image.*\(32, 32\)"),
        (dict(image=np.zeros((32, 32, 2))), r"image.*1 or 3.*\(32, 32, 2\)"),
        (dict(image=np.full((32, 32, 3), 255.0)), r"image.*\[0, 1\].*255"),
        (dict(weights=np.ones((3, 16))), r"weights.*2 rows.*\(3, 16\)"),
        (dict(weights=np.ones((2, 15))), r"grid.*15.*grid=None"),
        (dict(weights=np.ones((2, 15)), grid=(4, 4)), r"grid.*15.*grid=\(4, 4\)"),
        (dict(grid=(4, 0)), r"grid.*positive.*grid=\(4, 0\)"),
        (dict(weights=np.ones(16)), r"weights.*2-D"),
        (dict(weights=np.full((2, 16), np.inf)), r"weights.*finite"),
    ],
)
def test_plot_attention_overlay_rejects_bad_arguments(tmp_path, kwargs, match):
    arguments = dict(image=np.zeros((32, 32, 3)), weights=np.ones((2, 16)) / 16)
    arguments.update(kwargs)
    grid = arguments.pop("grid", None)
    with pytest.raises(AnnzooError, match=match):
        plots.plot_attention_overlay(
            arguments["image"],
            arguments["weights"],
            tmp_path / "bad.png",
            words=["a", "cat"],
            grid=grid,
        )
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("rows, cols, height, width", [(4, 4, 32, 32), (2, 5, 6, 15)])
def test_upsample_nearest_equals_kron_blocks(rows, cols, height, width):
    maps = np.random.default_rng(2).uniform(size=(3, rows, cols))
    block = np.ones((height // rows, width // cols))
    expected = np.stack([np.kron(m, block) for m in maps])
    np.testing.assert_array_equal(
        plots._upsample_nearest(maps, height, width), expected
    )


def test_upsample_nearest_uneven_sizes_keep_every_cell_in_order():
    maps = np.arange(6.0).reshape(1, 2, 3)
    out = plots._upsample_nearest(maps, 5, 7)[0]
    assert out.shape == (5, 7)
    # Rows: 5 pixels over 2 cells -> cell spans [0, 2.5) and [2.5, 5).
    np.testing.assert_array_equal(out[:, 0], [0, 0, 0, 3, 3])
    # Columns: 7 pixels over 3 cells -> spans [0, 7/3), [7/3, 14/3), [14/3, 7).
    np.testing.assert_array_equal(out[0], [0, 0, 0, 1, 1, 2, 2])


def test_drawing_a_png_leaves_the_users_matplotlib_backend_alone(tmp_path):
    import matplotlib

    from annzoo.plots import plot_curves

    matplotlib.use("svg")  # stands for a notebook's inline or a GUI backend
    try:
        path = plot_curves({"loss": [1.0, 0.5]}, tmp_path / "curves.png")
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert matplotlib.get_backend() == "svg"
    finally:
        matplotlib.use("Agg")


def test_trials_plot_has_a_panel_per_varied_hyperparameter(tmp_path, monkeypatch):
    from annzoo import plots

    shapes = []
    real = plots._Figures.subplots

    def spy(*args, **kwargs):
        shapes.append(args[:2])
        return real(*args, **kwargs)

    monkeypatch.setattr(plots._Figures, "subplots", staticmethod(spy))
    trials = [
        {"score": s, "hyperparameters": {"batch_size": 32, "dropout": d, "opt": o}}
        for s, d, o in [(0.9, 0.0, "adam"), (0.8, 0.2, "adam"), (0.7, 0.4, "adam")]
    ]
    plots.plot_trials(trials, tmp_path / "trials.png", objective="val_accuracy")
    # The objective panel and dropout's; batch_size and opt never changed.
    assert shapes == [(1, 2)]

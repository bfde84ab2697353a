"""What the PNGs annzoo draws look like, checked on matplotlib's objects.

Each plot function is run with `annzoo.plots._save` replaced by a catcher
that keeps the figure, lays it out and draws it with the Agg renderer; the
tests then read tick values, axis scales and the rendered extents of titles
and panels (not pixels).
"""

from __future__ import annotations

import csv
import json
from types import SimpleNamespace

import numpy as np
import pytest

from annzoo import plots

matplotlib = pytest.importorskip("matplotlib")


@pytest.fixture
def drawn(monkeypatch):
    """Figures the plot functions save, drawn, in order."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    figures = []

    def catch(fig, path, **_):
        FigureCanvasAgg(fig)
        fig.canvas.draw()
        figures.append(fig)
        return path

    monkeypatch.setattr(plots, "_save", catch)
    from annzoo.augment import previews

    monkeypatch.setattr(previews, "_save", catch)
    return figures


def _renderer(fig):
    return fig.canvas.get_renderer()


def _panels(fig):
    return [ax for ax in fig.axes if ax.get_visible() and ax.axison]


def _ticks(axis):
    """The major tick values inside the axis' view."""
    low, high = sorted(axis.get_view_interval())
    return [t for t in axis.get_majorticklocs() if low - 1e-9 <= t <= high + 1e-9]


def _overlap(a, b) -> bool:
    # Extents in display pixels; touching edges (a pixel of rounding) is fine.
    return a.x0 < b.x1 - 1 and b.x0 < a.x1 - 1 and a.y0 < b.y1 - 1 and b.y0 < a.y1 - 1


def _assert_nothing_collides(fig):
    """The figure title clears every panel (its title and tick labels
    included) and no two panels overlap, colour bars included."""
    renderer = _renderer(fig)
    boxes = [(ax, ax.get_tightbbox(renderer)) for ax in _panels(fig)]
    title = fig._suptitle
    if title is not None and title.get_text():
        extent = title.get_window_extent(renderer)
        for ax, box in boxes:
            assert not _overlap(extent, box), (title.get_text(), ax.get_title())
            head = ax.title.get_window_extent(renderer)
            assert not _overlap(extent, head), (title.get_text(), ax.get_title())
    for i, (a, box_a) in enumerate(boxes):
        for b, box_b in boxes[i + 1 :]:
            assert not _overlap(box_a, box_b), (a.get_title(), b.get_title())


def _history(epochs, **extra):
    steps = np.arange(1, epochs + 1)
    return {
        "loss": list(2.0 / steps**1.5),
        "accuracy": list(1 - 0.5 / steps),
        "val_loss": list(2.2 / steps**1.2),
        "val_accuracy": list(1 - 0.6 / steps),
        **extra,
    }


# -- curves.png --------------------------------------------------------------


@pytest.mark.parametrize("epochs", [1, 2, 3, 7, 49])
def test_curves_tick_whole_epochs_only(drawn, tmp_path, epochs):
    plots.plot_curves(_history(epochs), tmp_path / "c.png", title="t", best_epoch=1)
    for ax in _panels(drawn[0]):
        ticks = _ticks(ax.xaxis)
        assert ticks, ax.get_title()
        assert all(float(t).is_integer() for t in ticks), (epochs, ticks)
        # Every epoch drawn is inside the axis, and no epoch 0 or n + 1 is.
        low, high = sorted(ax.get_xlim())
        assert 0 < low <= 1 and epochs <= high < epochs + 1


def test_curves_figure_title_clears_the_panel_titles(drawn, tmp_path):
    plots.plot_curves(
        _history(12, learning_rate=[1e-3] * 6 + [1e-4] * 6),
        tmp_path / "c.png",
        title="digits_cnn: cnn on digits",
        best_epoch=9,
    )
    fig = drawn[0]
    assert fig._suptitle.get_text() == "digits_cnn: cnn on digits"
    assert len(_panels(fig)) == 3
    _assert_nothing_collides(fig)


def test_curves_learning_rate_panel_is_logarithmic_when_it_changed(drawn, tmp_path):
    rates = [1e-3] * 5 + [5e-4] * 5 + [1e-5] * 2
    plots.plot_curves(_history(12, learning_rate=rates), tmp_path / "c.png")
    panels = {ax.get_title(): ax for ax in _panels(drawn[0])}
    assert set(panels) == {"loss", "accuracy", "learning rate"}
    ax = panels["learning rate"]
    assert ax.get_yscale() == "log"
    np.testing.assert_allclose(ax.lines[0].get_ydata(), rates)
    # Plain numbers, and no crowded minor labels on a narrow log axis.
    renderer = _renderer(drawn[0])
    labels = [t for t in ax.yaxis.get_ticklabels(which="both") if t.get_text()]
    assert labels and all("$" not in t.get_text() for t in labels)
    extents = [t.get_window_extent(renderer) for t in labels]
    for i, a in enumerate(extents):
        assert not any(_overlap(a, b) for b in extents[i + 1 :])


def test_curves_leave_out_a_constant_learning_rate(drawn, tmp_path):
    plots.plot_curves(_history(4, lr=[1e-3] * 4), tmp_path / "c.png")
    assert [ax.get_title() for ax in _panels(drawn[0])] == ["loss", "accuracy"]


def test_curves_draw_a_loss_spanning_decades_on_a_log_axis(drawn, tmp_path):
    plots.plot_curves(_history(40), tmp_path / "c.png")  # loss 2 -> 0.008
    panels = {ax.get_title(): ax for ax in _panels(drawn[0])}
    assert panels["loss"].get_yscale() == "log"
    assert panels["accuracy"].get_yscale() == "linear"
    plots.plot_curves({"loss": [0.9, 0.7, 0.6]}, tmp_path / "c.png")
    assert _panels(drawn[1])[0].get_yscale() == "linear"


# -- trials.csv and trials.png -----------------------------------------------


def _engine(outcomes):
    """A keras-tuner engine as `reports.collect` reads it: trials "00", ..."""
    trials = {}
    for i, (score, lr, depth) in enumerate(outcomes):
        status = "FAILED" if score is None else "COMPLETED"
        trials[f"{i:02d}"] = SimpleNamespace(
            status=status,
            score=score,
            best_step=1,
            hyperparameters={"learning_rate": lr, "depth": depth, "act": "relu"},
        )
    return SimpleNamespace(oracle=SimpleNamespace(trials=trials))


def test_trials_are_numbered_from_one_in_the_csv_and_the_png(drawn, tmp_path):
    from annzoo.tuning import reports

    # Trial 2 failed: the png must not renumber trials 3 and 4 as 2 and 3.
    outcomes = [(0.50, 1e-3, 1), (None, 2e-3, 2), (0.30, 3e-3, 3), (0.40, 5e-4, 2)]
    hypermodel = SimpleNamespace(active_values=lambda values: values)
    rows = reports.collect(_engine(outcomes), hypermodel, tmp_path / "stats")
    winner = reports.best(rows, "min")
    reports.write(tmp_path, rows, winner, "val_loss", verbose=0)
    plots.plot_trials(rows, tmp_path / "trials.png", objective="val_loss")

    with open(tmp_path / "trials.csv") as handle:
        table = list(csv.DictReader(handle))
    assert [int(r["trial"]) for r in table] == [1, 2, 3, 4]
    completed = [int(r["trial"]) for r in table if r["status"] == "COMPLETED"]
    best_json = json.loads((tmp_path / "best_hyperparameters.json").read_text())
    assert best_json["trial"] == 3 and best_json["trial_id"] == "02"

    panel = _panels(drawn[0])[0]
    assert panel.get_xlabel() == "trial"
    trial_points, _, star = panel.lines
    assert list(trial_points.get_xdata()) == completed == [1, 3, 4]
    assert list(star.get_xdata()) == [best_json["trial"]]
    assert all(float(t).is_integer() for t in _ticks(panel.xaxis))
    assert min(_ticks(panel.xaxis)) >= 1


def _trials(values, name="learning_rate"):
    return [
        {"trial": i, "score": s, "hyperparameters": {name: v, "depth": d}}
        for i, (v, d, s) in enumerate(values, start=1)
    ]


def test_trials_learning_rate_is_on_a_log_axis_with_readable_labels(drawn, tmp_path):
    # A spread of 4x: not "wide", yet a learning rate is read in ratios.
    rows = _trials([(8e-4, 1, 0.3), (1.1e-3, 2, 0.2), (3e-3, 3, 0.25), (2e-3, 2, 0.4)])
    plots.plot_trials(rows, tmp_path / "trials.png", objective="val_loss")
    fig = drawn[0]
    panels = {ax.get_xlabel(): ax for ax in _panels(fig)}
    assert panels["learning_rate"].get_xscale() == "log"
    renderer = _renderer(fig)
    labels = [
        t
        for t in panels["learning_rate"].xaxis.get_ticklabels(which="both")
        if t.get_text()
    ]
    assert len(labels) >= 2
    extents = [t.get_window_extent(renderer) for t in labels]
    for i, a in enumerate(extents):
        assert not any(_overlap(a, b) for b in extents[i + 1 :]), [
            t.get_text() for t in labels
        ]
    # A whole-number hyperparameter gets whole-number ticks (no 1.5, 2.5).
    assert panels["depth"].get_xscale() == "linear"
    assert all(float(t).is_integer() for t in _ticks(panels["depth"].xaxis))
    _assert_nothing_collides(fig)


def test_trials_other_names_stay_linear_unless_they_span_100x(drawn, tmp_path):
    rows = _trials([(0.1, 1, 0.3), (0.3, 2, 0.2), (0.5, 1, 0.1)], name="dropout")
    plots.plot_trials(rows, tmp_path / "trials.png", objective="val_loss")
    panels = {ax.get_xlabel(): ax for ax in _panels(drawn[0])}
    assert panels["dropout"].get_xscale() == "linear"


# -- every other PNG: nothing collides -----------------------------------------


def test_confusion_matrix_labels_upright_for_digits_slanted_for_names(drawn, tmp_path):
    matrix = np.eye(10, dtype=int) * 20
    matrix[3, 8] = 2
    plots.plot_confusion_matrix(matrix, tmp_path / "m.png", title="digits_cnn")
    names = [f"class_{i}" for i in range(10)]
    plots.plot_confusion_matrix(matrix, tmp_path / "m.png", class_names=names)
    digits, named = (_panels(fig)[0] for fig in drawn)
    assert {t.get_rotation() for t in digits.get_xticklabels()} == {0.0}
    assert {t.get_rotation() for t in named.get_xticklabels()} == {45.0}
    for fig in drawn:
        _assert_nothing_collides(fig)
    # The counts are written in each cell; an empty cell is greyed out.
    cells = {t.get_text(): t for t in digits.texts}
    assert cells["2"].get_color() == "black" and cells["0"].get_color() == "0.75"


def test_attention_plots_keep_titles_apart(drawn, tmp_path):
    plots.plot_attention(
        np.eye(10),
        tmp_path / "a.png",
        source_tokens="2021-03-04",
        target_tokens="2021-03-04",
        title="dates_seq2seq_attention: seq2seq",
    )
    weights = np.full((8, 16), 1 / 16)
    plots.plot_attention_overlay(
        np.zeros((16, 16, 3)),
        weights,
        tmp_path / "o.png",
        words="a red square left of a blue circle",
        title="shapes_captioner: captioner",
    )
    assert len(drawn) == 2
    for fig in drawn:
        _assert_nothing_collides(fig)


def test_spread_and_augmentation_preview_keep_titles_apart(drawn, tmp_path):
    from annzoo import augment

    plots.plot_spread(
        {"pretrained": {10: [0.8, 0.9], 50: [0.9, 0.95]}, "scratch": {10: [0.5]}},
        tmp_path / "s.png",
        xlabel="examples per class",
        ylabel="test accuracy",
        title="transfer",
    )
    images = np.random.default_rng(0).random((3, 8, 8, 1)).astype("float32")
    augment.preview("digits", images, tmp_path / "p.png", variants=2)
    assert len(drawn) == 2
    for fig in drawn:
        _assert_nothing_collides(fig)

"""The grid of samples a generative run draws after every epoch
(annzoo.training.samples), and the shapes_gan recipe that shows it.

Expected images come from the model's generator called here on noise drawn
here with NumPy; expected layouts and parameter counts from formulas written
here.
"""

from __future__ import annotations

import json

import keras
import numpy as np
import pytest

from annzoo import AnnzooError, datasets, plots_generative
from annzoo.models import gan
from annzoo.training import samples

SHAPES = ("circle", "square", "triangle")


def _tiny_gan(classes=3, seed=0):
    keras.utils.set_random_seed(seed)
    return gan.build_gan(
        (8, 8, 1),
        latent_dim=4,
        generator_filters=(8, 4),
        discriminator_filters=(4,),
        conditional_classes=classes,
    )


def _callback(directory, **kwargs):
    options = dict(classes=samples._gan_classes, seed=5, columns=4)
    options.update(kwargs)
    return samples.SamplesPerEpoch(directory, gan.sample, **options)


def test_the_grid_is_the_same_noise_each_epoch_one_row_per_label(tmp_path, monkeypatch):
    model = _tiny_gan()
    callback = _callback(tmp_path / "samples", row_names=["a", "b", "c"])
    callback.set_model(model)
    images, labels, names = callback.grid(model)
    # The noise, drawn here: NumPy's generator with the callback's seed; row k
    # asks the generator for class k, four times.
    noise = np.random.default_rng(5).standard_normal((12, 4)).astype("float32")
    expected_labels = np.array([0] * 4 + [1] * 4 + [2] * 4)
    expected = keras.ops.convert_to_numpy(
        model.generator({"noise": noise, "labels": expected_labels}, training=False)
    )
    np.testing.assert_array_equal(labels, expected_labels)
    np.testing.assert_allclose(images, expected, rtol=1e-6, atol=1e-6)
    assert names == ["a", "b", "c"]

    drawn = []
    real = plots_generative.plot_sample_mosaic

    def spy(images, path, **kwargs):
        drawn.append((np.array(images), kwargs))
        return real(images, path, **kwargs)

    monkeypatch.setattr(plots_generative, "plot_sample_mosaic", spy)
    callback.on_epoch_end(0)
    callback.on_epoch_end(1)  # the weights did not change in between
    first, second = (tmp_path / "samples" / f"epoch-00{k}.png" for k in (1, 2))
    # The same pictures but for their titles (the epoch), at the top.
    import matplotlib.image

    a, b = (matplotlib.image.imread(p) for p in (first, second))
    assert a.shape == b.shape
    differ = np.flatnonzero((a != b).any(axis=(1, 2)))
    assert len(differ) and differ.max() < 0.15 * len(a)
    for k, (grid, kwargs) in enumerate(drawn):
        np.testing.assert_allclose(grid, expected, rtol=1e-6, atol=1e-6)
        assert kwargs["row_labels"] == ["a", "b", "c"] and kwargs["columns"] == 4
        assert kwargs["title"].endswith(f"epoch {k + 1}")

    # Names that do not fit the model's classes: rows named by class id.
    assert _callback(tmp_path, row_names=["x"]).grid(model)[2] == ["0", "1", "2"]


def test_an_unconditional_grid_is_square_and_unlabelled(tmp_path):
    model = _tiny_gan(classes=None)
    images, labels, names = _callback(tmp_path).grid(model)
    assert images.shape == (16, 8, 8, 1) and labels is None and names is None
    noise = np.random.default_rng(5).standard_normal((16, 4)).astype("float32")
    expected = keras.ops.convert_to_numpy(model.generator(noise, training=False))
    np.testing.assert_allclose(images, expected, rtol=1e-6, atol=1e-6)


def test_mosaic_places_image_k_at_row_k_over_columns():
    rng = np.random.default_rng(0)
    images = rng.uniform(size=(6, 3, 2, 3)).astype("float32")
    picture = plots_generative.mosaic(images, 3, gap=1)
    assert picture.shape == (2 * 4 - 1, 3 * 3 - 1, 3)
    for k in range(6):
        top, left = (k // 3) * 4, (k % 3) * 3
        tile = picture[top : top + 3, left : left + 2]
        np.testing.assert_array_equal(tile, images[k])
    assert not picture[3].any() and not picture[:, 2].any()  # the gaps
    with pytest.raises(AnnzooError, match=r"whole rows of 4.*6 images"):
        plots_generative.mosaic(images, 4)


@pytest.mark.slow
def test_drawing_the_grid_changes_nothing_in_training(tmp_path):
    """The grid's noise is NumPy's: two runs of the same seed, one drawing
    after each epoch, end with the same bits in every weight."""
    rng = np.random.default_rng(1)
    x = rng.uniform(size=(32, 8, 8, 1)).astype("float32")
    y = rng.integers(0, 3, size=32).astype("int32")
    weights = []
    for draw in (False, True):
        model = _tiny_gan(seed=3)
        callbacks = [_callback(tmp_path / f"run{draw}")] if draw else []
        model.fit(x, y, batch_size=8, epochs=2, verbose=0, callbacks=callbacks)
        weights.append([np.asarray(w).tobytes() for w in model.weights])
    assert weights[0] == weights[1]
    drawn = sorted(p.name for p in (tmp_path / "runTrue").iterdir())
    assert drawn == ["epoch-001.png", "epoch-002.png"]


# --- the shapes dataset's image-and-pair view, and the shapes_gan recipe -----


def test_shapes_view_labels_each_image_with_its_two_shapes():
    captions = datasets.load("shapes_captions", "test", seed=0)
    pairs = datasets.load("shapes_captions", "test", seed=0, target="shapes")
    np.testing.assert_array_equal(pairs.x, captions.x)  # the same partition
    assert pairs.task == "multiclass" and pairs.structure == "sample"
    # The six unordered pairs, in the order of SHAPES.
    names = [f"{a}+{b}" for i, a in enumerate(SHAPES) for b in SHAPES[i:]]
    assert list(pairs.class_names) == names and pairs.num_classes == 6
    for row in range(len(pairs)):
        words = captions.target_vocabulary.decode(captions.y[row], join=" ").split()
        first, second = sorted((words[2], words[-1]), key=SHAPES.index)
        assert pairs.class_names[pairs.y[row]] == f"{first}+{second}"
    info = datasets.dataset_info("shapes_captions", target="shapes")
    assert info["task"] == "multiclass" and list(info["class_names"]) == names
    with pytest.raises(AnnzooError, match=r"`target`.*'caption', 'shapes'.*colour"):
        datasets.load("shapes_captions", "test", target="colour")


@pytest.mark.slow
def test_shapes_gan_script_trains_a_conditional_gan_and_draws_each_epoch(
    tmp_path, capsys
):
    from annzoo.cli import recipe_main, script_recipe

    argv = ["--epochs", "1", "--set", "data.limit=32", "--set", "data.batch_size=16"]
    argv += ["--set", "callbacks.tensorboard=false", "--quiet"]
    status = recipe_main(
        script_recipe("shapes_gan", "tests"), argv + ["--output-dir", str(tmp_path)]
    )
    assert status == 0, capsys.readouterr().err[-2000:]
    run = tmp_path / "shapes_gan"
    saved = json.loads((run / "recipe.json").read_text())
    assert saved["data"]["options"] == {"target": "shapes"}
    assert saved["model"]["conditional_classes"] == 6
    results = json.loads((run / "results.json").read_text())
    # dcgan_shapes' 464,996 weights (its registry reference) plus the label:
    # 6 one-hot inputs more to the generator's Dense onto 4x4x128, and the
    # discriminator's 6 x 2048 label embedding.
    assert results["params"] == 464_996 + 6 * 4 * 4 * 128 + 6 * 4 * 4 * 128
    assert results["epochs_run"] == 1
    assert {"frechet_distance", "sample_accuracy", "sample_diversity"} <= set(
        results["test"]
    )
    assert 0 <= results["test"]["sample_accuracy"] <= 1
    assert sorted(p.name for p in (run / "samples").iterdir()) == ["epoch-001.png"]
    for name in ("samples.png", "final.keras", "metrics.csv", "manifest.json"):
        assert (run / name).is_file(), name

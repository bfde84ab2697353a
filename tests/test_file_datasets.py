"""Tests of a user's own files as datasets: ``"csv:PATH"`` and ``"images:DIR"``.

Every file is written into ``tmp_path``: small CSVs and folders of 8x8 PNGs
made with NumPy and Pillow (class "bright" near white, class "dark" near
black). Expected values are recomputed here from the written data, never read
back from the loader.
"""

from __future__ import annotations

import csv
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from annzoo import datasets
from annzoo.datasets import _csv_files, _image_folders, files
from annzoo.errors import AnnzooError, UnknownNameError
from annzoo.training import Recipe, train

REPO = Path(__file__).resolve().parents[1]
SPLITS = ("train", "validation", "test")
PER_CLASS = 10  # images per class


@pytest.fixture(autouse=True)
def _fresh_cache():
    files.clear_cache()
    yield
    files.clear_cache()


# -- helpers -----------------------------------------------------------------


def _write_csv(path: Path, header, rows) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def _table(n=40, *, labels=None, seed=0):
    """``(features (n, 3) float64, rows)`` for columns a, b, c, label."""
    rng = np.random.default_rng(seed)
    x = rng.normal(loc=[5.0, -2.0, 100.0], scale=[1.0, 3.0, 20.0], size=(n, 3))
    x = np.round(x, 4)
    if labels is None:
        labels = [i % 2 for i in range(n)]
    rows = [[*map(repr, map(float, r)), lab] for r, lab in zip(x, labels, strict=True)]
    return x, rows


def _csv_file(tmp_path, labels=None, n=40, name="data.csv"):
    x, rows = _table(n, labels=labels)
    path = _write_csv(tmp_path / name, ["a", "b", "c", "label"], rows)
    return path, x


def _splits(name, seed=0, **options):
    return {s: datasets.load(name, s, seed=seed, **options) for s in SPLITS}


def _png(path: Path, array: np.ndarray, mode: str | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.fromarray(array)
    if mode:
        image = image.convert(mode)
    image.save(path)


def _image_dir(root: Path, per_class: int = PER_CLASS) -> Path:
    """Classes "bright" and "dark"; a few odd sizes and modes; decoy files."""
    rng = np.random.default_rng(0)
    for cls, (low, high) in {"bright": (200, 256), "dark": (0, 50)}.items():
        for i in range(per_class):
            shape = (12, 10, 3) if i == 0 else (8, 8, 3)
            pixels = rng.integers(low, high, size=shape, dtype=np.uint8)
            mode = {1: "L", 2: "RGBA"}.get(i)
            _png(root / cls / f"{i:02d}.png", pixels, mode)
        (root / cls / "notes.txt").write_text("not an image")
    # Hidden folders are not classes.
    _png(root / ".ipynb_checkpoints" / "x.png", np.zeros((8, 8, 3), np.uint8))
    return root


@pytest.fixture
def image_dir(tmp_path):
    return _image_dir(tmp_path / "images")


def _class_counts(y, num_classes):
    return np.bincount(np.asarray(y), minlength=num_classes)


def _check_stratified(parts, labels):
    """Each class's count per split is the floor or ceil of its exact share."""
    labels = np.asarray(labels)
    n = len(labels)
    sizes = datasets.split_sizes(n)
    totals = np.bincount(labels)
    for split, idx in parts.items():
        counts = np.bincount(labels[idx], minlength=len(totals))
        exact = totals * sizes[split] / n
        assert np.all(counts >= np.floor(exact)) and np.all(counts <= np.ceil(exact))


def _check_partition(parts, n):
    sizes = datasets.split_sizes(n)
    assert {s: len(p) for s, p in parts.items()} == sizes
    joined = np.concatenate(list(parts.values()))
    assert len(np.unique(joined)) == n
    assert sorted(joined.tolist()) == list(range(n))


# -- images ------------------------------------------------------------------


def test_images_arrays_shapes_and_labels(image_dir):
    name = f"images:{image_dir}"
    loaded = _splits(name, image_size=[8, 8])
    for split, d in loaded.items():
        assert d.split == split and d.name == name and d.seed == 0
        assert d.x.dtype == np.float32 and d.x.shape[1:] == (8, 8, 3)
        assert d.y.dtype == np.int32 and d.indices.dtype == np.int64
        assert 0.0 <= d.x.min() and d.x.max() <= 1.0
        assert d.task == "binary" and d.num_classes == 2 and d.num_outputs == 1
        assert d.class_names == ("bright", "dark") and d.feature_names is None
        means = d.x.mean(axis=(1, 2, 3))
        assert np.all(means[d.y == 0] > 0.7) and np.all(means[d.y == 1] < 0.25)
    _check_partition({s: d.indices for s, d in loaded.items()}, 2 * PER_CLASS)

    gray = datasets.load(name, "test", image_size=[4, 6], color_mode="grayscale")
    assert gray.x.shape == (len(gray), 4, 6, 1) and gray.x.dtype == np.float32
    assert gray.input_shape == (4, 6, 1)


def test_images_indices_are_positions_in_the_sorted_file_list(image_dir):
    listed = files.image_files(image_dir)
    assert [p.parent.name for p in listed] == ["bright"] * 10 + ["dark"] * 10
    assert [p.name for p in listed[:3]] == ["00.png", "01.png", "02.png"]
    d = datasets.load(f"images:{image_dir}", "train", image_size=(8, 8))
    for row, index, label in zip(d.x, d.indices, d.y, strict=True):
        path = listed[index]
        assert d.class_names[label] == path.parent.name
        with Image.open(path) as image:
            image = image.convert("RGB")
            if image.size != (8, 8):
                image = image.resize((8, 8), Image.Resampling.BILINEAR)
            expected = np.asarray(image, dtype=np.float32) / 255
        np.testing.assert_allclose(row, expected, atol=1e-6)


def test_images_16_bit_grayscale_is_scaled_not_clipped(image_dir):
    levels = np.array([[0, 257 * 64, 257 * 128, 65535]] * 4, dtype=np.uint16)
    Image.fromarray(levels).save(image_dir / "dark" / "wide.png")
    index = [p.name for p in files.image_files(image_dir)].index("wide.png")
    for mode, channels in (("grayscale", 1), ("rgb", 3)):
        loaded = _splits(f"images:{image_dir}", image_size=[4, 4], color_mode=mode)
        d = next(d for d in loaded.values() if index in d.indices)
        row = d.x[list(d.indices).index(index)]
        expected = np.float32([0, 64, 128, 255]) / 255
        np.testing.assert_allclose(row[0, :, 0], expected, atol=1e-6)
        assert row.shape == (4, 4, channels)


def test_images_split_is_stratified_and_seeded(tmp_path):
    # Unequal classes: 9 "a", 14 "b", 5 "c".
    root = tmp_path / "imgs"
    for cls, count in {"a": 9, "b": 14, "c": 5}.items():
        for i in range(count):
            _png(root / cls / f"{i}.png", np.full((8, 8, 3), 18 * i, np.uint8))
    name = f"images:{root}"
    options = {"image_size": [8, 8], "color_mode": "grayscale"}
    first = _splits(name, seed=3, **options)
    assert first["train"].task == "multiclass" and first["train"].num_classes == 3
    labels = np.repeat([0, 1, 2], [9, 14, 5])
    parts = {s: d.indices for s, d in first.items()}
    _check_partition(parts, 28)
    _check_stratified(parts, labels)
    for d in first.values():
        np.testing.assert_array_equal(d.y, labels[d.indices])

    files.clear_cache()
    again = _splits(name, seed=3, **options)
    other = _splits(name, seed=4, **options)
    for s in SPLITS:
        np.testing.assert_array_equal(again[s].indices, first[s].indices)
        np.testing.assert_array_equal(again[s].x, first[s].x)
    assert any(not np.array_equal(other[s].indices, first[s].indices) for s in SPLITS)


def test_images_info(image_dir):
    info = datasets.dataset_info(
        f"images:{image_dir}", image_size=[8, 6], color_mode="grayscale"
    )
    assert info["task"] == "binary" and info["num_classes"] == 2
    assert info["input_shape"] == (8, 6, 1)
    assert info["class_names"] == ("bright", "dark")
    assert info["num_samples"] == {"train": 14, "validation": 3, "test": 3}
    assert info["splits"] == list(SPLITS)


def test_images_are_decoded_once_per_process(image_dir, monkeypatch):
    calls = []
    decode = _image_folders._decode
    monkeypatch.setattr(
        _image_folders, "_decode", lambda *a: calls.append(a[0]) or decode(*a)
    )
    name = f"images:{image_dir}"
    _splits(name, image_size=[8, 8])
    datasets.dataset_info(name, image_size=[8, 8])
    assert len(calls) == 2 * PER_CLASS
    datasets.load(name, "train", image_size=[8, 8], color_mode="grayscale")
    assert len(calls) == 4 * PER_CLASS  # other options: decoded again
    # A changed file is noticed.
    changed = image_dir / "dark" / "03.png"
    _png(changed, np.zeros((8, 8, 3), np.uint8))
    os.utime(changed, ns=(1, 1))
    datasets.load(name, "train", image_size=[8, 8])
    assert len(calls) == 6 * PER_CLASS


def test_images_errors(tmp_path, image_dir):
    missing = tmp_path / "nowhere"
    with pytest.raises(AnnzooError, match="nowhere.*does not exist") as error:
        datasets.load(f"images:{missing}", image_size=[8, 8])
    assert "Received" in str(error.value)

    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "stray.png").write_bytes(b"")
    with pytest.raises(AnnzooError, match="no class subfolders") as error:
        datasets.load(f"images:{empty}", image_size=[8, 8])
    assert str(empty) in str(error.value) and "Received" in str(error.value)

    (image_dir / "zebra").mkdir()
    (image_dir / "zebra" / "readme.txt").write_text("no images here")
    with pytest.raises(AnnzooError, match="has no images") as error:
        datasets.load(f"images:{image_dir}", image_size=[8, 8])
    assert str(image_dir / "zebra") in str(error.value)
    (image_dir / "zebra" / "readme.txt").unlink()
    (image_dir / "zebra").rmdir()

    single = tmp_path / "single"
    _png(single / "only" / "0.png", np.zeros((8, 8, 3), np.uint8))
    with pytest.raises(AnnzooError, match="at least two classes"):
        datasets.load(f"images:{single}", image_size=[8, 8])

    broken = image_dir / "dark" / "broken.png"
    broken.write_bytes(b"this is not a png")
    with pytest.raises(AnnzooError, match="broken.png"):
        datasets.load(f"images:{image_dir}", image_size=[8, 8])
    broken.unlink()


@pytest.mark.parametrize("size", [None, [8], [0, 8], "8x8", [8.0, 8], [8, 8, 3]])
def test_images_image_size_is_checked(image_dir, size):
    with pytest.raises(AnnzooError, match="`image_size`") as error:
        datasets.load(f"images:{image_dir}", image_size=size)
    assert "Received: image_size=" in str(error.value)


def test_images_option_errors(image_dir):
    name = f"images:{image_dir}"
    with pytest.raises(UnknownNameError, match="`color_mode`.*Received"):
        datasets.load(name, image_size=[8, 8], color_mode="rgba")
    with pytest.raises(AnnzooError, match="`image_size`"):
        datasets.load(name)  # the required option left out
    with pytest.raises(AnnzooError, match="`label_column`.*Received"):
        datasets.load(name, image_size=[8, 8], label_column="y")


def test_images_and_csv_need_no_tensorflow(image_dir, tmp_path):
    path, _ = _csv_file(tmp_path)
    code = (
        "import sys, types\n"
        "sys.modules['tensorflow'] = None\n"  # importing TensorFlow fails
        "pkg = types.ModuleType('annzoo')\n"
        f"pkg.__path__ = [{str(REPO / 'annzoo')!r}]\n"
        "sys.modules['annzoo'] = pkg\n"
        "from annzoo import datasets\n"
        f"x = datasets.load({f'images:{image_dir}'!r}, image_size=[8, 8]).x\n"
        f"y = datasets.load({f'csv:{path}'!r}, label_column='label').y\n"
        "print(x.shape, y.dtype)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["(14,", "8,", "8,", "3)", "int32"]


# -- CSV ---------------------------------------------------------------------


def test_csv_arrays_and_binary_task(tmp_path):
    path, _ = _csv_file(tmp_path)
    loaded = _splits(f"csv:{path}", label_column="label")
    for split, d in loaded.items():
        assert d.split == split and d.name == f"csv:{path}"
        assert d.x.dtype == np.float32 and d.x.shape == (len(d), 3)
        assert d.y.dtype == np.int32 and set(np.unique(d.y)) <= {0, 1}
        assert d.task == "binary" and d.num_classes == 2
        assert d.class_names == ("0", "1") and d.feature_names == ("a", "b", "c")
        # The labels are the file's: row i has label i % 2.
        np.testing.assert_array_equal(d.y, d.indices % 2)
    parts = {s: d.indices for s, d in loaded.items()}
    _check_partition(parts, 40)
    _check_stratified(parts, np.arange(40) % 2)


def test_csv_standardizes_with_train_statistics_only(tmp_path):
    path, raw = _csv_file(tmp_path, labels=[f"{v:.3f}" for v in np.linspace(0, 1, 40)])
    loaded = _splits(f"csv:{path}", seed=5, label_column="label")
    train_rows = loaded["train"].indices
    mean = raw[train_rows].mean(axis=0)
    std = raw[train_rows].std(axis=0)
    for d in loaded.values():
        expected = (raw[d.indices] - mean) / std
        np.testing.assert_allclose(d.x, expected, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(loaded["train"].x.mean(axis=0), 0, atol=1e-5)
    np.testing.assert_allclose(loaded["train"].x.std(axis=0), 1, atol=1e-4)
    assert np.abs(loaded["test"].x.mean(axis=0)).max() > 1e-3  # not refit on test

    plain = datasets.load(
        f"csv:{path}", "test", seed=5, label_column="label", standardize=False
    )
    np.testing.assert_allclose(plain.x, raw[plain.indices], rtol=1e-6)


def test_csv_regression_and_determinism(tmp_path):
    targets = [f"{v:.2f}" for v in np.linspace(-3, 7, 40)]
    path, _ = _csv_file(tmp_path, labels=targets)
    name = f"csv:{path}"
    first = _splits(name, seed=1, label_column="label")
    for d in first.values():
        assert d.task == "regression" and d.num_classes is None
        assert d.class_names is None and d.num_outputs == 1
        assert d.y.dtype == np.float32
        np.testing.assert_allclose(d.y, np.float32(targets)[d.indices])
    _check_partition({s: d.indices for s, d in first.items()}, 40)
    files.clear_cache()
    again = _splits(name, seed=1, label_column="label")
    for s in SPLITS:
        np.testing.assert_array_equal(again[s].indices, first[s].indices)
        np.testing.assert_array_equal(again[s].x, first[s].x)
    other = datasets.load(name, "train", seed=2, label_column="label")
    assert not np.array_equal(other.indices, first["train"].indices)


def test_csv_string_labels_become_sorted_class_ids(tmp_path):
    names = ["dog", "cat", "bird"]
    labels = [names[i % 3] for i in range(45)]
    path, _ = _csv_file(tmp_path, labels=labels, n=45)
    loaded = _splits(f"csv:{path}", label_column="label")
    for d in loaded.values():
        assert d.task == "multiclass" and d.num_classes == 3 and d.num_outputs == 3
        assert d.class_names == ("bird", "cat", "dog")
        assert d.y.dtype == np.int32
        assert [d.class_names[i] for i in d.y] == [labels[i] for i in d.indices]
    parts = {s: d.indices for s, d in loaded.items()}
    _check_stratified(parts, [sorted(names).index(v) for v in labels])

    two, _ = _csv_file(tmp_path, labels=["yes", "no"] * 20, name="two.csv")
    d = datasets.load(f"csv:{two}", label_column="label")
    assert d.task == "binary" and d.class_names == ("no", "yes")
    assert [d.class_names[i] for i in d.y] == [["yes", "no"][i % 2] for i in d.indices]


@pytest.mark.parametrize(
    ("labels", "task", "class_names"),
    [
        ([i % 2 for i in range(40)], "binary", ("0", "1")),
        ([i % 4 for i in range(40)], "multiclass", ("0", "1", "2", "3")),
        # Two integer classes other than {0, 1}: ids 0, 1, but multiclass.
        ([1 + i % 2 for i in range(40)], "multiclass", ("1", "2")),
        ([(-5, 3, 10)[i % 3] for i in range(40)], "multiclass", ("-5", "3", "10")),
        (list(range(60)), "regression", None),  # > 50 distinct integers
        ([f"{i % 2}.0" for i in range(40)], "regression", None),  # floats
    ],
)
def test_csv_task_auto_detection(tmp_path, labels, task, class_names):
    path, _ = _csv_file(tmp_path, labels=labels, n=len(labels))
    d = datasets.load(f"csv:{path}", "train", label_column="label")
    assert d.task == task and d.class_names == class_names
    if class_names is not None:
        assert d.num_classes == len(class_names)
        assert [d.class_names[i] for i in d.y] == [str(labels[i]) for i in d.indices]
    info = datasets.dataset_info(f"csv:{path}", label_column="label")
    assert info["task"] == task and info["class_names"] == class_names


def test_csv_explicit_task(tmp_path):
    path, _ = _csv_file(tmp_path)
    name = f"csv:{path}"
    d = datasets.load(name, label_column="label", task="multiclass")
    assert d.task == "multiclass" and d.num_classes == 2 and d.num_outputs == 2
    d = datasets.load(name, label_column="label", task="regression")
    assert d.task == "regression" and d.y.dtype == np.float32
    floats, _ = _csv_file(tmp_path, labels=["0.0", "1.0"] * 20, name="f.csv")
    d = datasets.load(f"csv:{floats}", label_column="label", task="binary")
    assert d.task == "binary" and d.class_names == ("0", "1")


def test_csv_feature_columns(tmp_path):
    path, raw = _csv_file(tmp_path)
    d = datasets.load(
        f"csv:{path}",
        "validation",
        label_column="label",
        feature_columns=["c", "a"],
        standardize=False,
    )
    assert d.feature_names == ("c", "a") and d.input_shape == (2,)
    np.testing.assert_allclose(d.x, raw[d.indices][:, [2, 0]], rtol=1e-6)


def test_csv_info_and_parsed_once(tmp_path, monkeypatch):
    path, _ = _csv_file(tmp_path, labels=["x", "y", "z", "x"] * 10)
    calls = []
    load_csv = _csv_files.load_csv  # annzoo.data.load_csv, as the source calls it
    monkeypatch.setattr(
        _csv_files, "load_csv", lambda *a, **k: calls.append(a) or load_csv(*a, **k)
    )
    name = f"csv:{path}"
    _splits(name, label_column="label")
    info = datasets.dataset_info(name, label_column="label")
    assert len(calls) == 1
    assert info["task"] == "multiclass" and info["num_classes"] == 3
    assert info["class_names"] == ("x", "y", "z")
    assert info["input_shape"] == (3,) and info["feature_names"] == ("a", "b", "c")
    assert info["num_samples"] == {"train": 28, "validation": 6, "test": 6}
    # Another label column is parsed again; an edited file too.
    datasets.load(name, label_column="a", feature_columns=["b"], task="regression")
    assert len(calls) == 2
    _write_csv(path, ["a", "b", "c", "label"], [[1, 2, 3, "x"], [4, 5, 6, "y"]] * 10)
    os.utime(path, ns=(1, 1))
    assert datasets.dataset_info(name, label_column="label")["num_classes"] == 2
    assert len(calls) == 3


def _csv_error(path, match, received=True, **options):
    with pytest.raises(AnnzooError, match=match) as error:
        datasets.load(f"csv:{path}", "train", **options)
    if received:
        assert "Received" in str(error.value)
    return str(error.value)


def test_csv_option_errors(tmp_path):
    path, _ = _csv_file(tmp_path)
    message = _csv_error(path, "`label_column` is required")
    assert "['a', 'b', 'c', 'label']" in message  # lists the columns
    message = _csv_error(path, "`label_column` 'target'", label_column="target")
    assert "['a', 'b', 'c', 'label']" in message
    _csv_error(path, "`label_column` must be", label_column=3)
    for bad in ("a", [], ["a", 1]):
        _csv_error(path, "`feature_columns`", label_column="label", feature_columns=bad)
    _csv_error(
        path, "`feature_columns` 'z'", label_column="label", feature_columns=["z"]
    )
    _csv_error(path, "`task`", label_column="label", task="clasify")
    _csv_error(path, "`standardize`", label_column="label", standardize="yes")
    _csv_error(path, "`data_dir`", label_column="label", data_dir="/tmp")
    _csv_error(
        tmp_path / "missing.csv", "missing.csv.*does not exist", label_column="y"
    )
    _csv_error(tmp_path, "must name an existing CSV file", label_column="y")


def test_csv_label_errors(tmp_path):
    three, _ = _csv_file(tmp_path, labels=[i % 3 for i in range(40)], name="3.csv")
    _csv_error(
        three, "task='binary' needs exactly two", label_column="label", task="binary"
    )
    words, _ = _csv_file(tmp_path, labels=["a", "b"] * 20, name="w.csv")
    _csv_error(words, "text labels such as", label_column="label", task="regression")
    halves, _ = _csv_file(tmp_path, labels=["0.5", "1"] * 20, name="h.csv")
    _csv_error(halves, "non-integer", label_column="label", task="multiclass")
    same, _ = _csv_file(tmp_path, labels=["7"] * 40, name="s.csv")
    _csv_error(same, "single label value", label_column="label")
    blank, _ = _csv_file(tmp_path, labels=["1"] * 39 + [""], name="b.csv")
    _csv_error(blank, "'label'.*empty label in row 40", False, label_column="label")
    nan, _ = _csv_file(tmp_path, labels=["1.5"] * 39 + ["nan"], name="n.csv")
    _csv_error(nan, "non-finite label 'nan'", False, label_column="label")
    bad = _write_csv(tmp_path / "x.csv", ["a", "label"], [["1", "0"], ["one", "1"]])
    _csv_error(bad, "Column 'a'.*non-numeric value 'one'", False, label_column="label")
    binary = tmp_path / "bin.csv"
    binary.write_bytes(b"\xff\xfe\x00\x81garbage")
    _csv_error(binary, "Could not read the CSV file", False, label_column="label")


def test_csv_large_integer_labels(tmp_path):
    labels = [str(10**12 + 7 * i) for i in range(40)]
    path, _ = _csv_file(tmp_path, labels=labels)
    d = datasets.load(f"csv:{path}", label_column="label")
    # 40 distinct integers (<= 50): classes, read exactly (no int32 overflow).
    assert d.task == "multiclass" and d.num_classes == 40
    assert list(d.class_names) == sorted(labels, key=int)
    assert [int(d.class_names[i]) for i in d.y] == [int(labels[i]) for i in d.indices]
    decimals = [f"{v}.0" for v in labels]
    path, _ = _csv_file(tmp_path, labels=decimals, name="decimals.csv")
    d = datasets.load(f"csv:{path}", label_column="label")
    assert d.task == "regression"


# -- recipes -----------------------------------------------------------------


def _train(tmp_path, model, dataset, options):
    recipe = Recipe(
        name="t",
        model=model,
        data={"dataset": dataset, "options": options, "batch_size": 8},
        fit={"epochs": 2},
    )
    result = train(recipe, output_dir=tmp_path / "runs", verbose=0)
    results = json.loads((result.run_dir / "results.json").read_text())
    assert results["epochs_run"] == 2
    saved = json.loads((result.run_dir / "recipe.json").read_text())
    assert saved["data"]["dataset"] == dataset and saved["data"]["options"] == options
    return results


def test_recipe_trains_on_an_image_folder(tmp_path, image_dir):
    results = _train(
        tmp_path,
        {"name": "cnn", "filters": [4]},
        f"images:{image_dir}",
        {"image_size": [8, 8], "color_mode": "grayscale"},
    )
    assert np.array(results["confusion_matrix"]).sum() == 3


def test_recipe_trains_on_a_csv_file(tmp_path):
    path, _ = _csv_file(tmp_path, labels=["cat", "dog", "owl", "dog"] * 10)
    results = _train(
        tmp_path, {"name": "mlp"}, f"csv:{path}", {"label_column": "label"}
    )
    assert np.array(results["confusion_matrix"]).shape == (3, 3)


# -- a fixed test file or folder, image-shaped CSVs (issue 27) --------------------


def _carved(parts, labels):
    """train + validation carved from the main source: validation is 15% of it,
    each class's count the floor or ceil of its share, and they cover it."""
    labels = np.asarray(labels)
    n = len(labels)
    size = math.floor(0.15 * n + 0.5)
    assert len(parts["validation"]) == size and len(parts["train"]) == n - size
    joined = sorted([*parts["train"], *parts["validation"]])
    assert joined == list(range(n))
    for split, want in (("validation", size), ("train", n - size)):
        counts = np.bincount(labels[parts[split]], minlength=labels.max() + 1)
        exact = np.bincount(labels) * want / n
        assert np.all(counts >= np.floor(exact)) and np.all(counts <= np.ceil(exact))


def test_csv_test_file_is_kept_and_validation_carved(tmp_path):
    labels = ["cat", "dog", "owl", "dog"] * 10
    path, raw = _csv_file(tmp_path, labels=labels)
    test_labels = ["owl", "cat", "owl", "dog", "cat", "owl", "dog"]
    test_raw, rows = _table(7, labels=test_labels, seed=9)
    # The test file's columns in another order: matched by name.
    test_path = _write_csv(
        tmp_path / "test.csv",
        ["label", "c", "a", "b"],
        [[r[3], r[2], r[0], r[1]] for r in rows],
    )
    options = {"label_column": "label", "test_file": str(test_path)}
    loaded = _splits(f"csv:{path}", seed=2, **options)
    test = loaded["test"]
    np.testing.assert_array_equal(test.indices, np.arange(7))
    assert [test.class_names[i] for i in test.y] == test_labels
    # Standardized with the main file's train-split statistics only.
    train_raw = raw[loaded["train"].indices]
    expected = (test_raw - train_raw.mean(axis=0)) / train_raw.std(axis=0)
    np.testing.assert_allclose(test.x, expected, rtol=1e-4, atol=1e-4)
    ids = np.searchsorted(["cat", "dog", "owl"], labels)
    _carved({s: loaded[s].indices for s in ("train", "validation")}, ids)
    for s in ("train", "validation"):
        np.testing.assert_array_equal(loaded[s].y, ids[loaded[s].indices])
    info = datasets.dataset_info(f"csv:{path}", **options)
    assert info["num_samples"] == {"train": 34, "validation": 6, "test": 7}


def test_csv_test_file_errors(tmp_path):
    path, _ = _csv_file(tmp_path, labels=[0, 1] * 20)
    _, rows = _table(4, labels=[0, 1, 2, 1], seed=3)
    unseen = _write_csv(tmp_path / "t.csv", ["a", "b", "c", "label"], rows)
    with pytest.raises(AnnzooError, match=r"t\.csv' must hold only labels of .*'2'"):
        datasets.load(
            f"csv:{path}", "test", label_column="label", test_file=str(unseen)
        )
    with pytest.raises(AnnzooError, match="`test_file` must be an existing CSV"):
        datasets.load(f"csv:{path}", label_column="label", test_file=str(tmp_path))
    short = _write_csv(tmp_path / "s.csv", ["a", "b", "label"], [[1, 2, 0], [3, 4, 1]])
    with pytest.raises(AnnzooError, match="'c'"):
        datasets.load(f"csv:{path}", label_column="label", test_file=str(short))


def test_csv_input_shape_reshapes_columns_in_order(tmp_path):
    rng = np.random.default_rng(4)
    pixels = rng.integers(0, 256, size=(30, 12))
    rows = [[i % 3, *p] for i, p in enumerate(pixels)]
    path = _write_csv(
        tmp_path / "px.csv", ["label", *[f"p{i}" for i in range(12)]], rows
    )
    options = {"label_column": "label", "standardize": False, "input_shape": [2, 3, 2]}
    d = datasets.load(f"csv:{path}", "train", **options)
    assert d.x.shape == (len(d), 2, 3, 2) and d.input_shape == (2, 3, 2)
    # Row by row, channels last: sample[r, c, k] is column (r * 3 + c) * 2 + k.
    for sample, index in zip(d.x, d.indices, strict=True):
        for r, c, k in np.ndindex(2, 3, 2):
            assert sample[r, c, k] == pixels[index, (r * 3 + c) * 2 + k]
    assert datasets.dataset_info(f"csv:{path}", **options)["input_shape"] == (2, 3, 2)
    with pytest.raises(AnnzooError, match=r"784 values\), but the file has 12 feature"):
        datasets.load(f"csv:{path}", label_column="label", input_shape=[28, 28, 1])
    with pytest.raises(AnnzooError, match="`input_shape`"):
        datasets.load(f"csv:{path}", label_column="label", input_shape=[0, 12])


def test_recipe_data_reads_csv_input_shape_and_test_file(tmp_path):
    """A recipe's data.options reach the source: a CNN gets image-shaped input."""
    from annzoo.training.inputs import prepare

    rng = np.random.default_rng(6)
    header = ["label", *[f"p{i}" for i in range(16)]]
    rows = [[i % 2, *rng.integers(0, 9, 16)] for i in range(30)]
    path = _write_csv(tmp_path / "tr.csv", header, rows)
    test = _write_csv(tmp_path / "te.csv", header, rows[:5])
    recipe = Recipe(
        name="t",
        model={"name": "cnn", "filters": [4]},
        data={
            "dataset": f"csv:{path}",
            "options": {
                "label_column": "label",
                "test_file": str(test),
                "input_shape": [4, 4, 1],
            },
        },
    )
    splits, model_args = prepare(recipe)
    assert tuple(model_args["input_shape"]) == splits["train"].x.shape[1:] == (4, 4, 1)
    # 15% of 30 is 4.5: halves round up.
    assert len(splits["test"]) == 5 and len(splits["validation"]) == 5


def test_images_test_dir_is_kept_with_the_main_class_ids(tmp_path, image_dir):
    # A test folder holding only the second class, written in another order.
    test_dir = tmp_path / "test_images"
    shades = [10, 40, 25]
    for i, shade in enumerate(shades):
        _png(test_dir / "dark" / f"t{i}.png", np.full((8, 8, 3), shade, np.uint8))
    options = {"image_size": [8, 8], "test_dir": str(test_dir)}
    loaded = _splits(f"images:{image_dir}", seed=1, **options)
    test = loaded["test"]
    assert test.class_names == ("bright", "dark") and test.y.tolist() == [1, 1, 1]
    np.testing.assert_allclose(test.x[:, 0, 0, 0] * 255, shades, atol=1e-4)
    np.testing.assert_array_equal(test.indices, np.arange(3))
    _carved(
        {s: loaded[s].indices for s in ("train", "validation")}, [0] * 10 + [1] * 10
    )
    with_other = tmp_path / "other"
    _png(with_other / "cats" / "0.png", np.zeros((8, 8, 3), np.uint8))
    with pytest.raises(
        AnnzooError, match=r"`test_dir` must hold only subfolders .*cats"
    ):
        datasets.load(
            f"images:{image_dir}", image_size=[8, 8], test_dir=str(with_other)
        )
    with pytest.raises(AnnzooError, match="`test_dir` must be an existing folder"):
        datasets.load(
            f"images:{image_dir}", image_size=[8, 8], test_dir=str(tmp_path / "x")
        )

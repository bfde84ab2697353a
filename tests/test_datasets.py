"""Tests of annzoo.datasets: the embedded scikit-learn datasets and their splits.

Expected values are recomputed here from scikit-learn's raw arrays and the
returned ``indices``, never from annzoo's own helpers.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from sklearn import datasets as sk

from annzoo import datasets
from annzoo.datasets import embedded
from annzoo.errors import AnnzooError, UnknownNameError

REPO = Path(__file__).resolve().parents[1]
SPLITS = ("train", "validation", "test")
# Sizes worked out by hand: 15% of n rounded to nearest for validation and
# test, the rest for train.
SIZES = {
    "digits": {"train": 1257, "validation": 270, "test": 270},  # n = 1797
    "breast_cancer": {"train": 399, "validation": 85, "test": 85},  # n = 569
    "diabetes": {"train": 310, "validation": 66, "test": 66},  # n = 442
}
NAMES = sorted(SIZES)


def _raw(name):
    if name == "digits":
        bunch = sk.load_digits()
        return bunch.images, bunch.target
    if name == "breast_cancer":
        bunch = sk.load_breast_cancer()
    else:
        bunch = sk.load_diabetes(scaled=False)
    return bunch.data, bunch.target


def _splits(name, seed=0):
    return {s: datasets.load(name, s, seed=seed) for s in SPLITS}


def _run_python(code: str) -> str:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(REPO), env.get("PYTHONPATH", "")) if p
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip().splitlines()[-1]


def test_list_datasets_is_sorted_and_complete():
    assert datasets.list_datasets() == [
        "breast_cancer",
        "dates",
        "diabetes",
        "digits",
        "fr_en",
        "kjv",
        "ner",
        "shapes_captions",
        "surnames",
    ]


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("split", SPLITS)
def test_shapes_and_dtypes(name, split):
    ds = datasets.load(name, split, seed=0)
    n = SIZES[name][split]
    feature_shape = {"digits": (8, 8, 1), "breast_cancer": (30,), "diabetes": (10,)}
    assert ds.x.shape == (n, *feature_shape[name])
    assert ds.x.dtype == np.float32
    assert ds.y.shape == (n,)
    assert ds.y.dtype == (np.float32 if name == "diabetes" else np.int32)
    assert ds.indices.shape == (n,)
    assert (ds.name, ds.split, ds.seed) == (name, split, 0)
    assert ds.input_shape == feature_shape[name]
    assert len(ds) == n
    assert np.isfinite(ds.x).all()


def test_digits_pixels_and_labels_match_sklearn():
    images, target = _raw("digits")
    for split, ds in _splits("digits", seed=3).items():
        np.testing.assert_array_equal(
            ds.x[..., 0], (images[ds.indices] / 16).astype(np.float32), err_msg=split
        )
        np.testing.assert_array_equal(ds.y, target[ds.indices])
        assert ds.x.min() >= 0.0 and ds.x.max() <= 1.0
    train = datasets.load("digits", seed=3)
    assert train.x.max() == 1.0  # 16/16 occurs: the scale is not off by a factor
    assert sorted(np.unique(train.y)) == list(range(10))
    assert train.task == "multiclass"
    assert train.num_classes == 10 and train.num_outputs == 10
    assert train.class_names == tuple(str(d) for d in range(10))
    assert train.feature_names is None


def test_breast_cancer_labels_and_metadata_match_sklearn():
    bunch = sk.load_breast_cancer()
    ds = datasets.load("breast_cancer", "validation", seed=2)
    np.testing.assert_array_equal(ds.y, bunch.target[ds.indices])
    assert set(np.unique(ds.y)) == {0, 1}
    assert ds.task == "binary"
    assert ds.num_classes == 2 and ds.num_outputs == 1
    assert ds.class_names == ("malignant", "benign") == tuple(bunch.target_names)
    assert ds.feature_names == tuple(bunch.feature_names)


def test_diabetes_target_is_raw_and_task_regression():
    bunch = sk.load_diabetes(scaled=False)
    ds = datasets.load("diabetes", "test", seed=4)
    np.testing.assert_array_equal(ds.y, bunch.target[ds.indices].astype(np.float32))
    assert ds.y.min() >= 25 and ds.y.max() <= 346  # disease progression, unscaled
    assert ds.task == "regression"
    assert ds.num_classes is None and ds.class_names is None
    assert ds.num_outputs == 1
    assert ds.feature_names == tuple(bunch.feature_names)


@pytest.mark.parametrize("name", ["breast_cancer", "diabetes"])
@pytest.mark.parametrize("seed", [0, 11])
def test_features_standardized_with_train_statistics_only(name, seed):
    data, _ = _raw(name)
    parts = _splits(name, seed)
    train_raw = data[parts["train"].indices]
    mean, std = train_raw.mean(axis=0), train_raw.std(axis=0)
    for split, ds in parts.items():
        expected = (data[ds.indices] - mean) / std
        np.testing.assert_allclose(ds.x, expected, rtol=1e-5, atol=1e-5, err_msg=split)
    train_x = parts["train"].x.astype(np.float64)
    np.testing.assert_allclose(train_x.mean(axis=0), 0.0, atol=1e-5)
    np.testing.assert_allclose(train_x.std(axis=0), 1.0, atol=1e-5)
    for split in ("validation", "test"):
        held_out = parts[split].x.astype(np.float64)
        # Standardized with its own statistics, every column mean would be ~0.
        assert np.abs(held_out.mean(axis=0)).max() > 0.05, split


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("seed", [0, 5])
def test_splits_partition_the_dataset(name, seed):
    total = len(_raw(name)[1])
    parts = _splits(name, seed)
    assert sum(len(ds) for ds in parts.values()) == total
    for split, ds in parts.items():
        assert len(ds) == SIZES[name][split]
        assert len(np.unique(ds.indices)) == len(ds.indices), split
    train, val, test = (set(parts[s].indices.tolist()) for s in SPLITS)
    assert not train & val and not train & test and not val & test
    assert train | val | test == set(range(total))


@pytest.mark.parametrize("name", NAMES)
def test_same_seed_gives_identical_arrays(name):
    for split in SPLITS:
        a = datasets.load(name, split, seed=7)
        b = datasets.load(name, split, seed=7)
        np.testing.assert_array_equal(a.x, b.x)
        np.testing.assert_array_equal(a.y, b.y)
        np.testing.assert_array_equal(a.indices, b.indices)


@pytest.mark.parametrize("name", NAMES)
def test_different_seeds_give_different_partitions(name):
    a = datasets.load(name, "test", seed=0)
    b = datasets.load(name, "test", seed=1)
    assert set(a.indices.tolist()) != set(b.indices.tolist())
    assert not np.array_equal(a.x, b.x)


@pytest.mark.slow
def test_same_seed_is_identical_in_a_fresh_process():
    code = (
        "import hashlib, numpy as np\n"
        "from annzoo import datasets\n"
        "h = hashlib.sha256()\n"
        "for name, split in [('digits', 'test'), ('breast_cancer', 'validation'),"
        " ('diabetes', 'train')]:\n"
        "    ds = datasets.load(name, split, seed=123)\n"
        "    for a in (ds.x, ds.y, ds.indices):\n"
        "        h.update(str((a.dtype, a.shape)).encode())\n"
        "        h.update(np.ascontiguousarray(a).tobytes())\n"
        "print(h.hexdigest())\n"
    )
    h = hashlib.sha256()
    for name, split in [
        ("digits", "test"),
        ("breast_cancer", "validation"),
        ("diabetes", "train"),
    ]:
        ds = datasets.load(name, split, seed=123)
        for a in (ds.x, ds.y, ds.indices):
            h.update(str((a.dtype, a.shape)).encode())
            h.update(np.ascontiguousarray(a).tobytes())
    assert _run_python(code) == h.hexdigest()


@pytest.mark.parametrize("name", ["digits", "breast_cancer"])
@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_splits_are_stratified_within_one_sample(name, seed):
    target = _raw(name)[1]
    classes, counts = np.unique(target, return_counts=True)
    for split, ds in _splits(name, seed).items():
        got = np.array([(ds.y == c).sum() for c in classes])
        expected = counts * len(ds) / len(target)
        assert np.all(np.abs(got - expected) < 1), (split, got, expected)


def test_rows_are_shuffled_not_grouped_by_class():
    for ds in _splits("digits", seed=0).values():
        # Grouped by class, the labels would change only 9 times.
        assert np.count_nonzero(np.diff(ds.y)) > len(ds) // 2


def test_stratified_split_helper_rounds_every_class_within_one():
    rng = np.random.default_rng(0)
    for num_samples in (20, 97, 1001):
        labels = rng.integers(0, 13, size=num_samples) ** 2  # uneven classes
        parts = datasets.split_indices(num_samples, seed=9, labels=labels)
        joined = np.concatenate(list(parts.values()))
        np.testing.assert_array_equal(np.sort(joined), np.arange(num_samples))
        classes, counts = np.unique(labels, return_counts=True)
        for part in parts.values():
            got = np.array([(labels[part] == c).sum() for c in classes])
            assert np.all(np.abs(got - counts * len(part) / num_samples) < 1)


def test_unpacks_as_x_then_y():
    ds = datasets.load("digits", "validation", seed=0)
    x, y = ds
    assert x is ds.x and y is ds.y
    x_train, y_train = datasets.load("digits")
    assert x_train.shape == (1257, 8, 8, 1) and y_train.shape == (1257,)


def test_returned_arrays_are_fresh_copies():
    first = datasets.load("breast_cancer", "train", seed=0)
    x_before, y_before = first.x.copy(), first.y.copy()
    first.x[:] = 99.0
    first.y[:] = 5
    first.indices[:] = 0
    again = datasets.load("breast_cancer", "train", seed=0)
    np.testing.assert_array_equal(again.x, x_before)
    np.testing.assert_array_equal(again.y, y_before)
    assert len(set(again.indices.tolist())) == len(again)
    digits = datasets.load("digits", "test")
    digits.x[:] = -1.0
    assert datasets.load("digits", "test").x.min() == 0.0


@pytest.mark.parametrize("name", NAMES)
def test_dataset_info_matches_loaded_data(name):
    info = datasets.dataset_info(name)
    parts = _splits(name, seed=0)
    train = parts["train"]
    assert info["name"] == name
    assert info["task"] == train.task
    assert info["num_classes"] == train.num_classes
    assert tuple(info["input_shape"]) == train.input_shape
    assert info["class_names"] == train.class_names
    assert info["num_samples"] == {s: len(ds) for s, ds in parts.items()}
    assert info["num_samples"] == SIZES[name]
    assert "sklearn" in info["source"] and info["description"]
    info["num_samples"]["train"] = 0  # callers get a copy
    assert datasets.dataset_info(name)["num_samples"]["train"] == SIZES[name]["train"]


def test_unknown_name_lists_known_names_and_suggests_one():
    with pytest.raises(UnknownNameError) as info:
        datasets.load("digit")
    message = str(info.value)
    assert message.startswith("`name` must be one of")
    for known in NAMES:
        assert repr(known) in message
    assert "Received: name='digit'" in message
    assert "Did you mean 'digits'?" in message
    assert isinstance(info.value, AnnzooError) and isinstance(info.value, ValueError)
    with pytest.raises(UnknownNameError, match="`name`"):
        datasets.dataset_info("mnist")
    with pytest.raises(UnknownNameError, match="`name`"):
        datasets.load(None)


def test_bad_split_names_split():
    with pytest.raises(UnknownNameError) as info:
        datasets.load("digits", "tst")
    assert str(info.value).startswith(
        "`split` must be one of ['test', 'train', 'validation']. Received: split='tst'."
    )
    with pytest.raises(UnknownNameError, match="`split`"):
        datasets.load("diabetes", split="val")


@pytest.mark.parametrize("seed", [-1, 1.5, "0", None, True])
def test_bad_seed_names_seed(seed):
    with pytest.raises(AnnzooError, match=r"`seed` must be a non-negative integer"):
        datasets.load("breast_cancer", seed=seed)


def test_numpy_integer_seed_is_accepted():
    a = datasets.load("diabetes", "test", seed=np.int64(3))
    b = datasets.load("diabetes", "test", seed=3)
    assert a.seed == 3 and isinstance(a.seed, int)
    np.testing.assert_array_equal(a.indices, b.indices)


def test_bad_arguments_fail_before_loading_anything():
    embedded._sklearn_raw.cache_clear()
    for kwargs in ({"split": "tst"}, {"seed": -3}, {"seed": 2.0}):
        with pytest.raises(AnnzooError):
            datasets.load("digits", **kwargs)
    assert embedded._sklearn_raw.cache_info().currsize == 0
    datasets.load("digits")
    assert embedded._sklearn_raw.cache_info().currsize == 1


def test_registry_accepts_new_names_and_prefixes(monkeypatch):
    from annzoo.datasets import _base

    monkeypatch.setattr(_base, "_REGISTRY", dict(_base._REGISTRY))
    monkeypatch.setattr(_base, "_PREFIXES", dict(_base._PREFIXES))
    calls = []

    def loader(name, split, seed):
        calls.append((name, split, seed))
        x = np.zeros((4, 2), np.float32)
        return datasets.ArrayDataset(
            x=x,
            y=np.zeros(4, np.float32),
            name=name,
            split=split,
            task="regression",
            num_classes=None,
            class_names=None,
            feature_names=None,
            seed=seed,
            indices=np.arange(4),
        )

    datasets.register_dataset("toy", loader, info={"task": "regression"})
    datasets.register_dataset_prefix(
        "tfds:", loader, info=lambda n: {"task": "regression", "id": n[5:]}
    )
    assert "toy" in datasets.list_datasets()
    assert datasets.load("toy", "test", seed=2).split == "test"
    assert datasets.load("tfds:mnist").name == "tfds:mnist"
    assert datasets.dataset_info("tfds:mnist")["id"] == "mnist"
    assert calls == [("toy", "test", 2), ("tfds:mnist", "train", 0)]
    with pytest.raises(AnnzooError, match="already registered"):
        datasets.register_dataset("toy", loader, info={})
    datasets.register_dataset("toy", loader, info={}, overwrite=True)
    with pytest.raises(UnknownNameError, match="'tfds:NAME'"):
        datasets.load("nope")
    with pytest.raises(UnknownNameError, match="`split`"):
        datasets.load("tfds:mnist", "tst")
    assert len(calls) == 2


def test_importing_datasets_does_not_import_heavy_libraries():
    # Stub the parent package so that only annzoo.datasets (and what it
    # imports) runs, whatever annzoo/__init__.py imports for its own API.
    code = (
        "import sys, types\n"
        "pkg = types.ModuleType('annzoo')\n"
        f"pkg.__path__ = [{str(REPO / 'annzoo')!r}]\n"
        "sys.modules['annzoo'] = pkg\n"
        "import annzoo.datasets\n"
        "assert annzoo.datasets.list_datasets()\n"
        "print(sorted(m for m in ('tensorflow', 'sklearn', 'keras', 'jax', 'torch')"
        " if m in sys.modules))\n"
    )
    assert _run_python(code) == "[]"


def test_classes_and_per_class_select_a_few_shot_subset():
    from sklearn.datasets import load_digits

    original = load_digits().target
    classes = [5, 6, 7, 8, 9]
    for split in ("train", "validation"):
        part = datasets.load("digits", split, seed=3, classes=classes, per_class=10)
        assert part.num_classes == 5 and part.class_names == ("5", "6", "7", "8", "9")
        # Relabelled 0..4 in the order given: the source label is classes[y].
        np.testing.assert_array_equal(original[part.indices], np.array(classes)[part.y])
        assert np.bincount(part.y, minlength=5).tolist() == [10] * 5
    test = datasets.load("digits", "test", seed=3, classes=classes, per_class=10)
    whole = datasets.load("digits", "test", seed=3)
    # The test split stays whole: every test digit of those classes.
    assert sorted(test.indices) == sorted(whole.indices[np.isin(whole.y, classes)])
    other = datasets.load("digits", "train", seed=4, classes=classes, per_class=10)
    assert set(other.indices) != set(
        datasets.load("digits", "train", seed=3, classes=classes, per_class=10).indices
    )


@pytest.mark.parametrize(
    "name, options, match",
    [
        ("diabetes", dict(classes=[0, 1]), "classes"),
        ("digits", dict(classes=[3]), "classes"),
        ("digits", dict(classes=[1, 1]), "classes"),
        ("digits", dict(classes=[0, 10]), "classes"),
        ("digits", dict(classes="0,1"), "classes"),
        ("digits", dict(per_class=0), "per_class"),
    ],
)
def test_bad_subset_options(name, options, match):
    with pytest.raises(AnnzooError, match=match):
        datasets.load(name, "train", **options)

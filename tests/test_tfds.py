"""Tests of the TensorFlow Datasets bridge, ``datasets.load("tfds:NAME", ...)``.

Nothing is downloaded: data comes from ``tfds.testing.mock_data`` (random
examples, identical for every split, split names unknown, so the train/test
convention applies), and the error paths use empty temporary directories. A
fixture makes any socket connection fail the test. Expected arrays are read
straight from TFDS under the same mock, never from annzoo's loader.
"""

from __future__ import annotations

import socket

import numpy as np
import pytest

from annzoo import datasets
from annzoo.errors import AnnzooError, UnknownNameError

tfds = pytest.importorskip("tensorflow_datasets")

NUM_EXAMPLES = 60  # per TFDS split under mock_data
# 10% of 60 held out for validation, by hand; the mock's "test" is all 60.
SIZES = {"train": 54, "validation": 6, "test": 60}


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError(f"network access attempted: {args!r}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    from tensorflow_datasets.core.utils import gcs_utils

    monkeypatch.setattr(gcs_utils, "_is_gcs_disabled", True)


@pytest.fixture
def mock_tfds():
    with tfds.testing.mock_data(num_examples=NUM_EXAMPLES):
        yield


def _raw(name, split="train"):
    """TFDS's own (mocked) arrays: ``(inputs, labels)`` in TFDS order."""
    builder = tfds.builder(name)
    x_key, y_key = builder.info.supervised_keys
    xs, ys = [], []
    for example in tfds.as_numpy(builder.as_dataset(split=split, shuffle_files=False)):
        xs.append(example[x_key])
        ys.append(example[y_key])
    return np.stack(xs), np.array(ys)


def _splits(name, seed=0, **options):
    return {s: datasets.load(name, s, seed=seed, **options) for s in SIZES}


@pytest.mark.parametrize(
    "name, shape", [("mnist", (28, 28, 1)), ("cifar10", (32, 32, 3))]
)
def test_image_dataset_arrays_and_splits(mock_tfds, name, shape):
    raw_x, raw_y = _raw(name)
    parts = _splits(f"tfds:{name}", seed=0, data_dir="/nonexistent", download=True)
    for split, ds in parts.items():
        n = SIZES[split]
        assert ds.x.shape == (n, *shape) and ds.x.dtype == np.float32, split
        assert ds.y.shape == (n,) and ds.y.dtype == np.int32
        assert ds.x.min() >= 0.0 and ds.x.max() <= 1.0
        assert ds.x.max() > 0.5  # scaled once by 255, not twice
        # The mock yields the same examples for every split.
        np.testing.assert_array_equal(ds.x, raw_x[ds.indices] / np.float32(255))
        np.testing.assert_array_equal(ds.y, raw_y[ds.indices])
        assert (ds.name, ds.split, ds.task) == (f"tfds:{name}", split, "multiclass")
        assert ds.num_classes == 10 and len(ds.class_names) == 10
        assert ds.input_shape == shape and ds.num_outputs == 10
    train, val = set(parts["train"].indices), set(parts["validation"].indices)
    assert not train & val
    assert train | val == set(range(NUM_EXAMPLES))
    np.testing.assert_array_equal(parts["test"].indices, np.arange(NUM_EXAMPLES))


def test_carved_validation_is_stratified_seeded_and_disjoint():
    with tfds.testing.mock_data(num_examples=200):
        _, labels = _raw("mnist")
        classes, counts = np.unique(labels, return_counts=True)
        drawn = {}
        for seed in (0, 1, 2):
            train = datasets.load("tfds:mnist", "train", seed=seed)
            val = datasets.load("tfds:mnist", "validation", seed=seed)
            assert (len(train), len(val)) == (180, 20)
            assert not set(train.indices) & set(val.indices)
            for ds in (train, val):
                got = np.array([(ds.y == c).sum() for c in classes])
                assert np.all(np.abs(got - counts * len(ds) / 200) < 1), (seed, got)
            drawn[seed] = val.indices
        again = datasets.load("tfds:mnist", "validation", seed=1)
    np.testing.assert_array_equal(again.indices, drawn[1])
    assert len({tuple(v) for v in drawn.values()}) == 3  # seeds draw differently


def test_imdb_reviews_is_text_and_binary(mock_tfds):
    raw_text, raw_y = _raw("imdb_reviews")
    parts = _splits("tfds:imdb_reviews", seed=3)
    for split, ds in parts.items():
        assert ds.x.shape == (SIZES[split],) and ds.x.dtype == object
        assert all(type(t) is str for t in ds.x)
        assert ds.x.tolist() == [t.decode() for t in raw_text[ds.indices]]
        assert ds.y.dtype == np.int32 and set(ds.y.tolist()) <= {0, 1}
        np.testing.assert_array_equal(ds.y, raw_y[ds.indices])
        assert ds.task == "binary" and ds.num_classes == 2 and ds.num_outputs == 1
        assert ds.class_names == ("neg", "pos") and ds.input_shape == ()


def test_dataset_info_reads_metadata_without_downloading(tmp_path):
    info = datasets.dataset_info("tfds:mnist", data_dir=tmp_path)
    assert info["name"] == "tfds:mnist"
    assert info["task"] == "multiclass" and info["num_classes"] == 10
    assert tuple(info["input_shape"]) == (28, 28, 1)
    assert info["splits"] == ["train", "validation", "test"]
    assert info["num_samples"] == {"train": None, "validation": None, "test": None}
    assert "download=True" in info["description"] and "MNIST" in info["description"]
    assert info["data_dir"] == str(tmp_path) and info["prepared"] is False
    assert "mnist" in info["source"]
    assert list(tmp_path.iterdir()) == []  # nothing fetched or written


def test_missing_data_without_download_says_where_and_how(tmp_path):
    with pytest.raises(AnnzooError) as info:
        datasets.load("tfds:mnist", "test", data_dir=tmp_path, download=False)
    message = str(info.value)
    assert "'mnist'" in message
    assert str(tmp_path) in message
    assert "download=True" in message
    assert f"tfds build mnist --data_dir {tmp_path}" in message
    # A sentence, not a TFDS traceback: no chained AssertionError.
    assert info.value.__cause__ is None and info.value.__suppress_context__
    assert "dataset_builder.download_and_prepare" not in message
    assert list(tmp_path.iterdir()) == []


def test_missing_data_in_default_directory(tmp_path, monkeypatch):
    from tensorflow_datasets.core import constants

    monkeypatch.setattr(constants, "DATA_DIR", str(tmp_path))
    with pytest.raises(AnnzooError) as info:
        datasets.load("tfds:fashion_mnist", "validation", download=False)
    message = str(info.value)
    assert "'fashion_mnist'" in message and str(tmp_path) in message
    assert "default data directory" in message
    assert "tfds build fashion_mnist" in message


def test_unknown_tfds_name_is_an_unknown_name_error():
    with pytest.raises(UnknownNameError) as info:
        datasets.load("tfds:mnistt", download=False)
    message = str(info.value)
    assert "'mnistt'" in message and "Received: name='tfds:mnistt'" in message
    assert "Did you mean 'tfds:mnist'?" in message
    with pytest.raises(UnknownNameError, match="'not_a_dataset'"):
        datasets.dataset_info("tfds:not_a_dataset")


def test_options_pass_through_and_unknown_options_are_rejected(tmp_path):
    with pytest.raises(AnnzooError) as info:
        datasets.load("diabetes", data_dir=tmp_path)
    assert "`data_dir`" in str(info.value) and "accepts no options" in str(info.value)
    with pytest.raises(AnnzooError, match="does not accept the option `shuffle`"):
        datasets.load("tfds:mnist", shuffle=True)
    with pytest.raises(AnnzooError, match="`download`.*Received: download='no'"):
        datasets.load("tfds:mnist", data_dir=tmp_path, download="no")
    with pytest.raises(AnnzooError, match="`data_dir`.*Received: data_dir=3"):
        datasets.load("tfds:mnist", data_dir=3)
    with pytest.raises(AnnzooError, match="`data_dir`"):
        datasets.dataset_info("diabetes", data_dir=tmp_path)


def test_a_registered_tfds_prefix_replaces_the_builtin_bridge(monkeypatch):
    from annzoo.datasets import _base

    monkeypatch.setattr(_base, "_PREFIXES", dict(_base._PREFIXES))
    calls = []

    def loader(name, split, seed, **options):
        calls.append((name, split, seed, options))
        return "stub"

    datasets.register_dataset_prefix("tfds:", loader, info={}, options=("data_dir",))
    assert datasets.load("tfds:mnist", "test", data_dir="d") == "stub"
    assert calls == [("tfds:mnist", "test", 0, {"data_dir": "d"})]
    with pytest.raises(AnnzooError, match="already registered"):
        datasets.register_dataset_prefix("tfds:", loader, info={})

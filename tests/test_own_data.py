"""Tests of your own data: `read_idx`, ``"npz:PATH"``, `from_arrays`,
`register_arrays`, and the MNIST-from-IDX walkthrough of docs/your-own-data.md.

IDX files are written here by a writer of their own (``struct``, big-endian,
from the format's description), never by annzoo. Expected splits are derived
here: a kept split must equal the given arrays; a carved one must have, per
class, the floor or the ceiling of its exact 15% share, counted here.
"""

from __future__ import annotations

import gzip
import json
import re
import shlex
import struct
from pathlib import Path

import numpy as np
import pytest

from annzoo import datasets
from annzoo.datasets import _base, files
from annzoo.errors import AnnzooError

REPO = Path(__file__).resolve().parents[1]
SPLITS = ("train", "validation", "test")
# IDX element type codes (LeCun's MNIST page) and the big-endian dtypes they name.
IDX_CODES = {
    0x08: ">u1",
    0x09: ">i1",
    0x0B: ">i2",
    0x0C: ">i4",
    0x0D: ">f4",
    0x0E: ">f8",
}


@pytest.fixture(autouse=True)
def _fresh():
    """Parsed files and registered names do not leak between tests."""
    before = set(_base._REGISTRY)
    files.clear_cache()
    yield
    files.clear_cache()
    for name in set(_base._REGISTRY) - before:
        del _base._REGISTRY[name]


def write_idx(path: Path, array: np.ndarray, code: int, *, compress: bool) -> Path:
    """An IDX file: 0, 0, type code, ndim; big-endian uint32 sizes; big-endian data."""
    header = struct.pack(">BBBB", 0, 0, code, array.ndim)
    header += struct.pack(f">{array.ndim}I", *array.shape)
    values = array.reshape(-1).tolist()
    fmt = {0x08: "B", 0x09: "b", 0x0B: "h", 0x0C: "i", 0x0D: "f", 0x0E: "d"}[code]
    data = header + struct.pack(f">{len(values)}{fmt}", *values)
    path.write_bytes(gzip.compress(data) if compress else data)
    return path


def per_class_ok(part_labels, all_labels, size) -> bool:
    """Each class's count in a carved part is floor or ceil of count * size / n."""
    n = len(all_labels)
    for c in np.unique(all_labels):
        exact = np.sum(all_labels == c) * size / n
        got = np.sum(part_labels == c)
        if got not in (np.floor(exact), np.ceil(exact)):
            return False
    return True


# -- read_idx -------------------------------------------------------------------


def test_read_idx_hand_written_bytes(tmp_path):
    # Written out byte by byte: uint8 2x3, and int16 2 values 258, -2.
    u8 = b"\x00\x00\x08\x02" + b"\x00\x00\x00\x02\x00\x00\x00\x03" + bytes(range(6))
    (tmp_path / "u8").write_bytes(u8)
    i16 = b"\x00\x00\x0b\x01\x00\x00\x00\x02" + b"\x01\x02\xff\xfe"
    (tmp_path / "i16.gz").write_bytes(gzip.compress(i16))
    a = datasets.read_idx(tmp_path / "u8")
    assert a.dtype == np.uint8 and a.tolist() == [[0, 1, 2], [3, 4, 5]]
    b = datasets.read_idx(str(tmp_path / "i16.gz"))
    assert b.dtype == np.int16 and b.tolist() == [258, -2]
    assert b.dtype.isnative


@pytest.mark.parametrize("code", sorted(IDX_CODES))
@pytest.mark.parametrize("compress", [False, True])
def test_read_idx_every_type_gzip_and_raw(tmp_path, code, compress):
    rng = np.random.default_rng(code)
    kind = np.dtype(IDX_CODES[code]).kind
    if kind == "f":
        array = rng.normal(size=(3, 4, 2)).astype(IDX_CODES[code])
    else:
        info = np.iinfo(np.dtype(IDX_CODES[code]))
        array = rng.integers(info.min, info.max, size=(3, 4, 2), endpoint=True)
    path = write_idx(tmp_path / "a.idx", array, code, compress=compress)
    got = datasets.read_idx(path)
    assert got.shape == (3, 4, 2)
    assert got.dtype == np.dtype(IDX_CODES[code]).newbyteorder("=")
    np.testing.assert_array_equal(got, array.astype(got.dtype))


def _idx_bytes():
    return b"\x00\x00\x08\x02\x00\x00\x00\x02\x00\x00\x00\x03" + bytes(range(6))


@pytest.mark.parametrize(
    "data, message",
    [
        (_idx_bytes()[:-1], r"must hold 6 bytes of data .* Received: 5 bytes"),
        (_idx_bytes() + b"\x00", r"must hold 6 bytes .* Received: 7 bytes"),
        (b"PK\x03\x04" + _idx_bytes(), r"must start with the IDX magic number"),
        (b"\x00\x00\x07\x01\x00\x00\x00\x01\x00", r"element type .* Received: 0x07"),
        (b"\x00\x00\x08\x02\x00\x00\x00\x02", r"at least one dimension"),
        (gzip.compress(_idx_bytes())[:-12], r"complete gzip file"),
        (b"", r"magic number"),
    ],
    ids=["truncated", "trailing", "magic", "type", "header", "gzip", "empty"],
)
def test_read_idx_errors_name_the_file(tmp_path, data, message):
    path = tmp_path / "train-images-idx3-ubyte.gz"
    path.write_bytes(data)
    with pytest.raises(AnnzooError, match=message) as error:
        datasets.read_idx(path)
    assert str(path) in str(error.value)


def test_read_idx_missing_file(tmp_path):
    with pytest.raises(AnnzooError, match="does not exist"):
        datasets.read_idx(tmp_path / "nope.gz")


# -- npz: and from_arrays: splits -------------------------------------------------


def _arrays(n=120, classes=4, seed=0, shape=(3, 3, 1)):
    rng = np.random.default_rng(seed)
    x = rng.random((n, *shape))
    # Unequal classes, so that stratification has something to round.
    y = rng.choice(
        classes, size=n, p=np.linspace(1, 2, classes) / np.linspace(1, 2, classes).sum()
    )
    return x, y.astype(np.uint8)


def _load_all(name, seed=0, **options):
    return {s: datasets.load(name, s, seed=seed, **options) for s in SPLITS}


def test_npz_kept_test_split_and_carved_validation(tmp_path):
    x, y = _arrays()
    x_test, y_test = _arrays(17, seed=1)
    np.savez(tmp_path / "d.npz", x_train=x, y_train=y, x_test=x_test, y_test=y_test)
    got = _load_all(f"npz:{tmp_path / 'd.npz'}", seed=3)
    # The test split is exactly the given arrays, in their order.
    np.testing.assert_array_equal(got["test"].x, x_test.astype(np.float32))
    np.testing.assert_array_equal(got["test"].y, y_test)
    np.testing.assert_array_equal(got["test"].indices, np.arange(17))
    # Validation is 15% of x_train, carved per class; train is the rest.
    val, train = got["validation"], got["train"]
    assert len(val) == round(0.15 * 120) == 18 and len(train) == 102
    assert per_class_ok(val.y, y, 18) and per_class_ok(train.y, y, 102)
    assert sorted([*val.indices, *train.indices]) == list(range(120))
    for split in (val, train):
        np.testing.assert_array_equal(split.x, x[split.indices].astype(np.float32))
        np.testing.assert_array_equal(split.y, y[split.indices])
    assert train.num_classes == 4 and train.task == "multiclass"
    # Seeded: the same seed the same rows, another seed other rows.
    again = datasets.load(f"npz:{tmp_path / 'd.npz'}", "validation", seed=3)
    other = datasets.load(f"npz:{tmp_path / 'd.npz'}", "validation", seed=4)
    np.testing.assert_array_equal(again.indices, val.indices)
    assert set(other.indices) != set(val.indices)


def test_npz_train_only_is_split_70_15_15_and_all_given_are_kept(tmp_path):
    x, y = _arrays(101)
    np.savez(tmp_path / "a.npz", x_train=x, y_train=y)
    got = _load_all(f"npz:{tmp_path / 'a.npz'}")
    held = 15  # 15% of 101 = 15.15, to the nearest sample
    assert [len(got[s]) for s in SPLITS] == [101 - 2 * held, held, held]
    for s in SPLITS:
        assert per_class_ok(got[s].y, y, len(got[s]))
    assert sorted(np.concatenate([got[s].indices for s in SPLITS])) == list(range(101))
    # With all three given, every split is kept in its order, train included.
    xv, yv = _arrays(9, seed=2)
    xt, yt = _arrays(8, seed=3)
    np.savez(
        tmp_path / "b.npz",
        x_train=x,
        y_train=y,
        x_val=xv,
        y_val=yv,
        x_test=xt,
        y_test=yt,
    )
    kept = _load_all(f"npz:{tmp_path / 'b.npz'}")
    for s, (xs, ys) in zip(SPLITS, [(x, y), (xv, yv), (xt, yt)], strict=True):
        np.testing.assert_array_equal(kept[s].x, xs.astype(np.float32))
        np.testing.assert_array_equal(kept[s].y, ys)
    info = datasets.dataset_info(f"npz:{tmp_path / 'b.npz'}")
    assert info["num_samples"] == {"train": 101, "validation": 9, "test": 8}
    assert info["input_shape"] == (3, 3, 1)


def test_npz_given_validation_carves_test_and_class_names(tmp_path):
    x, y = _arrays(60, classes=2)
    xv, yv = _arrays(10, classes=2, seed=5)
    names = np.array(["cat", "dog"])
    np.savez_compressed(
        tmp_path / "c.npz", x_train=x, y_train=y, x_val=xv, y_val=yv, class_names=names
    )
    got = _load_all(f"npz:{tmp_path / 'c.npz'}")
    np.testing.assert_array_equal(got["validation"].y, yv)
    assert len(got["test"]) == 9 and per_class_ok(got["test"].y, y, 9)
    assert got["train"].class_names == ("cat", "dog")
    assert got["train"].task == "binary"


def test_from_arrays_labels_and_tasks():
    x, y = _arrays(40, classes=3)
    # String labels: sorted distinct values are the class ids.
    words = np.array(["owl", "cat", "dog"])[y]
    splits = datasets.from_arrays(x, words, name="animals")
    train = splits["train"]
    assert train.class_names == ("cat", "dog", "owl") and train.name == "animals"
    expected = np.searchsorted(["cat", "dog", "owl"], words[train.indices])
    np.testing.assert_array_equal(train.y, expected)
    # Labels 5..9 of a digits subset keep their order; class_names are their text.
    digits = datasets.from_arrays(x, (y + 5).astype(np.int64))
    assert digits["test"].class_names == ("5", "6", "7")
    np.testing.assert_array_equal(digits["test"].y, y[digits["test"].indices])
    # Float targets are regression, unstratified, float32.
    targets = np.linspace(0, 1, 40)
    reg = datasets.from_arrays(x, targets, x_test=x[:5], y_test=targets[:5])
    assert reg["train"].task == "regression" and reg["train"].y.dtype == np.float32
    assert len(reg["validation"]) == 6 and reg["test"].y.tolist() == pytest.approx(
        targets[:5].tolist()
    )
    # Raw text features: a 1-D array of strings, kept as Python strings.
    texts = np.array([f"sample {i}" for i in range(40)])
    text = datasets.from_arrays(texts, y)["validation"]
    assert text.x.dtype == object and text.x.tolist() == texts[text.indices].tolist()
    # class_names name ids 0..K-1; ids are kept even when one is absent.
    named = datasets.from_arrays(x, np.minimum(y, 1), class_names=["a", "b", "c"])
    assert named["train"].num_classes == 3 and named["train"].task == "multiclass"


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (
            dict(y_train=np.zeros(39)),
            r"`y_train` must be a 1-D array of one label per sample of x_train \(40",
        ),
        (
            dict(x_test=np.zeros((4, 3, 3, 1))),
            r"`y_test` must be given together with `x_test`",
        ),
        (
            dict(x_val=np.zeros((4, 2, 2, 1)), y_val=np.zeros(4, int)),
            r"same sample shape",
        ),
        (
            dict(x_train=np.zeros(40)),
            r"`x_train` must have shape \(num_samples, \*input_shape\)",
        ),
        (dict(x_train=np.full((40, 2), np.nan)), r"`x_train` must hold finite numbers"),
        (dict(y_train=np.zeros(40, int)), r"at least two classes"),
        (dict(y_train=np.arange(40) % 3, task="binary"), r"exactly two classes"),
        (
            dict(y_train=np.arange(40) % 3, class_names=["a", "b"]),
            r"class ids in \[0, 2\)",
        ),
        (
            dict(y_train=np.arange(40) / 7, task="multiclass"),
            r"whole-number class labels",
        ),
        (dict(task="ordinal"), r"`task`"),
    ],
)
def test_from_arrays_errors_name_the_argument(kwargs, message):
    x, y = _arrays(40)
    arguments = dict(x_train=x, y_train=y)
    arguments.update(kwargs)
    with pytest.raises(AnnzooError, match=message):
        datasets.from_arrays(**arguments)


def _npz_bytes(tmp_path, **arrays) -> Path:
    path = tmp_path / "bad.npz"
    np.savez(path, **arrays)
    return path


def test_npz_errors_name_the_file(tmp_path):
    x, y = _arrays(20)

    def error(path) -> str:
        files.clear_cache()
        with pytest.raises(AnnzooError) as caught:
            datasets.load(f"npz:{path}", "train")
        message = str(caught.value)
        assert str(path) in message, message
        return message

    assert "no ['y_train']" in error(_npz_bytes(tmp_path, x_train=x))
    assert "unexpected arrays ['x_valid', 'y_valid']" in error(
        _npz_bytes(tmp_path, x_train=x, y_train=y, x_valid=x, y_valid=y)
    )
    assert re.search(
        r"Array 'y_train' of .* of x_train \(20 samples\)\. Received: shape \(19,\)",
        error(_npz_bytes(tmp_path, x_train=x, y_train=y[:-1])),
    )
    assert "object array" in error(
        _npz_bytes(tmp_path, x_train=x, y_train=np.array([None] * 20, dtype=object))
    )
    assert "must be given together" in error(
        _npz_bytes(tmp_path, x_train=x, y_train=y, x_test=x)
    )
    good = _npz_bytes(tmp_path, x_train=x, y_train=y)
    raw = good.read_bytes()
    for cut in (len(raw) // 2, len(raw) - 10, 3):
        truncated = tmp_path / f"cut{cut}.npz"
        truncated.write_bytes(raw[:cut])
        assert "could not be opened" in error(truncated)
    np.save(tmp_path / "single.npy", x)
    single = tmp_path / "single.npz"
    (tmp_path / "single.npy").rename(single)
    assert "single .npy array" in error(single)
    assert "does not exist" in error(tmp_path / "missing.npz")


def test_npz_and_arrays_need_no_tensorflow(tmp_path):
    """The new modules keep `annzoo.datasets` free of TensorFlow and Keras."""
    import subprocess
    import sys

    x, y = _arrays(20)
    np.savez(tmp_path / "d.npz", x_train=x, y_train=y)
    write_idx(tmp_path / "l.gz", y, 0x08, compress=True)
    code = (
        "import sys, types\n"
        "sys.modules['tensorflow'] = None\nsys.modules['keras'] = None\n"
        "pkg = types.ModuleType('annzoo')\n"
        f"pkg.__path__ = [{str(REPO / 'annzoo')!r}]\n"
        "sys.modules['annzoo'] = pkg\n"
        "from annzoo import datasets\n"
        f"print(len(datasets.load({f'npz:{tmp_path}/d.npz'!r}, 'test')),"
        f" datasets.read_idx({str(tmp_path / 'l.gz')!r}).shape)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["3", "(20,)"]


# -- the walkthrough -------------------------------------------------------------


def _mnist_like(per_class: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's 8x8 digits upscaled to MNIST's 28x28 uint8 (3x, padded by 2)."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    rng = np.random.default_rng(seed)
    rows = np.concatenate(
        [
            rng.choice(np.flatnonzero(digits.target == c), per_class, replace=False)
            for c in range(10)
        ]
    )
    rows = rng.permutation(rows)
    images = np.kron(digits.images[rows], np.ones((3, 3)))  # (N, 24, 24), 0..16
    images = np.pad(images, ((0, 0), (2, 2), (2, 2)))
    return np.round(images * 255 / 16).astype(np.uint8), digits.target[rows].astype(
        np.uint8
    )


def _code_blocks(markdown: str, language: str) -> list[str]:
    return re.findall(rf"^```{language}\n(.*?)^```", markdown, flags=re.S | re.M)


def test_walkthrough_runs_as_written(tmp_path, monkeypatch):
    """docs/your-own-data.md's walkthrough on files in MNIST's exact format: its
    code blocks run as written, but for one epoch instead of the page's 15."""
    page = (REPO / "docs" / "your-own-data.md").read_text()
    walkthrough = page[page.index("## Walkthrough") :]
    python = _code_blocks(walkthrough, "python")
    commands = [
        line
        for block in _code_blocks(walkthrough, "bash")
        for line in block.splitlines()
        if line.startswith("annzoo ")
    ]
    assert len(python) == 2 and len(commands) == 1
    x_train, y_train = _mnist_like(24, seed=0)
    x_test, y_test = _mnist_like(5, seed=1)
    monkeypatch.chdir(tmp_path)
    write_idx(tmp_path / "train-images-idx3-ubyte.gz", x_train, 0x08, compress=True)
    write_idx(tmp_path / "train-labels-idx1-ubyte.gz", y_train, 0x08, compress=True)
    write_idx(tmp_path / "t10k-images-idx3-ubyte.gz", x_test, 0x08, compress=True)
    write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", y_test, 0x08, compress=True)

    # Verbatim but for the epochs (CI time): one epoch instead of the page's 15.
    assert python[0].count('fit={"epochs": 15}') == 1
    first = python[0].replace('fit={"epochs": 15}', 'fit={"epochs": 1}')
    namespace: dict = {}
    exec(compile(first, "your-own-data.md", "exec"), namespace)
    result = namespace["result"]
    assert set(result.test_metrics) >= {"accuracy"} and result.epochs_run == 1
    run = json.loads((tmp_path / "runs/mnist_idx/results.json").read_text())
    # The kept test split is MNIST's test file: every one of its images.
    assert np.array(run["confusion_matrix"]).sum() == len(y_test) == 50
    registered = datasets.load("mnist_idx", "test")
    np.testing.assert_array_equal(registered.y, y_test)
    np.testing.assert_allclose(registered.x[..., 0] * 255, x_test, atol=1e-3)

    exec(compile(python[1], "your-own-data.md", "exec"), namespace)
    from annzoo.cli import main

    argv = [*shlex.split(commands[0])[1:], "--epochs", "1"]
    assert main(argv) == 0
    cli_run = json.loads((tmp_path / "runs/mnist_cnn/results.json").read_text())
    assert np.array(cli_run["confusion_matrix"]).sum() == 50
    saved = json.loads((tmp_path / "runs/mnist_cnn/recipe.json").read_text())
    assert saved["data"]["dataset"] == "npz:mnist.npz"

"""One table of malformed inputs, each refused through a user-facing entry point.

Every case must raise `annzoo.AnnzooError` (a ``ValueError``) whose message
names the argument in backticks and says what was received, before the first
training step (``keras.Model.fit`` is replaced by a guard that fails the
test). For `annzoo.training.train` cases the output directory already holds a
finished run, and afterwards it holds exactly the same files, byte for byte:
nothing is written and nothing already written is lost.

Entry points: ``train(recipe_dict, output_dir=...)`` on the embedded datasets,
CSV files and image folders written to ``tmp_path``, and datasets registered
with ``annzoo.datasets.register_dataset`` (the way a user brings arrays of
their own); ``annzoo.data.make_input`` / ``make_dataset`` / ``ArraySequence``;
the builders; and search spaces of ``annzoo.tuning``. Data are tiny; nothing
trains.
"""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import keras
import numpy as np
import pytest
from PIL import Image

import annzoo
from annzoo import AnnzooError, data, datasets, tuning
from annzoo.datasets import _base, files
from annzoo.training import train

BACKEND = keras.backend.backend()
N = 24  # samples per split of the registered toy datasets
RNG = np.random.default_rng(0)


class _Trained(AssertionError):
    """model.fit was reached: the bad input was not refused beforehand."""


@pytest.fixture(autouse=True)
def _guards(monkeypatch):
    def refuse(self, *args, **kwargs):
        raise _Trained("keras.Model.fit was called before the bad input was refused")

    monkeypatch.setattr(keras.Model, "fit", refuse)
    # Registrations made by a case stay in the case.
    monkeypatch.setattr(_base, "_REGISTRY", dict(_base._REGISTRY))
    files.clear_cache()
    yield
    files.clear_cache()


# -- data the cases are made of ---------------------------------------------


def _features(n=N, shape=(4,)):
    return RNG.normal(size=(n, *shape)).astype(np.float32)


def _ids(n=N, k=3):
    return (np.arange(n) % k).astype(np.int32)


def _one_hot(n=N, k=3):
    return np.eye(k, dtype=np.float32)[_ids(n, k)]


def _with(array, index, value):
    array = np.array(array, dtype=np.result_type(array, type(value)))
    array.reshape(-1)[index] = value
    return array


def _register(x, y, *, task="multiclass", num_classes=3, test=None):
    """A dataset registered as a user would; ``test`` replaces the test split."""
    name = "toy"

    def loader(full_name, split, seed):
        xs, ys = test if (split == "test" and test is not None) else (x, y)
        return datasets.ArrayDataset(
            x=xs,
            y=ys,
            name=full_name,
            split=split,
            task=task,
            num_classes=num_classes,
            class_names=None
            if num_classes is None
            else tuple(f"c{i}" for i in range(num_classes)),
            feature_names=None,
            seed=seed,
            indices=np.arange(len(xs)),
        )

    datasets.register_dataset(name, loader, info={"task": task}, overwrite=True)
    return name


def _register_raw(value):
    """A loader that returns something other than an ArrayDataset."""
    datasets.register_dataset(
        "raw", lambda name, split, seed: value, info={}, overwrite=True
    )
    return "raw"


def _csv(path: Path, header, rows) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def _table(tmp, labels=None, n=40):
    labels = labels if labels is not None else [i % 2 for i in range(n)]
    rows = [[f"{v:.3f}" for v in RNG.normal(size=3)] + [lab] for lab in labels]
    return _csv(tmp / "data.csv", ["a", "b", "c", "label"], rows)


def _image_folder(tmp, classes=("dark", "light"), per_class=6):
    root = tmp / "images"
    for c, cls in enumerate(classes):
        (root / cls).mkdir(parents=True)
        for i in range(per_class):
            pixels = np.full((8, 8, 3), 40 + 150 * c + i, np.uint8)
            Image.fromarray(pixels).save(root / cls / f"{i}.png")
    return root


def _recipe(dataset, model=None, **sections):
    recipe = {
        "name": "bad",
        "model": model or {"name": "mlp", "hidden_units": [4]},
        "data": {"dataset": dataset, "batch_size": 4, "cache": None},
        "fit": {"epochs": 1},
        "callbacks": {"tensorboard": False},
    }
    for section, fields in sections.items():
        recipe[section] = {**recipe.get(section, {}), **fields}
    return recipe


def _digits(**sections):
    sections.setdefault("data", {})
    sections["data"] = {"dataset": "digits", "limit": 40, **sections["data"]}
    return _recipe("digits", {"name": "cnn", "filters": [2]}, **sections)


CNN = {"name": "cnn", "filters": [2]}


# -- the table ----------------------------------------------------------------
#
# A case is ``make(tmp_path) -> ("train", recipe_dict) | callable`` and the
# fragments its message must contain: the argument, in backticks, and what was
# received.


def _train(make_recipe):
    return lambda tmp: ("train", make_recipe(tmp))


def _call(fn):
    return lambda tmp: fn


CASES = [
    # ---- labels that do not fit the loss (train on a registered dataset) ----
    pytest.param(
        _train(lambda t: _recipe(_register(_features(), _with(_ids(), 5, 3)))),
        ["`data.dataset`", "class ids in [0, 2]", "from 0 to 3", "sample 5"],
        id="labels-above-range",
    ),
    pytest.param(
        _train(lambda t: _recipe(_register(_features(), _with(_ids(), 7, -1)))),
        ["`data.dataset`", "[0, 2]", "from -1 to 2", "sample 7"],
        id="labels-negative",
    ),
    pytest.param(
        _train(
            lambda t: _recipe(
                _register(_features(), _ids(k=3)),
                {"name": "mlp", "hidden_units": [4], "num_outputs": 2},
            )
        ),
        ["`data.dataset`", "model with 2 classes", "from 0 to 2"],
        id="labels-beyond-model-width",
    ),
    pytest.param(
        _train(
            lambda t: _recipe(
                _register(_features(), _with(_ids().astype(np.float32), 4, 1.5))
            )
        ),
        ["`data.dataset`", "integer class ids", "1.5"],
        id="labels-non-integer",
    ),
    pytest.param(
        _train(
            lambda t: _recipe(
                _register(_features(), np.array(["cat", "dog", "owl"] * (N // 3)))
            )
        ),
        ["`data.dataset`", "must be numbers", "dtype <U3", "'cat'"],
        id="labels-strings",
    ),
    pytest.param(
        _train(
            lambda t: _recipe(
                _register(_features(), np.array([0, 1, None] * (N // 3), object))
            )
        ),
        ["`data.dataset`", "must be numbers", "dtype object"],
        id="labels-object-dtype",
    ),
    pytest.param(
        _train(
            lambda t: _recipe(
                _register(
                    _features(), _with(_ids(k=2), 3, 2), task="binary", num_classes=2
                )
            )
        ),
        ["`data.dataset`", "0 or 1 for task='binary'", "(2)", "sample 3"],
        id="binary-labels-outside-0-1",
    ),
    pytest.param(
        _train(
            lambda t: _recipe(
                _register(_features(), _one_hot(k=2), task="binary", num_classes=2)
            )
        ),
        ["`data.dataset`", f"shape ({N},) or ({N}, 1)", f"shape ({N}, 2)"],
        id="binary-labels-one-hot",
    ),
    pytest.param(
        _train(lambda t: _recipe(_register(_features(), _one_hot(k=4)))),
        ["`data.dataset`", f"one-hot rows of shape ({N}, 3)", f"shape ({N}, 4)"],
        id="one-hot-wrong-width",
    ),
    pytest.param(
        _train(
            lambda t: _recipe(
                _register(_features(), _with(_one_hot(), 1, 1.0)),
                data={"label_format": "one_hot"},
            )
        ),
        ["`data.dataset`", "one-hot rows", "row 0: [1.0, 1.0, 0.0]"],
        id="one-hot-rows-not-one-hot",
    ),
    pytest.param(
        _train(lambda t: _recipe(_register(_features(), _one_hot()))),
        ["`data.label_format` must be 'one_hot'", "data.label_format='sparse'"],
        id="one-hot-labels-sparse-format",
    ),
    pytest.param(
        _train(
            lambda t: _recipe(
                _register(_features(), _ids()[:, None]),
                data={"label_format": "one_hot"},
            )
        ),
        ["`data.dataset`", f"shape ({N}, 3)", f"shape ({N}, 1)"],
        id="id-column-one-hot-format",
    ),
    pytest.param(
        _train(
            lambda t: _recipe(
                _register(
                    _features(),
                    RNG.normal(size=(N, 3)).astype("f4"),
                    task="regression",
                    num_classes=None,
                )
            )
        ),
        ["`data.dataset`", f"shape ({N},) or ({N}, 1)", f"shape ({N}, 3)"],
        id="regression-targets-too-wide",
    ),
    pytest.param(
        _train(lambda t: _recipe(_register(_features(), np.zeros(N, np.int32)))),
        ["`data.dataset`", "at least two classes", "all 24 labels are class 0"],
        id="single-class-train-split",
    ),
    pytest.param(
        _train(
            lambda t: _recipe(
                f"csv:{_table(t, labels=['7'] * 40)}",
                data={"options": {"label_column": "label"}},
            )
        ),
        ["single label value '7'", "Received: label_column='label'"],
        id="csv-single-class",
    ),
    # ---- NaN / inf ----
    pytest.param(
        _train(lambda t: _recipe(_register(_with(_features(), 9, np.nan), _ids()))),
        ["`data.dataset`", "finite", "1 NaN or infinite values", "sample 2"],
        id="features-nan",
    ),
    pytest.param(
        _train(lambda t: _recipe(_register(_with(_features(), 0, np.inf), _ids()))),
        ["`data.dataset`", "finite", "(inf) in sample 0"],
        id="features-inf",
    ),
    pytest.param(
        _train(
            lambda t: _recipe(
                _register(
                    _features(),
                    _with(RNG.normal(size=N).astype("f4"), 11, np.nan),
                    task="regression",
                    num_classes=None,
                )
            )
        ),
        ["`data.dataset`", "labels", "(nan) in sample 11"],
        id="regression-labels-nan",
    ),
    pytest.param(
        _train(
            lambda t: _recipe(
                _register(
                    _features(),
                    _with(RNG.normal(size=N), 2, -np.inf),
                    task="regression",
                    num_classes=None,
                )
            )
        ),
        ["`data.dataset`", "labels", "(-inf) in sample 2"],
        id="regression-labels-inf",
    ),
    # ---- shapes, ranks and channel order ----
    pytest.param(
        _train(lambda t: _recipe(_register(_features(shape=(1, 8, 8)), _ids()), CNN)),
        [
            "`data.dataset`",
            "channels-first",
            "np.transpose(x, (0, 2, 3, 1))",
            "(8, 8, 1)",
            f"shape ({N}, 1, 8, 8)",
        ],
        id="channels-first-grayscale",
    ),
    pytest.param(
        _train(lambda t: _recipe(_register(_features(shape=(3, 16, 16)), _ids()), CNN)),
        ["`data.dataset`", "channels-first", "(16, 16, 3)", f"({N}, 3, 16, 16)"],
        id="channels-first-rgb",
    ),
    pytest.param(
        _train(
            lambda t: _recipe(
                _register(_features(shape=(8, 8, 1)), _ids()),
                {**CNN, "input_shape": [8, 8, 3]},
            )
        ),
        ["`model.input_shape`", "(8, 8, 1)", "model.input_shape=[8, 8, 3]"],
        id="model-input-shape-mismatch",
    ),
    pytest.param(
        _train(
            lambda t: _recipe(
                _register(_features(shape=(4,)), _ids()),
                {"name": "mlp", "hidden_units": [4], "input_shape": [6]},
            )
        ),
        ["`model.input_shape`", "(4,)", "model.input_shape=[6]"],
        id="tabular-input-shape-mismatch",
    ),
    pytest.param(
        _train(
            lambda t: _recipe(
                _register(_features(), _ids(), test=(_features(shape=(5,)), _ids()))
            )
        ),
        ["`data.dataset`", "test split", "per-sample shape (4,)", f"({N}, 5)"],
        id="test-split-other-shape",
    ),
    pytest.param(
        _train(lambda t: _recipe(_register(_features(shape=()), _ids()))),
        ["`data.dataset`", "x[:, None]", f"shape ({N},)"],
        id="features-rank-1",
    ),
    # ---- dtypes ----
    pytest.param(
        _train(lambda t: _recipe(_register(np.array([["1.0", "x"]] * N), _ids()))),
        ["`data.dataset`", "1-D array of strings", "dtype <U3", f"shape ({N}, 2)"],
        id="features-strings",
    ),
    pytest.param(
        _train(lambda t: _recipe(_register(_features().astype(object), _ids()))),
        ["`data.dataset`", "numeric array", "dtype object"],
        id="features-object-dtype",
    ),
    # ---- datasets that are not arrays, or empty ----
    pytest.param(
        _train(lambda t: _recipe(_register_raw(_features()))),
        ["`data.dataset` 'raw'", "ArrayDataset", "Received: ndarray"],
        id="loader-without-labels",
    ),
    pytest.param(
        _train(lambda t: _recipe(_register_raw((_features(), _ids())))),
        ["`data.dataset` 'raw'", "Received: tuple"],
        id="loader-returns-tuple",
    ),
    pytest.param(
        _train(
            lambda t: _recipe(
                _register(_features(), _ids(), test=(_features(n=0), _ids(n=0)))
            )
        ),
        ["`data.dataset` 'toy'", "empty test split"],
        id="empty-split",
    ),
    pytest.param(
        _train(
            lambda t: _recipe(
                f"csv:{_csv(t / 'head.csv', ['a', 'label'], [])}",
                data={"options": {"label_column": "label"}},
            )
        ),
        ["`name`", "only the header ['a', 'label']", "Received: name="],
        id="csv-header-only",
    ),
    # ---- missing paths ----
    pytest.param(
        _train(
            lambda t: _recipe(
                f"csv:{t / 'missing.csv'}", data={"options": {"label_column": "y"}}
            )
        ),
        ["`data.dataset`", "missing.csv' does not exist", "Received: data.dataset="],
        id="csv-missing",
    ),
    pytest.param(
        _train(
            lambda t: _recipe(
                f"images:{t / 'no_folder'}",
                CNN,
                data={"options": {"image_size": [8, 8]}},
            )
        ),
        ["`data.dataset`", "no_folder' does not exist", "Received: data.dataset="],
        id="image-folder-missing",
    ),
    pytest.param(
        _train(lambda t: _digits(finetune={"source": str(t / "nothing.keras")})),
        ["`finetune.source`", "does not exist", "Received: finetune.source="],
        id="finetune-source-missing",
    ),
    pytest.param(
        _train(
            lambda t: _recipe(
                f"images:{_image_folder(t)}",
                CNN,
                data={"options": {"image_size": [8, 0]}},
            )
        ),
        ["`image_size`", "Received: image_size=[8, 0]"],
        id="image-size-zero",
    ),
    # ---- steps that exceed the data ----
    pytest.param(
        _train(lambda t: _digits(fit={"steps_per_epoch": 11})),
        [
            "`fit.steps_per_epoch` must be at most 10",
            "run out of data",
            "Received: fit.steps_per_epoch=11",
        ],
        id="steps-per-epoch-beyond-data",
    ),
    # ---- invalid hyperparameters and names in a recipe ----
    pytest.param(
        _train(lambda t: _digits(compile={"learning_rate": 0})),
        ["`compile.learning_rate`", "Received: compile.learning_rate=0"],
        id="learning-rate-zero",
    ),
    pytest.param(
        _train(lambda t: _digits(compile={"learning_rate": -0.1})),
        ["`compile.learning_rate`", "Received: compile.learning_rate=-0.1"],
        id="learning-rate-negative",
    ),
    pytest.param(
        _train(lambda t: _recipe("digits", {**CNN, "dropout": 1.0})),
        ["`dropout` must be a number in [0, 1)", "Received: dropout=1.0"],
        id="dropout-one",
    ),
    pytest.param(
        _train(lambda t: _recipe("digits", {**CNN, "filters": [8, 0]})),
        ["`filters`", "Received: filters="],
        id="filters-zero",
    ),
    pytest.param(
        _train(lambda t: _digits(data={"batch_size": 0})),
        ["`data.batch_size`", "Received: data.batch_size=0"],
        id="batch-size-zero",
    ),
    pytest.param(
        _train(lambda t: _digits(data={"batch_size": -8})),
        ["`data.batch_size`", "Received: data.batch_size=-8"],
        id="batch-size-negative",
    ),
    pytest.param(
        _train(lambda t: _recipe("digits", {"name": "convnet"})),
        ["`model.name`", "Received: model.name='convnet'"],
        id="unknown-model",
    ),
    pytest.param(
        _train(lambda t: _recipe("digitz", CNN)),
        ["`data.dataset`", "Did you mean 'digits'"],
        id="unknown-dataset",
    ),
    pytest.param(
        _train(lambda t: _digits(compile={"optimizer": "adamm"})),
        ["`compile.optimizer`", "Did you mean 'adam'"],
        id="unknown-optimizer",
    ),
    pytest.param(
        _train(lambda t: _digits(fit={"epochs": 0})),
        ["`fit.epochs`", "Received: fit.epochs=0"],
        id="epochs-zero",
    ),
    # ---- annzoo.data pipelines ----
    pytest.param(
        _call(
            lambda: data.make_input(_with(_features(), 3, np.nan), _ids(), batch_size=4)
        ),
        ["`x` must hold finite numbers", "(nan) in sample 0"],
        id="make-input-nan-features",
    ),
    pytest.param(
        _call(
            lambda: data.make_input(
                _features(), _with(np.zeros(N), 20, np.inf), batch_size=4
            )
        ),
        ["`y` must hold finite numbers", "(inf) in sample 20"],
        id="make-input-inf-labels",
    ),
    pytest.param(
        _call(
            lambda: data.make_input(
                {"a": _features(), "b": _with(_features(), 0, -np.inf)},
                _ids(),
                batch_size=4,
            )
        ),
        ["`x['b']` must hold finite numbers"],
        id="make-input-dict-inf",
    ),
    pytest.param(
        _call(
            lambda: data.make_input(
                __import__("tensorflow").data.Dataset.from_tensor_slices(
                    (_features(), _ids())
                ),
                batch_size=4,
            )
        ),
        ["`x` must be NumPy arrays", "an input pipeline already"],
        id="make-input-unbatched-tf-dataset",
        marks=pytest.mark.skipif(BACKEND != "tensorflow", reason="tf.data"),
    ),
    pytest.param(
        _call(lambda: data.make_input((row for row in _features()), batch_size=4)),
        ["`x` must be NumPy arrays", "Received: x of type generator"],
        id="make-input-generator",
    ),
    pytest.param(
        _call(lambda: data.ArraySequence(_features(), _ids(n=N - 1), batch_size=4)),
        ["`x` and `y`", f"len(x)={N}, len(y)={N - 1}"],
        id="array-sequence-count-mismatch",
    ),
    pytest.param(
        _call(lambda: data.make_input(_features(), _ids(), batch_size=-2)),
        ["`batch_size`", "Received: batch_size=-2"],
        id="make-input-batch-size-negative",
    ),
    # ---- builders ----
    pytest.param(
        _call(lambda: annzoo.build_mlp(4, 3, dropout=-0.2, compile=False)),
        ["`dropout`", "Received: dropout=-0.2"],
        id="builder-dropout-negative",
    ),
    pytest.param(
        _call(lambda: annzoo.build_mlp(4, 3, hidden_units=(16, 0), compile=False)),
        ["`hidden_units`", "Received: hidden_units=(16, 0)"],
        id="builder-size-zero",
    ),
    # ---- search spaces ----
    pytest.param(
        _call(
            lambda: tuning.hypermodel(
                "mlp",
                input_shape=4,
                num_outputs=3,
                space={"learning_rate": {"type": "float", "min": 1e-2, "max": 1e-4}},
            )
        ),
        ["`space.learning_rate`", "must not exceed", "Received:"],
        id="space-float-min-above-max",
    ),
    pytest.param(
        _call(
            lambda: tuning.hypermodel(
                "cnn",
                input_shape=(8, 8, 1),
                num_classes=3,
                space={"kernel_size": {"type": "int", "min": 5, "max": 3}},
            )
        ),
        ["`space.kernel_size`", "must not exceed", "'min': 5"],
        id="space-int-min-above-max",
    ),
    pytest.param(
        _call(
            lambda: tuning.hypermodel(
                "mlp",
                input_shape=4,
                num_outputs=3,
                space={"dropout": {"type": "float", "min": 0.2, "max": 1.5}},
            )
        ),
        ["`space.dropout`", "dropout rates in [0, 1)", "'max': 1.5"],
        id="space-dropout-above-one",
    ),
    pytest.param(
        _call(
            lambda: tuning.hypermodel(
                "mlp",
                input_shape=4,
                num_outputs=3,
                space={"learning_rate": [0.0, 0.01]},
            )
        ),
        ["`space.learning_rate`", "numbers > 0", "0.0"],
        id="space-learning-rate-zero",
    ),
    pytest.param(
        _call(
            lambda: tuning.hypermodel(
                "mlp", input_shape=4, num_outputs=3, space={"batch_size": [32, 0]}
            )
        ),
        ["`space.batch_size`", "positive integers", "[32, 0]"],
        id="space-batch-size-zero",
    ),
    pytest.param(
        _call(
            lambda: tuning.hypermodel(
                "mlp", input_shape=4, num_outputs=3, space={"dropuot": [0.1]}
            )
        ),
        ["`space.dropuot`", "Did you mean 'dropout'", "Received: dropuot=[0.1]"],
        id="space-unknown-argument",
    ),
]


# -- the test -------------------------------------------------------------------


def _finished_run(output_dir: Path) -> dict[str, bytes]:
    """A finished run already in the output directory, as train leaves one."""
    run = output_dir / "bad"
    run.mkdir(parents=True)
    (run / "recipe.json").write_text(json.dumps({"name": "bad"}))
    (run / "results.json").write_text(json.dumps({"test": {"accuracy": 0.9}}))
    (run / "metrics.csv").write_text("epoch,loss\n1,0.5\n")
    (run / "best.keras").write_bytes(b"PK\x03\x04 weights")
    return _snapshot(output_dir)


def _snapshot(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() if p.is_file() else b"<dir>"
        for p in sorted(root.rglob("*"))
    }


@pytest.mark.parametrize("make, fragments", CASES)
def test_bad_input_is_refused_before_training(tmp_path, make, fragments):
    target = make(tmp_path)
    output_dir = tmp_path / "runs"
    if isinstance(target, tuple):
        _, recipe = target
        before = _finished_run(output_dir)
        with pytest.raises(AnnzooError) as caught:
            train(recipe, output_dir=output_dir, verbose=0)
        # Nothing written, nothing lost: the finished run is byte for byte the
        # same and no other run directory was started.
        assert _snapshot(output_dir) == before
    else:
        with pytest.raises(AnnzooError) as caught:
            target()

    error = caught.value
    assert isinstance(error, ValueError)
    message = str(error)
    assert re.search(r"`[\w.\[\]'-]+`", message), message  # names the argument
    assert "Received" in message, message
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in: {message}"


def test_the_table_is_long_enough():
    assert len({p.id for p in CASES}) == len(CASES) >= 30


def test_valid_toy_data_passes_every_check_and_reaches_fit(tmp_path):
    # The guard itself: well-formed data of the same shapes gets to model.fit,
    # so the cases above fail for their one defect.
    recipe = _recipe(_register(_features(), _ids()))
    with pytest.raises(_Trained):
        train(recipe, output_dir=tmp_path, verbose=0)
    one_hot = _recipe(
        _register(_features(), _one_hot()), data={"label_format": "one_hot"}
    )
    with pytest.raises(_Trained):
        train(one_hot, output_dir=tmp_path / "b", verbose=0)
    images = _recipe(_register(_features(shape=(8, 8, 1)), _ids()), CNN)
    with pytest.raises(_Trained):
        train(images, output_dir=tmp_path / "c", verbose=0)


def _python_lines(function, *args, **kwargs) -> int:
    """How many lines of Python ``function(*args, **kwargs)`` executes."""
    import sys

    count = 0

    def trace(frame, event, arg):
        nonlocal count
        count += event == "line"
        return trace

    sys.settrace(trace)
    try:
        function(*args, **kwargs)
    finally:
        sys.settrace(None)
    return count


def test_label_checks_are_vectorized_and_cheap():
    # Vectorized: the Python work does not grow with the number of labels (no
    # loop over them), whatever the machine's speed.
    import tracemalloc

    from annzoo.training import check_labels

    y = (np.arange(2_000_000) % 10).astype(np.int64)
    for task, labels, outputs in [
        ("multiclass", y, 10),
        ("binary", (y % 2).astype(np.float32), 1),
        ("regression", y.astype(np.float32), 1),
    ]:
        lines = [
            _python_lines(
                check_labels, part, task=task, num_outputs=outputs, where="`y`"
            )
            for part in (labels[:1_000], labels)
        ]
        assert lines[0] == lines[1], (task, lines)
    # Cheap: proving 6M float32 values finite takes one buffered pass, neither
    # a copy of the array nor a full-size mask of it.
    x = np.zeros((2_000, 32, 32, 3), np.float32)  # 6M values
    lines = [_python_lines(annzoo._checks.all_finite, part) for part in (x[:2], x)]
    assert lines[0] == lines[1], lines
    tracemalloc.start()
    try:
        assert annzoo._checks.all_finite(x)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < x.nbytes // 100, (peak, x.nbytes)
    x[-1, -1, -1, -1] = np.nan
    assert not annzoo._checks.all_finite(x)
    with pytest.raises(AnnzooError, match="`y` must be class ids in"):
        check_labels(np.append(y, 10), task="multiclass", num_outputs=10, where="`y`")


@pytest.mark.parametrize(
    "y, task, outputs, message",
    [
        (np.zeros(6), "binary", 2, "shape (6, 2)"),
        (np.zeros((6, 2)), "regression", 1, "shape (6,) or (6, 1)"),
        (np.array([[0.5, 0.5], [1, 0]]), "multiclass", 2, None),  # soft labels pass
        (np.array([[0], [1]]), "multiclass", 2, None),  # a column of ids passes
    ],
)
def test_label_shapes_against_the_model_outputs(y, task, outputs, message):
    from annzoo.training import check_labels

    def check():
        check_labels(y, task=task, num_outputs=outputs, where="`y`")

    if message is None:
        check()
    else:
        with pytest.raises(AnnzooError, match=re.escape(message)):
            check()

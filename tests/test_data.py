"""Tests of annzoo.data: tf.data and NumPy pipelines, CSV, images, text, scaling.

The tf.data tests run only on the TensorFlow backend; `ArraySequence`, CSV and
standardizer tests run on every backend (``KERAS_BACKEND=jax pytest ...``).
Expected values come from NumPy recomputations or from the generated files,
never from annzoo's own helpers.
"""

from __future__ import annotations

import json
import pickle

import keras
import numpy as np
import pytest

try:
    import tensorflow as tf
except ImportError:  # the JAX-only machine
    tf = None

from annzoo import data
from annzoo.errors import AnnzooError, UnknownNameError
from tests.conftest import run_python

pytestmark = pytest.mark.jax

BACKEND = keras.backend.backend()
tf_only = pytest.mark.skipif(
    BACKEND != "tensorflow", reason="tf.data pipelines: TensorFlow backend only"
)


def _xy(n=10, features=3):
    # Row i holds the value i everywhere, so a batch's rows name its samples.
    x = np.repeat(np.arange(n, dtype=np.float32)[:, None], features, axis=1)
    y = np.arange(n, dtype=np.int32)
    return x, y


def _tf_epoch(ds):
    return [(np.asarray(xb), np.asarray(yb)) for xb, yb in ds]


def _seq_epoch(seq):
    """One epoch as Keras drives it: begin, every batch, end."""
    seq.on_epoch_begin()
    batches = [seq[i] for i in range(len(seq))]
    seq.on_epoch_end()
    return batches


def _labels(batches):
    return [b[1].tolist() for b in batches]


# --------------------------------------------------------------------------
# Imports


def test_importing_data_imports_neither_keras_nor_tensorflow():
    code = (
        "import sys, types\n"
        "from pathlib import Path\n"
        "pkg = types.ModuleType('annzoo')\n"
        "pkg.__path__ = [str(Path('annzoo').resolve())]\n"
        "sys.modules['annzoo'] = pkg\n"
        "import annzoo.data, annzoo.datasets\n"
        "print(sorted(m for m in ('tensorflow', 'tensorflow_datasets', 'keras')"
        " if m in sys.modules))\n"
    )
    result = run_python("-c", code, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "[]"


def test_jax_backend_imports_no_tensorflow():
    code = (
        "import sys\n"
        "import annzoo, annzoo.data, annzoo.datasets\n"
        "annzoo.data.ArraySequence\n"
        "print('tensorflow' in sys.modules, 'tensorflow_datasets' in sys.modules)\n"
    )
    result = run_python("-c", code, timeout=120, KERAS_BACKEND="jax")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "False False"


# --------------------------------------------------------------------------
# make_dataset (tf.data)


@tf_only
def test_make_dataset_shapes_dtypes_and_every_sample_once():
    x, y = _xy(10)
    ds = data.make_dataset(x, y, batch_size=4, shuffle=True, seed=3)
    for _ in range(2):
        batches = _tf_epoch(ds)
        assert [len(yb) for _, yb in batches] == [4, 4, 2]
        for xb, yb in batches:
            assert xb.dtype == np.float32 and xb.shape[1:] == (3,)
            assert yb.dtype == np.int32
            np.testing.assert_array_equal(xb[:, 0], yb)  # rows stay paired
        labels = np.concatenate([yb for _, yb in batches])
        np.testing.assert_array_equal(np.sort(labels), np.arange(10))


@tf_only
def test_make_dataset_same_seed_same_batches_other_seed_other_order():
    x, y = _xy(32)

    def two_epochs(seed):
        ds = data.make_dataset(x, y, batch_size=8, shuffle=True, seed=seed)
        return [np.concatenate([yb for _, yb in _tf_epoch(ds)]) for _ in range(2)]

    first, second = two_epochs(5)
    again_first, again_second = two_epochs(5)
    np.testing.assert_array_equal(first, again_first)
    np.testing.assert_array_equal(second, again_second)  # epoch 2 reproducible
    assert not np.array_equal(first, second)  # reshuffled each epoch
    assert not np.array_equal(first, np.arange(32))  # shuffled at all
    other_first, _ = two_epochs(6)
    assert not np.array_equal(first, other_first)


@tf_only
def test_make_dataset_without_shuffle_keeps_order_and_drop_remainder():
    x, y = _xy(10)
    ds = data.make_dataset(x, y, batch_size=4, drop_remainder=True)
    batches = _tf_epoch(ds)
    assert [yb.tolist() for _, yb in batches] == [[0, 1, 2, 3], [4, 5, 6, 7]]
    x_only = data.make_dataset(x, batch_size=3)
    shapes = [tuple(b.shape) for b in x_only]
    assert shapes == [(3, 3), (3, 3), (3, 3), (1, 3)]


@tf_only
@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"shuffle": True},
        {"shuffle": True, "repeat": True},
        {"map_fn": lambda x, y: (x + 1, y)},
        {"shuffle": True, "batch_map_fn": lambda x, y: (x * 2, y)},
    ],
    ids=["plain", "shuffled", "stream", "sample-map", "batch-map"],
)
def test_whole_batches_have_a_static_batch_dimension(kwargs):
    # 12 samples in batches of 4 (or 3 kept of 10 with drop_remainder): the
    # graph sees (4, 3); 10 samples with a last batch of 2 leave it unknown.
    x, y = _xy(12)
    whole = data.make_dataset(x, y, batch_size=4, **kwargs)
    assert whole.element_spec[0].shape.as_list() == [4, 3]
    assert whole.element_spec[1].shape.as_list() == [4]
    first = [yb.numpy().tolist() for _, yb in whole.take(3)]
    assert sorted(sum(first, [])) == list(range(12))  # every sample, once
    x, y = _xy(10)
    dropped = data.make_dataset(x, y, batch_size=4, drop_remainder=True, **kwargs)
    assert dropped.element_spec[0].shape.as_list() == [4, 3]
    ragged = data.make_dataset(x, y, batch_size=4, **kwargs)
    assert ragged.element_spec[0].shape.as_list() == [None, 3]
    sizes = [len(yb) for _, yb in ragged.take(3)]
    assert sizes == [4, 4, 2]


@tf_only
def test_make_dataset_applies_sample_then_batch_maps():
    import tensorflow as tf

    x, y = _xy(6)
    ds = data.make_dataset(
        x,
        y,
        batch_size=3,
        map_fn=lambda a, b: (a * 10.0, b),
        # A batch-level op: every row becomes the batch mean (mixup-like).
        batch_map_fn=lambda a, b: (
            tf.broadcast_to(tf.reduce_mean(a, axis=0), tf.shape(a)),
            b,
        ),
    )
    batches = _tf_epoch(ds)
    np.testing.assert_allclose(batches[0][0], np.full((3, 3), 10.0))  # mean 0,10,20
    np.testing.assert_allclose(batches[1][0], np.full((3, 3), 40.0))  # 30,40,50


def _chain(ds):
    names = []
    while ds is not None:
        names.append(type(ds).__name__)
        ds = getattr(ds, "_input_dataset", None)
    return names


@tf_only
def test_make_dataset_chain_maps_batches_and_prefetches(tmp_path):
    x, y = _xy(8)
    ds = data.make_dataset(
        x,
        y,
        batch_size=4,
        shuffle=True,
        map_fn=lambda a, b: (a, b),
        batch_map_fn=lambda a, b: (a, b),
    )
    names = _chain(ds)
    assert "Prefetch" in names[0]  # prefetch is the last stage
    # row numbers -> this epoch's rows, gathered -> map_fn -> batch -> batch
    # map -> prefetch
    stages = [n.strip("_").replace("Dataset", "") for n in names[::-1]]
    wanted = ["Range", "Map", "ParallelMap", "Batch", "Map", "ParallelMap",
              "Prefetch"]  # fmt: skip
    found = iter(stages)
    assert all(stage in found for stage in wanted), stages  # in this order
    assert stages[-1] == "Prefetch"
    assert int(ds.cardinality()) == 2

    assert not any("Cache" in n for n in _chain(data.make_dataset(x, batch_size=2)))
    assert "Prefetch" in _chain(data.make_dataset(x, batch_size=2))[0]
    memory = data.make_dataset(x, y, batch_size=4, cache="memory")
    assert any("Cache" in n for n in _chain(memory))
    # A file cache writes its files on the first full epoch.
    prefix = tmp_path / "cache" / "train"
    prefix.parent.mkdir()
    file_cached = data.make_dataset(x, y, batch_size=4, cache=prefix)
    assert any("Cache" in n for n in _chain(file_cached))
    _tf_epoch(file_cached)
    assert any(p.name.startswith("train") for p in prefix.parent.iterdir())


@tf_only
def test_make_dataset_epoch_order_is_a_function_of_seed_and_epoch():
    """set_epoch(k) gives epoch k's order, however many passes came before."""
    x, y = _xy(30)
    ds = data.make_dataset(x, y, batch_size=7, shuffle=True, seed=3)
    passes = [np.concatenate([yb for _, yb in _tf_epoch(ds)]) for _ in range(3)]
    for order in passes:
        np.testing.assert_array_equal(np.sort(order), np.arange(30))  # a permutation
    assert len({tuple(p) for p in passes}) == 3  # a new order every pass
    again = data.make_dataset(x, y, batch_size=7, shuffle=True, seed=3)
    data.set_epoch(again, 2)  # a run resumed at epoch 2
    np.testing.assert_array_equal(
        np.concatenate([yb for _, yb in _tf_epoch(again)]), passes[2]
    )
    _tf_epoch(again)  # a peek...
    data.set_epoch(again, 1)  # ...then epoch 1 as planned
    np.testing.assert_array_equal(
        np.concatenate([yb for _, yb in _tf_epoch(again)]), passes[1]
    )
    # With a per-sample map the rows are gathered one by one: same orders.
    mapped = data.make_dataset(
        x, y, batch_size=7, shuffle=True, seed=3, map_fn=lambda a, b: (a, b)
    )
    np.testing.assert_array_equal(
        np.concatenate([yb for _, yb in _tf_epoch(mapped)]), passes[0]
    )
    # Whole batches only: the first 28 rows of the order, and Keras is told 4.
    dropped = data.make_dataset(
        x, y, batch_size=7, shuffle=True, seed=3, drop_remainder=True
    )
    assert int(dropped.cardinality()) == 4
    np.testing.assert_array_equal(
        np.concatenate([yb for _, yb in _tf_epoch(dropped)]), passes[0][:28]
    )


@tf_only
def test_repeating_dataset_serves_the_epochs_in_turn_from_the_one_set():
    """repeat=True: epoch after epoch, each in its own order, from set_epoch's."""
    x, y = _xy(30)
    once = data.make_dataset(x, y, batch_size=7, shuffle=True, seed=3)
    epochs = [np.concatenate([yb for _, yb in _tf_epoch(once)]) for _ in range(4)]
    endless = data.make_dataset(x, y, batch_size=7, shuffle=True, seed=3, repeat=True)
    assert endless.steps_per_epoch == 5  # ceil(30 / 7)
    assert int(endless.cardinality()) < 0  # never ends
    stream = iter(endless)
    taken = [np.asarray(next(stream)[1]) for _ in range(20)]
    assert [len(b) for b in taken] == [7, 7, 7, 7, 2] * 4  # each epoch's last batch
    np.testing.assert_array_equal(np.concatenate(taken), np.concatenate(epochs))
    # Resumed at epoch 2: the stream starts with epoch 2's order.
    data.set_epoch(endless, 2)
    stream = iter(endless)
    resumed = np.concatenate([np.asarray(next(stream)[1]) for _ in range(10)])
    np.testing.assert_array_equal(resumed, np.concatenate(epochs[2:4]))
    # Three steps per fit epoch: fit epoch 3 starts 9 batches in, which is
    # batch 4 (0-based) of data epoch 1: its last two rows.
    short = data.make_dataset(
        x, y, batch_size=7, shuffle=True, seed=3, repeat=True, steps_per_epoch=3
    )
    assert short.steps_per_epoch == 3
    data.set_epoch(short, 3)
    np.testing.assert_array_equal(np.asarray(next(iter(short))[1]), epochs[1][28:])
    # Unshuffled, whole batches: rows in order, epoch after epoch.
    plain = data.make_dataset(x, y, batch_size=7, repeat=True, drop_remainder=True)
    stream = iter(plain)
    rows = np.concatenate([np.asarray(next(stream)[1]) for _ in range(8)])
    np.testing.assert_array_equal(rows, np.tile(np.arange(28), 2))
    for bad, message in (
        (dict(repeat="yes"), "`repeat` must be True or False"),
        (dict(steps_per_epoch=3), "`steps_per_epoch` is for a repeating dataset"),
        (dict(repeat=True, steps_per_epoch=0), "steps_per_epoch"),
        (dict(repeat=True, map_fn=lambda a, b: (a, b)), "whole-batch maps only"),
    ):
        with pytest.raises(AnnzooError, match=message):
            data.make_dataset(x, y, **{"batch_size": 7, **bad})


def test_execution_block_is_the_largest_divisor_within_the_limit():
    for steps in range(1, 200):
        for limit in (1, 7, 32):
            brute = [d for d in range(1, min(steps, limit) + 1) if steps % d == 0][-1]
            assert data.execution_block(steps, limit) == brute
    assert data.execution_block(40, 32) == 20 and data.execution_block(37, 32) == 1
    with pytest.raises(AnnzooError, match="steps_per_execution"):
        data.execution_block(10, 0)


def test_stream_block_costs_at_most_one_call_more_per_epoch():
    # A stream runs steps/block calls per epoch; a one-pass dataset, as many
    # as Keras' calls of `limit` steps take to cover the epoch.
    for steps in range(1, 120):
        for limit in (1, 5, 32):
            one_pass = len(range(0, steps, limit))
            block = data.stream_block(steps, limit)
            short = data.execution_block(steps, limit)
            longer = [d for d in range(limit + 1, 4 * limit + 1) if steps % d == 0]
            if block is None:
                assert steps // short > one_pass + 1 and not longer
            else:
                assert steps % block == 0 and steps // block <= one_pass + 1
            if block is not None and block > limit:  # only where none shorter suits
                assert steps // short > one_pass + 1 and block == min(longer)
    assert data.stream_block(112, 32) == 28 and data.stream_block(7, 32) == 7
    assert data.stream_block(40, 32) == 20
    # Prime step counts: one call per epoch up to 4 x 32 steps, then one-pass.
    assert data.stream_block(37, 32) == 37 and data.stream_block(79, 32) == 79
    assert data.stream_block(2 * 79, 32) == 79 and data.stream_block(131, 32) is None
    assert data.stream_block(37, 5) is None


@tf_only
def test_batch_map_states_are_set_from_seed_epoch_and_batch():
    """A batch map's random draws depend on (seed, epoch, batch) only."""
    x, y = _xy(12, features=2)
    generator = keras.random.SeedGenerator(0)

    def noisy(a, b):
        return a + keras.random.uniform(tf.shape(a), seed=generator), b

    noisy.random_states = [generator.state]

    def noise(dataset, epochs, first=0):
        data.set_epoch(dataset, first)
        return [
            np.asarray(xb) - np.asarray(yb, np.float32)[:, None]
            for _ in range(epochs)
            for xb, yb in dataset
        ]

    def make(seed=1):
        return data.make_dataset(
            x, y, batch_size=4, shuffle=True, seed=seed, batch_map_fn=noisy
        )

    full = noise(make(), 3)  # epochs 0, 1, 2 (3 batches each)
    flat = np.concatenate([b.ravel() for b in full])
    assert np.all((flat >= 0) & (flat < 1)) and len(np.unique(flat)) == flat.size
    # Resumed at epoch 2 after other draws moved the generator: the same noise.
    keras.random.uniform((5,), seed=generator)
    again = noise(make(), 1, first=2)
    for got, want in zip(again, full[6:], strict=True):
        np.testing.assert_array_equal(got, want)
    # Another seed draws other noise.
    other = noise(make(seed=2), 1)
    assert not np.allclose(other[0], full[0])


@tf_only
def test_make_dataset_text_and_dict_inputs():
    texts = np.array(["a b", "c", "d e f"], dtype=object)
    batches = list(data.make_dataset(texts, np.array([0, 1, 0]), batch_size=2))
    assert batches[0][0].numpy().tolist() == [b"a b", b"c"]
    x = {"image": np.zeros((4, 2, 2, 1), np.float32), "mask": np.ones((4, 5))}
    xb, yb = next(iter(data.make_dataset(x, np.arange(4), batch_size=4)))
    assert xb["image"].shape == (4, 2, 2, 1) and xb["mask"].shape == (4, 5)


BAD_INPUTS = [
    (dict(x=np.zeros((4, 2)), y=np.zeros(3)), "`x` and `y`", "len(y)=3"),
    (dict(x=np.zeros((4, 2)), y=np.zeros(4), batch_size=0), "`batch_size`", "0"),
    (dict(x=np.zeros((4, 2)), y=np.zeros(4), batch_size=2.0), "`batch_size`", "2.0"),
    (dict(x=np.zeros((0, 2)), y=np.zeros(0)), "`x`", "shape (0, 2)"),
    (dict(x=np.zeros((4, 2)), y=np.array(["a", "b", "a", "b"])), "`y`", "dtype <U1"),
    (dict(x=np.float32(3.0)), "`x`", "shape ()"),
    (dict(x=np.zeros((4, 2)), seed=-1), "`seed`", "-1"),
    (dict(x=np.zeros((4, 2)), shuffle="yes"), "`shuffle`", "'yes'"),
    (dict(x=np.zeros((4, 2)), map_fn=3), "`map_fn`", "3"),
    (
        dict(x=np.zeros((4, 2)), batch_size=8, drop_remainder=True),
        "`batch_size`",
        "8",
    ),
    (dict(x=np.array([[1.0], [1.0, 2.0]], dtype=object)), "`x`", "object"),
]


def _kwargs(case):
    return {"batch_size": 2, **case}


@tf_only
@pytest.mark.parametrize("case, name, received", BAD_INPUTS)
def test_make_dataset_rejects_bad_inputs_naming_the_argument(case, name, received):
    with pytest.raises(AnnzooError) as info:
        data.make_dataset(**_kwargs(case))
    assert name in str(info.value) and "Received" in str(info.value)
    assert received in str(info.value)


@tf_only
def test_make_dataset_rejects_bad_cache_and_parallelism(tmp_path):
    x, y = _xy(4)
    with pytest.raises(AnnzooError, match="`cache`.*does not exist"):
        data.make_dataset(x, y, batch_size=2, cache=tmp_path / "missing" / "c")
    with pytest.raises(AnnzooError, match="`cache`.*Received: cache=3"):
        data.make_dataset(x, y, batch_size=2, cache=3)
    with pytest.raises(AnnzooError, match="`num_parallel_calls`"):
        data.make_dataset(x, y, batch_size=2, num_parallel_calls=0)


# --------------------------------------------------------------------------
# ArraySequence (every backend)


def test_array_sequence_shapes_dtypes_and_every_sample_once():
    x, y = _xy(10)
    seq = data.ArraySequence(x, y, batch_size=4, shuffle=True, seed=0)
    assert isinstance(seq, keras.utils.PyDataset)
    assert len(seq) == 3
    for _ in range(3):
        batches = _seq_epoch(seq)
        assert [len(yb) for _, yb in batches] == [4, 4, 2]
        for xb, yb in batches:
            assert xb.dtype == np.float32 and xb.shape[1:] == (3,)
            assert yb.dtype == np.int32
            np.testing.assert_array_equal(xb[:, 0], yb)
        labels = np.concatenate([yb for _, yb in batches])
        np.testing.assert_array_equal(np.sort(labels), np.arange(10))
    assert seq.epoch == 3
    with pytest.raises(IndexError):
        seq[3]
    np.testing.assert_array_equal(seq[-1][1], seq[2][1])


def test_array_sequence_drop_remainder_and_x_only():
    x, y = _xy(10)
    seq = data.ArraySequence(x, y, batch_size=4, drop_remainder=True)
    assert len(seq) == 2
    assert _labels(_seq_epoch(seq)) == [[0, 1, 2, 3], [4, 5, 6, 7]]
    only_x = data.ArraySequence(x, batch_size=4)
    assert isinstance(only_x[0], np.ndarray) and only_x[2].shape == (2, 3)


def test_array_sequence_determinism_and_per_epoch_order():
    x, y = _xy(40)

    def epochs(seed, count=3):
        seq = data.ArraySequence(x, y, batch_size=8, shuffle=True, seed=seed)
        return [np.concatenate(_labels(_seq_epoch(seq))) for _ in range(count)]

    first = epochs(7)
    np.testing.assert_array_equal(np.stack(first), np.stack(epochs(7)))
    assert not np.array_equal(first[0], first[1])  # each epoch reshuffled
    assert not np.array_equal(first[0], np.arange(40))
    assert not np.array_equal(first[0], epochs(8, 1)[0])
    # Epoch 2 on its own (a resumed run), without replaying epochs 0 and 1.
    resumed = data.ArraySequence(x, y, batch_size=8, shuffle=True, seed=7)
    resumed.set_epoch(2)
    np.testing.assert_array_equal(
        np.concatenate(_labels(_seq_epoch(resumed))), first[2]
    )
    assert resumed.epoch == 3


def test_array_sequence_counts_only_complete_epochs():
    x, y = _xy(12)
    seq = data.ArraySequence(x, y, batch_size=4, shuffle=True, seed=1)
    seq.on_epoch_end()  # an unpaired end, as Keras sends before training
    assert seq.epoch == 0
    seq.on_epoch_begin()
    seq[0]  # a peek at one batch, as the JAX trainer does before training
    seq.on_epoch_end()
    assert seq.epoch == 0
    for i in range(len(seq)):  # batches requested outside any epoch
        seq[i]
    seq.on_epoch_begin()
    seq[0]
    seq.on_epoch_end()
    assert seq.epoch == 0
    _seq_epoch(seq)
    assert seq.epoch == 1
    with pytest.raises(AnnzooError, match="`epoch`"):
        seq.set_epoch(-1)


def test_array_sequence_applies_sample_then_batch_maps():
    x, y = _xy(6)
    seq = data.ArraySequence(
        x,
        y,
        batch_size=3,
        map_fn=lambda a, b: (a * 10.0, b + 100),
        batch_map_fn=lambda a, b: (np.broadcast_to(a.mean(axis=0), a.shape), b),
    )
    xb, yb = seq[1]
    np.testing.assert_allclose(xb, np.full((3, 3), 40.0))
    np.testing.assert_array_equal(yb, [103, 104, 105])
    x_only = data.ArraySequence(x, batch_size=2, map_fn=lambda a: a + 1)
    np.testing.assert_array_equal(x_only[0][:, 0], [1.0, 2.0])


def test_array_sequence_dict_inputs_and_pickling():
    x = {"a": np.arange(6, dtype=np.float32)[:, None], "b": np.arange(6) * 2}
    seq = data.ArraySequence(x, np.arange(6), batch_size=4, shuffle=True, seed=2)
    xb, yb = seq[0]
    np.testing.assert_array_equal(xb["a"][:, 0], yb)
    np.testing.assert_array_equal(xb["b"], yb * 2)
    _seq_epoch(seq)
    copy = pickle.loads(pickle.dumps(seq))
    assert type(copy) is type(seq) and copy.epoch == 1
    np.testing.assert_array_equal(copy[0][1], seq[0][1])


@pytest.mark.parametrize("case, name, received", BAD_INPUTS)
def test_array_sequence_rejects_bad_inputs_naming_the_argument(case, name, received):
    with pytest.raises(AnnzooError) as info:
        data.ArraySequence(**_kwargs(case))
    assert name in str(info.value) and "Received" in str(info.value)
    assert received in str(info.value)


def test_array_sequence_makes_batches_in_the_training_thread():
    x, y = _xy(4)
    seq = data.ArraySequence(x, y, batch_size=2)
    assert seq.workers == 1 and not seq.use_multiprocessing
    with pytest.raises(TypeError):
        data.ArraySequence(x, y, batch_size=2, workers=2)


def _tiny_model():
    model = keras.Sequential(
        [
            keras.Input((3,)),
            keras.layers.Dense(4, activation="relu"),
            keras.layers.Dense(2),
        ]
    )
    model.compile(
        optimizer="sgd",
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    return model


class _EpochProbe(keras.callbacks.Callback):
    def __init__(self, seq):
        super().__init__()
        self.seq = seq
        self.seen = []

    def on_epoch_begin(self, epoch, logs=None):
        self.seen.append((epoch, self.seq.epoch))


def test_fit_advances_the_sequence_epoch_once_per_epoch():
    x, y = _xy(40)
    y = y % 2
    seq = data.ArraySequence(x, y, batch_size=2, shuffle=True, seed=0)
    # Peek at batches first: that must not count as an epoch either.
    seq[0], seq[len(seq) - 1]
    probe = _EpochProbe(seq)
    val = data.ArraySequence(x, y, batch_size=8)
    model = _tiny_model()
    model.fit(seq, epochs=3, validation_data=val, callbacks=[probe], verbose=0)
    assert probe.seen == [(0, 0), (1, 1), (2, 2)]
    assert seq.epoch == 3
    # Resume: the same object continues; a fresh one is told where to start.
    resumed = data.ArraySequence(x, y, batch_size=2, shuffle=True, seed=0)
    resumed.set_epoch(3)
    probe = _EpochProbe(resumed)
    model.fit(resumed, initial_epoch=3, epochs=4, callbacks=[probe], verbose=0)
    assert probe.seen == [(3, 3)] and resumed.epoch == 4


# --------------------------------------------------------------------------
# make_input


def test_make_input_picks_the_pipeline_for_the_backend():
    x, y = _xy(8)
    numpy_input = data.make_input(x, y, batch_size=4, prefer="numpy")
    assert isinstance(numpy_input, data.ArraySequence)
    auto = data.make_input(x, y, batch_size=4, shuffle=True, cache="memory")
    if BACKEND == "tensorflow":
        import tensorflow as tf

        assert isinstance(auto, tf.data.Dataset)
        assert isinstance(
            data.make_input(x, y, batch_size=4, prefer="tf.data"), tf.data.Dataset
        )
    else:
        assert isinstance(auto, data.ArraySequence)
    with pytest.raises(UnknownNameError, match="`prefer`.*Received: prefer='torch'"):
        data.make_input(x, y, batch_size=4, prefer="torch")
    with pytest.raises(AnnzooError, match="`batch_size`"):
        data.make_input(x, y, batch_size=-1)


def test_fit_on_make_input_runs_one_epoch():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 3)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int32)
    train = data.make_input(x, y, batch_size=16, shuffle=True, seed=0)
    model = _tiny_model()
    # The pipeline shuffles; Keras's own shuffle does not apply (and warns).
    history = model.fit(train, epochs=1, shuffle=False, verbose=0)
    assert len(history.history["loss"]) == 1
    assert np.isfinite(history.history["loss"][0])
    predictions = model.predict(data.make_input(x, batch_size=16), verbose=0)
    assert predictions.shape == (64, 2)


# --------------------------------------------------------------------------
# image_folder


def _write_images(root, counts, size=(6, 5)):
    from PIL import Image

    values = {}
    for name, count in counts.items():
        folder = root / name
        folder.mkdir(parents=True)
        for i in range(count):
            value = 255 if name == "white" else 40 * i
            pixels = np.full((*size, 3), value, dtype=np.uint8)
            Image.fromarray(pixels).save(folder / f"{i}.png")
            values[(name, i)] = value
    return values


@tf_only
def test_image_folder_scales_to_unit_range_with_class_labels(tmp_path):
    _write_images(tmp_path, {"black": 3, "white": 2})
    ds = data.image_folder(tmp_path, image_size=(6, 5), batch_size=2, seed=0)
    assert ds.class_names == ["black", "white"]
    images, labels = [], []
    for xb, yb in ds:
        images.append(xb.numpy())
        labels.append(yb.numpy())
    images, labels = np.concatenate(images), np.concatenate(labels)
    assert images.shape == (5, 6, 5, 3) and images.dtype == np.float32
    assert labels.dtype == np.int32 and sorted(labels.tolist()) == [0, 0, 0, 1, 1]
    # White PNGs (255) read as exactly 1.0; "black" ones hold 0, 40, 80.
    np.testing.assert_allclose(images[labels == 1], 1.0)
    black = sorted(float(v) for v in images[labels == 0][:, 0, 0, 0])
    np.testing.assert_allclose(black, [0.0, 40 / 255, 80 / 255], atol=1e-6)
    gray = data.image_folder(
        tmp_path, image_size=4, batch_size=5, color_mode="grayscale"
    )
    assert next(iter(gray))[0].shape == (5, 4, 4, 1)


@tf_only
def test_image_folder_validation_split_is_seeded_and_disjoint(tmp_path):
    _write_images(tmp_path, {"black": 6, "white": 4})

    def count(ds):
        return sum(int(yb.shape[0]) for _, yb in ds)

    train, val = data.image_folder(
        tmp_path, image_size=4, batch_size=4, validation_split=0.2, seed=1
    )
    assert (count(train), count(val)) == (8, 2)
    assert train.class_names == val.class_names == ["black", "white"]


def test_image_folder_errors_name_the_directory(tmp_path):
    with pytest.raises(AnnzooError, match="`directory`.*does not exist"):
        data.image_folder(tmp_path / "nope", image_size=8, batch_size=2)
    with pytest.raises(AnnzooError, match="one subfolder per class"):
        data.image_folder(tmp_path, image_size=8, batch_size=2)
    (tmp_path / "cats").mkdir()
    (tmp_path / "cats" / "notes.txt").write_text("not an image")
    with pytest.raises(AnnzooError, match=r"\['cats'\] but no images"):
        data.image_folder(tmp_path, image_size=8, batch_size=2)
    _write_images(tmp_path, {"dogs": 1})
    with pytest.raises(AnnzooError, match="`image_size`.*Received: image_size="):
        data.image_folder(tmp_path, image_size=(8, 0), batch_size=2)
    with pytest.raises(AnnzooError, match="`validation_split`"):
        data.image_folder(tmp_path, image_size=8, batch_size=2, validation_split=1.5)


# --------------------------------------------------------------------------
# CSV and standardization


def test_load_csv_reads_features_and_labels(tmp_path):
    path = tmp_path / "flowers.csv"
    path.write_text(
        "length, width,species,label\n"
        "5.1,3.5,setosa,0\n"
        "\n"
        "6.2, 2.9 ,versicolor,1\n"
        "7.7,3.0,virginica,2\n"
    )
    x, y = data.load_csv(
        path, label_column="label", feature_columns=["width", "length"]
    )
    assert x.dtype == np.float32 and y.dtype == np.int32
    np.testing.assert_array_equal(
        x, np.array([[3.5, 5.1], [2.9, 6.2], [3.0, 7.7]], dtype=np.float32)
    )
    np.testing.assert_array_equal(y, [0, 1, 2])
    _, species = data.load_csv(path, label_column="species", feature_columns=["width"])
    assert species.tolist() == ["setosa", "versicolor", "virginica"]
    x_all, target = data.load_csv(
        path, label_column="width", feature_columns=["length"]
    )
    assert target.dtype == np.float32 and x_all.shape == (3, 1)


def test_load_csv_errors_name_the_file_column_and_row(tmp_path):
    with pytest.raises(AnnzooError, match="`path`.*does not exist"):
        data.load_csv(tmp_path / "missing.csv", label_column="y")
    path = tmp_path / "bad.csv"
    path.write_text("a,b,y\n1,2,0\n3,oops,1\n")
    with pytest.raises(AnnzooError) as info:
        data.load_csv(path, label_column="target")
    message = str(info.value)
    assert "`label_column` 'target'" in message and "['a', 'b', 'y']" in message
    with pytest.raises(AnnzooError, match="`feature_columns` 'c'.*'a', 'b', 'y'"):
        data.load_csv(path, label_column="y", feature_columns=["a", "c"])
    with pytest.raises(AnnzooError) as info:
        data.load_csv(path, label_column="y")
    message = str(info.value)
    assert "Column 'b'" in message and "'oops'" in message and "row 2" in message
    assert data.load_csv(path, label_column="y", feature_columns=["a"])[0].shape == (
        2,
        1,
    )
    ragged = tmp_path / "ragged.csv"
    ragged.write_text("a,y\n1,0\n2\n")
    with pytest.raises(AnnzooError, match="Row 2 .* 1 fields but the header has 2"):
        data.load_csv(ragged, label_column="y")
    empty_cell = tmp_path / "empty_cell.csv"
    empty_cell.write_text("a,y\n,0\n")
    with pytest.raises(AnnzooError, match="Column 'a' .* an empty value in row 1"):
        data.load_csv(empty_cell, label_column="y")
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(AnnzooError, match="empty"):
        data.load_csv(tmp_path / "empty.csv", label_column="y")


def test_standardizer_is_fit_on_train_only():
    rng = np.random.default_rng(0)
    x = rng.normal(loc=[0.0, 5.0, 3.0], scale=[1.0, 2.0, 0.0], size=(100, 3))
    x[70:] += 4.0  # the test rows come from a shifted distribution
    train, test = x[:70], x[70:]
    scaler = data.fit_standardizer(train)
    np.testing.assert_allclose(scaler.mean, train.mean(axis=0))
    assert np.abs(scaler.mean - x.mean(axis=0)).min() > 0.5  # not all-data stats
    expected_std = train.std(axis=0)
    expected_std[2] = 1.0  # constant in training: only centered
    np.testing.assert_allclose(scaler.std, expected_std)
    scaled_test = scaler.apply(test)
    assert scaled_test.dtype == np.float32
    np.testing.assert_allclose(
        scaled_test, (test - train.mean(axis=0)) / expected_std, rtol=1e-5, atol=1e-5
    )
    np.testing.assert_allclose(scaler.apply(train).mean(axis=0), 0.0, atol=1e-5)
    assert scaled_test.mean(axis=0)[0] > 2.0  # the shift survives scaling
    restored = data.Standardizer.from_dict(json.loads(json.dumps(scaler.to_dict())))
    np.testing.assert_array_equal(restored.apply(test), scaled_test)
    with pytest.raises(AnnzooError, match="feature shape"):
        scaler.apply(np.zeros((2, 4)))
    with pytest.raises(AnnzooError, match="`x_train`"):
        data.fit_standardizer(np.array([[1.0, np.nan]]))


# --------------------------------------------------------------------------
# Text


@tf_only
def test_text_vectorizer_vocabulary_comes_from_train_texts_only():
    train = ["The cat sat.", "the dog sat", "A cat ran!"]
    test = ["zebra cat"]
    layer = data.text_vectorizer(train, max_tokens=50, sequence_length=4)
    assert isinstance(layer, keras.layers.TextVectorization)
    vocabulary = layer.get_vocabulary()
    assert vocabulary[:2] == ["", "[UNK]"]
    train_words = {"the", "cat", "sat", "dog", "a", "ran"}
    assert set(vocabulary[2:]) == train_words
    tokens = np.asarray(layer(np.array(test)))
    assert tokens.shape == (1, 4)
    assert tokens[0, 0] == 1  # "zebra": out of vocabulary
    assert vocabulary[tokens[0, 1]] == "cat"
    assert tokens[0, 2:].tolist() == [0, 0]  # padding
    with pytest.raises(AnnzooError, match="`train_texts`"):
        data.text_vectorizer([1, 2])
    with pytest.raises(AnnzooError, match="`max_tokens`"):
        data.text_vectorizer(train, max_tokens=2)


@pytest.mark.parametrize(
    "n, batch, fixed, steps, expected",
    [
        (100, 32, True, None, True),  # 3 whole batches and 4 left over
        (100, 32, False, None, False),  # not compiled for fixed shapes
        (96, 32, True, None, False),  # every batch whole already
        (20, 32, True, None, False),  # no whole batch at all
        (100, 32, True, 3, True),  # the whole batches cover the steps
        (100, 32, True, 4, False),  # a fourth step needs the partial batch
    ],
)
def test_drop_partial_batch_only_where_it_would_be_compiled_again(
    n, batch, fixed, steps, expected
):
    assert (
        data.drop_partial_batch(n, batch, fixed_shapes=fixed, steps_per_epoch=steps)
        is expected
    )


@pytest.mark.parametrize(
    "n, batch, fixed, multiple, expected",
    [
        # Divisors of 270 between 16 and 64: 18, 27, 30, 45, 54.
        (270, 32, True, 1, 54),
        # Divisors of 1000 between 32 and 128: 40, 50, 100, 125; even: 40, 50, 100.
        (1000, 64, True, 1, 125),
        (1000, 64, True, 2, 100),
        (270, 256, True, 1, 270),  # all of it in one batch, no more than 512
        (97, 32, True, 1, 32),  # prime: no divisor, two shapes it is
        (270, 32, False, 1, 32),  # not compiled for fixed shapes
        (256, 32, True, 1, 32),  # every batch whole already
        (20, 32, True, 1, 32),  # one batch of 20 whatever the size
    ],
)
def test_evaluation_batch_size_splits_the_samples_evenly_where_it_saves_a_compile(
    n, batch, fixed, multiple, expected
):
    size = data.evaluation_batch_size(n, batch, fixed_shapes=fixed, multiple=multiple)
    assert size == expected


@tf_only
def test_the_spare_iterator_keras_makes_at_an_epochs_end_leaves_the_order_alone():
    # An epoch of 79 batches at 32 steps per call: Keras makes a second
    # iterator at the end of each epoch and throws it away at the next one's
    # start. Unread, it must not move the pipeline's epoch counter, or the
    # next epoch would take the order of the one after it.
    x, y = _xy(79 * 2, 2)
    ds = data.make_dataset(x, y, batch_size=2, shuffle=True, seed=1)
    counter = ds._annzoo_epoch
    seen = []

    class Spy(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            seen.append(int(counter.numpy()))

    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    model.compile("sgd", "mse", steps_per_execution=32)
    model.fit(ds, epochs=3, verbose=0, callbacks=[Spy()], shuffle=False)
    assert seen == [1, 2, 3]

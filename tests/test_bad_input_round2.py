"""Issue 26, second round: bad inputs that raised tracebacks or were silently
accepted now give one `AnnzooError` sentence naming the argument or file.

Cases: files given to ``annzoo predict`` (damaged ``.npy``/``.npz``, object
and string arrays, empty arrays, broken images, ragged or header-less CSVs,
ambiguous layouts, non-finite values); run directories whose ``recipe.json``
is damaged (predict and evaluate); recipe files of binary junk (train);
``--beam-width 0``; boolean and ``name`` arguments of every registered
builder; output activations that do not fit the task of ``compile_model``;
networks too large for memory. Each expectation is derived in the test, not
read from annzoo. Models are tiny; nothing trains.
"""

from __future__ import annotations

import inspect
import json
import shutil
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest

import annzoo
from annzoo import AnnzooError, registry
from annzoo import _checks as checks
from annzoo import io as aio
from annzoo.cli import main
from annzoo.predict import load_inputs, predict_files, predict_texts

SHAPE = (8, 8, 1)
RNG = np.random.default_rng(26)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    """A run directory as `annzoo predict` reads it: best.keras and recipe.json."""
    path = tmp_path_factory.mktemp("run") / "digits_cnn"
    path.mkdir()
    keras.utils.set_random_seed(0)
    model = annzoo.build_cnn(SHAPE, 10, filters=(4,), compile=False)
    aio.save_model(model, path / "best.keras")
    recipe = {"name": "digits_cnn", "model": {"name": "cnn"}, "data": {}}
    (path / "recipe.json").write_text(json.dumps(recipe))
    return path


def _images(n=5):
    return RNG.random((n, *SHAPE), dtype=np.float32)


def _npy(path: Path, array, **kwargs) -> Path:
    np.save(path, array, **kwargs)
    return path


def _cli(argv, capsys) -> tuple[int, str]:
    status = main([str(a) for a in argv])
    err = capsys.readouterr().err
    return status, err


def _refused(capsys, argv, *fragments) -> str:
    """The CLI exits 2 with one line naming every fragment, and no traceback."""
    status, err = _cli(argv, capsys)
    lines = err.strip().splitlines()
    assert status == 2, err
    assert len(lines) == 1 and lines[0].startswith("annzoo: error: "), err
    assert "Traceback" not in err
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    return lines[0]


# -- files given to `annzoo predict` -------------------------------------------


def _csv(path: Path, rows, header=True) -> Path:
    lines = [",".join(f"x{i}" for i in range(64))] if header else []
    lines += [",".join(str(v) for v in row) for row in rows]
    path.write_text("\n".join(lines) + "\n")
    return path


def _bad_files(d: Path) -> dict[str, tuple[Path, str]]:
    """name -> (file, a word the message must contain besides the file name)."""
    good = _npy(d / "good.npy", _images())
    data = good.read_bytes()
    object_array = np.array([object()] * 5, dtype=object)
    nan = np.full((5, *SHAPE), np.nan, dtype=np.float32)
    inf = _images()
    inf[3, 2, 1, 0] = np.inf
    files = {
        "npy truncated": (d / "cut.npy", "header"),
        "npy 300 zero bytes": (d / "zeros.npy", "header"),
        "npy data cut": (d / "cut_data.npy", "truncated"),
        "npy strings": (_npy(d / "str.npy", np.full((5, 64), "a")), "numbers"),
        "npy objects": (
            _npy(d / "obj.npy", object_array, allow_pickle=True),
            "objects",
        ),
        "npy 0 samples": (_npy(d / "none.npy", np.zeros((0, *SHAPE))), "at least one"),
        "npy scalar": (_npy(d / "scalar.npy", np.float32(1)), "scalar"),
        "npy channels first": (
            _npy(d / "cf.npy", RNG.random((5, 1, 8, 8))),
            "channels-first",
        ),
        "npy (5, 16, 4)": (_npy(d / "odd.npy", RNG.random((5, 16, 4))), "ambiguous"),
        "npy all NaN": (_npy(d / "nan.npy", nan), "finite"),
        "npy one inf": (_npy(d / "inf.npy", inf), "finite"),
        "npy float64 overflow": (
            _npy(d / "big.npy", np.full((1, 64), 1e300)),
            "finite",
        ),
        "npz not a zip": (d / "junk.npz", ".npz"),
        "png header then junk": (d / "junk.png", "image"),
        "png empty": (d / "empty.png", "image"),
        "csv ragged": (_csv(d / "ragged.csv", [[0] * 64, [0] * 10]), "columns"),
        "csv no header": (_csv(d / "nohead.csv", [[0.5] * 64] * 3, False), "header"),
        "csv not UTF-8": (d / "latin.csv", "UTF-8"),
        "csv text cell": (_csv(d / "text.csv", [[0] * 63 + ["abc"]]), "'abc'"),
        "csv header only": (_csv(d / "head.csv", []), "no rows"),
    }
    (d / "cut.npy").write_bytes(data[:100])
    (d / "zeros.npy").write_bytes(bytes(300))
    (d / "cut_data.npy").write_bytes(data[: len(data) - 40])
    (d / "junk.npz").write_bytes(b"PK\x03\x04" + bytes(60))
    (d / "junk.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"junk" * 40)
    (d / "empty.png").write_bytes(b"")
    (d / "latin.csv").write_bytes(b"caf\xe9\n1\n")
    np.savez(d / "obj.npz", x=object_array)
    files["npz objects"] = (d / "obj.npz", ".npz")
    return files


@pytest.fixture(scope="module")
def bad_files(tmp_path_factory):
    return _bad_files(tmp_path_factory.mktemp("inputs"))


CASES = [
    "npy truncated",
    "npy 300 zero bytes",
    "npy data cut",
    "npy strings",
    "npy objects",
    "npy 0 samples",
    "npy scalar",
    "npy channels first",
    "npy (5, 16, 4)",
    "npy all NaN",
    "npy one inf",
    "npy float64 overflow",
    "npz not a zip",
    "npz objects",
    "png header then junk",
    "png empty",
    "csv ragged",
    "csv no header",
    "csv not UTF-8",
    "csv text cell",
    "csv header only",
]


@pytest.mark.parametrize("case", CASES)
def test_predict_refuses_bad_file(case, bad_files, run_dir, tmp_path):
    path, word = bad_files[case]
    output = tmp_path / "predictions.csv"
    with pytest.raises(AnnzooError) as caught:
        predict_files(run_dir, [path], output=output)
    message = str(caught.value)
    assert str(path) in message and word in message, message
    assert "\n" not in message
    assert not output.exists()  # refused before anything was written


def test_every_bad_file_is_one_line_and_status_2_on_the_cli(bad_files, run_dir, capsys):
    for case in CASES:
        path, word = bad_files[case]
        _refused(capsys, ["predict", run_dir, path], str(path), word)


def test_channels_first_refusal_says_how_to_transpose(bad_files, run_dir):
    with pytest.raises(AnnzooError, match=r"np\.transpose\(x, \(0, 2, 3, 1\)\)"):
        predict_files(run_dir, [bad_files["npy channels first"][0]])


def test_unambiguous_layouts_give_the_same_predictions(run_dir, tmp_path):
    x = _images(4)
    model = keras.saving.load_model(run_dir / "best.keras")
    expected = model.predict(x, verbose=0)
    layouts = {
        "samples.npy": x,
        "flat.npy": x.reshape(4, 64),  # row-major, channels last: a CSV row
        "no_channel.npy": x[..., 0],
    }
    for name, array in layouts.items():
        got = load_inputs([_npy(tmp_path / name, array)], SHAPE)
        np.testing.assert_array_equal(got, x, err_msg=name)
    one = load_inputs([_npy(tmp_path / "one.npy", x[0])], SHAPE)
    np.testing.assert_array_equal(one, x[:1])
    # A CSV with a header; pandas' default header 0..63 counts as one.
    _csv(tmp_path / "named.csv", x.reshape(4, 64).tolist())
    pandas = tmp_path / "pandas.csv"
    rows = [",".join(map(str, range(64)))] + [
        ",".join(repr(float(v)) for v in row) for row in x.reshape(4, 64)
    ]
    pandas.write_text("\n".join(rows) + "\n")
    for path in (tmp_path / "named.csv", pandas):
        written = predict_files(run_dir, [path], output=tmp_path / f"{path.stem}.out")
        outputs = np.load(written.with_suffix(".npy"))
        np.testing.assert_allclose(outputs, expected, rtol=1e-5, atol=1e-6)
        lines = written.read_text().splitlines()
        assert len(lines) == 1 + 4  # header + every sample, the first one kept
        assert lines[1].startswith(f"{path}[0],")


# -- damaged run directories and recipe files ------------------------------------

DAMAGES = {
    "truncated": b'{"name": "digits_cnn", "mod',
    "empty": b"",
    "not UTF-8": b'{"name": "\xff\xfe"}',
    "a list": b"[1, 2]",
}


@pytest.mark.parametrize("damage", DAMAGES)
def test_damaged_recipe_json_is_named(damage, run_dir, tmp_path, capsys):
    damaged = tmp_path / "run"
    shutil.copytree(run_dir, damaged)
    recipe = damaged / "recipe.json"
    recipe.write_bytes(DAMAGES[damage])
    before = {p.name: p.read_bytes() for p in damaged.iterdir()}
    good = _npy(tmp_path / "x.npy", _images(2))
    _refused(capsys, ["predict", damaged, good], str(recipe))
    _refused(capsys, ["evaluate", damaged], str(recipe))
    assert {p.name: p.read_bytes() for p in damaged.iterdir()} == before


@pytest.mark.parametrize("suffix", [".json", ".yaml", ".py"])
def test_train_refuses_a_recipe_file_of_binary_junk(suffix, tmp_path, capsys):
    recipe = tmp_path / f"junk{suffix}"
    recipe.write_bytes(bytes(RNG.integers(0, 256, 400, dtype=np.uint8)) + b"\0")
    output = tmp_path / "runs"
    _refused(capsys, ["train", recipe, "--output-dir", output], str(recipe))
    assert not output.exists()


def test_beam_width_below_one_is_refused(run_dir, tmp_path, capsys):
    good = _npy(tmp_path / "x.npy", _images(1))
    _refused(capsys, ["predict", run_dir, good, "--beam-width", "0"], "--beam-width")
    with pytest.raises(AnnzooError, match="`beam_width`"):
        predict_texts(run_dir, ["a b"], beam_width=0)


@pytest.mark.slow
def test_cli_subprocess_prints_one_line_without_traceback(bad_files, run_dir):
    """The installed entry point, in a fresh process: status 2, one line.

    One damaged file: every kind of damage is refused in this process by the
    tests above; this one checks what the command prints around the refusal.
    """
    for case in ("png header then junk",):
        path = bad_files[case][0]
        done = subprocess.run(
            [sys.executable, "-m", "annzoo.cli", "predict", str(run_dir), str(path)],
            capture_output=True,
            text=True,
            timeout=300,
        )
        lines = [
            line
            for line in done.stderr.splitlines()
            if line.startswith("annzoo") or "Traceback" in line
        ]
        assert done.returncode == 2, done.stderr
        assert lines == [lines[0]] and str(path) in lines[0], done.stderr


# -- builders ------------------------------------------------------------------


def _boolean_parameters(builder) -> list[str]:
    """Parameters whose default is a bool or whose annotation names bool
    (``compile`` also takes a dict and has its own check)."""
    found = []
    for name, parameter in inspect.signature(builder).parameters.items():
        annotation = str(parameter.annotation)
        if name != "compile" and (
            isinstance(parameter.default, bool) or "bool" in annotation.split(" | ")
        ):
            found.append(name)
    return found


BOOLEANS = [
    (family, name)
    for family in registry.list_families()
    for name in _boolean_parameters(registry.builder(family))
]


def test_the_boolean_arguments_found_are_the_known_ones():
    # If a builder gains a boolean argument, it is checked by the test below.
    assert {"batch_norm", "bidirectional", "crf"} <= {name for _, name in BOOLEANS}


@pytest.mark.parametrize("family,argument", BOOLEANS)
@pytest.mark.parametrize("value", ["yes", 1, 0.0])
def test_every_boolean_builder_argument_is_type_checked(family, argument, value):
    smoke = registry.family_spec(family).smoke
    with pytest.raises(AnnzooError, match=f"`{argument}` must be True"):
        registry.builder(family)(**{**smoke, argument: value, "compile": False})


@pytest.mark.parametrize("family", registry.list_families())
@pytest.mark.parametrize("name", ["", "   ", 3])
def test_every_builder_refuses_an_empty_or_non_string_name(family, name):
    smoke = registry.family_spec(family).smoke
    with pytest.raises(AnnzooError, match="`name` must be a non-empty string"):
        registry.builder(family)(**{**smoke, "name": name, "compile": False})


def test_mlp_refuses_what_cannot_fit_in_memory_before_building():
    with pytest.raises(AnnzooError, match=r"`num_outputs`.*memory"):
        annzoo.build_mlp(30, 10**13)
    with pytest.raises(AnnzooError, match=r"`hidden_units`.*10000000000"):
        annzoo.build_mlp((8, 8, 1), 10, hidden_units=[10_000_000_000])


@pytest.mark.parametrize("batch_norm", [False, True])
@pytest.mark.parametrize("hidden_units", [(), (7, 5)])
def test_mlp_size_bound_is_the_exact_parameter_count(
    batch_norm, hidden_units, monkeypatch
):
    """Memory of exactly the float32 weights is enough; one byte less is not."""
    args = dict(hidden_units=hidden_units, batch_norm=batch_norm, compile=False)
    count = annzoo.build_mlp((3, 2), 4, **args).count_params()
    monkeypatch.setattr(checks, "physical_memory", lambda: 4 * count)
    annzoo.build_mlp((3, 2), 4, **args)
    monkeypatch.setattr(checks, "physical_memory", lambda: 4 * count - 1)
    with pytest.raises(AnnzooError, match="memory"):
        annzoo.build_mlp((3, 2), 4, **args)


def test_cli_refuses_huge_hidden_units_before_making_a_run(tmp_path, capsys):
    output = tmp_path / "runs"
    argv = ["train", "digits_mlp", "--set", "model.hidden_units=[10000000000]"]
    _refused(capsys, [*argv, "--output-dir", output], "`hidden_units`", "memory")
    assert not output.exists() or not any(output.iterdir())


# -- compile_model: output activation against the task ---------------------------


def _model(activation, units=3, layer="dense"):
    inputs = keras.Input((4,))
    if layer == "softmax_layer":
        outputs = keras.layers.Softmax()(keras.layers.Dense(units)(inputs))
    else:
        outputs = keras.layers.Dense(units, activation=activation)(inputs)
    return keras.Model(inputs, outputs)


# (activation, task, from_logits) -> accepted? Derived from the losses: a
# probability loss needs the matching squashing output, or raw scores with
# from_logits=True; MSE regression needs an output that is not squashed.
COMPILE_CASES = [
    ("softmax", "multiclass", False, True),
    ("linear", "multiclass", True, True),
    ("linear", "multiclass", False, False),
    ("sigmoid", "multiclass", False, False),
    ("softmax", "multiclass", True, False),
    ("sigmoid", "binary", False, True),
    ("linear", "binary", True, True),
    ("linear", "binary", False, False),
    ("sigmoid", "binary", True, False),
    ("linear", "regression", False, True),
    ("relu", "regression", False, True),
    ("tanh", "regression", False, True),
    ("softmax", "regression", False, False),
    ("sigmoid", "regression", False, False),
]


@pytest.mark.parametrize("activation,task,from_logits,accepted", COMPILE_CASES)
def test_compile_model_checks_the_output_activation(
    activation, task, from_logits, accepted
):
    units = 1 if task == "binary" else 3
    model = _model(activation, units)
    if accepted:
        annzoo.compile_model(model, task=task, from_logits=from_logits)
        assert model.compiled
    else:
        with pytest.raises(AnnzooError, match=repr(activation)):
            annzoo.compile_model(model, task=task, from_logits=from_logits)


def test_softmax_layer_and_sequential_models_are_read_too():
    with pytest.raises(AnnzooError, match="'softmax'"):
        annzoo.compile_model(_model(None, layer="softmax_layer"), task="regression")
    sequential = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, "softmax")])
    with pytest.raises(AnnzooError, match="'regression'"):
        annzoo.compile_model(sequential, task="regression")


def test_a_loss_of_ones_own_is_not_second_guessed():
    model = _model("softmax")
    annzoo.compile_model(model, task="regression", loss="mse")
    assert model.compiled


@pytest.mark.parametrize("family", registry.list_families())
def test_every_family_still_compiles_for_its_smoke_task(family):
    smoke = registry.family_spec(family).smoke
    assert registry.builder(family)(**smoke).compiled


@pytest.mark.parametrize(
    "family,argument",
    [
        ("rnn", "vocabulary_size"),
        ("seq2seq", "vocabulary_size"),
        ("seq2seq", "target_vocabulary_size"),
    ],
)
def test_token_builders_refuse_a_vocabulary_too_large_for_memory(family, argument):
    smoke = registry.family_spec(family).smoke
    huge = {**smoke, argument: 10**13, "compile": False}
    with pytest.raises(AnnzooError, match=f"`{argument}`.*memory"):
        registry.builder(family)(**huge)

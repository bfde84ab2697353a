"""Issue 26: a property-based fuzz test of what the ``annzoo`` command reads.

Hypothesis generates malformed (and some well-formed) inputs:

- ``--set SECTION.FIELD=VALUE`` overrides of ``annzoo train``: values of the
  wrong type, bad numbers, unknown keys, YAML that does not parse;
- recipe files (``.json``) whose fields have the wrong type, are missing or
  unknown, and recipe files of damaged bytes;
- inputs of ``annzoo predict``: ``.npy``, ``.npz``, ``.csv`` and ``.png``
  files, well-formed or truncated, zeroed, garbled, of the wrong layout or
  holding NaN.

and asserts for each one: the command exits with status 2 and prints one
line (``annzoo: error: ...``) without a traceback, or it gives a correct
result; an input that is wrong by construction (the oracles below, written
from the documented contract, not from annzoo's code) is never accepted; no
file of an earlier good run changes.

``annzoo train`` runs in process with the runner replaced by a dry run of
every step before the first epoch (recipe checks, data loading and checks,
model building and compiling, input pipelines): what would train has passed
every check, which is all this test is about, and it keeps each example
fast. The examples are seeded (``derandomize=True``) and bounded for CI;
``ANNZOO_FUZZ_EXAMPLES=N`` runs N examples per test (see
docs/contributing.md). Each test prints its tally (inputs tried, one-line
errors, correct results, tracebacks, silent acceptances).
"""

from __future__ import annotations

import collections
import hashlib
import io
import json
import math
import os
import sys
import traceback
import zipfile
from pathlib import Path

import keras
import numpy as np
import pytest
import yaml

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import example, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

import annzoo  # noqa: E402
from annzoo import io as aio  # noqa: E402
from annzoo import tasks  # noqa: E402
from annzoo.cli import main  # noqa: E402
from annzoo.training import build, checks, distribute, inputs  # noqa: E402
from annzoo.training.recipe import find_recipe, load_recipe  # noqa: E402

VERBOSE = bool(os.environ.get("ANNZOO_FUZZ_VERBOSE"))
EXAMPLES = int(os.environ.get("ANNZOO_FUZZ_EXAMPLES", "0")) or None
FUZZ = settings(
    max_examples=EXAMPLES or 25,
    derandomize=EXAMPLES is None,  # CI: the same examples every run
    deadline=None,
    database=None,
    suppress_health_check=list(hypothesis.HealthCheck),
)
SHAPE = (8, 8, 1)
BASE_RECIPE = load_recipe(find_recipe("digits_mlp")).to_dict()
TALLY: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)


class _Accepted(Exception):
    """Raised by the dry run: the recipe passed every check before training."""


def _dry_train(recipe, *, output_dir, verbose, resume):
    """`annzoo.training.runner.train`'s steps up to the first epoch."""
    with tasks.mixed_precision(recipe.compile["mixed_precision"]):
        plan = distribute.plan(recipe.distribute)
        recipe = build.for_plan(recipe, plan)
        splits, model_args = inputs.prepare(recipe)
        checks.check_batches(recipe, len(splits["train"]), plan)
        checks.check_monitor(recipe, model_args)
        with plan.scope():
            model = build.build_model(recipe, model_args, plan.replicas)
        inputs.fit_inputs(recipe, splits, model, plan)
    raise _Accepted


def _run_cli(argv, capsys, *, recipe_code: Path | None = None) -> tuple[str, str]:
    """("refused" | "accepted" | "ok", the error line); fails on anything else.

    With ``recipe_code``, a Python recipe file, an exception raised by that
    file's own code is its own, kept with its traceback by design (see
    `annzoo.training.recipe.load_recipe`): outcome "recipe code".
    """
    try:
        status = main([str(a) for a in argv])
    except _Accepted:
        capsys.readouterr()
        return "accepted", ""
    except SystemExit as exit:  # argparse: usage line and status 2
        err = capsys.readouterr().err
        assert exit.code == 2, err
        return "refused", err.strip().splitlines()[-1]
    except Exception as error:  # a traceback for the user
        innermost = traceback.extract_tb(error.__traceback__)[-1].filename
        if recipe_code is not None and Path(innermost) == Path(recipe_code):
            capsys.readouterr()
            return "recipe code", f"{type(error).__name__}: {error}"
        raise AssertionError(f"traceback: {type(error).__name__}: {error}") from error
    err = capsys.readouterr().err
    lines = [line for line in err.strip().splitlines() if line]
    if status == 0:
        return "ok", ""
    assert status == 2, (status, err)
    assert "Traceback" not in err, err
    assert len(lines) == 1 and lines[0].startswith("annzoo: error: "), err
    return "refused", lines[0]


def _record(kind: str, outcome: str, must_refuse: bool, shown=None) -> None:
    if VERBOSE:
        print(f"{kind}: {outcome}: {shown}", file=sys.__stdout__)
    TALLY[kind]["tried"] += 1
    TALLY[kind][outcome] += 1
    if outcome != "refused" and must_refuse:
        TALLY[kind]["silently accepted"] += 1


def _snapshot(path: Path) -> dict[str, str]:
    return {
        str(p.relative_to(path)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(path.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def good_run(tmp_path_factory) -> Path:
    """A run directory as `annzoo predict` reads it, and what it holds."""
    path = tmp_path_factory.mktemp("fuzz") / "digits_cnn"
    path.mkdir()
    keras.utils.set_random_seed(0)
    model = annzoo.build_cnn(SHAPE, 10, filters=(4,), compile=False)
    aio.save_model(model, path / "best.keras")
    recipe = {"name": "digits_cnn", "model": {"name": "cnn"}, "data": {}}
    (path / "recipe.json").write_text(json.dumps(recipe))
    return path


@pytest.fixture
def dry_runner(monkeypatch):
    import annzoo.cli.recipes
    import annzoo.training.runner

    monkeypatch.setattr(annzoo.training.runner, "train", _dry_train)
    if hasattr(annzoo.cli.recipes, "train"):  # imported at the top of the module
        monkeypatch.setattr(annzoo.cli.recipes, "train", _dry_train)


# -- `--set` overrides -----------------------------------------------------------


def _positive_int(v):
    return isinstance(v, int) and not isinstance(v, bool) and v > 0


def _non_negative_int(v):
    return isinstance(v, int) and not isinstance(v, bool) and v >= 0


def _rate(v):
    return isinstance(v, int | float) and not isinstance(v, bool) and 0 <= v < 1


def _positive_number(v):
    return (
        isinstance(v, int | float)
        and not isinstance(v, bool)
        and math.isfinite(v)
        and v > 0
    )


# Which values the recipe's documented contract allows for each field
# (docs/recipes.md, the builders' docstrings): anything else must be refused.
def _int_list(v):
    return _positive_int(v) or (
        isinstance(v, list) and all(_positive_int(x) for x in v)
    )


FIELDS = {
    "fit.epochs": _positive_int,
    "fit.seed": _non_negative_int,
    "fit.steps_per_epoch": lambda v: v is None or _positive_int(v),
    "data.batch_size": _positive_int,
    "data.limit": lambda v: v is None or _positive_int(v),
    "data.pipeline": lambda v: v in ("auto", "tf.data", "numpy"),
    "data.label_format": lambda v: v in ("sparse", "one_hot"),
    "data.merge_validation": lambda v: isinstance(v, bool),
    "model.dropout": _rate,
    "model.hidden_units": _int_list,
    "model.activation": lambda v: isinstance(v, str),
    "compile.learning_rate": lambda v: v is None or _positive_number(v),
    "compile.optimizer": lambda v: isinstance(v, str),
    "compile.steps_per_execution": _positive_int,
    "compile.jit_compile": lambda v: v in ("auto", True, False),
    "callbacks.monitor": lambda v: (
        v in ("loss", "accuracy", "val_loss", "val_accuracy")
    ),
    "callbacks.early_stopping.patience": _non_negative_int,
    "callbacks.checkpoint": lambda v: isinstance(v, bool),
    "distribute.strategy": lambda v: isinstance(v, str),
}


def _dotted(data, prefix=""):
    for key, value in data.items():
        yield prefix + key
        if isinstance(value, dict):
            yield from _dotted(value, f"{prefix}{key}.")


# Keys and values without line breaks: the error echoes what it received, and
# a key holding a newline would be echoed on two lines.
printable = st.characters(blacklist_categories=("Cc", "Cs", "Zl", "Zp"))
yaml_scalars = st.one_of(
    st.integers(min_value=-(10**12), max_value=10**12),
    st.sampled_from([0, 1, -1, 2**63, 10**10, 10**13]),
    st.floats(allow_nan=False, allow_infinity=False, width=32),
    st.sampled_from([".nan", ".inf", "-.inf", "1e400", "-0.0"]),
    st.booleans(),
    st.none(),
    st.text(printable, max_size=12),
    st.sampled_from(["auto", "loss", "val_acc", "accuracy", "adam", "relu"]),
)


def _yaml(value) -> str:
    if isinstance(value, str) and value.startswith((".", "1e", "-")):
        return value  # YAML's own spelling of nan/inf, or a number
    return json.dumps(value)  # JSON is YAML


values = st.one_of(
    yaml_scalars.map(_yaml),
    st.lists(st.integers(min_value=-5, max_value=10**11), max_size=3).map(json.dumps),
    st.lists(st.text(printable, max_size=4), max_size=2).map(json.dumps),
    st.dictionaries(st.text(printable, max_size=4), st.integers(), max_size=2).map(
        json.dumps
    ),
    st.sampled_from(
        ["[1,", "{a:", "]", "- - -", ": :", "'", "!!python/object:os.system"]
    ),
    st.text(printable, max_size=16),
)
# Values the contract allows, so that accepted overrides are tried too.
VALID = {
    "fit.epochs": ["1", "7"],
    "fit.seed": ["0", "12"],
    "data.batch_size": ["8", "500"],
    "data.limit": ["null", "400"],
    "data.pipeline": ["numpy", "tf.data"],
    "model.dropout": ["0.0", "0.5"],
    "model.hidden_units": ["[]", "[16, 8]", "4"],
    "model.activation": ["tanh", "gelu"],
    "compile.learning_rate": ["0.01", "null"],
    "compile.optimizer": ["sgd", "rmsprop"],
    "callbacks.monitor": ["val_accuracy", "loss"],
    "callbacks.early_stopping.patience": ["0", "3"],
}
valid_overrides = st.sampled_from(sorted(VALID)).flatmap(
    lambda key: st.tuples(st.just(key), st.sampled_from(VALID[key]))
)
unknown_keys = st.one_of(
    st.text(printable, min_size=1, max_size=12),
    st.sampled_from(["fit.epochz", "model.hiden_units", "datum.batch_size", "fit"]),
).filter(
    lambda k: (
        k.split("=")[0].strip()
        not in {*FIELDS, *_dotted(BASE_RECIPE), "name", "description"}
    )
)


def test_set_overrides(tmp_path_factory, capsys, dry_runner, good_run):
    before = _snapshot(good_run)

    fuzzed = st.tuples(st.one_of(st.sampled_from(sorted(FIELDS)), unknown_keys), values)

    @FUZZ
    @given(case=st.one_of(fuzzed, fuzzed, valid_overrides))
    # Always tried as well: the reports of issue 26.
    @example(case=("callbacks.monitor", "val_acc"))
    @example(case=("model.hidden_units", "[10000000000]"))
    @example(case=("compile.learning_rate", ".nan"))
    @example(case=("fit.epochs", "0"))
    def check(case):
        key, raw = case
        output = tmp_path_factory.mktemp("runs")
        argv = ["train", "digits_mlp", "--set", f"{key}={raw}", "--output-dir", output]
        outcome, line = _run_cli([*argv, "--quiet"], capsys)
        name = key.split("=")[0].strip()
        if name in FIELDS:
            try:
                value = yaml.safe_load(raw) if raw.strip() else ""
            except yaml.YAMLError:
                value = raw
            must_refuse = not FIELDS[name](value)
        else:
            must_refuse = True  # an unknown field, or no field at all
        _record("--set overrides", outcome, must_refuse, f"{key}={raw} -> {line}")
        assert not (outcome != "refused" and must_refuse), (key, raw)
        assert not any(output.iterdir())  # nothing written by a refused command

    check()
    assert _snapshot(good_run) == before
    _report("--set overrides", capsys)


# -- recipe files ----------------------------------------------------------------


SECTIONS = [k for k, v in BASE_RECIPE.items() if isinstance(v, dict)]
wrong_values = st.one_of(
    st.integers(min_value=-3, max_value=-1),
    st.text(printable, max_size=6).filter(lambda s: s not in ("auto", "sparse")),
    st.lists(st.integers(), max_size=2),
    st.dictionaries(st.text(printable, max_size=3), st.integers(), max_size=2),
    st.floats(allow_nan=False, allow_infinity=False).filter(lambda f: f < 0),
)


@st.composite
def recipes(draw):
    """A recipe dict with one to three damages, and whether it must be refused
    (a field made wrong and then deleted is filled in by its default again)."""
    data = json.loads(json.dumps(BASE_RECIPE))
    wrong, broken, deleted = {}, False, set()
    for _ in range(draw(st.integers(1, 3))):
        kind = draw(st.sampled_from(["wrong", "unknown", "delete", "section", "top"]))
        section = draw(st.sampled_from(SECTIONS))
        if not isinstance(data.get(section), dict) or not data[section]:
            continue
        field = draw(st.sampled_from(sorted(data[section])))
        if kind == "wrong":
            value = draw(wrong_values)
            data[section][field] = value
            oracle = FIELDS.get(f"{section}.{field}")
            wrong[section, field] = oracle is not None and not oracle(value)
        elif kind == "unknown":
            name = draw(st.text(printable, min_size=1, max_size=8))
            fresh = name not in data[section] and (section, name) not in deleted
            if fresh and section != "model":
                data[section][name] = 1
                wrong[section, name] = True
        elif kind == "delete":
            del data[section][field]  # defaults may fill it in: no oracle
            deleted.add((section, field))
            wrong.pop((section, field), None)
        elif kind == "section":
            data[section] = draw(st.sampled_from([[], "x", 3]))
            broken = True
        else:
            data[draw(st.sampled_from(["nmae", "modle", "extra"]))] = {}
            broken = True
    return data, broken or any(wrong.values())


def test_recipe_files(tmp_path_factory, capsys, dry_runner, good_run):
    before = _snapshot(good_run)

    @FUZZ
    @given(case=recipes())
    def check(case):
        data, must_refuse = case
        folder = tmp_path_factory.mktemp("recipe")
        path = folder / "fuzzed.json"
        path.write_text(json.dumps(data))
        argv = ["train", path, "--output-dir", folder / "runs", "--quiet"]
        outcome, line = _run_cli(argv, capsys)
        _record("recipe files", outcome, must_refuse, line)
        assert not (outcome != "refused" and must_refuse), data
        assert not (folder / "runs").exists()

    check()
    assert _snapshot(good_run) == before
    _report("recipe files", capsys)


def test_damaged_recipe_files(tmp_path_factory, capsys, dry_runner):
    good = {
        ".json": json.dumps(BASE_RECIPE),
        ".yaml": yaml.safe_dump(BASE_RECIPE, sort_keys=False),
        ".py": Path(find_recipe("digits_mlp")).read_text(),
    }

    @FUZZ
    @given(
        junk=st.one_of(
            st.just(b""),
            st.binary(max_size=64),
            st.text(printable, max_size=32).map(str.encode),
        ),
        suffix=st.sampled_from(sorted(good)),
        keep=st.integers(0, 600),
    )
    def check(junk, suffix, keep):
        folder = tmp_path_factory.mktemp("damaged")
        body = good[suffix].encode()
        path = folder / f"damaged{suffix}"
        path.write_bytes(body[:keep] + junk)  # truncated, then junk
        argv = ["train", path, "--output-dir", folder / "runs", "--quiet"]
        outcome, line = _run_cli(argv, capsys, recipe_code=path)
        # JSON and YAML recipes start with `name` then `model`: cut off before
        # the model's name, the file cannot be the recipe (a .py file cut
        # anywhere may still define one: no oracle).
        model = body.find(b"mlp")
        must_refuse = suffix != ".py" and keep < model
        _record("damaged recipe files", outcome, must_refuse, line)
        assert not (outcome != "refused" and must_refuse), (suffix, keep, junk)

    check()
    _report("damaged recipe files", capsys)


# -- files given to `annzoo predict` --------------------------------------------


def _npy_bytes(array) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()


def _npz_bytes(array, compressed) -> bytes:
    buffer = io.BytesIO()
    (np.savez_compressed if compressed else np.savez)(buffer, x=array)
    return buffer.getvalue()


def _csv_bytes(array, header: bool) -> bytes:
    rows = array.reshape(len(array), math.prod(array.shape[1:]))
    lines = [",".join(f"c{i}" for i in range(rows.shape[1]))] if header else []
    lines += [",".join(repr(float(v)) for v in row) for row in rows]
    return ("\n".join(lines) + "\n").encode()


def _png_bytes(size: int, rng) -> bytes:
    from PIL import Image

    image = Image.fromarray(rng.integers(0, 255, (size, size), dtype=np.uint8))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


@st.composite
def predict_inputs(draw):
    """(file name, bytes, samples when well-formed or None when it must be
    refused, False when either outcome is right)."""
    seed = draw(st.integers(0, 2**16))
    rng = np.random.default_rng(seed)
    n = draw(st.integers(0, 4))
    layout = draw(st.sampled_from(["nhwc", "flat", "nhw", "nchw", "wrong", "one"]))
    shapes = {
        "nhwc": (n, *SHAPE),
        "flat": (n, 64),
        "nhw": (n, 8, 8),
        "nchw": (n, 1, 8, 8),
        "wrong": (n, draw(st.sampled_from([5, 63, 65, 128]))),
        "one": SHAPE,
    }
    array = rng.random(shapes[layout]).astype(
        draw(st.sampled_from(["float32", "float64", "int16", "uint8"]))
    )
    samples = 1 if layout == "one" else n
    valid = layout not in ("nchw", "wrong") and samples > 0
    if draw(st.booleans()) and array.size and array.dtype.kind == "f":
        array.flat[draw(st.integers(0, array.size - 1))] = draw(
            st.sampled_from([np.nan, np.inf, -np.inf])
        )
        valid = False
    kind = draw(st.sampled_from([".npy", ".npz", ".csv", ".png"]))
    if kind == ".npy":
        body = _npy_bytes(array)
    elif kind == ".npz":
        body = _npz_bytes(array, draw(st.booleans()))
    elif kind == ".csv":
        header = draw(st.booleans())
        body = _csv_bytes(array[None] if layout == "one" else array, header)
        # Rows of 64 values whatever the array's layout; the header is required.
        valid = (
            header and layout != "wrong" and samples > 0 and np.isfinite(array).all()
        )
    else:
        body, samples, valid = _png_bytes(draw(st.integers(1, 12)), rng), 1, True
    damage = draw(
        st.sampled_from(
            ["none", "none", "none", "truncate", "zero", "garble", "junk", "csvrow"]
        )
    )

    expected: int | None | bool = samples if valid else None
    if damage == "truncate" and len(body) > 1:
        full = len(body)
        cut = draw(st.integers(0, full - 1))
        body = body[:cut]
        # A CSV cut at a row boundary is a shorter, valid CSV; Pillow decodes
        # a PNG cut after its last pixel's compressed data (without checking
        # the CRC or the end chunk) to the right pixels: no oracle for those.
        expected = False if kind in (".csv", ".png") else None
    elif damage == "zero":
        body = bytes(len(body))
        expected = None
    elif damage == "garble" and body:
        at = draw(st.integers(0, len(body) - 1))
        body = body[:at] + bytes([body[at] ^ 0xFF]) + body[at + 1 :]
        expected = False  # may hit a byte that does not matter
    elif damage == "junk":
        body = draw(st.binary(min_size=0, max_size=300))
        expected = None
    elif damage == "csvrow" and kind == ".csv":
        body += draw(st.sampled_from([b"1,2\n", b"a,b,c\n", b",,,\n", b"\xff\xfe\n"]))
        expected = None
    return f"input{kind}", body, expected


def test_predict_inputs(tmp_path_factory, capsys, good_run):
    before = _snapshot(good_run)

    nan = np.random.default_rng(0).random((3, *SHAPE)).astype("float32")
    nan[1, 2, 3, 0] = np.nan

    @FUZZ
    @given(case=predict_inputs())
    # Always tried as well: the reports of issue 26.
    @example(case=("input.npy", _npy_bytes(nan), None))
    @example(case=("input.npy", _npy_bytes(nan[:, None, :, :, 0]), None))  # NCHW
    @example(case=("input.csv", _csv_bytes(np.nan_to_num(nan), False), None))
    @example(case=("input.npy", _npy_bytes(np.nan_to_num(nan))[:-7], None))  # cut
    def check(case):
        name, body, expected = case
        folder = tmp_path_factory.mktemp("predict")
        path = folder / name
        path.write_bytes(body)
        output = folder / "out" / "predictions.csv"
        argv = ["predict", good_run, path, "--output", output]
        outcome, line = _run_cli(argv, capsys)
        must_refuse = expected is None
        _record("predict inputs", outcome, must_refuse, f"{expected}: {line}")
        assert not (outcome != "refused" and must_refuse), (name, len(body))
        well_formed = expected is not None and expected is not False
        if well_formed:
            assert outcome == "ok", (name, expected)  # well-formed: a result
        if outcome == "ok":
            rows = output.read_text().strip().splitlines()
            assert rows[0].startswith("source,prediction"), rows[0]
            if well_formed:
                assert len(rows) - 1 == expected  # one row per sample, none lost

    check()
    assert _snapshot(good_run) == before
    _report("predict inputs", capsys)


def _report(kind: str, capsys) -> None:
    """Prints this kind's tally: inputs tried, one-line errors, correct results
    (well-formed inputs, or recipes that passed every check before training),
    tracebacks (always 0 here: the first one fails the test), silently
    accepted (likewise)."""
    counts = TALLY[kind]
    own = counts["recipe code"]
    with capsys.disabled():
        print(
            f"\nfuzz {kind}: {counts['tried']} tried, {counts['refused']} one-line "
            f"errors, {counts['ok'] + counts['accepted']} correct results, 0 "
            f"tracebacks, {counts['silently accepted']} silently accepted"
            + (f", {own} errors of a damaged recipe's own Python code" if own else "")
        )


def test_zip_damage_is_detected_by_numpy_or_zipfile():
    """The oracle's premise for truncated archives: they cannot be read."""
    body = _npz_bytes(np.zeros((2, 64), "float32"), False)
    with pytest.raises((zipfile.BadZipFile, ValueError, EOFError, OSError)):
        np.load(io.BytesIO(body[: len(body) // 2]))["x"]

"""The `annzoo` command answers at once and starts the backend quietly.

``--help``, ``list``, ``info``, ``datasets``, ``recipes`` and every usage
error read plain data (`annzoo.registry.plain_info`, the datasets' and the
recipes' files) and import no Keras nor any backend; the tables they read
must agree with the registry and the datasets they describe. Commands that
train import TensorFlow with its start-up lines filtered out (the filter
here; the whole command in tests/test_cli.py's `run_dir`).
"""

from __future__ import annotations

import json
import os

from annzoo import datasets, registry
from annzoo.cli import _startup
from annzoo.cli import models as cli_models
from annzoo.cli import recipes as cli_recipes
from tests.conftest import run_python

HEAVY = ("tensorflow", "keras", "jax", "torch")

# Each command runs in one fresh interpreter, in this order; after each, no
# backend module may be loaded. (argparse exits with SystemExit 0 or 2.)
LIGHT_COMMANDS = [
    ["--help"],
    ["list"],
    ["list", "resnet*"],
    ["info", "lenet5"],
    ["info", "lenet5", "--json"],
    ["info", "cnn"],
    ["datasets"],
    ["recipes"],
    ["recipes", "digits_*", "--json"],
    ["train", "--help"],
    ["tune", "--help"],
    ["generate", "--help"],
    # usage errors: argparse's, and annzoo's own before the backend starts
    [],
    ["bogus"],
    ["train"],
    ["train", "digits_mlp", "--distribute", "bogus"],
    ["train", "digits_mlp", "--epochs", "two"],
    ["train", "no_such_recipe"],
    ["tune", "no_such_recipe"],
    ["finetune", "runs/x", "no_such_recipe"],
    ["info", "resnet2O"],
    ["list", "nomatch*"],
    ["predict", "runs/x"],
    ["export", "runs/x", "--step", "--format", "keras"],
]

PROBE = f"""
import contextlib, io, json, sys
from annzoo.cli import main
report = []
for argv in json.loads(sys.argv[1]):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(argv)
        except SystemExit as exit:
            code = exit.code
    loaded = [m for m in {HEAVY!r} if m in sys.modules]
    report.append({{"argv": argv, "code": code, "loaded": loaded,
                   "out": out.getvalue()[-1000:], "err": err.getvalue()[-1000:]}})
print(json.dumps(report))
"""


def test_light_commands_and_usage_errors_import_no_backend(tmp_path):
    done = run_python("-c", PROBE, json.dumps(LIGHT_COMMANDS))
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert [r["argv"] for r in report] == LIGHT_COMMANDS
    for row in report:
        assert row["loaded"] == [], row
        expected = 0 if row["argv"][-1:] in (["--help"],) else None
        if expected is not None:
            assert row["code"] == 0, row
    codes = {tuple(r["argv"]): r["code"] for r in report}
    assert codes[("list",)] == codes[("recipes",)] == codes[("info", "cnn")] == 0
    for argv in LIGHT_COMMANDS[12:]:  # the usage errors
        assert codes[tuple(argv)] == 2, (argv, report)
    errors = {tuple(r["argv"]): r["err"] for r in report}
    assert "no_such_recipe" in errors[("train", "no_such_recipe")]
    assert "digits_mlp" in errors[("train", "no_such_recipe")]  # the known names
    assert "resnet2O" in errors[("info", "resnet2O")]
    step = errors[("export", "runs/x", "--step", "--format", "keras")]
    assert "--step" in step and "keras" in step, step
    bad_choice = errors[("train", "digits_mlp", "--distribute", "bogus")]
    assert "invalid choice: 'bogus'" in bad_choice


def test_plain_model_table_agrees_with_the_registry():
    """``registry_metadata.json`` is written from the registry; when this fails,
    rewrite it: ``python -m annzoo.registry``."""
    table = registry.metadata_table()
    plain = registry._plain_table()
    assert plain["presets"] == tuple(table["presets"])
    assert plain["families"] == tuple(table["families"])
    assert set(plain["models"]) == set(table["models"])
    for name in table["models"]:
        assert registry.plain_info(name) == registry.model_info(name), name
        assert registry.plain_family(name) == registry.model_info(name).family
    assert registry.plain_names("resnet*") == registry.list_models("resnet*")


def test_plain_dataset_table_agrees_with_the_datasets():
    """When this fails, rewrite the table:
    ``python -c "from annzoo import datasets; datasets.write_metadata()"``."""
    table = json.loads(cli_models.DATASETS_TABLE.read_text())
    assert cli_models.DATASETS_TABLE == datasets.METADATA_FILE
    assert list(table) == datasets.list_datasets()
    for name, plain in table.items():
        info = datasets.dataset_info(name)
        assert plain["task"] == info["task"], name
        assert tuple(plain["input_shape"]) == tuple(info["input_shape"]), name
        assert plain["num_samples"] == info["num_samples"], name


def test_the_cli_copy_of_the_strategies_agrees():
    from annzoo.training import distribute

    assert cli_recipes.STRATEGIES == distribute.STRATEGIES


NOISE = (
    b"WARNING: All log messages before absl::InitializeLog() is called are "
    b"written to STDERR\n"
    b"I0000 00:00:1796554579.615181   27111 port.cc:153] oneDNN custom operations "
    b"are on. You may see slightly different numerical results.\n"
    b"I0000 00:00:1796554579.615816   27111 cudart_stub.cc:31] Could not find cuda "
    b"drivers on your machine, GPU will not be used.\n"
    b"I0000 00:00:1796554579.855322   27111 cpu_feature_guard.cc:227] This "
    b"TensorFlow binary is optimized to use available CPU instructions.\n"
    b"To enable the following instructions: AVX2 AVX512F FMA, in other "
    b"operations, rebuild TensorFlow with the appropriate compiler flags.\n"
)


def test_startup_lines_are_filtered_and_other_lines_kept(capfd):
    with _startup._filtered_stderr():
        os.write(2, NOISE + b"W0000 00:00:17.5  1 real.cc:1] a real warning\n")
        os.write(2, b"Traceback: an import error\n")
    err = capfd.readouterr().err
    assert err == (
        "W0000 00:00:17.5  1 real.cc:1] a real warning\nTraceback: an import error\n"
    )

"""Issue 26: what depends on the run is checked before the run starts.

- ``callbacks.monitor`` and the tuner's ``objective`` against the names the
  compiled model will log (compared here with the keys of a real ``fit``'s
  history, not with annzoo's own list);
- a search whose every trial failed is an error, not a success;
- ``--output-dir`` / ``--output`` that can never be written, refused before
  any data is loaded or model built, for every command that writes;
- sizes that cannot fit in memory, refused before any layer is built, in
  every family (the estimate never exceeds Keras' own parameter count, so a
  model that fits is never refused).

In process, on tiny models; the one search runs a single one-epoch trial.
"""

from __future__ import annotations

import os
import sys

import keras
import numpy as np
import pytest

import annzoo
from annzoo import AnnzooError, registry
from annzoo import _checks as checks
from annzoo.cli import main
from annzoo.training import checks as run_checks
from annzoo.training.recipe import find_recipe, load_recipe
from annzoo.tuning import reports

ROOT_BYPASSES = os.geteuid() == 0 if hasattr(os, "geteuid") else False


def _refused(capsys, argv, *fragments) -> str:
    """The CLI exits 2 with one line naming every fragment, and no traceback."""
    status = main([str(a) for a in argv])
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert status == 2, err
    assert lines and lines[-1].startswith("annzoo: error: "), err
    assert "Traceback" not in err
    for fragment in fragments:
        assert fragment in lines[-1], (fragment, lines[-1])
    return lines[-1]


# -- the names a compiled model logs --------------------------------------------


def _fit_keys(task, units, y, *, validation=True):
    keras.utils.set_random_seed(0)
    model = annzoo.build_mlp(3, units, hidden_units=(), task=task)
    x = np.random.default_rng(0).random((4, 3), dtype=np.float32)
    data = (x, y) if validation else None
    history = model.fit(x, y, validation_data=data, epochs=1, verbose=0)
    return set(history.history)


@pytest.mark.parametrize(
    "task,units,y,validation",
    [
        ("multiclass", 3, np.array([0, 1, 2, 1]), True),
        ("multiclass", 3, np.array([0, 1, 2, 1]), False),
        ("binary", 1, np.array([0, 1, 1, 0]), True),
        ("regression", 1, np.array([0.5, 1.0, 2.0, 3.0], dtype=np.float32), True),
    ],
)
def test_reported_metrics_are_what_fit_logs(task, units, y, validation):
    expected = _fit_keys(task, units, y, validation=validation)
    names = run_checks.reported_metrics(task, validation=validation)
    assert set(names) == expected


def _recipe(*overrides):
    return load_recipe(find_recipe("digits_mlp")).override(list(overrides))


def test_monitor_is_checked_against_the_task_with_did_you_mean():
    recipe = _recipe("callbacks.monitor=val_acc")
    with pytest.raises(AnnzooError) as caught:
        run_checks.check_monitor(recipe, {"task": "multiclass"})
    message = str(caught.value)
    assert "`callbacks.monitor`" in message and "'val_acc'" in message
    assert "Did you mean 'val_accuracy'?" in message
    assert "'val_loss'" in message  # the accepted names are listed
    # The same name is right for a regression's metric...
    run_checks.check_monitor(
        _recipe("callbacks.monitor=val_mae"), {"task": "regression"}
    )
    # ...and wrong for a classifier, and for a CRF tagger (no metric at all).
    with pytest.raises(AnnzooError, match="callbacks.monitor='val_mae'"):
        run_checks.check_monitor(_recipe("callbacks.monitor=val_mae"), {})
    with pytest.raises(AnnzooError, match="'accuracy'"):
        run_checks.check_monitor(
            _recipe("callbacks.monitor=accuracy"), {"task": "multiclass", "crf": True}
        )


def test_without_validation_data_only_training_names_are_accepted():
    merged = ("data.merge_validation=true",)
    run_checks.check_monitor(_recipe(*merged, "callbacks.monitor=accuracy"), {})
    recipe = _recipe("callbacks.monitor=accuracy")
    run_checks.check_monitor(recipe, {})  # with validation data too
    data = recipe.to_dict()
    data["data"]["merge_validation"] = True
    data["callbacks"]["monitor"] = "val_accuracy"
    recipe = type(recipe).from_dict(data)  # not validated: the late check alone
    with pytest.raises(AnnzooError, match="no validation data"):
        run_checks.check_monitor(recipe, {})


def test_cli_refuses_a_monitor_before_making_a_run(tmp_path, capsys):
    output = tmp_path / "runs"
    argv = ["train", "digits_mlp", "--set", "callbacks.monitor=val_acc"]
    _refused(
        capsys,
        [*argv, "--output-dir", output, "--quiet"],
        "`callbacks.monitor`",
        "'val_acc'",
        "Did you mean 'val_accuracy'?",
    )
    assert not output.exists() or not any(output.iterdir())


# -- the tuner's objective, and searches whose trials all failed ------------------


def test_tune_refuses_a_bogus_objective_before_any_trial(tmp_path, capsys):
    output = tmp_path / "tuning"
    argv = ["tune", "digits_mlp", "--max-trials", "1", "--objective", "bogus"]
    line = _refused(
        capsys, [*argv, "--output-dir", output, "--quiet"], "`objective`", "'bogus'"
    )
    assert "'val_accuracy'" in line
    assert not (output / "digits_mlp").exists()
    argv[-1] = "val_acc"
    _refused(capsys, [*argv, "--output-dir", output, "--quiet"], "Did you mean")


def test_a_search_whose_every_trial_failed_exits_2(tmp_path, capsys, monkeypatch):
    """With the objective check switched off, keras-tuner fails the trial at
    its end (no 'bogus' in the logs): that must not end as a success."""
    from annzoo.tuning.hypermodel import AnnzooHyperModel

    monkeypatch.setattr(AnnzooHyperModel, "check_objective", lambda self, o: o)
    output = tmp_path / "tuning"
    argv = ["tune", "digits_mlp", "--max-trials", "1", "--objective", "bogus"]
    argv += ["--epochs", "1", "--output-dir", output, "--quiet"]
    status = main([str(a) for a in argv])
    # keras-tuner itself prints each failed trial's traceback as it goes on;
    # annzoo's verdict is the last line, and the exit status.
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert status == 2
    assert line.startswith("annzoo: error: Every trial of the search"), line
    search = output / "digits_mlp"
    assert str(search / "search" / "trial_0" / "trial.json") in line
    rows = (search / "trials.csv").read_text().splitlines()
    assert len(rows) == 2 and ",FAILED," in rows[1]


def test_check_completed_and_failed_search(tmp_path):
    failed = {"trial_id": "3", "status": "FAILED"}
    done = {"trial_id": "4", "status": "COMPLETED"}
    reports.check_completed(tmp_path, [])  # nothing ran: nothing to say
    reports.check_completed(tmp_path, [failed, done])
    with pytest.raises(reports.TrialsFailedError, match="trial_3"):
        reports.check_completed(tmp_path, [failed, dict(failed, trial_id="5")])
    error = RuntimeError("Number of consecutive failures exceeded the limit of 3.\nTB")
    found = reports.failed_search(tmp_path, error)
    assert isinstance(found, AnnzooError) and "limit of 3" in str(found)
    assert "\n" not in str(found)
    assert reports.failed_search(tmp_path, RuntimeError("other")) is None


# -- destinations that can never be written ---------------------------------------


@pytest.fixture
def no_work(monkeypatch):
    """Fails the test if a command gets as far as loading data or training."""

    def forbidden(*args, **kwargs):
        raise AssertionError("reached training or data loading")

    import annzoo.cli.recipes
    import annzoo.cli.runs
    import annzoo.export
    import annzoo.predict
    import annzoo.training.runner
    import annzoo.tuning

    # Where the commands find them, whether imported at the top of the CLI's
    # modules or in the functions that run them.
    for module, name in [
        (annzoo.training.runner, "train"),
        (annzoo.cli.recipes, "train"),
        (annzoo.tuning, "tune"),
        (annzoo.predict, "predict_files"),
        (annzoo.cli.runs, "predict_files"),
        (annzoo.export, "export"),
        (annzoo.cli.runs, "export"),
    ]:
        if hasattr(module, name):
            monkeypatch.setattr(module, name, forbidden)


def _bad_destinations(tmp_path):
    a_file = tmp_path / "a_file"
    a_file.write_text("not a directory")
    directory = tmp_path / "a_dir"
    directory.mkdir()
    return a_file, directory


@pytest.mark.parametrize("command", ["train", "tune", "finetune"])
def test_output_dir_naming_a_file_is_refused_first(command, tmp_path, capsys, no_work):
    a_file, _ = _bad_destinations(tmp_path)
    head = {
        "train": ["train", "digits_mlp"],
        "tune": ["tune", "digits_mlp"],
        # Any existing path passes the recipe's check of `finetune.source`.
        "finetune": ["finetune", a_file, "digits_mlp"],
    }[command]
    _refused(capsys, [*head, "--output-dir", a_file], "`--output-dir`", "existing file")
    under = a_file / "runs"
    _refused(capsys, [*head, "--output-dir", under], "is a file, not a directory")
    assert a_file.read_text() == "not a directory"


def test_predict_and_export_outputs_are_checked_first(tmp_path, capsys, no_work):
    a_file, directory = _bad_destinations(tmp_path)
    run = tmp_path / "run"
    run.mkdir()
    (run / "x.npy").write_bytes(b"")
    predict = ["predict", run, run / "x.npy", "--output"]
    _refused(capsys, [*predict, directory], "`--output`", "existing directory")
    _refused(capsys, [*predict, a_file / "p.csv"], "is a file, not a directory")
    export = ["export", run, "--output"]
    _refused(capsys, [*export, directory], "existing directory")
    _refused(capsys, [*export, a_file, "--format", "savedmodel"], "existing file")


def test_output_path_check(tmp_path):
    a_file, directory = _bad_destinations(tmp_path)
    assert checks.check_output_path("d", directory / "new" / "deeper", directory=True)
    checks.check_output_path("f", a_file, directory=False)  # replaced atomically
    for value in ("", "a\x00b", 3, None):
        with pytest.raises(AnnzooError, match="must be a path"):
            checks.check_output_path("d", value, directory=True)


@pytest.mark.skipif(
    ROOT_BYPASSES,
    reason="running as root: the kernel lets root write in a chmod 500 "
    "directory, and os.access says so, so there is nothing to refuse",
)
def test_unwritable_output_dir_is_refused(tmp_path, capsys, no_work):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        _refused(
            capsys,
            ["train", "digits_mlp", "--output-dir", locked / "runs"],
            "may not create files in",
        )
    finally:
        locked.chmod(0o700)


def test_root_sees_a_chmod_500_directory_as_writable(tmp_path):
    """Why the test above is skipped as root: the check follows the kernel."""
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        writable = os.access(locked, os.W_OK | os.X_OK)
        if writable:
            (locked / "probe").write_text("root writes here")
            checks.check_output_path("d", locked / "runs", directory=True)
        else:
            with pytest.raises(AnnzooError, match="may not create files"):
                checks.check_output_path("d", locked / "runs", directory=True)
    finally:
        locked.chmod(0o700)


# -- sizes that cannot fit in memory ----------------------------------------------

HUGE = 10**10

# (family, argument, huge value, further arguments): a size the user controls.
SIZE_CASES = [
    ("cnn", "filters", [8, HUGE], {}),
    ("cnn", "hidden_units", [HUGE], {}),
    ("cnn", "num_classes", HUGE, {}),
    ("cnn", "kernel_size", 10**5, {}),
    ("cnn", "depth", HUGE, {}),
    ("cnn", "input_shape", (HUGE, HUGE, 1), {}),
    ("transformer", "d_model", HUGE, {"num_heads": 1}),
    ("transformer", "ff_dim", HUGE, {}),
    ("transformer", "num_layers", HUGE, {}),
    ("transformer", "vocabulary_size", HUGE, {}),
    ("transformer", "num_classes", HUGE, {}),
    ("captioning", "filters", [4, HUGE], {}),
    ("captioning", "units", HUGE, {}),
    ("captioning", "embedding_dim", HUGE, {}),
    ("captioning", "vocabulary_size", HUGE, {}),
    ("applications", "num_classes", 10**13, {}),
    ("rnn", "units", [HUGE], {}),
    ("rnn", "embedding_dim", HUGE, {}),
    ("seq2seq", "units", HUGE, {}),
    ("seq2seq", "embedding_dim", HUGE, {}),
]


@pytest.fixture
def no_layers(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("a layer was built before the size check")

    monkeypatch.setattr(keras, "Input", refuse)


@pytest.mark.parametrize("family,argument,value,extra", SIZE_CASES)
def test_sizes_that_cannot_fit_are_refused_before_any_layer(
    family, argument, value, extra, no_layers
):
    smoke = registry.family_spec(family).smoke
    arguments = {**smoke, **extra, argument: value, "compile": False}
    with pytest.raises(AnnzooError, match=rf"^`{argument}` makes a model.*memory"):
        registry.builder(family)(**arguments)


# Variants whose estimate is compared with Keras' own count.
VARIANTS = [
    ("cnn", {}),
    ("cnn", {"block": "basic", "filters": (4, 8), "depth": 2, "stem": "cifar"}),
    ("cnn", {"block": "bottleneck", "filters": (4, 8), "depth": (2, 3)}),
    ("cnn", {"head": "avg", "hidden_units": (7, 5), "padding": "valid"}),
    ("transformer", {}),
    ("transformer", {"key_dim": 6, "position": "sinusoidal", "hidden_units": (5,)}),
    ("captioning", {}),
    ("captioning", {"cell": "lstm"}),
    ("rnn", {}),
    ("rnn", {"bidirectional": True, "units": (4, 3), "cell": "gru"}),
    ("seq2seq", {}),
    ("seq2seq", {"cell": "lstm", "bidirectional": True, "encoder_layers": 2}),
]


@pytest.mark.parametrize("family,extra", VARIANTS)
def test_memory_of_the_real_weights_is_always_enough(family, extra, monkeypatch):
    """The estimate is a lower bound: with memory for exactly Keras' count of
    float32 weights the builder still builds (no model that fits is refused),
    and with 4 bytes less than the estimate's own weights it is refused."""
    smoke = registry.family_spec(family).smoke
    arguments = {**smoke, **extra, "compile": False}
    count = registry.builder(family)(**arguments).count_params()
    monkeypatch.setattr(checks, "physical_memory", lambda: 4 * count)
    registry.builder(family)(**arguments)
    monkeypatch.setattr(checks, "physical_memory", lambda: 4)
    with pytest.raises(AnnzooError, match="memory"):
        registry.builder(family)(**arguments)


def test_transformer_variants_are_estimated_too(monkeypatch):
    vit = dict(
        variant="vit", input_shape=(8, 8, 3), patch_size=4, num_classes=5,
        d_model=8, num_heads=2, ff_dim=16, compile=False,
    )  # fmt: skip
    translator = dict(
        variant="encoder_decoder", vocabulary_size=50, sequence_length=7,
        target_vocabulary_size=40, target_sequence_length=5, d_model=8,
        num_heads=2, ff_dim=16, decoder_layers=3, compile=False,
    )  # fmt: skip
    counts = [annzoo.build_transformer(**a).count_params() for a in (vit, translator)]
    for arguments, count in zip((vit, translator), counts, strict=True):
        monkeypatch.setattr(checks, "physical_memory", lambda c=count: 4 * c)
        annzoo.build_transformer(**arguments)
    with pytest.raises(AnnzooError, match="`patch_size` makes"):
        annzoo.build_transformer(**{**vit, "input_shape": (HUGE, HUGE, 3),
                                    "patch_size": HUGE})  # fmt: skip
    with pytest.raises(AnnzooError, match="`target_vocabulary_size` makes"):
        annzoo.build_transformer(**{**translator, "target_vocabulary_size": HUGE})


def test_cli_refuses_huge_filters_before_making_a_run(tmp_path, capsys):
    output = tmp_path / "runs"
    argv = ["train", "digits_cnn", "--set", "model.filters=[10000000000]"]
    _refused(capsys, [*argv, "--output-dir", output], "`filters`", "memory")
    assert not output.exists() or not any(output.iterdir())


def test_parameter_terms_charge_the_biggest_factor():
    memory = checks.physical_memory()
    if memory is None:
        pytest.skip("this machine does not report its memory")
    big = memory  # float32: 4 * memory bytes
    terms = [
        (10, [("a", 1, 10)]),
        (big, [("a", 1, 5), ("b", "B", 7)]),
        (big, [("c", "C", 100), ("b", "B", 7)]),
        (1, [("c", "C", 100)]),
    ]
    with pytest.raises(AnnzooError, match=r"^`c` makes .*Received: c='C'"):
        checks.check_parameter_terms(terms)
    checks.check_parameter_terms(terms[:1])


# -- networks too deep for Keras to build ------------------------------------------


@pytest.fixture
def shallow_stack():
    """A recursion limit 60 frames above the current depth, so that a chain
    of 80 layers (cheap to build) is past it as 1000 are by default."""
    depth, frame = 0, sys._getframe()
    while frame is not None:
        depth, frame = depth + 1, frame.f_back
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(depth + 60)
    yield
    sys.setrecursionlimit(limit)


@pytest.mark.parametrize(
    "family,argument,value",
    [
        ("mlp", "hidden_units", [2] * 80),
        ("cnn", "depth", 80),
        ("seq2seq", "encoder_layers", 80),
    ],
)
def test_networks_too_deep_to_trace_are_one_sentence(
    family, argument, value, shallow_stack
):
    smoke = registry.family_spec(family).smoke
    arguments = {**smoke, argument: value, "compile": False}
    with pytest.raises(AnnzooError, match=rf"`{argument}`.*too deep.*recursion"):
        registry.builder(family)(**arguments)

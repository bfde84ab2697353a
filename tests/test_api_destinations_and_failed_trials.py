"""Issue 26 leftovers: the Python API checks its destination before any work,
and a search prints one line per failed trial, keeping the traceback in the
trial's record instead of printing it.
"""

from __future__ import annotations

import json

import pytest

from annzoo.errors import AnnzooError
from annzoo.training import inputs
from annzoo.training.recipe import find_recipe, load_recipe


@pytest.fixture
def no_data(monkeypatch):
    """Fails the test if the call gets as far as loading data."""

    def forbidden(*args, **kwargs):
        raise AssertionError("reached data loading")

    monkeypatch.setattr(inputs, "prepare", forbidden)


def _recipe():
    return load_recipe(find_recipe("digits_mlp"))


@pytest.mark.parametrize("api", ["train", "tune"])
def test_api_output_dir_naming_a_file_is_refused_first(api, tmp_path, no_data):
    from annzoo.training import train
    from annzoo.tuning import tune

    call = {"train": train, "tune": tune}[api]
    a_file = tmp_path / "a_file"
    a_file.write_text("not a directory")
    with pytest.raises(AnnzooError, match="`output_dir` must be a directory") as error:
        call(_recipe(), output_dir=a_file, verbose=0)
    assert "existing file" in str(error.value)
    with pytest.raises(AnnzooError, match="is a file, not a directory"):
        call(_recipe(), output_dir=a_file / "runs", verbose=0)
    assert a_file.read_text() == "not a directory"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a_file"]


# -- failed trials: one line each, the traceback kept -------------------------------


def test_each_failed_trial_is_one_line_and_its_traceback_is_kept(
    tmp_path, capfd, monkeypatch
):
    """Every trial fails to train: keras-tuner would print each
    trial's traceback; annzoo prints one line per trial naming where its
    traceback is kept, then its one-sentence error."""
    from annzoo.cli import main
    from annzoo.tuning.hypermodel import AnnzooHyperModel

    class Boom(ValueError):
        pass

    def fit(self, hp, model, *args, **kwargs):
        raise Boom("this model cannot be trained\nsecond line of the message")

    monkeypatch.setattr(AnnzooHyperModel, "fit", fit)
    output = tmp_path / "tuning"
    argv = ["tune", "digits_mlp", "--max-trials", "2", "--epochs", "1", "--quiet"]
    status = main([*argv, "--output-dir", str(output)])
    out, err = capfd.readouterr()
    assert status == 2
    assert "Traceback" not in out + err, (out + err)[-3000:]
    stats = output / "digits_mlp" / "stats"
    said = [line for line in out.splitlines() if line.startswith("annzoo: trial ")]
    assert len(said) == 2, out  # failed trials count towards max_trials
    for number, line in enumerate(said, start=1):
        record = stats / f"trial_{number - 1}.json"
        assert line.startswith(
            f"annzoo: trial {number} (search/trial_{number - 1}) "
            "failed: Boom: this model cannot be trained"
        ), line
        assert str(record) in line and "second line" not in line, line
        kept = json.loads(record.read_text())
        assert kept["error"] == "Boom: this model cannot be trained"
        assert kept["traceback"].startswith("Traceback (most recent call last):")
        assert "raise Boom(" in kept["traceback"]
        assert "second line of the message" in kept["traceback"]
    errors = [line for line in err.splitlines() if line.strip()]
    last = errors[-1]
    assert last.startswith("annzoo: error: Every trial of the search in"), last


# -- a search killed while keras-tuner's files were being saved ------------------


def test_a_temporary_left_by_a_killed_save_does_not_block_the_search(tmp_path):
    """A kill inside the atomic write of ``oracle.json`` (or a ``trial.json``)
    leaves an empty ``.annzoo-tmp-*`` temporary beside the intact file; the
    rerun removes it and resumes (found by scripts/probe_reliability.py), so
    the checks before resuming must not read it as the search's state."""
    from annzoo import io as aio
    from annzoo.errors import CheckpointError
    from annzoo.tuning import directory

    run_dir = tmp_path / "search_dir"
    project = run_dir / "search"
    (project / "trial_0").mkdir(parents=True)
    (run_dir / "search.json").write_text("{}")
    (project / "oracle.json").write_text(json.dumps({"end_order": ["0"]}))
    (project / "trial_0" / "trial.json").write_text("{}")
    (project / f"{aio.TMP_PREFIX}oracle-x1.json").write_bytes(b"")
    (project / "trial_0" / f"{aio.TMP_PREFIX}trial-x2.json").write_bytes(b"{")
    directory.check_tuner_files(project)
    directory.check_search_files(run_dir, project)
    # The same bytes under the real name are refused.
    (project / "oracle.json").write_bytes(b"")
    with pytest.raises(CheckpointError, match="oracle.json' is unreadable"):
        directory.check_tuner_files(project)

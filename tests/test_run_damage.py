"""No silent restart: damaged or partly missing run and search directories
are refused in one sentence and left as they were (issue 26).

One module fixture trains the runs every test copies: an uninterrupted run,
and the same recipe stopped right after its first epoch was committed (an
exception at the end of the run's backup: on disk, what a kill at that
moment leaves). Each damage is made to a copy, and the command that would
resume it must exit with status 2 and one line naming the file, change no
file of the run and start no run beside it.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest

from annzoo import io as aio
from annzoo.cli import main as annzoo
from annzoo.errors import CheckpointError
from annzoo.training import distribute, resolve_run_dir, rundir
from annzoo.training.callbacks import RunBackup

RECIPE = {
    "name": "damage",
    "model": {"name": "mlp", "hidden_units": [16]},
    "data": {"dataset": "digits", "limit": 64, "pipeline": "numpy"},
    "fit": {"epochs": 2, "seed": 5},
    # No learning-rate callback: the rate is in metrics.csv only because the
    # metrics log reads it from the optimizer.
    "callbacks": {"tensorboard": False, "early_stopping": None},
}


class Interrupted(Exception):
    """The process 'dies' here."""


def _train(recipe: Path, output: Path, *more: str) -> int:
    return annzoo(["train", str(recipe), "--output-dir", str(output), "--quiet", *more])


def _tree(folder: Path) -> dict[str, str]:
    """Every file and folder under ``folder``, files with their SHA-256."""
    return {
        str(p.relative_to(folder)): aio.file_digest(p) if p.is_file() else "dir"
        for p in sorted(folder.rglob("*"))
    }


def _one_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert err.startswith("annzoo: error: "), err
    return err


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    base = tmp_path_factory.mktemp("runs")
    recipe = base / "damage.json"
    recipe.write_text(json.dumps(RECIPE))
    assert _train(recipe, base / "finished") == 0
    backup = RunBackup.on_epoch_end

    def die_after_the_first_commit(self, epoch, logs=None):
        backup(self, epoch, logs)
        raise Interrupted

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(RunBackup, "on_epoch_end", die_after_the_first_commit)
        with pytest.raises(Interrupted):
            _train(recipe, base / "unfinished")
    unfinished = base / "unfinished" / "damage"
    progress = json.loads((unfinished / "state" / "progress.json").read_text())
    assert progress["epoch"] == 1 and not rundir.is_finished(unfinished)
    return SimpleNamespace(
        recipe=recipe,
        finished=base / "finished" / "damage",
        unfinished=unfinished,
        model_file=progress["model_file"],
    )


def _copy(run: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "out" / run.name
    shutil.copytree(run, copy)
    return copy


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _zero(path: Path) -> None:
    path.write_bytes(bytes(path.stat().st_size))


# damage -> (what is done to the unfinished run, the file the error names)
DAMAGES = {
    "progress.json deleted": (lambda r, m: (r / "state/progress.json").unlink(),
                              "state/progress.json"),
    "progress.json truncated": (lambda r, m: _truncate(r / "state/progress.json"),
                                "state/progress.json"),
    "state/ deleted": (lambda r, m: shutil.rmtree(r / "state"), "state/progress.json"),
    "recipe.json deleted": (lambda r, m: (r / "recipe.json").unlink(), "recipe.json"),
    "best.keras deleted": (lambda r, m: (r / "best.keras").unlink(), "best.keras"),
    "best.keras truncated": (lambda r, m: _truncate(r / "best.keras"), "best.keras"),
    "best.keras zeroed": (lambda r, m: _zero(r / "best.keras"), "best.keras"),
    "state model deleted": (lambda r, m: (r / "state" / m).unlink(), "state/"),
    "state model truncated": (lambda r, m: _truncate(r / "state" / m), "state/"),
    "state model zeroed": (lambda r, m: _zero(r / "state" / m), "state/"),
    "metrics.csv deleted": (lambda r, m: (r / "metrics.csv").unlink(), "metrics.csv"),
}  # fmt: skip


@pytest.mark.parametrize("damage", sorted(DAMAGES))
def test_a_damaged_unfinished_run_is_refused_in_one_line(
    runs, damage, tmp_path, capsys
):
    run = _copy(runs.unfinished, tmp_path)
    do, named = DAMAGES[damage]
    do(run, runs.model_file)
    before = _tree(run)
    assert _train(runs.recipe, run.parent) == 2
    message = _one_line(capsys)
    # It names the file, says what the directory holds and what to do.
    assert f"{str(run / named)}" in message, message
    assert "--no-resume" in message and "nothing was changed" in message, message
    assert _tree(run) == before  # not a byte changed, not a file added
    assert [p.name for p in run.parent.iterdir()] == ["damage"]  # nothing beside


def test_a_run_stopped_before_its_first_commit_starts_over_in_place(runs, tmp_path):
    """Killed inside the first epoch's saves: best.keras and metrics.csv are
    written, the state still says epoch 0. That is no damage: it starts over."""
    run = _copy(runs.unfinished, tmp_path)
    aio.write_json(run / "state" / "progress.json", rundir.START_PROGRESS)
    saved = json.loads((run / "recipe.json").read_text())
    opened = rundir.open_run(
        run.parent, "damage", saved, resume=True, plan=distribute.Plan("none")
    )
    try:
        assert opened.path == run and opened.progress is None
    finally:
        opened.release()
    # Without any state, the same files are a damaged run.
    (run / "state" / "progress.json").unlink()
    with pytest.raises(CheckpointError, match="progress.json' is missing"):
        resolve_run_dir(run.parent, "damage", saved)


@pytest.mark.parametrize(
    "deleted", [["results.json"], ["manifest.json"], ["results.json", "metrics.csv"]]
)
def test_a_finished_run_missing_a_file_is_still_finished(runs, tmp_path, deleted):
    run = _copy(runs.finished, tmp_path)
    saved = json.loads((run / "recipe.json").read_text())
    for name in deleted:
        (run / name).unlink()
    assert rundir.is_finished(run)
    # Rerunning the recipe starts a new run beside it, never over it.
    assert resolve_run_dir(run.parent, "damage", saved) == (
        run.parent / "damage-2",
        False,
    )


def test_a_finished_run_without_results_or_manifest_is_refused(runs, tmp_path, capsys):
    run = _copy(runs.finished, tmp_path)
    (run / "results.json").unlink()
    (run / "manifest.json").unlink()
    before = _tree(run)
    assert _train(runs.recipe, run.parent) == 2
    message = _one_line(capsys)
    assert "state/progress.json' is missing" in message and "best.keras" in message
    assert _tree(run) == before


def test_a_finished_run_without_its_manifest_says_its_files_are_unchecked(
    runs, tmp_path, capsys
):
    run = _copy(runs.finished, tmp_path)
    assert set(aio.load_model(run / "best.keras").weights[0].shape) == {64, 16}
    (run / "manifest.json").unlink()
    with pytest.raises(CheckpointError, match="manifest.json' is missing") as caught:
        aio.load_model(run / "best.keras")
    assert "\n" not in str(caught.value)
    assert annzoo(["evaluate", str(run)]) == 2
    assert "manifest.json' is missing from a finished run" in _one_line(capsys)


def test_finetune_takes_the_run_directory_lock(runs, tmp_path, capsys):
    """`annzoo finetune` writes its run through the same locked runner."""
    output = tmp_path / "out"
    busy = output / "damage-finetune"  # a fine-tuning run is NAME-finetune
    busy.mkdir(parents=True)
    with aio.lock_directory(busy):
        argv = ["finetune", str(runs.finished), str(runs.recipe)]
        assert annzoo([*argv, "--output-dir", str(output), "--quiet"]) == 2
    message = _one_line(capsys)
    assert f"{str(busy)!r} is in use by process" in message
    assert [p.name for p in output.iterdir()] == ["damage-finetune"]
    assert not any(busy.iterdir())


@pytest.fixture(scope="module")
def resumed(runs, tmp_path_factory):
    """The unfinished run resumed, and killed between results.json and the
    manifest; then the same command again."""
    run = _copy(runs.unfinished, tmp_path_factory.mktemp("resumed"))

    def die(*args, **kwargs):
        raise Interrupted

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(aio, "write_manifest", die)
        with pytest.raises(Interrupted):
            _train(runs.recipe, run.parent)
    assert (run / "results.json").is_file() and not (run / "manifest.json").exists()
    assert not rundir.is_finished(run)
    first_results = (run / "results.json").read_bytes()
    assert _train(runs.recipe, run.parent) == 0
    return SimpleNamespace(run=run, first_results=first_results)


def test_a_kill_before_the_manifest_finishes_in_place(resumed):
    run = resumed.run
    assert [p.name for p in run.parent.iterdir()] == ["damage"]  # no damage-2
    assert rundir.is_finished(run) and not (run / "state").exists()
    listed = json.loads((run / "manifest.json").read_text())["files"]
    assert listed["results.json"]["sha256"] == aio.file_digest(run / "results.json")


def test_metrics_csv_after_a_resume_is_byte_identical(runs, resumed):
    resumed_csv = (resumed.run / "metrics.csv").read_bytes()
    reference = (runs.finished / "metrics.csv").read_bytes()
    assert resumed_csv == reference
    # Two epochs, each with the optimizer's learning rate (Adam's 0.001).
    rows = reference.decode().splitlines()
    assert rows[0].split(",")[-1] == "learning_rate" and len(rows) == 3
    assert all(abs(float(r.split(",")[-1]) - 1e-3) < 1e-9 for r in rows[1:])


# -- search directories ---------------------------------------------------------

SEARCH = {
    **RECIPE,
    "name": "search",
    "fit": {"epochs": 1},
    "search_space": {
        "learning_rate": {"type": "float", "min": 1e-3, "max": 3e-2, "sampling": "log"}
    },
}


@pytest.fixture(scope="module")
def search(tmp_path_factory):
    from annzoo.tuning import tune

    output = tmp_path_factory.mktemp("search")
    recipe = output / "search.json"
    recipe.write_text(json.dumps(SEARCH))
    # Seed 0: what `annzoo tune` searches with when no --seed is given.
    result = tune(SEARCH, max_trials=1, seed=0, output_dir=output, verbose=0)
    assert result.completed == 1
    return SimpleNamespace(run_dir=result.run_dir, recipe=recipe)


def _first_trial(project: Path) -> Path:
    return sorted(project.glob("trial_*/trial.json"))[0]


SEARCH_DAMAGES = {
    "oracle.json deleted": (lambda p: (p / "oracle.json").unlink(), "oracle.json"),
    "oracle.json truncated": (lambda p: _truncate(p / "oracle.json"), "oracle.json"),
    "trial.json deleted": (lambda p: _first_trial(p).unlink(), "trial.json"),
    "trial.json truncated": (lambda p: _truncate(_first_trial(p)), "trial.json"),
    "search.json deleted": (lambda p: (p.parent / "search.json").unlink(),
                            "search.json"),
}  # fmt: skip


@pytest.mark.parametrize("damage", sorted(SEARCH_DAMAGES))
def test_a_damaged_search_is_refused_in_one_line(search, damage, tmp_path, capsys):
    copy = tmp_path / search.run_dir.name
    shutil.copytree(search.run_dir, copy)
    do, named = SEARCH_DAMAGES[damage]
    do(copy / "search")
    before = _tree(copy)
    argv = ["tune", str(search.recipe), "--max-trials", "1", "--quiet"]
    assert annzoo([*argv, "--output-dir", str(tmp_path)]) == 2
    message = _one_line(capsys)
    assert named in message and "--overwrite" in message, message
    assert "nothing was changed" in message, message
    assert _tree(copy) == before

"""The run directory: where a run goes, what it resumes from, what it holds.

=================  ==========================================================
``recipe.json``    the resolved recipe; ``annzoo train RUN_DIR/recipe.json``
                   runs it again
``metrics.csv``    one row per epoch: loss, metrics and learning rate
``best.keras``     the model at the best epoch of the monitored quantity
``final.keras``    the model at the last epoch trained
``curves.png``     loss and metric curves, train and validation
``confusion.png``  confusion matrix on the test split (classifiers, taggers)
``attention.png``  attention of the first test example (attention decoders)
``vocabulary.json`` the token lists of token, tagging and sequence datasets
``summary.txt``    the model summary with parameter counts
``results.json``   test metrics, best epoch, wall time, seed, versions
``manifest.json``  SHA-256 and size of every file of the finished run
``tensorboard/``   TensorBoard logs
``state/``         what an interrupted run resumes from
=================  ==========================================================

An unfinished run of the same recipe is resumed in place (after a kill -9
too: every file is written atomically, and ``state/`` holds the last finished
epoch); a finished run is never overwritten.

One writer per run directory: the process that runs a recipe takes the
directory's lock (`annzoo.io.lock_directory`) before it looks at what the
directory holds, and keeps it until the run ends; a second process asking to
resume it is refused with the holder's process id, one asking for a new run
gets the next free ``NAME-k``.

No silent restart: a new run writes ``state/progress.json`` (epoch 0) as soon
as its first files exist, so a run directory that has trained but lacks its
state, its ``recipe.json`` or a file its state needs (``best.keras``,
``metrics.csv``, the state's model) is refused, naming what is missing, never
trained again over its files (`annzoo.training.runstate` reads what a
directory holds). A run is finished once ``manifest.json`` is
written (the last write; ``state/`` goes after it), or when it holds
``results.json`` and no state: deleting either file alone does not make a
finished run look unfinished.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from annzoo import io as aio
from annzoo.errors import AnnzooError, CheckpointError
from annzoo.training import runstate, sequences
from annzoo.training.distribute import Plan
from annzoo.training.recipe import Recipe

# Re-exported: what a run directory holds is read by `annzoo.training.runstate`.
from annzoo.training.runstate import (
    STATE_DIR,
    changed_keys,
    is_finished,
    read_json,
    short_value,
)

__all__ = [
    "START_PROGRESS",
    "STATE_DIR",
    "Run",
    "changed_keys",
    "create",
    "finish",
    "finish_other",
    "is_finished",
    "load_state_model",
    "open_run",
    "read_json",
    "resolve_run_dir",
    "resolved_recipe",
    "short_value",
    "summary_text",
]


@dataclass(frozen=True)
class Run:
    """The directory a run writes, and the state it resumes from."""

    path: Path
    progress: dict | None = None  # ``state/progress.json`` of the run resumed
    # The directory's lock (process 0), and whether `open_run` created it.
    lock: aio.DirectoryLock | None = dataclasses.field(default=None, compare=False)
    created: bool = False

    def release(self) -> None:
        """Gives the directory's lock back; a directory `open_run` created
        and nothing was written to (the run failed before its first file)
        is removed first."""
        if self.created:
            try:
                self.path.rmdir()  # only when empty
            except OSError:
                pass
        if self.lock is not None:
            self.lock.release()

    @property
    def state_dir(self) -> Path:
        return self.path / STATE_DIR

    @property
    def initial_epoch(self) -> int:
        """Epochs finished before this process started."""
        return int(self.progress["epoch"]) if self.progress else 0

    @property
    def earlier_wall_time(self) -> float:
        """Seconds the interrupted processes of this run trained."""
        return float((self.progress or {}).get("wall_time_s", 0))


def resolved_recipe(recipe: Recipe, model_args: dict, plan: Plan) -> dict:
    """``recipe.json``: the recipe with the model's arguments as built (sizes
    read from the data included) and the distribution that ran; a rerun
    resumes only a run whose resolved recipe is the same."""
    used = {
        **recipe.distribute,
        "strategy": plan.strategy,
        "devices": len(plan.devices) if plan.devices else None,
    }
    resolved = Recipe.from_dict(
        {
            **recipe.to_dict(),
            "model": {"name": recipe.model["name"], **model_args},
            "distribute": used,
        }
    )
    return resolved.to_dict()


def open_run(
    output_dir: str | Path, name: str, resolved: dict, *, resume: bool, plan: Plan
) -> Run:
    """The run's directory (`resolve_run_dir`), locked for this process, and
    when resuming, its state; `Run.release` gives the lock back.

    Process 0 takes the lock of each candidate directory before it looks at
    it (other processes of a job choose the same directory without locking).

    Raises:
        AnnzooError: another process holds the directory of the run to resume.
        CheckpointError: the state to resume from, or a file it needs, is
            missing or unreadable.
    """
    recipe = resolved if resume else None
    path, resuming, lock, created = _choose(output_dir, name, recipe, claim=plan.chief)
    run = Run(path, None, lock, created)
    try:
        progress = runstate.load_progress(path / STATE_DIR) if resuming else None
        if progress is not None and int(progress["epoch"]) < 1:
            progress = None  # no epoch committed yet: start it over in place
        if progress is not None:
            runstate.check_resumable(path, progress)
        # Every process has chosen the same directory before process 0 writes.
        plan.barrier("annzoo-run-dir")
    except BaseException:
        run.release()
        raise
    return dataclasses.replace(run, progress=progress)


def create(run: Run, plan: Plan, resolved: dict, model, train) -> Run:
    """Creates the run directory and, for a new run, its first files.

    Only process 0 writes the run directory; the other processes of a job
    train into a scratch directory that `finish_other` removes.
    """
    if not plan.chief:
        scratch = tempfile.mkdtemp(prefix=f"annzoo-process{plan.process_id}-")
        run = Run(Path(scratch), run.progress)
    run.path.mkdir(parents=True, exist_ok=True)
    aio.clean_temporaries(run.path)
    if not run.progress:
        aio.write_json(run.path / "recipe.json", resolved)
        aio.write_text(run.path / "summary.txt", summary_text(model))
        vocabularies = sequences.vocabularies(train)
        if vocabularies:
            aio.write_json(run.path / "vocabulary.json", vocabularies)
        if resolved["callbacks"]["backup"]:
            # Epoch 0 committed: from here on, a run directory without its
            # state is a damaged one (see the module docstring).
            aio.write_json(run.state_dir / "progress.json", START_PROGRESS)
    return run


# ``state/progress.json`` of a run that has not finished an epoch yet.
START_PROGRESS = {
    "epoch": 0,
    "model_file": None,
    "history": {},
    "callbacks": {},
    "wall_time_s": 0.0,
}


def summary_text(model, line_length: int = 100) -> str:
    """The Keras model summary, as ``summary.txt`` holds it: every column
    (per-layer "Param #" included) within ``line_length`` columns, whatever
    the terminal's width.

    Keras draws the table ``line_length`` wide but prints it through a rich
    console as wide as the terminal (``COLUMNS``), which cut each line at 80
    columns, "Param #" or "Connected to" with it; the console is given the
    table's width for the call (tests/test_cli_output.py).
    """
    lines: list[str] = []
    saved = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = str(line_length)
    try:
        model.summary(
            print_fn=lambda line, *a, **k: lines.append(line), line_length=line_length
        )
    finally:
        if saved is None:
            os.environ.pop("COLUMNS", None)
        else:
            os.environ["COLUMNS"] = saved
    return "\n".join(line.rstrip() for line in "\n".join(lines).splitlines()) + "\n"


def finish(run: Run) -> None:
    """Finished: the manifest records what the finished run holds, and its
    writing is what marks the run finished (`is_finished`); then the resume
    state, no longer needed, goes (best/final stay). A kill before the
    manifest leaves a run that resumes and finishes again in place."""
    aio.write_manifest(run.path)
    shutil.rmtree(run.state_dir, ignore_errors=True)


def finish_other(run: Run) -> None:
    """A process other than 0 of a job drops its scratch directory."""
    shutil.rmtree(run.path, ignore_errors=True)


def resolve_run_dir(
    output_dir: str | Path, name: str, recipe: dict | None = None
) -> tuple[Path, bool]:
    """Where a run of ``name`` goes, and whether it resumes an earlier one.

    Without ``recipe``: ``output_dir/name`` when free, else the first free
    ``name-2``, ``name-3``... With ``recipe`` (resuming allowed), an unfinished
    run of the same recipe is resumed in place, and an unfinished run of a
    different recipe is refused with an error naming what changed, so two
    recipes never mix in one directory. A finished run is never overwritten,
    and a damaged unfinished one is refused (`open_run` checks the state it
    resumes from). This looks only: `open_run` decides the same way with each
    directory locked.
    """
    path, resuming, _, _ = _choose(output_dir, name, recipe, claim=False)
    return path, resuming


def _choose(
    output_dir: str | Path, name: str, recipe: dict | None, *, claim: bool
) -> tuple[Path, bool, aio.DirectoryLock | None, bool]:
    """`resolve_run_dir`; with ``claim``, each candidate is created if missing
    and locked before it is looked at, and the one chosen is returned locked
    (with whether it was created here)."""
    base = Path(output_dir)
    if claim:
        _make_directory(base, parents=True)
    for index in range(1, 10_000):
        candidate = base / (name if index == 1 else f"{name}-{index}")
        if candidate.exists() and not candidate.is_dir():
            continue  # a file of that name: not a run directory
        lock, created = None, False
        if claim:
            # os.mkdir creates a directory once however many try; the lock
            # decides who writes it (a creator that loses it moves on too).
            created = _make_directory(candidate)
            lock = aio.lock_directory(candidate)
            if lock is None:
                if recipe is None:
                    continue  # a new run asked for: the next free name
                raise AnnzooError(_busy(candidate))
        try:
            verdict = runstate.verdict(candidate, recipe)
        except BaseException:
            Run(candidate, lock=lock, created=created).release()
            raise
        if verdict != "skip":
            return candidate, verdict == "resume", lock, created
        Run(candidate, lock=lock, created=created).release()
    raise AnnzooError(f"`output_dir` {str(base)!r} holds too many runs named {name!r}.")


def _make_directory(path: Path, *, parents: bool = False) -> bool:
    """Creates ``path``; False when it existed already."""
    try:
        path.mkdir(parents=parents, exist_ok=parents)
    except FileExistsError:
        return False
    except OSError as error:
        raise CheckpointError(
            f"`output_dir` must be a directory annzoo can write. Cannot create "
            f"{str(path)!r}: {error.strerror or error}."
        ) from None
    return not parents


def _busy(candidate: Path) -> str:
    pid = aio.lock_holder(candidate)
    who = "another process" if pid is None else f"process {pid}"
    if pid == os.getpid():
        who += " (this one)"
    return (
        f"{str(candidate)!r} is in use by {who}, another annzoo run writing it, "
        "and two processes never write one run directory: wait for it to end, or "
        "pass --no-resume to start a new run directory beside it."
    )


def load_state_model(run: Run):
    """The model saved after the last finished epoch of ``run``."""
    path = run.state_dir / run.progress["model_file"]
    try:
        return aio.load_model(path, sha256=run.progress.get("model_sha256"))
    except CheckpointError as error:
        raise CheckpointError(
            f"{str(error).rstrip('.')}, so the unfinished run in {str(run.path)!r} "
            "cannot be resumed safely and nothing was changed; pass --no-resume to "
            "start a new run directory beside it."
        ) from None

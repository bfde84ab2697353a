"""The search directory: what makes two searches the same, and what may resume.

A search is resumed only over files that parse and a definition that matches;
anything else is refused with the file named and nothing changed, so a crash
never turns into a silently different search. A search directory has one
writer: the chief of the search holds its lock (`claim_search`).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from annzoo import io as aio
from annzoo.errors import AnnzooError, CheckpointError
from annzoo.training.recipe import Recipe
from annzoo.training.rundir import changed_keys, short_value

__all__ = [
    "MAX_ATTEMPTS",
    "attempts_file",
    "check_same_search",
    "check_search_files",
    "check_tuner_files",
    "claim_search",
    "empty_directory",
    "read_attempts",
    "search_definition",
]

# A trial that has started this many times without ending (each start was cut
# short by the process dying: out of memory, a segfault, a kill) is marked
# failed instead of being run again forever.
MAX_ATTEMPTS = 3


def search_definition(
    recipe: Recipe, fixed: dict, space_text: str, settings: dict
) -> dict[str, Any]:
    """What makes two searches the same search (``search.json``)."""
    return {
        "recipe": recipe.name,
        "model": recipe.model["name"],
        "dataset": recipe.data["dataset"],
        "fixed": json.loads(json.dumps(fixed, default=list)),
        "space": json.loads(space_text),
        **settings,
    }


def check_tuner_files(project: Path) -> None:
    """Refuses to resume over keras-tuner state that does not parse.

    keras-tuner would stop with a bare ``JSONDecodeError``, or worse, start
    trials over; the error names the file instead, and nothing is changed.
    """
    if not project.is_dir():
        return
    for path in sorted(project.rglob("*.json")):
        if path.name.startswith(aio.TMP_PREFIX):
            continue  # a save a kill cut short: removed before the search resumes
        try:
            json.loads(path.read_text("utf-8"))
        except (OSError, ValueError) as error:
            raise CheckpointError(
                f"{str(path)!r} is unreadable ({type(error).__name__}: truncated or "
                "corrupt), so this search cannot be resumed safely and nothing was "
                "changed; rerun with overwrite=True (--overwrite) to start it again, "
                "or choose another --output-dir."
            ) from None


def check_same_search(path: Path, definition: dict) -> None:
    """Refuses to continue the search in ``path``'s directory when it was
    started with another definition (`search_definition`)."""
    if not path.is_file():
        return
    try:
        old = json.loads(path.read_text())
    except ValueError:
        raise AnnzooError(
            f"{str(path)!r} is not valid JSON, so the search in {str(path.parent)!r} "
            "cannot be resumed safely and nothing was changed; rerun with "
            "overwrite=True (--overwrite) to start it again."
        ) from None
    changed = changed_keys(old, definition)
    if changed:
        shown = "; ".join(
            f"{k}: {short_value(old, k)} -> {short_value(definition, k)}"
            for k in changed[:4]
        )
        raise AnnzooError(
            f"The search in {str(path.parent)!r} was started with a different "
            f"definition ({shown}), so it is not resumed: rerun with overwrite=True "
            "(--overwrite) to start it again, or choose another --output-dir."
        )


def attempts_file(stats_dir: Path, trial_id: str) -> Path:
    """Where trial ``trial_id``'s start count is kept.

    One file per trial (beside ``stats/``, whose files are the trials'
    records): only the process running a trial writes its count, so workers
    never race.
    """
    return stats_dir.parent / "attempts" / f"trial_{trial_id}.json"


def read_attempts(path: Path) -> int:
    """How many times the trial of ``path`` (`attempts_file`) has started."""
    try:
        return int(json.loads(path.read_text("utf-8"))["starts"])
    except FileNotFoundError:
        return 0
    except (OSError, ValueError, KeyError, TypeError):
        raise CheckpointError(
            f"{str(path)!r} is unreadable (truncated or corrupt), so this search "
            "cannot be resumed safely and nothing was changed; rerun with "
            "overwrite=True (--overwrite) to start it again."
        ) from None


@contextlib.contextmanager
def claim_search(run_dir: Path) -> Iterator[None]:
    """Holds the lock of the search directory ``run_dir`` (created if
    missing) for the block: two searches never write one directory.

    Only the chief of a distributed search takes it (keras-tuner's workers
    write the chief's directory through its oracle, as before). A directory
    created here that is still empty at the end is removed.

    Raises:
        AnnzooError: another process holds the lock, naming it.
    """
    if os.environ.get("KERASTUNER_TUNER_ID", "chief") != "chief":
        yield
        return
    created = not run_dir.exists()
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise CheckpointError(
            f"`output_dir` must be a directory annzoo can write. Cannot create "
            f"{str(run_dir)!r}: {error.strerror or error}."
        ) from None
    lock = aio.lock_directory(run_dir)
    if lock is None:
        pid = aio.lock_holder(run_dir)
        who = "another process" if pid is None else f"process {pid}"
        raise AnnzooError(
            f"The search directory {str(run_dir)!r} is in use by {who}, another "
            "search writing it, and two searches never write one directory: wait "
            "for it to end, or choose another --output-dir."
        )
    try:
        yield
    finally:
        if created:
            with contextlib.suppress(OSError):
                run_dir.rmdir()  # only when nothing was written
        lock.release()


def empty_directory(path: Path) -> None:
    """Removes what ``path`` holds, not ``path``: its lock stays with it."""
    for child in path.iterdir():
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child)
        else:
            child.unlink()


def _trial_ids(oracle: dict) -> set[str]:
    """Every trial id keras-tuner's ``oracle.json`` refers to."""
    ids = set(map(str, oracle.get("start_order") or []))
    ids |= set(map(str, oracle.get("end_order") or []))
    ids |= set(map(str, (oracle.get("ongoing_trials") or {}).values()))
    ids |= set(map(str, oracle.get("retry_queue") or []))
    return ids


def check_search_files(run_dir: Path, project: Path) -> None:
    """Refuses to resume a search whose files are partly missing: its
    ``search.json``, keras-tuner's ``oracle.json`` once a trial has ended,
    or the ``trial.json`` of a trial the oracle lists (keras-tuner would
    stop with a traceback, or run trials again without a word).

    Legitimate states of a killed search pass: keras-tuner writes a trial's
    ``trial.json`` before ``oracle.json`` lists it, and its tuner file
    (``tuner0.json``) only after both.
    """
    if not project.is_dir():
        return
    trials = sorted(p.parent.name for p in project.glob("trial_*/trial.json"))
    tuner_files = [
        p.name
        for p in project.glob("*.json")
        if p.name != "oracle.json" and not p.name.startswith(aio.TMP_PREFIX)
    ]
    holds = f"{len(trials)} trial{'s' * (len(trials) != 1)}" + (
        f" and {', '.join(sorted(tuner_files))}" if tuner_files else ""
    )
    again = (
        "so it cannot be resumed safely and nothing was changed; rerun with "
        "overwrite=True (--overwrite) to start it again, or choose another "
        "--output-dir."
    )
    if (trials or tuner_files) and not (run_dir / "search.json").is_file():
        raise CheckpointError(
            f"{str(run_dir / 'search.json')!r} is missing, but the search in "
            f"{str(run_dir)!r} holds {holds}, {again}"
        )
    oracle_file = project / "oracle.json"
    if not oracle_file.is_file():
        if tuner_files or len(trials) > 1:
            raise CheckpointError(
                f"{str(oracle_file)!r} is missing, but the search in "
                f"{str(run_dir)!r} holds {holds}, {again}"
            )
        return
    try:
        oracle = json.loads(oracle_file.read_text("utf-8"))
        listed = _trial_ids(oracle)
    except (OSError, ValueError, TypeError, AttributeError):
        raise CheckpointError(
            f"{str(oracle_file)!r} is unreadable (truncated or corrupt), {again}"
        ) from None
    for trial_id in sorted(listed):
        path = project / f"trial_{trial_id}" / "trial.json"
        if not path.is_file():
            raise CheckpointError(
                f"{str(path)!r} is missing, but the search in {str(run_dir)!r} "
                f"lists trial {trial_id} in oracle.json (it holds {holds}), {again}"
            )

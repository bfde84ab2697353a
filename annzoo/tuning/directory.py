"""The search directory: what makes two searches the same, and what may resume.

A search is resumed only over files that parse and a definition that matches;
anything else is refused with the file named and nothing changed, so a crash
never turns into a silently different search.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from annzoo.errors import AnnzooError, CheckpointError
from annzoo.training.recipe import Recipe
from annzoo.training.rundir import changed_keys, short_value

__all__ = [
    "MAX_ATTEMPTS",
    "attempts_file",
    "check_same_search",
    "check_tuner_files",
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
        try:
            json.loads(path.read_text("utf-8"))
        except (OSError, ValueError) as error:
            raise CheckpointError(
                f"{str(path)!r} is unreadable ({type(error).__name__}: truncated or "
                "corrupt), so this search cannot be resumed safely; nothing was "
                "changed. Rerun with overwrite=True (--overwrite) to start it again, "
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
            "cannot be resumed safely; rerun with overwrite=True (--overwrite)."
        ) from None
    changed = changed_keys(old, definition)
    if changed:
        shown = "; ".join(
            f"{k}: {short_value(old, k)} -> {short_value(definition, k)}"
            for k in changed[:4]
        )
        raise AnnzooError(
            f"The search in {str(path.parent)!r} was started with a different "
            f"definition ({shown}). Rerun with overwrite=True (--overwrite) to "
            "start it again, or choose another --output-dir."
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
            "cannot be resumed safely; nothing was changed. Rerun with "
            "overwrite=True (--overwrite) to start it again."
        ) from None

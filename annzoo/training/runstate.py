"""What a run directory holds: finished, resumable, damaged.

`annzoo.training.rundir` chooses and writes run directories; this module
reads them. Its verdicts follow the order in which a run writes its files
(`rundir.create`, `annzoo.training.callbacks.RunBackup`, `rundir.finish`):
every state a kill can leave is recognised and resumed or started over; a
state no kill can leave (a file deleted, truncated or zeroed afterwards) is
refused with one sentence naming the file, what the directory holds and what
to do, and nothing is changed.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Any

from annzoo import io as aio
from annzoo.errors import AnnzooError, CheckpointError
from annzoo.training.recipe import SECTION_DEFAULTS

__all__ = [
    "RUN_FILES",
    "STATE_DIR",
    "TRAINED_FILES",
    "changed_keys",
    "check_resumable",
    "holdings",
    "is_finished",
    "load_progress",
    "read_json",
    "short_value",
    "verdict",
]

STATE_DIR = "state"

# Files that only exist once an epoch has trained (``state/`` aside): a
# directory holding one of them but no committed state was damaged.
TRAINED_FILES = ("best.keras", "final.keras", "metrics.csv", "results.json")


def is_finished(run_dir: Path) -> bool:
    """Whether ``run_dir`` holds a finished run: its manifest (written last),
    or its results without a state to resume (a run finished before
    manifests, or whose manifest was deleted)."""
    run_dir = Path(run_dir)
    if (run_dir / aio.MANIFEST).is_file():
        return True
    return (run_dir / "results.json").is_file() and not (
        run_dir / STATE_DIR / "progress.json"
    ).is_file()


def verdict(candidate: Path, recipe: dict | None) -> str:
    """What to do with ``candidate``: ``"free"`` (start a new run in it),
    ``"resume"``, ``"restart"`` (same recipe, no epoch committed: start it
    over in place) or ``"skip"`` (finished, another recipe's, not ours).

    Raises:
        AnnzooError: it holds an unfinished run of a different recipe.
        CheckpointError: it holds an unfinished run of this name that is
            damaged (its recipe or state missing or unreadable).
    """
    # A run killed while writing its first file leaves only a temporary.
    if not candidate.exists() or not any(
        not p.name.startswith(aio.TMP_PREFIX) for p in candidate.iterdir()
    ):
        return "free"
    if recipe is None or is_finished(candidate):
        return "skip"
    saved_path = candidate / "recipe.json"
    progress_path = candidate / STATE_DIR / "progress.json"
    if not saved_path.is_file():
        held = holdings(candidate)
        if not held:
            return "skip"  # not a run directory of ours
        raise CheckpointError(
            f"{str(saved_path)!r} is missing, but {str(candidate)!r} holds an "
            f"unfinished run ({held}) that cannot be resumed safely without it, "
            "so nothing was changed; pass --no-resume to start a new run "
            "directory beside it."
        )
    saved = read_json(saved_path)
    if saved is None:
        raise CheckpointError(
            f"{str(saved_path)!r} is unreadable (truncated or corrupt), so the "
            f"unfinished run in {str(candidate)!r} ({holdings(candidate)}) cannot "
            "be resumed safely and nothing was changed; pass --no-resume to start "
            "a new run directory beside it."
        )
    saved = _with_new_fields(saved)
    committed = read_json(progress_path) if progress_path.is_file() else None
    # An epoch committed, or a state file too damaged to say.
    has_state = progress_path.is_file() and not (
        isinstance(committed, dict) and committed.get("epoch") == 0
    )
    if saved == recipe:
        if progress_path.is_file():
            return "resume"  # `open_run` checks the state, epoch 0 starts over
        backup = (saved.get("callbacks") or {}).get("backup", True)
        trained = [n for n in TRAINED_FILES if (candidate / n).exists()]
        if (candidate / STATE_DIR).is_dir():
            trained.append(f"{STATE_DIR}/")
        if backup and trained:
            raise CheckpointError(
                f"{str(progress_path)!r} is missing, but {str(candidate)!r} holds a "
                f"run that has trained ({holdings(candidate)}), so it can be "
                "neither resumed nor started over its files and nothing was "
                "changed; pass --no-resume to start a new run directory beside it."
            )
        # No epoch trained (or no state kept, `callbacks.backup` off).
        return "restart"
    if has_state:
        changes = changed_keys(saved, recipe)
        shown = ", ".join(
            f"`{k}` ({short_value(saved, k)} -> {short_value(recipe, k)})"
            for k in changes[:3]
        )
        raise AnnzooError(
            f"{str(candidate)!r} holds an unfinished run of a different recipe "
            f"({shown}{' ...' if len(changes) > 3 else ''}), so it is not resumed: "
            "rerun with the same settings to resume it, or pass --no-resume to "
            "start a new run directory beside it."
        )
    return "skip"


def holdings(run_dir: Path) -> str:
    """What ``run_dir`` holds, for messages: its run files and the epochs
    its state has committed (empty when it holds nothing of a run)."""
    names = sorted(
        p.name + ("/" if p.is_dir() else "")
        for p in run_dir.iterdir()
        if p.name in RUN_FILES and p.name != STATE_DIR
    )
    state = run_dir / STATE_DIR
    if state.is_dir():
        progress = read_json(state / "progress.json")
        if isinstance(progress, dict) and isinstance(progress.get("epoch"), int):
            names.append(f"{STATE_DIR}/ after epoch {progress['epoch']}")
        elif (state / "progress.json").exists():
            names.append(f"{STATE_DIR}/ with an unreadable progress.json")
        else:
            names.append(f"{STATE_DIR}/ without progress.json")
    return ", ".join(names)


# The names of the files and folders a run directory holds (the table in
# `annzoo.training.rundir`).
RUN_FILES = frozenset(
    {
        "recipe.json",
        "metrics.csv",
        "best.keras",
        "final.keras",
        "curves.png",
        "confusion.png",
        "attention.png",
        "vocabulary.json",
        "summary.txt",
        "results.json",
        aio.MANIFEST,
        "tensorboard",
        STATE_DIR,
    }
)


def check_resumable(run_dir: Path, progress: dict) -> None:
    """Refuses to resume from a state whose files are missing or damaged:
    the state's model, ``best.keras`` when an epoch was best, ``metrics.csv``
    and ``summary.txt``.

    ``best.keras`` may be newer than the state (a kill after it was saved,
    before the epoch was committed); the rerun saves it again, so it must
    only be a complete Keras file.
    """
    recipe = read_json(run_dir / "recipe.json") or {}
    callbacks = recipe.get("callbacks") or {}
    state_model = run_dir / STATE_DIR / str(progress["model_file"])
    needed = [state_model, run_dir / "summary.txt"]
    best = (progress.get("callbacks") or {}).get("checkpoint") or {}
    if best.get("best_epoch") is not None:
        needed.append(run_dir / "best.keras")
    if callbacks.get("csv", True):
        needed.append(run_dir / "metrics.csv")
    for path in needed:
        problem = None
        if not path.is_file():
            problem = "is missing"
        elif path.suffix == ".keras":
            problem = _incomplete_keras_file(path)
        if path.parent.name == STATE_DIR and problem is None:
            expected = progress.get("model_sha256")
            if expected and aio.file_digest(path) != expected:
                problem = (
                    "is damaged (its SHA-256 is not the one recorded when annzoo "
                    "wrote it)"
                )
        if problem:
            raise CheckpointError(
                f"{str(path)!r} {problem}, but the unfinished run in "
                f"{str(run_dir)!r} ({holdings(run_dir)}) needs it to resume, so "
                "nothing was changed; pass --no-resume to start a new run "
                "directory beside it."
            )


def _incomplete_keras_file(path: Path) -> str | None:
    """Why ``path`` is not a complete ``.keras`` file (a zip archive whose
    every member reads back with its CRC), or None."""
    try:
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()
    except (OSError, zipfile.BadZipFile, EOFError, ValueError) as error:
        return f"is damaged (not a complete Keras file: {type(error).__name__})"
    if bad is not None:
        return f"is damaged (its member {bad} does not match its checksum)"
    return None


def _with_new_fields(saved: dict) -> dict:
    """A saved ``recipe.json`` with the section fields added since it was
    written, at their defaults: a run started by an older annzoo still
    matches its unchanged recipe and resumes."""
    out = dict(saved)
    for section, defaults in SECTION_DEFAULTS.items():
        fields = out.get(section)
        if isinstance(fields, dict):
            missing = {k: v for k, v in defaults.items() if k not in fields}
            out[section] = {**json.loads(json.dumps(missing)), **fields}
    return out


def _flatten(data: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(data, dict):
        out: dict[str, Any] = {}
        for key, value in data.items():
            out.update(_flatten(value, f"{prefix}{key}."))
        return out or {prefix.rstrip("."): {}}
    return {prefix.rstrip("."): data}


def changed_keys(old: dict, new: dict) -> list[str]:
    """The dotted keys (``fit.epochs``) whose values differ, sorted."""
    a, b = _flatten(old), _flatten(new)
    return sorted(
        k for k in set(a) | set(b) if a.get(k, "<absent>") != b.get(k, "<absent>")
    )


def short_value(data: dict, dotted: str) -> str:
    """A dotted key's value as JSON of at most 40 characters, for messages."""
    value = _flatten(data).get(dotted, "absent")
    text = json.dumps(value) if value != "absent" else "absent"
    return text if len(text) <= 40 else text[:37] + "..."


def load_progress(state_dir: Path) -> dict:
    path = state_dir / "progress.json"
    progress = read_json(path)
    required = {"epoch", "model_file", "history", "callbacks"}
    if not isinstance(progress, dict) or not required <= set(progress):
        raise CheckpointError(
            f"{str(path)!r} is unreadable (truncated or corrupt), so the unfinished "
            f"run in {str(state_dir.parent)!r} ({holdings(state_dir.parent)}) cannot "
            "be resumed safely and nothing was changed; pass --no-resume to start a "
            "new run directory beside it."
        )
    return progress


def read_json(path: Path) -> Any:
    """The JSON in ``path``, or None when it is missing or unreadable."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None

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
"""

from __future__ import annotations

import json
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from annzoo import io as aio
from annzoo.errors import AnnzooError, CheckpointError
from annzoo.training import sequences
from annzoo.training.distribute import Plan
from annzoo.training.recipe import SECTION_DEFAULTS, Recipe

__all__ = [
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

STATE_DIR = "state"


@dataclass(frozen=True)
class Run:
    """The directory a run writes, and the state it resumes from."""

    path: Path
    progress: dict | None = None  # ``state/progress.json`` of the run resumed

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
    """The run's directory (`resolve_run_dir`) and, when resuming, its state.

    Raises:
        CheckpointError: the state to resume from is unreadable.
    """
    path, resuming = resolve_run_dir(output_dir, name, resolved if resume else None)
    # Every process has chosen the same directory before process 0 creates it.
    plan.barrier("annzoo-run-dir")
    return Run(path, _load_progress(path / STATE_DIR) if resuming else None)


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
    return run


def summary_text(model) -> str:
    """The Keras model summary, as ``summary.txt`` holds it."""
    lines: list[str] = []
    model.summary(print_fn=lambda line, *a, **k: lines.append(line), line_length=100)
    return "\n".join(lines) + "\n"


def finish(run: Run) -> None:
    """Finished: the resume state is no longer needed (best/final stay), and
    the manifest records what the finished run holds."""
    shutil.rmtree(run.state_dir, ignore_errors=True)
    aio.write_manifest(run.path)


def finish_other(run: Run) -> None:
    """A process other than 0 of a job drops its scratch directory."""
    shutil.rmtree(run.path, ignore_errors=True)


def is_finished(run_dir: Path) -> bool:
    return (run_dir / "results.json").is_file()


def resolve_run_dir(
    output_dir: str | Path, name: str, recipe: dict | None = None
) -> tuple[Path, bool]:
    """Where a run of ``name`` goes, and whether it resumes an earlier one.

    Without ``recipe``: ``output_dir/name`` when free, else the first free
    ``name-2``, ``name-3``... With ``recipe`` (resuming allowed), an unfinished
    run of the same recipe is resumed in place, and an unfinished run of a
    different recipe is refused with an error naming what changed, so two
    recipes never mix in one directory. A finished run is never overwritten.
    """
    base = Path(output_dir)
    for index in range(1, 10_000):
        candidate = base / (name if index == 1 else f"{name}-{index}")
        # A run killed while writing its first file leaves only a temporary.
        if not candidate.exists() or not any(
            not p.name.startswith(aio.TMP_PREFIX) for p in candidate.iterdir()
        ):
            return candidate, False
        if recipe is None or is_finished(candidate):
            continue
        saved_path = candidate / "recipe.json"
        if not saved_path.is_file():
            continue  # not a run directory of ours
        saved = read_json(saved_path)
        if saved is None:
            raise CheckpointError(
                f"{str(saved_path)!r} is unreadable (truncated or corrupt), so the "
                f"unfinished run in {str(candidate)!r} cannot be resumed safely. "
                "Pass --no-resume to start a new run directory beside it."
            )
        has_state = (candidate / STATE_DIR / "progress.json").is_file()
        saved = _with_new_fields(saved)
        if saved == recipe:
            # Same recipe: resume it, or (no epoch finished yet) start it over.
            return candidate, has_state
        if has_state:
            changes = changed_keys(saved, recipe)
            shown = ", ".join(
                f"`{k}` ({short_value(saved, k)} -> {short_value(recipe, k)})"
                for k in changes[:3]
            )
            raise AnnzooError(
                f"{str(candidate)!r} holds an unfinished run of a different recipe: "
                f"{shown}{' ...' if len(changes) > 3 else ''}. Rerun with the "
                "same settings to resume it, or pass --no-resume to start a new run "
                "directory beside it."
            )
    raise AnnzooError(f"`output_dir` {str(base)!r} holds too many runs named {name!r}.")


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


def _load_progress(state_dir: Path) -> dict:
    path = state_dir / "progress.json"
    progress = read_json(path)
    required = {"epoch", "model_file", "history", "callbacks"}
    if not isinstance(progress, dict) or not required <= set(progress):
        raise CheckpointError(
            f"{str(path)!r} is unreadable (truncated or corrupt), so this run cannot "
            "be resumed safely; nothing was changed. Pass --no-resume to start a new "
            "run directory beside it."
        )
    return progress


def load_state_model(run: Run):
    """The model saved after the last finished epoch of ``run``."""
    path = run.state_dir / run.progress["model_file"]
    try:
        return aio.load_model(path, sha256=run.progress.get("model_sha256"))
    except CheckpointError as error:
        raise CheckpointError(
            f"{error} So this run cannot be resumed safely; nothing was changed. "
            "Pass --no-resume to start a new run directory beside it."
        ) from None


def read_json(path: Path) -> Any:
    """The JSON in ``path``, or None when it is missing or unreadable."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None

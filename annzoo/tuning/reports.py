"""What a search reports: the trials table (terminal and CSV) and the best trial."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

from annzoo import io as aio
from annzoo.errors import AnnzooError

__all__ = [
    "TrialsFailedError",
    "best",
    "check_completed",
    "collect",
    "failed_search",
    "write",
]

# keras-tuner's own directory of a search (`annzoo.tuning.search.PROJECT`).
_PROJECT = "search"


class TrialsFailedError(AnnzooError):
    """A search ended without one completed trial: nothing was found."""


def check_completed(run_dir: Path, trials: list[dict]) -> None:
    """Refuses a search in which trials ran but none completed.

    keras-tuner records a failed trial (with its traceback) and goes on, so a
    search whose every trial failed would otherwise end as if it had
    succeeded, with no best trial.
    """
    failed = [t for t in trials if t["status"] in ("FAILED", "INVALID")]
    if not failed or any(t["status"] == "COMPLETED" for t in trials):
        return
    project = Path(run_dir) / _PROJECT
    raise TrialsFailedError(
        f"Every trial of the search in {str(run_dir)!r} failed ({len(failed)} of "
        f"{len(trials)}, none completed), so there is no best configuration; "
        "each failed trial's traceback is the `message` of "
        f"{str(project / ('trial_' + failed[0]['trial_id']) / 'trial.json')!r} "
        "and its siblings, and its row in trials.csv."
    )


def _plain(value: Any) -> Any:
    if isinstance(value, float | int | str | bool) or value is None:
        return value
    return str(value)


def failed_search(run_dir: Path, error: BaseException) -> TrialsFailedError | None:
    """keras-tuner's "too many consecutive failures" error as one sentence.

    keras-tuner stops a search with a ``RuntimeError`` (its message followed
    by the last traceback) after ``max_consecutive_failed_trials`` failed
    trials in a row; None for any other error.
    """
    text = str(error)
    if not isinstance(error, RuntimeError) or "consecutive failures" not in text:
        return None
    first = text.splitlines()[0].rstrip(".")
    project = Path(run_dir) / _PROJECT
    return TrialsFailedError(
        f"The search in {str(run_dir)!r} stopped because its trials kept failing "
        f"(keras-tuner: {first}); each failed trial's traceback is the `message` "
        f"of its {str(project / 'trial_*' / 'trial.json')!r}."
    )


def collect(engine, hypermodel, stats_dir: Path) -> list[dict[str, Any]]:
    """One dict per trial, in trial order: its number (``"trial"``, from 1, as
    trials.csv and trials.png show it), keras-tuner's ``"trial_id"`` (from
    ``"0"`` or ``"00"``, as its ``trial_*`` folders), status, score, active
    values, stats."""
    trials = []
    ids = sorted(engine.oracle.trials, key=lambda t: (len(t), t))
    for number, trial_id in enumerate(ids, start=1):
        trial = engine.oracle.trials[trial_id]
        stats_file = Path(stats_dir) / f"trial_{trial_id}.json"
        stats = json.loads(stats_file.read_text()) if stats_file.is_file() else {}
        trials.append(
            {
                "trial": number,
                "trial_id": trial_id,
                "status": str(getattr(trial.status, "value", trial.status)),
                "score": None if trial.score is None else float(trial.score),
                "best_step": trial.best_step,
                "hyperparameters": {
                    k: _plain(v)
                    for k, v in hypermodel.active_values(trial.hyperparameters).items()
                },
                **{k: v for k, v in stats.items() if k != "trial_id"},
            }
        )
    return trials


def best(trials: list[dict], mode: str) -> dict | None:
    """The completed trial with the best score (``mode`` "min" or "max")."""
    done = [t for t in trials if t["status"] == "COMPLETED" and t["score"] is not None]
    if not done:
        return None
    sign = 1 if mode == "min" else -1
    return min(
        done, key=lambda t: (sign * t["score"], len(t["trial_id"]), t["trial_id"])
    )


def _rows(trials: list[dict]) -> tuple[list[str], list[list[Any]]]:
    names = sorted({k for t in trials for k in t["hyperparameters"]})
    columns = [
        "trial",
        "status",
        "score",
        *names,
        "epochs",
        "wall_s",
        "train_s",
        "rss_mb",
    ]
    rows = []
    for number, t in enumerate(trials, start=1):
        score = "" if t["score"] is None else repr(t["score"])
        values = [t["hyperparameters"].get(n, "") for n in names]
        extra = [t.get(k, "") for k in ("epochs", "wall_s", "train_s", "rss_mb")]
        rows.append([t.get("trial", number), t["status"], score, *values, *extra])
    return columns, rows


def write(run_dir: Path, trials: list[dict], winner: dict | None, objective: str,
          *, verbose: int = 1) -> None:  # fmt: skip
    """``trials.csv``, ``best_hyperparameters.json`` and the terminal table.

    Raises:
        TrialsFailedError: after writing them, when trials ran and every one
            failed (`check_completed`).
    """
    columns, rows = _rows(trials)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(columns)
    writer.writerows(rows)
    aio.write_text(Path(run_dir) / "trials.csv", buffer.getvalue())
    aio.write_json(
        Path(run_dir) / "best_hyperparameters.json",
        {
            "objective": objective,
            "trial": winner.get("trial") if winner else None,
            "trial_id": winner["trial_id"] if winner else None,
            "score": winner["score"] if winner else None,
            "hyperparameters": winner["hyperparameters"] if winner else {},
        },
    )
    if verbose:
        _print_table(columns, rows, winner, objective)
    check_completed(run_dir, trials)


def _print_table(columns, rows, winner, objective) -> None:
    try:
        # Deferred: rich (installed with keras) only for the printed table.
        from rich.console import Console
        from rich.table import Table
    except ImportError:  # pragma: no cover - rich comes with keras
        print("\t".join(columns))
        for row in rows:
            print("\t".join(map(str, row)))
        return
    table = Table(title=f"trials (objective: {objective})")
    for column in columns:
        table.add_column(column)
    for row in rows:
        style = "bold green" if winner and row[0] == winner.get("trial") else None
        table.add_row(*(str(v) for v in row), style=style)
    Console().print(table)

"""What a search reports: one line per trial as it ends, the trials table
(terminal and CSV) and the best trial.

What ``annzoo tune`` prints (``verbose=1``): a line per trial, numbered from 1
as in trials.csv, with the search's progress (``trial 3/20 [###-------]``), the
score, the best score so far, the epochs trained, the trial's time and the
hyperparameters that vary (`trial_line`); at the end the trials table, plain
text that wraps into blocks of columns instead of cutting them
(`format_table`). keras-tuner's own display and Keras' per-epoch lines only
with ``verbose=2`` (``annzoo tune -v``).
"""

from __future__ import annotations

import csv
import io
import json
import shutil
import sys
import textwrap
from pathlib import Path
from typing import Any

from annzoo import io as aio
from annzoo.errors import AnnzooError

__all__ = [
    "TrialsFailedError",
    "best",
    "check_completed",
    "collect",
    "compact_values",
    "failed_search",
    "format_table",
    "reporting_tuner",
    "trial_line",
    "write",
]

# Every table and line a search prints fits this many columns, or the terminal
# when it is narrower (tests/test_cli_output.py).
MAX_WIDTH = 100


def terminal_width() -> int:
    """The terminal's columns (``COLUMNS`` first), at most `MAX_WIDTH`."""
    return max(40, min(shutil.get_terminal_size((MAX_WIDTH, 24)).columns, MAX_WIDTH))


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


def _short(value: Any) -> str:
    """A value as the terminal shows it: floats to 4 significant digits."""
    if isinstance(value, float):
        return f"{value:.4g}"
    return "" if value is None else str(value)


def compact_values(values: dict[str, Any]) -> list[str]:
    """``name=value`` of each hyperparameter; a stack of layers in one item
    (``hidden_units=256,128`` for ``hidden_units_depth`` 2 and its layers)."""
    items, done = [], set()
    for key, value in values.items():
        if key in done:
            continue
        if key.endswith("_depth") and isinstance(value, int):
            stem = key[: -len("_depth")]
            layers = [f"{stem}_{i}" for i in range(1, value + 1)]
            if all(layer in values for layer in layers):
                items.append(f"{stem}=" + ",".join(_short(values[k]) for k in layers))
                done.update(layers)
                continue
        items.append(f"{key}={_short(value)}")
    return items


def trial_line(
    number: int,
    total: int | None,
    status: str,
    score: float | None,
    best_score: float | None,
    objective: str,
    epochs: Any,
    seconds: Any,
    hyperparameters: dict[str, Any],
    *,
    width: int | None = None,
) -> str:
    """One finished trial, as ``annzoo tune`` prints it (see the module
    docstring); the hyperparameters wrap under themselves past ``width``."""
    width = width or terminal_width()
    if total:
        done = min(number, total)
        bar = "#" * round(10 * done / total)
        counter = f"trial {number:>{len(str(total))}}/{total} [{bar:-<10}]"
    else:  # Hyperband: the number of trials is not known in advance
        counter = f"trial {number:>3}"
    if status == "COMPLETED" and score is not None:
        result = f"{objective} {_short(score)} (best {_short(best_score)})"
    else:
        result = status.lower()
    seconds = f"{seconds:.1f} s" if isinstance(seconds, int | float) else "- s"
    head = f"{counter}  {result}  {_short(epochs) or '-'} epochs  {seconds}"
    text = "  ".join([head, " ".join(compact_values(hyperparameters))]).rstrip()
    if len(text) <= width:
        return text
    indent = " " * 4
    lines = textwrap.wrap(
        " ".join(compact_values(hyperparameters)),
        width,
        initial_indent=indent,
        subsequent_indent=indent,
        break_on_hyphens=False,
    )
    return "\n".join([head, *lines])


def reporting_tuner(base: type, *, hypermodel, stats_dir: Path, total: int | None,
                    stream=None) -> type:  # fmt: skip
    """``base`` (a tuner class) printing `trial_line` as each trial ends.

    Public keras-tuner API only: ``on_trial_end`` (after ``base``'s, which
    ends the trial in the oracle and writes its ``stats/`` record), the
    oracle's ``get_trial``, ``get_best_trials`` and ``objective``.

    Args:
        base: e.g. the class `annzoo.tuning.trials.tuner_class` returns.
        hypermodel: the search's hypermodel (its ``active_values``).
        stats_dir: where ``base`` writes each trial's record (epochs, time).
        total: the trials the search runs (None: not known, Hyperband).
        stream: where to print (default: ``sys.stdout`` at the time).
    """

    class ReportingTuner(base):
        def on_trial_end(self, trial):
            super().on_trial_end(trial)
            ended = self.oracle.get_trial(trial.trial_id)
            record = Path(stats_dir) / f"trial_{trial.trial_id}.json"
            stats = json.loads(record.read_text()) if record.is_file() else {}
            best_trials = self.oracle.get_best_trials(1)
            status = str(getattr(ended.status, "value", ended.status))
            try:
                number = int(trial.trial_id) + 1  # from 1, as in trials.csv
            except ValueError:  # pragma: no cover - keras-tuner ids are numbers
                number = len(self.oracle.trials)
            line = trial_line(
                number,
                total,
                status,
                ended.score,
                best_trials[0].score if best_trials else None,
                self.oracle.objective.name,
                stats.get("epochs"),
                stats.get("wall_s"),
                hypermodel.active_values(ended.hyperparameters),
            )
            print(line, file=stream or sys.stdout, flush=True)

    ReportingTuner.__name__ = base.__name__
    return ReportingTuner


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


def format_table(columns: list[str], rows: list[list[Any]], *, width: int,
                 keep: int = 1) -> list[str]:  # fmt: skip
    """Plain-text table lines, none longer than ``width``: columns padded to
    their widest cell; columns that do not fit go on to a further block
    below, each block starting with the first ``keep`` columns again, so no
    value is ever cut."""
    cells = [[str(c) for c in columns], *([_short(v) for v in row] for row in rows)]
    widths = [max(len(r[i]) for r in cells) for i in range(len(columns))]
    blocks, current = [], list(range(keep))
    used = sum(widths[i] + 2 for i in current)
    for i in range(keep, len(columns)):
        if len(current) > keep and used + widths[i] > width:
            blocks.append(current)
            current = list(range(keep))
            used = sum(widths[j] + 2 for j in current)
        current.append(i)
        used += widths[i] + 2
    blocks.append(current)
    lines = []
    for b, block in enumerate(blocks):
        if b:
            lines.append("")
        for row in cells:
            text = "  ".join(row[i].ljust(widths[i]) for i in block).rstrip()
            lines.append(text if len(text) <= width else text[: width - 1] + "…")
    return lines


def _print_table(columns, rows, winner, objective) -> None:
    width = terminal_width()
    marked = [  # the score as a float, shown to 4 digits (trials.csv: all)
        [
            f"{row[0]}*" if winner and row[0] == winner.get("trial") else row[0],
            row[1],
            float(row[2]) if row[2] else "",
            *row[3:],
        ]
        for row in rows
    ]
    print(f"trials (objective: {objective}; * best):")
    print("\n".join(format_table(columns, marked, width=width, keep=3)))

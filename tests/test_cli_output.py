"""What the ``annzoo`` command prints is readable (issue 27): tables within 100
columns, one vocabulary of task names, families listed and described, every
close match suggested, one line per tuning trial, ``python -m annzoo``."""

from __future__ import annotations

import json
import re
from pathlib import Path
from types import SimpleNamespace

import pytest

from annzoo import registry, tasks
from annzoo.cli import main
from tests.conftest import ROOT, run_python

WIDTH = 100


def _run(capsys, *args: str):
    code = main(list(args))
    out = capsys.readouterr()
    return SimpleNamespace(returncode=code, stdout=out.out, stderr=out.err)


def _check_width(text: str, what: str) -> None:
    long = [line for line in text.splitlines() if len(line) > WIDTH]
    assert not long, f"{what}: {len(long)} lines over {WIDTH} columns: {long[:2]}"


@pytest.mark.parametrize("columns", ["80", "100"])
def test_plain_tables_fit_100_columns(capsys, monkeypatch, columns):
    monkeypatch.setenv("COLUMNS", columns)
    commands = [("list",), ("recipes",), ("datasets",)]
    commands += [("info", n) for n in registry.list_models()]
    commands += [("info", n) for n in registry.list_families()]
    for command in commands:
        done = _run(capsys, *command)
        assert done.returncode == 0, (command, done.stderr)
        _check_width(done.stdout, " ".join(command))


def test_list_shows_presets_and_families(capsys):
    out = _run(capsys, "list").stdout
    first = {line.split()[0] for line in out.splitlines() if line.strip()}
    missing = set(registry.list_models()) | set(registry.list_families())
    assert not missing - first, missing - first
    # A pattern selects families too.
    listed = _run(capsys, "list", "seq*").stdout.splitlines()
    assert [line.split()[0] for line in listed if line.strip()] == [
        "preset",
        "seq2seq_attention",
        "family",
        "seq2seq",
    ]


def test_info_describes_every_family(capsys):
    for family in registry.list_families():
        done = _run(capsys, "info", family)
        assert done.returncode == 0, (family, done.stderr)
        assert done.stdout.startswith(f"{family}  (family; tasks: ")
        presets = [
            n for n in registry.list_models() if registry.resolve(n)[0] == family
        ]
        lines = done.stdout.splitlines()
        start = next(i for i, s in enumerate(lines) if s.startswith("  presets:"))
        text = lines[start].split(":", 1)[1]
        for line in lines[start + 1 :]:  # wrapped under itself
            if not line.startswith(" " * 16):
                break
            text += line
        assert sorted(text.replace(",", " ").split()) == (sorted(presets) or ["none"])


def test_an_unknown_name_suggests_every_close_match(capsys):
    done = _run(capsys, "info", "resnet")
    assert done.returncode == 2
    resnets = [n for n in registry.list_models() if n.startswith("resnet")]
    assert len(resnets) >= 7  # resnet18/20/32/44/56/110/50 and resnet50_imagenet
    for name in resnets:
        assert repr(name) in done.stderr, (name, done.stderr)
    assert "Traceback" not in done.stderr
    # A misspelling still finds its model.
    assert "'lenet5'" in _run(capsys, "info", "lenett5").stderr


# The task each preset trains for, from its paper or tutorial (not from the
# registry's code): a tagger tags, a translator or captioner writes sequences.
PRESET_TASKS = {
    "bilstm_crf_tagger": "tagging",
    "seq2seq_attention": "sequence",
    "transformer_base": "sequence",
    "captioner": "sequence",
    "imdb_bilstm": "binary",
    "logistic_regression": "binary",
    "char_rnn": "multiclass",
    "transformer_classifier": "multiclass",
    "lenet5": "multiclass",
}

DATASET_TASKS = {
    "breast_cancer": "binary",
    "dates": "sequence",
    "diabetes": "regression",
    "digits": "multiclass",
    "ner": "tagging",
    "shapes_captions": "sequence",
    "surnames": "multiclass",
}


def test_task_names_are_one_vocabulary(capsys):
    vocabulary = set(tasks.TASKS)
    assert {
        "binary",
        "multiclass",
        "regression",
        "sequence",
        "tagging",
        "reconstruction",
        "generation",
    } <= vocabulary
    for name, task in PRESET_TASKS.items():
        assert registry.model_info(name).task == task, name
    # The plain table the CLI reads is the registry's.
    table = json.loads(registry.METADATA_FILE.read_text())
    for name in registry.list_models():
        info = registry.model_info(name)
        assert info.task in vocabulary and info.tasks == (info.task,), name
        assert table["models"][name]["task"] == info.task, name
    for family in registry.list_families():
        assert set(table["models"][family]["tasks"]) <= vocabulary, family
    # What `annzoo list` shows in its task column.
    shown = {}
    for line in _run(capsys, "list").stdout.splitlines():
        cells = line.split()
        if len(cells) >= 3 and cells[0] in table["presets"]:
            shown[cells[0]] = cells[2]
    assert shown == {n: registry.model_info(n).task for n in registry.list_models()}
    # What `annzoo datasets` shows: the same words, the embedded datasets'
    # tasks from what their labels are (ner tags words, dates is translated).
    listed = {}
    for line in _run(capsys, "datasets").stdout.splitlines():
        cells = line.split()
        if len(cells) >= 2 and ":" not in cells[0]:
            listed[cells[0]] = cells[1]
    assert set(listed.values()) <= vocabulary, listed
    assert {k: listed[k] for k in DATASET_TASKS} == DATASET_TASKS
    # What the README and the guide call a task.
    pattern = re.compile(r"task[=:]\s*[\"'`]?([a-z_]+)")
    for path in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        for word in pattern.findall(path.read_text(encoding="utf-8")):
            assert word in vocabulary | {"auto"}, (path.name, word)
        for name, task in _task_cells(path.read_text(encoding="utf-8")):
            assert task in vocabulary, (path.name, name, task)
            if name in PRESET_TASKS:
                assert task == PRESET_TASKS[name], (path.name, name, task)


def _task_cells(markdown: str) -> list[tuple[str, str]]:
    """``(first cell, first word of the task cell)`` of each row of each
    Markdown table with a ``task`` column."""
    found, column = [], None
    for line in markdown.splitlines():
        if not line.startswith("|"):
            column = None
            continue
        cells = [c.strip().strip("`") for c in line.strip("|").split("|")]
        if column is None:
            column = cells.index("task") if "task" in cells else -1
        elif column >= 0 and not set(cells[column]) <= set("-: "):
            word = re.match(r"[a-z_]*", cells[column].strip("`")).group()
            found.append((cells[0], word))
    return found


def test_summaries_keep_every_column_within_100(monkeypatch):
    from annzoo.training.rundir import summary_text

    monkeypatch.setenv("COLUMNS", "80")  # what cut summary.txt before
    spec = registry.family_spec("seq2seq")  # two inputs: a "Connected to" column
    model = registry.create_model("seq2seq", **spec.smoke, compile=False)
    text = summary_text(model)
    _check_width(text, "summary.txt")
    header = next(line for line in text.splitlines() if "Layer (type)" in line)
    assert "Param #" in header and "Connected to" in header, header
    counts = [
        line.split("│")[3].strip()
        for line in text.splitlines()
        if line.startswith("│") and len(line.split("│")) > 4
    ]
    assert str(f"{model.count_params():,}") in text
    assert any(c.replace(",", "").isdigit() and c != "0" for c in counts)


def test_tune_prints_one_line_per_trial(capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("COLUMNS", "80")
    args = ["tune", "digits_mlp", "--max-trials", "2", "--epochs", "2"]
    done = _run(capsys, *args, "--output-dir", str(tmp_path))
    assert done.returncode == 0, done.stderr[-2000:]
    out = done.stdout
    # annzoo's own text fits; the directory the user named is as long as it
    # is (pytest's under xdist are over 80 characters).
    _check_width(out.replace(str(tmp_path), "DIR"), "annzoo tune")
    heads = [line for line in out.splitlines() if line.startswith("trial ")]
    assert [h.split()[1] for h in heads if "[" in h] == ["1/2", "2/2"], out
    for head in (h for h in heads if "[" in h):
        assert re.search(
            r"val_loss [\d.e-]+ \(best [\d.e-]+\)  \d epochs  [\d.]+ s", head
        )
    assert "Epoch 1/" not in out + done.stderr  # Keras' lines: -v only
    assert "Search: Running Trial" not in out
    assert "…" not in out  # the table is wrapped, not cut
    rows = Path(tmp_path, "digits_mlp", "trials.csv").read_text().splitlines()
    assert len(rows) == 3
    # The lines a search prints stay few: a line or three per trial, the
    # table, a few closing lines (85 lines for 3 trials before issue 27).
    assert len(out.splitlines()) <= 40, out


def test_tune_verbose_shows_keras_epoch_lines(monkeypatch, tmp_path):
    """``-v`` passes verbose on to keras-tuner's search (checked by replacing
    the search: no training needed)."""
    import keras_tuner

    seen = {}

    def search(self, *args, **kwargs):
        seen["verbose"] = kwargs.get("verbose")
        raise RuntimeError("stop here")

    monkeypatch.setattr(keras_tuner.Tuner, "search", search)
    from annzoo.tuning import tune

    for verbose, passed in ((1, 0), (2, 1)):
        with pytest.raises(RuntimeError, match="stop here"):
            tune("digits_mlp", max_trials=1, epochs=1, verbose=verbose,
                 output_dir=tmp_path / str(verbose))  # fmt: skip
        assert seen.pop("verbose") == passed


def test_python_dash_m_annzoo():
    done = run_python("-m", "annzoo", "info", "rnn", timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.startswith("rnn  (family; tasks: ")

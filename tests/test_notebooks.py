"""The course notebooks: each runs top to bottom, and none carries outputs.

Notebooks assert their key numbers in their own cells (a convolution's feature
map, a hand-computed network output...) and every claim their prose makes about
training (an accuracy reached, one optimizer beating another), so executing
them is the test. They run in full mode, the settings a reader runs: with
``ANNZOO_NOTEBOOK_SMOKE=1`` (for a quick look, not used here) their first code
cell takes fewer epochs and samples and the training claims are not checked.
"""

from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

NOTEBOOK_DIR = Path(__file__).resolve().parents[1] / "notebooks"
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("*.ipynb"))
COURSE = [
    "01_neuron_and_mlp",
    "02_training",
    "03_cnn",
    "04_rnn",
    "05_seq2seq_attention",
    "06_transformers",
    "07_techniques",
    "08_tuning",
    "09_generative",
    "10_lstm_and_tagging",
    "11_captioning",
    "12_transformer_translation",
]


def test_every_course_notebook_is_there():
    assert [p.stem for p in NOTEBOOKS] == COURSE


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_is_stored_without_outputs(path):
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code, f"{path.name} has no code cells"
    for i, cell in enumerate(code):
        assert cell.outputs == [], f"{path.name}: code cell {i} has stored outputs"
        assert cell.execution_count is None, (
            f"{path.name}: code cell {i} has an execution count"
        )


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs_top_to_bottom(path, tmp_path, monkeypatch):
    monkeypatch.delenv("ANNZOO_NOTEBOOK_SMOKE", raising=False)
    monkeypatch.setenv("MPLBACKEND", "Agg")
    nb = nbformat.read(path, as_version=4)
    client = nbclient.NotebookClient(
        nb,
        timeout=600,
        kernel_name="python3",
        resources={"metadata": {"path": str(tmp_path)}},
    )
    # A failing cell raises CellExecutionError with the cell's source and traceback.
    client.execute()

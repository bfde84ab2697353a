"""`annzoo.datasets`' docstring says only what is true: every built-in dataset,
the list `list_datasets` returns, and the libraries importing it leaves out."""

from __future__ import annotations

import re
import subprocess
import sys

from annzoo import datasets
from tests.conftest import ROOT

# What the docstring says importing the package does not import.
NOT_IMPORTED = {
    "scikit-learn": "sklearn",
    "Faker": "faker",
    "Babel": "babel",
    "Keras": "keras",
    "TensorFlow": "tensorflow",
    "TensorFlow Datasets": "tensorflow_datasets",
}


def test_docstring_lists_every_built_in_dataset():
    doc = datasets.__doc__
    listed = re.findall(r'^- ``"([a-z_]+)"``:', doc, flags=re.M)
    assert sorted(listed) == datasets.list_datasets()
    shown = re.search(r">>> datasets.list_datasets\(\)\n(.*)\n", doc).group(1)
    assert shown == repr(datasets.list_datasets())


def test_importing_the_package_imports_none_of_the_libraries_it_names():
    doc = " ".join(datasets.__doc__.split())
    for name in NOT_IMPORTED:
        assert name in doc.split("Importing this package imports none of", 1)[1]
    code = (
        "import sys, types\n"
        # Only annzoo.datasets and what it imports, whatever annzoo/__init__ does.
        "pkg = types.ModuleType('annzoo')\n"
        f"pkg.__path__ = [{str(ROOT / 'annzoo')!r}]\n"
        "sys.modules['annzoo'] = pkg\n"
        "import annzoo.datasets\n"
        "assert annzoo.datasets.list_datasets()\n"
        f"print(sorted(m for m in {sorted(NOT_IMPORTED.values())!r} "
        "if m in sys.modules))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "[]"

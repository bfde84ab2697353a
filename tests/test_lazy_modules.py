"""`import annzoo` is enough to reach every submodule the README names."""

import subprocess
import sys

from .conftest import ROOT, subprocess_env


def test_submodules_are_attributes_after_a_plain_import():
    code = (
        "import annzoo\n"
        "annzoo.plots.plot_attention, annzoo.data.make_input, annzoo.datasets.load\n"
        "annzoo.augment.preview, annzoo.text.Vocabulary, annzoo.metrics.TokenAccuracy\n"
        "annzoo.training.train, annzoo.tuning.tune, annzoo.predict, annzoo.export\n"
        "annzoo.layers.CRF, annzoo.finetune\n"
        "try:\n"
        "    annzoo.nothing_here\n"
        "except AttributeError as error:\n"
        "    assert 'nothing_here' in str(error)\n"
        "else:\n"
        "    raise SystemExit('an unknown attribute did not raise')\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env=subprocess_env(KERAS_BACKEND="jax"),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]


def test_import_annzoo_loads_no_backend_and_names_resolve_on_use():
    """`import annzoo` is plain (the CLI's fast commands rely on it); each
    public name loads its module on first use, and `annzoo.finetune` and
    `annzoo.decode` stay the functions even once their submodules (of the same
    names) are imported by other code."""
    code = (
        "import sys\n"
        "import annzoo\n"
        "heavy = ('tensorflow', 'keras', 'jax', 'torch')\n"
        "assert not [m for m in heavy if m in sys.modules], sys.modules.keys()\n"
        "assert set(annzoo.__all__) <= set(dir(annzoo))\n"
        # The registry fills itself on first lookup (nothing imported annzoo.models).
        "from annzoo.registry import model_info\n"
        "assert model_info('resnet20').family == 'cnn'\n"
        "import annzoo.training.runner  # imports annzoo.finetune and annzoo.decode\n"
        "assert 'annzoo.finetune' in sys.modules and 'annzoo.decode' in sys.modules\n"
        "assert callable(annzoo.finetune) and callable(annzoo.decode)\n"
        "from annzoo import finetune, decode\n"
        "assert finetune is annzoo.finetune and decode.__name__ == 'decode'\n"
        "for name in annzoo.__all__:\n"
        "    getattr(annzoo, name)\n"
        "assert 'resnet20' in annzoo.list_models()\n"
        "assert annzoo.create_model('lenet5').count_params() == 61706\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env=subprocess_env(KERAS_BACKEND="jax"),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]

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

"""`import annzoo` is enough to reach every submodule the README names."""

import subprocess
import sys

import pytest

from .conftest import ROOT, subprocess_env


def _run_jax(code: str, timeout: int = 120) -> None:
    """Runs ``code`` in a fresh interpreter on JAX; it must exit 0."""
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env=subprocess_env(KERAS_BACKEND="jax"),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert done.returncode == 0, (code, done.stderr[-2000:])


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
    _run_jax(code)


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
    _run_jax(code, timeout=300)


@pytest.mark.slow  # four fresh JAX processes
def test_a_saved_model_reloads_after_import_annzoo_in_either_order(tmp_path):
    """docs/models.md: once annzoo is imported, a model with annzoo's layers
    reloads with plain `keras.saving.load_model`. `import annzoo` imports no
    Keras, so its layers register when Keras is imported: after annzoo, or
    before it."""
    build = (
        "import annzoo, keras, numpy as np\n"
        "model = annzoo.build_transformer(variant='vit', input_shape=(8, 8, 1),"
        " patch_size=4, num_classes=3, d_model=8, num_heads=2, ff_dim=8,"
        " num_layers=1)\n"
        f"model.save({str(tmp_path / 'vit.keras')!r})\n"
        "x = np.random.default_rng(0).random((2, 8, 8, 1), dtype='float32')\n"
        f"np.save({str(tmp_path / 'x.npy')!r}, x)\n"
        f"np.save({str(tmp_path / 'y.npy')!r}, keras.ops.convert_to_numpy(model(x)))\n"
    )
    load = (
        "import sys, numpy as np\n"
        "{first}\n"
        "{second}\n"
        f"model = keras.saving.load_model({str(tmp_path / 'vit.keras')!r})\n"
        f"x = np.load({str(tmp_path / 'x.npy')!r})\n"
        f"y = np.load({str(tmp_path / 'y.npy')!r})\n"
        "np.testing.assert_array_equal(keras.ops.convert_to_numpy(model(x)), y)\n"
    )
    orders = [
        ("import annzoo", "import keras"),
        ("import keras", "import annzoo"),
        ("import annzoo", "from keras import saving; import keras"),
    ]
    for code in [build] + [load.format(first=a, second=b) for a, b in orders]:
        _run_jax(code)

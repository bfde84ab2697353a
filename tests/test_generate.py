"""`annzoo.generate` and ``annzoo generate``: the dispatch against each family's
own helper and against the networks called directly, seeds, labels, every
refused input, and the command on tiny run directories made here."""

from __future__ import annotations

import keras
import numpy as np
import pytest

import annzoo
from annzoo import AnnzooError
from annzoo import io as aio
from annzoo.cli import generate as cli_generate
from annzoo.cli import main
from annzoo.generation import generate, generate_text, language_model_vocabulary
from annzoo.generation.dispatch import GENERATORS, generating_tasks
from annzoo.models import autoencoder, gan
from tests.conftest import run_python

VOCABULARY = language_model_vocabulary(["abcab", "cabba"])  # 4 specials, a b c
LANGUAGES = ["Xish", "Yish", "Zish"]


@pytest.fixture(scope="module")
def models():
    keras.utils.set_random_seed(0)
    return {
        "cgan": annzoo.build_gan(
            (8, 8, 1), latent_dim=4, generator_filters=(8, 4),
            discriminator_filters=(4,), conditional_classes=3, compile=False,
        ),
        "gan": annzoo.build_gan(
            (4, 4, 1), latent_dim=3, generator_filters=(4,),
            discriminator_filters=(4,), compile=False,
        ),
        "vae": annzoo.build_autoencoder(
            (4, 4, 1), latent_dim=2, hidden_units=(8,), variational=True,
            compile=False,
        ),
        "cvae": annzoo.build_autoencoder(
            (4, 4, 1), latent_dim=2, hidden_units=(8,), variational=True,
            conditional_classes=3, compile=False,
        ),
        "lm": annzoo.build_language_model(
            len(VOCABULARY), sequence_length=8, embedding_dim=8, num_layers=1,
            num_heads=2, ff_dim=8, conditional_classes=3, compile=False,
        ),
        "mlp": annzoo.build_mlp(4, 3, hidden_units=(4,), compile=False),
    }  # fmt: skip


def _numpy(tensor):
    return keras.ops.convert_to_numpy(tensor)


# -- the function -----------------------------------------------------------------


def test_gan_images_are_the_generator_on_seeded_noise_and_labels(models):
    model = models["cgan"]
    labels = np.array([2, 0, 1, 1, 2], dtype="int32")
    images = generate(model, 5, labels=labels, seed=7)
    # The noise by hand: NumPy's standard normal from the seed.
    noise = np.random.default_rng(7).standard_normal((5, 4)).astype("float32")
    direct = keras.ops.convert_to_numpy(
        model.generator({"noise": noise, "labels": labels}, training=False)
    )
    np.testing.assert_allclose(images, direct, rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(images, gan.sample(model, 5, labels=labels, seed=7))
    assert images.shape == (5, 8, 8, 1) and images.dtype == np.float32
    # The label reaches the generator: same noise, other labels, other images.
    other = generate(model, 5, labels=(labels + 1) % 3, seed=7)
    assert np.abs(other - images).max() > 1e-4
    # One id for all, and None cycling through the classes 0, 1, 2, 0, ...
    np.testing.assert_array_equal(
        generate(model, 5, labels=1, seed=7),
        generate(model, 5, labels=np.ones(5, dtype="int32"), seed=7),
    )
    np.testing.assert_array_equal(
        generate(model, 5, seed=7),
        generate(model, 5, labels=np.array([0, 1, 2, 0, 1]), seed=7),
    )


def test_same_seed_same_samples_other_seed_others(models):
    for model in (models["gan"], models["vae"]):
        first, again = generate(model, 4, seed=3), generate(model, 4, seed=3)
        np.testing.assert_array_equal(first, again)
        assert np.abs(generate(model, 4, seed=4) - first).max() > 1e-6
    # No seed: fresh noise each call.
    unseeded = [generate(models["gan"], 4) for _ in range(2)]
    assert np.abs(unseeded[0] - unseeded[1]).max() > 1e-6


def test_autoencoder_sample_reconstruct_and_interpolate(models):
    vae, cvae = models["vae"], models["cvae"]
    np.testing.assert_array_equal(
        generate(vae, 3, seed=2), autoencoder.sample(vae, 3, seed=2)
    )
    # Sampling decodes N(0, I) codes drawn by NumPy from the seed.
    z = np.random.default_rng(2).standard_normal((3, 2)).astype("float32")
    decoded = keras.ops.convert_to_numpy(vae.get_layer("decoder")(z))
    np.testing.assert_allclose(generate(vae, 3, seed=2), decoded, atol=1e-6)
    np.testing.assert_array_equal(
        generate(cvae, 3, labels=[2, 1, 0], seed=2),
        autoencoder.sample(cvae, 3, labels=[2, 1, 0], seed=2),
    )
    x = np.random.default_rng(0).random((3, 4, 4, 1)).astype("float32")
    # A reconstruction is the whole model at inference (the mean code).
    np.testing.assert_allclose(
        generate(vae, mode="reconstruct", inputs=x), _numpy(vae(x, training=False)),
        atol=1e-6,
    )  # fmt: skip
    np.testing.assert_allclose(
        generate(cvae, mode="reconstruct", inputs=x, labels=[0, 1, 2]),
        _numpy(cvae([x, np.array([0, 1, 2], dtype="int32")], training=False)),
        atol=1e-6,
    )
    # The interpolation: codes on the segment between the two means, by hand.
    path = generate(vae, 5, mode="interpolate", inputs=x[:2])
    means = keras.ops.convert_to_numpy(vae.get_layer("encoder")(x[:2])[0])
    weights = np.linspace(0, 1, 5)[:, None]
    codes = ((1 - weights) * means[0] + weights * means[1]).astype("float32")
    expected = keras.ops.convert_to_numpy(vae.get_layer("decoder")(codes))
    np.testing.assert_allclose(path, expected, atol=1e-5)
    np.testing.assert_allclose(path[[0, -1]], _numpy(vae(x[:2])), atol=1e-5)


def test_text_is_generate_text_with_the_same_options(models):
    lm = models["lm"]
    options = dict(prompt="ab", temperature=0.7, top_k=2, top_p=0.9, max_length=6)
    texts = generate(lm, 4, labels=[0, 1, 2, 0], seed=5, vocabulary=VOCABULARY,
                     **options)  # fmt: skip
    assert texts == generate_text(lm, VOCABULARY, num=4, labels=[0, 1, 2, 0],
                                  seed=5, **options)  # fmt: skip
    assert all(t.startswith("ab") and len(t) <= 6 for t in texts)
    assert generate(lm, 4, seed=5, vocabulary=VOCABULARY) == generate_text(
        lm, VOCABULARY, num=4, labels=[0, 1, 2, 0], seed=5
    )  # labels None: the classes in turn


def test_the_table_covers_every_generative_family_and_the_cli_agrees():
    # Every family whose spec draws samples serves tasks `generate` serves.
    for family in annzoo.list_families():
        spec = annzoo.registry.family_spec(family)
        if "samples" in spec.report:
            assert set(spec.tasks) <= set(generating_tasks()), family
    plain = {task: (row.output, row.modes) for row in GENERATORS for task in row.tasks}
    assert plain == cli_generate.OUTPUTS


def _refused(call, *needles):
    with pytest.raises(AnnzooError) as caught:
        call()
    message = str(caught.value)
    assert "Received" in message and "\n" not in message, message
    for needle in needles:
        assert needle in message, message
    return message


def test_bad_input_is_refused_in_one_sentence_naming_the_argument(models):
    cgan, gan_, vae, lm, mlp = (models[k] for k in ("cgan", "gan", "vae", "lm", "mlp"))
    text = dict(vocabulary=VOCABULARY)
    _refused(lambda: generate(cgan, 2, labels=3, seed=0), "`labels`", "[0, 3)")
    _refused(lambda: generate(gan_, 2, labels=0, seed=0), "`labels`", "None")
    _refused(lambda: generate(lm, 2, labels=[0, 5], **text), "`labels`", "[0, 3)")
    _refused(lambda: generate(lm, 2, temperature=0, **text), "`temperature`", "> 0")
    _refused(lambda: generate(lm, 2, temperature=-1.0, **text), "`temperature`")
    _refused(lambda: generate(lm, 2, top_p=0.0, **text), "`top_p`", "(0, 1]")
    _refused(lambda: generate(lm, 2, top_p=1.5, **text), "`top_p`", "(0, 1]")
    message = _refused(lambda: generate(lm, 2, prompt="abzq!", **text), "`prompt`")
    assert "'!', 'q', 'z'" in message  # which characters
    _refused(lambda: generate(lm, 2), "`vocabulary`")
    for num in (0, -1, 2.5):
        _refused(lambda num=num: generate(gan_, num), "`num`")
    message = _refused(lambda: generate(mlp, 2), "`model`", "'adversarial'")
    assert "'generation'" in message
    _refused(lambda: generate(gan_, 2, temperature=0.8), "`temperature`", "images")
    _refused(lambda: generate(gan_, 2, prompt="a"), "`prompt`")
    _refused(lambda: generate(gan_, 2, mode="reconstruct"), "`mode`", "'sample'")
    _refused(lambda: generate(vae, 2, mode="bogus"), "`mode`")
    x = np.zeros((2, 4, 4, 1), dtype="float32")
    _refused(lambda: generate(vae, 2, inputs=x), "`inputs`")
    _refused(lambda: generate(vae, mode="reconstruct"), "`inputs`")
    _refused(lambda: generate(vae, 3, mode="reconstruct", inputs=x), "`num`")
    _refused(lambda: generate(vae, mode="interpolate", inputs=x[:1]), "`inputs`")
    _refused(lambda: generate(vae, 2, seed=-1), "`seed`")


# -- the command ------------------------------------------------------------------


def _run_dir(path, model, name, task, vocabulary=None, which="final"):
    path.mkdir()
    aio.write_json(path / "recipe.json", {"model": {"name": name, "task": task}})
    if vocabulary is not None:
        aio.write_json(path / "vocabulary.json", vocabulary)
    if model is not None:
        aio.save_model(model, path / f"{which}.keras")
    return path


@pytest.fixture(scope="module")
def runs(models, tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    # A GAN run keeps final.keras only (digits_gan: checkpoint false).
    lm_vocabulary = {
        "inputs": list(VOCABULARY.tokens),
        "tokenizer": "characters",
        "classes": LANGUAGES,
    }
    return {
        "cgan": _run_dir(root / "cgan", models["cgan"], "dcgan_digits", "adversarial"),
        "gan": _run_dir(root / "gan", models["gan"], "dcgan_shapes", "adversarial"),
        "lm": _run_dir(
            root / "lm",
            models["lm"],
            "surnames_lm",
            "generation",
            lm_vocabulary,
            which="best",
        ),  # fmt: skip
        "vae": _run_dir(
            root / "vae", models["vae"], "vae_digits", "bernoulli", which="best"
        ),  # fmt: skip
        "mlp": _run_dir(root / "mlp", None, "digits_mlp", "multiclass"),
        "empty": _run_dir(root / "empty", None, "dcgan_digits", "adversarial"),
    }


def _cli(capsys, *args):
    code = main(["generate", *map(str, args)])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_cli_writes_a_png_grid_of_the_gan_samples(runs, models, tmp_path, capsys):
    output = tmp_path / "samples.png"
    code, out, err = _cli(capsys, runs["cgan"], "--num", 7, "--label", 2,
                          "--seed", 1, "--output", output)  # fmt: skip
    assert code == 0, err
    assert "7 images" in err and "final.keras" in err and "seed 1" in err
    from PIL import Image

    with Image.open(output) as image:  # a readable PNG, wider than one cell
        assert image.format == "PNG" and image.width > 100
    assert not list(tmp_path.glob(".*tmp*"))  # written atomically: no leftovers


def test_cli_reconstructs_and_interpolates_with_a_vae(runs, tmp_path, capsys):
    images = tmp_path / "pair.npy"
    np.save(images, np.random.default_rng(0).random((2, 4, 4, 1)))
    for mode, count in (("reconstruct", 2), ("interpolate", 6)):
        output = tmp_path / f"{mode}.png"
        code, out, err = _cli(capsys, runs["vae"], "--mode", mode, "--inputs",
                              images, "--num", count, "--output", output)  # fmt: skip
        assert code == 0 and output.stat().st_size > 0, err
        assert f"{count} images" in err and f"mode {mode})" in err, err
    code, out, err = _cli(capsys, runs["vae"], "--mode", "interpolate", "--inputs",
                          images, images, "--output", tmp_path / "x.png")  # fmt: skip
    assert code == 2 and "`inputs` must be two images" in err


def test_cli_writes_the_texts_of_generate_text(runs, models, tmp_path, capsys):
    code, out, err = _cli(capsys, runs["lm"], "--num", 4, "--prompt", "ab",
                          "--label", "Zish", "--temperature", 0.8, "--top-k", 3,
                          "--seed", 9)  # fmt: skip
    assert code == 0, err
    lm = aio.load_model(runs["lm"] / "best.keras")
    expected = generate_text(lm, VOCABULARY, num=4, prompt="ab", labels=2,
                             temperature=0.8, top_k=3, seed=9)  # fmt: skip
    assert out.splitlines() == expected and "best.keras" in err
    output = tmp_path / "names.txt"
    code, out, err = _cli(capsys, runs["lm"], "--num", 4, "--prompt", "ab",
                          "--label", 2, "--temperature", 0.8, "--top-k", 3,
                          "--seed", 9, "--output", output)  # fmt: skip
    assert code == 0 and out == ""
    assert output.read_text().splitlines() == expected


BAD_COMMANDS = [
    ("cgan", ["--label", "3"], "`--label`", "[0, 3)"),
    ("cgan", ["--label", "-1"], "`--label`", "[0, 3)"),
    ("gan", ["--label", "0"], "`--label`", "not conditioned"),
    ("lm", ["--label", "Wish"], "`--label`", "Xish"),
    ("lm", ["--temperature", "0"], "`--temperature`", "> 0"),
    ("lm", ["--temperature", "nan"], "`--temperature`", "> 0"),
    ("lm", ["--top-p", "0"], "`--top-p`", "(0, 1]"),
    ("lm", ["--top-p", "1.01"], "`--top-p`", "(0, 1]"),
    ("lm", ["--prompt", "abQ?"], "`--prompt`", "'?', 'Q'"),
    ("lm", ["--num", "0"], "`--num`", ">= 1"),
    ("mlp", [], "`RUN_DIR`", "'multiclass'"),
    ("lm", ["--output", "names.png"], "`--output`", ".txt"),
    ("cgan", ["--output", "samples.txt"], "`--output`", ".png"),
    ("cgan", ["--prompt", "a"], "`--prompt`", "images"),
    ("cgan", ["--mode", "interpolate", "--inputs", "x.npy"], "`--mode`", "sample"),
    ("empty", [], "`RUN_DIR`", "final.keras"),
    ("missing", [], "`RUN_DIR`", "recipe.json"),
]


@pytest.mark.parametrize("run, args, argument, expected", BAD_COMMANDS)
def test_cli_refuses_bad_input_in_one_line(runs, tmp_path, capsys, run, args,
                                           argument, expected):  # fmt: skip
    run_dir = runs.get(run, tmp_path / "no_such_run")
    args = [str(tmp_path / a) if a.endswith((".png", ".txt")) else a for a in args]
    code, out, err = _cli(capsys, run_dir, *args)
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1, err
    assert lines[0].startswith("annzoo: error: " + argument), lines[0]
    assert expected in lines[0] and "Received" in lines[0], lines[0]
    assert not list(tmp_path.iterdir())  # nothing written


def test_cli_as_a_user_runs_it_refuses_before_starting_a_backend(runs):
    # The one subprocess: `python -m annzoo generate` with a bad option ends in
    # one line, exit status 2, having imported no Keras nor backend (-X
    # importtime lists every module imported, on stderr).
    done = run_python("-X", "importtime", "-m", "annzoo", "generate",
                      str(runs["lm"]), "--top-p", "2", "--seed", "4")  # fmt: skip
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2 and lines[-1].startswith("annzoo: error: `--top-p`")
    imported = {line.split("|")[-1].strip() for line in lines[:-1]}
    assert not imported & {"keras", "tensorflow", "jax", "torch"}
    assert "annzoo.cli.generate" in imported  # the listing is what it seems

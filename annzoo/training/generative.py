"""What a generative run reports: samples to look at and measures of quality.

The runner calls `report` for the families whose ``FamilySpec.report`` names
``"samples"`` or ``"reconstructions"``; what it draws and measures depends on
the model's task (a table per task below, never a family name):

* ``"bernoulli"`` (VAEs): ``samples.png`` from the prior, ``reconstructions.png``
  of test images, ``interpolation.png`` (decoded codes between two test
  images), and the test negative ELBO in nats per image with its
  reconstruction and KL terms (`annzoo.models.autoencoder.elbo_terms`), beside
  the same loss of a per-pixel baseline fitted to the training pixels.
* ``"adversarial"`` (GANs): ``samples.png`` (one row per class when
  conditional) and `classifier_measures`: the accuracy of a small annzoo CNN,
  trained on the training split inside the measure, on conditional samples,
  and the Frechet distance between its penultimate features of real test
  images and of as many samples (the "digits FID" on the digits data).
* ``"generation"`` (language models): the test bits per character beside a
  smoothed character bigram's (`bigram_bits`); of names, ``names.txt`` (names
  per class), the share of generated names not in the training split and,
  when conditioned on the class, the share the surnames classifier assigns to
  the class asked for (`class_share`, `train_classifier`); of running text
  cut into windows (the ``"kjv"`` dataset), ``samples.txt``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import keras
import numpy as np

from annzoo import plots_generative
from annzoo.models import autoencoder, gan
from annzoo.registry import create_model

# A language model's measures live in their own module; re-exported here,
# where the runner and the tests look for every generative measure.
from annzoo.training.language_measures import (
    bigram_bits,
    class_share,
    names_report,
    train_classifier,
)

__all__ = [
    "DRAWN",
    "bernoulli_baseline",
    "bigram_bits",
    "class_share",
    "classifier_measures",
    "frechet_distance",
    "names_report",
    "report",
    "spread",
    "train_classifier",
]

# The report items (FamilySpec.report) this module draws.
DRAWN = ("samples", "reconstructions")
COLUMNS = 10  # samples per row of samples.png
FEATURE_LAYER = "head_dense1_act"  # the classifier's penultimate features


def report(
    model,
    task: str,
    splits: dict,
    run_dir: Path,
    *,
    drawn,
    title: str,
    seed: int,
    feed=None,
) -> dict[str, Any]:
    """Draws the run's pictures and returns ``{"test": measures, ...}``.

    ``feed`` is the family's ``FamilySpec.fit_arrays`` (a language model's
    next-token labels), when it has one.
    """
    if task == "generation":
        return names_report(model, splits, run_dir, seed=seed, feed=feed)
    out: dict[str, Any] = {"test": {}}
    train, test = splits["train"], splits["test"]
    classes = _classes(model, task)
    # A plain autoencoder's codes follow no known distribution: nothing to
    # sample or bound.
    variational = getattr(model, "variational", task == "adversarial")
    if "samples" in drawn and task in _SAMPLERS and variational:
        rows = classes or COLUMNS
        labels = np.repeat(np.arange(rows), COLUMNS) if classes else None
        images = _SAMPLERS[task](model, rows * COLUMNS, labels=labels, seed=seed)
        names = _row_names(train, classes)
        plots_generative.plot_image_grid(
            images,
            run_dir / "samples.png",
            columns=COLUMNS,
            row_labels=names,
            title=f"{title}: samples",
        )
        out["samples_png"] = "samples.png"
    if "reconstructions" in drawn:
        shown = test.x[:COLUMNS]
        decoded = model.predict(shown, verbose=0)
        plots_generative.plot_reconstructions(
            shown, decoded, run_dir / "reconstructions.png", title=title
        )
        out["reconstructions_png"] = "reconstructions.png"
        # Between the first test images of two different classes (or the first
        # two): the code space is smooth when each step looks like a digit.
        y = np.asarray(test.y).reshape(len(test.x), -1)[:, 0]
        other = int(np.argmax(y != y[0])) or 1
        pairs = [(0, other), (1, 2)] if len(test.x) > 2 else [(0, other)]
        path = np.concatenate(
            [
                autoencoder.interpolate(model, test.x[a], test.x[b], COLUMNS)
                for a, b in pairs
            ]
        )
        plots_generative.plot_image_grid(
            path,
            run_dir / "interpolation.png",
            columns=COLUMNS,
            title=f"{title}: from one test image's code to another's",
        )
        out["interpolation_png"] = "interpolation.png"
    measure = _MEASURES.get(task)
    if measure is not None and variational:
        out["test"].update(measure(model, train, test, classes=classes, seed=seed))
    return out


def _classes(model, task: str) -> int | None:
    """Classes of a conditional GAN's generator (its ``label_one_hot``), else None."""
    if task != "adversarial" or not model.conditional:
        return None
    return int(model.generator.get_layer("label_one_hot").num_tokens)


def _row_names(train, classes: int | None):
    if not classes:
        return None
    names = train.class_names
    return list(names) if names and len(names) == classes else list(range(classes))


def _vae_sample(model, num, *, labels, seed):
    return autoencoder.sample(model, num, labels=labels, seed=seed)


def _gan_sample(model, num, *, labels, seed):
    return gan.sample(model, num, labels=labels, seed=seed)


_SAMPLERS = {"bernoulli": _vae_sample, "adversarial": _gan_sample}


def bernoulli_baseline(train_x, test_x, *, eps: float = 1e-3) -> float:
    """Test loss (nats per image) of one Bernoulli probability per pixel, the
    pixel's mean over the training images: the VAE's loss without a code."""
    p = np.clip(np.asarray(train_x, "float64").mean(axis=0), eps, 1 - eps)
    x = np.asarray(test_x, "float64")
    nll = -(x * np.log(p) + (1 - x) * np.log(1 - p))
    return float(nll.reshape(len(x), -1).sum(axis=1).mean())


def _elbo_measures(model, train, test, *, classes, seed):
    terms = autoencoder.elbo_terms(model, test.x, samples=10, seed=seed)
    return {
        "negative_elbo": terms["negative_elbo"],
        "elbo_reconstruction": terms["reconstruction"],
        "elbo_kl": terms["kl"],
        "baseline_pixel_nll": bernoulli_baseline(train.x, test.x),
    }


def frechet_distance(features_a, features_b) -> float:
    """Frechet distance between Gaussians fitted to two feature sets:
    ``|mu_a - mu_b|^2 + tr(S_a + S_b - 2 (S_a S_b)^(1/2))``."""
    a = np.asarray(features_a, "float64")
    b = np.asarray(features_b, "float64")
    mu_a, mu_b = a.mean(axis=0), b.mean(axis=0)
    s_a, s_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    # tr((S_a S_b)^(1/2)) from the symmetric form sqrt(S_a) S_b sqrt(S_a),
    # whose eigenvalues are those of S_a S_b and are real and >= 0.
    root_a = _psd_sqrt(s_a)
    middle = _psd_sqrt(root_a @ s_b @ root_a)
    trace = np.trace(s_a) + np.trace(s_b) - 2 * np.trace(middle)
    return float(np.sum((mu_a - mu_b) ** 2) + trace)


def _psd_sqrt(matrix: np.ndarray) -> np.ndarray:
    values, vectors = np.linalg.eigh((matrix + matrix.T) / 2)
    return (vectors * np.sqrt(np.clip(values, 0, None))) @ vectors.T


def feature_classifier(images, labels, *, num_classes: int, seed: int, epochs: int):
    """The classifier whose features measure generated images, and a model of
    those features (its `FEATURE_LAYER`): annzoo's ``cnn`` (filters 16-32,
    dense 64, dropout 0.2), seeded, trained on ``images`` and ``labels``. The
    run's measures (`classifier_measures`) and a GAN search's objective
    (annzoo.tuning.fid) both use it."""
    keras.utils.set_random_seed(seed)
    classifier = create_model(
        "cnn",
        input_shape=tuple(images.shape[1:]),
        num_classes=num_classes,
        filters=(16, 32),
        hidden_units=(64,),
        dropout=0.2,
    )
    classifier.fit(
        images, labels, batch_size=32, epochs=int(epochs), verbose=0, shuffle=True
    )
    features = keras.Model(
        classifier.inputs, classifier.get_layer(FEATURE_LAYER).output
    )
    return classifier, features


def classifier_measures(
    model, train, test, *, classes: int | None, seed: int, epochs: int = 30
) -> dict[str, float]:
    """A GAN's samples judged by a CNN classifier trained on ``train``.

    The classifier (annzoo's ``cnn``, filters 16-32, dense 64; seeded) trains
    on the training split's images and labels. As many samples as test images
    are drawn (a conditional GAN's with the test labels); ``sample_accuracy``
    is the share the classifier assigns to their requested label, and
    ``frechet_distance`` compares its penultimate features of the test images
    and of the samples (the "digits FID" on the digits data; 0 for identical
    feature statistics); ``sample_diversity`` compares their spread in those
    features (`spread`).
    """
    classifier, features = feature_classifier(
        train.x, train.y, num_classes=int(train.num_classes or 0), seed=seed,
        epochs=epochs,
    )  # fmt: skip
    labels = np.asarray(test.y, "int32") if classes else None
    samples = gan.sample(model, len(test.x), labels=labels, seed=seed)
    real = features.predict(test.x, verbose=0)
    fake = features.predict(samples, verbose=0)
    groups = np.asarray(test.y).reshape(-1) if classes else np.zeros(len(real))
    out = {
        "classifier_test_accuracy": _accuracy(classifier, test.x, test.y),
        "frechet_distance": frechet_distance(real, fake),
        "sample_diversity": spread(fake, groups) / spread(real, groups),
    }
    if classes:
        out["sample_accuracy"] = _accuracy(classifier, samples, labels)
    return out


def spread(features, groups) -> float:
    """Mean distance between two feature rows of the same group (class),
    averaged over the groups: `classifier_measures`' ``sample_diversity`` is
    the samples' spread over the test images' (1: as varied; near 0: one
    image per class, the mode collapse a Frechet distance alone can hide)."""
    features = np.asarray(features, "float64")
    means = []
    for group in np.unique(groups):
        rows = features[groups == group]
        if len(rows) < 2:
            continue
        gaps = np.sqrt(((rows[:, None] - rows[None]) ** 2).sum(-1))
        means.append(gaps.sum() / (len(rows) * (len(rows) - 1)))
    return float(np.mean(means))


def _accuracy(classifier, x, y) -> float:
    predicted = classifier.predict(x, verbose=0).argmax(axis=-1)
    return float(np.mean(predicted == np.asarray(y).reshape(-1)))


def _gan_measures(model, train, test, *, classes, seed):
    return classifier_measures(model, train, test, classes=classes, seed=seed)


_MEASURES = {"bernoulli": _elbo_measures, "adversarial": _gan_measures}

"""A GAN search's objective: the Frechet distance of its samples, ``val_fid``.

A GAN has no validation loss (its two losses chase each other and say nothing
of the images), so a search over a GAN minimises the "digits FID" instead, as
`annzoo.training.generative.classifier_measures` reports it at the end of a
run: the Frechet distance between a small classifier's penultimate features
of held-out real images and of as many generated ones (0 when the feature
statistics are identical; lower is better, direction ``"min"``).

`FrechetJudge` trains that classifier once per search, on the search's
training images and labels (annzoo's ``cnn``, the same configuration as the
run's measure, seeded, `CLASSIFIER_EPOCHS` epochs), and keeps the features of
`FID_SAMPLES` held-out real images. `FrechetObjective`, a Keras callback,
then adds ``val_fid`` to each epoch's logs: `FID_SAMPLES` samples of the GAN
(fixed noise, `annzoo.models.gan.sample` with the judge's seed; a conditional
GAN's drawn with the real images' labels) through the same features. keras-tuner
reads it like any other logged metric, so it is the trials' score in
``trials.csv``, the reports and ``best_hyperparameters.json``.

The sample size is small and fixed so that an epoch's measure costs a forward
pass of a few hundred 8x8 images on a CPU; the distance of a small sample is
biased upwards (the covariances are estimated from `FID_SAMPLES` rows), so it
compares trials of one search, not figures from elsewhere. The FID a run
reports in ``results.json`` uses the whole test split and a classifier
trained longer.
"""

from __future__ import annotations

from typing import Any

import keras
import numpy as np

from annzoo.errors import AnnzooError
from annzoo.models import gan as gan_module
from annzoo.training.generative import feature_classifier, frechet_distance

__all__ = [
    "CLASSIFIER_EPOCHS",
    "FID_OBJECTIVE",
    "FID_SAMPLES",
    "FrechetJudge",
    "FrechetObjective",
]

FID_OBJECTIVE = "val_fid"
# Real and generated images per measure: the digits' validation split holds
# 270, and a few hundred rows estimate the 64 features' covariance.
FID_SAMPLES = 200
# The run's measure trains its classifier 30 epochs; a search trains it once,
# before the first trial, and a shorter training ranks the trials alike.
CLASSIFIER_EPOCHS = 10


def _images(name: str, value: Any) -> np.ndarray:
    array = np.asarray(value)
    if array.ndim != 4 or array.dtype.kind != "f" or len(array) < 2:
        raise AnnzooError(
            f"`{name}` must be float images (samples, height, width, channels), "
            f"at least 2 of them. Received: {name} of shape {array.shape} and "
            f"dtype {array.dtype}"
        )
    return array.astype("float32")


def _labels(name: str, value: Any, num: int) -> np.ndarray:
    array = np.asarray(value).reshape(-1) if value is not None else None
    if array is None or array.dtype.kind not in "iu" or len(array) != num:
        shown = None if array is None else f"shape {np.shape(value)}"
        raise AnnzooError(
            f"`{name}` must be {num} integer class ids, one per image (the FID's "
            f"classifier trains on labelled images). Received: {name}={shown}"
        )
    return array.astype("int32")


class FrechetJudge:
    """The classifier features a GAN's samples are compared in, and the real
    images' features.

    Args:
        train_images: float images the classifier trains on.
        train_labels: their class ids.
        real_images: held-out real images; the first ``num_samples`` are kept.
        real_labels: their class ids, the labels a conditional GAN's samples
            are drawn with (None: cycling through the classes).
        num_samples: images per measure, real and generated (at most the real
            images given).
        epochs: the classifier's training epochs.
        seed: seeds the classifier's training and the samples' noise.

    Example:
        >>> judge = FrechetJudge(train.x, train.y, val.x, val.y)
        >>> judge.score(gan)   # the digits FID of 200 samples
    """

    def __init__(
        self,
        train_images: Any,
        train_labels: Any,
        real_images: Any,
        real_labels: Any = None,
        *,
        num_samples: int = FID_SAMPLES,
        epochs: int = CLASSIFIER_EPOCHS,
        seed: int = 0,
    ) -> None:
        train_images = _images("train_images", train_images)
        train_labels = _labels("train_labels", train_labels, len(train_images))
        real_images = _images("real_images", real_images)
        if real_images.shape[1:] != train_images.shape[1:]:
            raise AnnzooError(
                "`real_images` must have the training images' shape "
                f"{train_images.shape[1:]}. Received: {real_images.shape[1:]}"
            )
        if real_labels is not None:
            real_labels = _labels("real_labels", real_labels, len(real_images))
        self.num_samples = min(int(num_samples), len(real_images))
        real_images = real_images[: self.num_samples]
        if real_labels is not None:
            real_labels = real_labels[: self.num_samples]
        self.real_labels = real_labels
        self.seed = int(seed)
        num_classes = int(train_labels.max()) + 1
        # Seeded here, before any trial (which seeds itself again).
        _, self._features = feature_classifier(
            train_images, train_labels, num_classes=num_classes, seed=self.seed,
            epochs=epochs,
        )  # fmt: skip
        self.real_features = self.features(real_images)

    def features(self, images: Any) -> np.ndarray:
        """The classifier's penultimate features ``(n, 64)`` of ``images``."""
        out = self._features(np.asarray(images, "float32"), training=False)
        return keras.ops.convert_to_numpy(out).astype("float64")

    def score(self, model: Any) -> float:
        """The Frechet distance between the real features and those of
        ``num_samples`` samples of the GAN ``model``."""
        labels = None
        if getattr(model, "conditional", False):
            labels = self.real_labels  # None: the classes in turn
        samples = gan_module.sample(
            model, self.num_samples, labels=labels, seed=self.seed
        )
        return frechet_distance(self.real_features, self.features(samples))


class FrechetObjective(keras.callbacks.Callback):
    """Logs ``val_fid`` (`FrechetJudge.score` of the model) at each epoch's end.

    Copies share the judge: keras-tuner copies the callbacks for every trial,
    and the classifier is trained once per search.
    """

    def __init__(self, judge: FrechetJudge):
        super().__init__()
        self.judge = judge

    def __deepcopy__(self, memo):
        return type(self)(self.judge)

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs[FID_OBJECTIVE] = self.judge.score(self.model)

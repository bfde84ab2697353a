"""A grid of samples after every epoch, from noise drawn once: watch a
generative model learn.

TensorFlow's DCGAN tutorial saves ``image_at_epoch_NNNN.png`` after every
epoch, from a seed tensor drawn once, so that the pictures show the same
points of the noise space as training goes on; keras.io's DCGAN example saves
a few images per epoch too, but from new noise each time, and its readers
cannot tell a better generator from luckier noise. `SamplesPerEpoch` does the
former: ``samples/epoch-001.png``, ``samples/epoch-002.png``, ... in the run
directory, one file per epoch (a flip-book; they stay after the run, and a
resumed run adds the epochs it trains), each the grid the run's report draws
as ``samples.png``: the same layout (one row per class for a conditional
model, a 10x10 grid otherwise) and the same noise, the run's seed, so the last
epoch's picture shows the same samples as ``samples.png`` when the run
reports its final model.

The noise comes from NumPy's generator seeded with the run's seed (the
families' own `annzoo.models.gan.sample` and `annzoo.models.autoencoder.sample`
draw it so), never from Keras' random state: drawing a grid changes nothing in
training, and a run resumed after kill -9 trains the same bits
(tests/test_generative_recipes.py).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import keras
import numpy as np

from annzoo import datasets, plots_generative, registry
from annzoo.errors import AnnzooError
from annzoo.models import autoencoder, gan

__all__ = ["COLUMNS", "DIRECTORY", "SamplesPerEpoch", "samples_callback"]

COLUMNS = 10  # samples per row, as in the report's samples.png
DIRECTORY = "samples"  # in the run directory


def _gan_classes(model) -> int | None:
    if not model.conditional:
        return None
    return int(model.generator.get_layer("label_one_hot").num_tokens)


def _vae_classes(model) -> int | None:
    decoder = model.get_layer("decoder")
    one_hot = [
        layer
        for layer in decoder.layers
        if isinstance(layer, keras.layers.CategoryEncoding)
    ]
    return int(one_hot[0].num_tokens) if one_hot else None


# task -> (sampler(model, num, labels=, seed=), classes(model), draws(model)):
# what a grid of samples is for the models of each task.
_SAMPLERS: dict[str, tuple[Callable, Callable, Callable]] = {
    "adversarial": (gan.sample, _gan_classes, lambda model: True),
    # A plain autoencoder's codes follow no known distribution: nothing to
    # sample.
    "bernoulli": (
        autoencoder.sample,
        _vae_classes,
        lambda model: bool(getattr(model, "variational", False)),
    ),
}


class SamplesPerEpoch(keras.callbacks.Callback):
    """Writes ``directory/epoch-NNN.png``, a grid of samples, after each epoch.

    Every epoch's grid comes from the same noise (NumPy, seeded with ``seed``)
    and, for a conditional model, the same labels: row ``k`` holds class
    ``k``'s samples and is named by ``row_names[k]``. Only the weights change
    from one picture to the next.

    Args:
        directory: where the PNGs go (created when the first one is written).
        sample: ``sample(model, num, labels=, seed=)`` -> images in [0, 1].
        classes: ``classes(model)`` -> the classes the model is conditioned
            on, or None.
        seed: the noise's seed, the same for every epoch.
        row_names: a name per class (a dataset's ``class_names``); None (or
            names that do not match the model's classes) names rows by id.
        title: the pictures' title, followed by the epoch.
        columns: samples per row.
        draws: ``draws(model)`` -> whether the model can be sampled at all
            (a plain autoencoder cannot); None: always.

    Example:
        >>> callback = SamplesPerEpoch(run_dir / "samples", gan.sample,
        ...                            classes=lambda m: None, seed=0)
        >>> model.fit(images, epochs=5, callbacks=[callback])
    """

    def __init__(
        self,
        directory: str | Path,
        sample: Callable,
        *,
        classes: Callable,
        seed: int = 0,
        row_names: Sequence[str] | None = None,
        title: str = "samples",
        columns: int = COLUMNS,
        draws: Callable | None = None,
    ):
        super().__init__()
        self.directory = Path(directory)
        self.sample = sample
        self.classes = classes
        self.seed = int(seed)
        self.row_names = None if row_names is None else [str(n) for n in row_names]
        self.title = title
        self.columns = int(columns)
        self.draws = draws

    def grid(self, model) -> tuple[np.ndarray, np.ndarray | None, list | None]:
        """``(images, labels, row_names)`` of the grid ``model`` draws now:
        ``rows * columns`` images, with their class ids (None when the model
        is not conditional) and one name per row."""
        classes = self.classes(model)
        rows = classes or self.columns
        labels = np.repeat(np.arange(rows), self.columns) if classes else None
        images = self.sample(model, rows * self.columns, labels=labels, seed=self.seed)
        names = None
        if classes:
            names = (
                self.row_names
                if self.row_names is not None and len(self.row_names) == classes
                else [str(k) for k in range(classes)]
            )
        return images, labels, names

    def path(self, epoch: int) -> Path:
        """The file of (0-based) ``epoch``: ``epoch-001.png`` for the first."""
        return self.directory / f"epoch-{epoch + 1:03d}.png"

    def on_epoch_end(self, epoch, logs=None):
        model = self.model  # on JAX, the training loop's state synced in
        if self.draws is not None and not self.draws(model):
            return
        images, _, names = self.grid(model)
        if not np.all(np.isfinite(images)):
            return  # a NaN epoch: the NaN guard stops the run and says where
        plots_generative.plot_sample_mosaic(
            images,
            self.path(epoch),
            columns=self.columns,
            row_labels=names,
            title=f"{self.title}, epoch {epoch + 1}",
        )


def _class_names(data: dict[str, Any]) -> Sequence[str] | None:
    """The dataset's class names, read from its metadata (never its samples)."""
    try:
        info = datasets.dataset_info(data["dataset"], **data["options"])
    except AnnzooError:
        return None
    return info.get("class_names")


def samples_callback(recipe, run_dir: str | Path) -> SamplesPerEpoch | None:
    """The per-epoch grid of a recipe whose family's report draws samples
    (``FamilySpec.report``) and whose task samples images; None otherwise.

    Whether the model can be sampled is its own to say (a plain
    autoencoder cannot: no picture is drawn).
    """
    drawn = registry.family_spec(recipe.model["name"]).report
    task = recipe.model.get("task", "multiclass")
    if "samples" not in drawn or task not in _SAMPLERS:
        return None
    sample, classes, draws = _SAMPLERS[task]
    return SamplesPerEpoch(
        Path(run_dir) / DIRECTORY,
        sample,
        classes=classes,
        draws=draws,
        seed=recipe.fit["seed"],
        row_names=_class_names(recipe.data),
        title=f"{recipe.name}: {recipe.model['name']}",
    )

"""Task objects: what a kind of model output means for the rest of annzoo.

A task owns what annzoo needs to know about a kind of output: the output
activation, the loss and metrics, which labels fit (checked before any
training, since accelerators do not check them), how outputs become
predictions, and what a run report draws. The runner, tuner, predict and
finetune ask the task instead of branching on its name.
"""

from __future__ import annotations

from typing import Any

import keras
import numpy as np

from annzoo._checks import all_finite, check_choice, first_value, non_finite_summary
from annzoo.errors import AnnzooError
from annzoo.layers.crf import CRF, viterbi_decode
from annzoo.layers.latent import BernoulliNLL
from annzoo.metrics import TokenAccuracy
from annzoo.text import PAD_ID

__all__ = [
    "Adversarial",
    "Bernoulli",
    "Binary",
    "Generation",
    "Multiclass",
    "Reconstruction",
    "Regression",
    "Sequence",
    "Tagging",
    "Task",
    "get_task",
    "register_task",
]


def _crf_layer(model: keras.Model):
    found = [layer for layer in model.layers if isinstance(layer, CRF)]
    return found[0] if len(found) == 1 else None


def _subject(where: str) -> str:
    return where[:1].upper() + where[1:]


def _check_numeric_labels(y: np.ndarray, subject: str) -> bool:
    """Numbers, finite; returns False when there is nothing to check further."""
    if y.ndim == 0:
        raise AnnzooError(
            f"{subject} must have one label per sample. Received: a scalar {y!r}."
        )
    if y.dtype.kind not in "biuf":
        raise AnnzooError(
            f"{subject} must be numbers (class ids or targets). Encode text labels "
            "first, e.g. `classes, y = np.unique(y, return_inverse=True)`. "
            f"Received: labels of dtype {y.dtype}, such as {first_value(y)!r}."
        )
    if not y.size:
        return False
    if not all_finite(y):
        raise AnnzooError(
            f"{subject} must be finite numbers. Received: {non_finite_summary(y)}."
        )
    return True


def _check_columns(y: np.ndarray, subject: str, task: str, k: int) -> None:
    """One output takes (n,) or (n, 1); k outputs need one column each."""
    n = len(y)
    if y.shape[1:] not in (((), (1,)) if k == 1 else ((k,),)):
        shapes = f"({n},) or ({n}, 1)" if k == 1 else f"({n}, {k})"
        raise AnnzooError(
            f"{subject} must have shape {shapes}, one column per output of the "
            f"model (task={task!r}, {k} output{'s' if k != 1 else ''}); other "
            "shapes would be broadcast against the predictions. Received: "
            f"labels of shape {y.shape}."
        )


def _check_ids(
    y: np.ndarray, subject: str, low: int, high: int, what: str, context: str = ""
) -> None:
    """Integer ids in [low, high]; names the first one outside and where it is."""
    flat = y.reshape(-1)
    per_sample = max(1, flat.size // max(1, len(y)))
    if flat.dtype.kind == "f":
        whole = flat == np.floor(flat)
        if not whole.all():
            at = int(np.flatnonzero(~whole)[0])
            raise AnnzooError(
                f"{subject} must be integer {what}{context}. Received: non-integer "
                f"labels such as {flat[at]!r} (sample {at // per_sample})."
            )
    smallest, largest = flat.min(), flat.max()
    if smallest < low or largest > high:
        outside = (flat < low) | (flat > high)
        at = int(np.flatnonzero(outside)[0])
        raise AnnzooError(
            f"{subject} must be {what} in [{low}, {high}]{context}. Received: "
            f"labels from {smallest.item()!r} to {largest.item()!r}; "
            f"{int(outside.sum())} of {flat.size} are outside [{low}, {high}], the "
            f"first ({flat[at].item()!r}) in sample {at // per_sample}. On "
            "accelerators such labels give NaN losses (TensorFlow) or silently "
            "count as zero loss (JAX)."
        )


class Task:
    """A kind of model output: activation, loss, metrics, labels, predictions.

    Attributes:
        name: the name builders and recipes use (``task="multiclass"``).
        activation: the output layer's activation.
        structure: the dataset structure it trains on: ``"sample"`` (one
            label row per sample), ``"tagging"`` (one tag per token) or
            ``"sequence"`` (a target token sequence per sample).
        classes: whether labels are classes (the train split must hold two).
        confusion_matrix: whether a run's report draws a confusion matrix.
        label_formats: the ``label_format`` values the task accepts.
        evaluates: whether ``model.evaluate`` scores it (a GAN's quality is
            measured on samples instead: no validation or test loss).
    """

    name = ""
    activation = "linear"
    structure = "sample"
    classes = False
    confusion_matrix = False
    label_formats: tuple[str, ...] = ("sparse",)
    evaluates = True

    def loss_and_metrics(
        self, *, label_format: str = "sparse", from_logits: bool = False
    ) -> tuple[Any, list]:
        """The loss and metrics ``compile_model(task=...)`` uses by default."""
        raise NotImplementedError

    def check_labels(
        self,
        y: Any,
        *,
        num_outputs: int,
        where: str,
        label_format: str | None = None,
    ) -> None:
        """Refuses labels the loss cannot take, with a message naming ``where``."""
        raise NotImplementedError

    def check_output_activation(self, activation: str, *, from_logits: bool) -> None:
        """Refuses a model output ``activation`` the task's loss cannot use.

        The default suits tasks whose loss takes probabilities from
        ``self.activation`` (softmax or sigmoid): the output must end in it,
        or be raw scores (``"linear"``) with ``from_logits=True``.
        """
        if from_logits:
            if activation in ("softmax", "sigmoid"):
                raise AnnzooError(
                    f"`from_logits=True` needs a model whose output is raw scores "
                    f"for task={self.name!r}, but this model's output already "
                    f"applies {activation!r} and the loss would apply "
                    f"{self.activation!r} on top of it; pass from_logits=False. "
                    f"Received: output activation {activation!r}."
                )
            return
        if activation != self.activation:
            hint = (
                " Pass from_logits=True for a model that outputs raw scores."
                if activation == "linear"
                else ""
            )
            raise AnnzooError(
                f"`task` {self.name!r} needs a model whose output activation is "
                f"{self.activation!r} (its loss takes probabilities).{hint} "
                f"Received: output activation {activation!r}."
            )

    def predictions(self, outputs: np.ndarray) -> np.ndarray:
        """What a user reads from the model's outputs (classes or values)."""
        return np.asarray(outputs)

    def predict(self, model: keras.Model, x: Any, *, batch_size: int = 32):
        """``predictions`` of ``model`` on ``x``."""
        return self.predictions(model.predict(x, batch_size=batch_size, verbose=0))

    def __repr__(self) -> str:
        return f"<annzoo task {self.name!r}>"


class Binary(Task):
    """One sigmoid unit per label (several: independent multi-label outputs);
    binary cross-entropy on labels in {0, 1}."""

    name = "binary"
    activation = "sigmoid"
    classes = True
    confusion_matrix = True

    def loss_and_metrics(self, *, label_format="sparse", from_logits=False):
        return keras.losses.BinaryCrossentropy(from_logits=from_logits), [
            keras.metrics.BinaryAccuracy(
                name="accuracy", threshold=0.0 if from_logits else 0.5
            )
        ]

    def check_labels(self, y, *, num_outputs, where, label_format=None):
        y, subject = np.asarray(y), _subject(where)
        if not _check_numeric_labels(y, subject):
            return
        _check_columns(y, subject, self.name, int(num_outputs))
        valid = (y == 0) | (y == 1)
        if not valid.all():
            flat = y.reshape(-1)
            index = int(np.flatnonzero(~valid.reshape(-1))[0])
            raise AnnzooError(
                f"{subject} must be 0 or 1 for task='binary'. Received: "
                f"{int((~valid).sum())} labels outside {{0, 1}}, the first "
                f"({flat[index].item()!r}) in sample "
                f"{index // max(1, flat.size // len(y))}."
            )

    def predictions(self, outputs):
        outputs = np.asarray(outputs)
        return (outputs[..., 0] > 0.5).astype(int)


class Multiclass(Task):
    """Softmax over ``num_classes`` units; cross-entropy on integer labels
    (``label_format="sparse"``) or one-hot rows (``"one_hot"``)."""

    name = "multiclass"
    activation = "softmax"
    classes = True
    confusion_matrix = True
    label_formats = ("sparse", "one_hot")

    def loss_and_metrics(self, *, label_format="sparse", from_logits=False):
        if label_format == "one_hot":
            return keras.losses.CategoricalCrossentropy(from_logits=from_logits), [
                keras.metrics.CategoricalAccuracy(name="accuracy")
            ]
        return keras.losses.SparseCategoricalCrossentropy(from_logits=from_logits), [
            keras.metrics.SparseCategoricalAccuracy(name="accuracy")
        ]

    def check_labels(self, y, *, num_outputs, where, label_format=None):
        y, subject = np.asarray(y), _subject(where)
        if not _check_numeric_labels(y, subject):
            return
        n, k = len(y), int(num_outputs)
        one_hot = y.ndim == 2 and y.shape[1] == k and k > 1
        ids = y.ndim == 1 or (
            y.ndim == 2 and y.shape[1] == 1 and label_format != "one_hot"
        )
        if not (one_hot or ids):
            raise AnnzooError(
                f"{subject} must be class ids of shape ({n},) or one-hot rows of "
                f"shape ({n}, {k}), for a model with {k} classes (task='multiclass'"
                + ("" if label_format is None else f", label_format={label_format!r}")
                + f"). Received: labels of shape {y.shape}."
            )
        if one_hot:
            if label_format == "sparse":
                raise AnnzooError(
                    f"{subject} are one-hot rows of shape {y.shape}, so "
                    "`data.label_format` must be 'one_hot' (or pass class ids, "
                    "y.argmax(axis=1)). Received: data.label_format='sparse'."
                )
            valid = ((y >= 0) & (y <= 1)).all(axis=1) & (
                np.abs(y.sum(axis=1, dtype=np.float64) - 1.0) <= 1e-3
            )
            if not valid.all():
                row = int(np.flatnonzero(~valid)[0])
                raise AnnzooError(
                    f"{subject} must be one-hot rows (values in [0, 1] that sum to "
                    f"1) of width {k}. Received: {int((~valid).sum())} of {n} rows "
                    f"that are not, the first row {row}: {y[row].tolist()}."
                )
            return
        context = f", for a model with {k} classes (task='multiclass')"
        _check_ids(y, subject, 0, k - 1, "class ids", context)

    def predictions(self, outputs):
        return np.asarray(outputs).argmax(axis=-1)


class Regression(Task):
    """Linear outputs; mean squared error, with mean absolute error reported."""

    name = "regression"

    def loss_and_metrics(self, *, label_format="sparse", from_logits=False):
        return keras.losses.MeanSquaredError(), [
            keras.metrics.MeanAbsoluteError(name="mae")
        ]

    def check_labels(self, y, *, num_outputs, where, label_format=None):
        y, subject = np.asarray(y), _subject(where)
        if _check_numeric_labels(y, subject):
            _check_columns(y, subject, self.name, int(num_outputs))

    def check_output_activation(self, activation, *, from_logits):
        # Any unbounded or one-sided activation can fit some targets (relu for
        # counts, tanh for values in [-1, 1]); softmax and sigmoid squash every
        # output into (0, 1), and softmax ties the outputs to sum to 1.
        if activation in ("softmax", "sigmoid"):
            suggestion = {"softmax": "multiclass", "sigmoid": "binary"}[activation]
            raise AnnzooError(
                f"`task` 'regression' needs a model with an unbounded (linear) "
                f"output, but this model's output is {activation!r}, whose values "
                f"lie in (0, 1); build it with task='regression', or compile it "
                f"with task={suggestion!r}. Received: output activation "
                f"{activation!r}."
            )

    def predictions(self, outputs):
        outputs = np.asarray(outputs)
        return outputs[..., 0] if outputs.shape[-1] == 1 else outputs


class Sequence(Task):
    """A softmax over a token vocabulary at every output step (sequence to
    sequence, captioning); labels are token ids padded with 0 (see
    :mod:`annzoo.text`), and padded steps count in neither the loss
    (cross-entropy with ``ignore_class=0``) nor ``token_accuracy``."""

    name = "sequence"
    activation = "softmax"
    structure = "sequence"

    def loss_and_metrics(self, *, label_format="sparse", from_logits=False):
        if label_format != "sparse":
            raise AnnzooError(
                "`label_format` must be 'sparse' (token ids) for task='sequence'. "
                f"Received: label_format={label_format!r}"
            )
        loss = keras.losses.SparseCategoricalCrossentropy(
            from_logits=from_logits, ignore_class=PAD_ID
        )
        return loss, [TokenAccuracy(ignore_class=PAD_ID)]

    def check_labels(self, y, *, num_outputs, where, label_format=None):
        y, subject = np.asarray(y), _subject(where)
        if y.dtype.kind not in "iu":
            raise AnnzooError(
                f"{subject} must be integer token ids. Received dtype {y.dtype}."
            )
        if y.size:
            _check_ids(y, subject, 0, int(num_outputs) - 1, "token ids")

    def predictions(self, outputs):
        return np.asarray(outputs).argmax(axis=-1)


class Tagging(Multiclass):
    """One class (tag) per token: a softmax at every step, or a CRF on top.

    Tags are ids in ``[0, num_tags)``, with -1 at padded steps (what the CRF
    loss expects; without a CRF the embedding's mask keeps padded steps out of
    the loss). Reported by entity-level F1, not a confusion matrix.
    """

    name = "tagging"
    structure = "tagging"
    confusion_matrix = False
    label_formats = ("sparse",)

    def check_labels(self, y, *, num_outputs, where, label_format=None, x=None):
        y, subject = np.asarray(y), _subject(where)
        if y.dtype.kind not in "iu":
            raise AnnzooError(
                f"{subject} must be integer tag ids. Received dtype {y.dtype}."
            )
        if x is not None and (y.ndim != 2 or y.shape != np.shape(x)[: y.ndim]):
            raise AnnzooError(
                f"{subject} must have one tag id per token, shape {np.shape(x)}. "
                f"Received shape {y.shape}."
            )
        if y.size:
            _check_ids(y, subject, -1, int(num_outputs) - 1, "tag ids (-1 at padding)")

    def predict(self, model, x, *, batch_size=32):
        """Tag ids ``(batch, steps)``: the Viterbi path of a CRF tagger (-1 at
        padded steps), else the most likely tag at each step."""
        crf = _crf_layer(model)
        if crf is None:
            return super().predict(model, x, batch_size=batch_size)
        tokens = np.asarray(x["tokens"] if isinstance(x, dict) else x)
        if tokens.ndim != 2:
            raise AnnzooError(
                "`x` must be token ids of shape (batch, steps). Received: x.shape="
                f"{tokens.shape}"
            )
        emissions = model.predict(tokens, batch_size=batch_size, verbose=0)
        tags, _ = viterbi_decode(emissions, *crf.get_weights(), mask=tokens != PAD_ID)
        return tags


class Reconstruction(Task):
    """Outputs that reproduce the inputs (autoencoders): a sigmoid per value,
    so targets are values in [0, 1] (images scaled as annzoo's datasets scale
    them); mean squared error, with mean absolute error reported."""

    name = "reconstruction"
    activation = "sigmoid"

    def loss_and_metrics(self, *, label_format="sparse", from_logits=False):
        return keras.losses.MeanSquaredError(), [
            keras.metrics.MeanAbsoluteError(name="mae")
        ]

    def check_output_activation(self, activation, *, from_logits):
        # Mean squared error on values: a sigmoid (or linear) output fits; a
        # softmax ties every value of a sample to the others.
        if activation == "softmax":
            raise AnnzooError(
                "`task` 'reconstruction' needs a model whose output activation is "
                "'sigmoid' (or linear), one value per input value; a softmax makes "
                "the values of a sample sum to 1. Received: output activation "
                "'softmax'."
            )

    def check_labels(self, y, *, num_outputs, where, label_format=None):
        y, subject = np.asarray(y), _subject(where)
        if not _check_numeric_labels(y, subject):
            return
        low, high = y.min(), y.max()
        if low < 0 or high > 1:
            raise AnnzooError(
                f"{subject} must be values in [0, 1] for task='reconstruction' (a "
                "sigmoid output cannot reach others; scale them first). Received: "
                f"values from {low.item()!r} to {high.item()!r}."
            )


class Bernoulli(Reconstruction):
    """Outputs that reproduce the inputs as Bernoulli probabilities
    (autoencoders and VAEs, `annzoo.models.autoencoder`): a sigmoid per value,
    targets in [0, 1]; the loss is the negative log-likelihood summed over the
    values of a sample (:class:`annzoo.layers.BernoulliNLL`), in nats per
    sample, so that a VAE's loss is its negative ELBO. No metrics here: an
    :class:`annzoo.layers.Autoencoder` reports ``reconstruction`` and ``kl``."""

    name = "bernoulli"

    def loss_and_metrics(self, *, label_format="sparse", from_logits=False):
        return BernoulliNLL(from_logits=from_logits), []

    # The loss takes probabilities: a sigmoid output, or logits with from_logits.
    check_output_activation = Task.check_output_activation

    def check_labels(self, y, *, num_outputs, where, label_format=None):
        y, subject = np.asarray(y), _subject(where)
        if _check_numeric_labels(y, subject) and (y.min() < 0 or y.max() > 1):
            raise AnnzooError(
                f"{subject} must be values in [0, 1] for task='bernoulli' (the "
                "probability that a value is on; scale images first). Received: "
                f"values from {y.min().item()!r} to {y.max().item()!r}."
            )


class Generation(Sequence):
    """Next-token prediction (language models that write): a softmax over the
    vocabulary at every step, the labels being the input tokens shifted one
    step left; padding (id 0) counts in neither the loss nor
    ``token_accuracy``, as for :class:`Sequence`."""

    name = "generation"


class Adversarial(Task):
    """Images generated from noise by a generator trained against a
    discriminator (GANs, `annzoo.models.gan`): a sigmoid per value, so images
    in [0, 1] as annzoo's datasets scale them. The GAN trains on its own two
    losses, so `compile_model` gives its ``compile`` no loss and no metric,
    only the optimizer (copied for each network); the labels of a conditional
    GAN are class ids in ``[0, num_outputs)`` (``num_outputs``: its classes)."""

    name = "adversarial"
    activation = "sigmoid"
    evaluates = False

    def loss_and_metrics(self, *, label_format="sparse", from_logits=False):
        # None: the GAN's compile takes no loss (its two are the builder's).
        return None, []

    def check_labels(self, y, *, num_outputs, where, label_format=None):
        y, subject = np.asarray(y), _subject(where)
        if not _check_numeric_labels(y, subject):
            return
        context = f", for a GAN conditional on {int(num_outputs)} classes"
        _check_ids(y, subject, 0, int(num_outputs) - 1, "class ids", context)


_TASK_OBJECTS: dict[str, Task] = {
    task.name: task
    for task in (Binary(), Multiclass(), Regression(), Sequence(), Tagging(),
                 Reconstruction(), Generation(), Adversarial())
}  # fmt: skip


def get_task(task: str | Task) -> Task:
    """The :class:`Task` named ``task`` (a task object is returned as it is)."""
    if isinstance(task, Task):
        return task
    return _TASK_OBJECTS[check_choice("task", task, tuple(_TASK_OBJECTS))]


def register_task(task: Task) -> Task:
    """Adds a task object (a family with a new kind of output brings its own)."""
    if not isinstance(task, Task) or not task.name:
        raise AnnzooError(
            f"`task` must be a named annzoo.tasks.Task. Received: task={task!r}"
        )
    if task.name in _TASK_OBJECTS:
        raise AnnzooError(f"`task` {task.name!r} is already registered.")
    _TASK_OBJECTS[task.name] = task
    return task


register_task(Bernoulli())

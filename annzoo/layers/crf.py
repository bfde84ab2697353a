"""A linear-chain conditional random field (CRF) for sequence taggers.

The Bi-LSTM + CRF tagger of Huang, Xu and Yu (2015) and Lample et al. (2016)
scores a tag path ``y`` of a sentence with per-step emission scores ``E``
(from a Dense layer after the Bi-LSTM) and learned transition scores::

    score(y) = start[y_0] + sum_t E[t, y_t] + sum_t A[y_{t-1}, y_t] + end[y_last]

and trains on ``log p(y | x) = score(y) - log Z``, ``Z`` summing ``exp(score)``
over every path (the forward algorithm). Decoding takes the best path
(Viterbi). Everything here is ``keras.ops``, so it runs on every backend.

The training / inference contract
---------------------------------
* :class:`CRF` holds the parameters and returns its input, the emission
  scores, unchanged (as float32): ``model.predict`` gives emissions.
* :class:`CRFLoss` is the loss to compile with: the mean negative
  log-likelihood of the integer tags ``y_true`` ``(batch, T)`` given the
  emissions ``y_pred``. Padded steps are the steps whose tag equals
  ``pad_tag`` (default ``-1``): pad tag arrays with ``-1``.
* :meth:`CRF.decode` (``keras.ops``) and :func:`viterbi_decode` (numpy) turn
  emissions into tags, taking the mask explicitly (``tokens != 0`` for an
  ``Embedding(mask_zero=True)`` input); padded steps get ``pad_tag`` (``-1``).

Masks: ``True`` marks a real step. The real steps of a sequence must be one
contiguous block: padding at the end (``pad_sequences(padding="post")``) or at
the start (``padding="pre"``). A sequence without real steps has
log-likelihood 0 and best score 0.
"""

from __future__ import annotations

import weakref
from typing import Any

import keras
import numpy as np
from keras import ops

from annzoo._checks import check_positive_int, is_int
from annzoo.errors import AnnzooError

__all__ = ["CRF", "CRFLoss", "viterbi_decode"]

PAD_TAG = -1

# name -> the CRF layer most recently created under that name. Keras rebuilds a
# model's layers before it deserializes the model's loss, so a CRFLoss loaded
# with its model finds that model's CRF here. (Keras' shared-object mechanism
# cannot do it: Functional.get_config deep-copies the layer configs.)
_LIVE_CRFS: weakref.WeakValueDictionary[str, CRF] = weakref.WeakValueDictionary()


def _check_pad_tag(pad_tag: Any) -> int:
    if not is_int(pad_tag):
        raise AnnzooError(
            f"`pad_tag` must be an integer. Received: pad_tag={pad_tag!r}"
        )
    return int(pad_tag)


def _prepare_mask(mask, batch_and_time):
    """A boolean ``(batch, T)`` mask; all True when ``mask`` is None."""
    if mask is None:
        return ops.ones(batch_and_time, dtype="bool")
    return ops.cast(mask, "bool")


def _block_edges(mask):
    """Per sequence: first-real-step flags ``(batch, T)``, last-real index, length.

    Valid for a contiguous block of real steps (pre- or post-padding).
    """
    real = ops.cast(mask, "int32")
    previous = ops.pad(real[:, :-1], [[0, 0], [1, 0]])
    first = ops.greater(real, previous)
    lengths = ops.sum(real, axis=1)
    # The last real step of each row: the first one of the row read backwards.
    from_end = ops.cast(ops.argmax(ops.flip(real, axis=1), axis=1), "int32")
    last = ops.shape(mask)[1] - 1 - from_end
    return first, last, lengths


def _pack_steps(emissions, mask, first):
    """``(T, batch, num_tags + 2)``: emissions, mask, first-step flag, time-major.

    One tensor rather than a tuple: with a tuple of inputs, the TensorFlow
    ``ops.scan`` of Keras 3.15 fails when the number of steps is not static.
    """
    flags = ops.stack(
        [ops.cast(mask, emissions.dtype), ops.cast(first, emissions.dtype)], -1
    )
    return ops.moveaxis(ops.concatenate([emissions, flags], axis=-1), 1, 0)


def _unpack_step(step_inputs):
    return (
        step_inputs[:, :-2],
        ops.greater(step_inputs[:, -2], 0.5),
        ops.greater(step_inputs[:, -1], 0.5),
    )


@keras.saving.register_keras_serializable(package="annzoo")
class CRF(keras.layers.Layer):
    """Linear-chain CRF parameters on top of per-step emission scores.

    The layer owns a trainable ``(num_tags, num_tags)`` matrix
    ``transitions[i, j]`` (the score of tag ``j`` following tag ``i``) and two
    ``(num_tags,)`` vectors, ``start_transitions`` (score of the first tag) and
    ``end_transitions`` (score of the last real tag). ``get_weights()`` returns
    them in that order.

    Calling the layer returns the emissions unchanged, as float32, so that
    the model's output is the emissions and works with ``fit`` and ``predict``
    on every backend; compile with :class:`CRFLoss` and decode with
    :meth:`decode` or :func:`viterbi_decode`. The layer accepts a Keras mask
    (it does not need it) and propagates none: padding reaches the loss through
    the tags (``pad_tag``) and reaches decoding as an explicit ``mask``.

    Computations run in float32 (``dtype`` defaults to ``"float32"``) even
    under a mixed-precision policy: the forward algorithm sums many scores.

    Args:
        num_tags: number of tags; the size of the emissions' last axis.
        initializer: initializer of the three transition weights; zeros by
            default, so that the learned transitions come from the data only.
        **kwargs: base layer arguments (``name``, ``dtype``...).

    Example:
        >>> tokens = keras.Input((None,), dtype="int32")
        >>> x = keras.layers.Embedding(1000, 32, mask_zero=True)(tokens)
        >>> x = keras.layers.Bidirectional(
        ...     keras.layers.LSTM(32, return_sequences=True))(x)
        >>> crf = CRF(5, name="crf")
        >>> emissions = crf(keras.layers.Dense(5)(x))
        >>> model = keras.Model(tokens, emissions)
        >>> model.compile("adam", loss=CRFLoss(crf))  # y: tags padded with -1
        >>> tags, scores = crf.decode(model.predict(x_test), mask=x_test != 0)
    """

    def __init__(self, num_tags: int, initializer: Any = "zeros", **kwargs):
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        self.num_tags = check_positive_int("num_tags", num_tags)
        self.initializer = keras.initializers.get(initializer)
        self.supports_masking = True
        _LIVE_CRFS[self.name] = self

    def build(self, input_shape):
        if input_shape[-1] != self.num_tags:
            raise AnnzooError(
                "The CRF's input must be emission scores of shape "
                f"(batch, steps, num_tags={self.num_tags}). "
                f"Received: input_shape={tuple(input_shape)}"
            )
        n = self.num_tags
        self.transitions = self.add_weight(
            shape=(n, n), initializer=self.initializer, name="transitions"
        )
        self.start_transitions = self.add_weight(
            shape=(n,), initializer=self.initializer, name="start_transitions"
        )
        self.end_transitions = self.add_weight(
            shape=(n,), initializer=self.initializer, name="end_transitions"
        )

    def call(self, inputs, mask=None):
        # A new tensor: returning ``inputs`` itself would keep the Keras mask
        # attached to it, and the loss would then see a (batch, T) mask.
        return ops.copy(ops.cast(inputs, self.compute_dtype))

    def compute_mask(self, inputs, mask=None):
        return None

    def compute_output_shape(self, input_shape):
        return input_shape

    def _params(self):
        dtype = self.compute_dtype
        return (
            ops.cast(self.transitions, dtype),
            ops.cast(self.start_transitions, dtype),
            ops.cast(self.end_transitions, dtype),
        )

    def _inputs(self, emissions, mask):
        emissions = ops.cast(ops.convert_to_tensor(emissions), self.compute_dtype)
        if len(emissions.shape) != 3 or emissions.shape[-1] != self.num_tags:
            raise AnnzooError(
                f"`emissions` must have shape (batch, steps, {self.num_tags}). "
                f"Received: shape={tuple(emissions.shape)}"
            )
        mask = _prepare_mask(mask, ops.shape(emissions)[:2])
        return emissions, mask

    def log_likelihood(self, emissions, tags, mask=None):
        """``log p(tags | emissions)`` of each sequence, by the forward algorithm.

        Args:
            emissions: float ``(batch, T, num_tags)`` emission scores.
            tags: integer ``(batch, T)`` gold tags; values at padded steps are
                ignored (any integer, ``-1`` for instance).
            mask: boolean ``(batch, T)``, True at real steps (one contiguous
                block per sequence), or None for no padding.

        Returns:
            A float32 ``(batch,)`` tensor; 0 for a sequence with no real step.
        """
        emissions, mask = self._inputs(emissions, mask)
        transitions, start, end = self._params()
        num_tags = self.num_tags
        first, last, lengths = _block_edges(mask)
        maskf = ops.cast(mask, emissions.dtype)
        tags = ops.clip(ops.cast(tags, "int32"), 0, num_tags - 1)

        # Score of the gold path.
        emitted = ops.take_along_axis(emissions, tags[:, :, None], axis=2)[:, :, 0]
        score = ops.sum(emitted * maskf, axis=1)
        first_tags = ops.take_along_axis(
            tags, ops.cast(ops.argmax(ops.cast(first, "int32"), 1), "int32")[:, None], 1
        )[:, 0]
        score += ops.take(start, first_tags)
        pair = tags[:, :-1] * num_tags + tags[:, 1:]
        both = maskf[:, :-1] * maskf[:, 1:]
        score += ops.sum(ops.take(ops.reshape(transitions, (-1,)), pair) * both, 1)
        last_tags = ops.take_along_axis(tags, ops.maximum(last, 0)[:, None], 1)[:, 0]
        score += ops.take(end, last_tags)

        # log Z: alpha[b, j] = log-sum of exp(score) of the prefixes ending in j.
        def step(alpha, step_inputs):
            emission, real, starts = _unpack_step(step_inputs)
            through = ops.logsumexp(alpha[:, :, None] + transitions[None], axis=1)
            new = ops.where(starts[:, None], start[None] + emission, through + emission)
            alpha = ops.where(real[:, None], new, alpha)
            return alpha, alpha

        alpha, _ = ops.scan(
            step,
            ops.zeros_like(emissions[:, 0]),
            _pack_steps(emissions, mask, first),
        )
        log_z = ops.logsumexp(alpha + end[None], axis=1)
        return ops.where(lengths > 0, score - log_z, ops.zeros_like(score))

    def decode(self, emissions, mask=None, pad_tag: int = PAD_TAG):
        """The highest-scoring tag path of each sequence (Viterbi), in ``keras.ops``.

        Args:
            emissions: float ``(batch, T, num_tags)`` emission scores, e.g. the
                output of ``model.predict``.
            mask: boolean ``(batch, T)``, True at real steps (one contiguous
                block per sequence), or None for no padding.
            pad_tag: the tag written at padded steps.

        Returns:
            ``(tags, scores)``: int32 ``(batch, T)`` best paths with ``pad_tag``
            at padded steps, and float32 ``(batch,)`` their scores (0 for a
            sequence with no real step).
        """
        pad_tag = _check_pad_tag(pad_tag)
        emissions, mask = self._inputs(emissions, mask)
        transitions, start, end = self._params()
        first, _, lengths = _block_edges(mask)
        identity = ops.arange(self.num_tags, dtype="int32")[None]

        def forward(delta, step_inputs):
            emission, real, starts = _unpack_step(step_inputs)
            through = delta[:, :, None] + transitions[None]
            best_previous = ops.cast(ops.argmax(through, axis=1), "int32")
            new = ops.where(
                starts[:, None], start[None] + emission, ops.max(through, 1) + emission
            )
            # At padded steps (and first steps) the pointer keeps the tag, so
            # backtracking walks through padding unchanged.
            keep = ops.logical_or(starts, ops.logical_not(real))[:, None]
            pointers = ops.where(keep, identity, best_previous)
            delta = ops.where(real[:, None], new, delta)
            # The TensorFlow scan stores outputs with the carry's dtype.
            return delta, ops.cast(pointers, delta.dtype)

        delta, pointers = ops.scan(
            forward,
            ops.zeros_like(emissions[:, 0]),
            _pack_steps(emissions, mask, first),
        )
        final = delta + end[None]
        best_last = ops.cast(ops.argmax(final, axis=1), "int32")
        scores = ops.max(final, axis=1)

        def backward(tag, step_pointers):
            previous = ops.take_along_axis(step_pointers, tag[:, None], axis=1)[:, 0]
            return ops.cast(previous, "int32"), tag

        _, path = ops.scan(backward, best_last, pointers, reverse=True)
        path = ops.moveaxis(path, 0, 1)
        tags = ops.where(mask, path, ops.full_like(path, pad_tag))
        return tags, ops.where(lengths > 0, scores, ops.zeros_like(scores))

    def get_config(self):
        return {
            **super().get_config(),
            "num_tags": self.num_tags,
            "initializer": keras.initializers.serialize(self.initializer),
        }


@keras.saving.register_keras_serializable(package="annzoo")
class CRFLoss(keras.losses.Loss):
    """Negative log-likelihood of gold tags under a :class:`CRF` layer.

    ``y_true`` holds integer tags ``(batch, T)``, with ``pad_tag`` at padded
    steps; ``y_pred`` is the CRF layer's output, the emissions
    ``(batch, T, num_tags)``. The mask is ``y_true != pad_tag`` (one contiguous
    block per sequence), so it does not depend on Keras mask propagation and
    is the same on every backend. Each sequence gives one loss value (a
    ``sample_weight`` is per sequence); the default reduction is their mean.

    The loss reads the transitions of ``crf`` at each call, so gradients reach
    them. Its config names the layer; deserialized, it binds to the CRF layer
    most recently created under that name, which, within
    ``keras.saving.load_model``, is the reloaded model's own layer: a compiled
    model reloads ready to train on.

    Args:
        crf: the model's :class:`CRF` layer.
        pad_tag: the tag value that marks padded steps in ``y_true``.
        reduction: a Keras loss reduction (``"sum_over_batch_size"``: mean over
            the sequences of the batch).
        name: the loss' name.

    Example:
        >>> model.compile(optimizer="adam", loss=CRFLoss(crf))
        >>> model.fit(tokens, tags_padded_with_minus_one, epochs=5)
    """

    def __init__(
        self,
        crf: CRF,
        pad_tag: int = PAD_TAG,
        reduction: str | None = "sum_over_batch_size",
        name: str = "crf_loss",
        **kwargs,
    ):
        if not isinstance(crf, CRF):
            raise AnnzooError(
                f"`crf` must be an annzoo.layers.CRF layer. Received: crf={crf!r}"
            )
        super().__init__(name=name, reduction=reduction, **kwargs)
        self.crf = crf
        self.pad_tag = _check_pad_tag(pad_tag)

    def __call__(self, y_true, y_pred, sample_weight=None):
        # Padding comes from ``y_true``. A Keras mask on ``y_pred`` (batch, T)
        # would not broadcast against the per-sequence losses: drop it.
        return super().__call__(y_true, ops.copy(y_pred), sample_weight)

    def call(self, y_true, y_pred):
        tags = ops.cast(y_true, "int32")
        if len(tags.shape) == 3 and tags.shape[-1] == 1:
            tags = ops.squeeze(tags, axis=-1)
        mask = ops.not_equal(tags, self.pad_tag)
        return -self.crf.log_likelihood(y_pred, tags, mask)

    def get_config(self):
        # The layer lives in the model's config; the loss refers to it by name.
        return {**super().get_config(), "crf": self.crf.name, "pad_tag": self.pad_tag}

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        name = config["crf"]
        crf = _LIVE_CRFS.get(name)
        if crf is None:
            raise AnnzooError(
                f"CRFLoss refers to a CRF layer named {name!r}, and no such layer "
                "exists. Load the loss together with its model "
                "(keras.saving.load_model), or load with compile=False and "
                "compile with CRFLoss(model.get_layer(...)). "
                f"Received: crf={name!r}"
            )
        config["crf"] = crf
        return cls(**config)


def viterbi_decode(
    emissions: np.ndarray,
    transitions: np.ndarray,
    start_transitions: np.ndarray,
    end_transitions: np.ndarray,
    mask: np.ndarray | None = None,
    pad_tag: int = PAD_TAG,
) -> tuple[np.ndarray, np.ndarray]:
    """Viterbi decoding in numpy, for the output of ``model.predict``.

    Same contract as :meth:`CRF.decode`, on numpy arrays.

    Args:
        emissions: ``(batch, T, num_tags)`` emission scores.
        transitions: ``(num_tags, num_tags)``, ``[i, j]`` scoring ``i -> j``.
        start_transitions: ``(num_tags,)`` scores of the first tag.
        end_transitions: ``(num_tags,)`` scores of the last real tag.
        mask: boolean ``(batch, T)``, True at real steps (one contiguous
            block per sequence), or None for no padding.
        pad_tag: the tag written at padded steps.

    Returns:
        ``(tags, scores)``: int32 ``(batch, T)`` with ``pad_tag`` at padded
        steps, and float ``(batch,)`` best scores (0 for an empty sequence).

    Example:
        >>> emissions = model.predict(tokens)
        >>> tags, _ = viterbi_decode(emissions, *crf.get_weights(),
        ...                          mask=tokens != 0)
    """
    pad_tag = _check_pad_tag(pad_tag)
    emissions = np.asarray(emissions, dtype=np.float64)
    transitions = np.asarray(transitions, dtype=np.float64)
    start = np.asarray(start_transitions, dtype=np.float64)
    end = np.asarray(end_transitions, dtype=np.float64)
    if emissions.ndim != 3 or transitions.shape != (emissions.shape[-1],) * 2:
        raise AnnzooError(
            "`emissions` must be (batch, steps, num_tags) and `transitions` "
            "(num_tags, num_tags). Received: "
            f"emissions.shape={emissions.shape}, "
            f"transitions.shape={transitions.shape}"
        )
    batch, time, _ = emissions.shape
    mask = np.ones((batch, time), bool) if mask is None else np.asarray(mask, bool)
    tags = np.full((batch, time), pad_tag, dtype=np.int32)
    scores = np.zeros(batch, dtype=np.float64)
    for b in range(batch):
        (steps,) = np.nonzero(mask[b])
        if steps.size == 0:
            continue
        seq = emissions[b, steps]
        delta = start + seq[0]
        pointers = []
        for emission in seq[1:]:
            through = delta[:, None] + transitions
            pointers.append(through.argmax(axis=0))
            delta = through.max(axis=0) + emission
        delta = delta + end
        path = [int(delta.argmax())]
        for pointer in reversed(pointers):
            path.append(int(pointer[path[-1]]))
        tags[b, steps] = path[::-1]
        scores[b] = delta.max()
    return tags, scores

"""Preprocessing fit on the train split only: `Standardizer`, `text_vectorizer`.

`text_vectorizer` imports TensorFlow and Keras when called (deferred optional
dependencies); `Standardizer` is NumPy only.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from annzoo._checks import check_choice, check_positive_int, is_int
from annzoo.data._validation import _import_tf
from annzoo.errors import AnnzooError

if TYPE_CHECKING:  # pragma: no cover
    from keras.layers import TextVectorization


@dataclasses.dataclass(frozen=True, eq=False)
class Standardizer:
    """Per-feature scaling statistics, fit on training data only.

    ``apply(x) = (x - mean) / std``; features constant in training have
    ``std = 1`` (centered only). Serializable with `to_dict` / `from_dict`.

    Attributes:
        mean: Per-feature mean of the training data, shape ``x.shape[1:]``.
        std: Per-feature standard deviation (population), same shape.
    """

    mean: np.ndarray
    std: np.ndarray

    def apply(self, x: np.ndarray) -> np.ndarray:
        """``x`` standardized with the training statistics, as float32."""
        x = np.asarray(x)
        if x.shape[1:] != self.mean.shape:
            raise AnnzooError(
                f"`x` must have feature shape {self.mean.shape}, the shape the "
                f"standardizer was fit on. Received: x with shape {x.shape}"
            )
        return ((x.astype(np.float64) - self.mean) / self.std).astype(np.float32)

    __call__ = apply

    def to_dict(self) -> dict[str, list]:
        """A JSON-serializable dict ``{"mean": ..., "std": ...}``."""
        return {"mean": self.mean.tolist(), "std": self.std.tolist()}

    @classmethod
    def from_dict(cls, config: Mapping[str, Any]) -> Standardizer:
        mean = np.asarray(config["mean"], dtype=np.float64)
        std = np.asarray(config["std"], dtype=np.float64)
        if mean.shape != std.shape or not np.all(std > 0):
            raise AnnzooError(
                "A standardizer needs `mean` and `std` of the same shape, std > 0. "
                f"Received: mean shape {mean.shape}, std shape {std.shape}"
            )
        return cls(mean=mean, std=std)


def fit_standardizer(x_train: np.ndarray) -> Standardizer:
    """Fits a `Standardizer` on the training split (never on validation/test).

    Example:

    >>> scaler = fit_standardizer(x_train)
    >>> x_train, x_test = scaler.apply(x_train), scaler.apply(x_test)
    """
    x = np.asarray(x_train)
    if x.ndim == 0 or len(x) == 0 or x.dtype.kind not in "biuf":
        raise AnnzooError(
            "`x_train` must be a non-empty numeric array (num_samples, ...). "
            f"Received: x_train with shape {x.shape} and dtype {x.dtype}"
        )
    x = x.astype(np.float64)
    if not np.isfinite(x).all():
        raise AnnzooError(
            "`x_train` must not contain NaN or infinite values. Received: "
            f"{int(np.size(x) - np.isfinite(x).sum())} non-finite values"
        )
    mean = x.mean(axis=0)
    std = x.std(axis=0)
    std = np.where(std == 0, 1.0, std)
    return Standardizer(mean=np.asarray(mean), std=np.asarray(std))


_STANDARDIZE = ("lower_and_strip_punctuation", "lower", "strip_punctuation")


def text_vectorizer(
    train_texts: Sequence[str] | np.ndarray,
    *,
    max_tokens: int | None = 20000,
    sequence_length: int | None = 200,
    standardize: str | Callable | None = "lower_and_strip_punctuation",
) -> TextVectorization:
    """A ``keras.layers.TextVectorization`` whose vocabulary is the train texts'.

    Adapted on ``train_texts`` only, so words seen only in validation or test
    texts map to the out-of-vocabulary id 1 (0 is padding). Output: int64 token
    ids, padded or truncated to ``sequence_length``. Needs TensorFlow.

    Args:
        train_texts: The training texts (``str``), e.g. ``ArrayDataset.x``.
        max_tokens: Vocabulary size including padding and OOV (>= 3), or
            ``None`` for every word.
        sequence_length: Tokens per output row, or ``None`` for the longest.
        standardize: One of ``"lower_and_strip_punctuation"``, ``"lower"``,
            ``"strip_punctuation"``, ``None`` or a callable, as in Keras.

    Example:

    >>> vectorize = text_vectorizer(train.x, max_tokens=10000)
    >>> tokens = vectorize(test.x)
    """
    texts = np.asarray(train_texts, dtype=object)
    if texts.ndim != 1 or len(texts) == 0 or not all(isinstance(t, str) for t in texts):
        raise AnnzooError(
            "`train_texts` must be a non-empty 1-D sequence of str. Received: "
            f"{type(train_texts).__name__} with shape {texts.shape}"
        )
    if max_tokens is not None and (not is_int(max_tokens) or max_tokens < 3):
        raise AnnzooError(
            "`max_tokens` must be an integer >= 3 (padding, OOV and one word) or "
            f"None. Received: max_tokens={max_tokens!r}"
        )
    if sequence_length is not None:
        check_positive_int("sequence_length", sequence_length)
    if not (standardize is None or callable(standardize)):
        check_choice("standardize", standardize, _STANDARDIZE)
    tf = _import_tf()
    import keras  # deferred, as TensorFlow (module docstring)

    layer = keras.layers.TextVectorization(
        max_tokens=max_tokens,
        standardize=standardize,
        output_mode="int",
        output_sequence_length=sequence_length,
    )
    layer.adapt(tf.data.Dataset.from_tensor_slices(texts.astype(str)).batch(1024))
    return layer

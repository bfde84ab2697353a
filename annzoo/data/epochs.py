"""How epochs are cut into batches and calls, and which epoch a pipeline serves.

`set_epoch` pins a pipeline's epoch (exact resumes); the others choose batch
sizes and steps per call so that a step compiled for fixed shapes is compiled
once and calls end exactly at each epoch's end.
"""

from __future__ import annotations

from typing import Any

from annzoo._checks import check_non_negative_int, check_positive_int


def execution_block(steps_per_epoch: int, steps_per_execution: int) -> int:
    """The largest divisor of ``steps_per_epoch`` not above ``steps_per_execution``.

    Keras runs ``steps_per_execution`` steps per call from a never-ending
    dataset even past an epoch's end; calls of this many steps end exactly
    at each epoch's end.
    """
    steps = check_positive_int("steps_per_epoch", steps_per_epoch)
    limit = min(check_positive_int("steps_per_execution", steps_per_execution), steps)
    return max(d for d in range(1, limit + 1) if steps % d == 0)


# A stream may run up to this many times ``steps_per_execution`` steps per
# call, where no divisor of the epoch's steps up to it suits (see stream_block).
STREAM_BLOCK_STRETCH = 4


def stream_block(steps_per_epoch: int, steps_per_execution: int) -> int | None:
    """Steps per call for a never-ending stream of ``steps_per_epoch``-step
    epochs, or ``None`` when a one-pass dataset per epoch is the better input.

    The largest divisor of ``steps_per_epoch`` not above
    ``steps_per_execution`` (`execution_block`), unless calls that short
    would cost more than one call per epoch beyond ``steps_per_execution``'s
    (a prime step count, say). Then the smallest divisor above it, up to
    ``STREAM_BLOCK_STRETCH`` times it (the whole epoch in one call, for a
    small prime count): for a one-pass dataset Keras starts two iterators
    every epoch, which cost more than a small epoch's steps (measured by
    `benchmarks/run.py --only dispatch`, a tiny MLP at small batch sizes).
    ``None`` when there is neither.
    """
    block = execution_block(steps_per_epoch, steps_per_execution)
    calls = -(-steps_per_epoch // min(steps_per_execution, steps_per_epoch))
    if steps_per_epoch // block <= calls + 1:
        return block
    longest = min(STREAM_BLOCK_STRETCH * steps_per_execution, steps_per_epoch)
    longer = range(steps_per_execution + 1, longest + 1)
    return next((d for d in longer if steps_per_epoch % d == 0), None)


def drop_partial_batch(
    num_samples: int,
    batch_size: int,
    *,
    fixed_shapes: bool,
    steps_per_epoch: int | None = None,
) -> bool:
    """Whether training should drop each epoch's last, smaller batch.

    Only where that batch would cost a compilation of its own: a step
    compiled for fixed shapes (XLA: always on JAX, with ``jit_compile`` on
    TensorFlow) is traced and compiled again for a new batch size, which
    can cost as much as a short ``fit`` itself (measured on JAX by
    `benchmarks/run.py --only tuning`, whose trials are short fits).
    Shuffled, each epoch leaves out other samples, fewer than a batch. Not
    when every batch is whole already, when there is no whole batch, or when
    ``steps_per_epoch`` asks for more steps than the whole batches make.
    """
    full, rest = divmod(num_samples, batch_size)
    if not fixed_shapes or rest == 0 or full == 0:
        return False
    return steps_per_epoch is None or steps_per_epoch <= full


def evaluation_batch_size(
    num_samples: int,
    batch_size: int,
    *,
    fixed_shapes: bool,
    multiple: int = 1,
) -> int:
    """Batch size for evaluating or predicting ``num_samples`` samples.

    ``batch_size`` itself, unless the last batch would be smaller and the step
    is compiled for fixed shapes (see `drop_partial_batch`): evaluation cannot
    leave samples out, so the step would be compiled twice, once for the
    whole batches and once for the last. Then the largest batch size between
    half and twice ``batch_size`` that divides ``num_samples`` (and is a
    multiple of ``multiple``, the data-parallel batch multiple) is taken;
    evaluation keeps no activations for a backward pass, so it holds less per
    sample than training. ``batch_size`` when no such divisor exists (a
    prime sample count, say). A search validates every trial, so the
    compilations saved add up (measured on JAX by `benchmarks/run.py --only
    tuning`, a 20-trial digits MLP search whose 270 validation samples end
    in a smaller batch at batch 32).
    """
    full, rest = divmod(num_samples, batch_size)
    if not fixed_shapes or rest == 0 or full == 0:
        return batch_size
    lowest = max(1, -(-batch_size // 2))
    for size in range(min(2 * batch_size, num_samples), lowest - 1, -1):
        if num_samples % size == 0 and size % multiple == 0:
            return size
    return batch_size


def set_epoch(inputs: Any, epoch: int) -> None:
    """Makes the next pass over ``inputs`` serve epoch ``epoch``'s order.

    For `make_dataset` and `ArraySequence` pipelines (others are left alone):
    a resumed run, or a training loop that peeks at a batch first, keeps the
    order of an uninterrupted run.
    """
    epoch = check_non_negative_int("epoch", epoch)
    variable = getattr(inputs, "_annzoo_epoch", None)
    if variable is not None:
        variable.assign(epoch)
    elif hasattr(inputs, "set_epoch"):
        inputs.set_epoch(epoch)

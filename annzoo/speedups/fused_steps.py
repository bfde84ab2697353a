"""Speedup ``fused_steps``: a call's steps in one compiled program, on JAX.

Public behaviour reproduced: ``compile(steps_per_execution=N)``, under which
Keras runs N steps per call of its train (or test) function and calls the
callbacks once per call. Keras' JAX trainer runs such a call by calling its
compiled one-step program N times from Python: every step is an XLA execution
of its own, and for a small model the dispatch costs more than the step. (On
TensorFlow the same setting runs the steps in one graph loop.) `fuse_steps`
gives a compiled model that on JAX: a call's batches are the arguments of one
jitted function that runs the step over them in a ``fori_loop``, picking
batch ``i`` with ``lax.switch`` (no stacked copy of the inputs), the state
carried through the loop; weights and logs are Keras' loop's.

- The number of batches a program takes (its group) is fixed per batch shape:
  ``steps_per_execution``, fewer where the group's inputs would pass
  `MAX_GROUP_BYTES`. A call of more steps runs several groups. A shorter
  call (an epoch's last) repeats its last batch to fill the arguments and
  runs only its own, so it reuses the program.
- A batch of another shape (a partial last batch) starts a group of its own,
  and a program of its own, as Keras' step compiles one per shape.
- Where only one batch fits in a group, or the step computes something XLA
  runs much slower inside a loop (`SLOW_IN_LOOPS`: convolutions), the step
  runs as Keras' own does. The step is traced once, abstractly, to tell.
- Callbacks see what Keras gives them with ``steps_per_execution``: one
  ``on_*_batch_begin``/``end`` per call, the logs after its last step.

Left to Keras' own loop: other backends, ``run_eagerly``, ``jit_compile``
off, a ``keras.distribution`` set, Flax NNX models,
``steps_per_execution=1``, and functions made inside `unfused` (a tuning
search's trials and retraining). Models loaded or cloned by Keras are plain
Keras models again (compile them with `annzoo.compile_model` to fuse).

Private Keras symbols: the JAX trainer's calling convention of
``train_function``/``test_function`` (``(state, iterator) -> (logs,
state)``, set per model object in place of ``make_train_function`` and
``make_test_function``) and ``JAXTrainer._make_function`` (Keras' own
function, handed back where a group is one step). Switched off
(``ANNZOO_SPEEDUPS``), `fuse_steps` returns the model untouched.

Measured by ``benchmarks/run.py --only dispatch`` (and ``--only overhead``).
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
from collections.abc import Iterator
from typing import Any

import keras
import numpy as np

from annzoo.speedups._core import Speedup, Symbol, active, register

__all__ = ["MAX_GROUP_BYTES", "SPEEDUP", "fuse_steps", "fused", "unfused"]

NAME = "fused_steps"
SPEEDUP = register(
    Speedup(
        name=NAME,
        summary="a call's steps_per_execution steps as one XLA program",
        benchmark="benchmarks/run.py --only dispatch (and --only overhead)",
        backends=("jax",),
        symbols=(
            Symbol(
                "keras.src.backend.jax.trainer",
                "JAXTrainer._make_function",
                requires="jax",
            ),
            # Replaced per model object; what they make is called as
            # ``function(state, iterator) -> (logs, state)``.
            Symbol(
                "keras.src.backend.jax.trainer",
                "JAXTrainer.make_train_function",
                requires="jax",
            ),
            Symbol(
                "keras.src.backend.jax.trainer",
                "JAXTrainer.make_test_function",
                requires="jax",
            ),
        ),
    )
)

# Inputs one compiled call may take; larger batches run in smaller groups (a
# group of one runs Keras' own step). The host prepares a group's batches
# before its program can start, and prepares the next group while the device
# runs one: groups too large leave the device waiting. The budget was chosen
# by sweeping it at batch 128 and 1024 with `benchmarks/run.py --only dispatch`.
MAX_GROUP_BYTES = 2**20

_KINDS = ("train", "test")
_OFF = contextvars.ContextVar("annzoo_unfused", default=False)


@contextlib.contextmanager
def unfused() -> Iterator[None]:
    """Functions made inside run Keras' own loop, for work too short to
    repay the larger program's compilation (a search's trials)."""
    token = _OFF.set(True)
    try:
        yield
    finally:
        _OFF.reset(token)


def fuse_steps(model: Any) -> Any:
    """Makes ``model``'s training and evaluation calls one XLA program each
    on the JAX backend (see the module docstring); returns the model.

    Keras' ``make_train_function`` and ``make_test_function`` are replaced
    on this model object only; a later ``compile`` keeps them, and whether a
    call is fused is decided when the function is made, from the model's
    settings then. Other backends, or the ``fused_steps`` speedup switched
    off (``ANNZOO_SPEEDUPS``): nothing changes.
    """
    if keras.backend.backend() != "jax" or not active(NAME):
        return model
    for kind in _KINDS:
        name = f"make_{kind}_function"
        if getattr(getattr(model, name, None), "_annzoo_fused", False):
            continue
        original = getattr(type(model), name)
        maker = functools.partial(_make_function, model, kind, original)
        maker._annzoo_fused = True
        object.__setattr__(model, name, maker)
    return model


def fused(model: Any, kind: str = "train") -> bool:
    """Whether ``model``'s current ``kind`` function (``"train"`` or
    ``"test"``) runs its calls as one program (`fuse_steps`)."""
    function = getattr(model, f"{kind}_function", None)
    return bool(getattr(function, "_annzoo_fused", False))


def _fusable(model: Any) -> bool:
    return (
        active(NAME)
        and not _OFF.get()
        and int(getattr(model, "steps_per_execution", 1) or 1) > 1
        and not model.run_eagerly
        and bool(model.jit_compile)
        and keras.distribution.distribution() is None
        and not keras.config.is_nnx_enabled()
    )


def _make_function(model, kind: str, original, force: bool = False) -> None:
    attribute = f"{kind}_function"
    if getattr(model, attribute) is not None and not force:
        return
    if not _fusable(model):
        original(model, force=force)
        return
    step = model.train_step if kind == "train" else model.test_step
    setattr(model, attribute, _Calls(model, step, attribute))


def _signature(batch: Any) -> tuple:
    import jax  # JAX only: deferred, an optional dependency

    leaves, structure = jax.tree_util.tree_flatten(batch)
    return structure, tuple(
        (np.shape(leaf), str(getattr(leaf, "dtype", type(leaf).__name__)))
        for leaf in leaves
    )


def _nbytes(batch: Any) -> int:
    import jax  # JAX only: deferred, an optional dependency

    return sum(
        int(np.prod(np.shape(leaf), dtype=np.int64))
        * np.dtype(getattr(leaf, "dtype", np.float32)).itemsize
        for leaf in jax.tree_util.tree_leaves(batch)
    )


# Primitives XLA runs much slower inside a loop than alone: XLA:CPU compiles
# the kernel-gradient convolutions in a loop body to its generic loop code
# instead of a library call, so a digits CNN's step inside a loop ran several
# times slower than alone (`benchmarks/run.py --only overhead`, its CNN). A
# step that has one runs as Keras' own does.
SLOW_IN_LOOPS = frozenset({"conv_general_dilated"})


def _primitives(jaxpr) -> set[str]:
    """The primitives of ``jaxpr`` and of the jaxprs nested in it."""
    found = set()
    for equation in jaxpr.eqns:
        found.add(equation.primitive.name)
        for value in equation.params.values():
            for item in value if isinstance(value, list | tuple) else (value,):
                inner = getattr(item, "jaxpr", item)
                if hasattr(inner, "eqns"):
                    found |= _primitives(inner)
    return found


def _loop(step, state, batches, count, logs_spec):
    """Runs ``step`` over ``batches[:count]``; returns the last logs and the
    state, as Keras' step does for one batch. ``logs_spec``: the logs'
    structure and ``(shape, dtype)`` leaves, which the loop carries."""
    # JAX only: deferred, an optional dependency.
    import jax
    import jax.numpy as jnp
    from jax import lax

    structure, leaves = logs_spec
    logs = structure.unflatten([jnp.zeros(shape, dtype) for shape, dtype in leaves])
    pick = [functools.partial(lambda batch: batch, batch) for batch in batches]

    def body(index, carry):
        state, _ = carry
        logs, new = step(state, lax.switch(index, pick))
        # Keras may return a value in another (weak) type than it was given.
        new = jax.tree_util.tree_map(
            lambda value, old: jnp.asarray(value, old.dtype), new, state
        )
        return new, logs

    state, logs = lax.fori_loop(0, count, body, (state, logs))
    return logs, state


class _Calls:
    """A fused ``train_function``/``test_function``: ``(state, iterator) ->
    (logs, state)``, Keras' calling convention."""

    _annzoo_fused = True

    def __init__(self, model, step, attribute: str) -> None:
        import jax  # JAX only: deferred, an optional dependency

        self.model = model
        self.step = step
        self.attribute = attribute
        self.single = jax.jit(step, donate_argnums=0)

        def steps(state, batches, count, logs_spec):
            return _loop(step, state, batches, count, logs_spec)

        # Named after the step ("train_steps"), as JAX's logs show it.
        steps.__name__ = steps.__qualname__ = f"{step.__name__}s"
        self.group = jax.jit(steps, donate_argnums=0, static_argnums=3)
        # Per batch signature: (batches per program, the logs' spec).
        self.plans: dict[tuple, tuple[int, Any]] = {}

    def _plan(self, key: tuple, state, batch: Any) -> tuple[int, Any]:
        if key in self.plans:
            return self.plans[key]
        import jax  # JAX only: deferred, an optional dependency

        steps = int(self.model.steps_per_execution or 1)
        size = max(1, min(steps, MAX_GROUP_BYTES // max(_nbytes(batch), 1)))
        spec = None
        if size > 1:
            # One abstract trace (no compilation) gives both what the step
            # computes and the logs' shapes, which the loop needs up front.
            closed, (logs, _) = jax.make_jaxpr(self.step, return_shape=True)(
                state, batch
            )
            if _primitives(closed.jaxpr) & SLOW_IN_LOOPS:
                size = 1
            else:
                leaves, structure = jax.tree_util.tree_flatten(logs)
                spec = (structure, tuple((x.shape, str(x.dtype)) for x in leaves))
        self.plans[key] = (size, spec)
        return self.plans[key]

    def _hand_back(self) -> None:
        """From the next call on, Keras' own function runs this model's
        calls (with the step compiled here): the first batch shape runs one
        step per program, and this one's per-batch bookkeeping would cost
        a small CNN's step a little (`benchmarks/run.py --only overhead`)."""
        setattr(self.model, self.attribute, self.model._make_function(self.single))

    def _run(self, state, batches: list, size: int, spec):
        if size == 1:  # Keras' own step
            return self.single(state, batches[0])
        padded = tuple(batches) + (batches[-1],) * (size - len(batches))
        return self.group(state, padded, np.int32(len(batches)), spec)

    def __call__(self, state, iterator):
        # The first batch's StopIteration ends the epoch, as in Keras' loop.
        batches = [next(iterator)]
        left = int(self.model.steps_per_execution or 1) - 1
        logs = None
        first = not self.plans
        while batches:
            key = _signature(batches[0])
            size, spec = self._plan(key, state, batches[0])
            if first and size == 1:
                self._hand_back()
            first = False
            other = None
            while left and len(batches) < size:
                try:
                    batch = next(iterator)
                except StopIteration:
                    left = 0
                    break
                left -= 1
                if _signature(batch) != key:
                    other = batch
                    break
                batches.append(batch)
            logs, state = self._run(state, batches, size, spec)
            batches = [] if other is None else [other]
            if not batches and left:
                try:
                    batches = [next(iterator)]
                    left -= 1
                except StopIteration:
                    left = 0
        return logs, state

"""Data-parallel (and model-parallel) training on the engines Keras already has.

A recipe's ``distribute`` section picks the strategy:

- ``"none"``: one device, as without this module.
- ``"mirrored"``: ``tf.distribute.MirroredStrategy`` over this machine's GPUs
  (or its logical CPU devices when there is no GPU); TensorFlow backend.
- ``"data-parallel"``: ``keras.distribution.DataParallel`` over every device
  of every process of the job; JAX backend. Several processes (one per GPU
  or per machine) form one job through `join` (`annzoo.training.launch`
  starts them on one machine).
- ``"model-parallel"``: ``keras.distribution.ModelParallel`` on a
  ``(batch, model)`` device mesh, each large kernel split along its last axis
  over the ``model`` axis; JAX backend, for models too large for one device.
- ``"auto"`` (the default): mirrored (TensorFlow) or data-parallel (JAX) when
  several accelerators are visible or several processes were joined, else
  none.

``data.batch_size`` is the batch of one replica; the global batch is that
times the number of replicas (stated in the run's log). The learning rate is
left alone unless ``distribute.scale_learning_rate`` asks for linear scaling.

Each process of a multi-process job reads only its shard of every global
batch (`Plan.shard`); process 0 alone writes the run directory.

TensorFlow's ``MultiWorkerMirroredStrategy`` fails inside Keras 3's ``fit``
(keras-team/keras issue 20585), so jobs of several processes run on the JAX
backend, and asking for one on TensorFlow is an error that says so.
"""

from __future__ import annotations

import contextlib
import re
from dataclasses import dataclass, field
from typing import Any

import keras

from annzoo.errors import AnnzooError

__all__ = ["STRATEGIES", "Plan", "plan", "join", "joined"]

STRATEGIES = ("auto", "none", "mirrored", "data-parallel", "model-parallel")
MULTI_WORKER_TF = (
    "Training in several processes needs the JAX backend: TensorFlow's "
    "MultiWorkerMirroredStrategy fails inside Keras 3's fit (keras-team/keras "
    "issue 20585). Run with KERAS_BACKEND=jax (pip install 'annzoo[jax]'), or "
    "use --distribute mirrored for the GPUs of one machine."
)

# Set by `join`: (num_processes, process_id) of this process's job.
_JOB: tuple[int, int] | None = None


def _backend() -> str:
    return keras.backend.backend()


def check_multi_process_backend() -> None:
    """Refuses a job of several processes on a backend that cannot run one."""
    if _backend() != "jax":
        raise AnnzooError(MULTI_WORKER_TF)


def joined() -> tuple[int, int]:
    """``(num_processes, process_id)`` of the job this process joined, or (1, 0)."""
    return _JOB or (1, 0)


def parse_coordinator(coordinator: str) -> str:
    host, _, port = str(coordinator).rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise AnnzooError(
            "`--coordinator` must be HOST:PORT of process 0, for example "
            f"10.0.0.5:1234. Received: --coordinator={coordinator!r}"
        )
    return f"{host}:{port}"


def join(coordinator: str, num_processes: int, process_id: int) -> None:
    """Joins this process to a job of ``num_processes`` (JAX backend).

    Call before anything runs on a JAX device. Process 0 listens at
    ``coordinator``; the others connect to it. On CPUs the processes exchange
    gradients through gloo.
    """
    global _JOB
    if not isinstance(num_processes, int) or num_processes < 1:
        raise AnnzooError(
            "`--num-processes` must be an integer >= 1. "
            f"Received: --num-processes={num_processes!r}"
        )
    if not isinstance(process_id, int) or not 0 <= process_id < num_processes:
        raise AnnzooError(
            f"`--process-id` must be an integer in [0, {num_processes - 1}] "
            f"(--num-processes={num_processes}). Received: --process-id={process_id!r}"
        )
    coordinator = parse_coordinator(coordinator)
    if _JOB is not None:
        if _JOB != (num_processes, process_id):
            raise AnnzooError(
                f"This process already joined a job as process {_JOB[1]} of "
                f"{_JOB[0]}; it cannot join another."
            )
        return
    if num_processes == 1:
        _JOB = (1, 0)
        return
    check_multi_process_backend()
    import jax  # deferred: JAX is optional (the jax extra)

    # CPU devices of different processes talk through gloo (the default CPU
    # client has no cross-process collectives); GPUs use NCCL regardless.
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    keras.distribution.initialize(
        job_addresses=coordinator, num_processes=num_processes, process_id=process_id
    )
    _JOB = (num_processes, process_id)


@dataclass
class Plan:
    """How one run is spread over devices and processes."""

    strategy: str  # "none", "mirrored", "data-parallel" or "model-parallel"
    replicas: int = 1  # copies of the model that each take a slice of the batch
    num_processes: int = 1
    process_id: int = 0
    devices: list[str] = field(default_factory=list)
    model_axis: int = 1
    distribution: Any = None  # keras.distribution.Distribution (JAX)
    tf_strategy: Any = None  # tf.distribute.Strategy (TensorFlow)

    @property
    def chief(self) -> bool:
        """Whether this process writes the run directory."""
        return self.process_id == 0

    @property
    def shard(self) -> tuple[int, int] | None:
        """``(index, count)``: the part of each global batch this process reads."""
        return (self.process_id, self.num_processes) if self.num_processes > 1 else None

    @property
    def batch_multiple(self) -> int:
        """Every batch fed to a JAX distribution splits evenly over its devices."""
        return self.replicas if self.distribution is not None else 1

    def global_batch(self, per_replica: int) -> int:
        return per_replica * self.replicas

    def scope(self):
        """Where models, optimizers and metrics are created and trained."""
        if self.tf_strategy is not None:
            return self.tf_strategy.scope()
        if self.distribution is not None:
            return self.distribution.scope()
        return contextlib.nullcontext()

    def barrier(self, name: str) -> None:
        """Waits until every process of the job reaches ``name``."""
        if self.num_processes > 1:
            # deferred: JAX is optional (a job of several processes runs on it)
            from jax.experimental import multihost_utils

            multihost_utils.sync_global_devices(name)

    def describe(self, per_replica: int) -> str:
        if self.strategy == "none":
            return f"one device, batch {per_replica}"
        where = f"{self.replicas} devices"
        if self.num_processes > 1:
            where += (
                f" in {self.num_processes} processes (this is process "
                f"{self.process_id}; it reads 1/{self.num_processes} of each batch)"
            )
        text = (
            f"{self.strategy} over {where}; global batch "
            f"{self.global_batch(per_replica)} = {per_replica} per replica x "
            f"{self.replicas}"
        )
        if self.strategy == "model-parallel":
            text += f"; kernels split over a model axis of {self.model_axis}"
        return text


def _tf_devices() -> list[str]:
    import tensorflow as tf  # deferred: heavy, and only the mirrored strategy's

    gpus = tf.config.list_logical_devices("GPU")
    return [d.name for d in (gpus or tf.config.list_logical_devices("CPU"))]


def _jax_devices():
    import jax  # deferred: JAX is optional (the jax extra)

    return jax.devices()


def _accelerators(devices) -> int:
    return sum(getattr(d, "platform", "cpu") != "cpu" for d in devices)


def plan(section: dict) -> Plan:
    """The `Plan` for a recipe's ``distribute`` section on this backend.

    Raises:
        AnnzooError: a strategy this backend does not have, more devices asked
            for than exist, or several processes on TensorFlow.
    """
    strategy = section["strategy"]
    wanted = section.get("devices")
    num_processes, process_id = joined()
    backend = _backend()
    if num_processes > 1:
        check_multi_process_backend()
    if strategy == "auto":
        if num_processes > 1:
            strategy = "data-parallel"
        elif backend == "tensorflow":
            import tensorflow as tf  # deferred: heavy, loaded with its backend

            several = len(tf.config.list_logical_devices("GPU")) > 1
            strategy = "mirrored" if several else "none"
        elif backend == "jax":
            several = _accelerators(_jax_devices()) > 1
            strategy = "data-parallel" if several else "none"
        else:
            strategy = "none"
    if strategy == "none":
        if num_processes > 1:
            raise AnnzooError(
                "`distribute.strategy` 'none' cannot train in several processes: "
                f"this process joined a job of {num_processes}. Use 'data-parallel' "
                "or 'auto'."
            )
        return Plan("none")
    if strategy == "mirrored":
        if backend != "tensorflow":
            raise AnnzooError(
                "`distribute.strategy` 'mirrored' is TensorFlow's MirroredStrategy; "
                f"the Keras backend is {backend!r}. Use 'data-parallel' (JAX) or "
                "'auto'."
            )
        import tensorflow as tf  # deferred: heavy, loaded with its backend

        devices = _pick(_tf_devices(), wanted)
        return Plan(
            "mirrored",
            replicas=len(devices),
            devices=devices,
            tf_strategy=tf.distribute.MirroredStrategy(devices),
        )
    if backend != "jax":
        raise AnnzooError(
            f"`distribute.strategy` {strategy!r} uses keras.distribution, which "
            f"runs on the JAX backend; the Keras backend is {backend!r}. Use "
            "'mirrored' on TensorFlow, or KERAS_BACKEND=jax."
        )
    devices = _jax_devices()
    if num_processes == 1:
        devices = _pick(devices, wanted)
    elif wanted is not None and wanted != len(devices):
        raise AnnzooError(
            f"`distribute.devices` must be null in a job of several processes (it "
            f"uses all {len(devices)} devices of the job). Received: "
            f"distribute.devices={wanted!r}"
        )
    names = [f"{d.platform}:{d.id}" for d in devices]
    if strategy == "data-parallel":
        distribution = keras.distribution.DataParallel(
            devices=devices, auto_shard_dataset=False
        )
        return Plan(
            "data-parallel",
            replicas=len(devices),
            num_processes=num_processes,
            process_id=process_id,
            devices=names,
            distribution=distribution,
        )
    model_axis = section.get("model_axis") or len(devices)
    if len(devices) % model_axis:
        raise AnnzooError(
            f"`distribute.model_axis` must divide the {len(devices)} devices. "
            f"Received: distribute.model_axis={model_axis!r}"
        )
    return Plan(
        "model-parallel",
        replicas=len(devices) // model_axis,
        num_processes=num_processes,
        process_id=process_id,
        devices=names,
        model_axis=model_axis,
        distribution=None,  # made by `model_parallel` once the variables are known
    )


def _pick(devices: list, wanted: int | None) -> list:
    if wanted is None:
        return list(devices)
    if wanted > len(devices):
        raise AnnzooError(
            f"`distribute.devices` asks for {wanted} devices; this machine has "
            f"{len(devices)}. Received: distribute.devices={wanted!r}"
        )
    return list(devices)[:wanted]


def model_parallel(plan: Plan, build) -> Any:
    """Sets ``plan.distribution`` to a ModelParallel for what ``build()`` makes.

    The model is built once without a distribution to learn its variables'
    paths and shapes; every variable of rank >= 2 whose last axis divides by
    the model axis is split along it, the rest are replicated.
    """
    probe = build()
    shapes = {v.path: tuple(v.shape) for v in probe.weights}
    del probe
    keras.backend.clear_session()  # layer names restart, as in the real build
    devices = _jax_devices()
    mesh = keras.distribution.DeviceMesh(
        (plan.replicas, plan.model_axis), ["batch", "model"], devices=devices
    )
    layout_map = keras.distribution.LayoutMap(mesh)
    for path, shape in shapes.items():
        if len(shape) >= 2 and shape[-1] % plan.model_axis == 0:
            layout_map[f"^{re.escape(path)}$"] = (None,) * (len(shape) - 1) + ("model",)
    plan.distribution = keras.distribution.ModelParallel(
        layout_map=layout_map, batch_dim_name="batch", auto_shard_dataset=False
    )
    return plan.distribution

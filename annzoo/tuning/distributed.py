"""Distributed searches on keras-tuner's own chief/worker protocol.

keras-tuner runs one *chief* process that owns the oracle (a gRPC server that
hands out trials and collects results) and any number of *workers* that build
and train the models; every process finds its role in the environment
variables ``KERASTUNER_TUNER_ID`` (``"chief"`` or a unique worker id),
``KERASTUNER_ORACLE_IP`` and ``KERASTUNER_ORACLE_PORT``, and all of them write
to the same search directory (on several machines: a shared file system).

`annzoo tune RECIPE --workers N` starts a chief and N workers on this machine
(worker i sees only GPU i when GPUs exist); `--role chief|worker --oracle
HOST:PORT` joins a cluster started by hand (see docs/tuning.md).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Sequence

from annzoo.errors import AnnzooError
from annzoo.training.launch import free_port, gpu_count

__all__ = ["launch", "role_environment", "parse_oracle"]

ENV_ID, ENV_IP, ENV_PORT = (
    "KERASTUNER_TUNER_ID",
    "KERASTUNER_ORACLE_IP",
    "KERASTUNER_ORACLE_PORT",
)


def parse_oracle(oracle: str) -> tuple[str, int]:
    """``"HOST:PORT"`` -> ``(host, port)``, with an error naming ``--oracle``."""
    host, _, port = str(oracle).rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise AnnzooError(
            "`--oracle` must be HOST:PORT of the chief, for example "
            f"10.0.0.5:8000. Received: --oracle={oracle!r}"
        )
    return host, int(port)


def role_environment(role: str, oracle: str, worker_id: str | None = None) -> dict:
    """The environment variables that give this process its role."""
    if role not in ("chief", "worker"):
        raise AnnzooError(
            f"`--role` must be 'chief' or 'worker'. Received: --role={role!r}"
        )
    host, port = parse_oracle(oracle)
    tuner_id = "chief" if role == "chief" else worker_id
    if tuner_id is None:
        tuner_id = f"worker-{socket.gethostname()}-{os.getpid()}"
    if role == "worker" and "chief" in tuner_id:
        raise AnnzooError(
            f"A worker id must not contain 'chief'. Received: {tuner_id!r}"
        )
    return {ENV_ID: tuner_id, ENV_IP: host, ENV_PORT: str(port)}


def launch(tune_argv: Sequence[str], workers: int, *, timeout: float | None = None):
    """Runs ``annzoo tune TUNE_ARGV`` as a chief and ``workers`` local workers.

    Returns the exit status: 0 when the chief and every worker succeeded.
    """
    if not isinstance(workers, int) or workers < 1:
        raise AnnzooError(
            f"`--workers` must be an integer >= 1. Received: --workers={workers!r}"
        )
    oracle = f"127.0.0.1:{free_port()}"
    gpus = gpu_count()
    command = [sys.executable, "-m", "annzoo.cli", "tune", *tune_argv]
    processes = []
    chief_env = {**os.environ, **role_environment("chief", oracle)}
    processes.append(subprocess.Popen([*command], env=chief_env))
    time.sleep(2.0)  # let the chief's oracle server start listening
    for i in range(workers):
        env = {**os.environ, **role_environment("worker", oracle, f"worker{i}")}
        if gpus:
            env["CUDA_VISIBLE_DEVICES"] = str(i % gpus)
        processes.append(subprocess.Popen(command, env=env))
    print(
        f"annzoo: distributed search: chief and {workers} workers, oracle {oracle}"
        + (f", {gpus} GPUs" if gpus else ""),
        flush=True,
    )
    deadline = None if timeout is None else time.monotonic() + timeout
    codes = []
    try:
        for process in processes:
            left = None if deadline is None else max(1, deadline - time.monotonic())
            codes.append(process.wait(timeout=left))
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
    return 0 if all(code == 0 for code in codes) else 1

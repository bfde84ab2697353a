"""Starting the processes of a job on this machine.

`launch` runs one command as the processes of a training job (each joins it
through `annzoo.training.distribute.join`); `free_port` and `gpu_count` serve
it and the tuner's chief/worker launcher (`annzoo.tuning.distributed`).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Sequence

from annzoo.errors import AnnzooError

__all__ = ["free_port", "gpu_count", "launch"]


def free_port() -> int:
    """A TCP port of 127.0.0.1 that was free a moment ago."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def gpu_count() -> int:
    """NVIDIA GPUs on this machine (``nvidia-smi -L``), 0 without any."""
    try:
        found = subprocess.run(
            ["nvidia-smi", "-L"], capture_output=True, text=True, timeout=20
        )
    except (OSError, subprocess.SubprocessError):
        return 0
    return sum(line.startswith("GPU ") for line in found.stdout.splitlines())


def _stream(pipe, prefix: str) -> None:
    for line in iter(pipe.readline, ""):
        sys.stderr.write(prefix + line)
    pipe.close()


def launch(
    command: Sequence[str], workers: int, *, timeout: float | None = None
) -> int:
    """Runs ``command`` as ``workers`` processes of one job on this machine.

    Each gets ``--coordinator 127.0.0.1:PORT --num-processes N --process-id I``
    appended (and, with GPUs, sees only its own). Process 0 keeps this
    terminal; the others' output is prefixed ``[process I]``. When one fails,
    the rest are stopped. Returns the first non-zero exit status, or 0.
    """
    if not isinstance(workers, int) or workers < 1:
        raise AnnzooError(
            f"`--workers` must be an integer >= 1. Received: --workers={workers!r}"
        )
    coordinator = f"127.0.0.1:{free_port()}"
    gpus = gpu_count()
    processes = []
    threads = []
    for i in range(workers):
        env = dict(os.environ)
        if gpus:
            env["CUDA_VISIBLE_DEVICES"] = str(i % gpus)
        argv = [
            *command,
            "--coordinator",
            coordinator,
            "--num-processes",
            str(workers),
            "--process-id",
            str(i),
        ]
        if i == 0:
            processes.append(subprocess.Popen(argv, env=env))
            continue
        process = subprocess.Popen(
            [*argv, "--quiet"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        thread = threading.Thread(
            target=_stream, args=(process.stdout, f"[process {i}] "), daemon=True
        )
        thread.start()
        processes.append(process)
        threads.append(thread)
    print(
        f"annzoo: {workers} processes, coordinator {coordinator}"
        + (f", {gpus} GPUs" if gpus else ""),
        file=sys.stderr,
        flush=True,
    )
    return _wait_all(processes, threads, timeout)


def _wait_all(processes, threads, timeout: float | None) -> int:
    deadline = None if timeout is None else time.monotonic() + timeout
    failed = 0
    try:
        while any(p.poll() is None for p in processes):
            for p in processes:
                code = p.poll()
                if code not in (None, 0) and not failed:
                    failed = code
            if failed:
                break
            if deadline is not None and time.monotonic() > deadline:
                failed = 124
                break
            time.sleep(0.2)
        for p in processes:
            code = p.poll()
            if code not in (None, 0) and not failed:
                failed = code
    finally:
        for p in processes:
            if p.poll() is None:
                p.kill()
            p.wait()
        for t in threads:
            t.join(timeout=5)
    return failed if failed > 0 else (1 if failed else 0)

"""Where a training step's device time goes: kernel tables from profiler traces.

`jax_kernels` runs a function under ``jax.profiler.trace`` and reads the
Chrome-format trace it writes (``perfetto_trace.json.gz``); `torch_kernels`
reads a ``torch.profiler`` run. Both give the same summary: the busy time per
step of the device (or, on a CPU, of XLA's host threads), the operations
that took most of it, and their shares by kind (convolution, matmul,
attention, normalization, elementwise, reduction, copy). The summary goes into the
benchmark's JSON, so a GPU run brings back the answer, not megabytes of
trace.
"""

from __future__ import annotations

import collections
import gzip
import json
import re
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

TOP = 25  # operations listed per profile

# First match wins: a cuDNN convolution kernel is a convolution, not "cudnn".
# Each word is a regular expression ("conv" but not "convert", a cast).
KINDS = (
    ("convolution", ("conv(?!ert)", "wgrad", "dgrad", "fprop", "implicit_gemm")),
    ("attention", ("flash", "fmha", "attention", "sdpa")),
    ("matmul", ("gemm", "dot", "matmul", "cublas", "cutlass", "xmma", "addmm",
                r"mm\(")),
    ("normalization", ("batch_?norm", "layer_?norm", "group_?norm", "bn_fw", "bn_bw")),
    ("reduction", ("reduce", "reduction", "triton_red", "triton_per")),
    ("copy", ("copy", "transpose", "memcpy", "memset", "dynamic-update-slice")),
    ("elementwise", ("fusion", "elementwise", "vectorized", "triton", "convert",
                     "wrapped_", "aten::(add|mul|div|sub|relu|threshold)")),
    ("communication", ("all-reduce", "nccl", "all-gather")),
    ("custom call", ("custom-call", "custom_call")),
)  # fmt: skip
_KIND_PATTERNS = tuple((label, re.compile("|".join(words))) for label, words in KINDS)


def kind(name: str) -> str:
    """The kind of an operation or kernel, from its name."""
    lowered = name.lower()
    for label, pattern in _KIND_PATTERNS:
        if pattern.search(lowered):
            return label
    return "other"


def _table(durations: dict[str, float], counts: dict[str, int], steps: int,
           top: int) -> dict[str, Any]:  # fmt: skip
    """Microseconds per name -> the summary (milliseconds per step)."""
    total = sum(durations.values())
    by_kind: dict[str, float] = collections.defaultdict(float)
    for name, micros in durations.items():
        by_kind[kind(name)] += micros
    ranked = sorted(durations.items(), key=lambda item: -item[1])[:top]
    return {
        "busy_ms_per_step": round(total / 1e3 / steps, 4),
        "operations": len(durations),
        "kinds": {
            label: round(micros / total, 4) if total else 0.0
            for label, micros in sorted(by_kind.items(), key=lambda item: -item[1])
        },
        "top": [
            {
                "name": name[:160],
                "kind": kind(name),
                "ms_per_step": round(micros / 1e3 / steps, 4),
                "share": round(micros / total, 4) if total else 0.0,
                "calls_per_step": round(counts[name] / steps, 2),
            }
            for name, micros in ranked
        ],
    }


def summarize_events(events: Iterable[dict], steps: int, top: int = TOP) -> dict:
    """Summary of Chrome trace events (``ph`` "M" names, "X" complete events).

    On a GPU the line read is the device's "XLA Ops" thread (one event per HLO
    operation, named after it) when the trace has one, else its streams
    (kernels); on a CPU, the host threads XLA runs on.
    """
    if steps < 1:
        raise ValueError(f"`steps` must be at least 1. Received: steps={steps!r}")
    events = list(events)
    processes, threads = {}, {}
    for event in events:
        if event.get("ph") != "M":
            continue
        name = (event.get("args") or {}).get("name", "")
        if event.get("name") == "process_name":
            processes[event["pid"]] = name
        elif event.get("name") == "thread_name":
            threads[(event["pid"], event["tid"])] = name
    devices = {pid for pid, name in processes.items() if name.startswith("/device:")}
    if devices:
        ops = {key for key, name in threads.items() if key[0] in devices
               and name == "XLA Ops"}  # fmt: skip
        lines = ops or {
            key for key, name in threads.items()
            if key[0] in devices and name.lower().startswith("stream")
        }  # fmt: skip
        source = "device XLA ops" if ops else "device streams"
    else:
        lines = {key for key, name in threads.items() if "xla" in name.lower()}
        source = "host XLA threads"
    durations: dict[str, float] = collections.defaultdict(float)
    counts: dict[str, int] = collections.Counter()
    by_line = collections.defaultdict(list)
    for event in events:
        if event.get("ph") == "X" and (event.get("pid"), event.get("tid")) in lines:
            by_line[(event["pid"], event["tid"])].append(event)
    for line_events in by_line.values():
        for name, micros in self_times(line_events):
            durations[name] += micros
            counts[name] += 1
    summary = _table(durations, counts, steps, top)
    return {"source": source, "lines": sorted(threads[k] for k in lines), **summary}


def self_times(events: list[dict]) -> list[tuple[str, float]]:
    """``(name, own time)`` of one thread's events: an event's time minus that
    of the events nested in it (a host thread's executor wraps its operations),
    so the times add up to the time the thread was busy."""
    ordered = sorted(events, key=lambda e: (float(e["ts"]), -float(e.get("dur", 0))))
    own = [float(e.get("dur", 0.0)) for e in ordered]
    open_: list[tuple[float, int]] = []  # (end, index) of enclosing events
    for index, event in enumerate(ordered):
        start = float(event["ts"])
        end = start + float(event.get("dur", 0.0))
        while open_ and open_[-1][0] <= start:
            open_.pop()
        if open_:  # nested in the innermost open event (clipped to it)
            own[open_[-1][1]] -= min(end, open_[-1][0]) - start
        open_.append((end, index))
    return [(e["name"], max(t, 0.0)) for e, t in zip(ordered, own, strict=True)]


def read_trace(path: str | Path) -> list[dict]:
    """The events of a Chrome-format trace (``.json`` or ``.json.gz``)."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as handle:
        data = json.load(handle)
    return data["traceEvents"] if isinstance(data, dict) else data


def jax_kernels(run: Callable[[], Any], where: str | Path, steps: int,
                top: int = TOP) -> dict[str, Any]:  # fmt: skip
    """Runs ``run`` (``steps`` training steps, compiled already) under JAX's
    profiler and summarizes the trace it wrote under ``where``."""
    import jax

    where = Path(where)
    where.mkdir(parents=True, exist_ok=True)
    before = set(where.rglob("perfetto_trace.json.gz"))
    with jax.profiler.trace(str(where), create_perfetto_trace=True):
        run()
    written = sorted(set(where.rglob("perfetto_trace.json.gz")) - before)
    if not written:
        raise RuntimeError(
            f"jax.profiler wrote no perfetto_trace.json.gz under {where}"
        )
    return {"steps": steps, **summarize_events(read_trace(written[-1]), steps, top)}


def _on_device(event) -> bool:
    """Whether a ``torch.profiler`` event ran on the GPU (a kernel, a copy),
    not on the host: the device's own events carry its time."""
    return "CUDA" in str(getattr(event, "device_type", ""))


def torch_kernels(profile, steps: int, cuda: bool, top: int = TOP) -> dict[str, Any]:
    """Summary of a finished ``torch.profiler.profile``: each GPU kernel's
    time, or each operator's own CPU time without CUDA.

    With CUDA only the device's own events count, so that an operator and the
    kernels it launched are not both counted (where a PyTorch version records
    no device events, every event's own device time counts).
    """
    events = list(profile.key_averages())
    if cuda and any(_on_device(e) for e in events):
        events = [e for e in events if _on_device(e)]
    durations: dict[str, float] = collections.defaultdict(float)
    counts: dict[str, int] = collections.Counter()
    for event in events:
        if cuda:
            micros = getattr(event, "self_device_time_total", None)
            if micros is None:  # older PyTorch
                micros = getattr(event, "self_cuda_time_total", 0.0)
        else:
            micros = event.self_cpu_time_total
        if micros > 0:
            durations[event.key] += float(micros)
            counts[event.key] += int(event.count)
    source = (
        "CUDA kernels (torch.profiler)" if cuda else "CPU operators (torch.profiler)"
    )
    return {"steps": steps, "source": source, **_table(durations, counts, steps, top)}

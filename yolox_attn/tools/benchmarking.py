"""Measuring helpers of the bench tool: device choice, timing, FLOPs, onnxruntime, peak memory, workers.

Workers are fresh processes of the bench tool (``python -m yolox_attn.tools.bench <mode> ...
--worker TASK``; ``run_workers`` starts them). Two things are measured in them:

* onnxruntime latency and profiles (``onnxruntime_runs``), one session per process, as a
  deployment runs it. Several sessions alive in one process each keep their own thread pool,
  whose threads spin for a while after every run: timed round-robin in one process, each
  session shared its 2 cores with the previous session's spinning thread (about 30 ms of CPU
  per run on YOLOX-s at 640), which made large graphs read slower than they run alone
  (docs/benchmarks.md).
* peak memory (``measure_peaks``), so that no other case's allocations hide or inflate it,
after a warm-up on a tiny input (lazy one-time allocations such as thread pools and kernel
caches fall before the baseline), separately for each phase:

* CPU (Linux): before each phase, freed heap pages go back to the OS (glibc ``malloc_trim``) and
  the kernel's peak-RSS mark is reset to the current RSS (``/proc/self/clear_refs`` = 5); the
  figure is the peak (``VmHWM``) over the RSS at that point. Not ``getrusage().ru_maxrss``: it
  cannot be reset, and a spawned worker inherits its parent's peak through it (a parent that
  once held 1.6 GiB makes every worker read at least 1.6 GiB), which hides any smaller peak.
  Resident memory is what the allocator holds, so tiny phases read coarse figures (even 0).
  Workers run with a fixed glibc mmap threshold (``MALLOC_MMAP_THRESHOLD_``, see ``run_worker``),
  so that every tensor above 128 KiB is its own mapping and the RSS peak follows the live tensors.
* CUDA: ``torch.cuda.max_memory_allocated`` over ``memory_allocated`` at the start of the phase.
"""

import argparse
import ctypes
import json
import os
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Callable, Dict, List, Mapping, Optional, Sequence, Union

import torch
from torch.utils.flop_counter import FlopCounterMode

MIB = 2**20
# Memory workers' glibc mmap threshold: see run_worker.
MMAP_THRESHOLD = 128 * 1024
WORKER_MODULE = "yolox_attn.tools.bench"  # the one CLI whose --worker runs a task (not __name__: "__main__" under -m)


def log(msg: str) -> None:
    """Progress line on stderr (stdout carries the table or JSON)."""
    print(msg, file=sys.stderr, flush=True)


def resolve_device(name: str) -> torch.device:
    """``auto`` -> CUDA when available, else CPU; ValueError for CUDA without CUDA."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name not in ("cpu", "cuda"):
        raise ValueError(f"unknown device {name!r}; allowed: auto, cpu, cuda")
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda was asked for but torch.cuda.is_available() is False")
    return torch.device(name)


def device_arg(text: str) -> torch.device:
    """argparse ``type`` of every tool's ``--device``: auto, cpu or cuda, checked against this machine."""
    try:
        return resolve_device(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from err


def synchronize(device: torch.device) -> None:
    """Wait for queued CUDA work, so that wall-clock time covers it."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def ratio(value: Optional[float], reference: Optional[float]) -> Optional[float]:
    """``value / reference``, or None when either is missing or the reference is not positive."""
    if value is None or reference is None or reference <= 0:
        return None
    return value / reference


def int_at_least(minimum: int, why: str = "") -> Callable[[str], int]:
    """argparse ``type``: an int >= ``minimum``; the error names the bad value (and ``why``)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = minimum - 1
        if value < minimum:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer >= {minimum}{why}")
        return value

    return parse


def fmt(value: Optional[float], spec: str) -> str:
    """``format(value, spec)``, or "-" for a missing figure."""
    return "-" if value is None else format(value, spec)


# ------------------------------------------------------------------------------ timing
@dataclass
class Timing:
    """Median, min and max of the timed repeats, in seconds."""

    median_s: float
    min_s: float
    max_s: float
    repeats: int


def summarize(times: Sequence[float]) -> Timing:
    """Median/min/max of a non-empty list of durations."""
    return Timing(statistics.median(times), min(times), max(times), len(times))


def is_out_of_memory(err: BaseException) -> bool:
    """True for CUDA OOM and the CPU allocator's "not enough memory" errors."""
    return isinstance(err, torch.cuda.OutOfMemoryError) or (
        isinstance(err, RuntimeError) and "memory" in str(err).lower() and "alloc" in str(err).lower()
    )


def infeasible_reason(err: BaseException) -> Optional[str]:
    """Why a case cannot run in this configuration, for its row; None for anything else (a bug).

    Out of memory, and a BatchNorm that gets one value per channel in training (timm's ``sk``
    normalises pooled (B, C, 1, 1) vectors, which needs a batch of 2).
    """
    first = str(err).splitlines()[0][:200] if str(err) else type(err).__name__
    if is_out_of_memory(err):
        return f"out of memory: {first}"
    if isinstance(err, ValueError) and "more than 1 value per channel when training" in str(err):
        return f"cannot train at batch 1 (a BatchNorm gets one value per channel; use --train-batch 2): {first}"
    return None


def interleaved_timings(
    cases: Mapping[str, Callable[[], object]],
    repeats: int,
    warmup: int,
    device: torch.device,
    label: str = "",
) -> Dict[str, Union[Timing, str]]:
    """Time every case ``warmup + repeats`` times, round-robin across cases.

    Round-robin puts every case under the same drift of a shared machine (other processes,
    clock boost) instead of giving the early cases a quieter slot. A case that runs out of
    memory is dropped from later rounds and reported as an error string.
    """
    times: Dict[str, List[float]] = {name: [] for name in cases}
    errors: Dict[str, str] = {}
    for i in range(warmup + repeats):
        kind = f"warm-up {i + 1}/{warmup}" if i < warmup else f"repeat {i - warmup + 1}/{repeats}"
        for name, fn in cases.items():
            if name in errors:
                continue
            try:
                synchronize(device)
                t0 = time.perf_counter()
                fn()
                synchronize(device)
                dt = time.perf_counter() - t0
            except Exception as err:  # noqa: BLE001 - an infeasible case is reported, not fatal
                reason = infeasible_reason(err)
                if reason is None:
                    raise
                errors[name] = reason
                log(f"  {label} {name}: {errors[name]}")
                if device.type == "cuda":
                    torch.cuda.empty_cache()
                continue
            log(f"  {label} {kind} {name}: {dt * 1e3:.1f} ms")
            if i >= warmup:
                times[name].append(dt)
    return {name: errors[name] if name in errors else summarize(times[name]) for name in cases}


# ------------------------------------------------------------------------------- FLOPs
def count_flops(fn: Callable[[], object]) -> int:
    """FLOPs of ``fn()`` by ``torch.utils.flop_counter`` (2 per multiply-add; matmul/conv family only)."""
    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops()


# ------------------------------------------------------------------------ onnxruntime
def onnx_node_count(path: str) -> int:
    """Nodes of the model's main graph (what onnxruntime schedules, before its own fusions)."""
    import onnx

    return len(onnx.load(path, load_external_data=False).graph.node)


def ort_session(path: str, threads: int, profile_prefix: Optional[str] = None):
    """A CPU onnxruntime session with ``threads`` intra-op threads and no inter-op parallelism.

    ``profile_prefix``: write onnxruntime's own per-node profile (JSON) there; ``end_profiling()``
    returns the file.
    """
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    if profile_prefix is not None:
        options.enable_profiling = True
        options.profile_file_prefix = profile_prefix
    return ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])


def ort_op_times(trace: str, runs: int) -> Dict[str, List[float]]:
    """onnxruntime's kernel time per op type in one session's profile trace: {op: [ms, calls]} per run."""
    with open(trace) as f:
        events = json.load(f)
    os.remove(trace)
    totals: Dict[str, List[float]] = {}
    for event in events:
        if event.get("cat") == "Node" and event.get("name", "").endswith("_kernel_time"):
            total = totals.setdefault(event["args"]["op_name"], [0.0, 0.0])
            total[0] += event["dur"] / 1e3  # microseconds
            total[1] += 1
    return {op: [ms / runs, calls / runs] for op, (ms, calls) in totals.items()}


def onnxruntime_runs(path: str, threads: int, warmup: int, repeats: int, seed: int, profile: bool = False) -> Dict:
    """In a worker: ``warmup`` untimed and ``repeats`` timed runs of one session on a random image
    of its input shape (pixel range 0..255). ``{"times_s": [...]}``, or with ``profile`` the
    kernel time per op type over every run, warm-up included (``{"ops": {op: [ms, calls]}}``)."""
    import numpy as np

    prefix = os.path.join(os.path.dirname(os.path.abspath(path)), f".profile_{os.getpid()}") if profile else None
    session = ort_session(path, threads, prefix)
    feed_name, shape = session.get_inputs()[0].name, session.get_inputs()[0].shape
    image = (np.random.default_rng(seed).random(shape) * 255).astype(np.float32)
    times = []
    for i in range(warmup + repeats):
        start = time.perf_counter()
        session.run(None, {feed_name: image})
        if i >= warmup:
            times.append(time.perf_counter() - start)
    if profile:
        return {"ops": ort_op_times(session.end_profiling(), warmup + repeats)}
    return {"times_s": times}


# ------------------------------------------------------------------------ peak memory
def _proc_status_bytes(field: str) -> int:
    """``VmRSS`` (current) or ``VmHWM`` (peak) resident memory of this process, from /proc."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024  # the kernel reports kB
    raise RuntimeError(f"{field} not in /proc/self/status")


def _release_free_heap() -> None:
    # Without this, memory a previous phase freed stays resident and the next phase reuses it
    # without raising the RSS: its growth would read too low.
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass  # not glibc: the baseline then also holds the allocator's free lists


class PeakMemory:
    """Peak memory growth of this process over a baseline (see the module docstring)."""

    def __init__(self, device: torch.device):
        self.device = device
        self.reset()

    def reset(self) -> None:
        """Take the current state as the baseline and restart the peak from it."""
        synchronize(self.device)
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
            self.base = torch.cuda.memory_allocated(self.device)
            return
        _release_free_heap()
        try:
            with open("/proc/self/clear_refs", "w") as clear_refs:
                clear_refs.write("5")  # reset VmHWM to the current RSS (Linux >= 4.0)
        except OSError as err:
            raise RuntimeError(
                f"CPU peak memory needs Linux's /proc/self/clear_refs to reset the peak RSS: {err}"
            ) from err
        self.base = _proc_status_bytes("VmRSS")

    def peak_bytes(self) -> int:
        """Peak since the last ``reset``, in bytes."""
        synchronize(self.device)
        if self.device.type == "cuda":
            return torch.cuda.max_memory_allocated(self.device) - self.base
        return _proc_status_bytes("VmHWM") - self.base


def measure_peaks(
    phases: Mapping[str, Callable[[], object]],
    device: torch.device,
    warmup: Optional[Callable[[], object]] = None,
) -> Dict[str, float]:
    """Peak memory growth (MiB) of each phase, after an untimed ``warmup()`` on a tiny input.

    Meant to run in a fresh worker process; the baseline is reset before every phase.
    """
    if warmup is not None:
        warmup()
    meter = PeakMemory(device)
    peaks: Dict[str, float] = {}
    for name, fn in phases.items():
        meter.reset()
        fn()
        peaks[name] = meter.peak_bytes() / MIB
    return peaks


def worker_report(measure: Callable[[], Dict]) -> None:
    """Run ``measure()`` in a worker and print its result as one JSON line on stdout.

    An infeasible case (``infeasible_reason``: out of memory, BatchNorm at batch 1) becomes
    ``{"error": ...}`` instead of a traceback, so that the caller can put it in the row.
    """
    try:
        result = measure()
    except Exception as err:  # noqa: BLE001
        reason = infeasible_reason(err)
        if reason is None:
            raise
        result = {"error": reason}
    print(json.dumps(result), flush=True)


def worker_argv(args: argparse.Namespace, task: Mapping) -> List[str]:
    """The command line of a worker: this run's own (``args.mode``, ``args.mode_argv``, so the
    worker sees the same settings) with ``--worker`` and the task as JSON."""
    return [args.mode, *args.mode_argv, "--worker", json.dumps(task)]


def run_worker(argv: Sequence[str], mmap_threshold: Optional[int] = MMAP_THRESHOLD) -> Dict:
    """Run ``python -m yolox_attn.tools.bench *argv`` in a fresh process; return the JSON of its last stdout line.

    ``mmap_threshold``: glibc's ``MALLOC_MMAP_THRESHOLD_`` for the worker (bytes; None: the
    default dynamic threshold; a value already in the environment wins).
    A worker killed by a signal (the kernel's OOM killer sends SIGKILL) gives ``{"error": ...}``
    for the caller's row; any other failure is a bug and raises. Its stderr passes through.
    """
    cmd = [sys.executable, "-m", WORKER_MODULE, *argv]
    env = dict(os.environ)
    if mmap_threshold is not None:
        # Needed despite malloc_trim, which only cleans up before a phase: inside it, glibc's
        # dynamic threshold rises to the size of each freed mmapped block (up to 32 MiB), so later
        # tensors come from the heap, whose freed gaps fit or not by allocation order; the RSS
        # peak then overstates the live tensors by a noisy margin (fwd+bwd at 2x32x40x40, MiB,
        # default / fixed 128 KiB / live tensors by torch.profiler: the common unfold ACmix 120-139 /
        # 85 / 83, CrissCrossAttention 16-19 / 9 / 7, the common CCA 16-20 / 10.4 / 10, enough to flip
        # a memory ratio). With it every tensor above 128 KiB is mapped alone and unmapped when
        # freed. Memory workers only: it adds page faults to large allocations, so never time under it.
        env.setdefault("MALLOC_MMAP_THRESHOLD_", str(mmap_threshold))
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, env=env)
    if proc.returncode < 0:
        hint = " (out of memory?)" if proc.returncode == -9 else ""
        return {"error": f"memory worker killed by signal {-proc.returncode}{hint}"}
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"worker {' '.join(cmd)} failed with exit code {proc.returncode}")
    return json.loads(lines[-1])


def run_workers(
    argvs: Sequence[Sequence[str]], jobs: int = 1, mmap_threshold: Optional[int] = MMAP_THRESHOLD
) -> List[Dict]:
    """``run_worker`` for each argument list, ``jobs`` at a time, results in order.

    Running several at once is sound for memory (each process has its own peak RSS or CUDA
    statistics), as long as the machine holds them all; never overlap them with timing.
    """
    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        return list(pool.map(lambda argv: run_worker(argv, mmap_threshold), argvs))

"""Where the ablation's training runs execute: here (at most N at once, each on its own cores or
GPUs) or as Slurm jobs through submitit (its local executor runs them here)."""

import ctypes
import os
import queue
import shlex
import signal
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Mapping, Optional, Sequence, Set, Tuple

from ..preflight import error_line

LAUNCHERS = ("local", "slurm", "submitit-local")
PR_SET_PDEATHSIG = 1  # prctl's option number (linux/prctl.h)
Command = Callable[[], List[str]]  # a run's command line, decided when it starts


def _die_with_parent() -> None:
    # Linux: SIGTERM when the process that started us dies (even by SIGKILL), so a run never
    # outlives its ablation tool to race a rerun's copy of itself; it stops at a checkpoint.
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def run_logged(cmd: Sequence[str], log: str, env: Optional[Mapping[str, str]] = None,
               cpus: Sequence[int] = (), running: Optional[Set[subprocess.Popen]] = None) -> int:
    """Run ``cmd``, its output appended to ``log`` after a ``$ cmd`` line, with ``env`` added to the
    environment and pinned to ``cpus`` (all allowed ones if empty); its exit status. ``running``
    holds the process while it runs. Interrupted while waiting (submitit's requeue handler exits
    this process), it stops the run with SIGTERM and waits for its checkpoint (a second
    interruption kills it)."""
    os.makedirs(os.path.dirname(log) or ".", exist_ok=True)

    def start() -> None:
        _die_with_parent()
        if cpus:
            os.sched_setaffinity(0, cpus)

    with open(log, "a") as f:
        f.write(f"$ {shlex.join(cmd)}\n")
        f.flush()
        proc = subprocess.Popen(list(cmd), stdout=f, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})},
                                preexec_fn=start)
        if running is not None:
            running.add(proc)
        try:
            return proc.wait()
        except BaseException:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait()
            except BaseException:
                proc.kill()
                raise
            raise
        finally:
            if running is not None:
                running.discard(proc)


@dataclass(frozen=True)
class Slot:
    """One place a run can take: environment additions and CPU cores."""

    env: Dict[str, str] = field(default_factory=dict)
    cpus: Tuple[int, ...] = ()

    def describe(self) -> str:
        parts = [f"{k}={v}" for k, v in self.env.items()] + ([f"cores {list(self.cpus)}"] if self.cpus else [])
        return ", ".join(parts) or "the whole machine"


def visible_gpus(count: int) -> List[str]:
    """The GPU ids this process may hand out: ``CUDA_VISIBLE_DEVICES``' entries, else 0..count-1."""
    listed = os.environ.get("CUDA_VISIBLE_DEVICES")
    if listed is not None:
        return [g.strip() for g in listed.split(",") if g.strip()]
    return [str(i) for i in range(count)]


def local_slots(jobs: int, devices: int, gpus: Sequence[str], cpus: Sequence[int]) -> List[Slot]:
    """``jobs`` disjoint slots: with GPUs, ``devices`` of them each (``CUDA_VISIBLE_DEVICES``); on
    the CPU, an equal share of ``cpus`` each, with as many threads. One job keeps the machine as is."""
    if jobs < 1:
        raise ValueError(f"--jobs must be >= 1, got {jobs}")
    if jobs == 1:
        return [Slot()]
    if gpus:
        if len(gpus) < jobs * devices:
            raise ValueError(f"--jobs {jobs} with -d {devices} needs {jobs * devices} GPUs; "
                             f"this machine has {len(gpus)} ({','.join(gpus)})")
        return [Slot({"CUDA_VISIBLE_DEVICES": ",".join(gpus[k * devices:(k + 1) * devices])}) for k in range(jobs)]
    share = len(cpus) // jobs
    if share == 0:
        raise ValueError(f"--jobs {jobs} exceeds the {len(cpus)} CPU cores this process may use")
    threads = {"OMP_NUM_THREADS": str(share), "MKL_NUM_THREADS": str(share)}
    return [Slot(threads, tuple(cpus[k * share:(k + 1) * share])) for k in range(jobs)]


class RunningProcesses:
    """The runs a launcher has going; ``stop`` sends each SIGTERM, and each started afterwards too
    (so a stop cannot miss a run starting at that moment). Safe to call from a signal handler."""

    def __init__(self):
        self._procs: Set[subprocess.Popen] = set()
        self._lock = threading.RLock()
        self.stopped = False

    def add(self, proc: subprocess.Popen) -> None:
        with self._lock:
            self._procs.add(proc)
            if self.stopped:
                proc.send_signal(signal.SIGTERM)

    def discard(self, proc: subprocess.Popen) -> None:
        with self._lock:
            self._procs.discard(proc)

    def stop(self) -> None:
        with self._lock:
            self.stopped = True
            for proc in self._procs:
                proc.send_signal(signal.SIGTERM)


class LocalLauncher:
    """Runs each command in a free slot, so that runs started together never share cores or GPUs.
    Returns a run's exit status, or None for a run not started because the launcher was stopped."""

    def __init__(self, slots: Sequence[Slot]):
        self.slots = list(slots)
        self._free: "queue.Queue[Slot]" = queue.Queue()
        for slot in self.slots:
            self._free.put(slot)
        self.running = RunningProcesses()

    def __call__(self, command: Command, log: str, alone: bool = False) -> Optional[int]:
        if alone:  # nothing else runs: the whole machine
            return None if self.running.stopped else run_logged(command(), log, running=self.running)
        slot = self._free.get()
        try:
            if self.running.stopped:
                return None
            return run_logged(command(), log, slot.env, slot.cpus, self.running)
        finally:
            self._free.put(slot)

    def stop(self) -> None:
        """Start no more runs; the running ones stop at their next iteration, with a checkpoint."""
        self.running.stop()

    def describe(self) -> List[str]:
        return [slot.describe() for slot in self.slots]


@dataclass(frozen=True)
class SubmititRun:
    """A run as a submitit job. Checkpointable: when Slurm preempts the job or its time runs out,
    submitit requeues it (its run stops at a checkpoint, see ``run_logged``), and the requeued
    job's command, decided when it starts, resumes the run."""

    command: Command
    log: str

    def __call__(self) -> int:
        return run_logged(self.command(), self.log)

    def checkpoint(self, *args, **kwargs):
        import submitit

        return submitit.helpers.DelayedSubmission(self)


class SubmititLauncher:
    """Runs each command as a job of submitit's executor: Slurm, or submitit's local one."""

    def __init__(self, folder: str, cluster: str, parameters: Mapping[str, object]):
        import submitit

        self.executor = submitit.AutoExecutor(folder=folder, cluster=cluster)
        self.parameters = dict(parameters)
        try:
            self.executor.update_parameters(**self.parameters)
        except (TypeError, ValueError) as err:
            raise ValueError(f"submitit rejects the job parameters {self.parameters}: {error_line(err)}") from None
        self.jobs: Set = set()
        self.stopped = False

    def __call__(self, command: Command, log: str, alone: bool = False) -> Optional[int]:
        if self.stopped:
            return None
        job = self.executor.submit(SubmititRun(command, log))
        self.jobs.add(job)
        try:
            return job.result()
        except Exception as err:  # the job itself failed (killed, timed out, node lost), or was cancelled
            with open(log, "a") as f:
                f.write(f"submitit job {job.job_id} {'cancelled' if self.stopped else 'failed'}: {error_line(err)}\n")
            return None if self.stopped else -1
        finally:
            self.jobs.discard(job)

    def stop(self) -> None:
        """Submit no more jobs; cancel the submitted ones (Slurm's SIGTERM: their runs stop at a checkpoint)."""
        self.stopped = True
        for job in list(self.jobs):
            job.cancel(check=False)

    def describe(self) -> List[str]:
        return [f"submitit {self.executor.cluster} executor, {self.parameters}"]


def make_launcher(name: str, jobs: int, devices: int, folder: str, parameters: Mapping[str, object]):
    """The launcher ``name`` (one of ``LAUNCHERS``) for at most ``jobs`` runs at once."""
    if name == "local":
        import torch

        gpus = visible_gpus(torch.cuda.device_count()) if torch.cuda.is_available() else []
        return LocalLauncher(local_slots(jobs, devices, gpus, sorted(os.sched_getaffinity(0))))
    if name in ("slurm", "submitit-local"):
        return SubmititLauncher(folder, "slurm" if name == "slurm" else "local", parameters)
    raise ValueError(f"unknown launcher {name!r}; allowed: {LAUNCHERS}")

"""Where the ablation's training runs execute: here (at most N at once, each on its own cores or
GPUs) or as Slurm jobs through submitit (its local executor runs them here)."""

import os
import queue
import shlex
import subprocess
from dataclasses import dataclass, field
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

from ..preflight import error_line

LAUNCHERS = ("local", "slurm", "submitit-local")


def run_logged(cmd: Sequence[str], log: str, env: Optional[Mapping[str, str]] = None,
               cpus: Sequence[int] = ()) -> int:
    """Run ``cmd``, its output appended to ``log`` after a ``$ cmd`` line, with ``env`` added to the
    environment and pinned to ``cpus`` (all allowed ones if empty); its exit status."""
    os.makedirs(os.path.dirname(log) or ".", exist_ok=True)
    with open(log, "a") as f:
        f.write(f"$ {shlex.join(cmd)}\n")
        f.flush()
        pin = (lambda: os.sched_setaffinity(0, cpus)) if cpus else None
        return subprocess.call(list(cmd), stdout=f, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})},
                               preexec_fn=pin)


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


class LocalLauncher:
    """Runs each command in a free slot, so that runs started together never share cores or GPUs."""

    def __init__(self, slots: Sequence[Slot]):
        self.slots = list(slots)
        self._free: "queue.Queue[Slot]" = queue.Queue()
        for slot in self.slots:
            self._free.put(slot)

    def __call__(self, cmd: Sequence[str], log: str, alone: bool = False) -> int:
        if alone:  # nothing else runs: the whole machine
            return run_logged(cmd, log)
        slot = self._free.get()
        try:
            return run_logged(cmd, log, slot.env, slot.cpus)
        finally:
            self._free.put(slot)

    def describe(self) -> List[str]:
        return [slot.describe() for slot in self.slots]


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

    def __call__(self, cmd: Sequence[str], log: str, alone: bool = False) -> int:
        job = self.executor.submit(run_logged, list(cmd), log)
        try:
            return job.result()
        except Exception as err:  # the job itself failed (killed, timed out, node lost)
            with open(log, "a") as f:
                f.write(f"submitit job {job.job_id} failed: {error_line(err)}\n")
            return -1

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

"""How many threads a CPU training uses, on a machine it may share with other processes.

torch gives each process one OpenMP thread per core. Every parallel operator ends at a barrier
where its threads wait for one another; when another process keeps a core busy, the scheduler
parks one of them for a whole time slice at every barrier, and a YOLOX-nano step, made of
thousands of small operators, slows many times over (docs/benchmarks.md#a-shared-cpu measures
it). One thread has no barrier to wait at.

So the CPU trainers take as many threads as there are cores that other processes leave idle:
measured over the last ``CHECK_SECONDS`` from ``/proc/stat`` (the cores this process may run
on, less what this process and its data workers used), checked again at every optimizer step
that comes ``CHECK_SECONDS`` or more after the last check. A seeded run takes torch's default
instead: another thread count sums in another order, and a seeded run must repeat bit for bit,
also when it is resumed under another load than it started with.

``YOLOX_ATTN_THREADS`` overrides it: a number fixes the threads, ``torch`` keeps torch's
default; an ``OMP_NUM_THREADS`` already set is kept as well.
"""

import os
import time
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Tuple

import psutil
import torch
from loguru import logger
from torch.optim.optimizer import register_optimizer_step_pre_hook

from .preflight import UsageError

__all__ = ["ENV", "CHECK_SECONDS", "LoadSample", "ThreadPolicy", "start_thread_policy", "threads_for"]

ENV = "YOLOX_ATTN_THREADS"
# Short enough that a training already running sees a new neighbour while that neighbour is still
# starting up (imports, model, data: several seconds of one core) and drops a thread before the
# two trainings' iterations meet; with 5 s the first one paid one iteration of 7.6-11.5 s, 25-40x its length
# (docs/benchmarks.md#a-shared-cpu). A check costs about 1 ms.
CHECK_SECONDS = 2.0
# Other processes' use of the cores, in cores, above which a core counts as taken: a shell, an
# editor or a logger (a few hundredths) leave it free, a training at one thread takes it.
TAKEN = 0.65


def _cpu_ticks(cpus: List[int]) -> Optional[int]:
    """Busy clock ticks (all but idle and iowait) of ``cpus`` since boot, from /proc/stat; None
    where it cannot be read (not Linux)."""
    try:
        with open("/proc/stat") as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    wanted = {f"cpu{c}" for c in cpus}
    busy = 0
    for line in lines:
        name, *values = line.split()
        if name in wanted:
            ticks = [int(v) for v in values]
            busy += sum(ticks[:3]) + sum(ticks[5:8])  # user nice system | irq softirq steal (not idle, iowait)
    return busy


def _own_seconds() -> float:
    """CPU seconds of this process and its live children (the data loader's workers)."""
    me = psutil.Process()
    total = sum(me.cpu_times()[:4])  # user, system, and children that ended
    for child in me.children(recursive=True):
        try:
            total += sum(child.cpu_times()[:2])
        except psutil.Error:  # it ended in between
            pass
    return total


@dataclass
class LoadSample:
    """One reading of the cores' busy time, this process's CPU time and the clock."""

    busy_ticks: int
    own_seconds: float
    wall: float

    @classmethod
    def now(cls, cpus: List[int]) -> Optional["LoadSample"]:
        ticks = _cpu_ticks(cpus)
        return None if ticks is None else cls(ticks, _own_seconds(), time.monotonic())

    def others_since(self, earlier: "LoadSample") -> float:
        """Cores other processes kept busy between ``earlier`` and this sample."""
        seconds = max(self.wall - earlier.wall, 1e-6)
        busy = (self.busy_ticks - earlier.busy_ticks) / os.sysconf("SC_CLK_TCK") / seconds
        return max(0.0, busy - (self.own_seconds - earlier.own_seconds) / seconds)


def threads_for(cores: int, others: float, most: int) -> int:
    """The cores others leave free (one they use less than ``TAKEN`` of counts as free), from 1 to ``most``."""
    taken = int(others + (1 - TAKEN))  # whole cores, a core counting once others use more than TAKEN of it
    return max(1, min(most, cores - taken))


class ThreadPolicy:
    """Sets torch's threads from the load now, and again at optimizer steps."""

    def __init__(self, cpus: List[int], interval: float = CHECK_SECONDS,
                 sample: Optional[Callable[[List[int]], Optional[LoadSample]]] = None):
        self.cpus, self.interval = cpus, interval
        self.sample = sample or LoadSample.now
        self.most = torch.get_num_threads()
        self.last = self.sample(cpus)
        self.handle = None

    def choose(self) -> Tuple[int, float]:
        """(threads, cores other processes used since the last sample), and a new sample."""
        now = self.sample(self.cpus)
        others = now.others_since(self.last) if now is not None and self.last is not None else 0.0
        self.last = now
        return threads_for(len(self.cpus), others, self.most), others

    def start(self, settle: float = 0.25) -> str:
        """Set the first count from a ``settle``-second look at the load; return why, for the log."""
        time.sleep(settle)
        threads, others = self.choose()
        torch.set_num_threads(threads)
        # The trainer builds its optimizer later: the first step that any optimizer takes hands the
        # check over to that optimizer's own hook, which lives as long as it does.
        self.handle = register_optimizer_step_pre_hook(self._attach)
        return (f"other processes used {others:.2f} of the {len(self.cpus)} cores it may run on; at most "
                f"{self.most} (torch's default); checked again every {self.interval:g} s")

    def _attach(self, optimizer, args, kwargs) -> None:
        self.handle.remove()
        self.handle = optimizer.register_step_pre_hook(self._step)
        self._step(optimizer, args, kwargs)

    def _step(self, optimizer, args, kwargs) -> None:
        # An optimizer step runs on the training's own thread, whose OpenMP thread count is the one
        # torch.set_num_threads sets (it is per thread).
        if self.last is not None and time.monotonic() - self.last.wall < self.interval:
            return
        before = torch.get_num_threads()
        threads, others = self.choose()
        if threads != before:
            torch.set_num_threads(threads)
            logger.info(f"CPU threads {before} -> {threads}: other processes used {others:.2f} of "
                        f"{len(self.cpus)} cores in the last {self.interval:g} s")

    def stop(self) -> None:
        if self.handle is not None:
            self.handle.remove()
            self.handle = None


def _fixed(value: str) -> int:
    try:
        threads = int(value)
    except ValueError:
        threads = 0
    if threads < 1:
        raise UsageError(f"{ENV}={value!r}: allowed: a number of threads >= 1, 'torch' (torch's default) "
                         "or 'auto' (the default: the cores other processes leave free)")
    return threads


def start_thread_policy(device, seeded: bool, environ: Optional[Dict[str, str]] = None) -> Optional[ThreadPolicy]:
    """Choose the threads of a training on ``device`` (nothing to do but on the CPU), log how many and
    why in one line, and return the policy that follows the load, if any (see the module's docstring)."""
    if str(device) != "cpu":
        return None
    environ = os.environ if environ is None else environ
    value = environ.get(ENV, "auto").strip().lower()
    if value == "auto" and environ.get("OMP_NUM_THREADS"):
        logger.info(f"CPU training with {torch.get_num_threads()} threads: OMP_NUM_THREADS="
                    f"{environ['OMP_NUM_THREADS']} is set")
        return None
    if value == "torch":
        logger.info(f"CPU training with {torch.get_num_threads()} threads: torch's default ({ENV}=torch)")
        return None
    if value != "auto":
        torch.set_num_threads(_fixed(value))
        logger.info(f"CPU training with {torch.get_num_threads()} threads: {ENV}={value}")
        return None
    if seeded:
        logger.info(f"CPU training with {torch.get_num_threads()} threads: torch's default, whatever the load, so "
                    f"that this seeded run repeats bit for bit, resumed or not; on a shared machine {ENV}=1 "
                    "runs it faster, as the same value repeats it")
        return None
    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else list(range(os.cpu_count() or 1))
    policy = ThreadPolicy(cpus)
    if policy.last is None:
        logger.info(f"CPU training with {torch.get_num_threads()} threads: torch's default (/proc/stat, which "
                    "shows the load of other processes, cannot be read here)")
        return None
    why = policy.start()
    logger.info(f"CPU training with {torch.get_num_threads()} threads: {why} ({ENV}=N fixes it)")
    return policy

"""Stopping a training run cleanly on a signal, and all of its ranks when one fails.

``StopSignals`` turns SIGINT, SIGTERM (a cluster's preemption) and SIGUSR1/SIGUSR2 (Slurm's
``--signal`` warning before the time limit; submitit's is SIGUSR2) into a request that the
trainer honours after its current iteration; a second SIGINT stops at once. Under DDP the ranks
agree each iteration, so all stop at the same one. DataLoader workers ignore these signals
(``IgnoreStopSignals``): a terminal's Ctrl-C and Slurm's signals reach them too, and a worker that
died would end the iteration the trainer is finishing.

``RankWatchdog`` makes a DDP rank that fails take the others down within seconds: the failing
rank writes its error to the process group's store, and every rank's watchdog thread, polling
it, ends its process with one line naming the rank and the error. A rank that dies without a
word (SIGKILL) is noticed by its heartbeat going still, or by the store vanishing with rank 0.
"""

import atexit
import multiprocessing
import os
import signal
import sys
import threading
import time
from typing import Callable, Dict, Optional

import torch
import torch.distributed as dist
from loguru import logger

STOP_SIGNALS = tuple(getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGUSR1", "SIGUSR2")
                     if hasattr(signal, name))


def signal_name(signum: int) -> str:
    return signal.Signals(signum).name


class StopSignals:
    """While in its ``with`` block (in the main thread), the stop signals set ``requested``
    instead of ending the process; a second SIGINT raises KeyboardInterrupt. At the first one,
    ``notice(signum)`` is written to stderr and ``on_stop(signum)`` called, if given."""

    def __init__(self, notice: Optional[Callable[[int], str]] = None,
                 on_stop: Optional[Callable[[int], None]] = None):
        self.requested = 0  # the first stop signal's number, 0 for none
        self._notice, self._on_stop = notice, on_stop
        self._previous: Dict[int, object] = {}

    def __enter__(self) -> "StopSignals":
        if threading.current_thread() is threading.main_thread():
            for signum in STOP_SIGNALS:
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()

    def _handle(self, signum: int, frame) -> None:
        if self.requested and signum == signal.SIGINT:
            raise KeyboardInterrupt
        if not self.requested:
            self.requested = signum
            if self._notice is not None:
                # straight to the terminal: a logging call here could deadlock on its own lock
                os.write(2, (self._notice(signum) + "\n").encode())
            if self._on_stop is not None:
                self._on_stop(signum)

    def agreed(self) -> int:
        """The stop signal of any rank (0: none); every rank must call it at the same point."""
        if not (dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
            return self.requested
        device = "cuda" if dist.get_backend() == "nccl" else "cpu"
        flag = torch.tensor([self.requested], dtype=torch.int32, device=device)
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        return int(flag.item())


_exiting = None  # this process's "I am exiting" flag, shared with its DataLoader workers


def _exiting_flag():
    global _exiting
    if _exiting is None:
        _exiting = multiprocessing.RawValue("b", 0)
        owner = os.getpid()

        def mark() -> None:
            if os.getpid() == owner:
                _exiting.value = 1

        # Registered after multiprocessing's own exit function, so it runs before it: by the time
        # that one terminates the daemonic workers with SIGTERM, they know to go.
        atexit.register(mark)
    return _exiting


class IgnoreStopSignals:
    """A DataLoader ``worker_init_fn``: the worker ignores the stop signals, which reach it with
    its trainer's (a terminal's Ctrl-C, Slurm's signals to every process of a job), then runs
    ``init``. Only when its trainer is exiting does it end on SIGTERM, as multiprocessing asks."""

    def __init__(self, init: Optional[Callable[[int], None]] = None):
        self.init = init
        self.parent_exiting = _exiting_flag()

    def __call__(self, worker_id: int) -> None:
        for signum in STOP_SIGNALS:
            signal.signal(signum, self._on_signal)
        if self.init is not None:
            self.init(worker_id)

    def _on_signal(self, signum: int, frame) -> None:
        if signum == signal.SIGTERM and self.parent_exiting.value:
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)


PREFIX = "yolox_attn/"


class RankWatchdog:
    """A thread that ends this DDP rank's process when another rank has failed (``report``) or
    gone silent for ``silence`` seconds. Uses the default process group's store."""

    def __init__(self, rank: int, world_size: int, interval: float = 0.5, silence: float = 120.0,
                 on_failure: Optional[Callable[[str], None]] = None):
        self.rank, self.world_size, self.interval, self.silence = rank, world_size, interval, silence
        self._on_failure = on_failure or self._exit
        self._store = dist.distributed_c10d._get_default_store()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="rank-watchdog", daemon=True)
        self._beat()
        self._thread.start()

    def _beat(self) -> int:
        return self._store.add(f"{PREFIX}beat/{self.rank}", 1)

    def report(self, message: str, wait: float = 5.0) -> None:
        """Tell the other ranks that this one failed (``message``), and give them ``wait`` seconds
        to read it (rank 0 holds the store; it goes when this process does)."""
        self._stop.set()
        try:
            if not self._store.check([f"{PREFIX}failed"]):
                self._store.set(f"{PREFIX}failed", message)
            deadline = time.time() + wait
            while time.time() < deadline and self._store.add(f"{PREFIX}seen", 0) < self.world_size - 1:
                time.sleep(0.05)
        except Exception:  # noqa: BLE001 - the store may already be gone with rank 0; nothing more to do
            pass

    def close(self) -> None:
        """Stop watching (before the ranks part normally)."""
        self._stop.set()
        if self._thread is not threading.current_thread():
            self._thread.join()

    def _watch(self) -> None:
        seen: Dict[int, tuple] = {}
        checked = 0.0
        while not self._stop.wait(self.interval):
            try:
                self._beat()
                if self._store.check([f"{PREFIX}failed"]):
                    message = self._store.get(f"{PREFIX}failed").decode()
                    self._store.add(f"{PREFIX}seen", 1)
                    return self._failed(message)
                now = time.time()
                if now - checked < self.silence / 12:  # the others' heartbeats, less often: N^2 reads
                    continue
                checked = now
                for other in range(self.world_size):
                    if other == self.rank:
                        continue
                    count = self._store.add(f"{PREFIX}beat/{other}", 0)
                    if seen.get(other, (None,))[0] != count:
                        seen[other] = (count, now)
                    elif now - seen[other][1] > self.silence:
                        return self._failed(f"rank {other} stopped responding ({self.silence:.0f} s without a "
                                            f"heartbeat: killed, or its machine lost?)")
            except Exception as err:  # noqa: BLE001 - the store went away: rank 0 ended without us
                if self._stop.is_set():
                    return
                return self._failed(f"lost the process group's store, which rank 0 (or the launcher) holds: it "
                                    f"ended or failed ({type(err).__name__}); see its log")

    def _failed(self, message: str) -> None:
        if not self._stop.is_set():
            self._on_failure(message)

    def _exit(self, message: str) -> None:
        # The main thread may be blocked inside a collective that will never complete: end the
        # process from here, after the one line.
        line = f"training stopped on rank {self.rank}: {message}"
        logger.debug(line)  # the log file (rank 0's), synchronously
        sys.stderr.flush()
        os.write(2, (line + "\n").encode())
        os._exit(1)

"""The ablation's runs: the grid, each run's YOLOX train-tool command, and what a finished run says.

Each run is one ``python -m yolox.tools.train`` process with its own folder ``<output_dir>/<name>``,
where the trainer writes ``metrics.jsonl``, and its own log ``<output_dir>/logs/<name>.log``. A
run whose end record is there is done and skipped; one with a ``latest_ckpt.pth`` but no end
record is resumed (from the iteration where it stopped: the same run as an uninterrupted one);
the rest start. These rules hold whatever launches the runs, and are applied when a run starts,
so a Slurm job requeued after preemption resumes its run too.
"""

import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from typing import Callable, Dict, List, Mapping, Optional, Sequence, Tuple

from ..attention import ResidualGate
from ..monitor import read_jsonl
from ..trainer import METRICS_FILE
from .stats import BASELINE

# Set per run by the tool; not accepted among the user's exp options.
RESERVED_OPTS = ("attention", "seed", "data_seed", "output_dir", "attention_identity_init")


@dataclass(frozen=True)
class Run:
    attention: str
    seed: int
    identity_init: Optional[bool] = None  # None: the exp's own setting
    pretrain_epochs: Optional[int] = None  # set: the plain-YOLOX run the grid fine-tunes from
    data_seed: Optional[int] = None  # None: the data follows ``seed``

    @property
    def pair(self):
        """What runs compared with each other share: the seed, and the data seed if it is an axis."""
        return self.seed if self.data_seed is None else (self.seed, self.data_seed)

    @property
    def group(self) -> str:
        """The row of the summary: the attention, with its init where that is a grid axis."""
        if self.pretrain_epochs is not None:
            return "pretraining"
        if self.identity_init is None:
            return self.attention
        return f"{self.attention} ({'gated' if self.identity_init else 'paper'})"

    @property
    def name(self) -> str:
        if self.pretrain_epochs is not None:
            return f"pretrain_{self.attention}_e{self.pretrain_epochs}_seed{self.seed}"
        init = "" if self.identity_init is None else ("_gated" if self.identity_init else "_paper")
        data = "" if self.data_seed is None else f"_data{self.data_seed}"
        return f"{self.attention}{init}_seed{self.seed}{data}"


def is_gated(attention: str) -> bool:
    """Whether ``attention_identity_init`` changes this attention (it gets a residual gate)."""
    from ..neck import build_level_attention

    return attention != BASELINE and isinstance(build_level_attention(attention, 64, identity_init=True), ResidualGate)


def plan_runs(attentions: Sequence[str], seeds: Sequence[int], inits: Optional[Sequence[bool]],
              data_seeds: Optional[Sequence[int]] = None) -> List[Run]:
    """The grid in run order: seed-major, so a partial ablation already compares every attention.

    ``data_seeds`` makes the data seed an axis of its own (``seed`` then sets the initial weights
    only), to split the spread between initial weights and data."""
    init_axis = list(dict.fromkeys(inits)) if inits else [None]
    data_axis = list(dict.fromkeys(data_seeds)) if data_seeds else [None]
    return [Run(a, s, i, data_seed=d) for s in dict.fromkeys(seeds) for d in data_axis
            for a in dict.fromkeys(attentions)
            # the init axis changes only gated attentions: the others run once per seed
            for i in (init_axis if is_gated(a) else [None])]


def as_opts(options: Mapping[str, object]) -> List[str]:
    """Exp attributes as YOLOX ``opts``: ``key value`` pairs, values as Python literals."""
    return [token for key, value in options.items() for token in (key, value if isinstance(value, str) else repr(value))]


@dataclass(frozen=True)
class Grid:
    """What every run of one ablation shares."""

    exp_file: str
    output_dir: str
    batch_size: int = 8
    devices: int = 1
    fp16: bool = False
    opts: Tuple[str, ...] = ()  # the user's exp options, for every run
    checkpoint: Optional[str] = None  # the grid's runs continue from it (-c)
    finetune_opts: Tuple[str, ...] = ()  # the exp's fine-tuning schedule, before the user's opts

    def command(self, run: Run, resume: bool) -> List[str]:
        cmd = [sys.executable, "-m", "yolox.tools.train", "-f", self.exp_file, "-d", str(self.devices),
               "-b", str(self.batch_size), "-expn", run.name]
        cmd += ["--fp16"] * self.fp16 + ["--resume"] * resume
        finetune = run.pretrain_epochs is None and self.checkpoint is not None
        if finetune and not resume:  # a resumed run continues from its own latest checkpoint
            cmd += ["-c", self.checkpoint]
        cmd += ["attention", run.attention, "seed", str(run.seed), "output_dir", self.output_dir]
        if run.identity_init is not None:
            cmd += ["attention_identity_init", str(run.identity_init)]
        if run.data_seed is not None:
            cmd += ["data_seed", str(run.data_seed)]
        if run.pretrain_epochs is not None:
            return cmd + list(self.opts) + ["max_epoch", str(run.pretrain_epochs)]
        return cmd + (list(self.finetune_opts) if finetune else []) + list(self.opts)

    def latest(self, run: Run) -> str:
        return os.path.join(self.folder(run), "latest_ckpt.pth")

    def folder(self, run: Run) -> str:
        return os.path.join(self.output_dir, run.name)

    def log(self, run: Run) -> str:
        return os.path.join(self.output_dir, "logs", f"{run.name}.log")


def _last_line(path: str) -> str:
    try:
        with open(path, errors="replace") as f:
            lines = [line.strip() for line in f if line.strip()]
    except OSError:
        return ""
    return lines[-1] if lines else ""


_CONDITION_SKIP = ("event", "epoch", "wall_seconds", "train_seconds")


@dataclass(frozen=True)
class RunCommand:
    """A run's train-tool command, decided when called: ``--resume`` if the run has a checkpoint."""

    grid: Grid
    run: Run

    def __call__(self) -> List[str]:
        return self.grid.command(self.run, resume=os.path.isfile(self.grid.latest(self.run)))


def run_record(grid: Grid, run: Run, returncode: Optional[int]) -> Dict:
    """What a run's metrics say: "done" (its end record is there), "stopped" (a signal stopped it
    at a checkpoint: a rerun resumes it), "failed" (its process ended without either) or
    "unfinished" (``returncode`` None: no process of this call ran it)."""
    records = read_jsonl(os.path.join(grid.folder(run), METRICS_FILE))
    evals = [{k: r.get(k) for k in ("epoch", "metric", "ap50", "ap", "wall_seconds", "train_seconds", "loss")}
             for r in records if r["event"] == "eval"]
    starts = [r for r in records if r["event"] == "start"]
    end = next((r for r in reversed(records) if r["event"] == "end"), None)
    log = grid.log(run)
    done = end is not None and returncode in (0, None) and bool(evals)
    stopped = bool(records) and records[-1]["event"] == "stop"
    status = "done" if done else "stopped" if stopped else "unfinished" if returncode is None else "failed"
    record = {"name": run.name, "attention": run.attention, "group": run.group, "seed": run.seed,
              "data_seed": run.data_seed, "pair": run.pair, "identity_init": run.identity_init, "status": status, "returncode": returncode, "log": log,
              # what was seeded, the checkpoint, device and threads, as the trainer recorded them
              "conditions": {k: v for k, v in starts[0].items() if k not in _CONDITION_SKIP} if starts else None,
              "resumed": max(len(starts) - 1, 0), "evals": evals,
              "final_ap50": evals[-1]["ap50"] if evals else None,
              "final_ap": evals[-1]["ap"] if evals else None,
              "final_epoch": evals[-1]["epoch"] if evals else None,
              "train_seconds": end["train_seconds"] if end else None,
              "wall_seconds": end["wall_seconds"] if end else None,
              "seconds_per_iter": end["seconds_per_iter"] if end else None,
              "scalars": end["scalars"] if end else {}}
    if not done:
        record["error"] = _last_line(log) or "no log"
    return record


Launcher = Callable[..., Optional[int]]  # (command, log, alone=False) -> exit status (None: not started)


def execute(grid: Grid, run: Run, launch: Launcher, alone: bool = False) -> Dict:
    """Run (or skip, or resume) one training; return its record."""
    previous = run_record(grid, run, None)
    if previous["status"] == "done":
        return previous
    return run_record(grid, run, launch(RunCommand(grid, run), grid.log(run), alone=alone))


def _timed_execute(grid: Grid, run: Run, launch: Launcher):
    start = time.time()
    record = execute(grid, run, launch)
    return record, time.time() - start


def run_grid(grid: Grid, runs: Sequence[Run], launch: Launcher, jobs: int,
             on_done: Callable[[int, Run, Dict, float, List[Dict]], None]) -> List[Dict]:
    """Every run through ``launch``, at most ``jobs`` at once, started in plan order. As each ends,
    ``on_done(index, run, record, seconds, records so far in plan order)``, from this thread."""
    finished: Dict[int, Dict] = {}
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        futures = {pool.submit(_timed_execute, grid, run, launch): i for i, run in enumerate(runs)}
        for future in as_completed(futures):
            i = futures[future]
            record, seconds = future.result()
            finished[i] = record
            on_done(i, runs[i], record, seconds, [finished[k] for k in sorted(finished)])
    return [finished[i] for i in range(len(runs))]

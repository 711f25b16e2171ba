"""A short CPU training's seconds per iteration, idle and beside other YOLOX trainings, under each
thread policy, measured side by side in one run (docs/benchmarks.md#a-shared-cpu).

    .venv/bin/python scripts/shared_cpu.py [--policies torch,omp1,passive,auto] [--beside 0,1,2]

Each cell is one measured training (``python -m yolox.tools.train``, the CA shapes exp, batch 8,
one input size, 256 px, since multi-scale sizes differ in cost, ``--epochs`` epochs of ``--train``
generated images) started once its neighbours (the same training with a long schedule and torch's
default threads; ``--neighbour`` gives them another policy) are all in their first epoch; the
neighbours are stopped after it. The cell is the median of its ``iter_time`` lines (YOLOX's log,
one per iteration), leaving out each epoch's first iteration; the neighbours' median over the
iterations they logged meanwhile goes beside it. ``--repeat N`` measures every cell N times,
interleaved, and the table gives the medians. Policies (environment of the measured run only):

    torch    torch's default: one thread per core (YOLOX_ATTN_THREADS=torch)
    omp1     OMP_NUM_THREADS=1
    passive  torch's default threads, OMP_WAIT_POLICY=PASSIVE (waiting threads sleep at once)
    auto     the trainers' default: the cores other processes leave free, rechecked every 2 s
    auto+passive, omp1+passive   both
"""

import argparse
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Dict, List

ROOT = Path(__file__).resolve().parents[1]
EXP = ROOT / "exps" / "example" / "yolox_nano_cam_shapes.py"
POLICIES: Dict[str, Dict[str, str]] = {
    "torch": {"YOLOX_ATTN_THREADS": "torch"},
    "omp1": {"OMP_NUM_THREADS": "1"},
    "passive": {"YOLOX_ATTN_THREADS": "torch", "OMP_WAIT_POLICY": "PASSIVE"},
    "auto": {"YOLOX_ATTN_THREADS": "auto"},
    "auto+passive": {"YOLOX_ATTN_THREADS": "auto", "OMP_WAIT_POLICY": "PASSIVE"},
    "omp1+passive": {"OMP_NUM_THREADS": "1", "OMP_WAIT_POLICY": "PASSIVE"},
}
ITER_TIME = re.compile(r"^(\S+ \S+) .*?epoch: (\d+)/\d+, iter: (\d+)/\d+.*?iter_time: ([0-9.]+)s", re.M)
EXP_NAME = "yolox_nano_cam_shapes"


def env_for(policy: Dict[str, str]) -> Dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OMP_WAIT_POLICY",
                                                              "YOLOX_ATTN_THREADS")}
    env.update(policy, PYTHONPATH=str(ROOT))
    return env


def train_cmd(data: Path, out: Path, epochs: int, print_interval: int) -> List[str]:
    return [sys.executable, "-m", "yolox.tools.train", "-f", str(EXP), "-d", "1", "-b", "8", "data_dir", str(data),
            "output_dir", str(out), "max_epoch", str(epochs), "print_interval", str(print_interval),
            "eval_interval", "1000", "no_aug_epochs", "0", "random_size", "(8,8)"]


def wait_for(log: Path, text: str, timeout: float = 300.0) -> None:
    end = time.time() + timeout
    while time.time() < end:
        if log.is_file() and text in log.read_text(errors="replace"):
            return
        time.sleep(1.0)
    raise SystemExit(f"no {text!r} in {log} after {timeout:.0f} s")


def load_average() -> float:
    with open("/proc/loadavg") as f:
        return float(f.read().split()[0])


def iterations(log: str) -> List[tuple]:
    """(time logged, seconds) of each iteration in a YOLOX training log but each epoch's first."""
    return [(datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S.%f"), float(t))
            for stamp, epoch, it, t in ITER_TIME.findall(log) if int(it) > 1]


def measure(policy: str, beside: int, data: Path, work: Path, epochs: int, neighbour: str, repeat: int) -> Dict:
    cell = work / f"{policy}_beside{beside}_{neighbour}_{repeat}"
    neighbours = []
    try:
        for i in range(beside):
            out = cell / f"neighbour{i}"
            neighbours.append(subprocess.Popen(train_cmd(data, out, 1000, 1), cwd=work, env=env_for(POLICIES[neighbour]),
                                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                               start_new_session=True))
            wait_for(out / EXP_NAME / "train_log.txt", "start train epoch1")
        time.sleep(5.0 if beside else 0.0)  # past their first iterations' allocations
        start = time.time()
        proc = subprocess.run(train_cmd(data, cell / "measured", epochs, 1), cwd=work, env=env_for(POLICIES[policy]),
                              capture_output=True, text=True)
        wall = time.time() - start
    finally:
        for p in neighbours:  # the neighbours this call started, each in its own session
            os.killpg(p.pid, signal.SIGTERM)
            p.wait()
    log = (cell / "measured" / EXP_NAME / "train_log.txt").read_text(errors="replace")
    if proc.returncode != 0 or "Training of experiment is done" not in log:
        raise SystemExit(f"{policy} beside {beside}: training failed (exit {proc.returncode}); see {cell}")
    measured = iterations(log)
    window = (measured[0][0] - timedelta(seconds=measured[0][1]), measured[-1][0])
    # the neighbours' iterations whose middle falls while the measured training iterated
    beside_times = [t for i in range(beside)
                    for stamp, t in iterations((cell / f"neighbour{i}" / EXP_NAME / "train_log.txt").read_text(errors="replace"))
                    if window[0] <= stamp - timedelta(seconds=t / 2) <= window[1]]
    threads = re.search(r"CPU training with (\d+) threads[^\n]*", log)
    return {"policy": policy, "beside": beside, "neighbour": neighbour, "repeat": repeat,
            "seconds_per_iter": statistics.median(t for _, t in measured), "iterations": len(measured),
            "neighbours_seconds_per_iter": statistics.median(beside_times) if beside_times else None,
            "neighbour_iterations": len(beside_times), "wall_seconds": round(wall, 1), "load_after": load_average(),
            "start": threads.group(0) if threads else "", "changes": re.findall(r"CPU threads \d+ -> \d+", log)}


def medians(rows: List[Dict], key: str) -> Dict[tuple, float]:
    """(policy, beside) -> the median over repeats of ``key``."""
    cells: Dict[tuple, List[float]] = {}
    for r in rows:
        if r[key] is not None:
            cells.setdefault((r["policy"], r["beside"]), []).append(r[key])
    return {cell: statistics.median(values) for cell, values in cells.items()}


def table(rows: List[Dict], beside: List[int], key: str, idle: Dict[str, float]) -> str:
    """One line per policy: the median of ``key`` idle and beside each load, with its ratio to ``idle[policy]``."""
    cells = medians(rows, key)
    lines = ["| policy | " + " | ".join("idle s/it" if b == 0 else f"beside {b} s/it (x idle)" for b in beside) + " |",
             "|---" * (len(beside) + 1) + "|"]
    for policy in dict.fromkeys(r["policy"] for r in rows):
        text = []
        for b in beside:
            value, base = cells.get((policy, b)), idle.get(policy)
            text.append("-" if value is None else f"{value:.3f}" + (f" ({value / base:.2f}x)" if base and b else ""))
        lines.append(f"| {policy} | " + " | ".join(text) + " |")
    return "\n".join(lines)


def policy_cost(repeats: int = 200) -> str:
    """What the auto policy itself costs a training: one load check (every ``CHECK_SECONDS``) and one
    optimizer step's hook between checks, timed here in this process."""
    import torch
    from yolox_attn.threads import CHECK_SECONDS, ThreadPolicy

    cpus = sorted(os.sched_getaffinity(0))
    policy = ThreadPolicy(cpus)
    start = time.perf_counter()
    for _ in range(repeats):
        policy.choose()
    check = (time.perf_counter() - start) / repeats

    def seconds_per_step(optimizer) -> float:
        start = time.perf_counter()
        for _ in range(repeats):
            optimizer.step()
        return (time.perf_counter() - start) / repeats

    policy.start(settle=0.0)  # its hook goes to the first optimizer that steps
    hooked = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)
    hooked.step()
    plain = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)
    policy.choose()  # a check just happened: the steps below find none due
    step = seconds_per_step(hooked) - seconds_per_step(plain)
    policy.stop()
    return (f"the auto policy's own cost: a load check {check * 1e3:.2f} ms every {CHECK_SECONDS:g} s "
            f"({check / CHECK_SECONDS:.2%} of the time), an optimizer step's hook between checks {step * 1e6:.1f} us")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--policies", default="torch,omp1,passive,auto", help=f"comma-separated, of {', '.join(POLICIES)}")
    p.add_argument("--beside", default="0,1,2", help="numbers of neighbour trainings, comma-separated")
    p.add_argument("--neighbour", default="torch", help="the neighbours' policy (default torch: another user's "
                   "plain training)")
    p.add_argument("--train", type=int, default=96, help="generated training images (12 iterations an epoch at -b 8)")
    p.add_argument("--epochs", type=int, default=2, help="epochs of the measured training")
    p.add_argument("--work", default="/tmp/shared_cpu", help="data, logs and outputs")
    p.add_argument("--repeat", type=int, default=1, help="measurements of each cell, interleaved (the table gives medians)")
    p.add_argument("--json", default=None, help="also write the rows here")
    args = p.parse_args()
    policies = args.policies.split(",")
    unknown = [x for x in policies + [args.neighbour] if x not in POLICIES]
    if unknown:
        raise SystemExit(f"--policies/--neighbour: unknown {unknown}; allowed: {', '.join(POLICIES)}")
    beside = [int(b) for b in args.beside.split(",")]
    work = Path(args.work).resolve()
    work.mkdir(parents=True, exist_ok=True)
    data = work / "shapes"
    if not (data / "annotations" / "instances_val2017.json").is_file():
        subprocess.run([sys.executable, "-m", "yolox_attn.tools.make_shapes", "--out", str(data), "--train",
                        str(args.train), "--val", "8"], check=True, env=env_for({}), cwd=work)
    print(f"[shared_cpu] {os.cpu_count()} CPUs, load average {load_average()} at the start", file=sys.stderr)
    rows = []
    for repeat in range(args.repeat):  # cells interleaved, so that a drift in the machine hits all alike
        for b in beside:
            for policy in policies:
                row = measure(policy, b, data, work, args.epochs, args.neighbour, repeat)
                print(f"[shared_cpu] {json.dumps(row, default=str)}", file=sys.stderr)
                rows.append(row)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))
    print(f"[shared_cpu] {policy_cost()}", file=sys.stderr)
    idle = {policy: value for (policy, b), value in medians(rows, "seconds_per_iter").items() if b == 0}
    print(f"The measured training (median of {args.repeat} per cell):")
    print(table(rows, beside, "seconds_per_iter", idle))
    loaded = [b for b in beside if b]
    if loaded:
        # the neighbours' own idle speed is the idle cell of their policy, where it was measured
        base = {policy: idle.get(args.neighbour) for policy in policies}
        print(f"\nIts neighbours ({args.neighbour}) meanwhile, x the idle cell of {args.neighbour}:")
        print(table(rows, loaded, "neighbours_seconds_per_iter", base))


if __name__ == "__main__":
    main()

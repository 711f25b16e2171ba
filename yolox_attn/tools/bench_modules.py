"""Side-by-side fwd+bwd time and peak memory of the fast attention modules and the common copies.

    python -m yolox_attn.tools.bench_modules [--shape B C H W] [--threads 2] [--repeats N]
        [--warmup N] [--only acmix|cca ...] [--device auto|cpu|cuda] [--json]

Pairs (same weights, same input):

* ``acmix``: ``yolox_attn.attention.ACmix`` vs ``yolox_attn.baselines.acmix_unfold.UnfoldACmix``;
* ``cca``: ``CrissCrossAttention(recurrence=2)`` vs ``CommonCrissCross(recurrence=2)``, with
  ``gamma`` set to 1 in both (at its init value 0 both are the identity and the comparison of
  outputs would say nothing).

One step is a forward and a backward of ``y.float().sum()`` (to the input and the parameters).
Measured with ``yolox_attn.tools.benchmarking``, as ``tools/bench.py`` and ``tools/bench_ccnet.py`` do:

* time: every case in this process, ``--warmup`` + ``--repeats`` steps round-robin across the
  cases (so a shared machine's drift hits all alike); median [min, max] of the repeats;
* peak memory of one step, each case in a fresh worker process, after building module and input
  and one step on a tiny input. CPU (Linux): peak RSS (VmHWM, reset through /proc/self/clear_refs
  before the step) over the RSS at its start, with freed heap returned to the OS first
  (malloc_trim) and a fixed glibc mmap threshold (large tensors unmapped when freed). CUDA:
  torch.cuda.max_memory_allocated over the memory allocated at its start;
* max abs difference of the output and of the input gradient, fast vs common, from the last
  timed step of each (float32 must agree within ``DIFF_TOLERANCE``).

On CUDA every case is also run in float16 (``.half()``). A case that runs out of memory reports
the error in its row instead of stopping the run.
Progress goes to stderr; the table (or ``--json`` rows, one JSON object per line) to stdout.
"""

import argparse
import json
import os
import sys
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import torch
from torch import nn

from yolox_attn.tools import benchmarking as bm

PAIRS: Tuple[str, ...] = ("acmix", "cca")
# (pair, implementation) -> label; the first implementation of a pair is the fast one.
CASES: List[Tuple[str, str]] = [("acmix", "fast"), ("acmix", "unfold"), ("cca", "fast"), ("cca", "common")]
LABELS: Dict[Tuple[str, str], str] = {
    ("acmix", "fast"): "ACmix (fast)",
    ("acmix", "unfold"): "UnfoldACmix (common)",
    ("cca", "fast"): "CrissCrossAttention R=2 (fast)",
    ("cca", "common"): "CommonCrissCross R=2 (common)",
}
WARM_SIDE = 8  # side of the tiny input stepped before any measurement (thread pools, kernel caches)
WORKER_MODULE = "yolox_attn.tools.bench_modules"  # not __name__, which is "__main__" under -m

# The fast modules must match the common copies this closely (max abs output difference).
DIFF_TOLERANCE: Dict[str, float] = {"float32": 1e-5}

# Every JSON row of a kind has exactly these keys.
CASE_COLUMNS: Tuple[str, ...] = (
    "kind", "label", "pair", "impl", "dtype", "device", "threads", "shape", "load_avg_1min",
    "median_s", "min_s", "max_s", "peak_mib", "error",
)
COMPARE_COLUMNS: Tuple[str, ...] = (
    "kind", "pair", "dtype", "device", "speedup_median", "memory_ratio", "max_abs_diff_out", "tolerance",
    "within_tolerance", "max_abs_diff_grad_x", "error",
)


def build_case(pair: str, impl: str, channels: int, seed: int) -> nn.Module:
    """The module of one case; both implementations of a pair get the same weights (seeded)."""
    torch.manual_seed(seed)
    if pair == "acmix":
        from yolox_attn.attention.acmix import ACmix
        from yolox_attn.baselines.acmix_unfold import UnfoldACmix

        fast = ACmix(channels, channels)
        if impl == "fast":
            return fast
        slow = UnfoldACmix(channels, channels)
        slow.load_state_dict(fast.state_dict(), strict=True)
        return slow
    if pair == "cca":
        from yolox_attn.attention.criss_cross import CrissCrossAttention
        from yolox_attn.baselines.cca_common import CommonCrissCross

        fast = CrissCrossAttention(channels, recurrence=2)
        with torch.no_grad():
            fast.gamma.fill_(1.0)  # nonzero, so that the attention path shows in the output
        if impl == "fast":
            return fast
        slow = CommonCrissCross(channels, recurrence=2)
        slow.load_state_dict(fast.state_dict(), strict=True)
        return slow
    raise ValueError(f"unknown pair {pair!r}")


class Case:
    """Module and input of one (pair, impl, dtype); ``step()`` keeps the last output and input grad."""

    def __init__(self, pair: str, impl: str, dtype: str, args: argparse.Namespace):
        device, torch_dtype = args.device, getattr(torch, dtype)
        self.module = build_case(pair, impl, args.shape[1], args.seed).to(device=device, dtype=torch_dtype)
        gen = torch.Generator().manual_seed(args.seed + 1)
        self.x = torch.randn(*args.shape, generator=gen).to(device=device, dtype=torch_dtype).requires_grad_(True)
        self.small = torch.randn(1, args.shape[1], WARM_SIDE, WARM_SIDE, generator=gen).to(
            device=device, dtype=torch_dtype).requires_grad_(True)
        self.y: Optional[torch.Tensor] = None

    def run(self, x: torch.Tensor) -> torch.Tensor:
        """One forward + backward of ``x``."""
        x.grad = None
        self.module.zero_grad(set_to_none=True)
        y = self.module(x)
        y.float().sum().backward()
        return y

    def step(self) -> None:
        self.y = self.run(self.x).detach()

    def warm(self) -> None:
        self.run(self.small)


# ------------------------------------------------------------------------- arguments
def _pairs(text: str) -> str:
    if text not in PAIRS:
        raise argparse.ArgumentTypeError(f"unknown pair {text!r}; allowed: {', '.join(PAIRS)}")
    return text


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    """Command line; argparse errors name the bad value and what is allowed."""
    p = argparse.ArgumentParser(
        prog="python -m yolox_attn.tools.bench_modules",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--shape", type=bm.int_at_least(1), nargs=4, default=[4, 128, 80, 80],
                   metavar=("B", "C", "H", "W"), help="input shape (default 4 128 80 80)")
    p.add_argument("--threads", type=bm.int_at_least(1), default=2, help="torch.set_num_threads (default 2)")
    p.add_argument("--repeats", type=bm.int_at_least(1), default=3, help="timed steps per case (default 3)")
    p.add_argument("--warmup", type=bm.int_at_least(0), default=1, help="untimed steps per case first (default 1)")
    p.add_argument("--device", default="auto", type=bm.device_arg,
                   help="auto: CUDA (float32 and float16) when available, else CPU (default auto)")
    p.add_argument("--only", type=_pairs, nargs="*", metavar="PAIR",
                   help=f"run only these pairs, from {', '.join(PAIRS)} (default all)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true", help="print JSON rows (one per line) instead of the table")
    # internal: "<pair>:<impl>", peak memory of one case in a worker
    p.add_argument("--worker", choices=[f"{pair}:{impl}" for pair, impl in CASES], help=argparse.SUPPRESS)
    p.add_argument("--dtype", default="float32", choices=("float32", "float16"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    args.pairs = [pair for pair in PAIRS if not args.only or pair in args.only]
    channels = args.shape[1]
    if "cca" in args.pairs and channels < 8:
        p.error(f"--shape: C={channels} is too small for cca: it needs C >= 8 (C/8 query channels)")
    if "acmix" in args.pairs and channels % 4:
        p.error(f"--shape: C={channels} does not suit acmix: it needs C divisible by its 4 heads")
    return args


# ---------------------------------------------------------------------------- worker
def memory_worker(args: argparse.Namespace) -> None:
    """Peak memory of one step of one case, in this fresh process; prints one JSON line."""
    pair, impl = args.worker.split(":")
    torch.set_num_threads(args.threads)

    def measure() -> Dict:
        case = Case(pair, impl, args.dtype, args)
        return {"peak_mib": bm.measure_peaks({"step": case.step}, args.device, warmup=case.warm)["step"]}

    bm.worker_report(measure)


def _worker_argv(args: argparse.Namespace, pair: str, impl: str, dtype: str) -> List[str]:
    return ["--worker", f"{pair}:{impl}", "--dtype", dtype, "--shape", *map(str, args.shape),
            "--threads", str(args.threads), "--device", args.device.type, "--seed", str(args.seed)]


# ------------------------------------------------------------------------------- run
def _max_abs_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a.double() - b.double()).abs().max().item()


def _compare_row(pair: str, dtype: str, fast: Dict, slow: Dict, cases: Dict[Tuple[str, str], Case],
                 device: torch.device) -> Dict:
    """Speed-up, memory ratio and output / input-gradient differences of one pair."""
    impls = [impl for p, impl in CASES if p == pair]
    row = {c: None for c in COMPARE_COLUMNS} | {"kind": "compare", "pair": pair, "dtype": dtype,
                                                 "device": device.type, "tolerance": DIFF_TOLERANCE.get(dtype)}
    errors = [f"{r['impl']}: {r['error']}" for r in (fast, slow) if r["error"]]
    if errors:
        row["error"] = "; ".join(errors)
        return row
    row["speedup_median"] = bm.ratio(slow["median_s"], fast["median_s"])
    row["memory_ratio"] = bm.ratio(fast["peak_mib"], slow["peak_mib"])
    a, b = cases[(pair, impls[0])], cases[(pair, impls[1])]
    row["max_abs_diff_out"] = _max_abs_diff(a.y, b.y)
    row["max_abs_diff_grad_x"] = _max_abs_diff(a.x.grad, b.x.grad)
    if row["tolerance"] is not None:
        row["within_tolerance"] = row["max_abs_diff_out"] <= row["tolerance"]
    return row


def run(args: argparse.Namespace) -> List[Dict]:
    """Case rows (memory in workers, then interleaved timing here) and one comparison row per
    pair and dtype; every row has every column of ``CASE_COLUMNS`` or ``COMPARE_COLUMNS``."""
    torch.set_num_threads(args.threads)
    device = args.device
    dtypes = ["float32"] + (["float16"] if device.type == "cuda" else [])
    keys = [(pair, impl) for pair, impl in CASES if pair in args.pairs]
    rows: List[Dict] = []
    for dtype in dtypes:
        where = f"{dtype} {tuple(args.shape)} on {device.type}, {args.threads} threads"
        case_rows = {
            key: {c: None for c in CASE_COLUMNS} | {
                "kind": "case", "label": LABELS[key], "pair": key[0], "impl": key[1], "dtype": dtype,
                "device": device.type, "threads": args.threads, "shape": list(args.shape)}
            for key in keys
        }
        bm.log(f"[memory] {len(keys)} cases, {where}, each in a fresh worker")
        results = bm.run_workers(WORKER_MODULE, [_worker_argv(args, *key, dtype) for key in keys])
        for key, result in zip(keys, results):
            bm.log(f"  [memory] {LABELS[key]} {dtype}: {result}")
            case_rows[key].update(result)

        cases = {key: Case(*key, dtype, args) for key in keys if not case_rows[key]["error"]}
        for case in cases.values():
            case.warm()
        steps: Dict[str, Callable[[], object]] = {LABELS[key]: case.step for key, case in cases.items()}
        bm.log(f"[time] {len(steps)} cases, {where}: {args.warmup} warm-up + {args.repeats} repeats, interleaved")
        timings = bm.interleaved_timings(steps, args.repeats, args.warmup, device, dtype)
        load = os.getloadavg()[0]
        for key in cases:
            result, row = timings[LABELS[key]], case_rows[key]
            row["load_avg_1min"] = load
            if isinstance(result, str):
                row["error"] = result
                continue
            row.update(median_s=result.median_s, min_s=result.min_s, max_s=result.max_s)

        rows += case_rows.values()
        for pair in args.pairs:
            fast, slow = (case_rows[(p, impl)] for p, impl in CASES if p == pair)
            rows.append(_compare_row(pair, dtype, fast, slow, cases, device))
        del cases
    return rows


# ----------------------------------------------------------------------------- table
def format_table(rows: List[Dict], args: argparse.Namespace) -> str:
    """Readable table of the case rows followed by the comparison rows."""
    load = ", ".join(f"{v:.1f}" for v in os.getloadavg())
    memory = ("peak RSS growth (VmHWM, reset) over one step" if args.device.type == "cpu"
              else "torch.cuda.max_memory_allocated growth over one step")
    lines = [f"fwd+bwd of shape {tuple(args.shape)} on {args.device.type}, {args.threads} threads, "
             f"{args.repeats} repeats after {args.warmup} warm-up, interleaved; load average now {load} "
             f"on {os.cpu_count()} CPUs (timings are only comparable on an idle machine)",
             f"peak MiB: {memory}, in a fresh worker per case",
             f"{'module':34s} {'dtype':8s} {'median s':>9s} {'min s':>8s} {'max s':>8s} {'peak MiB':>9s}"]
    for r in rows:
        if r["kind"] == "case":
            lines.append(f"{r['label']:34s} {r['dtype']:8s} {bm.fmt(r['median_s'], '.3f'):>9s} "
                         f"{bm.fmt(r['min_s'], '.3f'):>8s} {bm.fmt(r['max_s'], '.3f'):>8s} "
                         f"{bm.fmt(r['peak_mib'], '.1f'):>9s}" + (f"  error: {r['error']}" if r["error"] else ""))
    lines.append("")
    lines.append(f"{'pair':8s} {'dtype':8s} {'speed-up':>9s} {'mem fast/common':>16s} "
                 f"{'max|dy|':>10s} {'max|dx grad|':>13s}  max|dy| check")
    for r in rows:
        if r["kind"] == "compare":
            speedup = "-" if r["speedup_median"] is None else f"{r['speedup_median']:.2f}x"
            check = ("n/a" if r["within_tolerance"] is None
                     else f"{'ok' if r['within_tolerance'] else 'FAIL'} (<= {r['tolerance']:g})")
            lines.append(f"{r['pair']:8s} {r['dtype']:8s} {speedup:>9s} {bm.fmt(r['memory_ratio'], '.3f'):>16s} "
                         f"{bm.fmt(r['max_abs_diff_out'], '.2e'):>10s} {bm.fmt(r['max_abs_diff_grad_x'], '.2e'):>13s}"
                         f"  {check}" + (f"  error: {r['error']}" if r["error"] else ""))
    return "\n".join(lines)


def main(argv: Optional[Sequence[str]] = None) -> List[Dict]:
    """Entry point; returns the rows (the worker mode returns an empty list)."""
    args = parse_args(argv)
    if args.worker:
        memory_worker(args)
        return []
    rows = run(args)
    if args.json:
        for r in rows:
            print(json.dumps(r))
    else:
        print(format_table(rows, args))
    return rows


if __name__ == "__main__":
    main(sys.argv[1:])

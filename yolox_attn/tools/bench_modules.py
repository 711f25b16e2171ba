"""Side-by-side fwd+bwd time and peak memory of the fast attention modules and the common copies.

    python -m yolox_attn.tools.bench_modules [--shape B C H W] [--threads 2] [--repeats N] [--json]

Pairs (same weights, same input):

* ``acmix``: ``yolox_attn.attention.ACmix`` vs ``yolox_attn.baselines.acmix_unfold.UnfoldACmix``;
* ``cca``: ``CrissCrossAttention(recurrence=2)`` vs ``CommonCrissCross`` applied twice, with
  ``gamma`` set to 1 in both (at its init value 0 both are the identity and the comparison of
  outputs would say nothing).

Each case runs twice, each time in a fresh subprocess: once for time (warm-up, then the timed
repeats) and once for peak memory, so that the peak is the case's own and the memory
measurement does not change the timing. Peak memory: on CPU the growth of the process's peak
RSS (``resource.getrusage().ru_maxrss``) over the warm-up and one more run, above its value
once module and input are built and one tiny run has started the thread pools; on CUDA
``torch.cuda.max_memory_allocated`` above the memory allocated before the runs. The CPU memory
worker runs with a fixed glibc mmap threshold (``MALLOC_MMAP_THRESHOLD_=131072`` unless set
already): every tensor above 128 KiB is then its own mapping, returned to the system when
freed, so the RSS peak tracks the peak of live tensors rather than glibc's heap retention
(which inflates both sides and depends on allocation order). The timing worker keeps the
default allocator (a fixed threshold adds page faults to every large allocation). On CUDA every
case is also timed in float16 (``.half()``).
Progress goes to stderr; the table (or ``--json`` rows) to stdout.
"""

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Dict, List, Optional, Tuple

import torch
from torch import nn

# (pair, implementation) -> label; the first implementation of a pair is the fast one.
CASES: List[Tuple[str, str]] = [("acmix", "fast"), ("acmix", "unfold"), ("cca", "fast"), ("cca", "common")]
LABELS: Dict[Tuple[str, str], str] = {
    ("acmix", "fast"): "ACmix (fast)",
    ("acmix", "unfold"): "UnfoldACmix (common)",
    ("cca", "fast"): "CrissCrossAttention R=2 (fast)",
    ("cca", "common"): "CommonCrissCross x2 (common)",
}


# The fast modules must match the common copies this closely (max abs output difference).
DIFF_TOLERANCE: Dict[str, float] = {"float32": 1e-5}


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


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


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def run_worker(args: argparse.Namespace) -> None:
    """One case in this (fresh) process; prints one JSON line.

    ``--mode time``: warm-up and timed runs, saves the output and input gradient to ``--out``.
    ``--mode memory``: the peak memory of ``--warmup`` + 1 runs over the memory in use before.
    """
    pair, impl = args.worker.split(":")
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    dtype = getattr(torch, args.dtype)
    module = build_case(pair, impl, args.shape[1], args.seed).to(device=device, dtype=dtype)
    gen = torch.Generator().manual_seed(args.seed + 1)
    x = torch.randn(*args.shape, generator=gen).to(device=device, dtype=dtype).requires_grad_(True)

    def step() -> torch.Tensor:
        x.grad = None
        module.zero_grad(set_to_none=True)
        y = module(x)
        y.float().sum().backward()
        return y

    # a tiny run first: thread pools and kernel caches start outside the measured window
    tiny = torch.randn(1, args.shape[1], 8, 8, device=device, dtype=dtype, requires_grad=True)
    module(tiny).float().sum().backward()
    del tiny
    _sync(device)
    row = {"pair": pair, "impl": impl, "dtype": args.dtype, "device": str(device), "threads": args.threads,
           "shape": list(args.shape)}
    label = f"    {LABELS[(pair, impl)]} {args.dtype}"
    if args.mode == "memory":
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
            base = torch.cuda.memory_allocated(device)
        else:
            base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux
        for _ in range(args.warmup + 1):
            step()
        _sync(device)
        if device.type == "cuda":
            peak = torch.cuda.max_memory_allocated(device) - base
        else:
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - base
        _log(f"{label} peak memory: {peak / 2**20:.1f} MiB")
        print(json.dumps({**row, "peak_mib": peak / 2**20}))
        return
    times: List[float] = []
    for i in range(args.warmup + args.repeats):
        t0 = time.perf_counter()
        y = step()
        _sync(device)
        dt = time.perf_counter() - t0
        kind = "warm-up" if i < args.warmup else f"repeat {i - args.warmup + 1}/{args.repeats}"
        _log(f"{label} {kind}: {dt:.3f} s")
        if i >= args.warmup:
            times.append(dt)
    torch.save({"y": y.detach().cpu(), "grad": x.grad.detach().cpu()}, args.out)
    print(json.dumps({**row, "load_avg_1min": os.getloadavg()[0], "median_s": statistics.median(times),
                      "min_s": min(times), "max_s": max(times)}))


def _run_worker(pair: str, impl: str, dtype: str, mode: str, args: argparse.Namespace, out: str) -> Dict:
    cmd = [sys.executable, "-m", "yolox_attn.tools.bench_modules", "--worker", f"{pair}:{impl}",
           "--mode", mode, "--shape", *map(str, args.shape), "--threads", str(args.threads),
           "--repeats", str(args.repeats), "--warmup", str(args.warmup), "--device", args.device,
           "--dtype", dtype, "--seed", str(args.seed), "--out", out]
    env = dict(os.environ)
    if mode == "memory":
        env.setdefault("MALLOC_MMAP_THRESHOLD_", "131072")  # see the module docstring
    # stderr (progress) passes through
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, env=env)
    if proc.returncode != 0:
        raise RuntimeError(f"case {pair}:{impl} ({dtype}, {mode}) failed with exit code {proc.returncode}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _run_case(pair: str, impl: str, dtype: str, args: argparse.Namespace, tmp: str) -> Dict:
    """Timing and memory of one case, each in a fresh subprocess."""
    out = os.path.join(tmp, f"{pair}-{impl}-{dtype}.pt")
    row = _run_worker(pair, impl, dtype, "time", args, out)
    row["peak_mib"] = _run_worker(pair, impl, dtype, "memory", args, out)["peak_mib"]
    row["file"] = out
    return row


def run_all(args: argparse.Namespace) -> List[Dict]:
    """All cases (each in its own subprocess) and one comparison row per pair and dtype."""
    dtypes = ["float32"] + (["float16"] if args.device.startswith("cuda") else [])
    rows: List[Dict] = []
    cases = [(pair, impl) for pair, impl in CASES if not args.only or pair in args.only]
    total = len(cases) * len(dtypes)
    with tempfile.TemporaryDirectory() as tmp:
        done = 0
        for dtype in dtypes:
            by_case: Dict[Tuple[str, str], Dict] = {}
            for pair, impl in cases:
                done += 1
                _log(f"[{done}/{total}] {LABELS[(pair, impl)]} {dtype} {tuple(args.shape)} on {args.device}, "
                     f"{args.threads} threads")
                row = _run_case(pair, impl, dtype, args, tmp)
                by_case[(pair, impl)] = row
                rows.append({**{k: v for k, v in row.items() if k != "file"}, "kind": "case",
                             "label": LABELS[(pair, impl)]})
            for pair in dict.fromkeys(p for p, _ in CASES):
                impls = [i for p, i in CASES if p == pair]
                if (pair, impls[0]) not in by_case:
                    continue
                fast, slow = by_case[(pair, impls[0])], by_case[(pair, impls[1])]
                a, b = torch.load(fast["file"]), torch.load(slow["file"])
                diff = (a["y"].double() - b["y"].double()).abs().max().item()
                rows.append({
                    "kind": "compare", "pair": pair, "dtype": dtype, "device": args.device,
                    "speedup_median": slow["median_s"] / fast["median_s"],
                    "memory_ratio": fast["peak_mib"] / slow["peak_mib"] if slow["peak_mib"] > 0 else None,
                    "max_abs_diff_out": diff,
                    "tolerance": DIFF_TOLERANCE.get(dtype),
                    "within_tolerance": diff <= DIFF_TOLERANCE[dtype] if dtype in DIFF_TOLERANCE else None,
                    "max_abs_diff_grad_x": (a["grad"].double() - b["grad"].double()).abs().max().item(),
                })
    return rows


def format_table(rows: List[Dict], args: argparse.Namespace) -> str:
    """Readable table of the case rows followed by the comparison rows."""
    load = ", ".join(f"{v:.1f}" for v in os.getloadavg())
    lines = [f"fwd+bwd of shape {tuple(args.shape)} on {args.device}, {args.threads} threads, "
             f"{args.repeats} repeats after {args.warmup} warm-up; load average now {load} "
             f"on {os.cpu_count()} CPUs (timings are only comparable on an idle machine)",
             f"{'module':34s} {'dtype':8s} {'median s':>9s} {'min s':>8s} {'max s':>8s} {'peak MiB':>9s}"]
    for r in rows:
        if r["kind"] == "case":
            lines.append(f"{r['label']:34s} {r['dtype']:8s} {r['median_s']:9.3f} {r['min_s']:8.3f} "
                         f"{r['max_s']:8.3f} {r['peak_mib']:9.1f}")
    lines.append("")
    lines.append(f"{'pair':8s} {'dtype':8s} {'speed-up':>9s} {'mem fast/common':>16s} "
                 f"{'max|dy|':>10s} {'max|dx grad|':>13s}  max|dy| check")
    for r in rows:
        if r["kind"] == "compare":
            mem = "n/a" if r["memory_ratio"] is None else f"{r['memory_ratio']:.3f}"
            check = ("n/a" if r["within_tolerance"] is None
                     else f"{'ok' if r['within_tolerance'] else 'FAIL'} (<= {r['tolerance']:g})")
            lines.append(f"{r['pair']:8s} {r['dtype']:8s} {r['speedup_median']:8.2f}x {mem:>16s} "
                         f"{r['max_abs_diff_out']:10.2e} {r['max_abs_diff_grad_x']:13.2e}  {check}")
    return "\n".join(lines)


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--shape", type=int, nargs=4, default=[4, 128, 80, 80], metavar=("B", "C", "H", "W"))
    p.add_argument("--threads", type=int, default=2, help="torch.set_num_threads in every case (default 2)")
    p.add_argument("--repeats", type=int, default=3, help="timed runs per case (default 3)")
    p.add_argument("--warmup", type=int, default=1, help="untimed runs first (default 1)")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--only", nargs="*", choices=["acmix", "cca"], help="run only these pairs")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true", help="print JSON rows instead of the table")
    # internal: one case in a subprocess
    p.add_argument("--worker", help=argparse.SUPPRESS)
    p.add_argument("--dtype", default="float32", help=argparse.SUPPRESS)
    p.add_argument("--mode", choices=["time", "memory"], default="time", help=argparse.SUPPRESS)
    p.add_argument("--out", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.repeats < 1 or args.warmup < 0 or args.threads < 1:
        p.error("--repeats and --threads must be >= 1, --warmup >= 0")
    return args


def main(argv: Optional[List[str]] = None) -> None:
    args = parse_args(argv)
    if args.worker:
        run_worker(args)
        return
    rows = run_all(args)
    if args.json:
        for r in rows:
            print(json.dumps(r))
    else:
        print(format_table(rows, args))


if __name__ == "__main__":
    main()

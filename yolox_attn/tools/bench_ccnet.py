"""CCNet's cost comparison: recurrent criss-cross attention (R=2) against the non-local block.

    python -m yolox_attn.tools.bench_ccnet [--channels 512] [--sizes 17,33,49,65,97] [--batch 1]
        [--plot out.png] [--json] [--device auto]

Huang et al. (CCNet, ICCV 2019) compare RCCA (``CrissCrossAttention(C, recurrence=2)``) with the
non-local block (``NonLocal2d(C)``) on a 97x97 map of C=512 channels and report about 11x less
GPU memory and 85% fewer FLOPs. For each square map side this measures, for both modules:

* forward FLOPs with ``torch.utils.flop_counter.FlopCounterMode`` (every conv/matmul/bmm, einsum
  included, 2 FLOPs per multiply-add; softmax and element-wise ops are not counted);
* peak memory of a forward under ``torch.no_grad`` and of forward + backward (to the input and the
  parameters), each (module, side) in a fresh worker process (see ``yolox_attn.tools.benchmarking``):
  after building module and input and a 3x3 warm-up. CPU (Linux): peak RSS (VmHWM, reset
  through /proc/self/clear_refs before each phase) over the RSS at the phase's start; CUDA:
  torch.cuda.max_memory_allocated over the memory allocated at the phase's start;

and the ratios CCA / non-local, next to the paper's. ``--plot`` saves both against the map side on
log-log axes (PNG). Runs in float32 on the CPU or on CUDA (``--device auto`` picks CUDA).
"""

import argparse
import json
import sys
from typing import Dict, List, Optional, Sequence

import torch
from torch import nn

from yolox_attn.tools import benchmarking as bm

MODULES = ("cca", "nonlocal")
LABELS = {"cca": "RCCA (R=2)", "nonlocal": "non-local"}
PAPER_FLOPS_RATIO = 0.15  # "85% fewer FLOPs"
PAPER_MEMORY_RATIO = 1 / 11  # "11x less GPU memory"
WARM_SIDE = 3
WORKER_MODULE = "yolox_attn.tools.bench_ccnet"  # not __name__, which is "__main__" under -m
COLUMNS = (
    "size", "channels", "batch", "device",
    "cca_gflops", "nonlocal_gflops", "gflops_ratio",
    "cca_fwd_peak_mib", "nonlocal_fwd_peak_mib", "fwd_peak_ratio",
    "cca_train_peak_mib", "nonlocal_train_peak_mib", "train_peak_ratio",
    "error",
)


def build_module(name: str, channels: int) -> nn.Module:
    """The paper's RCCA (two criss-cross passes) or the embedded-Gaussian non-local block."""
    from yolox_attn.attention import CrissCrossAttention, NonLocal2d

    return CrissCrossAttention(channels, recurrence=2) if name == "cca" else NonLocal2d(channels)


# ------------------------------------------------------------------------- arguments
def _sizes(text: str) -> List[int]:
    side = bm.int_at_least(1)
    sizes = sorted({side(part.strip()) for part in text.split(",") if part.strip()})
    if not sizes:
        raise argparse.ArgumentTypeError(f"{text!r} has no map side; give e.g. 17,33,49,65,97")
    return sizes


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    """Command line; argparse errors name the bad value and what is allowed."""
    p = argparse.ArgumentParser(
        prog="python -m yolox_attn.tools.bench_ccnet",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--channels", type=bm.int_at_least(8, " (CCA's query/key have C/8 channels)"), default=512,
                   help="input channels C (default 512, the paper's)")
    p.add_argument("--sizes", type=_sizes, default=[17, 33, 49, 65, 97],
                   help="comma-separated square map sides (default 17,33,49,65,97)")
    p.add_argument("--batch", type=bm.int_at_least(1), default=1, help="batch size (default 1)")
    p.add_argument("--plot", metavar="PNG", help="save a log-log plot of FLOPs and memory vs map side")
    p.add_argument("--forward-only", action="store_true", help="skip the forward+backward memory")
    p.add_argument("--threads", type=bm.int_at_least(1), default=2, help="torch.set_num_threads (default 2)")
    p.add_argument("--jobs", type=bm.int_at_least(1), default=1,
                   help="memory workers at once (default 1; more only if the machine holds them all)")
    p.add_argument("--device", default="auto", type=bm.device_arg,
                   help="auto: CUDA when available, else CPU (default auto)")
    p.add_argument("--json", action="store_true", help="print a JSON list of rows instead of the table")
    p.add_argument("--worker", help=argparse.SUPPRESS)  # internal: "<module>:<side>", memory of one case
    args = p.parse_args(argv)
    return args


# ---------------------------------------------------------------------------- worker
def memory_worker(args: argparse.Namespace) -> None:
    """Peak memory of one (module, side) in this fresh process; prints one JSON line."""
    name, side = args.worker.split(":")
    torch.set_num_threads(args.threads)
    device = args.device

    def measure() -> Dict:
        module = build_module(name, args.channels).to(device)
        x = torch.randn(args.batch, args.channels, int(side), int(side), device=device, requires_grad=True)
        small = torch.randn(1, args.channels, WARM_SIDE, WARM_SIDE, device=device, requires_grad=True)

        def forward(inp: torch.Tensor) -> None:
            with torch.no_grad():
                module(inp)

        def train(inp: torch.Tensor) -> None:
            module(inp).sum().backward()
            module.zero_grad(set_to_none=True)
            inp.grad = None

        phases = {"fwd": lambda: forward(x)}
        if not args.forward_only:
            phases["train"] = lambda: train(x)
        peaks = bm.measure_peaks(phases, device, warmup=lambda: (forward(small), train(small)))
        return {"fwd": peaks["fwd"], "train": peaks.get("train")}

    bm.worker_report(measure)


def _worker_argv(args: argparse.Namespace, name: str, side: int) -> List[str]:
    argv = ["--worker", f"{name}:{side}", "--channels", str(args.channels), "--batch", str(args.batch),
            "--threads", str(args.threads), "--device", args.device.type]
    return argv + (["--forward-only"] if args.forward_only else [])


# ------------------------------------------------------------------------------- run
def run(args: argparse.Namespace) -> List[Dict]:
    """FLOPs here, memory in one worker per (module, side); rows with every column of ``COLUMNS``."""
    torch.set_num_threads(args.threads)
    device = args.device
    rows = [{c: None for c in COLUMNS} | {"size": s, "channels": args.channels, "batch": args.batch,
                                          "device": device.type} for s in args.sizes]
    cases = [(name, row) for row in rows for name in MODULES]
    failed = set()  # (module, side) that did not fit in memory
    bm.log(f"[memory] {len(cases)} cases, each in a fresh worker ({args.jobs} at a time)")
    results = bm.run_workers(WORKER_MODULE, [_worker_argv(args, n, r["size"]) for n, r in cases], args.jobs)
    for (name, row), peaks in zip(cases, results):
        bm.log(f"  [memory] {LABELS[name]} {row['size']}x{row['size']}: {peaks}")
        if "error" in peaks:
            failed.add((name, row["size"]))
            row["error"] = "; ".join(filter(None, [row["error"], f"{name}: {peaks['error']}"]))
            continue
        row[f"{name}_fwd_peak_mib"] = peaks["fwd"]
        row[f"{name}_train_peak_mib"] = peaks["train"]

    modules = {name: build_module(name, args.channels).to(device) for name in MODULES}
    for i, row in enumerate(rows):
        side = row["size"]
        x = torch.randn(args.batch, args.channels, side, side, device=device)
        for name, module in modules.items():
            if (name, side) in failed:
                continue  # its worker ran out of memory: so would this process
            bm.log(f"[FLOPs] {i + 1}/{len(rows)} {LABELS[name]} {side}x{side}")
            try:
                with torch.no_grad():
                    row[f"{name}_gflops"] = bm.count_flops(lambda: module(x)) / 1e9
            except Exception as err:  # noqa: BLE001
                if not bm.is_out_of_memory(err):
                    raise
                row["error"] = "; ".join(filter(None, [row["error"], f"{name}: out of memory counting FLOPs"]))
        row["gflops_ratio"] = bm.ratio(row["cca_gflops"], row["nonlocal_gflops"])
        row["fwd_peak_ratio"] = bm.ratio(row["cca_fwd_peak_mib"], row["nonlocal_fwd_peak_mib"])
        row["train_peak_ratio"] = bm.ratio(row["cca_train_peak_mib"], row["nonlocal_train_peak_mib"])
    return rows


# ----------------------------------------------------------------------- table, plot
def format_table(rows: List[Dict]) -> str:
    """Per-side table, then the largest side next to the paper's figures."""
    r0 = rows[0]
    mem = "peak RSS growth per phase" if r0["device"] == "cpu" else "max_memory_allocated growth per phase"
    lines = [
        f"RCCA (R=2) vs non-local, C={r0['channels']}, batch {r0['batch']}, float32 on {r0['device']}; "
        f"memory = {mem} in a fresh worker per case",
        f"{'side':>5s} | {'GFLOPs CCA':>11s} {'non-local':>11s} {'CCA/NL':>7s} | {'fwd MiB CCA':>12s} "
        f"{'non-local':>10s} {'CCA/NL':>7s} | {'fwd+bwd MiB CCA':>16s} {'non-local':>10s} {'CCA/NL':>7s}",
    ]
    for r in rows:
        lines.append(
            f"{r['size']:5d} | {bm.fmt(r['cca_gflops'], '.4g'):>11s} {bm.fmt(r['nonlocal_gflops'], '.4g'):>11s} "
            f"{bm.fmt(r['gflops_ratio'], '.3f'):>7s} | {bm.fmt(r['cca_fwd_peak_mib'], '.1f'):>12s} "
            f"{bm.fmt(r['nonlocal_fwd_peak_mib'], '.1f'):>10s} {bm.fmt(r['fwd_peak_ratio'], '.3f'):>7s} | "
            f"{bm.fmt(r['cca_train_peak_mib'], '.1f'):>16s} {bm.fmt(r['nonlocal_train_peak_mib'], '.1f'):>10s} "
            f"{bm.fmt(r['train_peak_ratio'], '.3f'):>7s}" + (f"  error: {r['error']}" if r["error"] else "")
        )
    big = rows[-1]

    def pct_fewer(value: Optional[float]) -> str:
        return "-" if value is None else f"{(1 - value) * 100:.0f}% fewer"

    def times_less(value: Optional[float]) -> str:
        return "-" if value is None or value <= 0 else f"{1 / value:.1f}x less"

    lines += [
        "",
        f"At {big['size']}x{big['size']} (paper: 97x97, C=512; its memory is GPU memory of its implementation):",
        f"  FLOPs  CCA/NL: measured {bm.fmt(big['gflops_ratio'], '.3f')} ({pct_fewer(big['gflops_ratio'])}), "
        f"paper ~{PAPER_FLOPS_RATIO:.2f} (85% fewer)",
        f"  memory CCA/NL: measured forward {bm.fmt(big['fwd_peak_ratio'], '.3f')} ({times_less(big['fwd_peak_ratio'])}), "
        f"forward+backward {bm.fmt(big['train_peak_ratio'], '.3f')} ({times_less(big['train_peak_ratio'])}), "
        f"paper ~{PAPER_MEMORY_RATIO:.3f} (11x less)",
        "FLOPs: torch.utils.flop_counter (convs and matmuls, 2 per multiply-add; softmax/element-wise uncounted).",
    ]
    return "\n".join(lines)


def save_plot(rows: List[Dict], path: str) -> None:
    """Log-log FLOPs and peak memory against the map side, both modules, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")  # no display; must precede pyplot
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FixedLocator, FormatStrFormatter, NullLocator

    fig, (ax_f, ax_m) = plt.subplots(1, 2, figsize=(11, 4.5))
    sides = [r["size"] for r in rows]
    colours = {"cca": "tab:blue", "nonlocal": "tab:red"}
    for name in MODULES:
        ax_f.plot(sides, [r[f"{name}_gflops"] for r in rows], "o-", color=colours[name], label=LABELS[name])
        for phase, style in (("fwd", "o-"), ("train", "s--")):
            # Log axes cannot show missing or zero readings (tiny maps can read 0 on the CPU).
            points = [(r["size"], r[f"{name}_{phase}_peak_mib"]) for r in rows
                      if r[f"{name}_{phase}_peak_mib"] and r[f"{name}_{phase}_peak_mib"] > 0]
            if points:
                ax_m.plot(*zip(*points), style, color=colours[name],
                          label=f"{LABELS[name]}, {'forward' if phase == 'fwd' else 'forward+backward'}")
    for ax, ylabel in ((ax_f, "forward GFLOPs"), (ax_m, "peak memory (MiB)")):
        ax.set_xscale("log")
        ax.set_yscale("log")
        # Label the measured sides themselves rather than powers of ten.
        ax.xaxis.set_major_locator(FixedLocator(sides))
        ax.xaxis.set_major_formatter(FormatStrFormatter("%d"))
        ax.xaxis.set_minor_locator(NullLocator())
        ax.set_xlabel("map side (H = W)")
        ax.set_ylabel(ylabel)
        ax.grid(True, which="both", alpha=0.3)
        if ax.get_legend_handles_labels()[0]:  # the memory axis can be empty (all readings 0)
            ax.legend(fontsize=8)
    r0 = rows[0]
    fig.suptitle(f"RCCA (R=2) vs non-local block, C={r0['channels']}, batch {r0['batch']}, {r0['device']}")
    fig.tight_layout()
    fig.savefig(path, format="png", dpi=120)
    plt.close(fig)


def main(argv: Optional[Sequence[str]] = None) -> List[Dict]:
    """Entry point; returns the rows (the worker mode returns an empty list)."""
    args = parse_args(argv)
    if args.worker:
        memory_worker(args)
        return []
    rows = run(args)
    if args.plot:
        save_plot(rows, args.plot)
        bm.log(f"plot saved to {args.plot}")
    print(json.dumps(rows, indent=1) if args.json else format_table(rows))
    return rows


if __name__ == "__main__":
    main(sys.argv[1:])

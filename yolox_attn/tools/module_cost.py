"""The bench tool's ``modules`` mode: attention modules alone, on feature maps of a given size.

For each attention (``--attentions``, built as the neck builds it, with its default options) and
each square map side (``--sides``), at ``--channels`` channels and batch ``--batch``:

* GFLOPs of one forward, counted by ``torch.utils.flop_counter.FlopCounterMode`` (every
  conv/matmul/bmm, einsum included, 2 FLOPs per multiply-add; softmax and element-wise ops are
  not counted);
* fwd+bwd: a forward and a backward of ``y.sum()`` to the input and the parameters, median
  [min, max] of the repeats, interleaved across the attentions of a side (round-robin);
* peak memory of a forward under ``torch.no_grad`` and of a fwd+bwd, each (attention, side) in a
  fresh worker process, after a step on a 4x4 map (``yolox_attn.tools.benchmarking``: peak RSS
  growth on the CPU, ``max_memory_allocated`` growth on CUDA);

each also as a ratio to the first attention listed, at the same side. float32 on either device.
This is how an attention's cost grows with the map: criss-cross attention's with H*W*(H+W),
the non-local block's with (H*W)^2, for instance (``--attentions nonlocal,cca --channels 512
--sides 17,33,49,65,97`` is CCNet's comparison). ``--no-timing`` skips the timed steps.
"""

import argparse
from typing import Callable, Dict, List, Optional, Tuple

import torch
from torch import nn

from ..attention import build_attention
from . import benchmarking as bm

WARM_SIDE = 4
# (column, ratio column); every row has these keys and ROW_KEYS.
FIGURES: Tuple[Tuple[str, str], ...] = (
    ("gflops", "gflops_ratio"),
    ("step_ms_median", "step_ratio"),
    ("fwd_peak_mib", "fwd_peak_ratio"),
    ("train_peak_mib", "train_peak_ratio"),
)
ROW_KEYS: Tuple[str, ...] = ("attention", "side", "channels", "batch", "device", "threads", "repeats",
                             "step_ms_min", "step_ms_max", "error")
COLUMNS: Tuple[str, ...] = ROW_KEYS + tuple(c for pair in FIGURES for c in pair)


class Case:
    """One attention module and its input; ``step()`` is a forward and a backward."""

    def __init__(self, attention: str, args: argparse.Namespace, side: int):
        torch.manual_seed(args.seed)
        self.module: nn.Module = build_attention(attention, args.channels).to(args.device)
        self.x = torch.randn(args.batch, args.channels, side, side, device=args.device, requires_grad=True)

    def step(self, x: Optional[torch.Tensor] = None) -> None:
        x = self.x if x is None else x
        self.module(x).sum().backward()
        self.module.zero_grad(set_to_none=True)
        x.grad = None

    def forward(self, x: Optional[torch.Tensor] = None) -> None:
        with torch.no_grad():
            self.module(self.x if x is None else x)


def memory_peaks(args: argparse.Namespace, attention: str, side: int) -> Dict:
    """In a worker: peak memory of one forward (no_grad) and one fwd+bwd of ``attention`` at ``side``."""
    case = Case(attention, args, side)
    small = torch.randn(1, args.channels, WARM_SIDE, WARM_SIDE, device=args.device, requires_grad=True)
    peaks = bm.measure_peaks({"fwd": case.forward, "train": case.step}, args.device,
                             warmup=lambda: (case.forward(small), case.step(small)))
    return {"fwd_peak_mib": peaks["fwd"], "train_peak_mib": peaks["train"]}


def _gflops(case: Case) -> float:
    case.module.eval()
    try:
        return bm.count_flops(case.forward) / 1e9
    finally:
        case.module.train()


def run(args: argparse.Namespace) -> List[Dict]:
    """Rows (attention, side) with every column of ``COLUMNS``, sides in order."""
    torch.set_num_threads(args.threads)
    settings = {"channels": args.channels, "batch": args.batch, "device": args.device.type,
                "threads": args.threads, "repeats": 0 if args.no_timing else args.repeats}
    rows = {(a, s): {c: None for c in COLUMNS} | settings | {"attention": a, "side": s}
            for s in args.sides for a in args.attentions}
    if not args.no_timing:
        keys = list(rows)
        bm.log(f"[memory] {len(keys)} cases, each in a fresh worker ({args.jobs} at a time)")
        tasks = [bm.worker_argv(args, {"task": "memory", "attention": a, "side": s}) for a, s in keys]
        for key, result in zip(keys, bm.run_workers(tasks, args.jobs)):
            bm.log(f"  [memory] {key[0]} {key[1]}x{key[1]}: {result}")
            rows[key].update(result)
    for side in args.sides:
        cases: Dict[str, Callable[[], object]] = {}
        for attention in args.attentions:
            row = rows[(attention, side)]
            if row["error"]:
                continue  # its worker ran out of memory: so would this process
            case = Case(attention, args, side)
            try:
                row["gflops"] = _gflops(case)
            except Exception as err:  # noqa: BLE001 - an infeasible case is reported, not fatal
                reason = bm.infeasible_reason(err)
                if reason is None:
                    raise
                row["error"] = reason
                continue
            cases[attention] = case.step
        if args.no_timing:
            continue
        bm.log(f"[fwd+bwd] side {side}: {len(cases)} cases x ({args.warmup} warm-up + {args.repeats} repeats), "
               "interleaved")
        for attention, result in bm.interleaved_timings(cases, args.repeats, args.warmup, args.device,
                                                        f"[{side}x{side}]").items():
            row = rows[(attention, side)]
            if isinstance(result, str):
                row["error"] = result
                continue
            row.update(step_ms_median=result.median_s * 1e3, step_ms_min=result.min_s * 1e3,
                       step_ms_max=result.max_s * 1e3)
    reference = args.attentions[0]
    for (attention, side), row in rows.items():
        for column, ratio_column in FIGURES:
            row[ratio_column] = bm.ratio(row[column], rows[(reference, side)][column])
    return list(rows.values())


def format_table(rows: List[Dict]) -> str:
    """One line per (side, attention), ratios to the first attention of each side."""
    r0 = rows[0]
    memory = "peak RSS growth" if r0["device"] == "cpu" else "max_memory_allocated growth"
    lines = [f"attention modules alone, C={r0['channels']}, batch {r0['batch']}, float32 on {r0['device']}, "
             f"{r0['threads']} threads, {r0['repeats']} repeats; ratios to {r0['attention']!r} at the same side; "
             f"memory: {memory} in a fresh worker per case",
             f"{'side':>5s} {'attention':10s} {'GFLOPs':>16s} {'fwd+bwd ms med [min-max]':>36s} "
             f"{'fwd MiB':>16s} {'fwd+bwd MiB':>16s}"]
    for r in rows:
        step = "-" if r["step_ms_median"] is None else (
            f"{r['step_ms_median']:.2f} [{r['step_ms_min']:.2f}-{r['step_ms_max']:.2f}]")
        cells = [(bm.fmt(r["gflops"], ".4g"), r["gflops_ratio"]), (step, r["step_ratio"]),
                 (bm.fmt(r["fwd_peak_mib"], ".1f"), r["fwd_peak_ratio"]),
                 (bm.fmt(r["train_peak_mib"], ".1f"), r["train_peak_ratio"])]
        widths = (16, 36, 16, 16)
        lines.append(f"{r['side']:5d} {r['attention']:10s} " + " ".join(
            f"{text + ('' if ratio is None else f' ({ratio:.2f}x)'):>{w}s}" for (text, ratio), w in zip(cells, widths))
            + (f"  error: {r['error']}" if r["error"] else ""))
    return "\n".join(lines)

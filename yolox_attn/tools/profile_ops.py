"""Where the time goes: per-op times of a YOLOX model with each attention, in PyTorch and onnxruntime.

    python -m yolox_attn.tools.profile_ops [--size s] [--tsize 640] [--attentions none,cca,acmix]
        [--runtimes torch,onnxruntime] [--train-batch 2] [--repeats 3] [--threads 2] [--top 15] [--json]

* torch: ``torch.profiler`` (CPU) over ``--repeats`` batch-1 inference runs (eval, no_grad) and, with
  ``--train-batch N``, as many training steps at batch N (as ``tools/bench.py`` runs them), after one
  untimed run of each; ops by self CPU time.
* onnxruntime: the model exported by the project's ONNX tool as ``bench --onnxruntime`` does, one
  CPU session per row with onnxruntime's own profiler (``SessionOptions.enable_profiling``) over
  ``--repeats`` runs plus the untimed first one; kernel time per op type (after onnxruntime's fusions).

The runs of each phase go round-robin across the rows, so that a shared machine's drift hits
every row alike.

One table per runtime and phase: the ``--top`` ops by time summed over the rows, in ms per run
(calls per run in brackets), one column per attention, then each row's profiled total. The
profilers add their own overhead: compare columns, not these totals with ``tools/bench.py``.
"""

import argparse
import collections
import json
import os
import sys
import tempfile
import warnings
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import torch

from yolox_attn.tools import benchmarking as bm
from yolox_attn.tools import bench

RUNTIMES: Tuple[str, ...] = ("torch", "onnxruntime")
# {op: (ms per run, calls per run)} of one attention in one runtime and phase
Profile = Dict[str, Tuple[float, float]]


def _runtimes(text: str) -> List[str]:
    names = [t.strip() for t in text.split(",") if t.strip()]
    bad = [n for n in names if n not in RUNTIMES]
    if bad or not names:
        raise argparse.ArgumentTypeError(f"unknown runtime(s) {bad or text!r}; allowed: {', '.join(RUNTIMES)}")
    return names


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m yolox_attn.tools.profile_ops", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size", default="s", choices=bench.SIZES, help="YOLOX size (default s)")
    p.add_argument("--tsize", type=bench._tsize, default=640, help="square input side, multiple of 32 (default 640)")
    p.add_argument("--attentions", type=bench._attention_list, default=["none", "cca", "acmix"],
                   help="comma-separated registered names (default none,cca,acmix; none is always added)")
    p.add_argument("--runtimes", type=_runtimes, default=list(RUNTIMES),
                   help=f"comma-separated, from {', '.join(RUNTIMES)} (default both)")
    p.add_argument("--train-batch", type=bm.int_at_least(1), help="also profile PyTorch training steps at this batch")
    p.add_argument("--repeats", type=bm.int_at_least(1), default=3, help="profiled runs (default 3)")
    p.add_argument("--threads", type=bm.int_at_least(1), default=2, help="torch and onnxruntime threads (default 2)")
    p.add_argument("--top", type=bm.int_at_least(1), default=15, help="ops per table (default 15)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true", help="print every op of every profile as JSON rows")
    args = p.parse_args(argv)
    args.no_onnxsim = False  # what export_onnx_row reads: profile the file the export tool writes by default
    return args


def _torch_profile(fn) -> Profile:
    """Self CPU time per aten op of one call of ``fn``: {op: (ms, calls)}."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        fn()
    return {e.key: (e.self_cpu_time_total / 1e3, e.count) for e in prof.key_averages() if e.self_cpu_time_total > 0}


def _ort_profile(trace: str, runs: int) -> Profile:
    """onnxruntime's kernel time per op type in one session's trace, per run."""
    with open(trace) as f:
        events = json.load(f)
    os.remove(trace)
    totals: Dict[str, List[float]] = collections.defaultdict(lambda: [0.0, 0])
    for event in events:
        if event.get("cat") == "Node" and event.get("name", "").endswith("_kernel_time"):
            total = totals[event["args"]["op_name"]]
            total[0] += event["dur"] / 1e3  # microseconds
            total[1] += 1
    return {op: (ms / runs, calls / runs) for op, (ms, calls) in totals.items()}


def profile_round_robin(fns: Dict[str, Callable[[], object]], repeats: int) -> Dict[str, Profile]:
    """Profile every callable ``repeats`` times, round-robin across them (as ``bench`` times them), after
    one untimed call each; {name: {op: (ms per call, calls per call)}}."""
    sums: Dict[str, Dict[str, List[float]]] = {n: collections.defaultdict(lambda: [0.0, 0.0]) for n in fns}
    for i in range(repeats + 1):
        for name, fn in fns.items():
            if i == 0:
                fn()
                continue
            for op, (ms, calls) in _torch_profile(fn).items():
                sums[name][op][0] += ms
                sums[name][op][1] += calls
    return {n: {op: (ms / repeats, c / repeats) for op, (ms, c) in ops.items()} for n, ops in sums.items()}


def run(args: argparse.Namespace) -> Dict[Tuple[str, str], Dict[str, Profile]]:
    """{(runtime, phase): {attention: profile}}; every phase profiles its rows round-robin."""
    torch.set_num_threads(args.threads)
    device = torch.device("cpu")
    images1, _ = bench.make_inputs(1, args.tsize, device, args.seed)
    steps = {}
    for name in args.attentions:
        bm.log(f"[build] {name}")
        steps[name] = bench.Steps(*bench.build_model(args.size, name, device), device)
    profiles: Dict[Tuple[str, str], Dict[str, Profile]] = {}
    if "torch" in args.runtimes:
        bm.log(f"[torch] inference, {args.repeats} runs per row, round-robin")
        profiles[("torch", "inference")] = profile_round_robin(
            {n: (lambda s=s: s.infer(images1)) for n, s in steps.items()}, args.repeats)
        if args.train_batch:
            images, targets = bench.make_inputs(args.train_batch, args.tsize, device, args.seed)
            bm.log(f"[torch] training step at batch {args.train_batch}, {args.repeats} runs per row, round-robin")
            profiles[("torch", f"train step (b={args.train_batch})")] = profile_round_robin(
                {n: (lambda s=s: s.train(images, targets)) for n, s in steps.items()}, args.repeats)
    if "onnxruntime" in args.runtimes:
        with tempfile.TemporaryDirectory(prefix="profile_ops_") as tmp:
            folder = Path(tmp)
            sessions = {}
            for name, step in steps.items():
                bm.log(f"[onnxruntime] {name}: export with yolox_attn.tools.export_onnx")
                exported = bench.export_onnx_row(args, name, step.model, folder)
                if "error" in exported:
                    raise SystemExit(f"{name}: {exported['error']}")
                sessions[name] = bm.ort_session(exported["path"], args.threads,
                                                profile_prefix=str(folder / f"ort_{name}"))
            feed = images1.numpy()
            bm.log(f"[onnxruntime] inference, {args.repeats} runs per row, round-robin")
            for _ in range(args.repeats + 1):  # the first, untimed, run is in the traces too
                for session in sessions.values():
                    session.run(None, {session.get_inputs()[0].name: feed})
            profiles[("onnxruntime", "inference")] = {
                n: _ort_profile(s.end_profiling(), args.repeats + 1) for n, s in sessions.items()}
    return profiles


def format_tables(profiles: Dict[Tuple[str, str], Dict[str, Profile]], args: argparse.Namespace) -> str:
    lines = []
    for (runtime, phase), by_name in profiles.items():
        names = list(by_name)
        ops = sorted({op for p in by_name.values() for op in p},
                     key=lambda op: -sum(p.get(op, (0.0, 0))[0] for p in by_name.values()))
        what = "self CPU time" if runtime == "torch" else "kernel time"
        lines += [f"{runtime}, {phase}: {what} in ms per run [calls per run], YOLOX-{args.size} at {args.tsize}, "
                  f"{args.threads} threads, {args.repeats} runs", f"{'op':32s}" + "".join(f"{n:>22s}" for n in names)]
        for op in ops[: args.top]:
            cells = [by_name[n].get(op) for n in names]
            lines.append(f"{op[:32]:32s}" + "".join(
                f"{'-':>22s}" if c is None else f"{f'{c[0]:.2f} [{c[1]:.0f}]':>22s}" for c in cells))
        lines.append(f"{'total':32s}" + "".join(f"{sum(v[0] for v in by_name[n].values()):>22.2f}" for n in names))
        lines.append("")
    return "\n".join(lines)


def main(argv: Optional[Sequence[str]] = None) -> Dict[Tuple[str, str], Dict[str, Profile]]:
    args = parse_args(argv)
    with warnings.catch_warnings():
        # YOLOX 0.3.0's head calls the deprecated torch.cuda.amp.autocast on every training step.
        warnings.filterwarnings("ignore", message=r".*torch\.cuda\.amp\.autocast", category=FutureWarning)
        profiles = run(args)
    if args.json:
        print(json.dumps([{"runtime": rt, "phase": ph, "attention": n, "op": op, "ms_per_run": ms, "calls_per_run": c}
                          for (rt, ph), by_name in profiles.items() for n, p in by_name.items()
                          for op, (ms, c) in p.items()]))
    else:
        print(format_tables(profiles, args))
    return profiles


if __name__ == "__main__":
    main(sys.argv[1:])

"""The bench tool's ``profile`` mode: where the time goes, per op, in PyTorch and onnxruntime.

* torch: ``torch.profiler`` (CPU) over ``--repeats`` batch-1 inference runs (eval, no_grad) and, with
  ``--train-batch N``, as many training steps at batch N (as the model mode runs them), after
  ``--warmup`` untimed runs of each, round-robin across the rows; ops by self CPU time.
* onnxruntime: the model exported by the project's ONNX tool as ``bench --onnxruntime`` does, one
  session per row in a fresh process (as the model mode times it) with onnxruntime's own profiler
  (``SessionOptions.enable_profiling``) over ``--warmup`` + ``--repeats`` runs (its trace cannot
  leave the first ones out); kernel time per op type (after onnxruntime's fusions).

One table per runtime and phase: the ``--top`` ops by time summed over the rows, in ms per run
(calls per run in brackets), one column per attention, then each row's profiled total. The
profilers add their own overhead: compare columns, not these totals with the model mode's times.
"""

import argparse
import collections
import json
import tempfile
from pathlib import Path
from typing import Callable, Dict, List, Tuple

import torch

from . import benchmarking as bm
from . import model_cost

RUNTIMES: Tuple[str, ...] = ("torch", "onnxruntime")
# {op: (ms per run, calls per run)} of one attention in one runtime and phase
Profile = Dict[str, Tuple[float, float]]


def _torch_profile(fn) -> Profile:
    """Self CPU time per aten op of one call of ``fn``: {op: (ms, calls)}."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        fn()
    return {e.key: (e.self_cpu_time_total / 1e3, e.count) for e in prof.key_averages() if e.self_cpu_time_total > 0}


def profile_round_robin(fns: Dict[str, Callable[[], object]], repeats: int, warmup: int) -> Dict[str, Profile]:
    """Profile every callable ``repeats`` times, round-robin across them (as the model mode times them), after
    ``warmup`` untimed calls each; {name: {op: (ms per call, calls per call)}}."""
    sums: Dict[str, Dict[str, List[float]]] = {n: collections.defaultdict(lambda: [0.0, 0.0]) for n in fns}
    for i in range(warmup + repeats):
        for name, fn in fns.items():
            if i < warmup:
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
    images1, _ = model_cost.make_inputs(1, args.tsize, device, args.seed)
    steps = {}
    for name in args.attentions:
        bm.log(f"[build] {name}")
        steps[name] = model_cost.Steps(*model_cost.build_model(args.size, name, device), device)
    profiles: Dict[Tuple[str, str], Dict[str, Profile]] = {}
    if "torch" in args.runtimes:
        bm.log(f"[torch] inference, {args.repeats} runs per row, round-robin")
        profiles[("torch", "inference")] = profile_round_robin(
            {n: (lambda s=s: s.infer(images1)) for n, s in steps.items()}, args.repeats, args.warmup)
        if args.train_batch:
            images, targets = model_cost.make_inputs(args.train_batch, args.tsize, device, args.seed)
            bm.log(f"[torch] training step at batch {args.train_batch}, {args.repeats} runs per row, round-robin")
            profiles[("torch", f"train step (b={args.train_batch})")] = profile_round_robin(
                {n: (lambda s=s: s.train(images, targets)) for n, s in steps.items()}, args.repeats, args.warmup)
    if "onnxruntime" in args.runtimes:
        with tempfile.TemporaryDirectory(prefix="bench_profile_") as tmp:
            ort_profiles = {}
            for name, step in steps.items():
                bm.log(f"[onnxruntime] {name}: export with yolox_attn.tools.export_onnx, then profile "
                       f"{args.repeats} runs in a fresh process")
                exported = model_cost.export_onnx_row(args, name, step.model, Path(tmp))
                if "error" in exported:
                    raise SystemExit(f"{name}: {exported['error']}")
                task = model_cost.ort_task(exported["path"], args.repeats, args.warmup, profile=True)
                result = bm.run_worker(bm.worker_argv(args, task), mmap_threshold=None)
                if "error" in result:
                    raise SystemExit(f"{name}: {result['error']}")
                ort_profiles[name] = {op: (ms, calls) for op, (ms, calls) in result["ops"].items()}
            profiles[("onnxruntime", "inference")] = ort_profiles
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


def format_json(profiles: Dict[Tuple[str, str], Dict[str, Profile]]) -> str:
    """Every op of every profile as one JSON list of rows."""
    return json.dumps([{"runtime": rt, "phase": ph, "attention": n, "op": op, "ms_per_run": ms, "calls_per_run": c}
                       for (rt, ph), by_name in profiles.items() for n, p in by_name.items()
                       for op, (ms, c) in p.items()])

"""What each attention costs: params, FLOPs, time and memory, in PyTorch, onnxruntime and compiled.

    python -m yolox_attn.tools.bench [model] [--size s] [--tsize 640] [--attentions none,ca,cca,acmix,nonlocal]
        [--repeats N] [--warmup N] [--threads 2] [--train-batch 1] [--device auto|cpu|cuda] [--json]
        [--no-timing] [--onnxruntime [--no-onnxsim] [--onnx-dir DIR]] [--compile]
    python -m yolox_attn.tools.bench modules [--attentions ca,cca,acmix,nonlocal] [--channels 128]
        [--sides 80] [--batch 1] [--repeats N] [--device auto|cpu|cuda] [--json] [--no-timing]
    python -m yolox_attn.tools.bench profile [--size s] [--tsize 640] [--attentions none,cca,acmix]
        [--runtimes torch,onnxruntime] [--train-batch 2] [--repeats 3] [--top 15] [--json]
    python -m yolox_attn.tools.bench --list

Modes (``python -m yolox_attn.tools.bench MODE -h`` tells what each column is):

  model     (the default) one row per attention in a whole YOLOX model of a size: params, GFLOPs,
            inference and training-step time, peak memory; with --onnxruntime the project's ONNX
            export, its time and nodes, and onnxruntime's latency; with --compile the compile_model
            forms. Ratios to plain YOLOX.
  modules   attention modules alone on feature maps of given sizes: GFLOPs, forward+backward
            time, peak memory, as ratios to the first attention listed.
  profile   per-op time of whole models with each attention, in torch.profiler and in
            onnxruntime's own profiler.
  --list    every registered attention with its one-line description.

Timed runs go round-robin across the rows, so that a shared machine's drift hits every row alike;
memory and onnxruntime run in fresh worker processes of this tool. Progress goes to stderr, the
table (or ``--json``) to stdout.
"""

import argparse
import json
import sys
import warnings
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence

import torch

from . import benchmarking as bm

PROG = "python -m yolox_attn.tools.bench"
MODES = ("model", "modules", "profile")
RUNTIMES = ("torch", "onnxruntime")


# ------------------------------------------------------------------------- arguments
def _attention_name(text: str) -> str:
    from ..attention import canonical_name

    try:
        return canonical_name(text.strip())
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def _names(text: str) -> List[str]:
    from ..attention import attention_names

    parts = attention_names(include_aliases=False) if text.strip().lower() == "all" else text.split(",")
    return list(dict.fromkeys(_attention_name(part) for part in parts))


def _rows_with_none(text: str) -> List[str]:
    # The reference row every ratio is taken against comes first, asked for or not.
    return ["none"] + [n for n in _names(text) if n != "none"]


def _tsize(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 32 or value % 32:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a positive multiple of 32 (YOLOX's largest stride), e.g. 320, 416, 640"
        )
    return value


def _sides(text: str) -> List[int]:
    side = bm.int_at_least(1)
    sides = sorted({side(part.strip()) for part in text.split(",") if part.strip()})
    if not sides:
        raise argparse.ArgumentTypeError(f"{text!r} has no map side; give e.g. 20,40,80")
    return sides


def _runtimes(text: str) -> List[str]:
    names = [t.strip() for t in text.split(",") if t.strip()]
    bad = [n for n in names if n not in RUNTIMES]
    if bad or not names:
        raise argparse.ArgumentTypeError(f"unknown runtime(s) {bad or text!r}; allowed: {', '.join(RUNTIMES)}")
    return names


def _add_run_args(p: argparse.ArgumentParser, repeats: int, warmup: int, device: bool = True) -> None:
    """The options every mode has, and the hidden re-entry of its worker processes."""
    p.add_argument("--repeats", type=bm.int_at_least(1), default=repeats, help=f"timed runs per row (default {repeats})")
    p.add_argument("--warmup", type=bm.int_at_least(0), default=warmup,
                   help=f"untimed runs per row first (default {warmup})")
    p.add_argument("--threads", type=bm.int_at_least(1), default=2,
                   help="torch.set_num_threads and onnxruntime intra-op threads (default 2)")
    if device:
        p.add_argument("--device", default="auto", type=bm.device_arg,
                       help="auto: CUDA when available, else CPU (default auto)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true", help="print the rows as JSON instead of the table")
    p.add_argument("--worker", help=argparse.SUPPRESS)  # internal: a JSON task, run in a fresh process


def _add_model_args(p: argparse.ArgumentParser, attentions: str) -> None:
    from ..exp import YOLOX_SIZES

    p.add_argument("--size", default="s", choices=list(YOLOX_SIZES), help="YOLOX size (default s)")
    p.add_argument("--tsize", type=_tsize, default=640, help="square input side, multiple of 32 (default 640)")
    p.add_argument("--attentions", type=_rows_with_none, default=_rows_with_none(attentions),
                   help=f"comma-separated registered names (--list) or 'all' (default {attentions}; "
                        "none is always added)")


def make_parser() -> argparse.ArgumentParser:
    """The tool's parser: one sub-parser per mode."""
    from . import model_cost, module_cost, op_profile

    p = argparse.ArgumentParser(prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    modes = p.add_subparsers(dest="mode", metavar="MODE", required=True)

    def mode(name: str, doc: str, summary: str) -> argparse.ArgumentParser:
        return modes.add_parser(name, help=summary, description=doc, prog=f"{PROG} {name}",
                                formatter_class=argparse.RawDescriptionHelpFormatter)

    model = mode("model", model_cost.__doc__, "whole YOLOX models, one row per attention (the default)")
    _add_model_args(model, ",".join(model_cost.ATTENTIONS[1:]))
    model.add_argument("--list", action="store_true", help="print every registered attention and exit")
    model.add_argument("--no-timing", action="store_true", help="params and FLOPs only: no workers, no timed runs")
    model.add_argument("--train-batch", type=bm.int_at_least(1), default=1,
                       help="batch of the training step (default 1)")
    model.add_argument("--jobs", type=bm.int_at_least(1), default=1,
                       help="memory workers at once (default 1; more only if the machine holds them all)")
    model.add_argument("--onnxruntime", action="store_true",
                       help="also export each row with the project's ONNX tool (timed, verified) and time it "
                            "in onnxruntime")
    model.add_argument("--no-onnxsim", action="store_true", help="with --onnxruntime: export without simplifying")
    model.add_argument("--onnx-dir", type=Path,
                       help="with --onnxruntime: keep the .onnx files here (default: a temporary folder)")
    model.add_argument("--compile", action="store_true",
                       help="also time each row as the compile_model exp option runs it (torch.compile, static "
                            "shapes): the whole model for inference, the backbone for the training step")
    _add_run_args(model, repeats=5, warmup=2)

    modules = mode("modules", module_cost.__doc__, "attention modules alone on feature maps")
    modules.add_argument("--attentions", type=_names, default=["ca", "cca", "acmix", "nonlocal"],
                         help="comma-separated registered names or 'all'; ratios to the first "
                              "(default ca,cca,acmix,nonlocal)")
    modules.add_argument("--channels", type=bm.int_at_least(1), default=128, help="map channels (default 128)")
    modules.add_argument("--sides", type=_sides, default=[80],
                         help="comma-separated square map sides (default 80: dark3 of YOLOX at 640)")
    modules.add_argument("--batch", type=bm.int_at_least(1), default=1, help="batch size (default 1)")
    modules.add_argument("--no-timing", action="store_true", help="FLOPs only: no workers, no timed runs")
    modules.add_argument("--jobs", type=bm.int_at_least(1), default=1, help="memory workers at once (default 1)")
    _add_run_args(modules, repeats=3, warmup=1)

    profile = mode("profile", op_profile.__doc__, "per-op time in torch.profiler and onnxruntime (CPU)")
    _add_model_args(profile, "cca,acmix")
    profile.add_argument("--runtimes", type=_runtimes, default=list(RUNTIMES),
                         help=f"comma-separated, from {', '.join(RUNTIMES)} (default both)")
    profile.add_argument("--train-batch", type=bm.int_at_least(1),
                         help="also profile PyTorch training steps at this batch")
    profile.add_argument("--top", type=bm.int_at_least(1), default=15, help="ops per table (default 15)")
    _add_run_args(profile, repeats=3, warmup=1, device=False)
    # the profile of ONNX files is of the file the export tool writes by default (simplified)
    profile.set_defaults(device=torch.device("cpu"), no_onnxsim=False)
    return p


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    """Command line; without a mode word it is the model mode (the tool's spelling before it had modes).
    argparse errors name the bad value and the allowed ones."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in MODES + ("-h", "--help"):
        argv.insert(0, "model")
    parser = make_parser()
    args = parser.parse_args(argv)
    args.mode_argv = argv[1:]  # what a worker process is given back, with --worker
    if args.mode == "model" and (args.no_onnxsim or args.onnx_dir) and not args.onnxruntime:
        parser.error("--no-onnxsim and --onnx-dir go with --onnxruntime")
    if args.mode == "modules" and not args.worker:  # a worker's task comes from a parent that checked
        from ..attention import build_attention

        for name in args.attentions:  # each must take this many channels (EMA's groups, ACmix's heads)
            try:
                build_attention(name, args.channels)
            except ValueError as err:
                parser.error(f"--channels {args.channels} does not suit {name}: {err}")
    return args


# ---------------------------------------------------------------------------- worker
def run_task(args: argparse.Namespace) -> None:
    """In a worker process: run the ``--worker`` task and print its result as one JSON line."""
    from . import model_cost, module_cost

    task = json.loads(args.worker)

    def measure() -> Dict:
        if task["task"] == "ort":
            return bm.onnxruntime_runs(task["path"], args.threads, task["warmup"], task["repeats"], args.seed,
                                       task["profile"])
        torch.set_num_threads(args.threads)
        if args.mode == "modules":
            return module_cost.memory_peaks(args, task["attention"], task["side"])
        return model_cost.memory_peaks(args, task["attention"])

    bm.worker_report(measure)


# ------------------------------------------------------------------------------- run
def _print_rows(rows: List[Dict], as_json: bool, table: Callable[[List[Dict]], str]) -> None:
    print(json.dumps(rows, indent=1) if as_json else table(rows))


def main(argv: Optional[Sequence[str]] = None):
    """Entry point; returns what it printed: the rows (a list), the profiles (a dict), or [] for
    ``--list`` and a worker's task."""
    from . import model_cost, module_cost, op_profile

    args = parse_args(argv)
    if args.mode == "model" and args.list:
        from ..attention import describe_attentions

        print("\n".join(f"{name:10s} {text}" for name, text in describe_attentions().items()))
        return []
    with warnings.catch_warnings():
        # YOLOX 0.3.0's head calls the deprecated torch.cuda.amp.autocast on every training step.
        warnings.filterwarnings("ignore", message=r".*torch\.cuda\.amp\.autocast", category=FutureWarning)
        if args.worker:
            run_task(args)
            return []
        if args.mode == "modules":
            rows = module_cost.run(args)
            _print_rows(rows, args.json, module_cost.format_table)
            return rows
        if args.mode == "profile":
            profiles = op_profile.run(args)
            print(op_profile.format_json(profiles) if args.json else op_profile.format_tables(profiles, args))
            return profiles
        rows = model_cost.run(args)
        _print_rows(rows, args.json, model_cost.format_table)
        return rows


if __name__ == "__main__":
    main(sys.argv[1:])

"""Ablation: YOLOX's own train tool over attentions x seeds, paired by seed, then tables and a plot.

    python -m yolox_attn.tools.ablate -f exps/example/yolox_nano_none_shapes.py \\
        --attention none ca cca acmix --seeds 0 1 2 3 4 [--pretrain-epochs 21 | --finetune-from CKPT] \\
        [--data-seeds 0 1 2] [--jobs 2] [--launcher local|slurm|submitit-local] [--identity-init True False] \\
        [-b 8] [-d 1] [--fp16] [--output-dir DIR] [--report-only] [opts ...]

Each (attention, identity-init, seed) is one run of ``python -m yolox.tools.train -f EXP -d D -b B
-expn NAME attention A seed S output_dir DIR [opts ...]``, its output in ``DIR/logs/NAME.log``,
its folder ``DIR/NAME`` (DIR defaults to ``YOLOX_outputs/ablate_<exp file name>``). For one seed
every attention gets the same base weights, data order and augmentations, so each attention is
compared with ``none`` seed by seed.

``--finetune-from CKPT`` gives every run ``-c CKPT`` and the exp's fine-tuning schedule
(``finetune_schedule``); ``--pretrain-epochs N`` first trains plain YOLOX on the exp for N epochs
(once: a rerun reuses it) and fine-tunes every run from it. ``--jobs N`` runs N at once, each on
its own share of the CPU cores (with as many threads) or its own GPUs; ``--launcher slurm``
submits each run as a Slurm job through submitit (``--slurm partition=gpu timeout_min=120 ...``).

DIR then holds ``results.json`` (every run's evaluations, seconds, learned scalars and what was
seeded), ``summary.md`` (paired and unpaired differences to ``none`` with 95 % intervals) and
``ablation.png``. A rerun skips finished runs, resumes unfinished ones from their
``latest_ckpt.pth`` and starts the rest; a failed run is named and left out of every mean.
"""

import argparse
import ast
import dataclasses
import os
import signal
import sys
import time
from typing import Dict, List, Sequence

from ..ablation import (BASELINE, LAUNCHERS, RESERVED_OPTS, Grid, Run, as_opts, execute, make_launcher, plan_runs,
                        run_grid, run_record, write_reports)
from ..attention import canonical_name
from ..preflight import load_exp
from ..stopping import StopSignals, signal_name
from .benchmarking import int_at_least

# The tool's options by how many values they take (the rest are flags); see split_argv.
ONE_VALUE = ("-f", "--exp_file", "-b", "--batch-size", "-d", "--devices", "--output-dir", "--finetune-from",
             "--pretrain-epochs", "--pretrain-seed", "--jobs", "--launcher")
MULTI_VALUE = ("--attention", "--seeds", "--data-seeds", "--identity-init", "--slurm")


def _bool(text: str) -> bool:
    if text not in ("True", "False"):
        raise argparse.ArgumentTypeError(f"must be True or False, got {text!r}")
    return text == "True"


def _attention(text: str) -> str:
    try:
        return canonical_name(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


_positive, _seed = int_at_least(1), int_at_least(0)


def _parameter(text: str):
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"must be key=value, got {text!r}")
    try:
        return key, ast.literal_eval(value)
    except (ValueError, SyntaxError):
        return key, value


def make_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m yolox_attn.tools.ablate", description=__doc__.split("\n\n")[0])
    p.add_argument("-f", "--exp_file", required=True, help="YOLOX exp file (an AttentionExp)")
    p.add_argument("--attention", nargs="+", type=_attention, default=[BASELINE, "ca", "cca", "acmix"],
                   help="attentions to compare (default: none ca cca acmix)")
    p.add_argument("--seeds", nargs="+", type=_seed, default=[0, 1, 2], help="seeds (default: 0 1 2)")
    p.add_argument("--data-seeds", nargs="+", type=_seed, default=None,
                   help="data seeds as an axis of their own (--seeds then sets the initial weights only); "
                        "the summary splits each attention's spread between the two")
    p.add_argument("--identity-init", nargs="+", type=_bool, default=None, metavar="True|False",
                   help="attention_identity_init values as a grid axis (default: the exp's own)")
    p.add_argument("-b", "--batch-size", type=_positive, default=8, help="batch size of every run (default 8)")
    p.add_argument("-d", "--devices", type=_positive, default=1, help="devices per run (default 1)")
    p.add_argument("--fp16", action="store_true", help="pass --fp16 to every run")
    p.add_argument("--output-dir", default=None, help="default: YOLOX_outputs/ablate_<exp file name>")
    start = p.add_mutually_exclusive_group()
    start.add_argument("--finetune-from", metavar="CKPT", default=None,
                       help="every run continues from this checkpoint with the exp's fine-tuning schedule")
    start.add_argument("--pretrain-epochs", type=_positive, default=None, metavar="N",
                       help="first train plain YOLOX for N epochs (once), then fine-tune every run from it")
    p.add_argument("--pretrain-seed", type=_seed, default=1000, help="seed of the pretraining run (default 1000)")
    p.add_argument("--jobs", type=_positive, default=1,
                   help="runs at once; locally each gets its own cores (threads to match) or GPUs (default 1)")
    p.add_argument("--launcher", choices=LAUNCHERS, default="local",
                   help="local: processes here; slurm: a Slurm job per run through submitit; "
                        "submitit-local: submitit's local executor (default local)")
    p.add_argument("--slurm", nargs="+", type=_parameter, default=[], metavar="KEY=VALUE",
                   help="submitit job parameters, e.g. partition=gpu timeout_min=120 gpus_per_node=1")
    p.add_argument("--report-only", action="store_true",
                   help="write the reports from the runs already in the output folder; start none")
    p.epilog = "Anything after the tool's own arguments is exp options for every run, e.g. max_epoch 7."
    return p


def _fits(option: str, token: str) -> bool:
    """Whether ``token`` is a value of the multi-value ``option``."""
    if option in ("--seeds", "--data-seeds"):
        return token.lstrip("-").isdigit()
    if option == "--identity-init":
        return token in ("True", "False")
    if option == "--slurm":
        return "=" in token
    try:
        canonical_name(token)
        return True
    except ValueError:
        return False


def split_argv(argv: Sequence[str]):
    """The tool's own arguments and the trailing exp opts.

    A multi-value option (``--attention``, ``--seeds``, ``--identity-init``, ``--slurm``) takes the
    tokens that fit it; the first that does not, or a bare token after a one-value option's value,
    starts the opts (argparse alone would read ``--seeds 0 1 max_epoch 7`` as four seeds).
    """
    own, option, pending = [], None, 0
    for i, token in enumerate(argv):
        if token == "--":
            return own, list(argv[i + 1:])
        if pending:
            own.append(token)
            pending -= 1
        elif token.startswith("-") and not token.lstrip("-").isdigit():
            own.append(token)
            option = token if token in MULTI_VALUE else None
            pending = int(token in ONE_VALUE)
        elif option and _fits(option, token):
            own.append(token)
        else:
            return own, list(argv[i:])
    return own, []


def check_opts(opts: Sequence[str]) -> List[str]:
    opts = list(opts)
    if len(opts) % 2:
        raise SystemExit(f"ablate: opts must be key value pairs, got {opts!r}")
    reserved = [k for k in opts[0::2] if k in RESERVED_OPTS]
    if reserved:
        raise SystemExit(f"ablate: {reserved} are set per run by the tool; use --attention/--seeds/"
                         f"--data-seeds/--identity-init/--output-dir instead")
    return opts


def load_exp_with(exp_file: str, opts: Sequence[str]):
    """The exp with ``opts`` merged, so a bad file or option stops the tool before any run starts."""
    try:
        exp = load_exp(exp_file)
        exp.merge(list(opts))
    except ValueError as err:  # UsageError included
        raise SystemExit(f"ablate: {err}") from None
    return exp


def finetune_opts(exp) -> List[str]:
    """The exp's fine-tuning schedule as opts, each key checked to be an exp attribute."""
    schedule = getattr(exp, "finetune_schedule", {})
    unknown = [k for k in schedule if not hasattr(exp, k) or k in RESERVED_OPTS]
    if not isinstance(schedule, dict) or unknown:
        raise SystemExit(f"ablate: the exp's finetune_schedule must be a dict of exp attributes; bad keys: {unknown}")
    return as_opts(schedule)


def _describe(position: str, run: Run, record: Dict, seconds: float) -> str:
    head = f"[ablate] {position}{run.name}:"
    if record["status"] == "done":
        how = "finished earlier" if record["returncode"] is None else f"done in {seconds:.0f} s"
        return f"{head} {how}, AP50 {record['final_ap50']:.3f}, AP {record['final_ap']:.3f}"
    if record["status"] == "unfinished":
        return f"{head} unfinished (no end record yet) -> {record['log']}"
    if record["status"] == "stopped":
        return f"{head} stopped at a checkpoint (a rerun resumes it): {record['error']} -> {record['log']}"
    return f"{head} FAILED (exit {record['returncode']}): {record['error']} -> {record['log']}"


def main(argv=None) -> int:
    launchers = []  # the one run_ablation makes: a stop signal stops its runs at a checkpoint
    notice = (lambda signum: f"[ablate] {signal_name(signum)}: the running trainings stop at their next iteration, "
                             f"with a checkpoint; no other starts (Ctrl-C again stops at once)")
    try:
        with StopSignals(notice, lambda signum: [launcher.stop() for launcher in launchers]) as stop:
            code = run_ablation(argv, launchers.append)
    except KeyboardInterrupt:
        print("[ablate] stopped at once by a second Ctrl-C; rerun the same command to continue each run from its "
              "last checkpoint", flush=True)
        return 128 + signal.SIGINT
    if stop.requested:
        print(f"[ablate] stopped by {signal_name(stop.requested)}; the runs that were training stopped at a "
              f"checkpoint: rerun the same command to continue", flush=True)
        return 128 + stop.requested
    return code


def run_ablation(argv, started) -> int:
    """The tool's work; ``started(launcher)`` is told the launcher it makes."""
    call_start = time.time()
    argv = sys.argv[1:] if argv is None else list(argv)
    own, opts = split_argv(argv)
    args = make_parser().parse_args(own)
    opts = check_opts(opts)
    if args.finetune_from is not None and not os.path.isfile(args.finetune_from):
        raise SystemExit(f"ablate: checkpoint {args.finetune_from!r} (--finetune-from) does not exist")
    if args.slurm and args.launcher == "local":
        raise SystemExit("ablate: --slurm parameters need --launcher slurm or submitit-local")
    exp = load_exp_with(args.exp_file, opts)
    exp_name = os.path.splitext(os.path.basename(args.exp_file))[0]
    output_dir = args.output_dir or os.path.join("YOLOX_outputs", f"ablate_{exp_name}")
    os.makedirs(output_dir, exist_ok=True)
    command = "python -m yolox_attn.tools.ablate " + " ".join(argv)
    pretrain = Run(BASELINE, args.pretrain_seed, pretrain_epochs=args.pretrain_epochs) if args.pretrain_epochs else None
    grid = Grid(args.exp_file, output_dir, args.batch_size, args.devices, args.fp16, tuple(opts))
    if pretrain or args.finetune_from:
        checkpoint = args.finetune_from or grid.latest(pretrain)
        grid = dataclasses.replace(grid, checkpoint=checkpoint, finetune_opts=tuple(finetune_opts(exp)))
    try:
        launch = make_launcher(args.launcher, args.jobs, args.devices, os.path.join(output_dir, "submitit"),
                               dict(args.slurm))
        started(launch)
    except ValueError as err:
        raise SystemExit(f"ablate: {err}") from None
    setup = {"launcher": args.launcher, "jobs": args.jobs, "slots": launch.describe(), "checkpoint": grid.checkpoint,
             "finetune_opts": list(grid.finetune_opts), "opts": opts}

    pretrain_record = None
    if pretrain:
        started = time.time()
        pretrain_record = (run_record(grid, pretrain, None) if args.report_only
                           else execute(grid, pretrain, launch, alone=True))
        print(_describe("", pretrain, pretrain_record, time.time() - started), flush=True)
        pretrain_record.update(checkpoint=grid.checkpoint, what=f"plain YOLOX trained {args.pretrain_epochs} "
                                                                 f"epoch(s) here, seed {args.pretrain_seed}")
        if pretrain_record["status"] != "done" and not args.report_only:
            print(f"[ablate] pretraining did not finish; no run starts. See {pretrain_record['log']}", flush=True)
            return 1
    elif args.finetune_from:
        pretrain_record = {"checkpoint": args.finetune_from, "what": "--finetune-from"}

    runs = plan_runs(args.attention, args.seeds, args.identity_init, args.data_seeds)
    if args.report_only:
        records = []
        for i, run in enumerate(runs, 1):
            if not os.path.isdir(grid.folder(run)):
                print(f"[ablate] {i}/{len(runs)} {run.name}: not run", flush=True)
                continue
            records.append(run_record(grid, run, None))
            print(_describe(f"{i}/{len(runs)} ", run, records[-1], 0), flush=True)
    else:
        def on_done(i, run, record, seconds, so_far):
            print(_describe(f"{i + 1}/{len(runs)} ", run, record, seconds), flush=True)
            write_reports(so_far, output_dir, command, setup, pretrain_record)  # a partial ablation is readable

        records = run_grid(grid, runs, launch, args.jobs, on_done)
    setup["call_seconds"] = round(time.time() - call_start)  # this call's wall time, pretraining included
    write_reports(records, output_dir, command, setup, pretrain_record)
    unfinished = {status: [r["name"] for r in records if r["status"] == status]
                  for status in ("failed", "stopped", "unfinished")}
    print(f"[ablate] {sum(r['status'] == 'done' for r in records)} of {len(records)} runs finished"
          + "".join(f"; {status}: {', '.join(names)}" for status, names in unfinished.items() if names)
          + f" ({setup['call_seconds']} s). Summary: {os.path.join(output_dir, 'summary.md')}", flush=True)
    return 1 if any(unfinished.values()) else 0


if __name__ == "__main__":
    sys.exit(main())

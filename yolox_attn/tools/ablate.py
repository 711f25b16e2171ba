"""Ablation: YOLOX's own train tool over attentions x seeds, then a table, a test and a plot.

    python -m yolox_attn.tools.ablate -f exps/example/yolox_nano_none_shapes.py \\
        --attention none ca cca acmix --seeds 0 1 2 [--identity-init True False] \\
        [-b 8] [-d 1] [--fp16] [--output-dir DIR] [opts ...]

Each (attention, identity-init, seed) is one run of ``python -m yolox.tools.train -f EXP -d D
-b B -expn NAME attention A seed S output_dir DIR [attention_identity_init I] [opts ...]`` in a
subprocess, its output kept in ``DIR/logs/NAME.log``; the run's own folder is ``DIR/NAME``, where
the trainer writes ``metrics.jsonl`` (AP per evaluation, seconds, learned scalars). DIR defaults
to ``YOLOX_outputs/ablate_<exp_name>``. It then holds:

* ``results.json``: one record per run (every evaluation's AP50/AP, final AP50/AP, training and
  wall seconds, seconds per iteration, the final gates/gamma/rates per level, status);
* ``summary.md``: per attention the mean +- std over seeds of the final AP50 and AP, the
  difference to ``none`` with a 95 % Welch interval and p-value, failed runs by name;
* ``ablation.png``: AP50 against epoch and against wall-clock seconds, mean and min-max band.

A rerun skips finished runs, resumes unfinished ones from their ``latest_ckpt.pth`` and starts
the rest. A failed run is reported by name and left out of every mean.
"""

import argparse
import json
import math
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence

from ..attention import ResidualGate, canonical_name
from ..monitor import read_jsonl
from ..trainer import METRICS_FILE

BASELINE = "none"
RESERVED_OPTS = ("attention", "seed", "output_dir", "attention_identity_init")
# The tool's options by how many values they take (the rest are flags); see split_argv.
ONE_VALUE = ("-f", "--exp_file", "-b", "--batch-size", "-d", "--devices", "--output-dir")
MULTI_VALUE = ("--attention", "--seeds", "--identity-init")


@dataclass(frozen=True)
class Run:
    attention: str
    seed: int
    identity_init: Optional[bool]  # None: the exp's own setting

    @property
    def group(self) -> str:
        """The row of the summary: the attention, with its init where that is a grid axis."""
        if self.identity_init is None:
            return self.attention
        return f"{self.attention} ({'gated' if self.identity_init else 'paper'})"

    @property
    def name(self) -> str:
        init = "" if self.identity_init is None else ("_gated" if self.identity_init else "_paper")
        return f"{self.attention}{init}_seed{self.seed}"


def _bool(text: str) -> bool:
    if text not in ("True", "False"):
        raise argparse.ArgumentTypeError(f"must be True or False, got {text!r}")
    return text == "True"


def _attention(text: str) -> str:
    try:
        return canonical_name(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def make_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m yolox_attn.tools.ablate", description=__doc__.split("\n\n")[0])
    p.add_argument("-f", "--exp_file", required=True, help="YOLOX exp file (an AttentionExp)")
    p.add_argument("--attention", nargs="+", type=_attention, default=[BASELINE, "ca", "cca", "acmix"],
                   help="attentions to compare (default: none ca cca acmix)")
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2], help="seeds (default: 0 1 2)")
    p.add_argument("--identity-init", nargs="+", type=_bool, default=None, metavar="True|False",
                   help="attention_identity_init values as a grid axis (default: the exp's own)")
    p.add_argument("-b", "--batch-size", type=int, default=8, help="batch size of every run (default 8)")
    p.add_argument("-d", "--devices", type=int, default=1, help="devices per run (default 1)")
    p.add_argument("--fp16", action="store_true", help="pass --fp16 to every run")
    p.add_argument("--output-dir", default=None, help="default: YOLOX_outputs/ablate_<exp_name>")
    p.add_argument("--report-only", action="store_true",
                   help="write the reports from the runs already in the output folder; start none")
    p.epilog = "Anything after the tool's own arguments is exp options for every run, e.g. max_epoch 7."
    return p


def _fits(option: str, token: str) -> bool:
    """Whether ``token`` is a value of the multi-value ``option``."""
    if option == "--seeds":
        return token.lstrip("-").isdigit()
    if option == "--identity-init":
        return token in ("True", "False")
    try:
        canonical_name(token)
        return True
    except ValueError:
        return False


def split_argv(argv: Sequence[str]):
    """The tool's own arguments and the trailing exp opts.

    A multi-value option (``--attention``, ``--seeds``, ``--identity-init``) takes the tokens that
    fit it; the first that does not, or a bare token after a one-value option's value, starts
    the opts (argparse alone would read ``--seeds 0 1 max_epoch 7`` as four seeds).
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


def plan_runs(attentions: Sequence[str], seeds: Sequence[int], inits: Optional[Sequence[bool]]) -> List[Run]:
    """The grid in run order: seed-major, so a partial ablation already compares every attention."""
    init_axis = list(dict.fromkeys(inits)) if inits else [None]
    return [Run(a, s, i) for s in dict.fromkeys(seeds) for a in dict.fromkeys(attentions)
            # the axis changes only gated attentions: the others run once per seed
            for i in (init_axis if is_gated(a) else [None])]


def is_gated(attention: str) -> bool:
    """Whether ``attention_identity_init`` changes this attention (it gets a residual gate)."""
    from ..neck import build_level_attention

    return attention != BASELINE and isinstance(build_level_attention(attention, 64, identity_init=True), ResidualGate)


def check_opts(opts: Sequence[str]) -> List[str]:
    opts = list(opts)
    if len(opts) % 2:
        raise SystemExit(f"ablate: opts must be key value pairs, got {opts!r}")
    reserved = [k for k in opts[0::2] if k in RESERVED_OPTS]
    if reserved:
        raise SystemExit(f"ablate: {reserved} are set per run by the tool; use --attention/--seeds/"
                         f"--identity-init/--output-dir instead")
    return opts


def train_command(args, run: Run, output_dir: str, opts: Sequence[str], resume: bool) -> List[str]:
    cmd = [sys.executable, "-m", "yolox.tools.train", "-f", args.exp_file, "-d", str(args.devices),
           "-b", str(args.batch_size), "-expn", run.name]
    cmd += ["--fp16"] * args.fp16 + ["--resume"] * resume
    cmd += ["attention", run.attention, "seed", str(run.seed), "output_dir", output_dir]
    if run.identity_init is not None:
        cmd += ["attention_identity_init", str(run.identity_init)]
    return cmd + list(opts)


def _last_line(path: str) -> str:
    try:
        with open(path, errors="replace") as f:
            lines = [line.strip() for line in f if line.strip()]
    except OSError:
        return ""
    return lines[-1] if lines else ""


def run_record(run: Run, output_dir: str, returncode: Optional[int]) -> Dict:
    """What a run's metrics say: "done" (its end record is there), "failed" (its process ended
    without one) or "unfinished" (``returncode`` None: no process of this call ran it)."""
    records = read_jsonl(os.path.join(output_dir, run.name, METRICS_FILE))
    evals = [{k: r[k] for k in ("epoch", "ap50", "ap", "wall_seconds", "train_seconds")}
             for r in records if r["event"] == "eval"]
    end = next((r for r in reversed(records) if r["event"] == "end"), None)
    log = os.path.join(output_dir, "logs", f"{run.name}.log")
    done = end is not None and returncode in (0, None) and bool(evals)
    status = "done" if done else "unfinished" if returncode is None else "failed"
    record = {"name": run.name, "attention": run.attention, "group": run.group, "seed": run.seed,
              "identity_init": run.identity_init, "status": status,
              "returncode": returncode, "log": log, "evals": evals,
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


def execute(args, run: Run, output_dir: str, opts: Sequence[str]) -> Dict:
    """Run (or skip, or resume) one training; return its record."""
    previous = run_record(run, output_dir, None)
    if previous["status"] == "done":
        return previous
    resume = os.path.isfile(os.path.join(output_dir, run.name, "latest_ckpt.pth"))
    log = previous["log"]
    os.makedirs(os.path.dirname(log), exist_ok=True)
    with open(log, "a") as f:
        cmd = train_command(args, run, output_dir, opts, resume)
        f.write(f"$ {' '.join(cmd)}\n")
        f.flush()
        returncode = subprocess.call(cmd, stdout=f, stderr=subprocess.STDOUT)
    return run_record(run, output_dir, returncode)


# ------------------------------------------------------------------------------ statistics
def mean_std(values: Sequence[float]):
    n = len(values)
    if n == 0:
        return None, None
    mean = sum(values) / n
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1)) if n > 1 else None
    return mean, std


def welch(a: Sequence[float], b: Sequence[float]) -> Optional[Dict[str, float]]:
    """Mean(a) - mean(b) with its 95 % Welch interval and two-sided p-value; None below 2 + 2 runs."""
    from scipy import stats

    if len(a) < 2 or len(b) < 2:
        return None
    (ma, sa), (mb, sb) = mean_std(a), mean_std(b)
    diff = ma - mb
    va, vb = sa ** 2 / len(a), sb ** 2 / len(b)
    se = math.sqrt(va + vb)
    if se == 0:
        return {"diff": diff, "low": diff, "high": diff, "p": 0.0 if diff else 1.0}
    df = (va + vb) ** 2 / (va ** 2 / (len(a) - 1) + vb ** 2 / (len(b) - 1))
    half = stats.t.ppf(0.975, df) * se
    p = 2 * stats.t.sf(abs(diff) / se, df)
    return {"diff": diff, "low": diff - half, "high": diff + half, "p": float(p)}


def summarize(records: Sequence[Dict]) -> List[Dict]:
    """One row per group (in first-seen order) over its finished runs."""
    groups = list(dict.fromkeys(r["group"] for r in records))
    done = {g: [r for r in records if r["group"] == g and r["status"] == "done"] for g in groups}
    base = BASELINE if BASELINE in groups else None
    base_ap50 = [r["final_ap50"] for r in done.get(base, [])]
    rows = []
    for g in groups:
        ap50 = [r["final_ap50"] for r in done[g]]
        ap = [r["final_ap"] for r in done[g]]
        row = {"group": g, "runs": len(ap50), "left_out": [f"{r['name']} ({r['status']})" for r in records
                                                            if r["group"] == g and r["status"] != "done"],
               "ap50": mean_std(ap50), "ap": mean_std(ap),
               "seconds": mean_std([r["wall_seconds"] for r in done[g]])[0],
               "vs_none": welch(ap50, base_ap50) if base and g != base else None}
        if base and g != base and base_ap50 and ap50:
            base_mean, base_std = mean_std(base_ap50)
            row["goal_met"] = None if base_std is None else row["ap50"][0] >= base_mean - base_std
        rows.append(row)
    return rows


def _pm(mean_std_pair, digits: int = 3) -> str:
    mean, std = mean_std_pair
    if mean is None:
        return "-"
    return f"{mean:.{digits}f}" + ("" if std is None else f" ± {std:.{digits}f}")


def verdict(test: Optional[Dict]) -> str:
    if test is None:
        return "needs >= 2 finished runs on both sides"
    if test["low"] > 0:
        return "above none, beyond the seed noise"
    if test["high"] < 0:
        return "below none, beyond the seed noise"
    return "within the seed noise"


def summary_markdown(rows: Sequence[Dict], command: str) -> str:
    lines = [f"# Ablation\n\n`{command}`\n",
             "| attention | runs | final AP50 (mean ± std) | final AP | Δ AP50 vs none [95 % CI], p | "
             "verdict | AP50 >= none's mean - std | wall s / run |",
             "|---|---|---|---|---|---|---|---|"]
    for row in rows:
        test = row["vs_none"]
        diff = "-" if test is None else f"{test['diff']:+.3f} [{test['low']:+.3f}, {test['high']:+.3f}], p={test['p']:.2f}"
        goal = {True: "yes", False: "no", None: "-"}[row.get("goal_met")]
        judged = "-" if row["group"] == BASELINE else verdict(test)
        seconds = "-" if row["seconds"] is None else f"{row['seconds']:.0f}"
        lines.append(f"| {row['group']} | {row['runs']} | {_pm(row['ap50'])} | {_pm(row['ap'])} | {diff} | "
                     f"{judged} | {goal} | {seconds} |")
    left_out = [name for row in rows for name in row["left_out"]]
    lines.append("")
    lines.append("Std is over seeds (n - 1); the interval is Welch's t interval of the difference in mean final "
                 "AP50 to `none`; finished runs only.")
    if left_out:
        lines.append(f"\nRuns not averaged: {', '.join(left_out)} (see `logs/<name>.log`).")
    return "\n".join(lines) + "\n"


def plot(records: Sequence[Dict], path: str) -> None:
    """AP50 against epoch and against wall seconds: each group's mean, its min-max band."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    groups = list(dict.fromkeys(r["group"] for r in records))
    for g in groups:
        runs = [r for r in records if r["group"] == g and r["status"] == "done"]
        if not runs:
            continue
        epochs = sorted(set.intersection(*[{e["epoch"] for e in r["evals"]} for r in runs]))
        if not epochs:
            continue
        by_epoch = [[next(e for e in r["evals"] if e["epoch"] == ep) for r in runs] for ep in epochs]
        mean = [sum(e["ap50"] for e in es) / len(es) for es in by_epoch]
        low = [min(e["ap50"] for e in es) for es in by_epoch]
        high = [max(e["ap50"] for e in es) for es in by_epoch]
        seconds = [sum(e["wall_seconds"] for e in es) / len(es) for es in by_epoch]
        label = f"{g} (n={len(runs)})"
        for ax, x in ((axes[0], epochs), (axes[1], seconds)):
            line, = ax.plot(x, mean, marker="o", label=label)
            ax.fill_between(x, low, high, color=line.get_color(), alpha=0.2)
    axes[0].set_xlabel("epoch")
    axes[1].set_xlabel("wall-clock seconds since the start of training (mean over seeds)")
    for ax in axes:
        ax.set_ylabel("COCO AP50 (val)")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle("AP50 per evaluation: mean over seeds, band = min-max")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_reports(records: Sequence[Dict], output_dir: str, command: str) -> None:
    with open(os.path.join(output_dir, "results.json"), "w") as f:
        json.dump({"command": command, "runs": list(records)}, f, indent=1)
    with open(os.path.join(output_dir, "summary.md"), "w") as f:
        f.write(summary_markdown(summarize(records), command))
    plot(records, os.path.join(output_dir, "ablation.png"))


def _describe(i: int, total: int, run: Run, record: Dict, seconds: float) -> str:
    head = f"[ablate] {i}/{total} {run.name}:"
    if record["status"] == "done":
        how = "finished earlier" if record["returncode"] is None else f"done in {seconds:.0f} s"
        return f"{head} {how}, AP50 {record['final_ap50']:.3f}, AP {record['final_ap']:.3f}"
    if record["status"] == "unfinished":
        return f"{head} unfinished (no end record yet) -> {record['log']}"
    return f"{head} FAILED (exit {record['returncode']}): {record['error']} -> {record['log']}"


def main(argv=None) -> int:
    parser = make_parser()
    argv = sys.argv[1:] if argv is None else list(argv)
    own, opts = split_argv(argv)
    args = parser.parse_args(own)
    opts = check_opts(opts)
    if not os.path.isfile(args.exp_file):
        raise SystemExit(f"ablate: exp file {args.exp_file!r} does not exist")
    if args.batch_size < 1 or args.devices < 1:
        raise SystemExit(f"ablate: -b and -d must be >= 1, got -b {args.batch_size} -d {args.devices}")
    exp_name = os.path.splitext(os.path.basename(args.exp_file))[0]
    output_dir = args.output_dir or os.path.join("YOLOX_outputs", f"ablate_{exp_name}")
    os.makedirs(output_dir, exist_ok=True)
    command = "python -m yolox_attn.tools.ablate " + " ".join(argv)
    runs = plan_runs(args.attention, args.seeds, args.identity_init)
    records = []
    for i, run in enumerate(runs, 1):
        if args.report_only and not os.path.isdir(os.path.join(output_dir, run.name)):
            print(f"[ablate] {i}/{len(runs)} {run.name}: not run", flush=True)
            continue
        start = time.time()
        records.append(run_record(run, output_dir, None) if args.report_only else execute(args, run, output_dir, opts))
        print(_describe(i, len(runs), run, records[-1], time.time() - start), flush=True)
        if not args.report_only:
            write_reports(records, output_dir, command)  # a partial ablation is readable too
    write_reports(records, output_dir, command)
    failed = [r["name"] for r in records if r["status"] != "done"]
    print(f"[ablate] {len(records) - len(failed)} of {len(records)} runs finished"
          + (f"; failed: {', '.join(failed)}" if failed else "")
          + f". Summary: {os.path.join(output_dir, 'summary.md')}", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

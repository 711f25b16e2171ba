"""The ablation's reports: ``results.json``, ``summary.md`` and ``ablation.png``."""

import json
import os
from typing import Dict, Iterable, Mapping, Optional, Sequence, Tuple

from ..atomic import atomic_open, atomic_write_text
from ..evaluator import METRICS
from .stats import BASELINE, summarize, verdict


def _pm(mean_std_pair, digits: int = 3) -> str:
    mean, std = mean_std_pair
    if mean is None:
        return "-"
    return f"{mean:.{digits}f}" + ("" if std is None else f" ± {std:.{digits}f}")


def _interval_text(test: Optional[Mapping], p: bool = True) -> str:
    if test is None:
        return "-"
    if test.get("low") is None:
        return f"{test['diff']:+.3f}"
    return f"{test['diff']:+.3f} [{test['low']:+.3f}, {test['high']:+.3f}]" + (f", p={test['p']:.2f}" if p else "")


def pair_label(pair) -> str:
    """``3`` for seed 3, ``3/1`` for seed 3 with data seed 1."""
    return "/".join(map(str, pair)) if isinstance(pair, (tuple, list)) else str(pair)


def markdown_table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    """A Markdown table; "" when there are no rows."""
    rows = [list(row) for row in rows]
    if not rows:
        return ""
    lines = [header, ["---"] * len(header), *rows]
    return "\n".join("| " + " | ".join(cells) + " |" for cells in lines)


def variance_table(rows: Sequence[Dict]) -> str:
    """Each group's spread split between seed, data seed and their interaction (needs both axes)."""

    def cells(row):
        v = row["variance"]
        share = {k: f"{v[k] ** 0.5:.3f} ({v[k] / v['total']:.0%})" if v["total"] else "0"
                 for k in ("seed", "data", "rest")}
        return [row["group"], f"{v['seeds']} x {v['data_seeds']}", f"{v['std_all']:.3f}", share["seed"],
                share["data"], share["rest"], f"{v['total'] ** 0.5:.3f}"]

    return markdown_table(["attention", "seeds x data seeds", "std of all runs", "initial weights (seed)",
                           "data order and augmentations (data seed)", "interaction", "std, seed and data random"],
                          (cells(row) for row in rows if row["variance"] is not None))


def paired_table(rows: Sequence[Dict]) -> str:
    """Each attention against ``none`` seed by seed: the lead table of the summary."""

    def cells(row):
        test = row["paired"]
        cost = "-" if row["seconds"] is None else f"{row['seconds']:.0f}"
        if row["seconds_ratio"]:
            cost += f" ({row['seconds_ratio']:.2f}x)"
        return [row["group"], str(test["n"]),
                ", ".join(f"{pair_label(s)}: {d:+.3f}" for s, d in zip(test["seeds"], test["diffs"])),
                _interval_text(test), f"{test['wins']}/{test['n']}", verdict(test),
                _interval_text(row["paired_ap"], p=False), cost]

    return markdown_table(["attention", "seeds", "Δ AP50 per seed", "mean Δ AP50 [95 % CI], p", "seeds won",
                           "verdict", "mean Δ AP [95 % CI]", "wall s / run (vs none)"],
                          (cells(row) for row in rows if row["paired"] is not None))


def unpaired_table(rows: Sequence[Dict]) -> str:
    def cells(row):
        return [row["group"], str(row["runs"]), _pm(row["ap50"]), _pm(row["ap"]), _interval_text(row["vs_none"]),
                "-" if row["group"] == BASELINE else verdict(row["vs_none"]),
                {True: "yes", False: "no", None: "-"}[row.get("goal_met")],
                "-" if row["seconds"] is None else f"{row['seconds']:.0f}"]

    return markdown_table(["attention", "runs", "final AP50 (mean ± std)", "final AP", "Δ AP50 vs none [95 % CI], p",
                           "verdict", "AP50 >= none's mean - std", "wall s / run"], map(cells, rows))


def metric_names(records: Sequence[Dict]) -> Tuple[str, str]:
    """What "AP" and "AP50" are in these runs' records: COCO's, or VOC's (a VOC exp's)."""
    metrics = {e.get("metric") or "coco" for r in records for e in r["evals"]}
    if len(metrics) > 1:
        raise ValueError(f"the runs were evaluated with different metrics {sorted(metrics)}; compare like with like")
    return METRICS[metrics.pop() if metrics else "coco"]


def summary_markdown(rows: Sequence[Dict], command: str, pretrain: Optional[Mapping] = None,
                     metric: Tuple[str, str] = METRICS["coco"]) -> str:
    parts = [f"# Ablation\n\n`{command}`\n", f"AP is {metric[0]}, AP50 {metric[1]} (YOLOX's evaluation of the exp).\n"]
    if pretrain is not None:
        ap50 = "-" if pretrain.get("final_ap50") is None else f"{pretrain['final_ap50']:.3f}"
        parts.append(f"Every run continues from `{pretrain['checkpoint']}` ({pretrain['what']}, AP50 {ap50}).\n")
    paired = paired_table(rows)
    if paired:
        parts += ["## Paired by seed\n", paired, "",
                  "Each seed gives every attention the same base weights, data order and augmentations; "
                  "the interval is the paired t interval (scipy's `ttest_rel`) of the mean difference in final "
                  "AP50 to `none`; seeds won: where the attention's final AP50 is higher.\n",
                  "## Unpaired\n"]
    parts += [unpaired_table(rows), "",
              "Std is over seeds (n - 1); the interval is Welch's t interval (scipy's `ttest_ind`, unequal "
              "variances) of the difference in mean final AP50 to `none`; finished runs only."]
    variance = variance_table(rows)
    if variance:
        parts += ["", "## Where the spread comes from\n", variance, "",
                  "Two-way random-effects ANOVA of final AP50 over the seed x data-seed table (one run per cell): "
                  "each column is a standard deviation (its share of the variance); the last is what one run "
                  "with both seeds drawn at random varies by."]
    left_out = [name for row in rows for name in row["left_out"]]
    if left_out:
        parts.append(f"\nRuns not averaged: {', '.join(left_out)} (see `logs/<name>.log`).")
    return "\n".join(parts) + "\n"


def plot(records: Sequence[Dict], path: str, metric: Tuple[str, str] = METRICS["coco"]) -> None:
    """AP50 against epoch and against wall seconds: each group's mean, its min-max band."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for g in dict.fromkeys(r["group"] for r in records):
        runs = [r for r in records if r["group"] == g and r["status"] == "done"]
        epochs = sorted(set.intersection(*[{e["epoch"] for e in r["evals"]} for r in runs])) if runs else []
        if not epochs:
            continue
        by_epoch = [[next(e for e in r["evals"] if e["epoch"] == ep) for r in runs] for ep in epochs]
        mean = [sum(e["ap50"] for e in es) / len(es) for es in by_epoch]
        low = [min(e["ap50"] for e in es) for es in by_epoch]
        high = [max(e["ap50"] for e in es) for es in by_epoch]
        seconds = [sum(e["wall_seconds"] for e in es) / len(es) for es in by_epoch]
        for ax, x in ((axes[0], epochs), (axes[1], seconds)):
            line, = ax.plot(x, mean, marker="o", label=f"{g} (n={len(runs)})")
            ax.fill_between(x, low, high, color=line.get_color(), alpha=0.2)
    axes[0].set_xlabel("epoch")
    axes[1].set_xlabel("wall-clock seconds since the start of training (mean over seeds)")
    for ax in axes:
        ax.set_ylabel(f"{metric[1]} (evaluation set)")
        ax.grid(alpha=0.3)
    if axes[0].get_legend_handles_labels()[0]:  # a grid with no finished run yet has no lines
        axes[0].legend(fontsize=8)
    fig.suptitle("AP50 per evaluation: mean over seeds, band = min-max")
    fig.tight_layout()
    with atomic_open(path, "wb") as f:
        fig.savefig(f, dpi=110, format="png")
    plt.close(fig)


def write_reports(records: Sequence[Dict], output_dir: str, command: str, setup: Mapping,
                  pretrain: Optional[Mapping] = None) -> None:
    """``results.json`` (every record, the grid's set-up), ``summary.md`` and ``ablation.png``, each
    written whole or not at all (a grid may be stopped at any moment)."""
    metric = metric_names(records)
    results = {"command": command, "setup": dict(setup), "pretrain": pretrain, "runs": list(records)}
    atomic_write_text(os.path.join(output_dir, "results.json"), json.dumps(results, indent=1))
    atomic_write_text(os.path.join(output_dir, "summary.md"),
                      summary_markdown(summarize(records), command, pretrain, metric))
    plot(records, os.path.join(output_dir, "ablation.png"), metric)

"""The ablation's statistics: per-group means, and each attention's difference to ``none``,
paired by seed (``ttest_rel``) and unpaired (Welch's ``ttest_ind``), intervals from scipy."""

import math
from typing import Dict, List, Mapping, Optional, Sequence

BASELINE = "none"


def mean_std(values: Sequence[float]):
    """Mean and sample standard deviation (n - 1); None where undefined."""
    n = len(values)
    if n == 0:
        return None, None
    mean = sum(values) / n
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1)) if n > 1 else None
    return mean, std


def _interval(result, diff: float, spread: float) -> Dict[str, float]:
    # With no spread at all scipy's t statistic is undefined: the difference is exact.
    if spread == 0:
        return {"diff": diff, "low": diff, "high": diff, "p": 0.0 if diff else 1.0}
    ci = result.confidence_interval(0.95)
    return {"diff": diff, "low": float(ci.low), "high": float(ci.high), "p": float(result.pvalue)}


def welch(a: Sequence[float], b: Sequence[float]) -> Optional[Dict[str, float]]:
    """Mean(a) - mean(b) with its 95 % Welch interval and two-sided p; None below 2 + 2 runs."""
    from scipy import stats

    if len(a) < 2 or len(b) < 2:
        return None
    (mean_a, std_a), (mean_b, std_b) = mean_std(a), mean_std(b)
    return _interval(stats.ttest_ind(a, b, equal_var=False), mean_a - mean_b, std_a + std_b)


def paired(a: Mapping[int, float], b: Mapping[int, float]) -> Optional[Dict]:
    """``a - b`` seed by seed over the seeds both have: the differences, their mean with the
    paired-t 95 % interval and p, and the seeds where ``a`` is higher. None without a seed in common."""
    from scipy import stats

    seeds = sorted(set(a) & set(b))
    if not seeds:
        return None
    diffs = [a[s] - b[s] for s in seeds]
    out = {"seeds": seeds, "diffs": diffs, "wins": sum(d > 0 for d in diffs), "n": len(seeds),
           "diff": sum(diffs) / len(diffs), "low": None, "high": None, "p": None}
    if len(seeds) >= 2:
        spread = mean_std(diffs)[1]
        out.update(_interval(stats.ttest_rel([a[s] for s in seeds], [b[s] for s in seeds]), out["diff"], spread))
    return out


def verdict(test: Optional[Mapping]) -> str:
    if test is None or test.get("low") is None:
        return "needs >= 2 finished runs on both sides"
    if test["low"] > 0:
        return "above none, beyond the seed noise"
    if test["high"] < 0:
        return "below none, beyond the seed noise"
    return "within the seed noise"


def summarize(records: Sequence[Dict]) -> List[Dict]:
    """One row per group (in first-seen order) over its finished runs."""
    groups = list(dict.fromkeys(r["group"] for r in records))
    done = {g: [r for r in records if r["group"] == g and r["status"] == "done"] for g in groups}
    base = BASELINE if BASELINE in groups else None
    base_runs = done.get(base, [])
    base_ap50 = [r["final_ap50"] for r in base_runs]
    base_seconds = mean_std([r["wall_seconds"] for r in base_runs])[0]
    rows = []
    for g in groups:
        ap50 = [r["final_ap50"] for r in done[g]]
        seconds = mean_std([r["wall_seconds"] for r in done[g]])[0]
        row = {"group": g, "runs": len(ap50),
               "left_out": [f"{r['name']} ({r['status']})" for r in records if r["group"] == g and r["status"] != "done"],
               "ap50": mean_std(ap50), "ap": mean_std([r["final_ap"] for r in done[g]]), "seconds": seconds,
               "seconds_ratio": seconds / base_seconds if seconds and base_seconds else None,
               "vs_none": None, "paired": None, "paired_ap": None}
        if base and g != base:
            row["vs_none"] = welch(ap50, base_ap50)
            by_seed = {key: {r["pair"]: r[key] for r in done[g]} for key in ("final_ap50", "final_ap")}
            base_by_seed = {key: {r["pair"]: r[key] for r in base_runs} for key in ("final_ap50", "final_ap")}
            row["paired"] = paired(by_seed["final_ap50"], base_by_seed["final_ap50"])
            row["paired_ap"] = paired(by_seed["final_ap"], base_by_seed["final_ap"])
            if base_ap50 and ap50:
                base_mean, base_std = mean_std(base_ap50)
                row["goal_met"] = None if base_std is None else row["ap50"][0] >= base_mean - base_std
        row["variance"] = variance_split({r["pair"]: r["final_ap50"] for r in done[g]})
        rows.append(row)
    return rows


def variance_split(table: Mapping) -> Optional[Dict[str, float]]:
    """How much of the spread of one configuration comes from the seed (initial weights), from the
    data seed (data order and augmentations) and from neither alone (their interaction).

    ``table`` maps ``(seed, data_seed)`` to a result and must hold every combination of at least
    two of each (None otherwise). Two-way random-effects ANOVA with one run per cell: the
    components are ``(MS_seed - MS_rest) / n_data``, ``(MS_data - MS_rest) / n_seeds`` and
    ``MS_rest``, negative estimates taken as 0; all are variances.
    """
    keys = [k for k in table if isinstance(k, tuple)]
    seeds, datas = sorted({k[0] for k in keys}), sorted({k[1] for k in keys})
    a, b = len(seeds), len(datas)
    if a < 2 or b < 2 or any((s, d) not in table for s in seeds for d in datas):
        return None
    y = [[table[(s, d)] for d in datas] for s in seeds]
    grand = sum(map(sum, y)) / (a * b)
    seed_means = [sum(row) / b for row in y]
    data_means = [sum(y[i][j] for i in range(a)) / a for j in range(b)]
    ms_seed = b * sum((m - grand) ** 2 for m in seed_means) / (a - 1)
    ms_data = a * sum((m - grand) ** 2 for m in data_means) / (b - 1)
    ms_rest = sum((y[i][j] - seed_means[i] - data_means[j] + grand) ** 2
                  for i in range(a) for j in range(b)) / ((a - 1) * (b - 1))
    parts = {"seed": max((ms_seed - ms_rest) / b, 0.0), "data": max((ms_data - ms_rest) / a, 0.0), "rest": ms_rest}
    return {**parts, "total": sum(parts.values()), "seeds": a, "data_seeds": b,
            "std_all": mean_std([v for row in y for v in row])[1]}

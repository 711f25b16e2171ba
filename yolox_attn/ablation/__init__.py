"""The ablation: YOLOX's own train tool over attentions x seeds, paired by seed, and its reports.

``runs`` plans the grid and runs it (``launch``: here, pinned, or through submitit), ``stats``
compares each attention with ``none`` (paired and unpaired), ``report`` writes ``results.json``,
``summary.md`` and ``ablation.png``. The command line is ``python -m yolox_attn.tools.ablate``.
"""

from .launch import (LAUNCHERS, LocalLauncher, RunningProcesses, SubmititLauncher, SubmititRun, local_slots,
                     make_launcher, run_logged)
from .report import summary_markdown, write_reports
from .runs import RESERVED_OPTS, Grid, Run, RunCommand, as_opts, execute, is_gated, plan_runs, run_grid, run_record
from .stats import BASELINE, mean_std, paired, summarize, variance_split, verdict, welch

__all__ = [
    "BASELINE", "Grid", "LAUNCHERS", "LocalLauncher", "RESERVED_OPTS", "Run", "RunCommand", "RunningProcesses",
    "SubmititLauncher", "SubmititRun", "as_opts",
    "execute", "is_gated", "local_slots", "make_launcher", "mean_std", "paired", "plan_runs", "run_grid",
    "run_logged", "run_record", "summarize", "summary_markdown", "variance_split", "verdict", "welch", "write_reports",
]

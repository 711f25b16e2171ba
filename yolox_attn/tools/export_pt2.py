"""torch.export of the model to a ``.pt2`` ExportedProgram with dynamic shapes, verified against PyTorch.

    python -m yolox_attn.tools.export_pt2 -f exps/yolox_s_cam.py -c best_ckpt.pth

torch's current successor of TorchScript: ``torch.export.export`` with a dynamic batch and
dynamic H, W (multiples of 32 from 64 px), saved with ``torch.export.save``. The tool loads the
file back with ``torch.export.load`` and compares it with the eager model at the export size and
at a second, non-square size and batch size, per output group (boxes, objectness, classes) within
``--atol`` plus ``--rtol`` times the group's largest magnitude; only a verified file reaches the
output path (default ``<output_dir>/<experiment name>/<experiment name>.pt2``). Load it with
``torch.export.load(path).module()``. The file carries the class names, input size and whether
boxes are decoded as the extra file ``yolox_attn.json`` (``yolox_attn.deploy.metadata``; read it
with ``torch.export.load(path, extra_files={"yolox_attn.json": ""})``). Flags as the other export tools.
"""

import argparse
import os
import sys
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

import torch
from loguru import logger

from ..deploy.metadata import EXTRA_FILE, ModelInfo
from .export_common import (
    Comparison,
    ExportCheckError,
    add_common_args,
    add_opts_arg,
    add_tolerance_args,
    check_comparisons,
    cli_exit_code,
    compare_outputs,
    default_output,
    exp_from_args,
    export_program,
    load_export_model,
    model_info,
    random_input,
    second_size,
    verified_output,
)


@dataclass
class Pt2ExportResult:
    """Where the program went, how far it is from PyTorch per checked input shape, and its metadata."""

    path: str
    diffs: Dict[Tuple[int, ...], Comparison] = field(default_factory=dict)
    info: Optional[ModelInfo] = None


def make_parser() -> argparse.ArgumentParser:
    """The export tools' common flags plus ``--atol`` and ``--rtol``."""
    parser = argparse.ArgumentParser("yolox-attn torch.export deploy")
    add_common_args(parser, suffix=".pt2")
    add_tolerance_args(parser, atol=1e-4)
    add_opts_arg(parser)
    return parser


def main(argv: Optional[List[str]] = None) -> Pt2ExportResult:
    """Export, save, reload and verify as the flags say; raise ExportCheckError on a failure or mismatch."""
    args = make_parser().parse_args(argv)
    logger.info(f"args: {args}")
    exp = exp_from_args(args)
    what = f"the model with attention {getattr(exp, 'attention', 'none')!r}"
    model = load_export_model(exp, args.ckpt, args.decode_in_inference, experiment_name=args.experiment_name)
    info = model_info(exp, model, args.decode_in_inference, dynamic=True)
    out = os.path.abspath(args.output_name or default_output(exp, args.experiment_name, ".pt2"))
    size = tuple(int(s) for s in exp.test_size)
    inputs = [random_input(args.batch_size, size, seed=0),
              random_input(args.batch_size + 1, second_size(size), seed=1)]
    try:
        # torch.export would fix a batch of 1 as a constant: trace with 2
        program = export_program(model, random_input(max(2, args.batch_size), size, seed=0), dynamic=True)
    except ExportCheckError as err:
        raise ExportCheckError(f"{what} cannot be exported with torch.export: {err}") from err
    with verified_output(out) as tmp:
        torch.export.save(program, tmp, extra_files={EXTRA_FILE: info.to_json()})
        results = compare_outputs(model, torch.export.load(tmp).module(), inputs, args.atol, args.rtol)
        check_comparisons(results, args.atol, args.rtol, f"the exported program of {what}",
                          "the reloaded ExportedProgram")
    logger.info(f"verified {out} after torch.export.load; class names and input size in its {EXTRA_FILE}")
    return Pt2ExportResult(out, dict(results), info)


def run(argv: Optional[List[str]] = None) -> int:
    """Command-line entry: 0 on success, 1 (with the reason logged) on a failed export or check."""
    return cli_exit_code(main, argv)


if __name__ == "__main__":
    sys.exit(run())

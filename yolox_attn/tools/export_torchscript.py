"""TorchScript export like ``python -m yolox.tools.export_torchscript``, with a reload check.

    python -m yolox_attn.tools.export_torchscript -f exps/yolox_s_cam.py -c best_ckpt.pth

TorchScript is deprecated in torch (``torch.jit.trace`` and ``torch.jit.load`` warn with a
FutureWarning): for new deployments use ``python -m yolox_attn.tools.export_pt2`` (torch.export).
This tool stays for runtimes that load TorchScript. Same flags as YOLOX's tool
(``--decode_in_inference`` is new: YOLOX always exports undecoded outputs, which stays the
default); the file goes to ``<output_dir>/<experiment name>/`` unless ``--output-name`` says
otherwise. The model is traced, saved, loaded back and compared with PyTorch at the trace input
and at a second, non-square size and batch size. A trace records the shapes of its example input
wherever the code turns them into Python numbers; the second size shows whether that happened,
and a mismatch there fails the tool with a message that the file only works at the trace shape.
Only a file within ``--atol`` plus ``--rtol`` times each output group's largest magnitude reaches
the output path. It carries the class names, input size and whether boxes are decoded as the extra
file ``yolox_attn.json`` (``yolox_attn.deploy.metadata``; ``torch.jit.load(path,
_extra_files={"yolox_attn.json": ""})`` reads it).
"""

import argparse
import os
import sys
import warnings
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
    load_export_model,
    model_info,
    random_input,
    second_size,
    verified_output,
)


@dataclass
class TorchScriptExportResult:
    """Where the module went, how far it is from PyTorch per input shape, the tracer's warnings and
    the file's metadata."""

    path: str
    diffs: Dict[Tuple[int, ...], Comparison] = field(default_factory=dict)
    tracer_warnings: List[str] = field(default_factory=list)
    info: Optional[ModelInfo] = None


def make_parser() -> argparse.ArgumentParser:
    """YOLOX's export_torchscript flags (plus ``--decode_in_inference``, ``--atol`` and ``--rtol``)."""
    parser = argparse.ArgumentParser("yolox-attn torchscript deploy")
    add_common_args(parser, suffix=".torchscript.pt")
    add_tolerance_args(parser, atol=1e-4)
    add_opts_arg(parser)
    return parser


def trace(model: torch.nn.Module, example: torch.Tensor) -> Tuple[torch.jit.ScriptModule, List[str]]:
    """``torch.jit.trace`` the model; return it with the TracerWarnings it raised (baked-in values)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", torch.jit.TracerWarning)
        # The reload check below compares more than check_trace would, at a second shape too.
        traced = torch.jit.trace(model, example, check_trace=False)
    messages = sorted({str(w.message) for w in caught if issubclass(w.category, torch.jit.TracerWarning)})
    for w in caught:  # recording caught every warning: pass the others on (torch's deprecation notice too)
        if not issubclass(w.category, torch.jit.TracerWarning):
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    for message in messages:
        logger.warning(f"tracer: {message}")
    return traced, messages


def main(argv: Optional[List[str]] = None) -> TorchScriptExportResult:
    """Trace, save, reload and verify as the flags say; raise ExportCheckError on a mismatch."""
    args = make_parser().parse_args(argv)
    logger.info(f"args: {args}")
    exp = exp_from_args(args)
    model = load_export_model(exp, args.ckpt, args.decode_in_inference, experiment_name=args.experiment_name)
    info = model_info(exp, model, args.decode_in_inference, dynamic=True)
    out = os.path.abspath(args.output_name or default_output(exp, args.experiment_name, ".torchscript.pt"))
    size = tuple(int(s) for s in exp.test_size)
    example = random_input(args.batch_size, size, seed=0)
    logger.info("TorchScript is deprecated in torch; python -m yolox_attn.tools.export_pt2 writes a torch.export program")

    traced, tracer_warnings = trace(model, example)
    other = random_input(args.batch_size + 1, second_size(size), seed=1)
    with verified_output(out) as tmp:
        traced.save(tmp, _extra_files={EXTRA_FILE: info.to_json()})
        results = compare_outputs(model, torch.jit.load(tmp, map_location="cpu"), [example, other],
                                  args.atol, args.rtol)
        first, second = results.values()
        if isinstance(first, str):
            raise ExportCheckError(f"the reloaded module fails at its own trace input {tuple(example.shape)}: {first}")
        if isinstance(second, str):
            raise ExportCheckError(f"the traced module bakes in its trace shape {tuple(example.shape)}: at input "
                                   f"{tuple(other.shape)}, {second}. Use YOLOX's tool at the trace shape only.")
        check_comparisons(results, args.atol, args.rtol, f"the TorchScript module (if only the second shape fails, "
                          f"it bakes in its trace shape {tuple(example.shape)})", "the reloaded TorchScript module")
    logger.info(f"verified {out} after torch.jit.load (dynamic batch and input size work); class names and "
                f"input size in its {EXTRA_FILE}")
    return TorchScriptExportResult(out, dict(results), tracer_warnings, info)


def run(argv: Optional[List[str]] = None) -> int:
    """Command-line entry: 0 on success, 1 (with the reason logged) on a failed export or check."""
    return cli_exit_code(main, argv)


if __name__ == "__main__":
    sys.exit(run())

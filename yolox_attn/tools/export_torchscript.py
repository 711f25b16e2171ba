"""TorchScript export like ``python -m yolox.tools.export_torchscript``, with a reload check.

    python -m yolox_attn.tools.export_torchscript -f exps/yolox_s_cam.py -c best_ckpt.pth

Same flags as YOLOX's tool (``--decode_in_inference`` is new: YOLOX always exports undecoded
outputs, which stays the default). The model is traced with ``torch.jit.trace``, saved, loaded
back with ``torch.jit.load`` and compared with PyTorch at the trace input and at a second,
non-square size and batch size. A trace records the shapes of its example input wherever the
code turns them into Python numbers; the second size shows whether that happened, and a
mismatch there fails the tool with a message that the file only works at the trace shape.
"""

import argparse
import os
import sys
import warnings
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

import torch
from loguru import logger

from .export_common import (
    ExportCheckError,
    add_common_args,
    add_opts_arg,
    check_within,
    cli_exit_code,
    exp_from_args,
    load_export_model,
    max_abs_diff,
    random_input,
    second_size,
)


@dataclass
class TorchScriptExportResult:
    """Where the module went, max abs differences per input shape, and the tracer's warnings."""

    path: str
    diffs: Dict[Tuple[int, ...], float] = field(default_factory=dict)
    tracer_warnings: List[str] = field(default_factory=list)


def make_parser() -> argparse.ArgumentParser:
    """YOLOX's export_torchscript flags (plus ``--decode_in_inference`` and ``--atol``)."""
    parser = argparse.ArgumentParser("yolox-attn torchscript deploy")
    add_common_args(parser, default_output="yolox.torchscript.pt")
    parser.add_argument("--atol", default=1e-4, type=float,
                        help="largest max abs difference to PyTorch accepted by the check")
    add_opts_arg(parser)
    return parser


def trace(model: torch.nn.Module, example: torch.Tensor) -> Tuple[torch.jit.ScriptModule, List[str]]:
    """``torch.jit.trace`` the model; return it with the TracerWarnings it raised (baked-in values)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", torch.jit.TracerWarning)
        # The reload check below compares more than check_trace would, at a second shape too.
        traced = torch.jit.trace(model, example, check_trace=False)
    messages = sorted({str(w.message) for w in caught if issubclass(w.category, torch.jit.TracerWarning)})
    for message in messages:
        logger.warning(f"tracer: {message}")
    return traced, messages


def _run(module: torch.jit.ScriptModule, x: torch.Tensor) -> Tuple[Optional[torch.Tensor], Optional[str]]:
    """(output, None), or (None, the error) when the module cannot run on ``x``'s shape."""
    try:
        return module(x), None
    except RuntimeError as err:  # e.g. a view to a size recorded at trace time
        return None, f"it raises {err}"


def main(argv: Optional[List[str]] = None) -> TorchScriptExportResult:
    """Trace, save, reload and verify as the flags say; raise ExportCheckError on a mismatch."""
    args = make_parser().parse_args(argv)
    logger.info(f"args: {args}")
    exp = exp_from_args(args)
    model = load_export_model(exp, args.ckpt, args.decode_in_inference, experiment_name=args.experiment_name)
    size = tuple(int(s) for s in exp.test_size)
    example = random_input(args.batch_size, size, seed=0)

    traced, tracer_warnings = trace(model, example)
    os.makedirs(os.path.dirname(os.path.abspath(args.output_name)), exist_ok=True)
    traced.save(args.output_name)
    logger.info(f"generated torchscript model {args.output_name}")

    loaded = torch.jit.load(args.output_name, map_location="cpu")
    other = random_input(args.batch_size + 1, second_size(size), seed=1)
    diffs: Dict[Tuple[int, ...], float] = {}
    for x in (example, other):
        shape = tuple(x.shape)
        with torch.no_grad():
            expected = model(x)
            got, problem = _run(loaded, x)
        if problem is None and tuple(got.shape) != tuple(expected.shape):
            problem = f"output {tuple(got.shape)} instead of {tuple(expected.shape)}"
        if problem is not None:
            if x is example:
                raise ExportCheckError(f"the reloaded module fails at its own trace input {shape}: {problem}")
            raise ExportCheckError(f"{args.output_name} bakes in its trace shape {tuple(example.shape)}: at input "
                                   f"{shape}, {problem}. Use it only at the trace shape.")
        diffs[shape] = max_abs_diff(expected, got, f"input {shape}")
        logger.info(f"reloaded TorchScript vs PyTorch, input {shape}: max abs diff {diffs[shape]:.3g}")
    check_within([(f"input {s}", d) for s, d in diffs.items()], args.atol,
                 f"TorchScript module {args.output_name} (if only the second shape fails, it bakes in "
                 f"its trace shape {tuple(example.shape)})")
    summary = ", ".join(f"{s}: {d:.3g}" for s, d in diffs.items())
    logger.info(f"verified {os.path.abspath(args.output_name)} after torch.jit.load, max abs diff per input: "
                f"{summary} (dynamic batch and input size work)")
    return TorchScriptExportResult(os.path.abspath(args.output_name), diffs, tracer_warnings)


def run(argv: Optional[List[str]] = None) -> int:
    """Command-line entry: 0 on success, 1 (with the reason logged) on a failed export or check."""
    return cli_exit_code(main, argv)


if __name__ == "__main__":
    sys.exit(run())

"""ONNX export like ``python -m yolox.tools.export_onnx``, on torch's current exporter, and verified.

    python -m yolox_attn.tools.export_onnx -f exps/yolox_s_cam.py -c best_ckpt.pth --dynamic

YOLOX 0.3.0's tool calls ``torch.onnx._export``, which current torch no longer has. This one takes
the same flags and exports with torch's torch.export-based exporter (``dynamo=True``). With
``--exporter auto`` (the default) a model that exporter cannot handle falls back to the legacy
TorchScript-based exporter (deprecated in torch), and the log says which one wrote the file and
why the fallback was needed; ``--exporter dynamo|legacy`` forces one. The file is simplified with
onnxsim (a dependency on Python >= 3.11; where it is missing the log says so and the file stays as
exported; ``--no-onnxsim`` skips it), then run in onnxruntime and compared with PyTorch: at the
export size, and with ``--dynamic`` at a second, non-square size with another batch size. Only a file
within ``--atol`` reaches ``--output-name``; a failed check exits non-zero and writes nothing.
"""

import argparse
import os
import sys
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import torch
from loguru import logger

from ..preflight import error_line
from .export_common import (
    MIN_DYNAMIC_SIDE,
    ExportCheckError,
    add_common_args,
    add_opts_arg,
    check_onnx_exportable,
    check_within,
    cli_exit_code,
    compare_outputs,
    default_output,
    exp_from_args,
    export_program,
    load_export_model,
    random_input,
    second_size,
    verified_output,
)

DEFAULT_OPSET = 18
DYNAMO_MIN_OPSET = 18  # the torch.export-based exporter writes opset 18 and up natively
EXPORTERS = ("auto", "dynamo", "legacy")


@dataclass
class OnnxExportResult:
    """Where the model went, which exporter wrote it and why, and the max abs differences to PyTorch."""

    path: str
    exporter: str  # "dynamo" (torch.export-based) or "legacy" (TorchScript-based)
    diffs: Dict[Tuple[int, ...], float] = field(default_factory=dict)
    fallback_reason: str = ""  # why the torch.export-based exporter was not used ("" when it was)
    simplified: bool = False


def make_parser() -> argparse.ArgumentParser:
    """YOLOX's export_onnx flags (plus ``--exporter`` and ``--atol``)."""
    parser = argparse.ArgumentParser("yolox-attn onnx deploy")
    add_common_args(parser, suffix=".onnx")
    parser.add_argument("--input", default="images", type=str, help="input node name of the onnx model")
    parser.add_argument("--output", default="output", type=str, help="output node name of the onnx model")
    parser.add_argument(
        "-o", "--opset", default=DEFAULT_OPSET, type=int,
        help=f"onnx opset version (default {DEFAULT_OPSET}; below {DYNAMO_MIN_OPSET} only the legacy exporter "
             "is used; YOLOX's default 11 cannot export non-local and EMA attention, whose einsum needs >= 12)",
    )
    parser.add_argument("--dynamic", action="store_true",
                        help=f"dynamic batch, height and width (multiples of 32, from {MIN_DYNAMIC_SIDE} px)")
    parser.add_argument("--exporter", default="auto", choices=EXPORTERS,
                        help="dynamo: torch.export-based; legacy: TorchScript-based (deprecated in torch); "
                             "auto: dynamo, falling back to legacy with the reason logged")
    parser.add_argument("--no-onnxsim", "--no_onnxsim", action="store_true", help="do not simplify with onnxsim")
    parser.add_argument("--atol", default=1e-3, type=float,
                        help="largest max abs difference to PyTorch accepted by the check")
    add_opts_arg(parser)
    return parser


def _simplify(path: str) -> bool:
    """Simplify ``path`` in place with onnxsim if it is installed; return whether it ran."""
    try:
        from onnxsim import simplify
    except ImportError:
        logger.info("onnxsim is not installed: skipping simplification (pip install onnxsim to enable it)")
        return False
    import onnx

    # onnxsim >= 0.4 keeps dynamic axes by itself; the onnxruntime check covers the result.
    simplified, ok = simplify(onnx.load(path))
    if not ok:
        raise ExportCheckError("onnxsim could not validate the simplified model")
    onnx.save(simplified, path)
    logger.info("simplified with onnxsim")
    return True


def verify_onnx(model: torch.nn.Module, path: str, input_name: str,
                inputs: Sequence[torch.Tensor], atol: float) -> Dict[Tuple[int, ...], float]:
    """Run ``path`` in onnxruntime (CPU) on each input, compare with ``model``; raise above ``atol``."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()  # share the cores the way torch does
    session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    results = compare_outputs(model, lambda x: session.run(None, {input_name: x.numpy()})[0], inputs)
    problems = [f"input {s}: {r}" for s, r in results.items() if isinstance(r, str)]
    if problems:
        raise ExportCheckError("onnxruntime cannot reproduce PyTorch's output: " + "; ".join(problems))
    for shape, diff in results.items():
        logger.info(f"onnxruntime vs PyTorch, input {shape}: max abs diff {diff:.3g}")
    check_within([(f"input {s}", d) for s, d in results.items()], atol, "the ONNX model")
    return results


def _export_dynamo(model: torch.nn.Module, args: argparse.Namespace, example: torch.Tensor, path: str) -> None:
    program = export_program(model, example, dynamic=args.dynamic)
    try:
        torch.onnx.export(program, (example,), path, dynamo=True, opset_version=args.opset, verbose=False,
                          input_names=[args.input], output_names=[args.output], external_data=False)
    except Exception as err:  # the translation raises its own types
        raise ExportCheckError(f"ONNX translation of the exported program failed: {error_line(err)}") from err


def _export_legacy(model: torch.nn.Module, args: argparse.Namespace, example: torch.Tensor, path: str) -> None:
    dynamic_axes = None
    if args.dynamic:
        dynamic_axes = {args.input: {0: "batch", 2: "height", 3: "width"},
                        args.output: {0: "batch", 1: "anchors"}}
    try:
        torch.onnx.export(model, (example,), path, dynamo=False, opset_version=args.opset,
                          input_names=[args.input], output_names=[args.output], dynamic_axes=dynamic_axes)
    except torch.onnx.errors.UnsupportedOperatorError as err:
        raise ExportCheckError(f"export at opset {args.opset} failed: {err} (the attention modules are "
                               f"tested at opset {DEFAULT_OPSET})") from err


_EXPORT: Dict[str, Callable[..., None]] = {"dynamo": _export_dynamo, "legacy": _export_legacy}


def _export_verified(exporter: str, model: torch.nn.Module, args: argparse.Namespace, example: torch.Tensor,
                     inputs: Sequence[torch.Tensor], path: str) -> Tuple[Dict[Tuple[int, ...], float], bool]:
    """Export with ``exporter`` to ``path``, simplify, verify: (diffs, simplified); ExportCheckError on failure."""
    _EXPORT[exporter](model, args, example, path)
    simplified = False if args.no_onnxsim else _simplify(path)
    return verify_onnx(model, path, args.input, inputs, args.atol), simplified


def main(argv: Optional[List[str]] = None) -> OnnxExportResult:
    """Export as the flags say, verify in onnxruntime; raise ExportCheckError when no exporter passes."""
    args = make_parser().parse_args(argv)
    logger.info(f"args: {args}")
    if args.exporter == "dynamo" and args.opset < DYNAMO_MIN_OPSET:
        raise ValueError(f"--exporter dynamo writes opset >= {DYNAMO_MIN_OPSET}, got -o {args.opset}; "
                         "use a higher opset or --exporter legacy")
    exp = exp_from_args(args)
    what = f"the model with attention {getattr(exp, 'attention', 'none')!r}"
    model = load_export_model(exp, args.ckpt, args.decode_in_inference, onnx_silu=True,
                              experiment_name=args.experiment_name)
    check_onnx_exportable(model)
    out = os.path.abspath(args.output_name or default_output(exp, args.experiment_name, ".onnx"))
    size = tuple(int(s) for s in exp.test_size)
    dummy = random_input(args.batch_size, size, seed=0)
    inputs = [dummy]
    if args.dynamic:
        inputs.append(random_input(args.batch_size + 1, second_size(size), seed=1))
    else:
        logger.info("static shapes: the model only takes its export input shape; checked at that shape only")

    used, reason = None, "--exporter legacy"
    with verified_output(out) as tmp:
        if args.exporter != "legacy" and args.opset < DYNAMO_MIN_OPSET:
            reason = f"opset {args.opset} < {DYNAMO_MIN_OPSET}, the lowest the torch.export-based exporter writes"
        elif args.exporter != "legacy":
            # torch.export would fix a batch of 1 as a constant: trace a dynamic export with 2
            example = random_input(max(2, args.batch_size), size, seed=0) if args.dynamic else dummy
            try:
                diffs, simplified = _export_verified("dynamo", model, args, example, inputs, tmp)
                used, reason = "dynamo", ""
            except ExportCheckError as err:
                if args.exporter == "dynamo":
                    raise ExportCheckError(f"{what}: the torch.export-based exporter failed: {err}") from err
                reason = f"the torch.export-based exporter failed: {err}"
        if used is None:
            logger.warning(f"exporting {what} with the legacy TorchScript-based exporter (deprecated in torch), "
                           f"because {reason}")
            try:
                diffs, simplified = _export_verified("legacy", model, args, dummy, inputs, tmp)
                used = "legacy"
            except ExportCheckError as err:
                raise ExportCheckError(f"{what} cannot be exported to ONNX: {reason}; legacy exporter: {err}") from err
    summary = ", ".join(f"{s}: {d:.3g}" for s, d in diffs.items())
    kind = "torch.export-based" if used == "dynamo" else "legacy TorchScript-based"
    logger.info(f"verified {out} ({kind} exporter) in onnxruntime, max abs diff per input: {summary}")
    return OnnxExportResult(out, used, diffs, reason, simplified)


def run(argv: Optional[List[str]] = None) -> int:
    """Command-line entry: 0 on success, 1 (with the reason logged) on a failed export or check."""
    return cli_exit_code(main, argv)


if __name__ == "__main__":
    sys.exit(run())

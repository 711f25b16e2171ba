"""ONNX export like ``python -m yolox.tools.export_onnx``, working on current torch, and verified.

    python -m yolox_attn.tools.export_onnx -f exps/yolox_s_cam.py -c best_ckpt.pth --dynamic

YOLOX 0.3.0's tool calls ``torch.onnx._export``, which current torch no longer has. This one takes
the same flags, exports with the TorchScript-based exporter (``dynamo=False``), simplifies with
onnxsim when it is installed, and then always runs the file in onnxruntime and compares it with
PyTorch: at the export size, and with ``--dynamic`` at a second, non-square size with another
batch size. It exits non-zero when they differ by more than ``--atol``.
"""

import argparse
import os
import sys
import warnings
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

import torch
from loguru import logger

from .export_common import (
    ExportCheckError,
    add_common_args,
    add_opts_arg,
    check_onnx_exportable,
    check_within,
    cli_exit_code,
    exp_from_args,
    load_export_model,
    max_abs_diff,
    random_input,
    second_size,
)

DEFAULT_OPSET = 17


@dataclass
class OnnxExportResult:
    """Where the model went and the max abs differences to PyTorch per checked input shape."""

    path: str
    diffs: Dict[Tuple[int, ...], float] = field(default_factory=dict)
    simplified: bool = False


def make_parser() -> argparse.ArgumentParser:
    """YOLOX's export_onnx flags (plus ``--atol``)."""
    parser = argparse.ArgumentParser("yolox-attn onnx deploy")
    add_common_args(parser, default_output="yolox.onnx")
    parser.add_argument("--input", default="images", type=str, help="input node name of the onnx model")
    parser.add_argument("--output", default="output", type=str, help="output node name of the onnx model")
    parser.add_argument(
        "-o", "--opset", default=DEFAULT_OPSET, type=int,
        help=f"onnx opset version (default {DEFAULT_OPSET}; YOLOX's default 11 cannot export CCA and "
             "non-local attention, whose einsum needs opset >= 12; 17 is the opset these exports are "
             "tested with)",
    )
    parser.add_argument("--dynamic", action="store_true",
                        help="dynamic batch, height and width (input) and batch, anchors (output)")
    parser.add_argument("--no-onnxsim", action="store_true", help="do not simplify with onnxsim")
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

    # onnxsim >= 0.4 keeps dynamic axes by itself; the onnxruntime check below covers the result.
    simplified, ok = simplify(onnx.load(path))
    if not ok:
        raise ExportCheckError("onnxsim could not validate the simplified model")
    onnx.save(simplified, path)
    logger.info(f"simplified {path} with onnxsim")
    return True


def verify_onnx(model: torch.nn.Module, path: str, input_name: str,
                inputs: Sequence[torch.Tensor], atol: float) -> Dict[Tuple[int, ...], float]:
    """Run ``path`` in onnxruntime (CPU) on each input, compare with ``model``; raise above ``atol``."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()  # share the cores the way torch does
    session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    diffs: Dict[Tuple[int, ...], float] = {}
    for x in inputs:
        shape = tuple(x.shape)
        with torch.no_grad():
            expected = model(x)
        try:
            got = session.run(None, {input_name: x.numpy()})[0]
        except Exception as err:  # onnxruntime raises its own exception types
            raise ExportCheckError(f"onnxruntime failed on input {shape}: {err}") from err
        diffs[shape] = max_abs_diff(expected, torch.from_numpy(got), f"input {shape}")
        logger.info(f"onnxruntime vs PyTorch, input {shape}: max abs diff {diffs[shape]:.3g}")
    check_within([(f"input {s}", d) for s, d in diffs.items()], atol, f"ONNX model {path} (kept for inspection)")
    return diffs


def main(argv: Optional[List[str]] = None) -> OnnxExportResult:
    """Export as the flags say, verify in onnxruntime; raise ExportCheckError on a mismatch."""
    args = make_parser().parse_args(argv)
    logger.info(f"args: {args}")
    exp = exp_from_args(args)
    model = load_export_model(exp, args.ckpt, args.decode_in_inference, onnx_silu=True,
                              experiment_name=args.experiment_name)
    check_onnx_exportable(model)
    size = tuple(int(s) for s in exp.test_size)
    dummy = random_input(args.batch_size, size, seed=0)

    dynamic_axes = None
    if args.dynamic:
        dynamic_axes = {args.input: {0: "batch", 2: "height", 3: "width"},
                        args.output: {0: "batch", 1: "anchors"}}
    out_dir = os.path.dirname(os.path.abspath(args.output_name))
    os.makedirs(out_dir, exist_ok=True)
    try:
        with warnings.catch_warnings():
            # The TorchScript-based exporter is chosen on purpose (dynamo=False): say it once, not per call.
            warnings.filterwarnings("ignore", message=".*legacy TorchScript-based ONNX export.*")
            torch.onnx.export(
                model, dummy, args.output_name, dynamo=False, opset_version=args.opset,
                input_names=[args.input], output_names=[args.output], dynamic_axes=dynamic_axes,
            )
    except torch.onnx.errors.UnsupportedOperatorError as err:
        raise ExportCheckError(f"export at opset {args.opset} failed: {err} (the attention modules are "
                               f"tested at opset {DEFAULT_OPSET})") from err
    logger.info(f"generated onnx model {args.output_name} (opset {args.opset})")

    simplified = False if args.no_onnxsim else _simplify(args.output_name)

    inputs = [dummy]
    if args.dynamic:
        inputs.append(random_input(args.batch_size + 1, second_size(size), seed=1))
    else:
        logger.info("static shapes: the model only takes its export input shape; checked at that shape only")
    diffs = verify_onnx(model, args.output_name, args.input, inputs, args.atol)
    summary = ", ".join(f"{s}: {d:.3g}" for s, d in diffs.items())
    logger.info(f"verified {os.path.abspath(args.output_name)} in onnxruntime, max abs diff per input: {summary}")
    return OnnxExportResult(os.path.abspath(args.output_name), diffs, simplified)


def run(argv: Optional[List[str]] = None) -> int:
    """Command-line entry: 0 on success, 1 (with the reason logged) on a failed export or check."""
    return cli_exit_code(main, argv)


if __name__ == "__main__":
    sys.exit(run())

"""ONNX export like ``python -m yolox.tools.export_onnx``, on torch's current exporter, and verified.

    python -m yolox_attn.tools.export_onnx -f exps/yolox_s_cam.py -c best_ckpt.pth --dynamic

YOLOX 0.3.0's tool calls ``torch.onnx._export``, which current torch no longer has. This one takes
the same flags and exports with torch's torch.export-based exporter (``dynamo=True``). With
``--exporter auto`` (the default) a model that exporter cannot handle falls back to the legacy
TorchScript-based exporter (deprecated in torch), and the log says which one wrote the file and
why the fallback was needed; ``--exporter dynamo|legacy`` forces one. The file is simplified with
onnxsim (a dependency on Python >= 3.11; where it is missing the log says so and the file stays as
exported; ``--no-onnxsim`` skips it), then run in onnxruntime and compared with PyTorch: at the
export size, and with ``--dynamic`` at a second, non-square size with another batch size.

The check judges boxes, objectness and class scores apart, each within ``--atol`` plus ``--rtol``
times its largest magnitude: float32 rounds a model whose raw box outputs reach 1e7 (an
undertrained one) to about 1 there, which is no fault of the exporter. A file outside the
tolerance fails the tool, which names the outputs, by how much, and the flag that would accept
them; only a verified file reaches ``--output-name``. ``--check-openvino`` also runs the file in
OpenVINO's CPU plugin, in float32 (which must pass too) and in the plugin's default precision
(bfloat16 on a CPU with native bf16), and logs how far each is from PyTorch.

The file keeps YOLOX's input and output names and layout and carries, as ONNX ``metadata_props``,
its class names, input size and whether its boxes are decoded (``yolox_attn.deploy.metadata``),
which ``python -m yolox_attn.tools.onnx_demo`` reads.
"""

import argparse
import os
import sys
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import torch
from loguru import logger

from ..deploy.metadata import ModelInfo, write_onnx_info
from ..deploy.runtime import Runner, RuntimeUnavailable, open_runner, openvino_default_precision
from ..preflight import error_line
from .export_common import (
    MIN_DYNAMIC_SIDE,
    Comparison,
    ExportCheckError,
    OutputMismatch,
    RuntimeFailure,
    add_common_args,
    add_opts_arg,
    add_tolerance_args,
    check_comparisons,
    check_onnx_exportable,
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

DEFAULT_OPSET = 18
DYNAMO_MIN_OPSET = 18  # the torch.export-based exporter writes opset 18 and up natively
EXPORTERS = ("auto", "dynamo", "legacy")


@dataclass
class OnnxExportResult:
    """Where the model went, which exporter wrote it and why, and how far it is from PyTorch."""

    path: str
    exporter: str  # "dynamo" (torch.export-based) or "legacy" (TorchScript-based)
    diffs: Dict[Tuple[int, ...], Comparison] = field(default_factory=dict)  # onnxruntime's, per input shape
    fallback_reason: str = ""  # why the torch.export-based exporter was not used ("" when it was)
    simplified: bool = False
    info: Optional[ModelInfo] = None  # the metadata the file carries
    openvino: Dict[str, Dict[Tuple[int, ...], Comparison]] = field(default_factory=dict)  # runtime -> diffs


def make_parser() -> argparse.ArgumentParser:
    """YOLOX's export_onnx flags (plus ``--exporter``, ``--atol``, ``--rtol``, ``--check-openvino``)."""
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
                             "auto: dynamo, falling back to legacy (with the reason logged) where it cannot "
                             "export the model or onnxruntime cannot run its file")
    parser.add_argument("--no-onnxsim", "--no_onnxsim", action="store_true", help="do not simplify with onnxsim")
    add_tolerance_args(parser, atol=1e-3)
    parser.add_argument("--check-openvino", "--check_openvino", action="store_true",
                        help="also run the file in OpenVINO's CPU plugin: float32 must pass the check; the "
                             "plugin's default precision (bf16 where the CPU has it) is reported")
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


def _runner(path: str, runtime: str) -> Runner:
    """``open_runner`` with torch's thread count (sharing the cores the way torch does); a file the
    runtime cannot load is a ``RuntimeFailure``, a runtime that is not installed a ``RuntimeUnavailable``."""
    try:
        return open_runner(path, runtime, threads=torch.get_num_threads())
    except RuntimeUnavailable:
        raise
    except Exception as err:  # each runtime raises its own types
        raise RuntimeFailure(f"{runtime} cannot load the file: {error_line(err)}") from err


def verify_onnx(model: torch.nn.Module, path: str, inputs: Sequence[torch.Tensor], atol: float, rtol: float,
                what: str = "the ONNX model", runtime: str = "onnxruntime") -> Dict[Tuple[int, ...], Comparison]:
    """Run ``path`` in ``runtime`` (see ``yolox_attn.deploy.runtime``) on each input and compare it with
    ``model``: ``RuntimeFailure`` where it does not run, ``OutputMismatch`` outside the tolerance."""
    runner = _runner(path, runtime)
    results = compare_outputs(model, lambda x: runner(x.numpy()), inputs, atol, rtol)
    check_comparisons(results, atol, rtol, what, runner.description)
    return results


def check_openvino(model: torch.nn.Module, path: str, inputs: Sequence[torch.Tensor], atol: float, rtol: float,
                   what: str) -> Dict[str, Dict[Tuple[int, ...], Comparison]]:
    """The file in OpenVINO's CPU plugin: in float32, held to the tolerance like onnxruntime; in the
    plugin's default precision, compared and reported (a warning where it is outside the tolerance:
    a deployment setting, not a fault of the file)."""
    results = {"openvino-f32": verify_onnx(model, path, inputs, atol, rtol, what, "openvino-f32")}
    runner = _runner(path, "openvino")
    default = compare_outputs(model, lambda x: runner(x.numpy()), inputs, atol, rtol)
    try:
        check_comparisons(default, atol, rtol, what, runner.description)
    except OutputMismatch:
        precision = openvino_default_precision()
        worst = max(default.values(), key=lambda c: c.max_abs)
        logger.warning(f"OpenVINO's CPU plugin runs this file in {precision} unless told otherwise, which moves its "
                       f"outputs by up to {worst.summary()}. For PyTorch's numbers compile it with "
                       "{'INFERENCE_PRECISION_HINT': 'f32'} (python -m yolox_attn.tools.onnx_demo --runtime "
                       "openvino-f32); the README's Export section gives what bf16 costs in AP")
    results["openvino"] = default
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


def _write_checked(exporter: str, model: torch.nn.Module, args: argparse.Namespace, example: torch.Tensor,
                   inputs: Sequence[torch.Tensor], info: ModelInfo, path: str,
                   what: str) -> Tuple[Dict[Tuple[int, ...], Comparison], bool]:
    """Export with ``exporter`` to ``path``, simplify, add the metadata, check in onnxruntime:
    (diffs, simplified). A file that could not be written or run raises ``ExportCheckError``
    (``RuntimeFailure``), one whose outputs differ ``OutputMismatch``."""
    _EXPORT[exporter](model, args, example, path)
    simplified = False if args.no_onnxsim else _simplify(path)
    write_onnx_info(path, info)
    return verify_onnx(model, path, inputs, args.atol, args.rtol, f"the ONNX file of {what}"), simplified


def main(argv: Optional[List[str]] = None) -> OnnxExportResult:
    """Export as the flags say and check in onnxruntime (and OpenVINO): raise ``OutputMismatch``
    when the file's outputs differ, ``ExportCheckError`` when no exporter gives a file that runs."""
    args = make_parser().parse_args(argv)
    logger.info(f"args: {args}")
    if args.exporter == "dynamo" and args.opset < DYNAMO_MIN_OPSET:
        raise ValueError(f"--exporter dynamo writes opset >= {DYNAMO_MIN_OPSET}, got -o {args.opset}; "
                         "use a higher opset or --exporter legacy")
    if args.check_openvino:
        logger.info(f"OpenVINO's CPU plugin defaults to {openvino_default_precision()} here")  # or: not installed
    exp = exp_from_args(args)
    what = f"the model with attention {getattr(exp, 'attention', 'none')!r}"
    model = load_export_model(exp, args.ckpt, args.decode_in_inference, onnx_silu=True,
                              experiment_name=args.experiment_name)
    check_onnx_exportable(model)
    info = model_info(exp, model, args.decode_in_inference, args.dynamic)
    out = os.path.abspath(args.output_name or default_output(exp, args.experiment_name, ".onnx"))
    size = tuple(int(s) for s in exp.test_size)
    dummy = random_input(args.batch_size, size, seed=0)
    inputs = [dummy]
    if args.dynamic:
        inputs.append(random_input(args.batch_size + 1, second_size(size), seed=1))
    else:
        logger.info("static shapes: the model only takes its export input shape; checked at that shape only")

    used, reason, openvino = None, "--exporter legacy", {}
    with verified_output(out) as tmp:
        if args.exporter != "legacy" and args.opset < DYNAMO_MIN_OPSET:
            reason = f"opset {args.opset} < {DYNAMO_MIN_OPSET}, the lowest the torch.export-based exporter writes"
        elif args.exporter != "legacy":
            # torch.export would fix a batch of 1 as a constant: trace a dynamic export with 2
            example = random_input(max(2, args.batch_size), size, seed=0) if args.dynamic else dummy
            try:
                diffs, simplified = _write_checked("dynamo", model, args, example, inputs, info, tmp, what)
                used, reason = "dynamo", ""
            except OutputMismatch:
                raise  # the file exists and runs: its numbers are the finding, not the exporter
            except ExportCheckError as err:
                if args.exporter == "dynamo":
                    raise ExportCheckError(f"{what}: the torch.export-based exporter failed: {err}") from err
                reason = f"the torch.export-based exporter failed: {err}"
        if used is None:
            logger.warning(f"exporting {what} with the legacy TorchScript-based exporter (deprecated in torch), "
                           f"because {reason}")
            try:
                diffs, simplified = _write_checked("legacy", model, args, dummy, inputs, info, tmp, what)
                used = "legacy"
            except OutputMismatch:
                raise
            except ExportCheckError as err:
                raise ExportCheckError(f"{what} cannot be exported to ONNX: {reason}; legacy exporter: {err}") from err
        if args.check_openvino:
            openvino = check_openvino(model, tmp, inputs, args.atol, args.rtol, f"the ONNX file of {what}")
    kind = "torch.export-based" if used == "dynamo" else "legacy TorchScript-based"
    logger.info(f"verified {out} ({kind} exporter) in onnxruntime"
                f"{' and OpenVINO (f32)' if openvino else ''}; class names and input size in its metadata")
    return OnnxExportResult(out, used, diffs, reason, simplified, info, openvino)


def run(argv: Optional[List[str]] = None) -> int:
    """Command-line entry: 0 on success, 1 (with the reason logged) on a failed export or check."""
    return cli_exit_code(main, argv)


if __name__ == "__main__":
    sys.exit(run())

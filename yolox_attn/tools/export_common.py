"""What the export tools (ONNX, torch.export .pt2, TorchScript) share: flags, exp and model
loading, torch.export with dynamic shapes, output checks, and writing only verified files."""

import argparse
import contextlib
import math
import os
import tempfile
from dataclasses import dataclass
from typing import Callable, Dict, Iterator, List, Optional, Sequence, Tuple

import torch
from loguru import logger
from torch import nn

from ..checkpoint import load_checkpoint, load_weights, model_state
from ..class_names import class_names_for, is_guessed
from ..deploy.metadata import ModelInfo
from ..preflight import error_line, load_exp

__all__ = [
    "ExportCheckError",
    "OutputMismatch",
    "RuntimeFailure",
    "MIN_DYNAMIC_SIDE",
    "add_common_args",
    "add_opts_arg",
    "add_tolerance_args",
    "model_info",
    "cli_exit_code",
    "check_onnx_exportable",
    "Comparison",
    "DEFAULT_RTOL",
    "GroupDiff",
    "check_comparisons",
    "compare",
    "compare_outputs",
    "default_output",
    "exp_from_args",
    "export_program",
    "load_export_model",
    "random_input",
    "second_size",
    "verified_output",
]

# torch.export specialises a map side of 1 (0/1 specialisation), so dark5 (stride 32) must be >= 2.
MIN_DYNAMIC_SIDE = 64


class ExportCheckError(RuntimeError):
    """The exported model does not reproduce PyTorch's output (or cannot run at all)."""


class RuntimeFailure(ExportCheckError):
    """The exported file does not run in a runtime, or gives outputs of another shape."""


class OutputMismatch(ExportCheckError):
    """The exported file runs, but its outputs differ from PyTorch's by more than the tolerance."""


def add_common_args(parser: argparse.ArgumentParser, suffix: str) -> argparse.ArgumentParser:
    """The flags both YOLOX export tools have (``-f -c -n -expn --output-name -b --decode_in_inference``).

    ``opts`` is not added here: it swallows the rest of the command line, so each tool adds it
    last, after its own flags.
    """
    parser.add_argument("-f", "--exp_file", default=None, type=str, help="experiment description file")
    parser.add_argument("-n", "--name", default=None, type=str, help="model name (a YOLOX built-in exp)")
    parser.add_argument("-expn", "--experiment-name", default=None, type=str,
                        help="only named in the no-checkpoint warning (where YOLOX would look for best_ckpt.pth)")
    parser.add_argument("-c", "--ckpt", default=None, type=str,
                        help="checkpoint ({'model': state_dict}); without it the randomly initialised "
                             "model is exported, with a warning (a quick check of the graph only)")
    parser.add_argument("--output-name", default=None, type=str,
                        help=f"output file (default <output_dir>/<experiment name>/<experiment name>{suffix}, "
                             "next to the exp's checkpoints)")
    parser.add_argument("-b", "--batch-size", default=1, type=int, help="batch size of the traced input")
    parser.add_argument("--decode_in_inference", action="store_true",
                        help="decode boxes to image coordinates inside the model")
    return parser


def add_opts_arg(parser: argparse.ArgumentParser) -> None:
    """YOLOX's trailing ``key value`` pairs merged into the exp (add it after every other flag)."""
    parser.add_argument("opts", nargs=argparse.REMAINDER, default=None,
                        help="exp attributes to change, as key value pairs (e.g. test_size '(320,320)')")


def add_tolerance_args(parser: argparse.ArgumentParser, atol: float) -> None:
    """``--atol``/``--rtol``: the export check's tolerance, per output group ``atol + rtol * scale``."""
    parser.add_argument("--atol", default=atol, type=float,
                        help=f"absolute part of the tolerance of the check against PyTorch (default {atol:g})")
    parser.add_argument("--rtol", default=DEFAULT_RTOL, type=float,
                        help="relative part: times the largest magnitude of each output group (boxes, objectness, "
                             f"classes), for models with large outputs (default {DEFAULT_RTOL:g})")


def model_info(exp, model: nn.Module, decoded: bool, dynamic: bool) -> ModelInfo:
    """What the exported file says about itself: the exp's class names (``class_names_for``, whose
    log says where they came from), its test size, the head's strides and the export's options."""
    names, source = class_names_for(exp)
    logger.info(f"class names from {source}: {names[:10]}{' ...' if len(names) > 10 else ''}")
    return ModelInfo(tuple(names), tuple(int(s) for s in exp.test_size), decoded,
                     tuple(int(s) for s in model.head.strides), source, str(getattr(exp, "attention", "none")),
                     str(exp.exp_name), dynamic, is_guessed(source))


def exp_from_args(args: argparse.Namespace):
    """YOLOX's ``get_exp`` (a one-line error for a bad exp) plus the ``opts`` merge; fills
    ``args.experiment_name`` as YOLOX does."""
    exp = load_exp(args.exp_file, args.name)
    exp.merge(list(args.opts or []))
    if not args.experiment_name:
        args.experiment_name = exp.exp_name
    return exp


def default_output(exp, experiment_name: Optional[str], suffix: str) -> str:
    """``<exp.output_dir>/<experiment name>/<experiment name><suffix>``: where YOLOX keeps that exp's files."""
    name = experiment_name or exp.exp_name
    return os.path.join(exp.output_dir, name, name + suffix)


@contextlib.contextmanager
def verified_output(path: str) -> Iterator[str]:
    """Yield a temporary path in ``path``'s folder; move it to ``path`` only if the block succeeds.

    A failed export or check therefore leaves no file at ``path`` (nor the temporary one), and
    an older file there stays untouched. Same folder: the final rename cannot cross file systems.
    """
    path = os.path.abspath(path)
    folder, name = os.path.split(path)
    os.makedirs(folder, exist_ok=True)
    stem, ext = os.path.splitext(name)
    fd, tmp = tempfile.mkstemp(prefix=f".{stem}.", suffix=f".unverified{ext}", dir=folder)
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes it private; the result gets the usual permissions
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def export_program(model: nn.Module, example: torch.Tensor, dynamic: bool) -> "torch.export.ExportedProgram":
    """``torch.export.export`` of ``model`` on ``example``; ExportCheckError with the reason if it fails.

    ``dynamic``: batch >= 1 and H, W multiples of 32 from ``MIN_DYNAMIC_SIDE`` on. The example's
    batch must then be >= 2 (a batch of 1 would be specialised as a constant).
    """
    shapes = None
    if dynamic:
        if example.shape[0] < 2:
            raise ValueError(f"a dynamic export needs an example batch >= 2, got {example.shape[0]}")
        low = MIN_DYNAMIC_SIDE // 32
        h, w = torch.export.Dim("h", min=low), torch.export.Dim("w", min=low)
        shapes = ({0: torch.export.Dim("batch", min=1), 2: 32 * h, 3: 32 * w},)
    try:
        return torch.export.export(model, (example,), dynamic_shapes=shapes, strict=False)
    except Exception as err:  # torch.export raises many types (UserError, GuardOnDataDependent, ...)
        raise ExportCheckError(f"torch.export failed: {error_line(err)}") from err


def load_export_model(exp, ckpt: Optional[str], decode: bool, onnx_silu: bool = False,
                      experiment_name: Optional[str] = None) -> nn.Module:
    """The exp's model in eval mode, with ``ckpt`` loaded strictly, ready to trace.

    ``ckpt=None`` keeps the random initialisation (with a warning). ``onnx_silu`` swaps
    ``nn.SiLU`` for YOLOX's ``x * sigmoid(x)`` module as YOLOX's ONNX tool does, so the graph
    holds Sigmoid and Mul, which every ONNX runtime has.
    """
    model = exp.get_model()
    if ckpt is None:
        default = os.path.join(exp.output_dir, experiment_name or exp.exp_name, "best_ckpt.pth")
        logger.warning(
            "no checkpoint given (-c): exporting the RANDOMLY INITIALISED model. This only checks "
            f"that the graph exports and runs; YOLOX's tool would load {default}, pass -c to use it."
        )
    else:
        load_weights(model, model_state(load_checkpoint(ckpt), str(ckpt)), f"checkpoint {str(ckpt)!r}")
        logger.info(f"loaded checkpoint {ckpt}")
    model.eval()
    if onnx_silu:
        from yolox.models.network_blocks import SiLU
        from yolox.utils import replace_module

        model = replace_module(model, nn.SiLU, SiLU)
    model.head.decode_in_inference = decode
    return model


def second_size(size: Sequence[int]) -> Tuple[int, int]:
    """A second, non-square input size to check dynamic shapes: H - 64 (or + 64), W + 32, multiples
    of 32 and at least ``MIN_DYNAMIC_SIDE``."""
    h, w = (max(32, int(s) // 32 * 32) for s in size)
    h2 = h - 64 if h - 64 >= MIN_DYNAMIC_SIDE else h + 64
    w2 = w + 32
    if h2 == w2:  # a square second size could hide swapped H and W
        w2 += 32
    return h2, w2


def random_input(batch: int, size: Sequence[int], seed: int = 0) -> torch.Tensor:
    """A reproducible (batch, 3, H, W) float32 input, scaled like YOLOX's 0-255 images."""
    g = torch.Generator().manual_seed(seed)
    return torch.rand(batch, 3, int(size[0]), int(size[1]), generator=g) * 255.0


# The head's output channels are judged apart: box values (pixels, or raw log-sizes) can be many
# orders of magnitude larger than the scores in [0, 1], and float32 rounds each to its own scale.
OUTPUT_GROUPS: Tuple[Tuple[str, int, Optional[int]], ...] = (("boxes", 0, 4), ("objectness", 4, 5),
                                                               ("classes", 5, None))
DEFAULT_RTOL = 1e-5  # float32 keeps about 7 digits; an exporter's other kernels differ by ~1e-7 of the scale


@dataclass(frozen=True)
class GroupDiff:
    """How far one output channel group of an exported model is from PyTorch's."""

    name: str
    max_abs: float  # max |PyTorch - export|; inf or NaN where only one of them is finite
    scale: float  # max |PyTorch| over its finite values
    allowed: float  # atol + rtol * scale
    nonfinite: int = 0  # non-finite values in PyTorch's output (the export must give the same there)

    @property
    def relative(self) -> float:
        if self.scale > 0:
            return self.max_abs / self.scale
        return 0.0 if self.max_abs == 0 else math.inf

    @property
    def ok(self) -> bool:
        return self.max_abs <= self.allowed  # NaN fails too

    def text(self) -> str:
        return f"{self.name} {self.max_abs:.3g} (relative {self.relative:.2g} of {self.scale:.3g})"


@dataclass(frozen=True)
class Comparison:
    """An exported model's output against PyTorch's on one input, per channel group."""

    groups: Tuple[GroupDiff, ...]

    @property
    def max_abs(self) -> float:
        return max(g.max_abs for g in self.groups)

    @property
    def ok(self) -> bool:
        return all(g.ok for g in self.groups)

    @property
    def nonfinite(self) -> int:
        return sum(g.nonfinite for g in self.groups)

    def summary(self) -> str:
        return ", ".join(g.text() for g in self.groups)


def compare(reference: torch.Tensor, other, atol: float, rtol: float, what: str) -> Comparison:
    """``other`` against ``reference`` per channel group (YOLOX's boxes, objectness, classes where the
    last axis holds them, else the whole output): within ``atol + rtol * scale``, where scale is the
    group's largest finite magnitude in ``reference``. A value non-finite in both, and equal, matches:
    undertrained models' box sizes overflow to inf in every runtime. ExportCheckError if shapes differ."""
    other = torch.as_tensor(other)
    if tuple(reference.shape) != tuple(other.shape):
        raise ExportCheckError(f"{what}: output shape {tuple(other.shape)} differs from PyTorch's "
                               f"{tuple(reference.shape)}")
    ref, got = reference.detach().double(), other.detach().double()
    yolox_layout = ref.dim() == 3 and ref.shape[-1] >= 6
    groups = OUTPUT_GROUPS if yolox_layout else (("output", 0, None),)
    diffs = []
    for name, lo, hi in groups:
        r, g = ref[..., lo:hi], got[..., lo:hi]
        same = (r == g) | (torch.isnan(r) & torch.isnan(g))
        diff = torch.where(same, torch.zeros_like(r), (r - g).abs())
        finite = r[torch.isfinite(r)]
        scale = float(finite.abs().max()) if finite.numel() else 0.0
        max_abs = float(diff.max()) if diff.numel() else 0.0
        diffs.append(GroupDiff(name, max_abs, scale, atol + rtol * scale, int((~torch.isfinite(r)).sum())))
    return Comparison(tuple(diffs))


def compare_outputs(model: nn.Module, run: Callable[[torch.Tensor], torch.Tensor], inputs: Sequence[torch.Tensor],
                    atol: float, rtol: float) -> Dict[Tuple[int, ...], object]:
    """Per input shape: the ``Comparison`` of ``run(x)`` with ``model(x)``, or why ``run`` gave no
    comparable output (a str)."""
    results: Dict[Tuple[int, ...], object] = {}
    for x in inputs:
        shape = tuple(x.shape)
        with torch.no_grad():
            expected = model(x)
            try:
                got = torch.as_tensor(run(x))
            except Exception as err:  # each runtime raises its own types
                results[shape] = f"it raises {error_line(err)}"
                continue
        if tuple(got.shape) != tuple(expected.shape):
            results[shape] = f"output {tuple(got.shape)} instead of {tuple(expected.shape)}"
        else:
            results[shape] = compare(expected, got, atol, rtol, f"input {shape}")
    return results


def _round_up(x: float) -> str:
    """``x`` to two significant digits, rounded up (a flag value that accepts what was measured)."""
    text = f"{x:.2g}"
    return text if float(text) >= x else f"{x * 1.05:.2g}"


def check_comparisons(results: Dict[Tuple[int, ...], object], atol: float, rtol: float, what: str,
                      runtime: str) -> None:
    """Log each comparison (from ``compare_outputs``); raise ``RuntimeFailure`` where ``runtime``
    gave no comparable output, ``OutputMismatch`` naming each output group outside the tolerance,
    by how much, and the ``--atol``/``--rtol`` values that would accept it."""
    problems = [f"input {s}: {r}" for s, r in results.items() if isinstance(r, str)]
    if problems:
        raise RuntimeFailure(f"{runtime} cannot reproduce PyTorch's output of {what}: " + "; ".join(problems))
    for shape, c in results.items():
        logger.info(f"{runtime} vs PyTorch, input {shape}: max abs diff {c.summary()}")
        if c.nonfinite:
            logger.warning(f"input {shape}: PyTorch's own output holds {c.nonfinite} non-finite values (box sizes "
                           f"whose exp overflows float32: an undertrained model?), which {runtime} must reproduce")
    bad = [(s, g) for s, c in results.items() for g in c.groups if not g.ok]
    if not bad:
        return
    details = "; ".join(f"input {s}: {g.name} max abs diff {g.max_abs:.3g} (relative {g.relative:.2g} of the "
                        f"outputs' scale {g.scale:.3g}; allowed {g.allowed:.3g})" for s, g in bad)
    finite = [g for _, g in bad if math.isfinite(g.max_abs)]
    if len(finite) == len(bad):
        need_atol = max(g.max_abs - rtol * g.scale for g in finite)
        options = [f"--atol {_round_up(need_atol)}"]
        if all(g.scale > 0 for g in finite):
            options.insert(0, f"--rtol {_round_up(max((g.max_abs - atol) / g.scale for g in finite))}")
        accept = f"; to accept this, pass {' or '.join(options)}"
    else:
        accept = " (a value is non-finite in one output only: no tolerance accepts that)"
    raise OutputMismatch(f"{what} in {runtime} does not match PyTorch within --atol {atol:g} + --rtol {rtol:g} x "
                           f"the outputs' scale: {details}{accept}")


def cli_exit_code(main: Callable[[Optional[List[str]]], object], argv: Optional[List[str]] = None) -> int:
    """Run an export tool's ``main``: 0 on success, 1 with the reason logged on a failed export or check."""
    try:
        main(argv)
    except (ExportCheckError, ValueError, FileNotFoundError) as err:  # causes a user can fix
        logger.error(str(err))
        return 1
    return 0


def check_onnx_exportable(model: nn.Module) -> None:
    """ExportCheckError naming each submodule that declares it cannot be exported to ONNX.

    A module says so with an ``onnx_export_note`` attribute (the reason); this fails before the
    exporter runs, instead of deep inside it.
    """
    by_note = {}
    for name, m in model.named_modules():
        note = getattr(m, "onnx_export_note", None)
        if note:
            by_note.setdefault(note, []).append(name or "the model")
    if by_note:
        found = "; ".join(f"{', '.join(names)}: {note}" for note, names in by_note.items())
        raise ExportCheckError(f"this model cannot be exported to ONNX: {found}")

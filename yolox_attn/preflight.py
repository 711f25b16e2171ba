"""Failures a user can cause, turned into one short message and a non-zero exit.

YOLOX's tools wrap ``main`` in loguru's ``logger.catch``, which logs a long traceback and then
exits 0; a ``SystemExit`` is not an ``Exception`` and passes it, ending the program with its
message on stderr and exit status 1.
"""

import os
import pickle
import pkgutil
import sys
import traceback
import types
from typing import Optional

import torch
from loguru import logger
from yolox.utils.logger import StreamToLoguru

from .checkpoint import check_weights, load_checkpoint, model_state
from .data.checks import MAKE_SHAPES, require_annotations  # noqa: F401  (MAKE_SHAPES re-exported: it lived here)
from .known_noise import yolox_tool


class UsageError(ValueError, SystemExit):
    """A bad option: a ValueError to code that catches one, and outside any ``except``
    (a YOLOX tool's command line) a one-line message with exit status 1."""

    def __init__(self, message: str):
        super().__init__(message)
        self.code = message


def _real_streams() -> None:
    # YOLOX's ``setup_logger`` replaces sys.stdout/stderr with a loguru stream that drops what
    # Python prints at exit: the real streams are put back for a last message (only then).
    if isinstance(sys.stderr, StreamToLoguru):
        sys.stdout, sys.stderr = sys.__stdout__, sys.__stderr__


def user_exit(what: str, err: BaseException, detail: Optional[str] = None) -> SystemExit:
    """``SystemExit("<what> failed: <err>")``, or ``"<what> failed <detail>"``; the traceback goes
    to the log file only (DEBUG)."""
    logger.opt(exception=err).debug(f"{what} failed")
    _real_streams()
    return SystemExit(f"{what} failed: {err}" if detail is None else f"{what} failed {detail}")


def final_line(message: str) -> None:
    """Write ``message`` to the log file and, as the program's last line, to stderr."""
    logger.debug(message)
    _real_streams()
    print(message, file=sys.stderr, flush=True)


def error_line(err: BaseException) -> str:
    """``Type: first line of the message``, for errors whose messages run to pages (torch.export's).

    An error re-raised from a DataLoader worker carries the worker's traceback in its message;
    the last line of that names the real error.
    """
    text = str(err)
    lines = text.strip().splitlines()
    if "Original Traceback" in text:
        return lines[-1]
    return f"{type(err).__name__}: {lines[0] if lines else ''}"


def load_exp(exp_file: Optional[str], name: Optional[str] = None):
    """YOLOX's ``get_exp(exp_file, name)``, loading an exp as YOLOX's tools do, with a one-line
    ``UsageError`` where YOLOX ends in a traceback, or in "doesn't contains class named 'Exp'"
    whatever went wrong: no exp given, an unknown ``-n``, a missing exp file, one that fails to
    import (the error, and where it was raised), one without ``Exp`` or whose ``Exp()`` fails.
    """
    import yolox.exp.default
    from yolox.exp import get_exp

    if exp_file is None:
        if name is None:
            raise UsageError("give an exp: -f exps/yolox_s_cam.py (or -n with a YOLOX built-in name)")
        known = sorted(m.name.replace("_", "-") for m in pkgutil.iter_modules(yolox.exp.default.__path__))
        if name.replace("_", "-") not in known:
            raise UsageError(f"unknown YOLOX model name -n {name!r}; allowed: {', '.join(known)}")
        return get_exp(None, name)
    if not os.path.isfile(exp_file):
        raise UsageError(f"exp file {exp_file!r} {'is not a file' if os.path.exists(exp_file) else 'does not exist'}")
    try:
        return get_exp(exp_file, None)
    except ImportError as err:
        cause = err.__context__ or err  # YOLOX raises its ImportError in place of what failed
    if isinstance(cause, AttributeError) and cause.name == "Exp" and isinstance(cause.obj, types.ModuleType):
        raise UsageError(f"exp file {exp_file!r} defines no class named Exp") from None
    where = ""
    frames = [f for f in traceback.extract_tb(cause.__traceback__) if not f.filename.startswith("<")]
    if frames and not isinstance(cause, SyntaxError):  # a SyntaxError's message has its place
        where = f" (at {frames[-1].filename}, line {frames[-1].lineno})"
    raise UsageError(f"exp file {exp_file!r} failed to load: {error_line(cause)}{where}") from None


# YOLOX's tools that merge an exp's opts (so an exp can check their run), and what each does
_YOLOX_TOOLS = {"yolox.tools.eval": "evaluation", "yolox.tools.export_onnx": "export",
                "yolox.tools.export_torchscript": "export"}


def check_yolox_tool_run(exp) -> None:
    """Where one of YOLOX's own tools runs ``exp``: what it would fail on, checked when it merges
    the exp's opts, as a one-line ``UsageError`` (a one-line exit 1).

    YOLOX's eval tool stops on a CPU at a bare ``assert num_gpu <= torch.cuda.device_count()``;
    its ``export_onnx`` calls ``torch.onnx._export``, which current torch lacks. These point to
    this package's tool of the same name and flags. Otherwise the checkpoint (and for eval the
    dataset) is checked here: these tools read it after their set-up and end in a traceback and
    exit 0 (``logger.catch``). Their command line is parsed again with the tool's own parser.
    """
    tool = yolox_tool()
    if tool not in _YOLOX_TOOLS:
        return
    ours = f"python -m yolox_attn.{tool.split('.', 1)[1]} with the same arguments"
    if tool == "yolox.tools.eval" and not torch.cuda.is_available():
        raise UsageError(f"YOLOX's eval tool needs a CUDA GPU and this machine has none; on the CPU run {ours}")
    if tool == "yolox.tools.export_onnx" and not hasattr(torch.onnx, "_export"):
        raise UsageError(f"YOLOX 0.3.0's export_onnx calls torch.onnx._export, which torch {torch.__version__} "
                         f"lacks; run {ours}")
    args = sys.modules["__main__"].make_parser().parse_args()
    try:
        if not (getattr(args, "speed", False) or getattr(args, "trt", False)):
            name = args.experiment_name or exp.exp_name
            ckpt = args.ckpt or os.path.join(exp.output_dir, name, "best_ckpt.pth")
            check_weights(exp.get_model(), model_state(load_checkpoint(ckpt), ckpt), ckpt)
            try:  # what YOLOX's tools do: torch.load's default, weights only, no numpy
                torch.load(ckpt, map_location="cpu")
            except pickle.UnpicklingError:
                raise ValueError(f"YOLOX's tool cannot load {ckpt!r}: it holds numpy values, which torch.load "
                                 f"refuses by default since torch 2.6; run {ours}, which loads it") from None
        if tool == "yolox.tools.eval":
            split = "test" if args.test else "val"
            check_dataset = getattr(exp, "check_dataset", None)  # the exp's own check knows its layout (VOC)
            if check_dataset is None:
                require_annotations(exp.data_dir, exp.test_ann if args.test else exp.val_ann)
            for note in check_dataset((split,)) if check_dataset else []:
                logger.warning(note)
    except (ValueError, OSError) as err:
        raise UsageError(f"{_YOLOX_TOOLS[tool]} failed: {err}") from None

"""Failures a user can cause, turned into one short message and a non-zero exit.

YOLOX's tools wrap ``main`` in loguru's ``logger.catch``, which logs a long traceback and then
exits 0; a ``SystemExit`` is not an ``Exception`` and passes it, ending the program with its
message on stderr and exit status 1.
"""

import os
import pickle
import sys
from typing import Optional

import torch
from loguru import logger
from yolox.utils.logger import StreamToLoguru

from .checkpoint import check_weights, load_checkpoint, model_state

MAKE_SHAPES = "python -m yolox_attn.tools.make_shapes --out datasets/shapes"


class UsageError(ValueError, SystemExit):
    """A bad option: a ValueError to code that catches one, and outside any ``except``
    (a YOLOX tool's command line) a one-line message with exit status 1."""

    def __init__(self, message: str):
        super().__init__(message)
        self.code = message


def user_exit(what: str, err: BaseException, detail: Optional[str] = None) -> SystemExit:
    """``SystemExit("<what> failed: <err>")``, or ``"<what> failed <detail>"``; the traceback goes
    to the log file only (DEBUG).

    YOLOX's ``setup_logger`` replaces sys.stdout/stderr with a loguru stream that drops what
    Python prints at exit, so the real streams are put back for the message (only then).
    """
    logger.opt(exception=err).debug(f"{what} failed")
    if isinstance(sys.stderr, StreamToLoguru):
        sys.stdout, sys.stderr = sys.__stdout__, sys.__stderr__
    return SystemExit(f"{what} failed: {err}" if detail is None else f"{what} failed {detail}")


def error_line(err: BaseException) -> str:
    """``Type: first line of the message``, for errors whose messages run to pages (torch.export's).

    An error re-raised from a DataLoader worker carries the worker's traceback in its message;
    the last line of that names the real error.
    """
    lines = str(err).strip().splitlines()
    if "Original Traceback" in str(err):
        return lines[-1]
    return f"{type(err).__name__}: {lines[0] if lines else ''}"


def require_annotations(data_dir: str, json_file: str) -> str:
    """The COCO-layout annotation file ``<data_dir>/annotations/<json_file>``; FileNotFoundError
    saying where to put data or how to make some when it is missing."""
    path = os.path.join(data_dir, "annotations", json_file)
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"dataset not found: {os.path.abspath(path)} does not exist. Point data_dir at a COCO-layout "
            f"folder (opts: data_dir PATH; default $YOLOX_DATADIR/COCO, else datasets/COCO), or generate "
            f"the shapes dataset: {MAKE_SHAPES}"
        )
    return path


def check_yolox_eval_run(exp) -> None:
    """Where YOLOX's own eval tool (``python -m yolox.tools.eval``) runs ``exp``: what it would fail
    on, checked when it merges the exp's opts, as a one-line ``UsageError``.

    On the CPU it stops at a bare ``assert num_gpu <= torch.cuda.device_count()``; on CUDA a
    missing or mismatched checkpoint or dataset ends in a traceback and exit 0 (``logger.catch``).
    Its parsed command line is the module global ``args`` of ``__main__`` by then.
    """
    main = sys.modules.get("__main__")
    spec = getattr(main, "__spec__", None)
    if getattr(spec, "name", None) != "yolox.tools.eval":
        return
    if not torch.cuda.is_available():
        raise UsageError("YOLOX's eval tool needs a CUDA GPU and this machine has none; on the CPU run "
                         "python -m yolox_attn.tools.eval with the same arguments")
    args = getattr(main, "args", None)
    if args is None:
        return
    try:
        if not (args.speed or args.trt):
            name = args.experiment_name or exp.exp_name
            ckpt = args.ckpt or os.path.join(exp.output_dir, name, "best_ckpt.pth")
            check_weights(exp.get_model(), model_state(load_checkpoint(ckpt), ckpt), ckpt)
            try:  # what YOLOX's tool itself does: torch.load's default, weights only, no numpy
                torch.load(ckpt, map_location="cpu")
            except pickle.UnpicklingError:
                raise ValueError(f"YOLOX's eval tool cannot load {ckpt!r}: it holds numpy values, which torch.load "
                                 f"refuses by default since torch 2.6; python -m yolox_attn.tools.eval loads it") from None
        require_annotations(exp.data_dir, exp.test_ann if args.test else exp.val_ann)
    except (ValueError, OSError) as err:
        raise UsageError(f"evaluation failed: {err}") from None

"""Failures a user can cause, turned into one short message and a non-zero exit.

YOLOX's tools wrap ``main`` in loguru's ``logger.catch``, which logs a long traceback and then
exits 0; a ``SystemExit`` is not an ``Exception`` and passes it, ending the program with its
message on stderr and exit status 1.
"""

import os
import sys

from loguru import logger
from yolox.utils.logger import StreamToLoguru

MAKE_SHAPES = "python -m yolox_attn.tools.make_shapes --out datasets/shapes"


class UsageError(ValueError, SystemExit):
    """A bad option: a ValueError to code that catches one, and outside any ``except``
    (a YOLOX tool's command line) a one-line message with exit status 1."""

    def __init__(self, message: str):
        super().__init__(message)
        self.code = message


def user_exit(what: str, err: BaseException) -> SystemExit:
    """``SystemExit("<what> failed: <err>")``; the traceback goes to the log file only (DEBUG).

    YOLOX's ``setup_logger`` replaces sys.stdout/stderr with a loguru stream that drops what
    Python prints at exit, so the real streams are put back for the message (only then).
    """
    logger.opt(exception=err).debug(f"{what} failed")
    if isinstance(sys.stderr, StreamToLoguru):
        sys.stdout, sys.stderr = sys.__stdout__, sys.__stderr__
    return SystemExit(f"{what} failed: {err}")


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

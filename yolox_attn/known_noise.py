"""Known noise in the output of YOLOX 0.3.0's tools on current torch and on machines without a GPU,
silenced when this package is imported (every exp of ours imports it); YOLOX's own log is kept.

* ``torch.cuda.amp.GradScaler(args...)`` / ``torch.cuda.amp.autocast(args...)`` "is deprecated"
  FutureWarnings, raised in YOLOX's trainer and head: YOLOX's code, which we do not edit, and
  harmless (torch still runs these calls).
* ``cv2.error: ... The function is not implemented`` from YOLOX's demo, after the first image, where
  OpenCV has no GUI (see ``keep_demo_going_without_windows``).
* ``/bin/sh: 1: nvidia-smi: not found``: YOLOX's train tool counts GPUs with ``get_num_devices``,
  which runs ``nvidia-smi -L`` through the shell, before it checks ``-d``. Where there is no
  nvidia-smi, its count (one line of empty output: 1) is kept and the shell's complaint dropped.
"""

import contextlib
import functools
import os
import shutil
import sys
import warnings
from typing import Callable, Iterator, Optional

CPU_GRAD_SCALER = r"torch\.cuda\.amp\.GradScaler is enabled, but CUDA is not available"
YOLOX_AMP_DEPRECATION = r"`torch\.cuda\.amp\.(GradScaler|autocast)\(args\.\.\.\)` is deprecated"


@contextlib.contextmanager
def stderr_discarded() -> Iterator[None]:
    """Send file descriptor 2, and so what child processes write to it, to /dev/null for a while."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def without_stderr(fn: Callable) -> Callable:
    """``fn`` with its (and its child processes') stderr discarded; its result unchanged."""

    @functools.wraps(fn)
    def quiet(*args, **kwargs):
        with stderr_discarded():
            return fn(*args, **kwargs)

    return quiet


def yolox_tool() -> Optional[str]:
    """The module name of YOLOX's tool running as ``__main__`` (``yolox.tools.train``, ...), if one is.
    Here, with the standard library only, because the package's import runs it."""
    name = getattr(getattr(sys.modules.get("__main__"), "__spec__", None), "name", None)
    return name if isinstance(name, str) and name.startswith("yolox.tools.") else None


def silence_known_noise() -> None:
    """Install the warning filter, and quiet the train tool's GPU count where nvidia-smi is missing."""
    warnings.filterwarnings("ignore", message=YOLOX_AMP_DEPRECATION, category=FutureWarning, module=r"yolox\.")
    # YOLOX's trainer builds GradScaler(enabled=args.fp16); the CPU trainer replaces it
    warnings.filterwarnings("ignore", message=CPU_GRAD_SCALER, category=UserWarning)
    main = sys.modules.get("__main__")
    count = getattr(main, "get_num_devices", None)
    if yolox_tool() == "yolox.tools.train" and callable(count) and shutil.which("nvidia-smi") is None:
        main.get_num_devices = without_stderr(count)
    if yolox_tool() == "yolox.tools.demo":
        keep_demo_going_without_windows(sys.modules.get("cv2"))


def keep_demo_going_without_windows(cv2) -> None:
    """YOLOX's demo waits for a key (``cv2.waitKey(0)``) after each image it saves, which OpenCV
    builds without a GUI (``opencv-python-headless``, this package's) refuse with an error after
    the first image. There, waiting is a no-op: no window was shown (as YOLOX's demo also does
    without --save_result: the next image, the same key code as none pressed)."""
    if cv2 is None:
        return
    try:
        cv2.waitKey(1)
    except cv2.error:
        cv2.waitKey = lambda delay=0: -1

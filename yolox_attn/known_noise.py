"""Known noise in the output of YOLOX 0.3.0's tools on current torch and on machines without a GPU,
silenced when this package is imported (every exp of ours imports it); YOLOX's own log is kept.

* ``torch.cuda.amp.GradScaler(args...)`` / ``torch.cuda.amp.autocast(args...)`` "is deprecated"
  FutureWarnings, raised in YOLOX's trainer and head: YOLOX's code, which we do not edit, and
  harmless (torch still runs these calls).
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
    main = sys.modules.get("__main__")
    count = getattr(main, "get_num_devices", None)
    if yolox_tool() == "yolox.tools.train" and callable(count) and shutil.which("nvidia-smi") is None:
        main.get_num_devices = without_stderr(count)

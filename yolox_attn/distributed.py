"""What YOLOX's distributed training needs from us on a CPU-only machine (gloo, no CUDA)."""

import contextlib
from typing import Iterator

from .patching import replaced


@contextlib.contextmanager
def norm_sync_on_the_cpu() -> Iterator[None]:
    """While active, YOLOX's ``all_reduce_norm`` (every rank's BatchNorm statistics averaged before an
    evaluation) runs on the CPU: it serialises its list of state keys into a CUDA tensor to
    broadcast it, which a machine without CUDA cannot make. Only that tensor's device changes."""
    from yolox.utils import allreduce_norm

    to_tensor = allreduce_norm.pyobj2tensor
    with replaced(allreduce_norm, pyobj2tensor=lambda pyobj, device="cuda": to_tensor(pyobj, device="cpu")):
        yield

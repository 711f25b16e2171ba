"""Replacing a few attributes of YOLOX or torch for the length of a block.

This is how the package swaps one CUDA-only piece of YOLOX's code (``torch.cuda.set_device``,
its CUDA-stream prefetcher, ``torch.cuda.FloatTensor``) for a CPU one while the rest of YOLOX's
method runs as it is, instead of copying the method.
"""

import contextlib
from typing import Any, Iterator


@contextlib.contextmanager
def replaced(namespace: Any, **values: Any) -> Iterator[None]:
    """Inside, ``namespace.<name>`` is ``values[name]`` for each name; afterwards, what it was."""
    missing = [name for name in values if not hasattr(namespace, name)]
    if missing:  # a YOLOX that no longer has the piece would otherwise run its own silently
        raise AttributeError(f"{getattr(namespace, '__name__', namespace)!r} has no attribute(s) {missing} to replace")
    saved = {name: getattr(namespace, name) for name in values}
    for name, value in values.items():
        setattr(namespace, name, value)
    try:
        yield
    finally:
        for name, value in saved.items():
            setattr(namespace, name, value)

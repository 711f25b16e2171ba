"""The input sizes YOLOX's multi-scale training feeds the model, and what they mean for ``compile_model``."""

from typing import List, Tuple

import torch
from loguru import logger


def training_sizes(exp) -> List[Tuple[int, int]]:
    """Every (height, width) a YOLOX training run can feed the model: ``exp.input_size`` first,
    then, every 10 iterations, a draw of ``random_resize`` (``random_size`` factors of 32, or
    ``input_size / 32 +- multiscale_range``, the width keeping the input's aspect ratio)."""
    height, width = exp.input_size
    low, high = getattr(exp, "random_size", None) or (int(height / 32) - exp.multiscale_range,
                                                      int(height / 32) + exp.multiscale_range)
    drawn = {(32 * f, 32 * int(f * width / height)) for f in range(low, high + 1)}
    return sorted(drawn | {(height, width)})


def recompile_limit() -> int:
    """How many graphs torch compiles for one function before it runs that function uncompiled."""
    config = torch._dynamo.config
    return getattr(config, "recompile_limit", None) or config.cache_size_limit  # the older name


def warn_if_sizes_exceed_recompile_limit(exp) -> bool:
    """Log one warning, and return True, when a static-shape compile meets more training sizes than
    torch compiles graphs: torch then runs every later size uncompiled, with only a note of its own
    on stderr (not in the training log)."""
    sizes, limit = training_sizes(exp), recompile_limit()
    if len(sizes) <= limit:
        return False
    logger.warning(
        f"compile_model: this exp trains at {len(sizes)} input sizes ({sizes[0][0]}-{sizes[-1][0]} px, multi-scale), "
        f"more than the {limit} graphs torch compiles per function (torch._dynamo.config.recompile_limit): "
        f"after {limit} sizes have compiled, the backbone runs uncompiled at any other size. "
        "multiscale_range 0 trains at one size; a larger recompile_limit compiles every size, once each"
    )
    return True

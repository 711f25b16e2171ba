"""The input sizes YOLOX's multi-scale training feeds the model, and what they mean for ``compile_model``."""

from typing import List, Tuple

import torch
from loguru import logger


SIZE_STEP = 32  # YOLOX draws training sizes as multiples of 32 px


def default_size_factors(input_size: Tuple[int, int], multiscale_range: int) -> Tuple[int, int]:
    """The factors of ``SIZE_STEP`` YOLOX's ``random_resize`` draws from when an exp sets no
    ``random_size``: ``input_size[0] / 32 +- multiscale_range``."""
    base = int(input_size[0] / SIZE_STEP)
    return base - multiscale_range, base + multiscale_range


def drawn_size(factor: int, input_size: Tuple[int, int]) -> Tuple[int, int]:
    """The (height, width) ``random_resize`` feeds for ``factor``: the width keeps the input's aspect ratio."""
    return SIZE_STEP * factor, SIZE_STEP * int(factor * input_size[1] / input_size[0])


def training_sizes(exp) -> List[Tuple[int, int]]:
    """Every (height, width) a YOLOX training run can feed the model: ``exp.input_size`` first,
    then, every 10 iterations, a draw of ``random_resize`` (``random_size`` factors of 32, else
    ``default_size_factors``)."""
    low, high = getattr(exp, "random_size", None) or default_size_factors(exp.input_size, exp.multiscale_range)
    drawn = {drawn_size(f, exp.input_size) for f in range(low, high + 1)}
    return sorted(drawn | {tuple(exp.input_size)})


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

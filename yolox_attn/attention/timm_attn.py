"""timm's attention layers (``timm.layers.create_attn``) by registry name, with checked arguments.

Only the shape-preserving types are registered; lambda, bottleneck and halo take a stride and
replace convolutions, so they are left out. timm is imported when a layer is first built or its
arguments are asked for, not when this package is imported.
"""

import inspect
from functools import lru_cache
from typing import Dict, Mapping, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from .registry import register_attention

# name -> (paper or origin, one-line description for the registry).
TIMM_TYPES: Dict[str, Tuple[str, str]] = {
    "se": ("Hu et al., CVPR 2018", "Squeeze-and-Excitation channel gate"),
    "ese": ("Lee & Park, CVPR 2020, CenterMask", "Effective SE: one 1x1 conv, hard-sigmoid gate"),
    "eca": ("Wang et al., CVPR 2020", "ECA-Net channel gate, 1D conv over the pooled channels"),
    "ecam": ("Wang et al., CVPR 2020, timm variant", "ECA with an MLP instead of the 1D conv"),
    "ceca": ("Wang et al., CVPR 2020, timm variant", "ECA with circular padding of the channel conv"),
    "ge": ("Hu et al., NeurIPS 2018", "Gather-Excite, global extent, no MLP by default"),
    "gc": ("Cao et al., ICCVW 2019, GCNet", "Global Context block, scaling fusion"),
    "gca": ("Cao et al., ICCVW 2019, GCNet", "Global Context block, additive fusion"),
    "cbam": ("Woo et al., ECCV 2018", "CBAM: channel then spatial gate"),
    "lcbam": ("Woo et al., ECCV 2018, timm variant", "light CBAM: cheaper spatial gate"),
    "coord": ("Hou et al., CVPR 2021, timm's version", "Coordinate Attention as timm builds it"),
    "scoord": ("Hou et al., CVPR 2021, timm variant", "simplified Coordinate Attention"),
    "ela": ("Xu & Wan, arXiv 2403.01123", "Efficient Local Attention: 1D depthwise convs along H and W"),
    "strip": ("timm's own", "strip pooling spatial gate"),
    "sk": ("Li et al., CVPR 2019", "Selective Kernel: softmax over 3x3 and dilated-3x3 branches"),
    "splat": ("Zhang et al., CVPRW 2022, ResNeSt", "Split attention over radix groups"),
    "nl": ("Wang et al., CVPR 2018, timm's version", "non-local block, zero-initialised norm"),
    "bat": ("Chi et al., CVPR 2020", "bilinear attentional transform non-local, maps padded to block_size"),
}
# timm's own defaults that fail inside timm 1.0.x: GatherExcite's ConvMlp gets its device/dtype
# dict unpacked as positional arguments (a TypeError), so `ge` builds without the MLP by default.
_DEFAULTS: Dict[str, Dict] = {"ge": {"use_mlp": False}}
# Keywords of timm's classes that are not options here: placement, and what changes the map's
# shape (sk/splat can downsample or change width; a neck attention must keep the shape).
_NOT_OPTIONS = ("self", "device", "dtype", "out_channels", "stride")


@lru_cache(maxsize=None)
def timm_kwargs(name: str) -> Tuple[str, ...]:
    """The keywords timm's class for ``name`` takes besides the channel count (by inspection)."""
    from timm.layers import get_attn

    params = list(inspect.signature(get_attn(name)).parameters.values())
    return tuple(
        p.name for p in params[1:]  # the first is the channel count, whatever timm calls it
        if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD) and p.name not in _NOT_OPTIONS
    )


@lru_cache(maxsize=None)
def _bat_class():
    from timm.layers import BatNonLocalAttn

    class PaddedBatNonLocalAttn(BatNonLocalAttn):
        """timm's BAT, whose forward asserts H and W are multiples of ``block_size`` (YOLOX's
        20x20 dark5 at 640 is not): zero-pads right and bottom to the next multiple, crops back.
        Same parameters and names as timm's module."""

        # Read by the ONNX export tool, which refuses the model with this reason up front.
        onnx_export_note = (
            "timm's BAT pools to block_size x 1 with adaptive_max_pool2d, which the TorchScript-based "
            "ONNX exporter cannot export (input size not accessible) and the torch.export-based one "
            "bakes to the export input's size (onnxruntime then fails on any other size); use another "
            "attention for ONNX, or export_torchscript, which traces it"
        )

        def __init__(self, channels: int, block_size: int = 7, **kwargs):
            if isinstance(block_size, bool) or not isinstance(block_size, int) or block_size < 1:
                raise ValueError(f"bat block_size must be a positive int, got {block_size!r}")
            super().__init__(channels, block_size=block_size, **kwargs)
            self.block_size = block_size

        def forward(self, x):
            h, w = x.shape[-2:]
            pad_h = (self.block_size - h % self.block_size) % self.block_size
            pad_w = (self.block_size - w % self.block_size) % self.block_size
            y = super().forward(F.pad(x, (0, pad_w, 0, pad_h)))
            return y[:, :, :h, :w]

    # Found again by pickle (torch.save of a whole model) through the module __getattr__ below.
    PaddedBatNonLocalAttn.__qualname__ = PaddedBatNonLocalAttn.__name__
    return PaddedBatNonLocalAttn


def __getattr__(name: str):
    # The subclass of timm's BAT is defined on first use, so that importing this does not import timm.
    if name == "PaddedBatNonLocalAttn":
        return _bat_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _smoke_forward(name: str, module: nn.Module, channels: int, options: Mapping) -> None:
    # Some bad options only fail in timm's forward (a view that does not fit, an assert): run a
    # 4x5 map once at build, in eval mode (batch-1 BatchNorm cannot train), so they fail here.
    was_training = module.training
    x = torch.zeros(1, channels, 4, 5)
    try:
        with torch.no_grad():
            shape = tuple(module.eval()(x).shape)
    except Exception as err:
        raise ValueError(
            f"timm's attention {name!r} built with {dict(options)} fails on a 4x5 map: {type(err).__name__}: "
            f"{str(err) or 'a check in timm failed, without a message'}"
        ) from err
    finally:
        module.train(was_training)
    if shape != tuple(x.shape):
        raise ValueError(f"timm's attention {name!r} built with {dict(options)} changes a {tuple(x.shape)} "
                         f"map to {shape}; a neck attention must keep the shape")


def build_timm_attention(name: str, channels: int, kwargs: Mapping) -> nn.Module:
    """timm's ``name`` layer for ``channels`` channels; any failure inside timm becomes a ValueError."""
    if name not in TIMM_TYPES:
        raise ValueError(f"unknown timm attention {name!r}; allowed: {sorted(TIMM_TYPES)}")
    from timm.layers import create_attn

    options = {**_DEFAULTS.get(name, {}), **kwargs}
    try:
        if name == "bat":
            module = _bat_class()(channels, **options)
        else:
            module = create_attn(name, channels, **options)
    except Exception as err:  # timm reports bad values with asserts and TypeErrors
        raise ValueError(
            f"timm could not build attention {name!r} for {channels} channels with {options}: "
            f"{type(err).__name__}: {str(err) or 'a check in timm failed, without a message'}"
        ) from err
    _smoke_forward(name, module, channels, options)
    # timm's non-local block ends in a zero-initialised norm plus the input: an identity at init.
    module.identity_at_init = name == "nl"
    return module


def _register(name: str) -> None:
    paper, what = TIMM_TYPES[name]

    def builder(channels: int, **kwargs) -> nn.Module:
        return build_timm_attention(name, channels, kwargs)

    builder.__name__ = f"timm_{name}"
    register_attention(name, description=f"{what} ({paper}; from timm)", kwargs=lambda: timm_kwargs(name))(builder)


for _name in TIMM_TYPES:
    _register(_name)

"""Embedded-Gaussian non-local block (Wang, Girshick, Gupta, He, "Non-local Neural Networks",
CVPR 2018), the baseline the CCNet paper compares memory and FLOPs against."""

import torch
from torch import nn

from .registry import register_attention


class NonLocal2d(nn.Module):
    """Embedded-Gaussian non-local block (Wang et al., CVPR 2018): ``x + W(y)``.

    ``y_i = sum_j softmax_j(theta_i . phi_j) g_j`` over all H*W positions; ``theta``, ``phi``,
    ``g`` are 1x1 convs C -> C/2 and ``W`` (C/2 -> C) starts at zero, so the block is identity
    at init.
    """

    identity_at_init = True

    def __init__(self, in_channels: int, inter_channels: int = 0):
        super().__init__()
        if isinstance(in_channels, bool) or not isinstance(in_channels, int) or in_channels < 1:
            raise ValueError(f"NonLocal2d needs a positive channel count, got {in_channels!r}")
        inter = inter_channels if inter_channels > 0 else max(1, in_channels // 2)
        self.inter_channels = inter
        self.g = nn.Conv2d(in_channels, inter, kernel_size=1)
        self.theta = nn.Conv2d(in_channels, inter, kernel_size=1)
        self.phi = nn.Conv2d(in_channels, inter, kernel_size=1)
        self.W = nn.Conv2d(inter, in_channels, kernel_size=1)
        # Zero output projection: the block starts as the identity (paper, Sec. 4.1).
        nn.init.zeros_(self.W.weight)
        nn.init.zeros_(self.W.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, h, w = x.shape
        theta = self.theta(x).flatten(2)  # (B, C', N)
        phi = self.phi(x).flatten(2)
        g = self.g(x).flatten(2)
        # Energies and softmax in float32 at least: half energies overflow into NaN.
        dtype = torch.promote_types(theta.dtype, torch.float32)
        with torch.autocast(device_type=x.device.type, enabled=False):
            energy = torch.einsum("bci,bcj->bij", theta.to(dtype), phi.to(dtype))
            att = torch.softmax(energy, dim=2).to(g.dtype)
            y = torch.einsum("bij,bcj->bci", att, g)
        y = y.reshape(b, self.inter_channels, h, w)
        return x + self.W(y).to(x.dtype)


@register_attention("nonlocal", description="Embedded-Gaussian non-local block, zero-initialised output (Wang et al., CVPR 2018; here)")
def non_local(channels: int) -> nn.Module:
    """Embedded-Gaussian non-local block (Wang et al., CVPR 2018)."""
    return NonLocal2d(channels)

"""EMA, Efficient Multi-Scale Attention with cross-spatial learning (Ouyang et al., "Efficient
Multi-Scale Attention Module with Cross-Spatial Learning", ICASSP 2023), with the parameter names
of the official code (YOLOonMe/EMA-attention-module), so its state dicts load strictly."""

import torch
from torch import nn

from .registry import register_attention


class EMA(nn.Module):
    """Efficient Multi-Scale Attention (Ouyang et al., ICASSP 2023).

    The channels are split into ``factor`` groups; per group of C/g channels, a 1x1 branch
    (coordinate gates from the means along W and H, then ``gn``) and a 3x3 branch each weight
    the other's map with a softmax over channels of their own global means; the sum of the two
    (1, H, W) maps, through a sigmoid, scales the group. Pools are plain means (parameter-free,
    and they export with dynamic H, W). Not identity at init.
    """

    identity_at_init = False

    def __init__(self, channels: int, factor: int = 32):
        super().__init__()
        if isinstance(factor, bool) or not isinstance(factor, int) or factor < 1:
            raise ValueError(f"EMA factor (number of groups) must be a positive int, got {factor!r}")
        if channels % factor:
            raise ValueError(f"EMA needs channels divisible by factor, got channels={channels}, factor={factor}")
        self.groups = factor
        group_channels = channels // factor
        self.gn = nn.GroupNorm(group_channels, group_channels)
        self.conv1x1 = nn.Conv2d(group_channels, group_channels, kernel_size=1)
        self.conv3x3 = nn.Conv2d(group_channels, group_channels, kernel_size=3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        g = x.reshape(b * self.groups, c // self.groups, h, w)
        x_h = g.mean(dim=3, keepdim=True)  # (bg, c/g, H, 1)
        x_w = g.mean(dim=2, keepdim=True).transpose(2, 3)  # (bg, c/g, W, 1)
        # The 1x1 conv acts on each position alone: on x_h and x_w apart it equals the official
        # conv of their concatenation split back, without size-dependent slices in traces.
        x1 = self.gn(g * self.conv1x1(x_h).sigmoid() * self.conv1x1(x_w).transpose(2, 3).sigmoid())
        x2 = self.conv3x3(g)
        a1 = x1.mean(dim=(2, 3)).softmax(dim=1)  # (bg, c/g)
        a2 = x2.mean(dim=(2, 3)).softmax(dim=1)
        weights = torch.einsum("nc,nchw->nhw", a1, x2) + torch.einsum("nc,nchw->nhw", a2, x1)
        return (g * weights.unsqueeze(1).sigmoid()).reshape(b, c, h, w)


@register_attention("ema", description="EMA, Efficient Multi-Scale Attention (Ouyang et al., ICASSP 2023; here)")
def ema(channels: int, factor: int = 32) -> nn.Module:
    """EMA, Efficient Multi-Scale Attention (Ouyang et al., ICASSP 2023), here."""
    return EMA(channels, factor=factor)

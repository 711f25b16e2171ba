"""Coordinate Attention (Hou, Zhou, Feng, "Coordinate Attention for Efficient Mobile Network
Design", CVPR 2021), with the official parameter names so official state dicts load strictly."""

import torch
from torch import nn

from .registry import register_attention

_ACTIVATIONS = ("hswish", "mish")


def _make_act(act: str) -> nn.Module:
    # h-swish is x * relu6(x + 3) / 6, exactly nn.Hardswish; Mish is the blog variant.
    if act == "hswish":
        return nn.Hardswish()
    if act == "mish":
        return nn.Mish()
    raise ValueError(f"unknown CoordAtt activation {act!r}; allowed: {list(_ACTIVATIONS)}")


class CoordAtt(nn.Module):
    """Coordinate Attention (Hou et al., CVPR 2021): ``x * a_h * a_w``.

    ``a_h`` (B, C, H, 1) and ``a_w`` (B, C, 1, W) are sigmoid gates computed from the map's
    means along W and along H. Not identity at init (it scales features by about 0.25); wrap it
    in ``ResidualGate`` to fine-tune a pretrained neck.
    """

    identity_at_init = False

    def __init__(self, inp: int, oup: int, reduction: int = 32, act: str = "hswish"):
        super().__init__()
        if inp != oup:
            # The output multiplies the input by the gates, so the channel counts must agree.
            raise ValueError(f"CoordAtt needs inp == oup, got inp={inp!r}, oup={oup!r}")
        if isinstance(reduction, bool) or not isinstance(reduction, int) or reduction < 1:
            raise ValueError(f"CoordAtt reduction must be a positive int, got {reduction!r}")
        mip = max(8, inp // reduction)
        self.conv1 = nn.Conv2d(inp, mip, kernel_size=1, stride=1, padding=0)
        self.bn1 = nn.BatchNorm2d(mip)
        self.act = _make_act(act)
        self.conv_h = nn.Conv2d(mip, oup, kernel_size=1, stride=1, padding=0)
        self.conv_w = nn.Conv2d(mip, oup, kernel_size=1, stride=1, padding=0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x.shape[2]
        # Plain means instead of adaptive_avg_pool2d: they export with dynamic H, W.
        x_h = x.mean(dim=3, keepdim=True)  # (B, C, H, 1)
        x_w = x.mean(dim=2, keepdim=True).transpose(2, 3)  # (B, C, W, 1)
        y = self.act(self.bn1(self.conv1(torch.cat([x_h, x_w], dim=2))))
        # Slices rather than split(y, [h, w]) keep the sizes symbolic in traces and exports.
        y_h = y[:, :, :h]
        y_w = y[:, :, h:].transpose(2, 3)
        a_h = self.conv_h(y_h).sigmoid()
        a_w = self.conv_w(y_w).sigmoid()
        return x * a_w * a_h


@register_attention("ca", aliases=("cam",), description="Coordinate Attention (Hou et al., CVPR 2021; here, official names)")
def coord_attention(channels: int, reduction: int = 32, act: str = "hswish") -> nn.Module:
    """Coordinate Attention (Hou et al., CVPR 2021) for a ``channels``-channel map."""
    return CoordAtt(channels, channels, reduction=reduction, act=act)

"""SimAM (Yang, Zhang, Li, Xie, "SimAM: A Simple, Parameter-Free Attention Module for
Convolutional Neural Networks", ICML 2021): an energy function per neuron, no parameters."""

import torch
from torch import nn

from .registry import register_attention


class SimAM(nn.Module):
    """SimAM (Yang et al., ICML 2021): ``x * sigmoid(e)`` with, per sample and channel,
    ``d = (x - mean(x))**2``, ``v = sum(d) / n``, ``e = d / (4 * (v + e_lambda)) + 0.5``.

    The official code takes ``n = H*W - 1``, which is 0 on a 1x1 map (0/0: NaN). Here
    ``n = max(H*W - 1, 1)``: on a 1x1 map ``d = v = 0``, so ``e = 0.5`` and the output is
    ``x * sigmoid(0.5)``, the value every other map size gives a pixel at its channel's mean.
    No parameters, not identity at init (it scales features by sigmoid(e) >= 0.62).
    """

    identity_at_init = False

    def __init__(self, e_lambda: float = 1e-4):
        super().__init__()
        if isinstance(e_lambda, bool) or not isinstance(e_lambda, (int, float)) or not e_lambda > 0:
            raise ValueError(f"SimAM e_lambda must be a positive number, got {e_lambda!r}")
        self.e_lambda = float(e_lambda)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # float32 at least: squared deviations of half activations overflow past 65504.
        xf = x.to(torch.promote_types(x.dtype, torch.float32))
        d = (xf - xf.mean(dim=(2, 3), keepdim=True)).square()
        # n from a tensor op, not Python ints: traced graphs keep H, W dynamic.
        n = (torch.ones_like(xf[:1, :1]).sum() - 1).clamp(min=1)
        v = d.sum(dim=(2, 3), keepdim=True) / n
        return x * torch.sigmoid(d / (4 * (v + self.e_lambda)) + 0.5).to(x.dtype)

    def extra_repr(self) -> str:
        return f"e_lambda={self.e_lambda}"


@register_attention("simam", description="SimAM, parameter-free energy-based gate (Yang et al., ICML 2021; here)")
def simam(channels: int, e_lambda: float = 1e-4) -> nn.Module:
    """SimAM (Yang et al., ICML 2021): parameter-free, energy-based, here."""
    return SimAM(e_lambda)

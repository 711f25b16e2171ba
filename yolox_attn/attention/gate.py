"""Zero-initialised residual gate that makes any attention an identity at initialisation."""

import torch
from torch import nn

from .scalar import scalar_residual


class ResidualGate(nn.Module):
    """``x + gate * (attn(x) - x)`` with a scalar ``gate`` starting at 0.

    At initialisation the output is exactly ``x``, so a pretrained YOLOX neck keeps its
    detections; ``gate = 1`` gives the wrapped (paper-exact) attention.
    """

    def __init__(self, attn: nn.Module):
        super().__init__()
        self.attn = attn
        self.gate = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # lerp is x + gate * (attn(x) - x) in one pass without temporaries; exactly x at gate 0.
        # Casts keep x's dtype under autocast and .half(); the gate's gradient is summed in float32.
        return scalar_residual(x, self.attn(x).to(x.dtype), self.gate, lerp=True)

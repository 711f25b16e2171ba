"""The common ACmix formulation (ReflectionPad2d + nn.Unfold), as a test and benchmark baseline.

Written from the equations in SPEC.md: it materialises k_att^2 shifted copies of q, k, v and of
the position encoding, which is what makes the usual copy slow and memory hungry. It keeps the
official parameter names and initialisation (``ACmix``'s own), so state dicts move freely between this class and
``yolox_attn.attention.ACmix``. Not registered as an attention: use ``ACmix`` in models.
"""

import torch
from torch import nn

from ..attention.acmix import ACmix


def _position(h: int, w: int, like: torch.Tensor) -> torch.Tensor:
    """(1, 2, h, w) grid: channel 0 holds x = linspace(-1, 1, w), channel 1 y = linspace(-1, 1, h)."""
    loc_w = torch.linspace(-1.0, 1.0, w, device=like.device, dtype=like.dtype).unsqueeze(0).repeat(h, 1)
    loc_h = torch.linspace(-1.0, 1.0, h, device=like.device, dtype=like.dtype).unsqueeze(1).repeat(1, w)
    return torch.stack([loc_w, loc_h], 0).unsqueeze(0)


class UnfoldACmix(ACmix):
    """ACmix (Pan et al., CVPR 2022) in the common unfold formulation; stride 1 only.

    Parameters and initialisation are ``ACmix``'s own (the layout is the official one); only the
    forward differs. Needs H, W > pad (reflection padding), like the official code.
    """

    def __init__(self, in_planes: int, out_planes: int, kernel_att: int = 7, head: int = 4,
                 kernel_conv: int = 3, stride: int = 1, dilation: int = 1):
        if kernel_conv != 3:
            raise ValueError(f"UnfoldACmix supports kernel_conv=3 only (its padding is 1), got {kernel_conv!r}")
        super().__init__(in_planes, out_planes, kernel_att, head, kernel_conv, stride, dilation)
        self.pad_att = nn.ReflectionPad2d(self.padding_att)
        self.unfold = nn.Unfold(kernel_size=kernel_att, padding=0, stride=stride)
        self.softmax = nn.Softmax(dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = self.conv1(x), self.conv2(x), self.conv3(x)
        scaling = float(self.head_dim) ** -0.5
        b, _, h, w = q.shape
        kk_att = self.kernel_att * self.kernel_att
        n = b * self.head
        pe = self.conv_p(_position(h, w, q))

        q_att = q.view(n, self.head_dim, h, w) * scaling
        k_att = k.view(n, self.head_dim, h, w)
        v_att = v.view(n, self.head_dim, h, w)
        unfold_k = self.unfold(self.pad_att(k_att)).view(n, self.head_dim, kk_att, h, w)
        unfold_rpe = self.unfold(self.pad_att(pe)).view(1, self.head_dim, kk_att, h, w)
        att = (q_att.unsqueeze(2) * (unfold_k + pe.unsqueeze(2) - unfold_rpe)).sum(1)
        att = self.softmax(att)
        unfold_v = self.unfold(self.pad_att(v_att)).view(n, self.head_dim, kk_att, h, w)
        out_att = (att.unsqueeze(1) * unfold_v).sum(2).view(b, self.out_planes, h, w)

        f_all = self.fc(torch.cat([q.view(b, self.head, self.head_dim, h * w),
                                   k.view(b, self.head, self.head_dim, h * w),
                                   v.view(b, self.head, self.head_dim, h * w)], 1))
        f_conv = f_all.permute(0, 2, 1, 3).reshape(b, -1, h, w)
        out_conv = self.dep_conv(f_conv)
        return self.rate1 * out_att + self.rate2 * out_conv

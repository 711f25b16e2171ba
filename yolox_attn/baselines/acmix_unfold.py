"""The common ACmix formulation (ReflectionPad2d + nn.Unfold), as a test and benchmark baseline.

Written from the equations in SPEC.md: it materialises k_att^2 shifted copies of q, k, v and of
the position encoding, which is what makes the usual copy slow and memory hungry. It keeps the
official parameter names and initialisation, so state dicts move freely between this class and
``yolox_attn.attention.ACmix``. Not registered as an attention: use ``ACmix`` in models.
"""

import torch
from torch import nn


def _position(h: int, w: int, like: torch.Tensor) -> torch.Tensor:
    """(1, 2, h, w) grid: channel 0 holds x = linspace(-1, 1, w), channel 1 y = linspace(-1, 1, h)."""
    loc_w = torch.linspace(-1.0, 1.0, w, device=like.device, dtype=like.dtype).unsqueeze(0).repeat(h, 1)
    loc_h = torch.linspace(-1.0, 1.0, h, device=like.device, dtype=like.dtype).unsqueeze(1).repeat(1, w)
    return torch.stack([loc_w, loc_h], 0).unsqueeze(0)


class UnfoldACmix(nn.Module):
    """ACmix (Pan et al., CVPR 2022) in the common unfold formulation; stride 1 only.

    Needs H, W > pad (reflection padding), like the official code.
    """

    def __init__(self, in_planes: int, out_planes: int, kernel_att: int = 7, head: int = 4,
                 kernel_conv: int = 3, stride: int = 1, dilation: int = 1):
        super().__init__()
        if stride != 1 or dilation != 1 or kernel_conv != 3:
            raise ValueError("UnfoldACmix supports stride=1, dilation=1, kernel_conv=3 only")
        if out_planes % head:
            raise ValueError(f"out_planes={out_planes} must be divisible by head={head}")
        self.in_planes, self.out_planes = in_planes, out_planes
        self.head, self.kernel_att, self.kernel_conv = head, kernel_att, kernel_conv
        self.stride, self.dilation = stride, dilation
        self.head_dim = out_planes // head
        self.rate1 = nn.Parameter(torch.empty(1))
        self.rate2 = nn.Parameter(torch.empty(1))
        self.conv1 = nn.Conv2d(in_planes, out_planes, kernel_size=1)
        self.conv2 = nn.Conv2d(in_planes, out_planes, kernel_size=1)
        self.conv3 = nn.Conv2d(in_planes, out_planes, kernel_size=1)
        self.conv_p = nn.Conv2d(2, self.head_dim, kernel_size=1)
        self.padding_att = (dilation * (kernel_att - 1) + 1) // 2
        self.pad_att = nn.ReflectionPad2d(self.padding_att)
        self.unfold = nn.Unfold(kernel_size=kernel_att, padding=0, stride=stride)
        self.softmax = nn.Softmax(dim=1)
        kk = kernel_conv * kernel_conv
        self.fc = nn.Conv2d(3 * head, kk, kernel_size=1, bias=False)
        self.dep_conv = nn.Conv2d(kk * self.head_dim, out_planes, kernel_size=kernel_conv, bias=False,
                                  groups=self.head_dim, padding=1, stride=stride)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """rate1 = rate2 = 0.5; dep_conv = one-hot shift kernels; dep_conv has no bias (as upstream)."""
        with torch.no_grad():
            self.rate1.fill_(0.5)
            self.rate2.fill_(0.5)
            kk = self.kernel_conv * self.kernel_conv
            kernel = torch.zeros(kk, self.kernel_conv, self.kernel_conv)
            for i in range(kk):
                kernel[i, i // self.kernel_conv, i % self.kernel_conv] = 1.0
            self.dep_conv.weight.copy_(kernel.unsqueeze(0).repeat(self.out_planes, 1, 1, 1))

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

"""The common formulations of ACmix and Criss-Cross Attention, as test references.

* ``UnfoldACmix``: ACmix (Pan et al., CVPR 2022) in the usual ReflectionPad2d + nn.Unfold form,
  written from the equations in SPEC.md. It materialises k_att^2 shifted copies of q, k, v and of
  the position encoding; it keeps ``ACmix``'s parameter names and initialisation (the official
  layout), so state dicts move freely between the two.
* ``CommonCrissCross``: Criss-Cross Attention (Huang et al., CCNet, ICCV 2019) as commonly copied,
  written from its description: batched matmuls over permuted copies and an (H, H) -inf diagonal
  added to the column energies of every batch column; the official parameter names.

Neither is registered as an attention: the project's modules must compute what these do.
"""

import torch
from torch import nn

from yolox_attn.attention.acmix import ACmix


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


def _neg_inf_diagonal(batch: int, height: int, width: int, like: torch.Tensor) -> torch.Tensor:
    # (B*W, H, H) with -inf on each diagonal: removes the centre from the column set.
    # torch.diag as in the common code (it is also why that code does not export to ONNX).
    diag = torch.diag(torch.full((height,), float("-inf"), device=like.device, dtype=like.dtype))
    return diag.unsqueeze(0).repeat(batch * width, 1, 1)


class CommonCrissCross(nn.Module):
    """Criss-Cross Attention as commonly copied; same parameter names as the official code."""

    identity_at_init = True

    def __init__(self, in_dim: int, recurrence: int = 1):
        super().__init__()
        if in_dim < 8:
            raise ValueError(f"CommonCrissCross needs at least 8 channels, got {in_dim!r}")
        if recurrence < 1:
            raise ValueError(f"recurrence must be >= 1, got {recurrence!r}")
        self.recurrence = recurrence
        self.query_conv = nn.Conv2d(in_dim, in_dim // 8, kernel_size=1)
        self.key_conv = nn.Conv2d(in_dim, in_dim // 8, kernel_size=1)
        self.value_conv = nn.Conv2d(in_dim, in_dim, kernel_size=1)
        self.softmax = nn.Softmax(dim=3)
        self.gamma = nn.Parameter(torch.zeros(1))

    @staticmethod
    def _columns(t: torch.Tensor) -> torch.Tensor:
        # (B, C, H, W) -> (B*W, C, H): one sequence per image column.
        b, c, h, w = t.shape
        return t.permute(0, 3, 1, 2).contiguous().view(b * w, c, h)

    @staticmethod
    def _rows(t: torch.Tensor) -> torch.Tensor:
        # (B, C, H, W) -> (B*H, C, W): one sequence per image row.
        b, c, h, w = t.shape
        return t.permute(0, 2, 1, 3).contiguous().view(b * h, c, w)

    def forward_once(self, x: torch.Tensor) -> torch.Tensor:
        b, _, h, w = x.shape
        query, key, value = self.query_conv(x), self.key_conv(x), self.value_conv(x)
        q_col, q_row = self._columns(query).permute(0, 2, 1), self._rows(query).permute(0, 2, 1)
        k_col, k_row = self._columns(key), self._rows(key)
        v_col, v_row = self._columns(value), self._rows(value)

        energy_col = torch.bmm(q_col, k_col) + _neg_inf_diagonal(b, h, w, q_col)
        energy_col = energy_col.view(b, w, h, h).permute(0, 2, 1, 3)  # (B, H, W, H)
        energy_row = torch.bmm(q_row, k_row).view(b, h, w, w)  # (B, H, W, W)
        att = self.softmax(torch.cat([energy_col, energy_row], dim=3))

        att_col = att[:, :, :, :h].permute(0, 2, 1, 3).contiguous().view(b * w, h, h)
        att_row = att[:, :, :, h:].contiguous().view(b * h, w, w)
        out_col = torch.bmm(v_col, att_col.permute(0, 2, 1)).view(b, w, -1, h).permute(0, 2, 3, 1)
        out_row = torch.bmm(v_row, att_row.permute(0, 2, 1)).view(b, h, -1, w).permute(0, 2, 1, 3)
        return self.gamma * (out_col + out_row) + x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for _ in range(self.recurrence):
            x = self.forward_once(x)
        return x

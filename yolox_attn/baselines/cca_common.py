"""The popular formulation of Criss-Cross Attention (Huang et al., CCNet, ICCV 2019), written
from its description: batched matmuls over permuted copies and an (H, H) -inf diagonal added to
the column energies of every batch column. Benchmark and test baseline only (not registered)."""

import torch
from torch import nn


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

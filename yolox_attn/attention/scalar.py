"""``x + s * d`` with a learnable scalar ``s`` whose gradient is summed in float32.

Used by the residual gate (``lerp``) and CCA's ``gamma`` (``addcmul``). Under fp16 autocast the
scalar is cast to the map's dtype, and autograd then sums its gradient (one product per element
of the map) in fp16: with GradScaler's 2^16 loss scale that sum overflows to inf, the scaler
skips the step and shrinks its scale for the whole model.
"""

import torch
from torch.autograd.function import once_differentiable


class _ScalarResidual(torch.autograd.Function):
    """The plain op forward; the backward sums the scalar's gradient in float32 (at least)."""

    @staticmethod
    def forward(ctx, x, other, scalar, lerp):
        s = scalar.to(x.dtype)
        ctx.lerp = lerp
        ctx.save_for_backward(x if lerp else None, other, s)
        return torch.lerp(x, other, s) if lerp else torch.addcmul(x, s, other)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad):
        x, other, s = ctx.saved_tensors
        grad_x = grad_other = grad_s = None
        if ctx.needs_input_grad[0]:
            grad_x = grad * (1 - s) if ctx.lerp else grad
        if ctx.needs_input_grad[1]:
            grad_other = grad * s
        if ctx.needs_input_grad[2]:
            acc = torch.promote_types(grad.dtype, torch.float32)
            diff = other.to(acc) - x.to(acc) if ctx.lerp else other.to(acc)
            grad_s = torch.sum(grad.to(acc) * diff).reshape(1)
        return grad_x, grad_other, grad_s, None


def scalar_residual(x: torch.Tensor, other: torch.Tensor, scalar: torch.Tensor, lerp: bool = False) -> torch.Tensor:
    """``lerp(x, other, s)`` (``lerp=True``) or ``x + s * other``, ``s = scalar`` cast to x's dtype.

    The forward is exactly the plain op. Only where the map is narrower than the scalar (fp16 or
    bf16 under autocast / ``.half()``) and the scalar needs a gradient does a custom backward sum
    that gradient in float32; float32 training, tracing and export use the plain op.
    """
    if torch.jit.is_tracing() or torch.onnx.is_in_onnx_export() or not _needs_float32_grad(x, scalar):
        s = scalar.to(x.dtype)
        return torch.lerp(x, other, s) if lerp else torch.addcmul(x, s, other)
    return _ScalarResidual.apply(x, other, scalar, lerp)


def _needs_float32_grad(x: torch.Tensor, scalar: torch.Tensor) -> bool:
    if scalar.numel() != 1:
        raise ValueError(f"scalar must have one element, got shape {tuple(scalar.shape)}")
    narrower = torch.promote_types(x.dtype, scalar.dtype) != x.dtype
    return narrower and scalar.requires_grad and torch.is_grad_enabled()

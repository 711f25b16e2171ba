"""fp16 mixed precision (autocast + a scaled loss, as GradScaler does): the learnable scalars
(residual gate, CCA's gamma, ACmix's rate1/rate2) must get finite gradients. Each is one number
multiplying a whole map, so its gradient is a sum over every element of the map."""

import pytest
import torch

from yolox_attn.attention import ResidualGate, build_attention
from yolox_attn.attention.scalar import scalar_residual

LOSS_SCALE = 2.0 ** 16  # GradScaler's initial scale


def _scalar_grads(module, x):
    module.zero_grad()
    with torch.autocast("cpu", dtype=torch.float16):
        out = module(x)
    (out.float().square().mean() * LOSS_SCALE).backward()
    scalars = {n: p.grad for n, p in module.named_parameters() if p.numel() == 1}
    assert scalars, "no scalar parameter"
    return scalars


@pytest.mark.parametrize("name, gated", [("ca", True), ("acmix", True), ("acmix", False), ("cca", False)])
def test_fp16_autocast_scaled_loss_gives_finite_scalar_gradients(name, gated):
    torch.manual_seed(0)
    module = build_attention(name, 32)
    if gated:
        module = ResidualGate(module)
    with torch.no_grad():  # trained values: the scalars are no longer at their initialisation
        for p in module.parameters():
            if p.numel() == 1:
                p.fill_(0.5)
    x = (torch.randn(2, 32, 40, 40) * 2 + 1).half()  # post-activation features have a positive mean
    grads = _scalar_grads(module, x)
    for n, g in grads.items():
        assert g.dtype == torch.float32, n
        assert torch.isfinite(g).all(), f"{n}: {g}"
        assert g.abs().item() > 0, n


def test_scalar_gradient_equals_the_float64_reference():
    torch.manual_seed(1)
    x, other = torch.randn(2, 8, 30, 30) * 3, torch.randn(2, 8, 30, 30) * 3
    grad = torch.randn(2, 8, 30, 30) * 100
    for lerp in (True, False):
        ref_s = torch.full((1,), 0.25, dtype=torch.float64, requires_grad=True)
        xd, od = x.double().requires_grad_(), other.double().requires_grad_()
        ref = torch.lerp(xd, od, ref_s) if lerp else torch.addcmul(xd, ref_s, od)
        ref.backward(grad.double())
        s = torch.full((1,), 0.25, requires_grad=True)
        xh, oh = x.half().requires_grad_(), other.half().requires_grad_()
        out = scalar_residual(xh, oh, s, lerp=lerp)
        ref_fwd = torch.lerp(x.half(), other.half(), s.detach().half()) if lerp else \
            torch.addcmul(x.half(), s.detach().half(), other.half())
        assert torch.equal(out, ref_fwd)  # the forward is the plain op, bit for bit
        out.backward(grad.half())
        assert s.grad.dtype == torch.float32
        torch.testing.assert_close(s.grad.double(), ref_s.grad, rtol=1e-3, atol=0)
        torch.testing.assert_close(xh.grad.double(), xd.grad, rtol=2e-3, atol=2e-2)
        torch.testing.assert_close(oh.grad.double(), od.grad, rtol=2e-3, atol=2e-2)


def test_float32_path_is_the_plain_op():
    x, other = torch.randn(1, 4, 5, 5), torch.randn(1, 4, 5, 5)
    s = torch.zeros(1, requires_grad=True)
    out = scalar_residual(x, other, s, lerp=True)
    assert out.grad_fn.name().startswith("Lerp")
    assert torch.equal(out, x)  # identity at gate 0, bit for bit


def test_scalar_residual_rejects_a_non_scalar():
    with pytest.raises(ValueError, match="one element"):
        scalar_residual(torch.zeros(1, 2, 3, 3), torch.zeros(1, 2, 3, 3), torch.zeros(2))

"""Criss-Cross Attention against a per-pixel loop reference written from SPEC.md."""

import math

import pytest
import torch
from conftest import conv1x1, gradcheck_inputs_and_parameters

from yolox_attn.attention import CrissCrossAttention
from yolox_attn.attention.registry import build_attention
from common_copies import CommonCrissCross

SHAPES = [(2, 16, 5, 7), (1, 16, 1, 6), (1, 16, 6, 1), (1, 16, 1, 1), (1, 24, 4, 9), (2, 8, 3, 2)]


def reference_pass(x: torch.Tensor, sd: dict) -> torch.Tensor:
    """One criss-cross pass with explicit loops: row + column, centre once, one softmax."""
    q = conv1x1(x, sd["query_conv.weight"], sd["query_conv.bias"])
    k = conv1x1(x, sd["key_conv.weight"], sd["key_conv.bias"])
    v = conv1x1(x, sd["value_conv.weight"], sd["value_conv.bias"])
    bsz, _, h, w = x.shape
    out = torch.zeros_like(x)
    for b in range(bsz):
        for i in range(h):
            for j in range(w):
                positions = [(r, j) for r in range(h)] + [(i, c) for c in range(w) if c != j]
                assert len(positions) == h + w - 1
                energies = [float(q[b, :, i, j] @ k[b, :, r, c]) for r, c in positions]
                top = max(energies)
                weights = [math.exp(e - top) for e in energies]
                total = sum(weights)
                for (r, c), wt in zip(positions, weights):
                    out[b, :, i, j] += (wt / total) * v[b, :, r, c]
    return sd["gamma"] * out + x


def reference(x: torch.Tensor, sd: dict, recurrence: int) -> torch.Tensor:
    for _ in range(recurrence):
        x = reference_pass(x, sd)
    return x


def random_module(channels: int, recurrence: int, dtype=torch.float64, seed: int = 0) -> CrissCrossAttention:
    torch.manual_seed(seed)
    m = CrissCrossAttention(channels, recurrence=recurrence).to(dtype)
    with torch.no_grad():
        for p in m.parameters():
            p.copy_(torch.randn_like(p) * 0.5)
        m.gamma.fill_(0.8)
    return m


@pytest.mark.parametrize("recurrence", [1, 2])
@pytest.mark.parametrize("shape", SHAPES)
def test_matches_loop_reference(shape, recurrence):
    m = random_module(shape[1], recurrence)
    x = torch.randn(*shape, dtype=torch.float64)
    with torch.no_grad():
        got = m(x)
        want = reference(x, m.state_dict(), recurrence)
    assert got.shape == x.shape and got.dtype == x.dtype
    assert not torch.allclose(got, x)  # gamma != 0: the attention really contributes
    torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("shape", SHAPES)
def test_common_formulation_equals_fast(shape):
    fast = random_module(shape[1], 1, seed=1)
    common = CommonCrissCross(shape[1]).double()
    common.load_state_dict(fast.state_dict(), strict=True)
    x = torch.randn(*shape, dtype=torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(fast(x), common(x), rtol=1e-12, atol=1e-12)
        # float32 too, within 1e-5
        fast32, common32, x32 = fast.float(), common.float(), x.float()
        torch.testing.assert_close(fast32(x32), common32(x32), rtol=1e-5, atol=1e-5)


def test_common_recurrence_equals_fast_rcca():
    fast = random_module(16, 2, seed=2)
    common = CommonCrissCross(16, recurrence=2).double()
    common.load_state_dict(fast.state_dict())
    x = torch.randn(2, 16, 6, 5, dtype=torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(fast(x), common(x), rtol=1e-12, atol=1e-12)


def test_identity_at_init():
    assert CrissCrossAttention.identity_at_init is True
    m = CrissCrossAttention(16)
    assert m.gamma.shape == (1,) and m.gamma.item() == 0.0
    x = torch.randn(2, 16, 7, 5)
    assert torch.equal(m(x), x)


def test_gradcheck_all_inputs_and_parameters():
    m = random_module(8, 2, seed=3)
    x = torch.randn(1, 8, 3, 4, dtype=torch.float64, requires_grad=True)
    assert gradcheck_inputs_and_parameters(m, x)


def test_official_state_dict_loads_strictly():
    c = 32
    official = {
        "query_conv.weight": torch.randn(c // 8, c, 1, 1),
        "query_conv.bias": torch.randn(c // 8),
        "key_conv.weight": torch.randn(c // 8, c, 1, 1),
        "key_conv.bias": torch.randn(c // 8),
        "value_conv.weight": torch.randn(c, c, 1, 1),
        "value_conv.bias": torch.randn(c),
        "gamma": torch.tensor([0.3]),
    }
    m = CrissCrossAttention(c)
    m.load_state_dict(official, strict=True)
    assert set(m.state_dict()) == set(official)
    x = torch.randn(1, c, 4, 5)
    with torch.no_grad():
        want = reference(x.double(), {k: v.double() for k, v in official.items()}, 2)
        torch.testing.assert_close(m(x).double(), want, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("channels", [7, 1, 0])
def test_too_few_channels(channels):
    with pytest.raises(ValueError, match=f"got {channels}"):
        CrissCrossAttention(channels)


@pytest.mark.parametrize("recurrence", [0, -3])
def test_bad_recurrence(recurrence):
    with pytest.raises(ValueError, match=f"got {recurrence}"):
        CrissCrossAttention(16, recurrence=recurrence)
    with pytest.raises(ValueError, match=f"got {recurrence}"):
        build_attention("cca", 16, recurrence=recurrence)


def large_module(channels: int = 64) -> CrissCrossAttention:
    torch.manual_seed(4)
    m = CrissCrossAttention(channels)
    with torch.no_grad():
        m.query_conv.weight.mul_(20)
        m.key_conv.weight.mul_(20)
        m.gamma.fill_(1.0)
    return m.eval()


def test_half_large_activations_stay_finite():
    m = large_module()
    x = torch.randn(1, 64, 9, 11) * 10
    with torch.no_grad():
        q, k = m.query_conv(x), m.key_conv(x)
        energies = torch.einsum("bchw,bcgw->bhwg", q, k)
        # The test is meaningful: these energies do not fit in float16.
        assert energies.abs().max() > torch.finfo(torch.float16).max
        try:
            out = m.half()(x.half())
        except RuntimeError as err:  # pragma: no cover - depends on the CPU build
            if "not implemented for 'Half'" in str(err):
                pytest.skip(f"CPU lacks a half kernel: {err}")
            raise
    assert out.dtype == torch.float16 and out.shape == x.shape
    assert torch.isfinite(out).all()


def test_autocast_bf16_large_activations_stay_finite():
    m = large_module()
    x = torch.randn(2, 64, 8, 13) * 100
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        out = m(x)
    assert out.dtype == torch.float32 and out.shape == x.shape
    assert torch.isfinite(out).all()


def test_degenerate_rows_have_no_nan_in_backward():
    # H = 1: the column set is only the (masked) centre; gradients must stay finite.
    m = random_module(16, 2, dtype=torch.float32)
    for shape in [(2, 16, 1, 5), (2, 16, 5, 1), (1, 16, 1, 1)]:
        x = torch.randn(*shape, requires_grad=True)
        m(x).square().sum().backward()
        assert torch.isfinite(x.grad).all()
        assert all(torch.isfinite(p.grad).all() for p in m.parameters())
        m.zero_grad()


def test_gradcheck_input_full_jacobian():
    m = random_module(8, 2, seed=5)
    x = torch.randn(1, 8, 2, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(m, (x,), eps=1e-6, atol=1e-5)

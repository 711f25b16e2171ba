"""Embedded-Gaussian non-local block against a loop reference written from the paper."""

import math

import pytest
import torch
from conftest import conv1x1, gradcheck_inputs_and_parameters

from yolox_attn.attention import NonLocal2d
from yolox_attn.attention.registry import build_attention

SHAPES = [(2, 16, 5, 7), (1, 16, 1, 6), (1, 16, 6, 1), (1, 16, 1, 1), (1, 3, 4, 5), (2, 1, 3, 2)]


def reference(x: torch.Tensor, sd: dict) -> torch.Tensor:
    """z_i = x_i + W(sum_j softmax_j(theta_i . phi_j) g_j), loops over positions."""
    theta = conv1x1(x, sd["theta.weight"], sd["theta.bias"])
    phi = conv1x1(x, sd["phi.weight"], sd["phi.bias"])
    g = conv1x1(x, sd["g.weight"], sd["g.bias"])
    bsz, _, h, w = x.shape
    positions = [(i, j) for i in range(h) for j in range(w)]
    y = torch.zeros_like(g)
    for b in range(bsz):
        for i, j in positions:
            energies = [float(theta[b, :, i, j] @ phi[b, :, r, c]) for r, c in positions]
            top = max(energies)
            weights = [math.exp(e - top) for e in energies]
            total = sum(weights)
            for (r, c), wt in zip(positions, weights):
                y[b, :, i, j] += (wt / total) * g[b, :, r, c]
    return x + conv1x1(y, sd["W.weight"], sd["W.bias"])


def random_module(channels: int, seed: int = 0) -> NonLocal2d:
    torch.manual_seed(seed)
    m = NonLocal2d(channels).double()
    with torch.no_grad():
        for p in m.parameters():
            p.copy_(torch.randn_like(p) * 0.5)
    return m


@pytest.mark.parametrize("shape", SHAPES)
def test_matches_loop_reference(shape):
    m = random_module(shape[1])
    x = torch.randn(*shape, dtype=torch.float64)
    with torch.no_grad():
        got = m(x)
    want = reference(x, m.state_dict())
    assert got.shape == x.shape and got.dtype == x.dtype
    torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("channels,inter", [(16, 8), (3, 1), (1, 1), (256, 128)])
def test_inter_channels(channels, inter):
    m = NonLocal2d(channels)
    for conv in (m.theta, m.phi, m.g):
        assert conv.in_channels == channels and conv.out_channels == inter
    assert m.W.in_channels == inter and m.W.out_channels == channels


def test_identity_at_init():
    assert NonLocal2d.identity_at_init is True
    m = NonLocal2d(16)
    assert torch.count_nonzero(m.W.weight) == 0 and torch.count_nonzero(m.W.bias) == 0
    x = torch.randn(2, 16, 5, 7)
    assert torch.equal(m(x), x)


def test_parameter_names_load_strictly():
    c, i = 32, 16
    sd = {}
    for name in ("g", "theta", "phi"):
        sd[f"{name}.weight"] = torch.randn(i, c, 1, 1)
        sd[f"{name}.bias"] = torch.randn(i)
    sd["W.weight"] = torch.randn(c, i, 1, 1)
    sd["W.bias"] = torch.randn(c)
    m = NonLocal2d(c)
    m.load_state_dict(sd, strict=True)
    assert set(m.state_dict()) == set(sd)


def test_gradcheck_all_inputs_and_parameters():
    m = random_module(4, seed=1)
    x = torch.randn(1, 4, 3, 2, dtype=torch.float64, requires_grad=True)
    assert gradcheck_inputs_and_parameters(m, x)
    x_small = torch.randn(1, 4, 2, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(m, (x_small,), eps=1e-6, atol=1e-5)


@pytest.mark.parametrize("channels", [0, -4])
def test_bad_channels(channels):
    with pytest.raises(ValueError, match=f"got {channels}"):
        NonLocal2d(channels)
    with pytest.raises(ValueError, match=f"got {channels}"):
        build_attention("nonlocal", channels)


def large_module() -> NonLocal2d:
    torch.manual_seed(2)
    m = NonLocal2d(64)
    with torch.no_grad():
        m.theta.weight.mul_(20)
        m.phi.weight.mul_(20)
        m.W.weight.normal_()
    return m.eval()


def test_half_large_activations_stay_finite():
    m = large_module()
    x = torch.randn(1, 64, 6, 7) * 10
    with torch.no_grad():
        theta, phi = m.theta(x).flatten(2), m.phi(x).flatten(2)
        assert torch.einsum("bci,bcj->bij", theta, phi).abs().max() > torch.finfo(torch.float16).max
        try:
            out = m.half()(x.half())
        except RuntimeError as err:  # pragma: no cover - depends on the CPU build
            if "not implemented for 'Half'" in str(err):
                pytest.skip(f"CPU lacks a half kernel: {err}")
            raise
    assert out.dtype == torch.float16 and torch.isfinite(out).all()


def test_autocast_bf16_large_activations_stay_finite():
    m = large_module()
    x = torch.randn(2, 64, 5, 9) * 100
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        out = m(x)
    assert out.dtype == torch.float32 and out.shape == x.shape
    assert torch.isfinite(out).all()

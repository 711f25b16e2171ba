"""Coordinate Attention against a loop reference written from SPEC.md."""

import math

import pytest
import torch
from conftest import gradcheck_inputs_and_parameters

from yolox_attn.attention import CoordAtt
from yolox_attn.attention.registry import build_attention

SHAPES = [(2, 16, 5, 7), (1, 16, 1, 6), (2, 16, 7, 1), (1, 16, 1, 1), (1, 24, 9, 4)]


def hswish(t: float) -> float:
    return t * min(max(t + 3.0, 0.0), 6.0) / 6.0


def mish(t: float) -> float:
    return t * math.tanh(math.log1p(math.exp(t)))


def sigmoid(t: float) -> float:
    return 1.0 / (1.0 + math.exp(-t))


def reference(x: torch.Tensor, sd: dict, act: str, eps: float = 1e-5, batch_stats: bool = False) -> torch.Tensor:
    """Plain loops over batch, position and channel."""
    f = {"hswish": hswish, "mish": mish}[act]
    bsz, c, h, w = x.shape
    w1, b1 = sd["conv1.weight"][:, :, 0, 0], sd["conv1.bias"]
    mip = w1.shape[0]
    # Pooled descriptors: mean over W for each row, mean over H for each column, then concat.
    pooled = torch.zeros(bsz, c, h + w, dtype=x.dtype)
    for b in range(bsz):
        for ch in range(c):
            for i in range(h):
                pooled[b, ch, i] = sum(x[b, ch, i, j] for j in range(w)) / w
            for j in range(w):
                pooled[b, ch, h + j] = sum(x[b, ch, i, j] for i in range(h)) / h
    t = torch.zeros(bsz, mip, h + w, dtype=x.dtype)
    for b in range(bsz):
        for p in range(h + w):
            for m in range(mip):
                t[b, m, p] = b1[m] + sum(w1[m, ch] * pooled[b, ch, p] for ch in range(c))
    if batch_stats:  # BatchNorm in train mode: biased batch variance over (B, H + W)
        mean = t.mean(dim=(0, 2))
        var = ((t - mean[None, :, None]) ** 2).mean(dim=(0, 2))
    else:
        mean, var = sd["bn1.running_mean"], sd["bn1.running_var"]
    y = torch.zeros_like(t)
    for b in range(bsz):
        for m in range(mip):
            for p in range(h + w):
                n = (t[b, m, p] - mean[m]) / math.sqrt(var[m] + eps)
                y[b, m, p] = f(float(n * sd["bn1.weight"][m] + sd["bn1.bias"][m]))
    wh, bh = sd["conv_h.weight"][:, :, 0, 0], sd["conv_h.bias"]
    ww, bw = sd["conv_w.weight"][:, :, 0, 0], sd["conv_w.bias"]
    out = torch.zeros_like(x)
    for b in range(bsz):
        for ch in range(c):
            a_h = [sigmoid(float(bh[ch] + wh[ch] @ y[b, :, i])) for i in range(h)]
            a_w = [sigmoid(float(bw[ch] + ww[ch] @ y[b, :, h + j])) for j in range(w)]
            for i in range(h):
                for j in range(w):
                    out[b, ch, i, j] = x[b, ch, i, j] * a_h[i] * a_w[j]
    return out


def random_module(channels: int, act: str = "hswish", reduction: int = 32, seed: int = 0) -> CoordAtt:
    torch.manual_seed(seed)
    m = CoordAtt(channels, channels, reduction=reduction, act=act).double()
    with torch.no_grad():
        for p in m.parameters():
            p.copy_(torch.randn_like(p) * 0.5)
        m.bn1.running_mean.copy_(torch.randn_like(m.bn1.running_mean) * 0.1)
        m.bn1.running_var.copy_(torch.rand_like(m.bn1.running_var) + 0.5)
    return m


@pytest.mark.parametrize("act", ["hswish", "mish"])
@pytest.mark.parametrize("shape", SHAPES)
def test_matches_loop_reference_eval(shape, act):
    m = random_module(shape[1], act).eval()
    x = torch.randn(*shape, dtype=torch.float64)
    with torch.no_grad():
        got = m(x)
    want = reference(x, m.state_dict(), act)
    assert got.shape == x.shape and got.dtype == x.dtype
    torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("shape", [(2, 16, 5, 7), (1, 16, 1, 3)])
def test_matches_loop_reference_train_batch_stats(shape):
    m = random_module(shape[1], "hswish", seed=1).train()
    x = torch.randn(*shape, dtype=torch.float64)
    want = reference(x, m.state_dict(), "hswish", batch_stats=True)
    with torch.no_grad():
        got = m(x)
    torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("inp,reduction,mip", [(16, 32, 8), (512, 32, 16), (1024, 32, 32), (64, 4, 16)])
def test_mip_channels(inp, reduction, mip):
    m = CoordAtt(inp, inp, reduction=reduction)
    assert m.conv1.out_channels == mip and m.bn1.num_features == mip
    assert m.conv_h.out_channels == inp and m.conv_w.out_channels == inp


def test_not_identity_at_init():
    assert CoordAtt.identity_at_init is False
    m = CoordAtt(16, 16).eval()
    x = torch.randn(1, 16, 6, 6)
    ratio = (m(x) / x).flatten()
    # Both gates are sigmoids of small values: about 0.5 * 0.5 (SPEC's "about 0.25").
    assert 0.1 < ratio.mean().item() < 0.45 and (ratio > 0).all() and (ratio < 1).all()


def test_official_state_dict_loads_strictly():
    c, mip = 64, 8
    official = {
        "conv1.weight": torch.randn(mip, c, 1, 1),
        "conv1.bias": torch.randn(mip),
        "bn1.weight": torch.rand(mip) + 0.5,
        "bn1.bias": torch.randn(mip),
        "bn1.running_mean": torch.randn(mip) * 0.1,
        "bn1.running_var": torch.rand(mip) + 0.5,
        "bn1.num_batches_tracked": torch.tensor(10),
        "conv_h.weight": torch.randn(c, mip, 1, 1),
        "conv_h.bias": torch.randn(c),
        "conv_w.weight": torch.randn(c, mip, 1, 1),
        "conv_w.bias": torch.randn(c),
    }
    m = CoordAtt(c, c)
    m.load_state_dict(official, strict=True)
    assert set(m.state_dict()) == set(official)
    assert not any(True for _ in m.act.parameters())  # the activation holds no parameters
    x = torch.randn(1, c, 3, 4)
    with torch.no_grad():
        got = m.eval()(x).double()
    want = reference(x.double(), {k: v.double() for k, v in official.items()}, "hswish")
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


def test_gradcheck_all_inputs_and_parameters():
    m = random_module(8, seed=2).eval()
    x = torch.randn(1, 8, 3, 4, dtype=torch.float64, requires_grad=True)
    assert gradcheck_inputs_and_parameters(m, x)
    x_small = torch.randn(1, 8, 2, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(m, (x_small,), eps=1e-6, atol=1e-5)


@pytest.mark.parametrize("act", ["relu", "swish", "HSWISH"])
def test_bad_activation(act):
    with pytest.raises(ValueError, match=repr(act)) as err:
        CoordAtt(16, 16, act=act)
    assert "hswish" in str(err.value) and "mish" in str(err.value)
    with pytest.raises(ValueError, match=repr(act)):
        build_attention("ca", 16, act=act)


def test_bad_sizes():
    with pytest.raises(ValueError, match="oup=8"):
        CoordAtt(16, 8)
    with pytest.raises(ValueError, match="got 0"):
        CoordAtt(16, 16, reduction=0)


def test_half_and_autocast_large_inputs():
    m = CoordAtt(32, 32).eval()
    x = torch.randn(1, 32, 7, 9) * 100
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        out = m(x)
    assert out.shape == x.shape and torch.isfinite(out).all()
    assert out.dtype in (torch.float32, torch.bfloat16)
    with torch.no_grad():
        try:
            out = m.half()(x.half())
        except RuntimeError as err:  # pragma: no cover - depends on the CPU build
            if "not implemented for 'Half'" in str(err):
                pytest.skip(f"CPU lacks a half kernel: {err}")
            raise
    assert out.dtype == torch.float16 and torch.isfinite(out).all()

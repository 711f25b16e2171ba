"""ACmix: the fast module against a loop reference from SPEC.md's equations and the unfold copy."""

import importlib
import io
import math
from typing import Dict

import pytest
import torch
import torch.nn.functional as F
from conftest import deprecated_torch_path

from yolox_attn.attention import build_attention
from yolox_attn.attention.acmix import ACmix, local_window_attention, reflect_pad2d
from common_copies import UnfoldACmix

acmix_module = importlib.import_module("yolox_attn.attention.acmix")  # the module, not the builder


def randomize_(module: torch.nn.Module, seed: int = 0, scale: float = 0.5) -> torch.nn.Module:
    """Nonzero random weights of moderate size (softmax neither flat nor saturated)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=gen, dtype=torch.float64).to(p.dtype) * scale)
    return module


def reflect(i: int, n: int) -> int:
    """Generalised reflection of index i into [0, n): keep mirroring at both ends."""
    if n == 1:
        return 0
    while i < 0 or i >= n:
        i = -i if i < 0 else 2 * (n - 1) - i
    return i


def reference_acmix(m: ACmix, x: torch.Tensor) -> torch.Tensor:
    """Slow, obvious ACmix in float64, written from SPEC.md (loops over pixels and offsets)."""
    sd: Dict[str, torch.Tensor] = {k: v.double() for k, v in m.state_dict().items()}
    x = x.double()
    b, c, h, w = x.shape
    head, hd, ka, kc = m.head, c // m.head, m.kernel_att, m.kernel_conv
    pad = ka // 2

    def conv1x1(name: str) -> torch.Tensor:
        out = torch.einsum("oc,bchw->bohw", sd[name + ".weight"][:, :, 0, 0], x)
        return out + sd[name + ".bias"].view(1, -1, 1, 1)

    q, k, v = conv1x1("conv1"), conv1x1("conv2"), conv1x1("conv3")

    # attention path
    loc_x = torch.linspace(-1, 1, w, dtype=torch.float64)
    loc_y = torch.linspace(-1, 1, h, dtype=torch.float64)
    wp, bp = sd["conv_p.weight"][:, :, 0, 0], sd["conv_p.bias"]
    pe = wp[:, 0, None, None] * loc_x[None, None, :] + wp[:, 1, None, None] * loc_y[None, :, None] + bp[:, None, None]
    qh = q.view(b, head, hd, h, w) * hd ** -0.5
    kh, vh = k.view(b, head, hd, h, w), v.view(b, head, hd, h, w)
    out_att = torch.zeros(b, head, hd, h, w, dtype=torch.float64)
    for y in range(h):
        for xx in range(w):
            logits, values = [], []
            for i in range(ka):
                for j in range(ka):
                    sy, sx = reflect(y - pad + i, h), reflect(xx - pad + j, w)
                    rel = kh[..., sy, sx] + pe[:, y, xx] - pe[:, sy, sx]
                    logits.append((qh[..., y, xx] * rel).sum(-1))
                    values.append(vh[..., sy, sx])
            att = torch.softmax(torch.stack(logits, -1), -1)
            out_att[..., y, xx] = (att.unsqueeze(2) * torch.stack(values, -1)).sum(-1)
    out_att = out_att.reshape(b, c, h, w)

    # convolution path: fc mixes the 3*head maps (per head_dim group), dep_conv is grouped by head_dim
    stacked = torch.cat([t.view(b, head, hd, h * w) for t in (q, k, v)], 1)
    f = torch.einsum("jc,bcds->bjds", sd["fc.weight"][:, :, 0, 0], stacked).reshape(b, kc * kc, hd, h, w)
    pc = kc // 2
    fp = F.pad(f, (pc, pc, pc, pc))  # zero padding
    wd = sd["dep_conv.weight"]  # (C, kc*kc, kc, kc)
    group = torch.arange(c) // (c // hd)  # output channel -> its head_dim group
    out_conv = torch.zeros(b, c, h, w, dtype=torch.float64)
    for ky in range(kc):
        for kx in range(kc):
            patch = fp[:, :, group, ky:ky + h, kx:kx + w]  # (b, kc*kc, C, h, w)
            out_conv += torch.einsum("oj,bjohw->bohw", wd[:, :, ky, kx], patch)
    return sd["rate1"] * out_att + sd["rate2"] * out_conv


@pytest.mark.parametrize("shape,head,kernel_att,kernel_conv", [
    ((1, 8, 5, 7), 2, 7, 3),
    ((2, 16, 9, 6), 4, 7, 3),
    ((1, 8, 11, 11), 2, 7, 3),
    ((1, 8, 6, 5), 4, 3, 5),
])
def test_matches_loop_reference(shape, head, kernel_att, kernel_conv):
    m = randomize_(ACmix(shape[1], shape[1], kernel_att=kernel_att, head=head, kernel_conv=kernel_conv)).double()
    x = torch.randn(shape, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        y = m(x)
    assert y.shape == shape
    torch.testing.assert_close(y, reference_acmix(m, x), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("shape", [(1, 8, 1, 1), (1, 8, 2, 5), (1, 8, 3, 3), (2, 8, 4, 1), (1, 8, 1, 9)])
def test_small_maps_use_generalised_reflection(shape):
    m = randomize_(ACmix(shape[1], shape[1], head=2)).double()
    x = torch.randn(shape, dtype=torch.float64, generator=torch.Generator().manual_seed(2), requires_grad=True)
    y = m(x)
    assert y.shape == shape and torch.isfinite(y).all()
    torch.testing.assert_close(y.detach(), reference_acmix(m, x.detach()), rtol=1e-10, atol=1e-10)
    y.sum().backward()
    assert torch.isfinite(x.grad).all()


@pytest.mark.parametrize("h,w,pad", [(1, 1, 3), (2, 5, 3), (3, 3, 3), (4, 9, 3), (8, 7, 3), (5, 6, 1), (6, 2, 0)])
def test_reflect_pad2d(h, w, pad):
    x = torch.randn(2, 3, h, w, dtype=torch.float64)
    out = reflect_pad2d(x, pad)
    expect = x[:, :, [reflect(i, h) for i in range(-pad, h + pad)]][..., [reflect(j, w) for j in range(-pad, w + pad)]]
    assert torch.equal(out, expect)
    if h > pad and w > pad:
        assert torch.equal(out, F.pad(x, (pad,) * 4, mode="reflect"))


def _pair(c: int, head: int, dtype: torch.dtype, seed: int = 0):
    fast = randomize_(ACmix(c, c, head=head), seed=seed, scale=0.3).to(dtype)
    slow = UnfoldACmix(c, c, head=head).to(dtype)
    slow.load_state_dict(fast.state_dict(), strict=True)
    return fast, slow


@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-10), (torch.float32, 1e-5)])
@pytest.mark.parametrize("shape,head", [((2, 16, 9, 6), 4), ((1, 32, 12, 17), 4), ((3, 8, 8, 8), 2), ((1, 16, 4, 7), 2)])
def test_matches_unfold_baseline(shape, head, dtype, tol):
    fast, slow = _pair(shape[1], head, dtype)
    x = torch.randn(shape, dtype=dtype, generator=torch.Generator().manual_seed(3)) if dtype == torch.float64 \
        else torch.randn(shape, generator=torch.Generator().manual_seed(3)).to(dtype)
    with torch.no_grad():
        torch.testing.assert_close(fast(x), slow(x), rtol=0, atol=tol)


def test_matches_unfold_baseline_at_init():
    torch.manual_seed(4)
    fast = ACmix(32, 32)
    slow = UnfoldACmix(32, 32)
    slow.load_state_dict(fast.state_dict(), strict=True)
    x = torch.randn(2, 32, 16, 13)
    with torch.no_grad():
        torch.testing.assert_close(fast(x), slow(x), rtol=0, atol=1e-5)


@pytest.mark.parametrize("shape,head", [((2, 16, 9, 6), 4), ((1, 8, 7, 10), 2)])
def test_gradients_match_unfold_baseline(shape, head):
    fast, slow = _pair(shape[1], head, torch.float64, seed=5)
    x = torch.randn(shape, dtype=torch.float64, generator=torch.Generator().manual_seed(6), requires_grad=True)
    g_out = torch.randn(shape, dtype=torch.float64, generator=torch.Generator().manual_seed(7))
    grads_fast = torch.autograd.grad(fast(x), [x, *fast.parameters()], g_out)
    grads_slow = torch.autograd.grad(slow(x), [x, *slow.parameters()], g_out)
    names = ["x"] + [n for n, _ in fast.named_parameters()]
    assert names[1:] == [n for n, _ in slow.named_parameters()]
    for name, a, b in zip(names, grads_fast, grads_slow):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-9, msg=lambda m: f"{name}: {m}")


def test_gradcheck_module():
    # 4x5 map with kernel 7 (index-gather padding) and 5x6 with kernel 3 (F.pad reflect)
    for shape, ka in [((1, 4, 4, 5), 7), ((2, 4, 5, 6), 3)]:
        m = randomize_(ACmix(4, 4, kernel_att=ka, head=2), seed=8).double()
        x = torch.randn(shape, dtype=torch.float64, generator=torch.Generator().manual_seed(9), requires_grad=True)
        assert torch.autograd.gradcheck(m, (x,), eps=1e-6, atol=1e-6, fast_mode=True)


@pytest.mark.parametrize("plain", [False, True])
@pytest.mark.parametrize("shape,fast_mode", [((1, 2, 3, 2), False), ((2, 3, 3, 4), True)])
def test_gradcheck_local_window_attention(plain, shape, fast_mode):
    gen = torch.Generator().manual_seed(10)
    n, d, h, w = shape
    q = torch.randn(n, d, h, w, dtype=torch.float64, generator=gen, requires_grad=True)
    kp = torch.randn(n, d, h + 2, w + 2, dtype=torch.float64, generator=gen, requires_grad=True)
    vp = torch.randn(n, d, h + 2, w + 2, dtype=torch.float64, generator=gen, requires_grad=True)
    fn = lambda a, b, c: local_window_attention(a, b, c, 3, scale=0.7, plain=plain)  # noqa: E731
    assert torch.autograd.gradcheck(fn, (q, kp, vp), fast_mode=fast_mode)


@pytest.mark.parametrize("chunk_slabs", [None, 1, 2])
def test_custom_function_equals_plain_path(monkeypatch, chunk_slabs):
    if chunk_slabs is not None:  # force several chunks, the last one shorter (5 = 2 + 2 + 1)
        monkeypatch.setattr(acmix_module, "_CPU_CHUNK_ELEMENTS", chunk_slabs * 4 * 6 * 7)
    gen = torch.Generator().manual_seed(11)
    q = torch.randn(5, 4, 6, 7, generator=gen, requires_grad=True)
    kp = torch.randn(5, 4, 12, 13, generator=gen, requires_grad=True)
    vp = torch.randn(5, 4, 12, 13, generator=gen, requires_grad=True)
    g = torch.randn(5, 4, 6, 7, generator=gen)
    y_fast = local_window_attention(q, kp, vp, 7, scale=0.3, plain=False)
    grads_fast = torch.autograd.grad(y_fast, (q, kp, vp), g)
    with torch.no_grad():  # inference skips the autograd function and storing the weights
        assert torch.equal(local_window_attention(q, kp, vp, 7, scale=0.3, plain=False), y_fast)
    y_plain = local_window_attention(q, kp, vp, 7, scale=0.3, plain=True)
    grads_plain = torch.autograd.grad(y_plain, (q, kp, vp), g)
    torch.testing.assert_close(y_fast, y_plain, rtol=0, atol=1e-5)
    for a, b in zip(grads_fast, grads_plain):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-5)


@pytest.mark.parametrize("form, width", [("bands", 21), ("bands", 45), ("offsets", 7)])
def test_graph_forms_equal_the_streamed_path(form, width):
    # the exported graph's row bands (fixed widths above 20 columns are cut into segments, the
    # last one partial at 45) and the per-offset form torch.compile traces: same numbers, gradients
    forms = {"bands": lambda *t: local_window_attention(*t, 7, scale=0.3, plain=True),
             "offsets": lambda *t: acmix_module._local_window_attention_offsets(*t, 7, 0.3)}
    gen = torch.Generator().manual_seed(20)
    q = torch.randn(2, 3, 4, width, generator=gen, requires_grad=True)
    kp = torch.randn(2, 3, 10, width + 6, generator=gen, requires_grad=True)
    vp = torch.randn(2, 3, 10, width + 6, generator=gen, requires_grad=True)
    g = torch.randn(2, 3, 4, width, generator=gen)
    y_fast = local_window_attention(q, kp, vp, 7, scale=0.3, plain=False)
    y_form = forms[form](q, kp, vp)
    torch.testing.assert_close(y_form, y_fast, rtol=0, atol=1e-5)
    for a, b in zip(torch.autograd.grad(y_form, (q, kp, vp), g), torch.autograd.grad(y_fast, (q, kp, vp), g)):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-5)


def test_official_names_and_init():
    c, head = 32, 4
    hd = c // head
    shapes = {
        "rate1": (1,), "rate2": (1,),
        "conv1.weight": (c, c, 1, 1), "conv1.bias": (c,),
        "conv2.weight": (c, c, 1, 1), "conv2.bias": (c,),
        "conv3.weight": (c, c, 1, 1), "conv3.bias": (c,),
        "conv_p.weight": (hd, 2, 1, 1), "conv_p.bias": (hd,),
        "fc.weight": (9, 3 * head, 1, 1),
        "dep_conv.weight": (c, 9, 3, 3),
    }
    m = ACmix(c, c, head=head)
    sd = m.state_dict()
    assert {k: tuple(v.shape) for k, v in sd.items()} == shapes
    assert m.dep_conv.bias is None and m.fc.bias is None
    assert m.dep_conv.groups == hd and not ACmix.identity_at_init
    assert m.rate1.item() == 0.5 and m.rate2.item() == 0.5
    for i in range(9):  # one-hot shift kernels
        expect = torch.zeros(3, 3)
        expect[i // 3, i % 3] = 1
        assert torch.equal(m.dep_conv.weight[:, i], expect.expand(c, 3, 3))
    official = {k: torch.randn(s) for k, s in shapes.items()}
    m.load_state_dict(official, strict=True)
    assert torch.equal(m.conv_p.weight, official["conv_p.weight"])


@pytest.mark.parametrize("kwargs,bad", [
    (dict(in_planes=130, out_planes=130, head=4), "130"),
    (dict(in_planes=16, out_planes=16, stride=2), "2"),
    (dict(in_planes=16, out_planes=16, dilation=3), "3"),
    (dict(in_planes=16, out_planes=16, kernel_att=6), "6"),
    (dict(in_planes=16, out_planes=16, kernel_conv=4), "4"),
    (dict(in_planes=16, out_planes=16, head=0), "0"),
    (dict(in_planes=0, out_planes=16), "0"),
])
def test_bad_arguments(kwargs, bad):
    with pytest.raises(ValueError, match=bad):
        ACmix(**kwargs)


def test_registry():
    m = build_attention("acmix", 16, head=2, kernel_att=5)
    assert isinstance(m, ACmix) and m.head == 2 and m.kernel_att == 5
    x = torch.randn(1, 16, 6, 5)
    assert m(x).shape == x.shape
    with pytest.raises(ValueError, match="18"):
        build_attention("acmix", 18)  # 18 is not divisible by head=4


def test_half_precision():
    m = randomize_(ACmix(16, 16, head=4), seed=12, scale=0.2)
    x = torch.randn(2, 16, 9, 7, generator=torch.Generator().manual_seed(13))
    with torch.no_grad():
        ref = m(x)
    mh = m.half()
    xh = x.half().requires_grad_(True)
    y = mh(xh)
    assert y.dtype == torch.float16 and torch.isfinite(y).all()
    torch.testing.assert_close(y.float(), ref, rtol=0, atol=2e-2)
    y.float().sum().backward()
    assert torch.isfinite(xh.grad).all()
    # large features: logits overflow float16 unless accumulated in float32
    with torch.no_grad():
        assert torch.isfinite(mh(xh.detach() * 30)).all()


@pytest.mark.parametrize("train", [True, False])
def test_autocast_bfloat16(train):
    m = randomize_(ACmix(16, 16, head=4), seed=14, scale=0.2).train(train)
    x = torch.randn(1, 16, 8, 11, generator=torch.Generator().manual_seed(15), requires_grad=True)
    with torch.no_grad():
        ref = m(x)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = m(x)
    assert torch.isfinite(y).all()
    torch.testing.assert_close(y.float(), ref, rtol=0, atol=0.15)
    y.float().sum().backward()
    assert torch.isfinite(x.grad).all() and all(torch.isfinite(p.grad).all() for p in m.parameters())


def test_channels_last_input():
    m = randomize_(ACmix(16, 16), seed=16).double()
    x = torch.randn(2, 16, 7, 9, dtype=torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(m(x.to(memory_format=torch.channels_last)), m(x), rtol=0, atol=1e-10)


def test_onnx_export_dynamic_hw():
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    m = randomize_(ACmix(16, 16, head=4), seed=17, scale=0.3).eval()
    buf = io.BytesIO()
    # the legacy exporter (the export tool's fallback) covers 1x1 maps; torch warns it is deprecated
    with deprecated_torch_path("legacy TorchScript-based"):
        torch.onnx.export(m, (torch.randn(1, 16, 12, 10),), buf, dynamo=False, opset_version=17,
                          input_names=["x"], output_names=["y"],
                          dynamic_axes={"x": {0: "b", 2: "h", 3: "w"}, "y": {0: "b", 2: "h", 3: "w"}})
    session = ort.InferenceSession(buf.getvalue(), providers=["CPUExecutionProvider"])
    for shape in [(1, 16, 12, 10), (2, 16, 9, 13), (1, 16, 2, 5), (1, 16, 1, 1)]:
        x = torch.randn(shape)
        (y,) = session.run(None, {"x": x.numpy()})
        with torch.no_grad():
            expect = m(x)
        assert y.shape == shape
        torch.testing.assert_close(torch.from_numpy(y), expect, rtol=0, atol=1e-5)


def test_softmax_weights_sum_to_one_window_size():
    # kernel_att = 1: the window is the pixel itself, so the attention path returns v
    m = randomize_(ACmix(8, 8, kernel_att=1, head=2), seed=18).double()
    with torch.no_grad():
        m.rate2.zero_()
        m.rate1.fill_(1.0)
        x = torch.randn(1, 8, 5, 4, dtype=torch.float64)
        assert torch.allclose(m(x), m.conv3(x), atol=1e-12)
    assert math.isclose(m.padding_att, 0)

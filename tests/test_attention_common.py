"""What every registered attention must do inside the YOLOX neck: keep shapes on odd,
non-square and multi-scale maps, train, survive autocast / .half(), export and trace."""

import warnings

import pytest
import torch
from conftest import deprecated_torch_path
from torch import nn

import yolox_attn.attention as A

NAMES = A.attention_names(include_aliases=False)
C = 16
# (B, H, W); the same module instance sees them in turn, as under YOLOX multi-scale training.
SIZES = [(1, 5, 7), (2, 13, 9), (1, 20, 20), (1, 3, 3), (1, 1, 1)]
# Biases that only add the same constant to every logit of a softmax: their gradient is 0 by
# construction (key bias: q.b is shared by all keys; ACmix's pe bias cancels in pe_u - pe_{u+o}).
SHIFT_INVARIANT = {"key_conv.bias", "phi.bias", "conv_p.bias"}
# Defaults that do not fit C = 16 channels: EMA's 32 groups need C divisible by 32; CBAM's
# 1/16 reduction leaves one hidden ReLU unit, dead for some seeds (then fc1 has no gradient).
TEST_KWARGS = {"ema": {"factor": 4}, "cbam": {"rd_ratio": 0.25}, "lcbam": {"rd_ratio": 0.25}}
# timm layers with a BatchNorm on pooled (B, C', 1, 1) vectors (sk) or on 1-channel maps that are
# 1x1 on a 1x1 input (cbam, lcbam, nl) train only with more than one value per channel: batch 2
# here, as YOLOX's own BatchNorm layers need on a 1x1 map (tests/test_more_attention.py).
TRAIN_BATCH_2 = {"sk", "cbam", "lcbam", "nl"}
# The types that declare themselves unexportable to ONNX (``onnx_export_note``), and the legacy
# exporter's error their note names.
ONNX_REFUSALS = {"bat": r"ONNX export of operator adaptive_max_pool2d, input size not accessible"}


def build(name: str) -> nn.Module:
    return A.build_attention(name, C, **TEST_KWARGS.get(name, {}))


def make(name: str, seed: int = 0) -> nn.Module:
    """Build with defaults and make zero-initialised gates/gammas/projections nonzero, so that
    identity-at-init modules really compute their attention in these tests."""
    torch.manual_seed(seed)
    m = build(name)
    with torch.no_grad():
        for p in m.parameters():
            if torch.count_nonzero(p) == 0:
                p.copy_(0.5 + 0.1 * torch.randn_like(p))
    return m


def forward_half_or_skip(m: nn.Module, x: torch.Tensor) -> torch.Tensor:
    try:
        return m(x)
    except RuntimeError as err:  # pragma: no cover - depends on the CPU build
        if "not implemented for 'Half'" in str(err):
            pytest.skip(f"CPU lacks a half kernel: {err}")
        raise


@pytest.mark.parametrize("mode", ["train", "eval"])
@pytest.mark.parametrize("name", NAMES)
def test_shapes_multiscale(name, mode):
    m = make(name).train(mode == "train")
    for b, h, w in SIZES:
        if mode == "train" and name in TRAIN_BATCH_2:
            b = max(b, 2)
        x = torch.randn(b, C, h, w)
        with torch.no_grad():
            y = m(x)  # every size, 1x1 included: a module that rejects one fails here
        assert y.shape == x.shape and y.dtype == x.dtype
        assert torch.isfinite(y).all()


@pytest.mark.parametrize("name", NAMES)
def test_identity_at_init_flag(name):
    torch.manual_seed(0)
    m = build(name).eval()
    flag = getattr(m, "identity_at_init", isinstance(m, nn.Identity))
    x = torch.randn(2, C, 9, 7)
    with torch.no_grad():
        same = torch.allclose(m(x), x, rtol=0, atol=1e-6)
    assert same == flag


@pytest.mark.parametrize("name", NAMES)
def test_backward_reaches_every_parameter(name):
    m = make(name).train()
    x = torch.randn(2, C, 9, 7, requires_grad=True)
    weight = torch.randn(2, C, 9, 7)
    (m(x) * weight).sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    for pname, p in m.named_parameters():
        assert p.grad is not None, f"{name}: no gradient for {pname}"
        assert torch.isfinite(p.grad).all(), f"{name}: non-finite gradient for {pname}"
        if pname not in SHIFT_INVARIANT:
            assert p.grad.abs().sum() > 0, f"{name}: zero gradient for {pname}"


@pytest.mark.parametrize("name", NAMES)
def test_autocast_bf16_large_inputs(name):
    m = make(name).eval()
    x = torch.randn(2, C, 13, 9) * 100
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        y = m(x)
    assert y.shape == x.shape and y.dtype in (torch.float32, torch.bfloat16)
    assert torch.isfinite(y).all()


@pytest.mark.parametrize("name", NAMES)
def test_half_forward(name):
    m = make(name).eval().half()
    x = (torch.randn(1, C, 13, 9) * 10).half()
    with torch.no_grad():
        y = forward_half_or_skip(m, x)
    assert y.shape == x.shape and y.dtype == torch.float16
    assert torch.isfinite(y).all()


@pytest.mark.parametrize("name", NAMES)
def test_onnx_export_dynamic_hw(name, tmp_path):
    ort = pytest.importorskip("onnxruntime")
    m = make(name).eval()
    x = torch.randn(1, C, 13, 9)
    path = tmp_path / f"{name}.onnx"

    def export():
        # the export tool's fallback path; torch warns that it is deprecated
        with deprecated_torch_path("legacy TorchScript-based"):
            torch.onnx.export(
                m, (x,), str(path), dynamo=False, opset_version=17, input_names=["x"], output_names=["y"],
                dynamic_axes={"x": {2: "h", 3: "w"}, "y": {2: "h", 3: "w"}},
            )

    assert bool(getattr(m, "onnx_export_note", None)) == (name in ONNX_REFUSALS)
    if name in ONNX_REFUSALS:
        # Declared unexportable (the export tool refuses it with this note): the note must hold.
        with pytest.raises(torch.onnx.errors.SymbolicValueError, match=ONNX_REFUSALS[name]):
            export()
        return
    export()
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for shape in [(1, C, 13, 9), (1, C, 10, 15)]:
        x = torch.randn(*shape)
        with torch.no_grad():
            want = m(x).numpy()
        (got,) = session.run(None, {"x": x.numpy()})
        assert got.shape == want.shape
        torch.testing.assert_close(torch.from_numpy(got), torch.from_numpy(want), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("name", NAMES)
def test_jit_trace_round_trip(name, tmp_path):
    m = make(name).eval()
    x = torch.randn(1, C, 13, 9)
    with deprecated_torch_path("torch.jit.trace` is deprecated"):  # TorchScript is torch's deprecated path
        with torch.no_grad():
            traced = torch.jit.trace(m, (x,))
        path = tmp_path / f"{name}.pt"
        torch.jit.save(traced, str(path))
        loaded = torch.jit.load(str(path))
    for shape in [(1, C, 13, 9), (2, C, 10, 15)]:
        x = torch.randn(*shape)
        with torch.no_grad():
            torch.testing.assert_close(loaded(x), m(x), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", NAMES)
def test_torch_export_round_trip_dynamic(name, tmp_path):
    m = make(name).eval()
    dims = {0: torch.export.Dim("b", min=1), 2: torch.export.Dim("h", min=2), 3: torch.export.Dim("w", min=2)}
    if getattr(m, "onnx_export_note", None):
        # bat: its pooling needs a fixed map size, for torch.export's dynamic sizes as for ONNX
        with pytest.raises(Exception, match="Constraints violated"):
            torch.export.export(m, (torch.randn(2, C, 13, 9),), dynamic_shapes=(dims,), strict=False)
        return
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        program = torch.export.export(m, (torch.randn(2, C, 13, 9),), dynamic_shapes=(dims,), strict=False)
        path = tmp_path / f"{name}.pt2"
        torch.export.save(program, str(path))
        loaded = torch.export.load(str(path)).module()
    assert [w for w in caught if issubclass(w.category, (DeprecationWarning, FutureWarning))] == []
    for shape in [(2, C, 13, 9), (1, C, 10, 15), (3, C, 2, 2)]:
        x = torch.randn(*shape)
        with torch.no_grad():
            torch.testing.assert_close(loaded(x), m(x), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", NAMES)
def test_compiles_as_one_graph_with_dynamic_sizes(name):
    # fullgraph=True raises at the first graph break; dynamic=True traces H and W as symbols, as
    # YOLOX's multi-scale training needs. The "eager" backend runs the captured graph without
    # inductor's code generation, so every type is checked in seconds; outputs must match eager.
    torch._dynamo.reset()
    m = make(name)
    compiled = torch.compile(m, fullgraph=True, dynamic=True, backend="eager")
    for mode in ("train", "eval"):
        m.train(mode == "train")
        for b, h, w in [(2, 13, 9), (2, 10, 15)]:
            x = torch.randn(b, C, h, w)
            with torch.no_grad():
                torch.manual_seed(0)  # the same dropout masks (bat) in both
                got = compiled(x)
                torch.manual_seed(0)
                torch.testing.assert_close(got, m(x), rtol=1e-5, atol=1e-5)

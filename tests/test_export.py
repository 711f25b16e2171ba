"""Export tools (ONNX, torch.export .pt2, TorchScript): every registered attention, dynamic shapes,
checkpoints, which exporter was used, no deprecated path by default, failures that write nothing."""

import copy
import os
import subprocess
import sys
import warnings
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from conftest import EXPS_DIR, ROOT, deprecated_torch_path
from torch import nn

from yolox.data.datasets import COCO_CLASSES

from yolox_attn.attention import attention_names
from yolox_attn.attention import acmix as acmix_module
from yolox_attn.attention import registry
from yolox_attn.checkpoint import load_weights
from yolox_attn.deploy.metadata import EXTRA_FILE, ModelInfo, read_onnx_info
from yolox_attn.tools import export_onnx, export_pt2, export_torchscript
from yolox_attn.tools.export_common import (
    MIN_DYNAMIC_SIDE,
    ExportCheckError,
    OutputMismatch,
    check_comparisons,
    compare,
    export_program,
    load_export_model,
    second_size,
)

# Whole-model exports of the modules written here and one timm layer; every registered type is
# exported on its own (dynamic ONNX against onnxruntime, torch.export) in test_attention_common.
ATTENTIONS = [n for n in attention_names(include_aliases=False)
              if n in ("none", "ca", "cca", "acmix", "nonlocal", "simam", "ema", "se")]
# These are known to export through torch.export; a new type may fall back, with a reason.
TORCH_EXPORT_TYPES = {"ca", "cca", "acmix", "nonlocal", "none"}
EXP_FILE = str(EXPS_DIR / "yolox_nano_cam.py")
SIZE = (96, 128)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    # Many tiny ops on 2 shared cores: a second intra-op thread mostly waits at barriers.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# torch.export unrolls ACmix's loop over its window offsets: the default 7x7 window (49 offsets, at
# three levels) takes minutes to export as a whole model. The tools' path is the same with 3x3 (9);
# the default window is exported on its own in test_attention_common.
SMALL_KWARGS = {"acmix": "kernel_att=3"}


def _opts(attention: str, width: float = 0.25):
    kwargs = ["attention_kwargs", SMALL_KWARGS[attention]] if attention in SMALL_KWARGS else []
    return ["attention", attention, "test_size", str(SIZE), "width", str(width), *kwargs]


def _exp(attention: str, width: float = 0.25):
    from yolox.exp import get_exp

    exp = get_exp(EXP_FILE, None)
    exp.merge(_opts(attention, width))
    return exp


def _trained_like(model: nn.Module, seed: int = 0) -> nn.Module:
    """A model whose output visibly depends on its attention, as a trained one's does.

    At init the attention is an exact identity (zero gates / gamma / W), and a random YOLOX in
    eval mode shrinks its features by about half per layer (BN running variance 1, conv outputs
    of smaller variance), so an export bug in the attention would not show in the output. Hence:
    non-zero gates, perturbed attention weights, BN running variances that roughly keep the
    feature scale (0.15; 0.1 already blows up), a stem BN scaled for 0-255 images.
    ``attention_effect`` checks that the result is not vacuous.
    """
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if ".attention." not in name:
                continue
            if name.endswith(("gate", "gamma")):
                p.fill_(0.5)
            else:
                p.add_(0.1 * torch.randn(p.shape, generator=g))
        for name, m in model.named_modules():
            if isinstance(m, nn.BatchNorm2d) and ".attention." not in name:
                m.running_var.fill_(0.15)
        stem = model.backbone.backbone.stem.conv.bn
        stem.running_mean.zero_()
        stem.running_var.fill_(100.0**2)
    return model.eval()


def assert_well_conditioned(model: nn.Module) -> None:
    """The test model's float32 output within 1e-4 of its float64 output.

    Some random seeds give a model whose raw box outputs are so large that the decoded sizes
    (exp) lose more than the tolerance to float32 rounding alone (SimAM and timm's `se` drew such
    seeds, which once looked like export errors); no exporter can match such a model to 1e-3.
    """
    model = copy.deepcopy(model).eval()
    model.head.decode_in_inference = True
    x = torch.rand(2, 3, 160, 192, generator=torch.Generator().manual_seed(0)) * 255
    with torch.no_grad():
        y32 = model(x).double()
        y64 = model.double()(x.double())
    diff = float((y32 - y64).abs().max())
    assert diff <= 1e-4, f"ill-conditioned test model (float32 vs float64: {diff:.3g}): pick another seed"


def attention_effect(model: nn.Module, x: torch.Tensor) -> float:
    """Max change of the decoded output when every attention is switched off (gates, gamma, W = 0)."""
    model = copy.deepcopy(model).eval()
    model.head.decode_in_inference = True
    with torch.no_grad():
        y = model(x)
        for name, p in model.named_parameters():
            if ".attention." in name and name.endswith(("gate", "gamma", "W.weight", "W.bias")):
                p.zero_()
        return float((model(x) - y).abs().max())


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    """Per attention: an official-format checkpoint {'model': state_dict} and the model it holds."""
    root = tmp_path_factory.mktemp("export_ckpts")
    out = {}
    for name in ATTENTIONS:
        torch.manual_seed(0)  # the exp's random init
        model = _trained_like(_exp(name).get_model(), seed=0)
        assert_well_conditioned(model)
        path = root / f"{name}.pth"
        torch.save({"model": model.state_dict(), "start_epoch": 3}, path)
        out[name] = (path, model)
    return out


def _deprecations(caught):
    return [f"{w.category.__name__}: {w.message}" for w in caught
            if issubclass(w.category, (DeprecationWarning, FutureWarning))]


@pytest.mark.parametrize("attention", ATTENTIONS)
def test_onnx_dynamic_matches_pytorch(attention, checkpoints, tmp_path):
    import onnxruntime as ort

    ckpt, model = checkpoints[attention]
    path = tmp_path / f"{attention}.onnx"
    atol = 1e-3
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = export_onnx.main(["-f", EXP_FILE, "-c", str(ckpt), "--output-name", str(path), "--dynamic",
                                   "--decode_in_inference", *_opts(attention)])
    assert result.path == str(path) and path.is_file()
    if attention in TORCH_EXPORT_TYPES:
        assert (result.exporter, result.fallback_reason) == ("dynamo", "")
        assert _deprecations(caught) == []  # the default path uses no deprecated torch API
    else:
        assert result.exporter == "dynamo" or result.fallback_reason, result
    h2, w2 = second_size(SIZE)
    assert list(result.diffs) == [(1, 3, *SIZE), (2, 3, h2, w2)]
    assert all(c.max_abs <= atol for c in result.diffs.values()), result.diffs
    # The file says what it is: no dataset here, so COCO's names by the class count, marked as a guess.
    info = read_onnx_info(str(path))
    assert info == result.info and info.class_names == tuple(COCO_CLASSES) and info.names_guessed
    assert (info.input_size, info.decoded, info.dynamic, info.strides) == (SIZE, True, True, (8, 16, 32))

    # Independently of the tool's own check: the file holds the checkpoint's weights, any size.
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x = torch.rand(3, 3, h2 + 32, w2 - 32) * 255
    model.head.decode_in_inference = True
    with torch.no_grad():
        expected = model(x).numpy()
    got = session.run(None, {"images": x.numpy()})[0]
    assert got.shape == expected.shape
    mismatch = float(np.abs(got - expected).max())
    assert mismatch <= atol
    if attention != "none":
        # Not vacuous: switching the attention off moves the output far more than the mismatch
        # (and more than the tolerance), so a wrongly exported attention would show.
        effect = attention_effect(model, x)
        assert effect > max(atol, 100 * mismatch), (effect, mismatch)


@pytest.mark.parametrize("attention", ATTENTIONS)
def test_pt2_dynamic_matches_pytorch(attention, checkpoints, tmp_path):
    ckpt, model = checkpoints[attention]
    path = tmp_path / f"{attention}.pt2"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = export_pt2.main(["-f", EXP_FILE, "-c", str(ckpt), "--output-name", str(path),
                                  "--decode_in_inference", *_opts(attention)])
    assert _deprecations(caught) == []
    h2, w2 = second_size(SIZE)
    assert result.path == str(path) and list(result.diffs) == [(1, 3, *SIZE), (2, 3, h2, w2)]
    assert all(c.max_abs <= 1e-4 for c in result.diffs.values()), result.diffs
    # The saved file alone reproduces the checkpoint's model at a third size, and says what it is.
    extra = {EXTRA_FILE: ""}
    loaded = torch.export.load(str(path), extra_files=extra).module()
    assert ModelInfo.from_json(extra[EXTRA_FILE], str(path)) == result.info
    assert result.info.class_names == tuple(COCO_CLASSES) and result.info.decoded
    x = torch.rand(3, 3, MIN_DYNAMIC_SIDE, 2 * MIN_DYNAMIC_SIDE + 32) * 255
    model.head.decode_in_inference = True
    with torch.no_grad():
        assert (loaded(x) - model(x)).abs().max() <= 1e-4


def test_huge_raw_outputs_pass_the_default_tolerance(checkpoints, tmp_path):
    # An undertrained model's raw box outputs can reach 1e7, where float32 rounding alone moves them by
    # about 1: judged relative to each output group's scale, every tool exports it at its defaults.
    _, model = checkpoints["ca"]
    model = copy.deepcopy(model)
    with torch.no_grad():
        for conv in model.head.reg_preds:
            conv.weight.mul_(1e8)  # raw box outputs of about 1e7
            conv.bias.mul_(1e8)
    ckpt = tmp_path / "huge.pth"
    torch.save({"model": model.state_dict()}, ckpt)
    argv = ["-f", EXP_FILE, "-c", str(ckpt), *_opts("ca")]  # YOLOX's default: raw outputs, not decoded
    with deprecated_torch_path("torch.jit.trace` is deprecated"):
        results = [tool.main([*argv[:4], "--output-name", str(tmp_path / name), *argv[4:]])
                   for tool, name in [(export_onnx, "m.onnx"), (export_pt2, "m.pt2"),
                                      (export_torchscript, "m.torchscript.pt")]]
    for result in results:
        boxes = {g.name: g for c in result.diffs.values() for g in c.groups}["boxes"]
        assert boxes.scale > 1e6 and boxes.ok and boxes.relative <= 1e-6, boxes
    onnx_boxes = results[0].diffs[(1, 3, *SIZE)].groups[0]
    assert onnx_boxes.max_abs > 1e-3, onnx_boxes  # what the former absolute check refused


class _ExportShift(nn.Module):
    """Adds 1000 while torch.export traces it: an exported file that differs from the eager model (a random
    YOLOX in eval mode shrinks its features layer by layer, so the shift must be large to reach the output)."""

    identity_at_init = True

    def forward(self, x):
        return x + 1000.0 if torch.compiler.is_exporting() else x


def test_mismatch_names_the_outputs_and_the_flags(monkeypatch, tmp_path):
    monkeypatch.setitem(registry._BUILDERS, "shifted", lambda channels: _ExportShift())
    path = tmp_path / "m.onnx"
    with pytest.raises(OutputMismatch) as info:
        export_onnx.main(["-f", EXP_FILE, "--output-name", str(path), *_opts("shifted")])
    message = str(info.value)
    assert message.startswith("the ONNX file of the model with attention 'shifted' in onnxruntime (CPU provider, "
                              "float32) does not match PyTorch within --atol 0.001 + --rtol 1e-05")
    for group in ("boxes", "objectness", "classes"):
        assert f"input (1, 3, 96, 128): {group} max abs diff" in message
    assert "; to accept this, pass --rtol " in message and " or --atol " in message
    assert "cannot be exported" not in message and not path.exists()


def test_acmix_takes_the_plain_op_path_under_torch_export(monkeypatch):
    # The streamed path (custom autograd function, out= ops) must not run while exporting.
    m = registry.build_attention("acmix", 16).eval()
    x = torch.randn(2, 16, 12, 10)
    with torch.no_grad():
        expected = m(x)

    def forbidden(*args, **kwargs):
        raise AssertionError("the streamed ACmix path ran under torch.export")

    monkeypatch.setattr(acmix_module, "_stream_window_attention", forbidden)
    monkeypatch.setattr(acmix_module._LocalWindowAttention, "apply", forbidden)
    program = export_program(m, x, dynamic=False)
    assert (program.module()(x) - expected).abs().max() <= 1e-5


class _NumpyAttention(nn.Module):
    """Leaves PyTorch through numpy: neither exporter can record it."""

    identity_at_init = True

    def forward(self, x):
        return x + torch.from_numpy(np.zeros(tuple(x.shape), dtype=np.float32))


@pytest.fixture
def unexportable_type(monkeypatch):
    monkeypatch.setitem(registry._BUILDERS, "numpyattn", lambda channels: _NumpyAttention())
    return "numpyattn"


def test_type_that_cannot_export_fails_clearly(unexportable_type, tmp_path):
    onnx_path, pt2_path = tmp_path / "u.onnx", tmp_path / "u.pt2"
    with pytest.raises(ExportCheckError, match="attention 'numpyattn' cannot be exported to ONNX") as info:
        with deprecated_torch_path("legacy TorchScript-based"):  # the fallback is tried
            export_onnx.main(["-f", EXP_FILE, "--output-name", str(onnx_path), "--dynamic",
                              *_opts(unexportable_type)])
    assert "torch.export-based exporter failed" in str(info.value) and "legacy exporter" in str(info.value)
    with pytest.raises(ExportCheckError, match="attention 'numpyattn' cannot be exported with torch.export"):
        export_pt2.main(["-f", EXP_FILE, "--output-name", str(pt2_path), *_opts(unexportable_type)])
    with pytest.raises(ExportCheckError, match="the torch.export-based exporter failed"):
        export_onnx.main(["-f", EXP_FILE, "--output-name", str(onnx_path), "--exporter", "dynamo", "--dynamic",
                          *_opts(unexportable_type)])
    assert sorted(os.listdir(tmp_path)) == []


@pytest.mark.parametrize("tool, name", [(export_onnx, "m.onnx"), (export_pt2, "m.pt2"),
                                        (export_torchscript, "m.torchscript.pt")])
def test_failed_check_leaves_no_file_and_keeps_an_older_one(tool, name, tmp_path, recwarn):
    extra = ["--exporter", "dynamo", "--dynamic"] if tool is export_onnx else []
    argv = ["-f", EXP_FILE, "--atol", "-1", "--rtol", "0", *extra, *_opts("none")]  # no difference is <= -1
    with pytest.raises(ExportCheckError, match="does not match PyTorch"):
        tool.main([*argv[:2], "--output-name", str(tmp_path / name), *argv[2:]])
    assert os.listdir(tmp_path) == []
    (tmp_path / name).write_bytes(b"older")
    assert tool.run([*argv[:2], "--output-name", str(tmp_path / name), *argv[2:]]) == 1
    assert os.listdir(tmp_path) == [name] and (tmp_path / name).read_bytes() == b"older"


def test_default_output_is_next_to_the_exp_outputs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # nothing may land in the current directory
    out_dir = tmp_path / "outputs"
    # (attention ca: the exp's own, so its name stays yolox_nano_cam)
    result = export_pt2.main(["-f", EXP_FILE, *_opts("ca"), "output_dir", str(out_dir)])
    assert result.path == str(out_dir / "yolox_nano_cam" / "yolox_nano_cam.pt2")
    assert os.path.isfile(result.path) and sorted(os.listdir(tmp_path)) == ["outputs"]
    assert os.stat(result.path).st_mode & 0o777 == 0o666 & ~_umask()
    with deprecated_torch_path("torch.jit.trace` is deprecated"):  # TorchScript is torch's deprecated path
        result = export_torchscript.main(["-f", EXP_FILE, *_opts("ca"), "output_dir", str(out_dir)])
    assert result.path == str(out_dir / "yolox_nano_cam" / "yolox_nano_cam.torchscript.pt")
    assert os.path.isfile(result.path)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@pytest.mark.parametrize("attention", ATTENTIONS)
def test_torchscript_round_trip(attention, checkpoints, tmp_path):
    ckpt, _ = checkpoints[attention]
    path = tmp_path / f"{attention}.torchscript.pt"
    with deprecated_torch_path("torch.jit.trace` is deprecated"):  # passed on, not hidden
        result = export_torchscript.main(["-f", EXP_FILE, "-c", str(ckpt), "--output-name", str(path),
                                          "--decode_in_inference", *_opts(attention)])
    assert path.is_file()
    extra = {EXTRA_FILE: ""}
    with deprecated_torch_path("torch.jit.load` is deprecated"):
        torch.jit.load(str(path), _extra_files=extra)
    assert ModelInfo.from_json(extra[EXTRA_FILE], str(path)) == result.info and result.info.input_size == SIZE
    # The second, non-square size and batch work: the YOLOX grids are not baked into the trace.
    h2, w2 = second_size(SIZE)
    assert list(result.diffs) == [(1, 3, *SIZE), (2, 3, h2, w2)]
    assert all(c.max_abs <= 1e-4 for c in result.diffs.values()), result.diffs
    if attention == "ema":
        # EMA's GroupNorm: torch's group_norm checks the spatial size in Python, which the tracer
        # reports; the trace still matches at the second size (above).
        assert [w.split(" might")[0] for w in result.tracer_warnings] == [
            "Converting a tensor to a Python boolean"]
    else:
        assert result.tracer_warnings == []


def test_torchscript_reports_baked_in_shapes(monkeypatch, tmp_path):
    class Baked(nn.Module):
        head = SimpleNamespace(strides=[8, 16, 32])  # what the file's metadata reads from a YOLOX model

        def forward(self, x):
            return x.reshape(int(x.shape[0]), -1)[:, :8]  # int(): the trace records the batch size

    monkeypatch.setattr(export_torchscript, "load_export_model", lambda *args, **kwargs: Baked())
    with pytest.raises(ExportCheckError, match="bakes in its trace shape"):
        with deprecated_torch_path("torch.jit.trace` is deprecated"):
            export_torchscript.main(["-f", EXP_FILE, "--output-name", str(tmp_path / "baked.pt"), *_opts("none")])


def test_onnx_cli_subprocess_static(checkpoints, tmp_path):
    """`python -m` with YOLOX's default flags (static shape, undecoded outputs)."""
    ckpt, _ = checkpoints["ca"]
    path = tmp_path / "cam.onnx"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run(
        [sys.executable, "-m", "yolox_attn.tools.export_onnx", "-f", EXP_FILE, "-c", str(ckpt),
         "--output-name", str(path), *_opts("ca")],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert path.is_file()
    assert "verified" in proc.stderr and "(1, 3, 96, 128)" in proc.stderr
    assert "(torch.export-based exporter)" in proc.stderr
    assert "onnxsim" in proc.stderr  # simplified, or said why not
    assert "Deprecat" not in proc.stderr and "FutureWarning" not in proc.stderr


def test_without_checkpoint_warns_and_exports_random_init(tmp_path):
    from loguru import logger

    messages = []
    handler = logger.add(lambda m: messages.append(str(m)), level="WARNING")
    try:
        result = export_pt2.main(["-f", EXP_FILE, "--output-name", str(tmp_path / "init.pt2"), *_opts("none")])
    finally:
        logger.remove(handler)
    assert any("RANDOMLY INITIALISED" in m for m in messages)
    assert all(c.max_abs <= 1e-4 for c in result.diffs.values())


def test_wrong_width_checkpoint_names_layers(checkpoints, tmp_path):
    wide = _exp("ca", width=0.375).get_model()
    path = tmp_path / "wide.pth"
    torch.save({"model": wide.state_dict()}, path)
    with pytest.raises(ValueError, match="another shape") as info:
        load_export_model(_exp("ca"), str(path), decode=False)
    assert "backbone.backbone.stem.conv.conv.weight" in str(info.value)
    # The command line reports it and exits 1 instead of a traceback.
    assert export_onnx.run(["-f", EXP_FILE, "-c", str(path), "--output-name", str(tmp_path / "x.onnx"),
                            *_opts("ca")]) == 1
    assert not (tmp_path / "x.onnx").exists()


def test_plain_yolox_or_other_attention_checkpoint_is_explained():
    model = _exp("cca").get_model()
    plain = {k: v for k, v in model.state_dict().items() if ".attention." not in k}
    with pytest.raises(ValueError, match="only attention weights are missing"):
        load_weights(model, plain)
    with pytest.raises(ValueError, match="checkpoint key\\(s\\) the model lacks"):
        load_weights(_exp("none").get_model(), model.state_dict())


def test_ddp_prefixed_checkpoint_loads(checkpoints, tmp_path):
    ckpt, model = checkpoints["nonlocal"]
    state = torch.load(ckpt, weights_only=True)["model"]
    path = tmp_path / "ddp.pth"
    torch.save({"model": {f"module.{k}": v for k, v in state.items()}}, path)
    loaded = load_export_model(_exp("nonlocal"), str(path), decode=False).state_dict()
    for key, value in model.state_dict().items():
        assert torch.equal(loaded[key], value), key


def test_verification_fails_loudly(tmp_path):
    net = nn.Conv2d(3, 4, 3).eval()
    path = str(tmp_path / "conv.onnx")
    x = torch.randn(1, 3, 8, 8)
    torch.onnx.export(net, (x,), path, dynamo=True, verbose=False, input_names=["images"], output_names=["output"])
    assert export_onnx.verify_onnx(net, path, [x], atol=1e-3, rtol=0)[(1, 3, 8, 8)].max_abs <= 1e-5
    with torch.no_grad():
        net.bias.add_(0.01)
    with pytest.raises(OutputMismatch, match="output max abs diff 0.01"):
        export_onnx.verify_onnx(net, path, [x], atol=1e-3, rtol=0)


def test_comparison_per_group_relative_and_non_finite():
    ref = torch.zeros(1, 3, 7)
    ref[0, :, :4] = torch.tensor([[1e7, 2.0, 3.0, 4.0], [5.0, 6.0, 7.0, float("inf")], [1.0, 1.0, 1.0, 1.0]])
    ref[0, :, 4:] = 0.5
    got = ref.clone()
    got[0, 0, 0] += 1.0  # float32 rounding at 1e7
    got[0, 1, 5] += 2e-4
    c = compare(ref, got, atol=1e-3, rtol=1e-5, what="x")
    boxes, objectness, classes = c.groups
    assert (boxes.name, boxes.max_abs, boxes.scale, boxes.nonfinite) == ("boxes", 1.0, 1e7, 1)  # inf == inf matches
    assert boxes.relative == pytest.approx(1e-7) and boxes.allowed == pytest.approx(1e-3 + 100) and boxes.ok
    assert objectness.max_abs == 0 and classes.max_abs == pytest.approx(2e-4, rel=1e-3) and c.ok
    got[0, 1, 3] = 8.0  # inf in PyTorch only: no tolerance accepts it
    c = compare(ref, got, atol=1e-3, rtol=1e-5, what="x")
    assert c.groups[0].max_abs == float("inf") and not c.ok
    with pytest.raises(OutputMismatch, match=r"boxes max abs diff inf .*no tolerance accepts that"):
        check_comparisons({(1, 3, 8, 8): c}, 1e-3, 1e-5, "the file", "a runtime")
    got[0, 1, 3] = float("inf")
    got[0, 2, 6] = 0.6  # a class score 0.1 off
    with pytest.raises(OutputMismatch, match=r"classes max abs diff 0.1 \(relative 0.2 of the outputs' scale 0.5; "
                                             r"allowed 0.00101\); to accept this, pass --rtol 0.2 or --atol 0.1"):
        check_comparisons({(1, 3, 8, 8): compare(ref, got, 1e-3, 1e-5, "x")}, 1e-3, 1e-5, "the file", "a runtime")


def test_second_size_is_non_square_multiple_of_32():
    assert second_size((96, 128)) == (160, 192)
    assert second_size((640, 640)) == (576, 672)
    assert second_size((416, 416)) == (352, 448)
    for size in [(64, 64), (32, 32), (96, 96), (100, 130)]:
        h, w = second_size(size)
        assert h % 32 == 0 and w % 32 == 0 and h != w and (h, w) != size
        assert min(h, w) >= MIN_DYNAMIC_SIDE  # torch.export's dynamic range


def test_opset_11_explains_einsum(checkpoints, tmp_path):
    # non-local keeps its einsum (CCA's batched matmuls export at opset 11)
    ckpt, _ = checkpoints["nonlocal"]
    # below opset 18 only the legacy exporter is tried (it warns: deprecated in torch)
    with pytest.raises(ExportCheckError, match="opset 11"), deprecated_torch_path("legacy TorchScript-based"):
        export_onnx.main(["-f", EXP_FILE, "-c", str(ckpt), "-o", "11", "--output-name",
                          str(tmp_path / "nonlocal11.onnx"), *_opts("nonlocal")])

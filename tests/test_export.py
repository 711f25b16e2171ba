"""ONNX and TorchScript export tools: every attention, dynamic shapes, checkpoints, failures."""

import copy
import os
import subprocess
import sys
import warnings

import numpy as np
import pytest
import torch
from conftest import EXPS_DIR, ROOT
from torch import nn

from yolox_attn.tools import export_onnx, export_torchscript
from yolox_attn.checkpoint import load_weights
from yolox_attn.tools.export_common import (
    ExportCheckError,
    load_export_model,
    second_size,
)

ATTENTIONS = ["ca", "cca", "acmix", "nonlocal", "none"]
EXP_FILE = str(EXPS_DIR / "yolox_nano_cam.py")
SIZE = (96, 128)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    # Many tiny ops on 2 shared cores: a second intra-op thread mostly waits at barriers.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _opts(attention: str, width: float = 0.25):
    return ["attention", attention, "test_size", str(SIZE), "width", str(width)]


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
    for i, name in enumerate(ATTENTIONS):
        torch.manual_seed(i)  # the exp's random init
        model = _trained_like(_exp(name).get_model(), seed=i)
        path = root / f"{name}.pth"
        torch.save({"model": model.state_dict(), "start_epoch": 3}, path)
        out[name] = (path, model)
    return out


@pytest.mark.parametrize("attention", ATTENTIONS)
def test_onnx_dynamic_matches_pytorch(attention, checkpoints, tmp_path):
    import onnxruntime as ort

    ckpt, model = checkpoints[attention]
    path = tmp_path / f"{attention}.onnx"
    result = export_onnx.main(["-f", EXP_FILE, "-c", str(ckpt), "--output-name", str(path), "--dynamic",
                               "--decode_in_inference", *_opts(attention)])
    assert result.path == str(path) and path.is_file()
    h2, w2 = second_size(SIZE)
    assert list(result.diffs) == [(1, 3, *SIZE), (2, 3, h2, w2)]
    assert all(d <= 1e-3 for d in result.diffs.values()), result.diffs

    # Independently of the tool's own check: the file holds the checkpoint's weights.
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x = torch.rand(1, 3, h2, w2) * 255
    model.head.decode_in_inference = True
    with torch.no_grad():
        expected = model(x).numpy()
    got = session.run(None, {"images": x.numpy()})[0]
    assert got.shape == expected.shape
    assert np.abs(got - expected).max() <= 1e-3
    if attention != "none":  # the 1e-3 check would miss a broken attention if it hardly mattered
        assert attention_effect(model, x) > 5e-3


@pytest.mark.parametrize("attention", ATTENTIONS)
def test_torchscript_round_trip(attention, checkpoints, tmp_path):
    ckpt, _ = checkpoints[attention]
    path = tmp_path / f"{attention}.torchscript.pt"
    result = export_torchscript.main(["-f", EXP_FILE, "-c", str(ckpt), "--output-name", str(path),
                                      "--decode_in_inference", *_opts(attention)])
    assert path.is_file()
    # The second, non-square size and batch work: the YOLOX grids are not baked into the trace.
    h2, w2 = second_size(SIZE)
    assert list(result.diffs) == [(1, 3, *SIZE), (2, 3, h2, w2)]
    assert all(d <= 1e-4 for d in result.diffs.values()), result.diffs
    assert result.tracer_warnings == []


def test_torchscript_reports_baked_in_shapes(monkeypatch, tmp_path):
    class Baked(nn.Module):
        def forward(self, x):
            return x.reshape(int(x.shape[0]), -1)[:, :8]  # int(): the trace records the batch size

    monkeypatch.setattr(export_torchscript, "load_export_model", lambda *args, **kwargs: Baked())
    with pytest.raises(ExportCheckError, match="bakes in its trace shape"):
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
    assert "onnxsim" in proc.stderr  # simplified, or said why not


def test_without_checkpoint_warns_and_exports_random_init(tmp_path):
    from loguru import logger

    messages = []
    handler = logger.add(lambda m: messages.append(str(m)), level="WARNING")
    try:
        result = export_torchscript.main(["-f", EXP_FILE, "--output-name", str(tmp_path / "init.pt"), *_opts("none")])
    finally:
        logger.remove(handler)
    assert any("RANDOMLY INITIALISED" in m for m in messages)
    assert all(d <= 1e-4 for d in result.diffs.values())


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
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # the legacy exporter is chosen on purpose
        torch.onnx.export(net, x, path, dynamo=False, input_names=["images"], output_names=["output"])
    assert export_onnx.verify_onnx(net, path, "images", [x], atol=1e-3)[(1, 3, 8, 8)] <= 1e-5
    with torch.no_grad():
        net.bias.add_(0.01)
    with pytest.raises(ExportCheckError, match="max abs diff 0.01"):
        export_onnx.verify_onnx(net, path, "images", [x], atol=1e-3)


def test_second_size_is_non_square_multiple_of_32():
    assert second_size((96, 128)) == (32, 160)
    assert second_size((640, 640)) == (576, 672)
    assert second_size((416, 416)) == (352, 448)
    for size in [(64, 64), (32, 32), (96, 96), (100, 130)]:
        h, w = second_size(size)
        assert h % 32 == 0 and w % 32 == 0 and h != w and (h, w) != size


def test_opset_11_explains_einsum(checkpoints, tmp_path):
    ckpt, _ = checkpoints["cca"]
    with pytest.raises(ExportCheckError, match="opset 11"):
        export_onnx.main(["-f", EXP_FILE, "-c", str(ckpt), "-o", "11", "--output-name",
                          str(tmp_path / "cca11.onnx"), *_opts("cca")])

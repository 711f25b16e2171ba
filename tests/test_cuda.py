"""CUDA against the CPU: every attention's forward and backward, fp16 autocast with a scaled loss
(also in a YOLOX training step), and YOLOX inference. Skipped without CUDA (scripts/gpu_check.sh
runs them)."""

import copy
import subprocess
import sys

import pytest
import torch
from conftest import ROOT, random_targets, small_exp

from yolox_attn.attention import ResidualGate, build_attention

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")

CASES = [("ca", True), ("cca", False), ("acmix", True), ("acmix", False), ("nonlocal", False)]
C = 64


@pytest.fixture(autouse=True)
def exact_float32():
    # TF32 matmuls/convolutions would differ from the CPU by ~1e-3, hiding real differences.
    matmul, conv = torch.get_float32_matmul_precision(), torch.backends.cudnn.allow_tf32
    torch.set_float32_matmul_precision("highest")
    torch.backends.cudnn.allow_tf32 = False
    yield
    torch.set_float32_matmul_precision(matmul)
    torch.backends.cudnn.allow_tf32 = conv


def _module(name, gated):
    torch.manual_seed(0)
    m = build_attention(name, C)
    m = ResidualGate(m) if gated else m
    with torch.no_grad():  # open the zero-initialised scalars, so the attention path counts
        for n, p in m.named_parameters():
            if n.rsplit(".", 1)[-1] in ("gate", "gamma"):
                p.fill_(0.5)
    return m


@pytest.mark.parametrize("name, gated", CASES)
def test_forward_backward_on_cuda_matches_the_cpu(name, gated):
    cpu = _module(name, gated)
    gpu = copy.deepcopy(cpu).cuda()
    x = torch.randn(2, C, 23, 18)
    grad = torch.randn(2, C, 23, 18)
    x_cpu = x.clone().requires_grad_()
    x_gpu = x.cuda().requires_grad_()
    out_cpu, out_gpu = cpu(x_cpu), gpu(x_gpu)
    torch.testing.assert_close(out_gpu.cpu(), out_cpu, rtol=1e-4, atol=1e-4)
    out_cpu.backward(grad)
    out_gpu.backward(grad.cuda())
    torch.testing.assert_close(x_gpu.grad.cpu(), x_cpu.grad, rtol=1e-4, atol=1e-4)
    for (n, p_cpu), p_gpu in zip(cpu.named_parameters(), gpu.parameters()):
        torch.testing.assert_close(p_gpu.grad.cpu(), p_cpu.grad, rtol=1e-3, atol=1e-3, msg=n)


@pytest.mark.parametrize("name, gated", CASES)
def test_fp16_autocast_on_cuda_with_scaled_loss_is_finite(name, gated):
    m = _module(name, gated).cuda()
    # half precision, as a backbone feature under autocast is
    x = (torch.randn(2, C, 80, 80, device="cuda") * 2 + 1).half().requires_grad_()
    with torch.autocast("cuda", dtype=torch.float16):
        out = m(x)
    assert torch.isfinite(out).all()
    (out.float().square().mean() * 2.0 ** 16).backward()
    assert torch.isfinite(x.grad).all()
    for n, p in m.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), n
        if p.numel() == 1:
            assert p.grad.dtype == torch.float32, n


@pytest.mark.parametrize("attention", ["ca", "cca", "acmix"])
def test_yolox_fp16_step_gives_the_attention_finite_gradients(attention):
    exp = small_exp(attention)
    torch.manual_seed(0)
    model = exp.get_model().cuda().train()
    with torch.no_grad():
        for n, p in model.named_parameters():
            if n.endswith((".gate", ".gamma")):
                p.fill_(0.5)
    h = w = 320
    imgs = torch.rand(4, 3, h, w, device="cuda") * 255
    targets = random_targets(4, h, w).cuda()
    with torch.autocast("cuda", dtype=torch.float16):
        loss = model(imgs, targets)["total_loss"]
    assert torch.isfinite(loss)
    (loss * 2.0 ** 16).backward()  # GradScaler's initial scale
    # An inf here makes GradScaler skip the step and halve its scale for the whole model. (The
    # backbone's own early-step overflows are YOLOX's, and GradScaler's usual warm-up.)
    attention_grads = {n: p.grad for n, p in model.named_parameters() if ".attention." in n}
    assert attention_grads
    bad = [n for n, g in attention_grads.items() if g is None or not torch.isfinite(g).all()]
    assert bad == []


def test_yolox_eval_on_cuda_matches_the_cpu():
    exp = small_exp("cca")
    torch.manual_seed(0)
    cpu = exp.get_model().eval()
    gpu = copy.deepcopy(cpu).cuda()
    x = torch.rand(2, 3, 256, 320) * 255
    with torch.no_grad():
        out_cpu, out_gpu = cpu(x), gpu(x.cuda())
    torch.testing.assert_close(out_gpu.cpu(), out_cpu, rtol=1e-3, atol=1e-2)


def test_yolox_eval_tool_missing_checkpoint_ends_in_one_line(tmp_path):
    # YOLOX's eval tool loads the checkpoint after its set-up and exits 0 on a failure there.
    missing = tmp_path / "missing.pth"
    proc = subprocess.run([sys.executable, "-m", "yolox.tools.eval", "-f",
                           str(ROOT / "exps" / "example" / "yolox_nano_cam_shapes.py"), "-c", str(missing),
                           "-b", "2", "-d", "1"], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    lines = (proc.stdout + proc.stderr).strip().splitlines()
    assert proc.returncode == 1, lines
    assert lines[-1] == f"evaluation failed: checkpoint '{missing}' does not exist", lines

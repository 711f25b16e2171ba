import contextlib
import os
import re
import sys
import warnings
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
EXPS_DIR = ROOT / "exps"

# Two cores: keep intra-op threads bounded so parallel processes (DDP tests) don't thrash.
torch.set_num_threads(min(2, os.cpu_count() or 1))


def load_exp(path):
    """Load an exp file exactly as YOLOX's tools do."""
    from yolox.exp import get_exp

    return get_exp(str(path), None)


@pytest.fixture
def exp_loader():
    return load_exp


@pytest.fixture
def eager_compile(monkeypatch):
    """``nn.Module.compile`` with dynamo's eager backend: dynamo traces for real, without inductor's
    minutes of code generation. Returns the (module class name, keyword arguments) of each call.

    A test with it proves what is compiled and how (modules, options, graphs), not inductor's
    code: tests/test_compile.py compiles with inductor."""
    calls = []
    compile_module = torch.nn.Module.compile

    def compile_eagerly(module, **kwargs):
        calls.append((type(module).__name__, kwargs))
        compile_module(module, backend="eager", **kwargs)

    monkeypatch.setattr(torch.nn.Module, "compile", compile_eagerly)
    return calls


def small_exp(attention="ca", **attrs):
    """A YOLOX-nano-sized AttentionExp for fast model tests."""
    from yolox_attn.exp import AttentionExp

    exp = AttentionExp()
    exp.depth, exp.width = 0.33, 0.25
    exp.attention = attention
    for key, value in attrs.items():
        setattr(exp, key, value)
    return exp


def random_targets(batch: int, height: int, width: int, num_classes: int = 80, n: int = 3, seed: int = 0):
    """YOLOX training targets: (batch, 50, 5) rows of (class, cx, cy, w, h), zero-padded."""
    g = torch.Generator().manual_seed(seed)
    targets = torch.zeros(batch, 50, 5)
    for b in range(batch):
        for i in range(n):
            w = float(torch.randint(8, width // 2, (1,), generator=g))
            h = float(torch.randint(8, height // 2, (1,), generator=g))
            cx = float(torch.randint(int(w // 2) + 1, int(width - w // 2), (1,), generator=g))
            cy = float(torch.randint(int(h // 2) + 1, int(height - h // 2), (1,), generator=g))
            targets[b, i] = torch.tensor([i % num_classes, cx, cy, w, h])
    return targets


def conv1x1(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """A 1x1 convolution written out, for the loop references."""
    return torch.einsum("oc,bchw->bohw", w[:, :, 0, 0], x) + b[None, :, None, None]


def gradcheck_inputs_and_parameters(module, x: torch.Tensor) -> bool:
    """``gradcheck`` with respect to the input and every parameter of ``module``."""
    from torch.func import functional_call

    names = [n for n, _ in module.named_parameters()]
    params = tuple(p.detach().clone().requires_grad_(True) for p in module.parameters())

    def fn(x, *ps):
        return functional_call(module, dict(zip(names, ps)), (x,))

    return torch.autograd.gradcheck(fn, (x, *params), eps=1e-6, atol=1e-5, fast_mode=True)


sys.path.insert(0, str(Path(__file__).parent))


@pytest.fixture(scope="session")
def tiny_shapes(tmp_path_factory):
    """A generated COCO-layout shapes dataset (8 train / 4 val images at 128 px) and exp opts for it."""
    from yolox_attn.data.shapes import make_shapes

    data = tmp_path_factory.mktemp("tiny") / "shapes"
    make_shapes(data, train=8, val=4, size=128, seed=3)
    opts = ["data_dir", str(data), "input_size", "(128,128)", "test_size", "(128,128)", "random_size", "(3,5)",
            "data_num_workers", "0", "test_conf", "0.0"]
    return data, opts


@contextlib.contextmanager
def deprecated_torch_path(match: str):
    """For tests of torch's deprecated paths (TorchScript, the legacy ONNX exporter): assert that
    torch says so (a DeprecationWarning/FutureWarning matching ``match``), and keep its notices
    out of the run's warning summary, which is for warnings nobody expected."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield
    notices = [str(w.message) for w in caught if issubclass(w.category, (DeprecationWarning, FutureWarning))]
    assert any(re.search(match, m) for m in notices), notices

"""SimAM and EMA against loop references, timm's layers by name, and the attention positions."""

import inspect
import math
import re
import sys

import pytest
import torch
import torch.nn.functional as F
from conftest import EXPS_DIR, gradcheck_inputs_and_parameters, small_exp
from torch import nn

import yolox_attn.attention as A
from yolox_attn.attention.timm_attn import TIMM_TYPES

SHAPES = [(2, 8, 5, 7), (1, 8, 1, 1), (1, 8, 1, 6), (2, 8, 9, 4), (1, 8, 3, 3)]


# ---------------------------------------------------------------------------------- SimAM
def simam_reference(x: torch.Tensor, e_lambda: float = 1e-4) -> torch.Tensor:
    """SimAM per sample and channel, from the paper's equations (n = max(H*W - 1, 1))."""
    b_, c_, h, w = x.shape
    n = max(h * w - 1, 1)
    out = torch.empty_like(x)
    for b in range(b_):
        for c in range(c_):
            values = [float(x[b, c, i, j]) for i in range(h) for j in range(w)]
            mu = sum(values) / len(values)
            v = sum((t - mu) ** 2 for t in values) / n
            for i in range(h):
                for j in range(w):
                    t = float(x[b, c, i, j])
                    e = (t - mu) ** 2 / (4 * (v + e_lambda)) + 0.5
                    out[b, c, i, j] = t / (1 + math.exp(-e))
    return out


@pytest.mark.parametrize("shape", SHAPES)
def test_simam_matches_loop_reference(shape):
    torch.manual_seed(0)
    x = torch.randn(*shape, dtype=torch.float64) * 3
    m = A.build_attention("simam", shape[1], e_lambda=1e-3)
    torch.testing.assert_close(m(x), simam_reference(x, 1e-3), rtol=1e-12, atol=1e-12)


def test_simam_one_pixel_map_is_x_times_sigmoid_half_and_has_no_parameters():
    x = torch.randn(2, 4, 1, 1)
    m = A.SimAM()
    torch.testing.assert_close(m(x), x * torch.sigmoid(torch.tensor(0.5)))
    assert not list(m.parameters()) and not m.identity_at_init
    assert gradcheck_inputs_and_parameters(m, torch.randn(1, 3, 4, 5, dtype=torch.float64, requires_grad=True))


@pytest.mark.parametrize("e_lambda", [0, -1e-4, "1e-4", True])
def test_simam_bad_lambda(e_lambda):
    with pytest.raises(ValueError, match="e_lambda"):
        A.build_attention("simam", 8, e_lambda=e_lambda)


# ------------------------------------------------------------------------------------ EMA
def _sig(t: float) -> float:
    return 1 / (1 + math.exp(-t))


def ema_reference(m: A.EMA, x: torch.Tensor) -> torch.Tensor:
    """EMA from the paper's steps, one group of C/g channels at a time, positions looped."""
    b_, c_, h, w = x.shape
    cg = c_ // m.groups
    w1, b1 = m.conv1x1.weight[:, :, 0, 0], m.conv1x1.bias
    w3, b3 = m.conv3x3.weight, m.conv3x3.bias
    gamma, beta, eps = m.gn.weight, m.gn.bias, m.gn.eps
    out = torch.empty_like(x)
    for b in range(b_):
        for k in range(m.groups):
            xg = x[b, k * cg:(k + 1) * cg]  # (cg, H, W)
            # 1. coordinate pools, shared 1x1 conv, split into the H and W parts
            x_h = torch.stack([torch.stack([xg[c, i, :].mean() for i in range(h)]) for c in range(cg)])  # (cg, H)
            x_w = torch.stack([torch.stack([xg[c, :, j].mean() for j in range(w)]) for c in range(cg)])  # (cg, W)
            h_part = w1 @ x_h + b1[:, None]
            w_part = w1 @ x_w + b1[:, None]
            # 2. gates, then GroupNorm with one channel per group (per-channel over H, W)
            x1 = torch.empty_like(xg)
            for c in range(cg):
                y = torch.stack([torch.stack([xg[c, i, j] * _sig(h_part[c, i]) * _sig(w_part[c, j])
                                              for j in range(w)]) for i in range(h)])
                mean, var = y.mean(), ((y - y.mean()) ** 2).mean()
                x1[c] = (y - mean) / torch.sqrt(var + eps) * gamma[c] + beta[c]
            # 3. 3x3 conv, zero padding 1
            x2 = torch.empty_like(xg)
            for o in range(cg):
                for i in range(h):
                    for j in range(w):
                        acc = b3[o]
                        for di in range(3):
                            for dj in range(3):
                                ii, jj = i + di - 1, j + dj - 1
                                if 0 <= ii < h and 0 <= jj < w:
                                    acc = acc + (w3[o, :, di, dj] * xg[:, ii, jj]).sum()
                        x2[o, i, j] = acc
            # 4. softmax over channels of the global means; 5. cross-spatial weights; 6. gate
            a1 = torch.softmax(torch.stack([x1[c].mean() for c in range(cg)]), 0)
            a2 = torch.softmax(torch.stack([x2[c].mean() for c in range(cg)]), 0)
            for i in range(h):
                for j in range(w):
                    weight = sum(a1[c] * x2[c, i, j] + a2[c] * x1[c, i, j] for c in range(cg))
                    out[b, k * cg:(k + 1) * cg, i, j] = xg[:, i, j] * _sig(float(weight))
    return out


def _random_ema(channels: int, factor: int, seed: int = 0) -> A.EMA:
    torch.manual_seed(seed)
    m = A.build_attention("ema", channels, factor=factor).double()
    with torch.no_grad():  # GroupNorm starts at (1, 0): make its affine part visible
        m.gn.weight.copy_(1 + 0.3 * torch.randn_like(m.gn.weight))
        m.gn.bias.copy_(0.3 * torch.randn_like(m.gn.bias))
    return m


@pytest.mark.parametrize("shape", SHAPES)
def test_ema_matches_loop_reference(shape):
    m = _random_ema(shape[1], factor=2)
    x = torch.randn(*shape, dtype=torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(m(x), ema_reference(m, x), rtol=1e-10, atol=1e-10)


def test_ema_official_names_load_strictly_and_gradcheck():
    m = _random_ema(8, factor=4)
    cg = 2
    official = {
        "gn.weight": torch.randn(cg), "gn.bias": torch.randn(cg),
        "conv1x1.weight": torch.randn(cg, cg, 1, 1), "conv1x1.bias": torch.randn(cg),
        "conv3x3.weight": torch.randn(cg, cg, 3, 3), "conv3x3.bias": torch.randn(cg),
    }
    m.load_state_dict(official, strict=True)  # the pools and softmax hold no parameters
    assert m.groups == 4 and not m.identity_at_init
    assert gradcheck_inputs_and_parameters(m.double(), torch.randn(1, 8, 3, 5, dtype=torch.float64, requires_grad=True))


@pytest.mark.parametrize("channels,factor,match", [(48, 32, "divisible"), (64, 0, "factor"), (64, 2.0, "factor")])
def test_ema_bad_groups(channels, factor, match):
    with pytest.raises(ValueError, match=match):
        A.build_attention("ema", channels, factor=factor)


# ----------------------------------------------------------------------------------- timm
def _timm_names_in_create_attn():
    """Every name timm's get_attn dispatches on (read from its source: timm has no list)."""
    from timm.layers.create_attn import get_attn

    return set(re.findall(r"attn_type == '(\w+)'", inspect.getsource(get_attn)))


def test_every_shape_preserving_timm_type_is_registered():
    offered = _timm_names_in_create_attn()
    strided = {"lambda", "bottleneck", "halo"}  # take a stride, replace convolutions: left out
    assert strided <= offered
    assert set(TIMM_TYPES) == offered - strided
    assert set(TIMM_TYPES) <= set(A.attention_names())


@pytest.mark.parametrize("name", sorted(TIMM_TYPES))
def test_timm_builder_returns_timms_module_with_timms_names(name):
    from timm.layers import create_attn, get_attn

    cls = get_attn(name)
    cls = getattr(cls, "func", cls)  # ecam/gca are partials of timm's classes
    torch.manual_seed(0)
    ours = A.build_attention(name, 32)
    kwargs = {"use_mlp": False} if name == "ge" else {}
    theirs = create_attn(name, 32, **kwargs)
    assert isinstance(ours, cls)
    assert ours.state_dict().keys() == theirs.state_dict().keys()
    params = list(inspect.signature(get_attn(name)).parameters.values())[1:]
    skip = ("device", "dtype", "out_channels", "stride")
    assert A.attention_kwargs(name) == tuple(
        p.name for p in params if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL) and p.name not in skip
    )


def test_timm_kwargs_pass_through_and_unknown_ones_are_named():
    assert A.build_attention("se", 64, rd_ratio=0.5).fc1.out_channels == 32
    assert "rd_ratio" in A.attention_kwargs("cbam")
    with pytest.raises(ValueError, match="'reduction'") as err:
        A.build_attention("se", 64, reduction=4)
    assert "'rd_ratio'" in str(err.value)
    with pytest.raises(ValueError, match="'stride'"):  # would downsample the map
        A.build_attention("sk", 64, stride=2)


@pytest.mark.parametrize("name,kwargs,cause", [
    ("ge", {"use_mlp": True}, "TypeError"),  # timm 1.0.x's GatherExcite MLP fails to build
    ("ge", {"extent": 3}, "AssertionError"),
    ("sk", {"kernel_size": 4}, "AssertionError"),
    ("se", {"act_layer": "bogus"}, "KeyError"),
    ("bat", {"groups": 3}, "RuntimeError"),  # only fails in timm's forward: caught at build
    ("splat", {"padding": 0}, "changes a"),  # a shape-changing option
])
def test_timm_failures_become_value_errors(name, kwargs, cause):
    with pytest.raises(ValueError, match=cause) as err:
        A.build_attention(name, 32, **kwargs)
    assert repr(name) in str(err.value) and str(next(iter(kwargs))) in str(err.value)


@pytest.mark.parametrize("name,size", [("sk", 5), ("cbam", 1), ("lcbam", 1), ("nl", 1)])
def test_timm_batchnorm_layers_need_batch_two_to_train(name, size):
    m = A.build_attention(name, 16).train()
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        m(torch.randn(1, 16, size, size))
    assert m(torch.randn(2, 16, size, size)).shape == (2, 16, size, size)
    assert m.eval()(torch.randn(1, 16, size, size)).shape == (1, 16, size, size)


def test_ge_builds_without_mlp_by_default():
    m = A.build_attention("ge", 32)
    assert isinstance(m.mlp, nn.Identity) and not list(m.parameters())


def test_bat_pads_to_block_size_and_equals_timm_on_multiples():
    from timm.layers import BatNonLocalAttn

    torch.manual_seed(0)
    ours = A.build_attention("bat", 32).eval()
    theirs = BatNonLocalAttn(32).eval()
    theirs.load_state_dict(ours.state_dict(), strict=True)
    x = torch.randn(2, 32, 14, 21)
    with torch.no_grad():
        assert torch.equal(ours(x), theirs(x))
        with pytest.raises(AssertionError):
            theirs(torch.randn(1, 32, 20, 20))  # timm alone refuses YOLOX's 20x20 dark5
        x = torch.randn(1, 32, 20, 20)
        want = theirs(F.pad(x, (0, 1, 0, 1)))[:, :, :20, :20]
        assert torch.equal(ours(x), want)


def test_bat_is_one_picklable_class(tmp_path):
    m = A.build_attention("bat", 16)
    assert type(A.build_attention("bat", 16)) is type(m)
    torch.save(m, tmp_path / "bat.pt")  # a whole-model save pickles the class by name
    assert type(torch.load(tmp_path / "bat.pt", weights_only=False)) is type(m)


def test_importing_the_package_does_not_import_timm():
    import subprocess
    import sys

    code = "import sys, yolox_attn.attention as A; A.attention_names(); print('timm' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_export_tool_refuses_bat_with_the_reason(tmp_path):
    from yolox_attn.tools import export_onnx
    from yolox_attn.tools.export_common import ExportCheckError, check_onnx_exportable

    with pytest.raises(ExportCheckError, match="adaptive_max_pool2d") as err:
        check_onnx_exportable(small_exp("bat", attention_levels=("dark5",)).get_model())
    assert "backbone.attention.dark5" in str(err.value)
    check_onnx_exportable(small_exp("se").get_model())  # the others pass
    out = tmp_path / "bat.onnx"
    argv = ["-f", str(EXPS_DIR / "yolox_nano_cam.py"), "--output-name", str(out), "attention", "bat", "test_size", "(64,64)"]
    assert export_onnx.run(argv) == 1 and not out.exists()


# ---------------------------------------------------------------------------- positions
def _keys(model: nn.Module, part: str):
    return sorted({k.split(".")[2] for k in model.state_dict() if k.startswith(f"backbone.{part}.")})


@pytest.mark.parametrize("position,backbone,neck", [
    ("backbone", ["dark3", "dark4", "dark5"], []),
    ("neck", [], ["dark3", "dark4", "dark5"]),
    ("both", ["dark3", "dark4", "dark5"], ["dark3", "dark4", "dark5"]),
])
def test_position_namespaces_the_keys(position, backbone, neck):
    model = small_exp("se", attention_position=position).get_model()
    assert _keys(model, "attention") == backbone and _keys(model, "neck_attention") == neck
    plain = set(small_exp("none").get_model().state_dict())
    own = set(model.state_dict())
    assert plain <= own  # YOLOX's keys unchanged
    assert all(k.startswith(("backbone.attention.", "backbone.neck_attention.")) for k in own - plain)


def test_default_position_keeps_todays_keys():
    exp = small_exp("ca")
    assert exp.attention_position == "backbone"
    keys = [k for k in exp.get_model().state_dict() if "attention" in k]
    assert keys and all(k.startswith("backbone.attention.dark") for k in keys)


@pytest.mark.parametrize("position", ["neck", "both"])
def test_neck_attention_sees_the_pafpn_outputs(position):
    torch.manual_seed(0)
    model = small_exp("se", attention_position=position, attention_levels=("dark3", "dark5")).get_model().eval()
    seen = {}
    for lvl, m in model.backbone.neck_attention.items():
        m.register_forward_hook(lambda mod, inp, out, lvl=lvl: seen.__setitem__(lvl, (inp[0], out)))
    with torch.no_grad():
        nn.init.constant_(model.backbone.neck_attention.dark3.gate, 0.5)
        outs = model.backbone(torch.randn(1, 3, 64, 96))
    assert [o.shape[1] for o in outs] == [64, 128, 256]  # nano: in_channels * width per level
    assert seen["dark3"][0].shape == (1, 64, 8, 12) and seen["dark5"][0].shape == (1, 256, 2, 3)
    assert outs[0] is seen["dark3"][1] and outs[2] is seen["dark5"][1]
    assert not torch.equal(seen["dark3"][1], seen["dark3"][0])  # an open gate changes the output


@pytest.mark.parametrize("position", ["backbone", "neck", "both"])
@pytest.mark.parametrize("attention", ["ca", "simam", "ema", "se", "nl", "bat"])
def test_identity_at_init_equals_plain_yolox_at_every_position(attention, position):
    torch.manual_seed(0)
    baseline = small_exp("none").get_model().eval()
    model = small_exp(attention, attention_position=position).get_model().eval()
    missing, unexpected = model.load_state_dict(baseline.state_dict(), strict=False)
    assert not unexpected and missing
    x = torch.randn(1, 3, 96, 128)
    with torch.no_grad():
        assert torch.equal(model(x), baseline(x))


@pytest.mark.parametrize("value", ["middle", "Neck", None, ("neck",)])
def test_bad_position_is_named(value):
    with pytest.raises(ValueError, match="attention_position") as err:
        small_exp("se", attention_position=value).get_model()
    assert repr(value) in str(err.value) and "'both'" in str(err.value)


def test_position_from_the_command_line_opts():
    exp = small_exp("simam")
    exp.merge(["attention_position", "neck", "attention", "ema", "attention_kwargs", "factor=16"])
    assert exp.attention_position == "neck"
    model = exp.get_model()
    assert _keys(model, "neck_attention") == ["dark3", "dark4", "dark5"] and not _keys(model, "attention")
    assert model.backbone.neck_attention.dark3.attn.groups == 16
    bad = small_exp("simam")
    bad.merge(["attention_position", "head"])
    with pytest.raises(ValueError, match="'head'"):
        bad.get_model()


@pytest.mark.parametrize("position", ["neck", "both"])
def test_official_yolox_weights_load_for_fine_tuning_at_any_position(position):
    from yolox_attn.checkpoint import load_pretrained, load_weights

    plain = small_exp("none").get_model().state_dict()
    model = small_exp("cbam", attention_position=position).get_model()
    new, skipped = load_pretrained(model, plain)
    assert new == [k for k in model.state_dict() if k not in plain] and new and not skipped
    assert any(".neck_attention." in k for k in new)
    with pytest.raises(ValueError, match="only attention weights are missing"):
        load_weights(model, plain)


def test_demo_attention_maps_cover_both_positions():
    from yolox_attn.visualize.image_demo import attention_modules

    model = small_exp("se", attention_position="both", attention_levels=("dark4",)).get_model()
    assert list(attention_modules(model)) == ["dark4", "neck dark4"]
    neck_only = small_exp("se", attention_position="neck").get_model()
    assert list(attention_modules(neck_only)) == ["neck dark3", "neck dark4", "neck dark5"]


# -------------------------------------------------------------------- registry, README
def test_every_registered_attention_has_a_one_line_description():
    described = A.describe_attentions()
    assert set(described) == set(A.attention_names(include_aliases=False))
    for name, text in described.items():
        assert text.strip() and "\n" not in text, name
    for name in TIMM_TYPES:
        assert "timm" in described[name]


def test_register_needs_a_description_or_docstring():
    with pytest.raises(ValueError, match="description"):
        A.register_attention("undocumented_test_attention")(lambda channels: nn.Identity())
    assert "undocumented_test_attention" not in A.attention_names()


def _readme_section(title: str) -> str:
    from conftest import ROOT

    text = (ROOT / "README.md").read_text()
    section = text.split(f"## {title}\n", 1)[1].split("\n## ", 1)[0]
    (code,) = re.findall(r"```python\n(.*?)```", section, flags=re.S)
    return code


def test_readme_add_your_own_attention_runs(tmp_path, monkeypatch):
    from yolox_attn.attention import registry
    from yolox_attn.preflight import load_exp

    exp_file = tmp_path / "yolox_nano_channel_gate.py"  # saved as a user would, loaded as YOLOX's tools do
    exp_file.write_text(_readme_section("Add your own attention"))
    monkeypatch.setattr(sys, "path", list(sys.path))  # YOLOX's get_exp appends the exp's folder
    tables = (registry._BUILDERS, registry._DESCRIPTIONS, registry._KWARGS, registry._ALIASES)
    saved = [dict(t) for t in tables]
    try:
        exp = load_exp(str(exp_file))
        assert exp.exp_name == "yolox_nano_channel_gate"  # not yolox_base
        new = set(A.attention_names()) - set(saved[0]) - set(saved[3])
        assert new == {exp.attention} and A.describe_attentions()[exp.attention]
        model = exp.get_model()
        gated = list(model.backbone.attention.values()) + list(model.backbone.neck_attention.values())
        assert gated and all(isinstance(m, A.ResidualGate) for m in gated)  # not identity at init: gated
        with torch.no_grad():
            assert model.eval()(torch.randn(1, 3, 64, 64)).shape[0] == 1
    finally:  # leave the registry and the imported modules as the other tests expect them
        for table, before in zip(tables, saved):
            table.clear()
            table.update(before)
        sys.modules.pop(exp_file.stem, None)

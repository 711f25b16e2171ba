"""The attention monitor, the learning-rate multiplier of the attention parameters."""

import pytest
import torch
from conftest import random_targets, small_exp

from yolox_attn.monitor import AttentionMonitor, attention_modules, attention_scalars


def _model_and_optimizer(attention, **attrs):
    torch.manual_seed(0)
    exp = small_exp(attention, **attrs)
    model = exp.get_model()
    return exp, model, exp.get_optimizer(batch_size=2)


def _step(model, opt, seed=0, lr=0.01):
    for g in opt.param_groups:
        g["lr"] = lr  # as YOLOX's trainers set it, on every group
    loss = model(torch.randn(2, 3, 64, 96), random_targets(2, 64, 96, seed=seed))["total_loss"]
    opt.zero_grad()
    loss.backward()
    opt.step()


def test_scalars_name_every_gate_gamma_and_rate():
    _, model, _ = _model_and_optimizer("acmix")
    scalars = attention_scalars(model)
    assert sorted(scalars) == sorted(f"attention.{lvl}.{p}" for lvl in ("dark3", "dark4", "dark5")
                                     for p in ("gate", "attn.rate1", "attn.rate2"))
    assert scalars["attention.dark4.gate"] == 0.0 and scalars["attention.dark4.attn.rate1"] == 0.5
    assert list(attention_modules(model)) == [f"backbone.attention.{lvl}" for lvl in ("dark3", "dark4", "dark5")]


def test_monitor_records_only_armed_iterations_with_the_right_figures():
    _, model, opt = _model_and_optimizer("cca")
    monitor = AttentionMonitor(model, opt)
    _step(model, opt)
    assert monitor.record == {}  # not armed: nothing recorded
    monitor.arm()
    seen = {}
    handle = model.backbone.attention["dark4"].register_forward_hook(
        lambda m, i, o: seen.update(x=i[0].detach(), y=o.detach()))
    _step(model, opt, seed=1)
    handle.remove()
    record = monitor.collect()
    assert not monitor.armed
    act = record["activation_rms"]["attention.dark4"]
    assert act["in"] == pytest.approx(float(seen["x"].pow(2).mean().sqrt()), rel=1e-5)
    assert act["out"] == pytest.approx(float(seen["y"].pow(2).mean().sqrt()), rel=1e-5)
    rest = sum(float(p.grad.pow(2).sum()) for n, p in model.named_parameters()
               if ".attention." not in n and p.grad is not None) ** 0.5
    dark3 = sum(float(p.grad.pow(2).sum()) for n, p in model.named_parameters()
                if n.startswith("backbone.attention.dark3.")) ** 0.5
    assert record["grad_norm"]["rest"] == pytest.approx(rest, rel=1e-5)
    assert record["grad_norm"]["attention.dark3"] == pytest.approx(dark3, rel=1e-5)
    assert record["scalars"]["attention.dark3.gamma"] == float(model.backbone.attention["dark3"].gamma)
    monitor.close()
    monitor.arm()
    _step(model, opt, seed=2)
    assert monitor.record == {"activation_rms": {}, "grad_norm": {}}  # hooks removed


def test_attention_lr_mult_scales_only_the_attention_steps():
    moved = {}
    for mult in (1.0, 0.1):
        # paper-exact CA: every attention parameter has a gradient at the first step
        exp, model, opt = _model_and_optimizer("ca", attention_lr_mult=mult, attention_identity_init=False)
        before = {n: p.detach().clone() for n, p in model.named_parameters()}
        _step(model, opt)
        moved[mult] = {n: (p.detach() - before[n]) for n, p in model.named_parameters()}
        grouped = [p for g in opt.param_groups for p in g["params"]]
        assert len(grouped) == len({id(p) for p in grouped}) == len(list(model.parameters()))
        assert all(g["lr"] == 0.01 and "lr_base" not in g for g in opt.param_groups)  # restored
    assert len(opt.param_groups) == 6
    assert [g.get("lr_mult") for g in opt.param_groups] == [None, 0.1, None, 0.1, None, 0.1]
    stem = "backbone.backbone.stem.conv.conv.weight"
    # One SGD step is linear in the lr: the same gradients, a tenth of the step, in all three groups.
    for name in ("conv1.weight", "bn1.weight", "conv_h.bias"):
        name = f"backbone.attention.dark3.{name}"
        assert moved[1.0][name].abs().max() > 1e-4, name
        assert torch.allclose(moved[0.1][name], 0.1 * moved[1.0][name], rtol=1e-3, atol=1e-7), name
    assert torch.equal(moved[0.1][stem], moved[1.0][stem])


def test_attention_lr_mult_by_attention_name_and_from_the_command_line():
    exp = small_exp("cam", attention_lr_mult={"cca": 0.1, "ca": 2})
    assert exp.attention_lr_factor() == 2.0
    exp.merge(["attention", "acmix"])
    assert exp.attention_lr_factor() == 1.0  # not named: YOLOX's rate
    exp.merge(["attention_lr_mult", "cca=0.5,acmix=0.25"])
    assert exp.attention_lr_mult == {"cca": 0.5, "acmix": 0.25} and exp.attention_lr_factor() == 0.25
    exp.merge(["attention_lr_mult", "0.3"])
    assert exp.attention_lr_factor() == 0.3
    exp.merge(["attention_lr_mult", "cca=1.6,default=16"])
    assert exp.attention_lr_factor() == 16.0  # acmix: not named, the default entry
    exp.merge(["attention", "cca"])
    assert exp.attention_lr_factor() == 1.6


@pytest.mark.parametrize("bad", ["fast", -1.0, True, float("nan"), {"cca": -1}, {"cca": 1, "default": -2}])
def test_attention_lr_mult_rejects_bad_values(bad):
    exp = small_exp("cca", attention_lr_mult=bad)
    with pytest.raises(ValueError, match="attention_lr_mult must be a number >= 0"):
        exp.get_model()


def test_attention_lr_mult_rejects_unknown_attention_names():
    exp = small_exp("ca", attention_lr_mult={"ccaa": 0.1})
    with pytest.raises(ValueError, match="ccaa"):
        exp.get_model()


def test_shapes_exps_train_cca_at_a_tenth_of_the_rate(exp_loader):
    from conftest import EXPS_DIR

    factors = {}
    for attn in ("none", "cam", "cca", "acmix"):
        exp = exp_loader(EXPS_DIR / "example" / f"yolox_nano_{attn}_shapes.py")
        assert exp.attention_identity_init is True
        factors[attn] = exp.attention_lr_factor()
    assert factors == {"none": 1.0, "cam": 1.0, "cca": 0.1, "acmix": 1.0}

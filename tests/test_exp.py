"""The exp files, the attention neck, the optimizer groups and the exp's own validation."""

import pytest
import torch
from conftest import EXPS_DIR, load_exp, random_targets, small_exp

from yolox_attn.attention import ResidualGate, attention_names
from yolox_attn.neck import AttentionPAFPN

SIZES = ("nano", "tiny", "s", "m", "l", "x")
REGISTERED = attention_names(include_aliases=False)  # every type gets the model-level tests
ATTENTIONS = {"cam": "ca", "cca": "cca", "acmix": "acmix"}
EXP_FILES = sorted(EXPS_DIR.glob("yolox_*_*.py"))
# The attributes in which YOLOX's own exps of different sizes differ.
SIZE_ATTRIBUTES = ("depth", "width", "input_size", "test_size", "random_size", "mosaic_scale",
                   "mosaic_prob", "enable_mixup", "multiscale_range", "num_classes", "act")


def test_every_size_and_attention_has_an_exp_file():
    names = {p.stem for p in EXP_FILES}
    assert names == {f"yolox_{s}_{a}" for s in SIZES for a in ATTENTIONS}


@pytest.mark.parametrize("path", EXP_FILES, ids=lambda p: p.stem)
def test_exp_file_keeps_yolox_settings_and_runs(path):
    from yolox.exp import get_exp

    _, size, suffix = path.stem.split("_")
    exp = load_exp(path)
    official = get_exp(None, f"yolox-{size}")
    for key in SIZE_ATTRIBUTES:
        assert getattr(exp, key, None) == getattr(official, key, None), key
    assert exp.depthwise == (size == "nano")  # YOLOX-nano builds its model with depthwise=True
    assert exp.attention == ATTENTIONS[suffix] and exp.exp_name == path.stem

    torch.manual_seed(0)
    model = exp.get_model()
    assert isinstance(model.backbone, AttentionPAFPN)
    assert sorted(model.backbone.attention) == ["dark3", "dark4", "dark5"]
    h, w = 96, 64  # non-square, a multiple of the stride 32
    model.eval()
    with torch.no_grad():
        out = model(torch.randn(1, 3, h, w))
    assert out.shape == (1, (h // 8) * (w // 8) + (h // 16) * (w // 16) + (h // 32) * (w // 32), 85)
    assert torch.isfinite(out).all()

    model.train()
    losses = model(torch.randn(2, 3, h, w), random_targets(2, h, w))
    assert torch.isfinite(losses["total_loss"])
    losses["total_loss"].backward()
    gated = [p for n, p in model.named_parameters() if n.endswith(".gate") or n.endswith(".gamma")]
    assert gated and all(p.grad is not None and p.grad.abs().sum() > 0 for p in gated)


def test_unknown_yolox_size_is_rejected():
    with pytest.raises(ValueError, match="'xl'"):
        small_exp().use_yolox_size("xl")


def test_default_data_dir_follows_yolox_datadir(monkeypatch, tmp_path):
    from yolox_attn.exp import AttentionExp

    monkeypatch.delenv("YOLOX_DATADIR", raising=False)
    assert AttentionExp().data_dir == "datasets/COCO"
    monkeypatch.setenv("YOLOX_DATADIR", str(tmp_path))
    assert AttentionExp().data_dir == str(tmp_path / "COCO")


@pytest.mark.parametrize("attention", REGISTERED)
def test_optimizer_holds_every_parameter_exactly_once_and_gates_train(attention):
    torch.manual_seed(0)
    exp = small_exp(attention)
    model = exp.get_model()
    opt = exp.get_optimizer(batch_size=2)
    grouped = [p for g in opt.param_groups for p in g["params"]]
    assert len(grouped) == len({id(p) for p in grouped})
    assert {id(p) for p in grouped} == {id(p) for p in model.parameters()}
    no_decay, decay, biases = opt.param_groups
    assert decay["weight_decay"] == exp.weight_decay and no_decay["weight_decay"] == biases["weight_decay"] == 0
    bare = {n: p for n, p in model.named_parameters() if n.rsplit(".", 1)[-1] in ("gate", "gamma", "rate1", "rate2")}
    assert all(any(p is q for q in no_decay["params"]) for p in bare.values())
    if attention == "none":
        assert not bare
        return

    attn_params = {n: p.detach().clone() for n, p in model.named_parameters() if ".attention." in n}
    for g in opt.param_groups:
        g["lr"] = 0.01
    for step in range(3):
        model.train()
        loss = model(torch.randn(2, 3, 64, 96), random_targets(2, 64, 96, seed=step))["total_loss"]
        opt.zero_grad()
        loss.backward()
        if step == 2:
            # Once the gates are open every attention weight gets a gradient (a step later
            # behind a zero-initialised last layer, as in GCNet's `gca`). Biases are left out:
            # constant shifts are removed by the next BatchNorm or cancel in a softmax.
            # Parameter-free types (SimAM, `ge`) have no weights: their gates are checked above.
            weights = [n for n, p in model.named_parameters() if ".attention." in n and p.ndim > 1]
            assert all(model.get_parameter(n).grad.abs().sum() > 0 for n in weights)
            assert weights or attention in ("simam", "ge")
        opt.step()
        if step == 0:
            # the zero-initialised gates/gammas leave identity after one step
            for n in bare:
                if n.endswith((".gate", ".gamma")):
                    assert not torch.equal(bare[n], attn_params[n]), n


def test_identity_init_wraps_only_what_is_not_already_identity():
    for attention, gated in [("ca", True), ("acmix", True), ("cca", False), ("nonlocal", False)]:
        neck = small_exp(attention).get_model().backbone
        assert all(isinstance(m, ResidualGate) == gated for m in neck.attention.values()), attention
    neck = small_exp("ca", attention_identity_init=False).get_model().backbone
    assert not any(isinstance(m, ResidualGate) for m in neck.attention.values())


@pytest.mark.parametrize("attention", [n for n in REGISTERED if n != "none"])
def test_identity_at_init_equals_baseline_yolox(attention):
    """With identity init the attention model computes the plain YOLOX outputs exactly."""
    torch.manual_seed(0)
    baseline = small_exp("none").get_model().eval()
    model = small_exp(attention).get_model().eval()
    missing, unexpected = model.load_state_dict(baseline.state_dict(), strict=False)
    assert not unexpected and missing and all(".attention." in k for k in missing)
    x = torch.randn(1, 3, 96, 128)
    with torch.no_grad():
        assert torch.equal(model(x), baseline(x))


def test_paper_exact_form_changes_the_neck_output():
    torch.manual_seed(0)
    baseline = small_exp("none").get_model().eval()
    model = small_exp("ca", attention_identity_init=False).get_model().eval()
    model.load_state_dict(baseline.state_dict(), strict=False)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        for plain, attended in zip(baseline.backbone(x), model.backbone(x)):
            # CA multiplies by sigmoid gates (about 0.25 at init): far from the plain features
            assert (plain - attended).abs().max() > 0.3 * plain.abs().max()


def test_levels_subset_adds_only_those_keys():
    model = small_exp("cca", attention_levels=("dark5",)).get_model()
    keys = [k for k in model.state_dict() if ".attention." in k]
    assert keys and all(k.startswith("backbone.attention.dark5.") for k in keys)


@pytest.mark.parametrize(
    "attrs, message",
    [
        ({"attention": "bogus"}, "'bogus'"),  # ('se' is registered now: timm's)
        ({"attention_levels": ("dark3", "dark6")}, "dark6"),
        ({"attention_levels": "dark3"}, "'dark3'"),
        ({"attention_levels": ("dark3", "dark3")}, "duplicates"),
        ({"attention_kwargs": {"reduction": 8}, "attention": "cca"}, "reduction"),
        ({"attention_kwargs": "head=8"}, "head=8"),
        ({"attention_identity_init": "yes"}, "'yes'"),
        ({"attention": "acmix", "attention_kwargs": {"head": 3}}, "3"),
    ],
)
def test_bad_attention_attributes_raise_in_get_model(attrs, message):
    exp = small_exp(**attrs)
    with pytest.raises(ValueError, match=message):
        exp.get_model()


def test_merge_parses_attention_options_and_rejects_unknown_keys():
    exp = small_exp()
    exp.merge(["attention", "cca", "attention_levels", "dark3,dark5", "attention_kwargs", "recurrence=1",
               "attention_identity_init", "False", "max_epoch", "3"])
    assert exp.attention == "cca" and exp.attention_levels == ("dark3", "dark5")
    assert exp.attention_kwargs == {"recurrence": 1} and exp.attention_identity_init is False
    assert exp.max_epoch == 3
    exp.merge(["attention_kwargs", "{'recurrence': 2}", "attention_levels", "[]"])
    assert exp.attention_kwargs == {"recurrence": 2} and exp.attention_levels == ()
    with pytest.raises(ValueError, match="atention"):
        exp.merge(["atention", "ca"])


def test_merge_parses_tuples_and_bools_that_yolox_would_mangle():
    exp = small_exp()
    exp.merge(["input_size", "(320,256)", "test_size", "[96, 128]", "enable_mixup", "False", "ema", "True"])
    assert exp.input_size == (320, 256) and exp.test_size == (96, 128)
    assert exp.enable_mixup is False and exp.ema is True
    with pytest.raises(ValueError, match="'yes'"):
        exp.merge(["ema", "yes"])
    with pytest.raises(ValueError, match="input_size must be a tuple"):
        exp.merge(["input_size", "320"])


def test_optimizer_type_adamw_keeps_the_groups_and_bad_type_is_rejected():
    exp = small_exp("cca", optimizer_type="adamw")
    model = exp.get_model()
    opt = exp.get_optimizer(batch_size=8)
    assert isinstance(opt, torch.optim.AdamW)
    assert [g["weight_decay"] for g in opt.param_groups] == [0.0, exp.weight_decay, 0.0]
    assert sum(len(g["params"]) for g in opt.param_groups) == len(list(model.parameters()))
    bad = small_exp(optimizer_type="adam")
    bad.get_model()
    with pytest.raises(ValueError, match="'adam'"):
        bad.get_optimizer(batch_size=8)

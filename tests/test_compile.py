"""``compile_model`` as torch compiles it: once for real with inductor, and under multi-scale
training with more input sizes than torch compiles graphs for one function."""

import copy

import pytest
import torch
from conftest import ROOT

from yolox_attn.attention import build_attention
from yolox_attn.multiscale import training_sizes

EXP = ROOT / "exps" / "example" / "yolox_nano_cam_shapes.py"


def test_inductor_compiles_coordinate_attention_to_the_eager_numbers():
    # compile_model compiles in place, static shapes, with torch's default backend (inductor):
    # its smallest real case is one attention module, forward and backward.
    import torch._inductor.config
    import torch._inductor.metrics

    torch.manual_seed(0)
    module = build_attention("ca", 16)
    with torch.no_grad():  # a nonzero gate, so that the attention shows in the output
        for p in module.parameters():
            if torch.count_nonzero(p) == 0:
                p.fill_(0.5)
    eager = copy.deepcopy(module)
    module.compile(dynamic=False)
    x = torch.randn(2, 16, 12, 10, requires_grad=True)
    x_eager = x.detach().clone().requires_grad_(True)
    torch._dynamo.reset()
    torch._inductor.metrics.reset()
    with torch._inductor.config.patch(fx_graph_cache=False):  # generate the code, not a cached graph
        y = module(x)
        y.square().sum().backward()
    assert torch._inductor.metrics.generated_kernel_count > 0  # inductor wrote kernels for it
    y_eager = eager(x_eager)
    y_eager.square().sum().backward()
    torch.testing.assert_close(y, y_eager, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(x.grad, x_eager.grad, rtol=1e-5, atol=1e-5)
    for (name, p), p_eager in zip(module.named_parameters(), eager.parameters()):
        # atol: conv1's bias feeds a training-mode BatchNorm, so its gradient is 0 up to rounding
        torch.testing.assert_close(p.grad, p_eager.grad, rtol=1e-5, atol=1e-4, msg=name)


@pytest.mark.parametrize("exp_attrs, expected", [
    ({"input_size": (640, 640), "multiscale_range": 5},  # YOLOX-s: factors 15-25
     [(32 * f, 32 * f) for f in range(15, 26)]),
    ({"input_size": (416, 416), "random_size": (10, 20)},  # YOLOX-nano, 416 = 13 x 32 among them
     [(32 * f, 32 * f) for f in range(10, 21)]),
    ({"input_size": (320, 480), "random_size": (12, 12)},  # one draw, wider than high, and the input's own size
     [(320, 480), (384, 576)]),
    ({"input_size": (640, 640), "multiscale_range": 0}, [(640, 640)]),
])
def test_training_sizes_are_what_random_resize_draws(exp_attrs, expected):
    from conftest import small_exp

    exp = small_exp(**exp_attrs)
    assert training_sizes(exp) == expected
    draws = {exp.random_resize(None, 0, 0, False) for _ in range(400)}  # what the trainers get
    assert draws | {tuple(exp.input_size)} == set(expected)


def _trainer(tmp_path, tiny_shapes, *opts):
    from yolox.exp import get_exp
    from yolox.tools.train import make_parser

    _, data_opts = tiny_shapes
    args = make_parser().parse_args(["-f", str(EXP), "-d", "1", "-b", "2", *data_opts, "output_dir", str(tmp_path),
                                     "max_epoch", "1", "compile_model", "True", *opts])
    exp = get_exp(args.exp_file, None)
    exp.merge(args.opts)
    args.experiment_name = exp.exp_name
    return exp.get_trainer(args)


@pytest.mark.parametrize("random_size, warned", [("(3,5)", True), ("(4,4)", False)])
def test_compile_model_says_once_when_the_sizes_exceed_the_recompile_limit(
        eager_compile, tmp_path, tiny_shapes, random_size, warned):
    from loguru import logger

    lines = []
    # 96, 128 and 160 px (random_size (3,5)) against a limit of 2 graphs; (4,4): 128 px only
    with torch._dynamo.config.patch(recompile_limit=2):
        trainer = _trainer(tmp_path, tiny_shapes, "random_size", random_size)  # sets up YOLOX's log sinks
        handler = logger.add(lambda m: lines.append(str(m)), level="WARNING")
        try:
            trainer.before_train()
        finally:
            logger.remove(handler)
        notes = [line for line in lines if "recompile_limit" in line]
        assert len(notes) == (1 if warned else 0), lines
        if not warned:
            return
        assert "trains at 3 input sizes (96-160 px" in notes[0] and "the 2 graphs" in notes[0]
        # what it says: the third size runs uncompiled
        torch._dynamo.reset()
        torch._dynamo.utils.counters.clear()
        with torch.no_grad():
            for side in (96, 128, 160):
                trainer.model.backbone(torch.rand(2, 3, side, side))
        assert torch._dynamo.utils.counters["stats"]["unique_graphs"] == 2

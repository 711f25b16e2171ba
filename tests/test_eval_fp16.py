"""Our eval tool's ``--fp16``: the model runs in half precision, as YOLOX's tool runs it on a GPU,
boxes are decoded in float32, and the detections are float32's within half precision."""

import torch
from conftest import ROOT

EXP = ROOT / "exps" / "example" / "yolox_nano_cam_shapes.py"


def _evaluate(tmp_path, opts, ckpt, *flags):
    from yolox.exp import get_exp
    from yolox.tools.eval import make_parser

    from yolox_attn.tools import eval as eval_tool

    args = make_parser().parse_args(["-f", str(EXP), "-c", str(ckpt), "-b", "2", "-d", "1", "--conf", "0.0",
                                     *flags, *opts, "output_dir", str(tmp_path)])
    exp = get_exp(args.exp_file, None)
    exp.merge(args.opts)
    args.experiment_name = exp.exp_name
    seen = []

    def record(what):
        def hook(module, inputs, output):
            if inputs[0].shape[0] == 2:  # an evaluation batch (the model summary's profile runs batch 1)
                seen.append((what, inputs[0].dtype, output[0].dtype, output.detach() if what == "model" else None))
        return hook

    model = exp.get_model()  # YOLOX's exps build it once: the tool evaluates this one
    model.backbone.register_forward_hook(record("backbone"))
    model.register_forward_hook(record("model"))
    summary = eval_tool.main(exp, args, 1)
    return summary, seen


def test_eval_fp16_runs_the_model_in_half_and_decodes_in_float32(tmp_path, tiny_shapes):
    from yolox.exp import get_exp

    _, opts = tiny_shapes
    exp = get_exp(str(EXP), None)
    exp.merge(opts)
    torch.manual_seed(0)
    ckpt = tmp_path / "ckpt.pth"
    torch.save({"model": exp.get_model().state_dict()}, ckpt)
    summary32, seen32 = _evaluate(tmp_path / "fp32", opts, ckpt)
    summary16, seen16 = _evaluate(tmp_path / "fp16", opts, ckpt, "--fp16")
    assert "Average Precision" in summary16
    # images and features in half precision, the decoded boxes in float32 (Float32DecodeHead)
    assert {s[:3] for s in seen16} == {("backbone", torch.float16, torch.float16),
                                       ("model", torch.float16, torch.float32)}
    outputs16 = [s[3] for s in seen16 if s[0] == "model"]
    outputs32 = [s[3] for s in seen32 if s[0] == "model"]
    assert len(outputs16) == len(outputs32) == 2  # 4 images, batch 2
    for o16, o32 in zip(outputs16, outputs32):
        # boxes (pixels of a 128 px input) and scores as float32 gives them, within half precision
        torch.testing.assert_close(o16[..., :4], o32[..., :4], rtol=1e-2, atol=0.5)
        torch.testing.assert_close(o16[..., 4:], o32[..., 4:], rtol=0, atol=1e-2)

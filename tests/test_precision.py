"""The CPU trainer's step: ``--fp16`` is bfloat16 only where the CPU has native bf16, else float32; box
decoding in float32; ``compile_model`` compiles the backbone."""

import pytest
import torch
from conftest import ROOT

from yolox_attn import precision
from yolox_attn.precision import Float32DecodeHead, cpu_flags

EXP = ROOT / "exps" / "example" / "yolox_nano_cam_shapes.py"

AVX2_ONLY = "processor\t: 0\nflags\t\t: fpu sse2 avx avx2 fma\n"
SAPPHIRE_RAPIDS = "processor\t: 0\nflags\t\t: fpu avx2 avx512f avx512_bf16 amx_bf16 amx_tile\n"
NEOVERSE_V1 = "processor\t: 0\nFeatures\t: fp asimd sve bf16 i8mm\n"


@pytest.mark.parametrize("text, native", [(AVX2_ONLY, False), (SAPPHIRE_RAPIDS, True), (NEOVERSE_V1, True),
                                          ("", False)])
def test_native_bf16_from_cpu_flags(monkeypatch, text, native):
    monkeypatch.setattr(precision, "cpu_flags", lambda: cpu_flags(text))
    assert precision.cpu_native_bf16() is native


def _trainer(tmp_path, tiny_shapes, fp16, *extra_opts):
    from yolox.exp import get_exp
    from yolox.tools.train import make_parser

    _, opts = tiny_shapes
    argv = ["-f", str(EXP), "-d", "1", "-b", "2", *(["--fp16"] if fp16 else []),
            *opts, "output_dir", str(tmp_path), "max_epoch", "1", "mosaic_prob", "0.0", *extra_opts]
    args = make_parser().parse_args(argv)
    exp = get_exp(args.exp_file, None)
    exp.merge(args.opts)
    args.experiment_name = exp.exp_name
    return exp.get_trainer(args)


@pytest.mark.parametrize("native, fp16, expected", [(False, True, torch.float32), (True, True, torch.bfloat16),
                                                     (True, False, torch.float32)])
def test_cpu_trainer_step_runs_in_the_chosen_dtype(monkeypatch, tmp_path, tiny_shapes, native, fp16, expected):
    monkeypatch.setattr(precision, "cpu_native_bf16", lambda: native)
    trainer = _trainer(tmp_path, tiny_shapes, fp16)
    trainer.before_train()
    seen = {}

    def record(name):
        def hook(module, inputs, output):
            seen.setdefault(name, output.dtype)
        return hook

    trainer.model.backbone.backbone.dark3.register_forward_hook(record("dark3"))
    trainer.model.head.reg_preds[0].register_forward_hook(record("reg"))
    trainer.epoch, trainer.iter = 0, 0
    trainer.train_one_iter()
    assert seen == {"dark3": expected, "reg": expected}


def test_compile_model_compiles_the_backbone_in_place(eager_compile, tmp_path, tiny_shapes):
    trainer = _trainer(tmp_path, tiny_shapes, False, "compile_model", "True")
    trainer.before_train()
    assert eager_compile == [("AttentionPAFPN", {"dynamic": False})]
    assert "backbone.attention.dark3.attn.conv1.weight" in trainer.model.state_dict()  # keys unchanged
    assert trainer.ema_model.ema.backbone._compiled_call_impl is None
    torch._dynamo.reset()
    torch._dynamo.utils.counters.clear()
    trainer.epoch, trainer.iter = 0, 0
    trainer.train_one_iter()
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] >= 1
    assert trainer.model.backbone.attention["dark3"].gate.grad is not None


def test_fallback_is_said_once_in_one_line(monkeypatch):
    from loguru import logger

    monkeypatch.setattr(precision, "cpu_native_bf16", lambda: False)
    lines = []
    handler = logger.add(lambda m: lines.append(str(m)), level="INFO")
    try:
        assert precision.cpu_autocast_dtype(True) is None
        assert precision.cpu_autocast_dtype(False) is None
    finally:
        logger.remove(handler)
    assert len(lines) == 1 and "float32" in lines[0] and "avx512_bf16" in lines[0]
    assert lines[0].count("\n") == 1


def test_box_decoding_stays_float32_under_bfloat16():
    head = Float32DecodeHead(num_classes=1, width=0.25)
    # cell 75 at stride 8 with offset 0.375: centre 603 px, which bfloat16 rounds to 604.
    out = torch.zeros(1, 6, 1, 76, dtype=torch.bfloat16)
    out[0, 0, 0, 75] = 0.375
    decoded, _ = head.get_output_and_grid(out, 0, 8, out.type())
    assert decoded.dtype == torch.float32 and decoded[0, 75, 0].item() == 603.0
    head.hw = [(1, 76), (1, 1), (1, 1)]
    flat = torch.cat([out.flatten(2), torch.zeros(1, 6, 2, dtype=torch.bfloat16)], 2).permute(0, 2, 1)
    decoded = head.decode_outputs(flat, flat.type())
    assert decoded.dtype == torch.float32 and decoded[0, 75, 0].item() == 603.0
    # the plain YOLOX head rounds it, which is why the subclass exists
    from yolox.models import YOLOXHead

    plain, _ = YOLOXHead.get_output_and_grid(head, out, 1, 8, out.type())
    assert plain[0, 75, 0].item() == 604.0

"""Our eval tool's ``main`` in 2 gloo processes on the CPU, as ``-d 2`` runs it on 2 GPUs."""

import json

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from conftest import ROOT

EXP = ROOT / "exps" / "example" / "yolox_nano_cam_shapes.py"
WORLD = 2


def _eval_rank(rank, init_file, argv, out_dir):
    from yolox.exp import get_exp
    from yolox.tools.eval import make_parser

    from yolox.evaluators import COCOEvaluator
    from yolox_attn.tools import eval as eval_tool

    # What this rank detected, and (rank 0) what reached the COCO evaluation.
    own, evaluated = [], []
    convert, evaluate_prediction = COCOEvaluator.convert_to_coco_format, COCOEvaluator.evaluate_prediction

    def record_own(self, *args):
        detections = convert(self, *args)
        own.extend((d["image_id"], d["score"]) for d in detections)
        return detections

    def record_evaluated(self, data_dict, statistics):
        evaluated.extend((d["image_id"], d["score"]) for d in data_dict)
        return evaluate_prediction(self, data_dict, statistics)

    COCOEvaluator.convert_to_coco_format = record_own
    COCOEvaluator.evaluate_prediction = record_evaluated
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=WORLD)
    try:
        args = make_parser().parse_args(argv)
        exp = get_exp(args.exp_file, None)
        exp.merge(args.opts)
        args.experiment_name = exp.exp_name
        summary = eval_tool.main(exp, args, WORLD)
        with open(f"{out_dir}/rank{rank}.json", "w") as f:
            json.dump({"summary": summary, "own": own, "evaluated": evaluated}, f)
    finally:
        dist.destroy_process_group()


def test_eval_main_in_two_gloo_processes_gathers_every_rank_on_rank_0(tmp_path, tiny_shapes):
    from yolox.exp import get_exp

    _, opts = tiny_shapes
    opts = [*opts, "output_dir", str(tmp_path / "out")]
    exp = get_exp(str(EXP), None)
    exp.merge(opts)
    torch.manual_seed(0)
    ckpt = tmp_path / "ckpt.pth"
    torch.save({"model": exp.get_model().state_dict()}, ckpt)
    argv = ["-f", str(EXP), "-c", str(ckpt), "-b", "2", "-d", "2", "--conf", "0.0", *opts]
    mp.spawn(_eval_rank, args=(str(tmp_path / "store"), argv, str(tmp_path)), nprocs=WORLD, join=True)
    r0, r1 = (json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(WORLD))
    # Each rank evaluated its own share of the 4 images; rank 0 evaluated all detections of both.
    images0, images1 = {i for i, _ in r0["own"]}, {i for i, _ in r1["own"]}
    assert images0 and images1 and not images0 & images1
    assert sorted(map(tuple, r0["evaluated"])) == sorted(map(tuple, r0["own"] + r1["own"]))
    assert len(images0 | images1) == 4 and r1["evaluated"] == []
    assert "Average Precision" in r0["summary"] and r1["summary"] is None  # rank 0 prints the table

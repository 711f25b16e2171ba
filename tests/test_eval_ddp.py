"""Our eval tool's ``main`` in 2 gloo processes on the CPU, as ``-d 2`` runs it on 2 GPUs."""

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from conftest import ROOT

EXP = ROOT / "exps" / "example" / "yolox_nano_cam_shapes.py"
WORLD = 2


def _eval_rank(rank, init_file, argv, out_dir):
    from yolox.exp import get_exp
    from yolox.tools.eval import make_parser

    from yolox_attn.tools import eval as eval_tool

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=WORLD)
    try:
        args = make_parser().parse_args(argv)
        exp = get_exp(args.exp_file, None)
        exp.merge(args.opts)
        args.experiment_name = exp.exp_name
        summary = eval_tool.main(exp, args, WORLD)
        torch.save({"summary": summary}, f"{out_dir}/rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def test_eval_main_in_two_gloo_processes(tmp_path, tiny_shapes):
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
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt")["summary"] for r in range(WORLD))
    assert "Average Precision" in r0  # rank 0 gathers every rank's detections and prints the table
    assert r1 is None

"""The CPU trainer in 2 gloo processes, as ``-d 2`` would run it: YOLOX's train tool's ``main`` on each rank."""

import json

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from conftest import ROOT

EXP = ROOT / "exps" / "example" / "yolox_nano_cam_shapes.py"
WORLD = 2


def _train_rank(rank: int, init_file: str, argv, out_dir: str) -> None:
    from yolox.exp import get_exp
    from yolox.tools.train import main, make_parser

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=WORLD)
    try:
        args = make_parser().parse_args(argv)
        exp = get_exp(args.exp_file, None)
        exp.merge(args.opts)
        args.experiment_name = exp.exp_name
        # What each training step was fed (size and a checksum of the images), and the sizes drawn.
        batches, sizes = [], []
        resize = exp.random_resize

        def random_resize(*a):
            sizes.append(resize(*a))
            return sizes[-1]

        exp.random_resize = random_resize
        torch.manual_seed(0)
        model = exp.get_model()  # YOLOX's exps build the model once: the trainer gets this one
        model.register_forward_pre_hook(  # a training step calls it with (images, targets)
            lambda m, inputs: batches.append((tuple(inputs[0].shape[2:]), inputs[0].sum().item()))
            if len(inputs) == 2 else None)
        start = {k: v.clone() for k, v in model.state_dict().items()}
        main(exp, args)
        torch.save({"batches": batches, "sizes": sizes, "start": start, "state": model.state_dict()},
                   f"{out_dir}/rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def test_cpu_trainer_under_ddp_syncs_weights_sizes_and_norms(tmp_path, tiny_shapes):
    _, opts = tiny_shapes
    out = tmp_path / "out"
    # 8 images, 2 per rank and step: 2 steps an epoch; 6 epochs: 12 steps, a new size drawn after
    # the 10th; the last epochs evaluate, each after averaging BatchNorm statistics over the ranks.
    argv = ["-f", str(EXP), "-d", "2", "-b", "4", *opts, "output_dir", str(out), "max_epoch", "6",
            "no_aug_epochs", "1", "eval_interval", "6", "mosaic_prob", "0.0", "random_size", "(3,5)", "seed", "0"]
    mp.spawn(_train_rank, args=(str(tmp_path / "store"), argv, str(tmp_path)), nprocs=WORLD, join=True)
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt") for r in range(WORLD))
    # every step on both ranks, at the same sizes (drawn on rank 0, broadcast), on different images
    assert len(r0["batches"]) == len(r1["batches"]) == 12
    assert [s for s, _ in r0["batches"]] == [s for s, _ in r1["batches"]]
    assert r0["sizes"] == r1["sizes"] and len(r0["sizes"]) == 1 and min(r0["sizes"][0]) >= 96
    assert [s for s, _ in r0["batches"][10:]] == r0["sizes"] * 2  # the steps after the draw
    assert all(a != b for (_, a), (_, b) in zip(r0["batches"], r1["batches"]))
    # gradients averaged (DDP) and BatchNorm statistics averaged before the evaluation: one model
    assert r0["state"].keys() == r1["state"].keys()
    for key in r0["state"]:
        assert torch.equal(r0["state"][key], r1["state"][key]), key
    assert not torch.equal(r0["state"]["head.reg_preds.0.weight"], r0["start"]["head.reg_preds.0.weight"])
    # rank 0 alone writes the run's record: one start (of a 2-process run), its evaluations, one end
    records = [json.loads(line) for line in (out / "yolox_nano_cam_shapes" / "metrics.jsonl").read_text().splitlines()]
    events = [r["event"] for r in records]
    assert events[0] == "start" and events[-1] == "end" and set(events[1:-1]) == {"eval"}
    assert records[0]["world_size"] == 2 and records[-1]["iterations"] == 12

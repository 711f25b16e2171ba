"""A 2-process DistributedDataParallel training step on the CPU with the gloo backend."""

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from yolox_attn.attention import attention_names

WORLD = 2
OWN = ["ca", "cca", "acmix"]
# Every other registered type, in one process group: one spawn (two torch start-ups) for all.
OTHERS = [n for n in attention_names(include_aliases=False) if n not in OWN + ["none"]]


def _train_steps(rank: int, init_file: str, attentions: str, out_dir: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=WORLD)
    try:
        for attention in attentions.split(","):
            _train_step(rank, attention, out_dir)
    finally:
        dist.destroy_process_group()


def _train_step(rank: int, attention: str, out_dir: str) -> None:
    from conftest import random_targets, small_exp
    from torch.nn.parallel import DistributedDataParallel as DDP

    torch.manual_seed(0)  # same initial weights on both ranks
    exp = small_exp(attention)
    model = exp.get_model()
    optimizer = exp.get_optimizer(batch_size=2)
    for group in optimizer.param_groups:
        group["lr"] = 0.01
    ddp = DDP(model, broadcast_buffers=False)
    torch.manual_seed(100 + rank)  # different data on each rank
    h, w = 64, 96
    # Batch 2 per rank: timm's sk and splat put a BatchNorm on pooled (B, C, 1, 1) vectors.
    loss = ddp(torch.randn(2, 3, h, w), random_targets(2, h, w, seed=rank))["total_loss"]
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    size = exp.random_resize(None, 0, rank, True)  # the broadcast YOLOX does every 10 iters
    torch.save(
        {
            "missing_grad": [n for n, p in model.named_parameters() if p.grad is None],
            "params": {n: p.detach().clone() for n, p in model.named_parameters()},
            "size": size,
        },
        f"{out_dir}/{attention}_rank{rank}.pt",
    )


def _check_ranks_agree(out_dir, attention: str) -> None:
    r0, r1 = (torch.load(out_dir / f"{attention}_rank{r}.pt") for r in range(WORLD))
    assert r0["missing_grad"] == [] and r1["missing_grad"] == [], attention
    assert r0["size"] == r1["size"]
    assert r0["params"].keys() == r1["params"].keys()
    for name in r0["params"]:
        assert torch.equal(r0["params"][name], r1["params"][name]), (attention, name)


@pytest.mark.parametrize("attention", OWN)
def test_ddp_gloo_step_gives_every_parameter_a_gradient_and_ranks_agree(tmp_path, attention):
    mp.spawn(_train_steps, args=(str(tmp_path / "store"), attention, str(tmp_path)), nprocs=WORLD, join=True)
    _check_ranks_agree(tmp_path, attention)


def test_ddp_gloo_step_for_every_other_registered_attention(tmp_path):
    assert {"simam", "ema", "se", "bat"} <= set(OTHERS)
    mp.spawn(_train_steps, args=(str(tmp_path / "store"), ",".join(OTHERS), str(tmp_path)), nprocs=WORLD, join=True)
    for attention in OTHERS:
        _check_ranks_agree(tmp_path, attention)

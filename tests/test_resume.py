"""Exact resume: the data stream entered at any batch, generator states through a checkpoint, and
YOLOX's train tool stopped by SIGTERM mid-epoch or killed after an epoch, then resumed, ending
with the uninterrupted run's losses and APs bit for bit."""

import itertools
import json
import os
import random
import signal
import subprocess
import sys

import numpy as np
import pytest
import torch
from conftest import ROOT, small_exp
from yolox.data import InfiniteSampler

from yolox_attn.checkpoint import load_checkpoint
from yolox_attn.seeding import ResumableSampler, resumable_loader, rng_state, set_rng_state

EXP = ROOT / "exps" / "example" / "yolox_nano_cam_shapes.py"


@pytest.mark.parametrize("shuffle", [True, False])
def test_resumable_sampler_enters_yolox_stream_at_its_position(shuffle):
    # YOLOX's sampler, rank by rank, in a stream of 7 samples over several permutations
    for world, rank in ((1, 0), (2, 0), (2, 1), (3, 2)):
        yolox = InfiniteSampler(7, shuffle=shuffle, seed=11, rank=rank, world_size=world)
        reference = [int(i) for i in itertools.islice(iter(yolox), 40)]
        for start in (0, 1, 6, 7, 13, 25):
            ours = ResumableSampler(7, shuffle=shuffle, seed=11, start=start)
            ours._rank, ours._world_size = rank, world
            assert list(itertools.islice(iter(ours), 40 - start)) == reference[start:], (world, rank, start)
    with pytest.raises(ValueError, match="start must be an integer >= 0, got -1"):
        ResumableSampler(7, start=-1)


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    from yolox_attn.data.shapes import make_shapes

    folder = tmp_path_factory.mktemp("resume") / "shapes"
    make_shapes(folder, train=6, val=2, size=64, seed=1)
    return folder


def _batches(shapes, start, count, workers, mosaic_until=None, **attrs):
    exp = small_exp("none", data_dir=str(shapes), input_size=(64, 64), data_num_workers=workers, mosaic_prob=1.0,
                    **attrs)
    loader = resumable_loader(exp.get_data_loader(batch_size=2, is_distributed=False), exp.data_rng_seed(), start,
                              mosaic_until)
    random.seed(0)  # the main process's own generator: the data must not depend on it
    return [next(it) for it in [iter(loader)] for _ in range(count)]


@pytest.mark.parametrize("workers", [0, 1])
def test_loader_entered_at_a_batch_gives_the_uninterrupted_loaders_batches(shapes, workers):
    # 6 images at batch 2: batch 5 is in the second pass over the data
    straight = _batches(shapes, 0, 8, workers, seed=3)
    for start in (1, 5):
        resumed = _batches(shapes, start, 8 - start, workers, seed=3)
        for (a, ta, _, ida), (b, tb, _, idb) in zip(straight[start:], resumed):
            assert torch.equal(a, b) and torch.equal(ta, tb) and torch.equal(ida, idb), start
    # and the batches differ from each other: augmentations were drawn, not repeated
    assert not torch.equal(straight[0][0], straight[3][0])


def test_unseeded_loader_keeps_yolox_order_from_its_position(shapes):
    # No seed: YOLOX's sample order (its sampler's seed 0, every rank's), entered where the run stands.
    exp = small_exp("none", data_dir=str(shapes), input_size=(64, 64), data_num_workers=0)
    loader = exp.get_data_loader(batch_size=2, is_distributed=False)
    yolox = list(itertools.islice(iter(loader.batch_sampler), 6))
    resumed = resumable_loader(loader, None, 2)
    assert list(itertools.islice(iter(resumed.batch_sampler), 4)) == [[(m, int(i)) for m, i in b] for b in yolox[2:]]
    assert resumed.dataset is loader.dataset  # samples not seeded: YOLOX's workers draw as they do


def test_mosaic_closes_at_its_batch_whatever_the_start(shapes):
    exp = small_exp("none", data_dir=str(shapes), input_size=(64, 64), data_num_workers=0, seed=1)
    loader = resumable_loader(exp.get_data_loader(batch_size=2, is_distributed=False), 1, 2, mosaic_until=4)
    flags = [[mosaic for _, (mosaic, _) in batch] for batch in itertools.islice(iter(loader.batch_sampler), 4)]
    assert flags == [[True, True], [True, True], [False, False], [False, False]]  # batches 2..5
    loader.close_mosaic()  # YOLOX's switch still works
    assert all(not m for batch in itertools.islice(iter(loader.batch_sampler), 2) for _, (m, _) in batch)


def test_loader_of_another_structure_is_refused():
    loader = torch.utils.data.DataLoader(list(range(4)), batch_size=2)
    with pytest.raises(ValueError, match="must sample with YOLOX's InfiniteSampler under a YoloBatchSampler"):
        resumable_loader(loader, 0, 0)


def test_generator_states_round_trip_through_a_weights_only_checkpoint(tmp_path):
    random.seed(1), np.random.seed(2), torch.manual_seed(3)
    np.random.standard_normal()  # a cached Gaussian: part of NumPy's state
    torch.save({"rng": rng_state()}, tmp_path / "c.pth")
    expected = (random.random(), np.random.standard_normal(), torch.rand(2))
    random.seed(9), np.random.seed(9), torch.manual_seed(9)
    set_rng_state(load_checkpoint(tmp_path / "c.pth")["rng"])
    assert (random.random(), np.random.standard_normal()) == expected[:2] and torch.equal(torch.rand(2), expected[2])


# ----------------------------------------------------------------- through YOLOX's train tool
def _opts(data, out):
    # 8 images at batch 2: 4 iterations an epoch; evaluations after each; the last epoch without
    # augmentation (the L1 loss and the mosaic switch); a DataLoader worker
    return ["data_dir", str(data), "input_size", "(96,96)", "test_size", "(96,96)", "random_size", "(2,4)",
            "data_num_workers", "1", "test_conf", "0.0", "max_epoch", "3", "no_aug_epochs", "1", "eval_interval", "1",
            "print_interval", "1", "seed", "0", "output_dir", str(out)]


def _train(work, name, resume=False, stop=None):
    """YOLOX's train tool; ``stop(line, folder)`` returns a signal to send (once), or None. The
    signal goes to the whole process group, DataLoader worker included, as Slurm and a terminal
    send theirs."""
    cmd = [sys.executable, "-m", "yolox.tools.train", "-f", str(EXP), "-d", "1", "-b", "2", "-expn", name,
           *(["--resume"] * resume), *_opts(work / "shapes", work / "out")]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(cmd, cwd=work, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
                            start_new_session=True)
    lines, sent = [], None
    for line in proc.stdout:
        lines.append(line.rstrip("\n"))
        if sent is None and stop is not None:
            sent = stop(line, work / "out" / name)
            if sent:
                os.killpg(proc.pid, sent)
    return proc.wait(timeout=300), lines


def _records(folder):
    return [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]


def _evals(folder):
    return [{k: r[k] for k in ("epoch", "ap", "ap50", "loss")} for r in _records(folder) if r["event"] == "eval"]


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    from yolox_attn.data.shapes import make_shapes

    work = tmp_path_factory.mktemp("resume_e2e")
    make_shapes(work / "shapes", train=8, val=4, size=96, seed=2)
    code, lines = _train(work, "straight")
    assert code == 0, "\n".join(lines[-20:])
    return work


def test_sigterm_mid_epoch_stops_at_a_checkpoint_and_resume_is_the_same_run(work):
    def mid_epoch_2(line, folder):
        return signal.SIGTERM if "epoch: 2/3, iter: 1/4" in line else None

    code, lines = _train(work, "term", stop=mid_epoch_2)
    folder = work / "out" / "term"
    assert code == 128 + signal.SIGTERM, lines[-10:]
    assert lines[-1].startswith("training stopped by SIGTERM in epoch 2/3 after iteration ")
    assert f"saved {folder / 'latest_ckpt.pth'}; continue with: python -m yolox.tools.train --resume " in lines[-1]
    assert not any("Traceback" in line for line in lines)
    stop = _records(folder)[-1]
    assert stop["event"] == "stop" and stop["signal"] == "SIGTERM" and stop["next_epoch"] == 2
    ckpt = load_checkpoint(folder / "latest_ckpt.pth")
    assert ckpt["start_epoch"] == 1 and 0 < ckpt["start_iter"] == stop["next_iter"] - 1  # mid-epoch
    code, lines = _train(work, "term", resume=True)
    assert code == 0, lines[-20:]
    records = _records(folder)
    assert [r["event"] for r in records] == ["start", "eval", "stop", "start", "eval", "eval", "end"]
    assert records[3]["resume"] and (records[3]["start_epoch"], records[3]["start_iter"]) == (1, ckpt["start_iter"])
    assert _evals(folder) == _evals(work / "out" / "straight")  # every loss and AP, bit for bit


def test_sigkill_after_an_epoch_then_resume_is_the_same_run(work):
    def after_first_eval(line, folder):
        path = folder / "metrics.jsonl"
        return signal.SIGKILL if path.is_file() and '"eval"' in path.read_text() else None

    code, _ = _train(work, "kill", stop=after_first_eval)
    assert code == -signal.SIGKILL
    code, lines = _train(work, "kill", resume=True)
    assert code == 0, lines[-20:]
    assert _evals(work / "out" / "kill") == _evals(work / "out" / "straight")

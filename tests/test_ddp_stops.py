"""DDP with 2 gloo processes on the CPU: a rank that fails mid-epoch takes the other down within
seconds, each with one line naming the failing rank and the cause; a stop signal to one rank
stops both at the same iteration, at one checkpoint."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

from conftest import ROOT

from yolox_attn.checkpoint import load_checkpoint

EXP = ROOT / "exps" / "example" / "yolox_nano_cam_shapes.py"

# One rank as YOLOX's launch starts it (process group, then the exp's trainer), with the train
# tool's parser; the exp file and the options come from the test.
RANK = textwrap.dedent("""
    import sys
    import torch
    import torch.distributed as dist
    from yolox.exp import get_exp
    from yolox.tools.train import make_parser

    rank, init, argv = int(sys.argv[1]), sys.argv[2], sys.argv[3:]
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init}", rank=rank, world_size=2)
    args = make_parser().parse_args(argv)
    exp = get_exp(args.exp_file, None)
    exp.merge(args.opts)
    args.experiment_name = exp.exp_name
    print("ready", flush=True)
    exp.get_trainer(args).train()
""")

FAILING_EXP = textwrap.dedent(f"""
    import importlib.util

    import torch.distributed as dist

    spec = importlib.util.spec_from_file_location("shapes_exp", {str(EXP)!r})
    base = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(base)


    class Exp(base.Exp):
        batches = 0

        def __init__(self):
            super().__init__()
            self.exp_name = "failing_exp"

        def preprocess(self, inputs, targets, tsize):
            Exp.batches += 1
            if dist.get_rank() == 1 and Exp.batches == 3:  # mid-epoch: the 3rd of 4 iterations
                raise RuntimeError("injected failure")
            return super().preprocess(inputs, targets, tsize)
""")


def _start(tmp_path, exp_file, opts):
    argv = ["-f", str(exp_file), "-d", "2", "-b", "2", *opts, "output_dir", str(tmp_path / "out")]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return [subprocess.Popen([sys.executable, "-c", RANK, str(rank), str(tmp_path / "store"), *argv], cwd=tmp_path,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env) for rank in (0, 1)]


def _finish(procs):
    """Each rank's exit status, the moment it ended, and its output lines."""
    ends = [None, None]
    while None in ends:
        for i, proc in enumerate(procs):
            if ends[i] is None and proc.poll() is not None:
                ends[i] = time.time()
        time.sleep(0.05)
    outputs = [proc.communicate(timeout=60) for proc in procs]
    return [(p.returncode, end, (out + err).strip().splitlines()) for p, end, (out, err) in zip(procs, ends, outputs)]


def _opts(tiny_shapes, *more):
    # 8 images at batch 2 over 2 ranks: 4 iterations an epoch. No evaluation in the first epoch:
    # YOLOX's all_reduce_norm, which precedes it under DDP, needs CUDA.
    _, opts = tiny_shapes
    return [*opts, "max_epoch", "2", "eval_interval", "10", "no_aug_epochs", "0", "print_interval", "1", "seed", "0",
            *more]


def test_a_failing_rank_takes_the_other_down_within_seconds(tmp_path, tiny_shapes):
    exp_file = tmp_path / "failing_exp.py"
    exp_file.write_text(FAILING_EXP)
    procs = _start(tmp_path, exp_file, _opts(tiny_shapes))
    (code0, end0, lines0), (code1, end1, lines1) = _finish(procs)
    log = tmp_path / "out" / "failing_exp" / "train_log.txt"
    failure = f"training failed in epoch 1/2 on rank 1: RuntimeError: injected failure; traceback in {log}"
    assert code1 == 1 and lines1[-1] == failure, lines1[-5:]
    assert code0 == 1 and lines0[-1] == f"training stopped on rank 0: rank 1: {failure}", lines0[-5:]
    assert abs(end0 - end1) < 10  # not the 30 minutes of YOLOX's process-group timeout


def test_a_stop_signal_to_one_rank_stops_both_at_one_checkpoint(tmp_path, tiny_shapes):
    procs = _start(tmp_path, EXP, _opts(tiny_shapes))
    for line in procs[0].stderr:  # rank 0 logs the iterations
        if "epoch: 1/2, iter: 2/4" in line:
            procs[1].send_signal(signal.SIGTERM)
            break
    (code0, _, lines0), (code1, _, lines1) = _finish(procs)
    folder = tmp_path / "out" / "yolox_nano_cam_shapes"
    assert code0 == code1 == 128 + signal.SIGTERM, (lines0[-5:], lines1[-5:])
    assert lines0[-1].startswith("training stopped by SIGTERM in epoch 1/2 after iteration ")
    assert not any("training" in line for line in lines1), lines1[-5:]  # one line, from rank 0
    ckpt = load_checkpoint(folder / "latest_ckpt.pth")
    stop = json.loads((folder / "metrics.jsonl").read_text().splitlines()[-1])
    assert stop["event"] == "stop" and (ckpt["start_epoch"], ckpt["start_iter"]) == (0, stop["next_iter"] - 1)
    assert ckpt["world_size"] == 2 and 0 < ckpt["start_iter"] < 4

"""The ablation tool stopped mid-run, by SIGTERM to it or by SIGKILL (its run then gets SIGTERM from
the kernel), and rerun: the grid ends with the uninterrupted grid's results. And a submitit job's
requeue: the run it was running stops at a checkpoint, and the requeued job resumes it."""

import json
import signal
import subprocess
import sys
import time

import pytest
from conftest import ROOT

EXP = ROOT / "exps" / "example" / "yolox_nano_none_shapes.py"


def _tool(work, out):
    # 8 images at batch 2: 4 iterations, one epoch (without augmentation: the L1 loss too), an evaluation
    return [sys.executable, "-m", "yolox_attn.tools.ablate", "-f", str(EXP), "--attention", "none", "--seeds", "0",
            "-b", "2", "--output-dir", str(out), "data_dir", str(work / "shapes"), "input_size", "(96,96)",
            "test_size", "(96,96)", "random_size", "(2,4)", "data_num_workers", "0", "test_conf", "0.0",
            "max_epoch", "1", "no_aug_epochs", "1", "eval_interval", "1", "warmup_epochs", "0", "print_interval", "1"]


def _evals(out):
    run = json.loads((out / "results.json").read_text())["runs"][0]
    return run, [{k: e[k] for k in ("epoch", "ap", "ap50", "loss")} for e in run["evals"]]


def _wait_for(path, text, timeout=300):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if path.is_file() and text in path.read_text():
            return
        time.sleep(0.05)
    raise AssertionError(f"{text!r} not in {path} after {timeout} s")


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    from yolox_attn.data.shapes import make_shapes

    work = tmp_path_factory.mktemp("ablate_resume")
    make_shapes(work / "shapes", train=8, val=4, size=96, seed=2)
    proc = subprocess.run(_tool(work, work / "straight"), cwd=work, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return work


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL])
def test_a_stopped_grid_rerun_ends_with_the_uninterrupted_results(work, sig):
    out = work / signal.Signals(sig).name
    log = out / "logs" / "none_seed0.log"
    tool = subprocess.Popen(_tool(work, out), cwd=work, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    _wait_for(log, "epoch: 1/1, iter: 2/4")
    tool.send_signal(sig)
    lines = tool.communicate(timeout=300)[0].strip().splitlines()
    # the run stopped at a checkpoint: the tool forwarded SIGTERM, or the kernel sent it when the tool died
    _wait_for(out / "none_seed0" / "metrics.jsonl", '"event": "stop"')
    if sig == signal.SIGTERM:
        assert tool.returncode == 128 + sig and lines[-1].startswith("[ablate] stopped by SIGTERM; "), lines[-5:]
        assert "none_seed0: stopped at a checkpoint (a rerun resumes it): training stopped by SIGTERM" in lines[-3]
        assert json.loads((out / "results.json").read_text())["runs"][0]["status"] == "stopped"
    rerun = subprocess.run(_tool(work, out), cwd=work, capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stdout[-3000:]
    run, evals = _evals(out)
    assert run["status"] == "done" and run["resumed"] == 1
    assert evals == _evals(work / "straight")[1]  # every loss and AP


def test_a_requeued_submitit_job_resumes_its_run(tmp_path):
    # What submitit does on Slurm's time-out or preemption signal, in this process: the job's
    # function is interrupted (SystemExit) after it was asked for its checkpoint; the run it was
    # running stops at a checkpoint; the requeued job runs the same function, which resumes it.
    from yolox_attn.ablation import SubmititRun

    started = []

    def command():
        started.append(len(started))
        return [sys.executable, "-c", STOPPABLE, str(tmp_path / "state"), str(len(started) - 1)]

    job = SubmititRun(command, str(tmp_path / "run.log"))
    delayed = job.checkpoint()
    assert delayed.function is job  # submitit requeues the very same callable

    def requeue(signum, frame):  # submitit's handler, which ends the job process after requeuing
        raise SystemExit(-1)

    previous = signal.signal(signal.SIGALRM, requeue)
    try:
        signal.setitimer(signal.ITIMER_REAL, 1.5)
        with pytest.raises(SystemExit):
            job()
    finally:
        signal.signal(signal.SIGALRM, previous)
    assert (tmp_path / "state").read_text() == "stopped at a checkpoint"  # run_logged waited for it
    assert job() == 0 and (tmp_path / "state").read_text() == "resumed and done"
    log = (tmp_path / "run.log").read_text()
    assert started == [0, 1] and f"{tmp_path / 'state'} 0\n" in log and f"{tmp_path / 'state'} 1\n" in log


# A run that stops at a "checkpoint" on SIGTERM, and finishes when started again.
STOPPABLE = """
import signal, sys, time
state, attempt = sys.argv[1], int(sys.argv[2])
if attempt:
    open(state, "w").write("resumed and done")
    sys.exit(0)
def stop(signum, frame):
    time.sleep(0.5)  # the iteration it finishes
    open(state, "w").write("stopped at a checkpoint")
    sys.exit(128 + signum)
signal.signal(signal.SIGTERM, stop)
time.sleep(60)
"""

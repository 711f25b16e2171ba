"""The CPU trainers' thread policy: as many threads as the cores other processes leave free,
rechecked at optimizer steps (unless seeded); YOLOX_ATTN_THREADS and OMP_NUM_THREADS override it."""

import os
import subprocess
import sys

import pytest
import torch
from conftest import ROOT

from yolox_attn import threads
from yolox_attn.preflight import UsageError
from yolox_attn.threads import ENV, LoadSample, ThreadPolicy, start_thread_policy, threads_for

TICK = os.sysconf("SC_CLK_TCK")


@pytest.fixture(autouse=True)
def keep_threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


@pytest.mark.parametrize("cores, others, most, expected", [
    (2, 0.0, 2, 2), (2, 0.3, 2, 2), (2, 0.6, 2, 2), (2, 0.7, 2, 1), (2, 1.6, 2, 1), (2, 1.0, 2, 1), (2, 1.9, 2, 1), (2, 3.5, 2, 1),
    (8, 2.0, 8, 6), (8, 2.7, 8, 5), (8, 0.0, 4, 4), (1, 0.0, 1, 1)])
def test_threads_are_the_cores_others_leave_free(cores, others, most, expected):
    assert threads_for(cores, others, most) == expected


def test_others_are_the_busy_cores_less_this_process():
    earlier = LoadSample(busy_ticks=1000, own_seconds=10.0, wall=100.0)
    # 4 s in which the cores were busy for 6 core-seconds, 2 of them this process's
    later = LoadSample(busy_ticks=1000 + 6 * TICK, own_seconds=12.0, wall=104.0)
    assert later.others_since(earlier) == pytest.approx(1.0)
    assert LoadSample(1000, 13.0, 104.0).others_since(earlier) == 0.0  # never below 0


def test_a_real_sample_reads_this_machine():
    cpus = sorted(os.sched_getaffinity(0))
    first = LoadSample.now(cpus)
    sum(i * i for i in range(200_000))  # some CPU time of this process
    second = LoadSample.now(cpus)
    assert second.own_seconds > first.own_seconds and second.busy_ticks >= first.busy_ticks
    assert 0.0 <= second.others_since(first) <= len(cpus) + 1


class FakeLoad:
    """Samples in which other processes use ``others`` cores; each call is one second later."""

    def __init__(self):
        self.others, self.ticks, self.wall = 0.0, 0, 0.0

    def __call__(self, cpus):
        self.wall += 1.0
        self.ticks += int(round(self.others * TICK))
        return LoadSample(self.ticks, 0.0, self.wall)


def test_adaptive_policy_follows_the_load_at_optimizer_steps():
    torch.set_num_threads(2)
    load = FakeLoad()
    policy = ThreadPolicy([0, 1], interval=0.0, sample=load)
    policy.start(settle=0.0)
    assert torch.get_num_threads() == 2
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(2))], lr=0.1)
    load.others = 1.2  # a neighbour starts
    optimizer.step()
    assert torch.get_num_threads() == 1
    load.others = 0.1  # and ends
    optimizer.step()
    assert torch.get_num_threads() == 2
    # the check moved from the global hook to this optimizer's own: another optimizer is left alone
    other = torch.optim.SGD([torch.nn.Parameter(torch.zeros(2))], lr=0.1)
    load.others = 1.5
    other.step()
    assert torch.get_num_threads() == 2
    optimizer.step()
    assert torch.get_num_threads() == 1


def test_a_seeded_run_takes_torchs_count_whatever_the_load(monkeypatch):
    # a count from the load would differ between a seeded run's start and its resume (or a rerun)
    torch.set_num_threads(2)
    monkeypatch.setattr(threads.os, "sched_getaffinity", lambda pid: {0, 1})
    load = FakeLoad()
    load.others = 1.0  # another training on one of the 2 cores
    monkeypatch.setattr(threads.LoadSample, "now", classmethod(lambda cls, cpus: load(cpus)))
    policy, lines = _logged(lambda: start_thread_policy("cpu", True, {}))
    assert policy is None and torch.get_num_threads() == 2
    assert len(lines) == 1 and "CPU training with 2 threads: torch's default, whatever the load, so that this " \
        "seeded run repeats bit for bit, resumed or not; on a shared machine YOLOX_ATTN_THREADS=1" in lines[0]
    torch.optim.SGD([torch.nn.Parameter(torch.zeros(2))], lr=0.1).step()
    assert torch.get_num_threads() == 2


def _logged(fn):
    from loguru import logger

    lines = []
    handler = logger.add(lambda m: lines.append(str(m)), level="INFO")
    try:
        result = fn()
    finally:
        logger.remove(handler)
    return result, lines


def test_overrides_and_devices():
    torch.set_num_threads(2)
    assert start_thread_policy("cuda:0", seeded=False, environ={}) is None and torch.get_num_threads() == 2
    policy, lines = _logged(lambda: start_thread_policy("cpu", False, {ENV: "torch"}))
    assert policy is None and torch.get_num_threads() == 2
    assert lines == [lines[0]] and "CPU training with 2 threads: torch's default (YOLOX_ATTN_THREADS=torch)" in lines[0]
    _, lines = _logged(lambda: start_thread_policy("cpu", False, {ENV: "3"}))
    assert torch.get_num_threads() == 3 and "CPU training with 3 threads: YOLOX_ATTN_THREADS=3" in lines[0]
    torch.set_num_threads(1)
    _, lines = _logged(lambda: start_thread_policy("cpu", False, {"OMP_NUM_THREADS": "1"}))
    assert torch.get_num_threads() == 1 and "OMP_NUM_THREADS=1 is set" in lines[0]
    for bad in ("0", "many"):
        with pytest.raises(UsageError, match=f"YOLOX_ATTN_THREADS='{bad}': allowed: a number of threads >= 1, "
                                             "'torch' .* or 'auto'"):
            start_thread_policy("cpu", False, {ENV: bad})


def test_auto_logs_one_line_with_the_count_and_why(monkeypatch):
    torch.set_num_threads(2)
    monkeypatch.setattr(threads.os, "sched_getaffinity", lambda pid: {0, 1})
    monkeypatch.setattr(threads.LoadSample, "now", classmethod(lambda cls, cpus: LoadSample(0, 0.0, 0.0)))
    policy, lines = _logged(lambda: start_thread_policy("cpu", False, {}))
    try:
        assert len(lines) == 1 and lines[0].split(" - ", 1)[1].startswith(
            "CPU training with 2 threads: other processes used 0.00 of the 2 cores it may run on; at most 2 "
            "(torch's default); checked again every 2 s (YOLOX_ATTN_THREADS=N fixes it)")
    finally:
        policy.stop()


def test_train_tool_refuses_a_bad_setting_in_one_line(tmp_path, tiny_shapes):
    _, opts = tiny_shapes
    env = dict(os.environ, **{ENV: "lots"})
    proc = subprocess.run([sys.executable, "-m", "yolox.tools.train", "-f",
                           str(ROOT / "exps" / "example" / "yolox_nano_cam_shapes.py"), "-d", "1", "-b", "2", *opts,
                           "output_dir", str(tmp_path), "max_epoch", "1"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines()[-1] == (
        "training failed: YOLOX_ATTN_THREADS='lots': allowed: a number of threads >= 1, 'torch' (torch's default) "
        "or 'auto' (the default: the cores other processes leave free)")

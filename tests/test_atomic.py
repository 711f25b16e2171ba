"""Atomic writes: a kill or a failed write never leaves a torn file; the trainers' checkpoints, the
one-line message of a failed save, and ``--resume`` on an unreadable checkpoint."""

import errno
import os
import shutil
import signal
import subprocess
import sys
import textwrap

import pytest
import torch
from conftest import ROOT

from yolox_attn.atomic import WriteError, atomic_link, atomic_save, atomic_write_text, leftovers, remove_leftovers
from yolox_attn.checkpoint import load_checkpoint

EXP = ROOT / "exps" / "example" / "yolox_nano_cam_shapes.py"


def test_atomic_save_writes_the_whole_file_and_nothing_else(tmp_path):
    path = tmp_path / "latest_ckpt.pth"
    atomic_save({"model": {"w": torch.ones(3)}}, path)
    atomic_save({"model": {"w": torch.zeros(3)}}, path)
    assert torch.equal(load_checkpoint(path)["model"]["w"], torch.zeros(3))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["latest_ckpt.pth"]
    assert (path.stat().st_mode & 0o777) == 0o666 & ~_umask()  # as open() would make it, not mkstemp's 0o600
    atomic_write_text(tmp_path / "r.json", "{}")
    assert (tmp_path / "r.json").read_text() == "{}"


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_a_failed_write_names_the_file_and_keeps_the_previous_one(tmp_path, monkeypatch):
    path = tmp_path / "latest_ckpt.pth"
    atomic_save({"v": 1}, path)

    def disk_full(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", disk_full)  # the data is written; the disk says no at the flush
    with pytest.raises(WriteError) as caught:
        atomic_save({"v": 2}, path)
    assert str(caught.value) == (f"cannot write '{path}' ([Errno 28] No space left on device); "
                                 f"its previous version is intact")
    assert caught.value.errno == errno.ENOSPC
    monkeypatch.undo()
    assert load_checkpoint(path)["v"] == 1 and leftovers(tmp_path) == []
    with pytest.raises(WriteError, match=r"^cannot write '.*nowhere/x.pth' \(\[Errno 2\] No such file or directory\); "
                                         r"no earlier version existed$"):
        atomic_save({"v": 3}, tmp_path / "nowhere" / "x.pth")


KILLED_WRITER = textwrap.dedent("""
    import os, sys, time
    import torch
    from yolox_attn import atomic

    path, version = sys.argv[1], int(sys.argv[2])
    real_fdopen = os.fdopen

    def slow_fdopen(fd, mode, **options):  # the write stalls halfway, for the parent's SIGKILL
        f = real_fdopen(fd, mode, **options)
        write, written = f.write, [0]

        def stalling_write(data):
            written[0] += len(data)
            if written[0] > 4_000_000:
                print("halfway", flush=True)
                time.sleep(60)
            return write(data)

        f.write = stalling_write
        return f

    atomic.os.fdopen = slow_fdopen
    atomic.atomic_save({"version": version, "weights": torch.full((2_000_000,), float(version))}, path)
""")


def test_a_kill_during_a_write_leaves_the_previous_checkpoint_readable(tmp_path):
    path = tmp_path / "latest_ckpt.pth"
    atomic_save({"version": 0, "weights": torch.zeros(2_000_000)}, path)
    for version in range(1, 5):  # four kills, each in the middle of writing the next version
        proc = subprocess.Popen([sys.executable, "-c", KILLED_WRITER, str(path), str(version)],
                                stdout=subprocess.PIPE, text=True)
        assert proc.stdout.readline().strip() == "halfway"
        proc.send_signal(signal.SIGKILL)
        assert proc.wait(timeout=30) == -signal.SIGKILL
        assert load_checkpoint(path)["version"] == 0
        assert len(leftovers(tmp_path)) == version  # the partial files, hidden, beside it
    assert remove_leftovers(tmp_path) and leftovers(tmp_path) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["latest_ckpt.pth"]


def test_atomic_link_shares_the_file_or_copies_it(tmp_path, monkeypatch):
    source, target = tmp_path / "last_epoch_ckpt.pth", tmp_path / "best_ckpt.pth"
    atomic_save({"v": 1}, source)
    atomic_link(source, target)
    assert os.path.samefile(source, target)
    atomic_save({"v": 2}, source)  # replacing one name leaves the other as it was
    assert load_checkpoint(target)["v"] == 1 and load_checkpoint(source)["v"] == 2

    def no_links(src, dst):
        raise OSError(errno.EPERM, "hard links not supported")

    monkeypatch.setattr(os, "link", no_links)
    atomic_link(source, target)
    assert load_checkpoint(target)["v"] == 2 and not os.path.samefile(source, target)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best_ckpt.pth", "last_epoch_ckpt.pth"]


# ------------------------------------------------------------------------- the trainers
def _train(tmp_path, opts, *flags, limit=None):
    def cap_file_size():  # a disk that takes only `limit` bytes per file: writes beyond fail (EFBIG)
        import resource

        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    cmd = [sys.executable, "-m", "yolox.tools.train", "-f", str(EXP), "-d", "1", "-b", "4", *flags, *opts,
           "output_dir", str(tmp_path / "out")]
    proc = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=600,
                          preexec_fn=cap_file_size if limit else None)
    return proc.returncode, (proc.stdout + proc.stderr).strip().splitlines()


@pytest.fixture(scope="module")
def trained(tmp_path_factory, tiny_shapes):
    """Two epochs with an evaluation after each: every checkpoint the trainer writes."""
    tmp_path = tmp_path_factory.mktemp("atomic")
    _, opts = tiny_shapes
    opts = [*opts, "max_epoch", "2", "eval_interval", "1", "no_aug_epochs", "1", "save_history_ckpt", "True"]
    code, lines = _train(tmp_path, opts)
    assert code == 0, "\n".join(lines[-20:])
    return tmp_path, opts


def test_trainer_checkpoints_are_whole_and_share_files_where_equal(trained):
    tmp_path, _ = trained
    out = tmp_path / "out" / "yolox_nano_cam_shapes"
    names = sorted(p.name for p in out.glob("*_ckpt.pth") if p.name != "best_ckpt.pth")  # best: if AP rose
    assert names == ["epoch_1_ckpt.pth", "epoch_2_ckpt.pth", "last_epoch_ckpt.pth", "last_mosaic_epoch_ckpt.pth",
                     "latest_ckpt.pth"]
    assert leftovers(out) == []
    # latest is the newest checkpoint, the one saved after the last evaluation: one file
    assert os.path.samefile(out / "latest_ckpt.pth", out / "last_epoch_ckpt.pth")
    latest = load_checkpoint(out / "latest_ckpt.pth")
    assert (latest["start_epoch"], latest["start_iter"], latest["eval_pending"]) == (2, 0, False)
    assert {"model", "train_model", "optimizer", "rng", "ema_updates", "input_size"} <= set(latest)
    assert latest["ema_updates"] == 2 * latest["iterations_per_epoch"]
    # the history files keep YOLOX's size: the same state without the trained weights beside the EMA
    history = load_checkpoint(out / "epoch_2_ckpt.pth")
    assert set(latest) - set(history) == {"train_model", "ema_updates"}
    assert all(torch.equal(history["model"][k], v) for k, v in latest["model"].items())


def test_a_failed_checkpoint_write_is_one_line_naming_the_file(tmp_path, tiny_shapes):
    _, opts = tiny_shapes
    code, lines = _train(tmp_path, [*opts, "max_epoch", "1"], limit=2_000_000)  # a checkpoint is ~6 MB
    latest = tmp_path / "out" / "yolox_nano_cam_shapes" / "latest_ckpt.pth"
    assert code == 1, lines[-10:]
    assert lines[-1] == (f"training failed in epoch 1/1: cannot write '{latest}' ([Errno 27] File too large); "
                         f"no earlier version existed")
    assert not latest.exists() and leftovers(latest.parent) == []


def test_resume_from_an_unreadable_latest_names_the_newest_readable_one(trained, tmp_path):
    source, opts = trained
    out = tmp_path / "out" / "yolox_nano_cam_shapes"
    shutil.copytree(source / "out" / "yolox_nano_cam_shapes", out)
    (out / "latest_ckpt.pth").unlink()  # a copy cut short, say: another file than last_epoch's
    (out / "latest_ckpt.pth").write_bytes(b"PK\x03\x04 cut short")
    code, lines = _train(tmp_path, opts, "--resume")
    assert code == 1 and len(lines) <= 15, lines[-10:]
    assert lines[-1].startswith(f"training failed: checkpoint '{out / 'latest_ckpt.pth'}' cannot be read ")
    newest = lines[-1].rsplit("--resume -c ", 1)[1]
    assert lines[-1].endswith(f"; the newest checkpoint that loads is {newest} (after epoch 2): resume from it with "
                              f"--resume -c {newest}")
    assert os.path.samefile(newest, out / "last_epoch_ckpt.pth")

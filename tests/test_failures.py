"""Failures a user can cause end in one short message naming the cause, and a non-zero exit,
through YOLOX's own train tool (whose ``logger.catch`` would otherwise exit 0) and our tools."""

import subprocess
import sys

import numpy as np
import pytest
import torch
from conftest import ROOT

EXP = ROOT / "exps" / "example" / "yolox_nano_cam_shapes.py"
MAX_LINES = 15


def _run(args, cwd, env=None):
    proc = subprocess.run([sys.executable, "-m", *args], cwd=cwd, capture_output=True, text=True, timeout=600)
    lines = (proc.stdout + proc.stderr).strip().splitlines()
    return proc.returncode, lines


def _train(tmp_path, opts, *flags):
    return _run(["yolox.tools.train", "-f", str(EXP), "-d", "1", "-b", "2", *flags, *opts,
                 "output_dir", str(tmp_path / "out"), "max_epoch", "1"], tmp_path)


def _assert_short_failure(code, lines, *needles):
    assert code != 0, lines
    assert len(lines) <= MAX_LINES, "\n".join(lines)
    for needle in needles:
        assert needle in lines[-1], (needle, lines[-1])


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    from yolox.exp import get_exp

    folder = tmp_path_factory.mktemp("ckpts")
    exp = get_exp(str(EXP), None)
    exp.width = 0.375  # a YOLOX-tiny-wide model: every layer of another shape
    torch.save({"model": exp.get_model().state_dict()}, folder / "wrong_size.pth")
    (folder / "corrupt.pth").write_bytes(b"\x00not a checkpoint" * 64)
    return folder


def test_train_missing_dataset_names_the_file_and_the_fixes(tmp_path):
    code, lines = _train(tmp_path, ["data_dir", str(tmp_path / "nowhere")])
    _assert_short_failure(code, lines, "training failed", "dataset not found",
                          str(tmp_path / "nowhere" / "annotations" / "instances_train2017.json"),
                          "YOLOX_DATADIR", "yolox_attn.tools.make_shapes")


@pytest.mark.parametrize("case, needles", [
    ("missing", ["does not exist"]),
    ("corrupt", ["cannot be read", "corrupt"]),
    ("wrong_size", ["does not fit this model", "another shape"]),
])
def test_train_bad_checkpoint(tmp_path, tiny_shapes, checkpoints, case, needles):
    _, opts = tiny_shapes
    code, lines = _train(tmp_path, opts, "-c", str(checkpoints / f"{case}.pth"))
    _assert_short_failure(code, lines, "training failed", f"{case}.pth", *needles)


def test_train_unknown_attention(tmp_path, tiny_shapes):
    _, opts = tiny_shapes
    code, lines = _train(tmp_path, [*opts, "attention", "transformer"])
    _assert_short_failure(code, lines, "training failed", "'transformer'", "cca")


def test_train_unknown_opts_key(tmp_path, tiny_shapes):
    _, opts = tiny_shapes
    code, lines = _train(tmp_path, [*opts, "atention", "cca"])
    _assert_short_failure(code, lines, "unknown exp option 'atention'")


def test_eval_checks_the_checkpoint_before_the_dataset(tmp_path):
    code, lines = _run(["yolox_attn.tools.eval", "-f", str(EXP), "-d", "1", "-b", "2", "-c",
                        str(tmp_path / "missing.pth"), "data_dir", str(tmp_path / "nowhere")], tmp_path)
    _assert_short_failure(code, lines, "evaluation failed", "missing.pth", "does not exist")


def test_eval_missing_dataset(tmp_path, checkpoints):
    from yolox.exp import get_exp

    ckpt = tmp_path / "ckpt.pth"
    torch.save({"model": get_exp(str(EXP), None).get_model().state_dict()}, ckpt)
    code, lines = _run(["yolox_attn.tools.eval", "-f", str(EXP), "-d", "1", "-b", "2", "-c", str(ckpt),
                        "data_dir", str(tmp_path / "nowhere")], tmp_path)
    _assert_short_failure(code, lines, "evaluation failed", "instances_val2017.json", "make_shapes")


def test_train_occupy_on_the_cpu_is_ignored_with_a_warning(tmp_path, tiny_shapes):
    _, opts = tiny_shapes
    code, lines = _train(tmp_path, [*opts, "eval_interval", "5"], "-o")
    assert code == 0 and "Traceback" not in "\n".join(lines), "\n".join(lines[-30:])
    assert any("--occupy" in line and "ignored" in line for line in lines)


@pytest.mark.parametrize("workers", [0, 1])
def test_train_failure_during_training_exits_1_naming_the_error_and_the_log(tmp_path, tiny_shapes, workers):
    # A dataset whose training images are gone: the annotations pass the set-up checks, and the
    # first batch fails (in a DataLoader worker when workers > 0). YOLOX's own Trainer would log
    # the traceback and exit 0.
    import shutil

    data, opts = tiny_shapes
    broken = tmp_path / "broken"
    shutil.copytree(data, broken)
    images = sorted((broken / "train2017").iterdir())
    assert images
    for image in images:
        image.unlink()
    opts = [*opts, "data_dir", str(broken), "data_num_workers", str(workers)]
    code, lines = _train(tmp_path, opts)
    log = tmp_path / "out" / "yolox_nano_cam_shapes" / "train_log.txt"
    # YOLOX's set-up log comes first, as in any run; then one line and exit 1, no traceback.
    assert code == 1, lines[-20:]
    assert lines[-1].startswith("training failed in epoch 1/1: AssertionError: file named ")
    assert lines[-1].endswith(f" not found; traceback in {log}")
    assert not any("Traceback" in line for line in lines)
    assert "Traceback" in log.read_text()


def test_yolox_eval_tool_on_the_cpu_points_to_ours(tmp_path):
    # YOLOX's tool would stop at a bare `assert num_gpu <= torch.cuda.device_count()`.
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA; tests/test_cuda.py covers YOLOX's eval tool there")
    code, lines = _run(["yolox.tools.eval", "-f", str(EXP), "-c", str(tmp_path / "x.pth"), "-b", "2", "-d", "1"],
                       tmp_path)
    assert code == 1 and lines == ["YOLOX's eval tool needs a CUDA GPU and this machine has none; on the CPU run "
                                   "python -m yolox_attn.tools.eval with the same arguments"], (code, lines)


def test_yolox_eval_tool_checks_checkpoint_and_dataset_first(tmp_path, tiny_shapes, checkpoints, monkeypatch):
    # On CUDA, YOLOX's eval tool reads these only after its set-up and exits 0 on a failure; the
    # exp checks them when the tool merges its opts, from the tool's parsed command line.
    import argparse
    import types

    from yolox.exp import get_exp

    from yolox_attn.preflight import UsageError

    data, opts = tiny_shapes
    good = tmp_path / "good.pth"
    torch.save({"model": get_exp(str(EXP), None).get_model().state_dict()}, good)
    with_numpy = tmp_path / "with_numpy.pth"  # as YOLOX's own trainer saves best_ap
    torch.save({"model": torch.load(good)["model"], "best_ap": np.float64(0.25)}, with_numpy)
    tool = types.ModuleType("__main__")
    tool.__spec__ = types.SimpleNamespace(name="yolox.tools.eval")
    monkeypatch.setitem(sys.modules, "__main__", tool)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)

    def merge(ckpt, data_dir, **flags):
        tool.args = argparse.Namespace(**{"ckpt": ckpt, "experiment_name": None, "speed": False, "trt": False,
                                          "test": False, **flags})
        get_exp(str(EXP), None).merge([*opts, "data_dir", str(data_dir)])

    merge(str(good), data)  # nothing to complain about
    merge(None, data, speed=True)  # --speed reads no checkpoint
    cases = [
        ((str(tmp_path / "missing.pth"), data), [f"'{tmp_path / 'missing.pth'}' does not exist"]),
        ((str(checkpoints / "wrong_size.pth"), data), ["wrong_size.pth", "does not fit this model"]),
        ((str(checkpoints / "corrupt.pth"), data), ["corrupt.pth", "cannot be read"]),
        ((str(good), tmp_path / "nowhere"), ["dataset not found", "instances_val2017.json"]),
        ((None, data), ["best_ckpt.pth' does not exist"]),  # the tool's default checkpoint
        ((str(with_numpy), data), ["with_numpy.pth", "numpy", "yolox_attn.tools.eval"]),
    ]
    for args, needles in cases:
        with pytest.raises(UsageError) as caught:
            merge(*args)
        message = str(caught.value)
        assert message.startswith("evaluation failed: "), message
        for needle in needles:
            assert needle in message, (needle, message)

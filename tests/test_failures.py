"""Failures a user can cause end in one short message naming the cause, and a non-zero exit,
through YOLOX's own train tool (whose ``logger.catch`` would otherwise exit 0) and our tools."""

import subprocess
import sys

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

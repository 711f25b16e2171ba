"""Failures a user can cause end in one short message naming the cause, and a non-zero exit,
through YOLOX's own train tool (whose ``logger.catch`` would otherwise exit 0) and our tools."""

import re
import subprocess
import sys

import numpy as np
import pytest
import torch
from conftest import ROOT

EXP = ROOT / "exps" / "example" / "yolox_nano_cam_shapes.py"
MAX_LINES = 15


def _run(args, cwd):
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
    # and none of YOLOX's known noise (yolox_attn.known_noise): no nvidia-smi complaint, no FutureWarning
    assert not [line for line in lines if "nvidia-smi" in line or "FutureWarning" in line]


@pytest.mark.parametrize("workers", [0, 1])
def test_train_failure_during_training_exits_1_naming_the_error_and_the_log(tmp_path, tiny_shapes, workers):
    # A dataset whose training images are unreadable: the files exist, so the set-up checks pass,
    # and the first batch fails (in a DataLoader worker when workers > 0). YOLOX's own Trainer
    # would log the traceback and exit 0.
    import shutil

    data, opts = tiny_shapes
    broken = tmp_path / "broken"
    shutil.copytree(data, broken)
    images = sorted((broken / "train2017").iterdir())
    assert images
    for image in images:
        image.write_bytes(b"not a jpeg")
    opts = [*opts, "data_dir", str(broken), "data_num_workers", str(workers)]
    code, lines = _train(tmp_path, opts)
    log = tmp_path / "out" / "yolox_nano_cam_shapes" / "train_log.txt"
    # YOLOX's set-up log comes first, as in any run; then one line and exit 1, no traceback.
    assert code == 1, lines[-20:]
    assert lines[-1].startswith("training failed in epoch 1/1: AssertionError: file named ")
    assert lines[-1].endswith(f" not found; traceback in {log}")
    assert not any("Traceback" in line for line in lines)
    assert "Traceback" in log.read_text()


def test_images_missing_on_disk_stop_training_before_it_starts(tmp_path, tiny_shapes):
    import shutil

    data, opts = tiny_shapes
    broken = tmp_path / "broken"
    shutil.copytree(data, broken)
    first = sorted((broken / "train2017").iterdir())[0]
    first.unlink()
    code, lines = _train(tmp_path, [*opts, "data_dir", str(broken)])
    assert code == 1 and lines[-1] == (
        f"training failed: 1 of the 8 images listed in {broken}/annotations/instances_train2017.json is not in "
        f"{broken}/train2017, the folder YOLOX reads them from: the first is '{first.name}'"), lines[-3:]
    assert not any("Training start" in line for line in lines)


def test_yolox_eval_tool_on_the_cpu_points_to_ours(tmp_path):
    # YOLOX's tool would stop at a bare `assert num_gpu <= torch.cuda.device_count()`.
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA; tests/test_cuda.py covers YOLOX's eval tool there")
    code, lines = _run(["yolox.tools.eval", "-f", str(EXP), "-c", str(tmp_path / "x.pth"), "-b", "2", "-d", "1"],
                       tmp_path)
    assert code == 1 and lines == ["YOLOX's eval tool needs a CUDA GPU and this machine has none; on the CPU run "
                                   "python -m yolox_attn.tools.eval with the same arguments"], (code, lines)


def test_yolox_onnx_export_tool_points_to_ours(tmp_path):
    # YOLOX 0.3.0's export_onnx calls torch.onnx._export: gone from current torch (a traceback, exit 0).
    if hasattr(torch.onnx, "_export"):
        pytest.skip("this torch still has torch.onnx._export")
    code, lines = _run(["yolox.tools.export_onnx", "-f", str(EXP), "-c", str(tmp_path / "x.pth")], tmp_path)
    assert code == 1 and len(lines) <= 2, (code, lines)  # YOLOX's tool logs its arguments first
    assert lines[-1] == (f"YOLOX 0.3.0's export_onnx calls torch.onnx._export, which torch {torch.__version__} "
                         f"lacks; run python -m yolox_attn.tools.export_onnx with the same arguments")


@pytest.mark.parametrize("tool, what", [("eval", "evaluation"), ("export_torchscript", "export")])
def test_yolox_tools_check_checkpoint_and_dataset_first(tmp_path, tiny_shapes, checkpoints, monkeypatch, tool, what):
    # YOLOX's eval (on CUDA) and TorchScript export read these only after their set-up and exit 0
    # on a failure; the exp checks them when the tool merges its opts, parsing the tool's command
    # line with the tool's own parser.
    import importlib
    import types

    from yolox.exp import get_exp

    data, opts = tiny_shapes
    good = tmp_path / "good.pth"
    torch.save({"model": get_exp(str(EXP), None).get_model().state_dict()}, good)
    with_numpy = tmp_path / "with_numpy.pth"  # as YOLOX's own trainer saves best_ap
    torch.save({"model": torch.load(good)["model"], "best_ap": np.float64(0.25)}, with_numpy)
    module = types.ModuleType("__main__")
    module.__spec__ = types.SimpleNamespace(name=f"yolox.tools.{tool}")
    module.make_parser = importlib.import_module(f"yolox.tools.{tool}").make_parser
    monkeypatch.setitem(sys.modules, "__main__", module)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    # the tool's default checkpoint is ./YOLOX_outputs/<exp>/best_ckpt.pth: here, not a checkout where
    # the main job has written one
    monkeypatch.chdir(tmp_path)

    def run(data_dir, *flags):
        tool_opts = [*opts, "data_dir", str(data_dir)]
        monkeypatch.setattr(sys, "argv", [f"{tool}.py", "-f", str(EXP), *flags, *tool_opts])
        get_exp(str(EXP), None).merge(tool_opts)

    run(data, "-c", str(good))  # nothing to complain about
    cases = [
        ((data, "-c", str(tmp_path / "missing.pth")), [f"'{tmp_path / 'missing.pth'}' does not exist"]),
        ((data, "-c", str(checkpoints / "wrong_size.pth")), ["wrong_size.pth", "does not fit this model"]),
        ((data, "-c", str(checkpoints / "corrupt.pth")), ["corrupt.pth", "cannot be read"]),
        ((data,), ["yolox_nano_cam_shapes/best_ckpt.pth' does not exist"]),  # the tool's default
        ((data, "-c", str(with_numpy)), ["with_numpy.pth", "numpy", f"python -m yolox_attn.tools.{tool}"]),
    ]
    if tool == "eval":
        run(data, "--speed")  # reads no checkpoint
        cases.append(((tmp_path / "nowhere", "-c", str(good)), ["dataset not found", "instances_val2017.json"]))
    else:
        run(tmp_path / "nowhere", "-c", str(good))  # an export reads no dataset
    for args, needles in cases:
        with pytest.raises(SystemExit) as caught:  # not a ValueError: it passes the tools' logger.catch
            run(*args)
        assert not isinstance(caught.value, ValueError)
        message = caught.value.code
        assert message.startswith(f"{what} failed: "), message
        for needle in needles:
            assert needle in message, (needle, message)


def test_yolox_export_tool_unknown_opts_key_exits_1(tmp_path):
    # YOLOX's export tools merge opts inside their logger.catch, which catches a ValueError (exit 0).
    code, lines = _run(["yolox.tools.export_torchscript", "-f", str(EXP), "atention", "cca"], tmp_path)
    assert code == 1 and len(lines) <= 2, (code, lines)
    assert lines[-1] == "unknown exp option 'atention'; it is not an attribute of Exp"


@pytest.mark.parametrize("tool", ["eval", "demo", "export_onnx", "export_pt2", "export_torchscript"])
def test_missing_exp_file_is_one_line_naming_it(tmp_path, tool):
    # YOLOX's get_exp ends in two tracebacks and "exps/nope.py doesn't contains class named 'Exp'".
    code, lines = _run([f"yolox_attn.tools.{tool}", *(["image"] if tool == "demo" else []), "-f", "exps/nope.py"],
                       tmp_path)
    exports = tool.startswith("export")  # these log their arguments first, as YOLOX's export tools do
    assert code == 1 and len(lines) == 1 + exports, (code, lines)
    assert lines[-1].endswith("exp file 'exps/nope.py' does not exist"), lines


@pytest.mark.parametrize("source, message", [
    ("import torch\nx = undefined_name\n", r"failed to load: NameError: name 'undefined_name' is not defined "
                                           r"\(at .*bad_exp_name\.py, line 2\)$"),
    ("import no_such_module_17\n", r"failed to load: ModuleNotFoundError: No module named 'no_such_module_17' "
                                   r"\(at .*bad_exp_module\.py, line 1\)$"),
    ("class Exp(:\n", r"failed to load: SyntaxError: .*\(bad_exp_syntax\.py, line 1\)$"),
    ("class Experiment:\n    pass\n", r"'.*bad_exp_class\.py' defines no class named Exp$"),
    ("class Exp:\n    def __init__(self):\n        raise ValueError('no data_dir')\n",
     r"failed to load: ValueError: no data_dir \(at .*bad_exp_init\.py, line 3\)$"),
])
def test_exp_file_that_fails_to_load_is_one_line(tmp_path, monkeypatch, source, message):
    from yolox_attn.preflight import UsageError, load_exp

    name = re.search(r"bad_exp_\w+", message).group(0)
    path = tmp_path / f"{name}.py"
    path.write_text(source)
    monkeypatch.setattr(sys, "path", list(sys.path))  # get_exp appends the exp's folder
    monkeypatch.delitem(sys.modules, name, raising=False)
    with pytest.raises(UsageError) as caught:
        load_exp(str(path))
    monkeypatch.delitem(sys.modules, name, raising=False)
    text = str(caught.value)
    assert "\n" not in text and text.startswith(f"exp file '{path}'"), text
    assert re.search(message, text), text


def test_load_exp_without_a_file_or_with_a_name(tmp_path):
    from yolox_attn.preflight import UsageError, load_exp

    with pytest.raises(UsageError, match=r"^give an exp: -f "):
        load_exp(None, None)
    with pytest.raises(UsageError, match=r"is not a file$"):
        load_exp(str(tmp_path))
    with pytest.raises(UsageError, match=r"^unknown YOLOX model name -n 'yolox-q'; allowed: .*yolox-nano, yolox-s, "):
        load_exp(None, "yolox-q")
    assert load_exp(None, "yolox-s").depth == 0.33  # YOLOX's own exp, both spellings
    assert load_exp(None, "yolox_nano").width == 0.25
    assert load_exp(str(EXP), None).exp_name == "yolox_nano_cam_shapes"

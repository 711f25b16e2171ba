"""The main job in miniature: generated data -> YOLOX's train tool -> our eval tool, on the CPU."""

import itertools
import subprocess
import sys

import pytest
import torch
from conftest import ROOT

EXP = ROOT / "exps" / "example" / "yolox_nano_cam_shapes.py"


def _run(args, cwd):
    proc = subprocess.run([sys.executable, "-m", *args], cwd=cwd, capture_output=True, text=True, timeout=600)
    return proc.returncode, proc.stdout + proc.stderr


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    work = tmp_path_factory.mktemp("e2e")
    data = work / "shapes"
    code, log = _run(["yolox_attn.tools.make_shapes", "--out", str(data), "--train", "16", "--val", "8",
                      "--size", "128", "--seed", "1"], work)
    assert code == 0, log
    # test_conf 0: a barely trained model has no confident box, and YOLOX prints no AP table
    # for an empty detection list.
    small = ["data_dir", str(data), "output_dir", str(work / "out"), "input_size", "(128,128)",
             "test_size", "(128,128)", "random_size", "(3,5)", "data_num_workers", "0", "test_conf", "0.0"]
    # 16 images at batch 4: 4 iterations an epoch, 24 in all, with an evaluation at the end.
    code, log = _run(["yolox.tools.train", "-f", str(EXP), "-d", "1", "-b", "4", *small,
                      "max_epoch", "6", "no_aug_epochs", "1", "eval_interval", "3", "print_interval", "2"], work)
    return work, small, code, log


def test_yolox_train_tool_trains_on_the_cpu(trained):
    work, _, code, log = trained
    out = work / "out" / "yolox_nano_cam_shapes"
    # YOLOX's train tool catches exceptions and exits 0, so the checkpoints are the evidence.
    assert code == 0 and "Traceback" not in log, log[-3000:]
    for name in ("latest_ckpt.pth", "last_epoch_ckpt.pth", "last_mosaic_epoch_ckpt.pth"):
        assert (out / name).is_file(), name
    assert "epoch: 6/6" in log and "Average Precision" in log
    assert "CPU training with " in log and " threads: " in log  # the thread policy's one line, with its reason


def test_eval_tool_prints_the_coco_table(trained):
    work, small, _, _ = trained
    ckpt = work / "out" / "yolox_nano_cam_shapes" / "latest_ckpt.pth"
    code, log = _run(["yolox_attn.tools.eval", "-f", str(EXP), "-c", str(ckpt), "-b", "4", "-d", "1",
                      "--conf", "0.0", *small], work)
    assert code == 0, log[-3000:]
    assert "evaluating on cpu" in log
    assert "Average Precision  (AP) @[ IoU=0.50:0.95 | area=   all | maxDets=100 ]" in log
    assert "per class AP" in log and "circle" in log
    # per-class AP and AR in fractions, the unit of COCO's summary (YOLOX prints percent)
    for table in ("per class AP:", "per class AR:"):
        lines = log.split(table, 1)[1].splitlines()[1:]
        rows = list(itertools.takewhile(lambda line: line.startswith("|"), lines))[2:]  # no header, rule
        cells = [float(c) for row in rows for c in row.strip("|").split("|")[1::2] if c.strip()]
        assert cells and all(0.0 <= c <= 1.0 or c != c for c in cells), (table, rows)


def _summary_ap(log: str) -> str:
    line = next(x for x in log.splitlines() if "Average Precision  (AP) @[ IoU=0.50:0.95 | area=   all" in x)
    return line.rsplit("=", 1)[1].strip()


def test_eval_tool_compiles_the_model_when_the_exp_asks(trained):
    # An exp with compile_model = True: the tool evaluates torch.compile(model), same AP.
    work, small, _, _ = trained
    ckpt = work / "out" / "yolox_nano_cam_shapes" / "latest_ckpt.pth"
    exp_file = work / "compiled_exp.py"
    exp_file.write_text(
        "import importlib.util\n"
        f"spec = importlib.util.spec_from_file_location('base_exp', {str(EXP)!r})\n"
        "base = importlib.util.module_from_spec(spec)\n"
        "spec.loader.exec_module(base)\n\n\n"
        "class Exp(base.Exp):\n"
        "    def __init__(self):\n"
        "        super().__init__()\n"
        "        self.compile_model = True\n"
        "        self.exp_name = 'yolox_nano_cam_shapes'\n"
    )
    argv = ["-c", str(ckpt), "-b", "4", "-d", "1", "--conf", "0.0", *small]
    code, plain_log = _run(["yolox_attn.tools.eval", "-f", str(EXP), *argv], work)
    assert code == 0, plain_log[-3000:]
    code, log = _run(["yolox_attn.tools.eval", "-f", str(exp_file), *argv], work)
    assert code == 0, log[-3000:]
    assert "Compiling the model with torch.compile" in log and "Compiling" not in plain_log
    assert _summary_ap(log) == _summary_ap(plain_log)


@pytest.mark.skipif(torch.cuda.device_count() >= 4, reason="this machine has 4 devices")
def test_eval_tool_rejects_more_devices_than_the_machine_has(trained):
    work, small, _, _ = trained
    code, log = _run(["yolox_attn.tools.eval", "-f", str(EXP), "-d", "4", *small], work)
    assert code != 0 and "-d 4" in log


def test_demo_tool_writes_pictures_of_the_trained_model(trained):
    import cv2

    work, small, _, _ = trained
    ckpt = work / "out" / "yolox_nano_cam_shapes" / "latest_ckpt.pth"
    image = next((work / "shapes" / "val2017").glob("*.jpg"))
    out = work / "pictures"
    code, log = _run(["yolox_attn.tools.demo", "image", "-f", str(EXP), "-c", str(ckpt), "--path", str(image),
                      "--conf", "0.0", "--save_result", "--attention-maps", "--output-dir", str(out), *small], work)
    assert code == 0, log[-3000:]
    h, w = cv2.imread(str(image)).shape[:2]
    detections = cv2.imread(str(out / image.name))
    attention = cv2.imread(str(out / f"{image.stem}_attention.png"))
    assert detections.shape[:2] == (h, w)
    assert attention.shape[:2] == (h, 4 * w)  # detections + dark3, dark4, dark5

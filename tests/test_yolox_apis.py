"""Any YOLOX, any exp: the PyPI release and YOLOX's current source (both "0.3.0"), COCO-format and VOC
data, and ``AttentionMixin`` over exps that are not ours (YOLOX 0.3.0's own VOC exp).

YOLOX's current source runs from the snapshot in ../shared/third_party, extracted here, with
``PYTHONPATH`` in front of the installed PyPI release (its tools resolve from the tree).
"""

import json
import os
import re
import subprocess
import sys
import tarfile

import pytest
from conftest import ROOT

SHARED = ROOT.parent / "shared" / "third_party"
MAIN_SNAPSHOT = SHARED / "yolox-main-6ddff48.tar.gz"
TAG_SNAPSHOT = SHARED / "yolox-0.3.0-exps-demo.tar.gz"
CCA_EXP = ROOT / "exps" / "example" / "yolox_nano_cca_shapes.py"
VOC_EXP = ROOT / "exps" / "example" / "yolox_voc" / "yolox_voc_s_cca.py"
# YOLOX-nano-sized, 128 px, one epoch, everything in this process: seconds, not minutes
TINY = ["depth", "0.33", "width", "0.25", "max_epoch", "1", "data_num_workers", "0", "test_conf", "0.001"]
VOC_OPTS = [*TINY, "input_size", "(128,128)", "test_size", "(128,128)", "multiscale_range", "0",
            "mosaic_prob", "0.0", "mixup_prob", "0.0", "train_image_sets", "(('2007','trainval'),)",
            "class_names", "('circle','triangle','rectangle','cross')", "num_classes", "4"]
EVAL_LINE = re.compile(r"^(COCO AP|VOC mAP@\[\.5:\.95\]): ([0-9.]+), (COCO AP50|VOC mAP50): ([0-9.]+)$", re.M)


def _extracted(snapshot, tmp_path_factory, name):
    if not snapshot.is_file():
        pytest.skip(f"{snapshot.name} is not in {SHARED} (../shared is absent): YOLOX's own source is not tested")
    folder = tmp_path_factory.mktemp(name)
    with tarfile.open(snapshot) as tar:
        tar.extractall(folder, filter="data")
    (tree,) = folder.iterdir()
    return tree


@pytest.fixture(scope="session")
def yolox_main(tmp_path_factory):
    """The extracted tree of YOLOX's current source."""
    return _extracted(MAIN_SNAPSHOT, tmp_path_factory, "yolox_main")


def _run(module_args, cwd, pythonpath=None, extra_env=None):
    env = {**os.environ, **(extra_env or {})}
    env.pop("PYTHONPATH", None)
    if pythonpath is not None:
        env["PYTHONPATH"] = str(pythonpath)
    proc = subprocess.run([sys.executable, *module_args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=900)
    return proc.returncode, proc.stdout + proc.stderr


@pytest.fixture(params=["pypi", "main"])
def pythonpath(request):
    """None for the installed PyPI release; the snapshot's tree for YOLOX's current source."""
    return request.getfixturevalue("yolox_main") if request.param == "main" else None


def _eval_records(folder):
    records = [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]
    return [r for r in records if r["event"] == "eval"]


def test_the_snapshot_is_yolox_with_the_current_api(yolox_main, tmp_path):
    code, out = _run(["-c", "import yolox, yolox.exp; print(yolox.__version__, yolox.__file__, "
                      "hasattr(yolox.exp.Exp, 'get_eval_dataset'))"], tmp_path, yolox_main)
    assert code == 0, out
    version, path, hooks = out.split()
    assert version == "0.3.0" and path.startswith(str(yolox_main)) and hooks == "True"


def test_yolox_mains_train_tool_trains_and_ours_evaluate_and_export(yolox_main, tmp_path, tiny_shapes):
    _, opts = tiny_shapes
    opts = [*opts, "output_dir", str(tmp_path / "out"), "max_epoch", "1"]
    code, out = _run(["-m", "yolox.tools.train", "-f", str(CCA_EXP), "-d", "1", "-b", "4", *opts], tmp_path, yolox_main)
    assert code == 0, out[-3000:]
    folder = tmp_path / "out" / "yolox_nano_cca_shapes"
    assert (folder / "best_ckpt.pth").is_file()
    (record,) = _eval_records(folder)
    ckpt = str(folder / "best_ckpt.pth")
    code, out = _run(["-m", "yolox_attn.tools.eval", "-f", str(CCA_EXP), "-c", ckpt, "-b", "4", "-d", "1", *opts],
                     tmp_path, yolox_main)
    assert code == 0, out[-3000:]
    metric, ap, metric50, ap50 = EVAL_LINE.findall(out)[-1]
    # best_ckpt.pth holds the model the trainer evaluated (its EMA): the same AP
    assert (metric, metric50) == ("COCO AP", "COCO AP50") and record["metric"] == "coco"
    assert (float(ap), float(ap50)) == pytest.approx((record["ap"], record["ap50"]), abs=1e-4)
    code, out = _run(["-m", "yolox_attn.tools.export_onnx", "-f", str(CCA_EXP), "-c", ckpt, "--output-name",
                      str(tmp_path / "m.onnx"), *opts], tmp_path, yolox_main)
    assert code == 0 and (tmp_path / "m.onnx").is_file(), out[-3000:]


@pytest.fixture(scope="module")
def voc_shapes(tmp_path_factory):
    """The shapes data in VOC layout: ``<dir>/VOC2007/`` with trainval (8 images) and test (4)."""
    from yolox_attn.data.shapes import make_shapes

    data = tmp_path_factory.mktemp("voc") / "shapes_voc"
    make_shapes(data, train=8, val=4, size=128, seed=3, data_format="voc")
    return data


def test_a_voc_exp_trains_and_evaluates_voc_map_on_the_cpu(pythonpath, tmp_path, voc_shapes):
    opts = [*VOC_OPTS, "data_dir", str(voc_shapes), "output_dir", str(tmp_path / "out")]
    code, out = _run(["-m", "yolox.tools.train", "-f", str(VOC_EXP), "-d", "1", "-b", "4", *opts], tmp_path, pythonpath)
    assert code == 0, out[-3000:]
    folder = tmp_path / "out" / "yolox_voc_s_cca"
    (record,) = _eval_records(folder)
    assert record["metric"] == "voc"
    code, out = _run(["-m", "yolox_attn.tools.eval", "-f", str(VOC_EXP), "-c", str(folder / "best_ckpt.pth"),
                      "-b", "4", "-d", "1", *opts], tmp_path, pythonpath)
    assert code == 0, out[-3000:]
    metric, ap, metric50, ap50 = EVAL_LINE.findall(out)[-1]
    assert (metric, metric50) == ("VOC mAP@[.5:.95]", "VOC mAP50")
    assert (float(ap), float(ap50)) == pytest.approx((record["ap"], record["ap50"]), abs=1e-4)


def test_a_missing_voc_image_set_stops_training_in_one_line(tmp_path, voc_shapes):
    opts = [*VOC_OPTS, "data_dir", str(voc_shapes), "output_dir", str(tmp_path / "out"),
            "train_image_sets", "(('2012','trainval'),)"]
    code, out = _run(["-m", "yolox.tools.train", "-f", str(VOC_EXP), "-d", "1", "-b", "4", *opts], tmp_path)
    last = out.strip().splitlines()[-1]
    assert code == 1 and last.startswith("training failed: ") and "VOC2012" in last, out[-2000:]


def _voc_with_voc_names(devkit):
    """A VOC2007-layout set written here, not by the project: filled boxes of 3 of VOC's classes."""
    import cv2
    import numpy as np

    rng = np.random.default_rng(0)
    base = devkit / "VOC2007"
    for sub in ("Annotations", "JPEGImages", "ImageSets/Main"):
        (base / sub).mkdir(parents=True)
    ids = [f"{i:06d}" for i in range(12)]
    for i in ids:
        img = np.full((128, 160, 3), 30, np.uint8)
        objects = []
        for k, name in enumerate(rng.choice(["dog", "car", "person"], size=2)):
            x, y = int(rng.integers(1, 80)), int(rng.integers(1, 60))
            cv2.rectangle(img, (x, y), (x + 40, y + 40), (60 + 80 * k, 200, 255 - 80 * k), -1)
            objects.append(f"<object><name>{name}</name><pose>Unspecified</pose><truncated>0</truncated>"
                           f"<difficult>0</difficult><bndbox><xmin>{x + 1}</xmin><ymin>{y + 1}</ymin>"
                           f"<xmax>{x + 41}</xmax><ymax>{y + 41}</ymax></bndbox></object>")
        cv2.imwrite(str(base / "JPEGImages" / f"{i}.jpg"), img)
        (base / "Annotations" / f"{i}.xml").write_text(
            f"<annotation><filename>{i}.jpg</filename><size><width>160</width><height>128</height>"
            f"<depth>3</depth></size>{''.join(objects)}</annotation>")
    (base / "ImageSets" / "Main" / "trainval.txt").write_text("\n".join(ids[:8]) + "\n")
    (base / "ImageSets" / "Main" / "test.txt").write_text("\n".join(ids[8:]) + "\n")


def test_the_mixin_over_yolox_030s_own_voc_exp_trains_and_evaluates(tmp_path, tmp_path_factory):
    tag = _extracted(TAG_SNAPSHOT, tmp_path_factory, "yolox_tag")
    devkit = tmp_path / "data" / "VOCdevkit"  # where YOLOX 0.3.0's VOC exp reads, 2007 and 2012
    _voc_with_voc_names(devkit)
    (devkit / "VOC2012").symlink_to(devkit / "VOC2007")
    exp_file = tmp_path / "voc_mixin.py"
    exp_file.write_text(
        "import importlib.util\n"
        "from yolox_attn.exp import AttentionMixin\n"
        f"spec = importlib.util.spec_from_file_location('yolox_voc_s', {str(tag / 'exps/example/yolox_voc/yolox_voc_s.py')!r})\n"
        "voc = importlib.util.module_from_spec(spec)\n"
        "spec.loader.exec_module(voc)\n\n\n"
        "class Exp(AttentionMixin, voc.Exp):\n"
        "    def __init__(self):\n"
        "        super().__init__()\n"
        "        self.attention = 'cca'\n"
        "        self.exp_name = 'voc_mixin'\n")
    opts = [*TINY, "input_size", "(128,128)", "test_size", "(128,128)", "multiscale_range", "0",
            "output_dir", str(tmp_path / "out")]
    code, out = _run(["-m", "yolox.tools.train", "-f", str(exp_file), "-d", "1", "-b", "4", *opts], tmp_path,
                     extra_env={"YOLOX_DATADIR": str(tmp_path / "data")})
    assert code == 0, out[-3000:]
    assert "Exp has no check_dataset: its data are not checked before training" in out
    (record,) = _eval_records(tmp_path / "out" / "voc_mixin")  # on the CPU, with numpy 2
    assert record["metric"] == "voc"


def test_the_mixin_adds_the_model_and_optimizer_and_keeps_the_rest():
    from yolox.exp import Exp as YoloxExp

    from yolox_attn.exp import AttentionMixin
    from yolox_attn.neck import AttentionPAFPN

    class UsersExp(YoloxExp):  # as YOLOX's docs/train_custom_data.md teaches
        def get_data_loader(self, batch_size, is_distributed, no_aug=False, cache_img=False):
            return "the user's loader"

        def get_evaluator(self, batch_size, is_distributed, testdev=False, legacy=False):
            return "the user's evaluator"

    class Exp(AttentionMixin, UsersExp):
        pass

    exp = Exp()
    exp.depth, exp.width, exp.attention = 0.33, 0.25, "cca"
    assert exp.get_data_loader(2, False) == "the user's loader"
    assert exp.get_evaluator(2, False) == "the user's evaluator"
    for name in ("get_data_loader", "get_eval_loader", "get_evaluator", "eval", "get_lr_scheduler", "preprocess"):
        assert name not in vars(AttentionMixin), name
    model = exp.get_model()
    assert isinstance(model.backbone, AttentionPAFPN)
    optimizer = exp.get_optimizer(8)
    held = {id(p) for group in optimizer.param_groups for p in group["params"]}
    assert held == {id(p) for p in model.parameters()}  # CCA's gamma included


def test_yolox_eval_tool_checks_a_voc_exp_in_its_own_layout(tmp_path, voc_shapes, monkeypatch):
    # YOLOX's eval tool (on CUDA) has the exp check its data when the tool merges its opts: a VOC
    # exp's VOCdevkit image sets, not COCO's annotations/instances_val2017.json.
    import types

    import torch
    import yolox.tools.eval as yolox_eval
    from yolox.exp import get_exp

    exp = get_exp(str(VOC_EXP), None)
    exp.merge(VOC_OPTS)
    ckpt = tmp_path / "weights.pth"
    torch.save({"model": exp.get_model().state_dict()}, ckpt)
    module = types.ModuleType("__main__")
    module.__spec__ = types.SimpleNamespace(name="yolox.tools.eval")
    module.make_parser = yolox_eval.make_parser
    monkeypatch.setitem(sys.modules, "__main__", module)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)

    def merge(data_dir):
        opts = [*VOC_OPTS, "data_dir", str(data_dir)]
        monkeypatch.setattr(sys, "argv", ["eval.py", "-f", str(VOC_EXP), "-c", str(ckpt), *opts])
        get_exp(str(VOC_EXP), None).merge(opts)

    merge(voc_shapes)  # the data are there
    with pytest.raises(SystemExit) as caught:
        merge(tmp_path / "nowhere")
    message = caught.value.code
    assert message.startswith("evaluation failed: ") and "instances_val2017.json" not in message, message
    assert str(tmp_path / "nowhere") in message, message

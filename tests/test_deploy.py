"""Exported models where users run them: YOLOX's own ONNX demo, the ONNX demo tool (without torch),
OpenVINO, the eval tool on an exported file, and the numpy pipeline against YOLOX's own."""

import json
import os
import subprocess
import sys
import tarfile
import warnings
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from conftest import EXPS_DIR, ROOT, load_exp

from yolox_attn.data.shapes import CLASS_NAMES, make_shapes
from yolox_attn.deploy import detect
from yolox_attn.deploy.metadata import ModelInfo, read_onnx_info
from yolox_attn.deploy.runtime import openvino_default_precision
from yolox_attn.known_noise import YOLOX_AMP_DEPRECATION
from yolox_attn.tools import demo, export_onnx, onnx_demo

EXP = EXPS_DIR / "example" / "yolox_nano_cam_shapes.py"
SIZE = 128
# Upstream YOLOX's source (demo/ONNXRuntime/onnx_inference.py, assets/dog.jpg) lies in ../shared,
# next to the repository, where the project's checkouts have it.
YOLOX_MAIN = ROOT.parent / "shared" / "third_party" / "yolox-main-6ddff48.tar.gz"
needs_upstream = pytest.mark.skipif(not YOLOX_MAIN.is_file(),
                                    reason=f"upstream YOLOX's snapshot {YOLOX_MAIN} is absent (../shared)")
# The photo's boxes in its pixels, labelled with shapes classes: training on them gives the shapes
# model confident boxes on a real photo, where the two demos' letterboxes differ most from a square.
DOG_BOXES = [(0, 130, 220, 310, 540), (1, 120, 125, 570, 420), (2, 470, 75, 690, 170)]


@pytest.fixture(scope="module")
def upstream(tmp_path_factory):
    if not YOLOX_MAIN.is_file():
        return None
    root = tmp_path_factory.mktemp("upstream")
    with tarfile.open(YOLOX_MAIN) as tar:
        tar.extractall(root, filter="data")
    return root / "YOLOX-main"


def _sample(img: np.ndarray, boxes):
    """A training pair: the letterboxed image and YOLOX's targets (class, cx, cy, w, h) in its pixels."""
    x, ratio = detect.letterbox(img, (SIZE, SIZE))
    targets = torch.zeros(50, 5)
    for i, (cls, x1, y1, x2, y2) in enumerate(boxes):
        targets[i] = torch.tensor([cls, (x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1]) * torch.tensor(
            [1, ratio, ratio, ratio, ratio])
    return torch.from_numpy(x), targets


@pytest.fixture(scope="module")
def trained(tmp_path_factory, upstream):
    """A YOLOX-nano + CA shapes model fitted to a few images (the photo too, where it is here) until its
    boxes are confident, its checkpoint, and its ONNX export (YOLOX's default: static, raw outputs)."""
    work = tmp_path_factory.mktemp("deploy")
    data = work / "shapes"
    make_shapes(data, train=4, val=3, size=SIZE, seed=5)
    samples, images = [], {}
    for split in ("train2017", "val2017"):
        ann = json.loads((data / "annotations" / f"instances_{split}.json").read_text())
        for im in ann["images"]:
            boxes = [(a["category_id"] - 1, a["bbox"][0], a["bbox"][1], a["bbox"][0] + a["bbox"][2],
                      a["bbox"][1] + a["bbox"][3]) for a in ann["annotations"] if a["image_id"] == im["id"]]
            path = data / split / im["file_name"]
            samples.append(_sample(cv2.imread(str(path)), boxes))
            images.setdefault(split, path)
    if upstream is not None:
        images["photo"] = upstream / "assets" / "dog.jpg"
        samples.append(_sample(cv2.imread(str(images["photo"])), DOG_BOXES))
    x, targets = (torch.stack(t) for t in zip(*samples))

    opts = ["data_dir", str(data), "test_size", f"({SIZE},{SIZE})", "output_dir", str(work / "out")]
    exp = load_exp(EXP)
    exp.merge(opts)
    torch.manual_seed(0)
    model = exp.get_model()
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.momentum = 0.3  # running statistics that follow a short fit
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-3)
    model.train()
    with warnings.catch_warnings():  # YOLOX's loss, not ours, calls the deprecated torch.cuda.amp.autocast
        warnings.filterwarnings("ignore", message=YOLOX_AMP_DEPRECATION, category=FutureWarning)
        for _ in range(60):
            loss = model(x, targets)["total_loss"]
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    ckpt = work / "model.pth"
    torch.save({"model": model.eval().state_dict()}, ckpt)
    onnx_path = work / "model.onnx"
    export_onnx.main(["-f", str(EXP), "-c", str(ckpt), "--output-name", str(onnx_path), *opts])
    return {"work": work, "data": data, "opts": opts, "ckpt": ckpt, "onnx": onnx_path, "images": images}


def _project_demo(trained, image: Path, conf: float) -> np.ndarray:
    args = demo.make_parser().parse_intermixed_args(
        ["image", "-f", str(EXP), "-c", str(trained["ckpt"]), "--path", str(image), "--conf", str(conf),
         "--device", "cpu", *trained["opts"]])
    exp = load_exp(EXP)
    exp.merge(args.opts)
    (result,) = demo.main(exp, args)
    return np.zeros((0, 7)) if result.detections is None else result.detections


def _yolox_onnx_demo(upstream: Path, model: Path, image: Path, out: Path) -> dict:
    """Upstream YOLOX's demo/ONNXRuntime/onnx_inference.py, unchanged, in a subprocess on upstream's own
    package; what it passes to ``multiclass_nms`` (its decoded boxes and scores in image pixels) and
    to ``vis`` (the boxes it draws) is recorded on the way through."""
    driver = out / "record.py"
    driver.write_text(
        "import json, runpy, sys\n"
        "import yolox.utils\n"
        "seen, nms, vis = {}, yolox.utils.multiclass_nms, yolox.utils.vis\n"
        "def recorded_nms(boxes, scores, **kwargs):\n"
        "    seen['boxes'], seen['scores'] = boxes.tolist(), scores.tolist()\n"
        "    return nms(boxes, scores, **kwargs)\n"
        "def recorded_vis(img, boxes, scores, cls_ids, conf=0.5, class_names=None):\n"
        "    seen['drawn'] = [list(b) + [s, c] for b, s, c in zip(boxes.tolist(), scores.tolist(), cls_ids.tolist())]\n"
        "    seen['names'] = list(class_names)\n"
        "    return vis(img, boxes, scores, cls_ids, conf, class_names)\n"
        "yolox.utils.multiclass_nms, yolox.utils.vis = recorded_nms, recorded_vis\n"
        "script, record = sys.argv[1], sys.argv[2]\n"
        "sys.argv = [script] + sys.argv[3:]\n"
        "runpy.run_path(script, run_name='__main__')\n"
        "json.dump(dict(seen, yolox=yolox.__file__), open(record, 'w'))\n")
    record = out / f"{image.stem}.json"
    env = dict(os.environ, PYTHONPATH=str(upstream), OMP_NUM_THREADS="1")
    proc = subprocess.run(
        [sys.executable, str(driver), str(upstream / "demo" / "ONNXRuntime" / "onnx_inference.py"), str(record),
         "-m", str(model), "-i", str(image), "-o", str(out / "pictures"), "-s", "0.1",
         "--input_shape", f"{SIZE},{SIZE}"], cwd=out, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(record.read_text())
    assert result["yolox"].startswith(str(upstream))  # upstream's package, not the installed one
    assert (out / "pictures" / image.name).is_file()
    return result


def _pytorch_predictions(trained, image: Path):
    """The checkpoint's decoded predictions on ``image`` through YOLOX's own PyTorch path (``ValTransform``,
    the model with decoding): boxes (x1, y1, x2, y2) in image pixels and scores objectness x class."""
    from yolox.data.data_augment import ValTransform

    from yolox_attn.visualize.predictor import load_model

    exp = load_exp(EXP)
    exp.merge(trained["opts"])
    model = load_model(exp, str(trained["ckpt"]), torch.device("cpu"))
    img = cv2.imread(str(image))
    ratio = min(SIZE / img.shape[0], SIZE / img.shape[1])
    x = torch.from_numpy(ValTransform(legacy=False)(img, None, (SIZE, SIZE))[0])[None]
    with torch.no_grad():
        pred = model(x)[0].numpy()
    boxes = np.concatenate([pred[:, :2] - pred[:, 2:4] / 2, pred[:, :2] + pred[:, 2:4] / 2], axis=1) / ratio
    return boxes, pred[:, 4:5] * pred[:, 5:]


def _iou_plus_one(a, b) -> float:
    """IoU with areas in YOLOX's old inclusive-pixel convention (+1), which its numpy NMS uses."""
    w = min(a[2], b[2]) - max(a[0], b[0]) + 1
    h = min(a[3], b[3]) - max(a[1], b[1]) + 1
    inter = max(w, 0) * max(h, 0)
    area_a, area_b = ((r[2] - r[0] + 1) * (r[3] - r[1] + 1) for r in (a, b))
    return inter / (area_a + area_b - inter)


@needs_upstream
@pytest.mark.parametrize("which", ["photo", "val2017"])
def test_yolox_onnx_demo_finds_the_project_demos_boxes(trained, upstream, which, tmp_path):
    image = trained["images"][which]
    got = _yolox_onnx_demo(upstream, trained["onnx"], image, tmp_path)
    # Its decoding of the export's raw outputs is the PyTorch model's, every anchor: same input layout,
    # output layout, anchor order and letterbox.
    boxes, scores = _pytorch_predictions(trained, image)
    np.testing.assert_allclose(np.array(got["boxes"]), boxes, atol=0.02)
    np.testing.assert_allclose(np.array(got["scores"]), scores, atol=1e-4)
    assert got["names"][:2] == ["person", "bicycle"]  # upstream labels every box with COCO's names

    # The project's demos at upstream's NMS threshold: every box upstream draws, at its score and
    # class; any box only ours keep overlaps a better one by more than the NMS threshold in the
    # inclusive-pixel IoU of upstream's numpy NMS (torchvision's, which the demo uses, has no +1).
    ours = _project_demo(trained, image, conf=0.1)
    assert len(got["drawn"]) > 0 and len(ours) > 0, "vacuous: the model finds nothing"
    drawn = np.array(sorted(got["drawn"], key=lambda d: -d[4]))
    matched = [int(np.argmin(np.abs(ours[:, :4] - d[:4]).max(1))) for d in drawn]
    np.testing.assert_allclose(ours[matched, :4], drawn[:, :4], atol=0.02)
    np.testing.assert_allclose(ours[matched, 4] * ours[matched, 5], drawn[:, 4], atol=1e-4)
    np.testing.assert_array_equal(ours[matched, 6], drawn[:, 5])
    for i in set(range(len(ours))) - set(matched):
        better = [d for d in drawn if d[4] > ours[i, 4] * ours[i, 5]]
        assert any(_iou_plus_one(d, ours[i]) > 0.45 for d in better), ours[i]
    # The project's ONNX demo on the same file: the PyTorch demo's boxes, with the names the file carries.
    (result,) = onnx_demo.main(["-m", str(trained["onnx"]), "--path", str(image), "--conf", "0.1",
                                "--output-dir", str(tmp_path / "ours")])
    np.testing.assert_allclose(result.detections, ours, atol=0.02)
    assert read_onnx_info(str(trained["onnx"])).class_names == CLASS_NAMES


def test_onnx_demo_runs_without_torch_and_names_the_classes(trained, tmp_path):
    blocker = tmp_path / "no_torch.py"
    blocker.write_text(
        "import runpy, sys\n"
        "class NoTorch:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 'torch' or name.startswith('torch.'):\n"
        "            raise ModuleNotFoundError(f'No module named {name!r} (blocked by the test)')\n"
        "sys.meta_path.insert(0, NoTorch())\n"
        "sys.argv = ['onnx_demo'] + sys.argv[1:]\n"
        "runpy.run_module('yolox_attn.tools.onnx_demo', run_name='__main__')\n")
    image = trained["images"]["val2017"]
    proc = subprocess.run([sys.executable, str(blocker), "-m", str(trained["onnx"]), "--path", str(image),
                           "--output-dir", str(tmp_path / "pictures")], cwd=ROOT, capture_output=True, text=True,
                          timeout=300, env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"names from {trained['data'] / 'annotations' / 'instances_val2017.json'}" in proc.stderr
    found = proc.stderr.split(f"{image}: ", 1)[1].splitlines()[0]
    assert any(name in found for name in CLASS_NAMES), found  # its detections, by the file's names
    assert cv2.imread(str(tmp_path / "pictures" / image.name)).shape == cv2.imread(str(image)).shape


def _eval_tool(trained, *flags: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "yolox_attn.tools.eval", "-f", str(EXP), "-b", "2", "-d", "1",
                           "--conf", "0.001", *flags, *trained["opts"]], cwd=trained["work"], capture_output=True,
                          text=True, timeout=300, env=dict(os.environ, OMP_NUM_THREADS="1"))


def _ap50(proc: subprocess.CompletedProcess) -> float:
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout + proc.stderr
    line = next(s for s in out.splitlines() if "IoU=0.50 " in s and "area=   all" in s)
    return float(line.rsplit("=", 1)[1])


def test_eval_tool_scores_the_onnx_file_as_the_checkpoint(trained):
    checkpoint = _ap50(_eval_tool(trained, "-c", str(trained["ckpt"])))
    assert checkpoint > 0.3  # not vacuous: the fitted model finds its val images' shapes
    assert _ap50(_eval_tool(trained, "--onnx", str(trained["onnx"]))) == pytest.approx(checkpoint, abs=1e-3)
    openvino = _eval_tool(trained, "--onnx", str(trained["onnx"]), "--runtime", "openvino-f32")
    assert "OpenVINO" in openvino.stderr + openvino.stdout and _ap50(openvino) == pytest.approx(checkpoint, abs=1e-3)


def test_eval_tool_refuses_checkpoint_flags_with_an_onnx_file(trained):
    proc = _eval_tool(trained, "--onnx", str(trained["onnx"]), "--fuse", "-c", str(trained["ckpt"]))
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines()[-1] == "--onnx evaluates the file as exported, in one process: drop --fuse, -c"


def test_openvino_check_reports_f32_and_default_precision(trained, tmp_path):
    result = export_onnx.main(["-f", str(EXP), "-c", str(trained["ckpt"]), "--output-name", str(tmp_path / "m.onnx"),
                               "--check-openvino", *trained["opts"]])
    f32, default = (result.openvino[k][(1, 3, SIZE, SIZE)] for k in ("openvino-f32", "openvino"))
    assert f32.ok and f32.max_abs <= 1e-3
    if openvino_default_precision() == "bf16":  # bfloat16 keeps 8 bits of mantissa: far coarser than float32
        assert default.max_abs > 10 * f32.max_abs, (default, f32)
    else:
        assert default.max_abs <= 1e-3


# ------------------------------------------------------------------ the numpy pipeline vs YOLOX's
def test_letterbox_is_yoloxs_preproc():
    from yolox.data.data_augment import preproc

    img = np.random.default_rng(0).integers(0, 255, (97, 130, 3), dtype=np.uint8)
    for size in [(64, 96), (128, 128), (160, 64)]:
        x, ratio = detect.letterbox(img, size)
        ref, ref_ratio = preproc(img, size)
        assert ratio == ref_ratio and x.dtype == np.float32
        np.testing.assert_array_equal(x, ref)


def test_decode_and_detect_are_yoloxs():
    from yolox.utils import postprocess

    exp = load_exp(EXP)
    model = exp.get_model().eval()
    x = torch.rand(2, 3, 96, 128) * 255
    with torch.no_grad():
        model.head.decode_in_inference = False
        raw = model(x)
        model.head.decode_in_inference = True
        decoded = model(x)
    ours = detect.decode_raw(raw.numpy(), (96, 128), model.head.strides)
    np.testing.assert_allclose(ours, decoded.numpy(), rtol=1e-6, atol=1e-4)
    # scores spread over (0, 1): YOLOX's postprocess at a threshold that keeps many overlapping boxes
    pred = decoded.clone()
    g = torch.Generator().manual_seed(0)
    pred[..., 4:] = torch.rand(pred[..., 4:].shape, generator=g)
    reference = postprocess(pred.clone(), exp.num_classes, 0.3, 0.45, class_agnostic=True)
    for i in range(2):
        got = detect.detect(pred[i].numpy(), 0.3, 0.45)
        assert len(got) > 5
        np.testing.assert_allclose(got, reference[i].numpy(), rtol=1e-6, atol=1e-4)


def test_overflowing_raw_boxes_decode_to_inf_and_still_draw():
    raw = np.zeros((1, 4 * 4 + 2 * 2 + 1, 6), dtype=np.float32)
    raw[0, :, 4:] = 0.9
    raw[0, 3, 2:4] = 500.0  # exp(500) overflows float32, as in an undertrained model's output
    pred = detect.decode_raw(raw, (32, 32), (8, 16, 32))
    assert np.isinf(pred[0, 3, 2:4]).all() and np.isfinite(np.delete(pred[0], 3, axis=0)).all()
    dets = detect.detect(pred[0], 0.5, 0.45)
    assert any(np.isinf(d[:4]).any() for d in dets)  # kept, as PyTorch's postprocess keeps it
    img = np.zeros((40, 50, 3), dtype=np.uint8)
    picture = detect.draw(img, detect.to_image(dets, 32 / 50), ["thing"])
    assert picture.shape == img.shape and picture.any()


def test_model_info_round_trips_and_names_a_missing_key():
    info = ModelInfo(("a", "b"), (96, 128), False, (8, 16, 32), "exp.class_names", "cca", "x", True)
    assert ModelInfo.from_props(info.to_props(), "f.onnx") == info
    assert ModelInfo.from_json(info.to_json(), "f.pt2") == info
    props = info.to_props()
    del props["input_size"]
    with pytest.raises(ValueError, match="f.onnx: no 'input_size' in its metadata"):
        ModelInfo.from_props(props, "f.onnx")


def test_missing_openvino_is_one_line_before_any_export(monkeypatch, tmp_path):
    from loguru import logger

    monkeypatch.setitem(sys.modules, "openvino", None)  # as where it was never installed
    lines = []
    handler = logger.add(lambda m: lines.append(str(m)), level="ERROR")
    try:
        code = export_onnx.run(["-f", str(EXPS_DIR / "yolox_nano_cam.py"), "--output-name", str(tmp_path / "m.onnx"),
                                "--check-openvino", "test_size", "(64,64)"])
    finally:
        logger.remove(handler)
    assert code == 1 and os.listdir(tmp_path) == []
    assert lines[0].rstrip().endswith("OpenVINO is not installed: pip install openvino (or pip install "
                                      "'yolox-attn[deploy]')")


def test_onnx_demo_takes_yoloxs_flags():
    ours = onnx_demo.make_parser().parse_args(["-m", "m.onnx", "--path", "a.jpg", "--output-dir", "o", "--conf", "0.2",
                                               "--input-size", "320,416"])
    yolox = onnx_demo.make_parser().parse_args(["-m", "m.onnx", "-i", "a.jpg", "-o", "o", "-s", "0.2",
                                                "--input_shape", "320,416"])
    assert vars(ours) == vars(yolox) and ours.input_size == [320, 416] and ours.conf == 0.2


def test_a_file_without_metadata_runs_on_yoloxs_defaults_and_says_so(trained, tmp_path):
    import onnx
    from loguru import logger

    from yolox_attn.deploy.predictor import OnnxPredictor

    model = onnx.load(str(trained["onnx"]))
    del model.metadata_props[:]  # as YOLOX's own export tool writes it
    bare = tmp_path / "bare.onnx"
    onnx.save(model, str(bare))
    lines = []
    handler = logger.add(lambda m: lines.append(str(m)), level="WARNING")
    try:
        predictor = OnnxPredictor(str(bare), conf=0.1)
    finally:
        logger.remove(handler)
    assert predictor.class_names == ("class0", "class1", "class2", "class3")
    assert (predictor.info.input_size, predictor.info.decoded) == ((SIZE, SIZE), False)
    assert len(lines) == 1 and "carries no class names" in lines[0] and "strides (8, 16, 32)" in lines[0]
    img = cv2.imread(str(trained["images"]["val2017"]))
    np.testing.assert_array_equal(predictor.predict(img), OnnxPredictor(str(trained["onnx"]), conf=0.1).predict(img))

"""The image demo (detections and attention maps) and the attention-map functions."""

import json
from types import SimpleNamespace

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import EXPS_DIR, load_exp

from yolox_attn.attention import ACmix, CoordAtt, CrissCrossAttention, ResidualGate
from yolox_attn.class_names import is_guessed
from yolox_attn.preflight import UsageError
from yolox_attn.visualize import figure, image_demo, predictor
from yolox_attn.visualize.attention_maps import (
    AttentionMap,
    AttentionRecorder,
    acmix_map,
    change_map,
    coord_attention_map,
    criss_cross_map,
    describe_attention,
    normalize_map,
)
from yolox_attn.tools import demo
from yolox_attn.data.shapes import CLASS_NAMES, render_image

SHAPES_EXP = EXPS_DIR / "example" / "yolox_nano_cam_shapes.py"
LEVELS = ["dark3", "dark4", "dark5"]
IMAGE_SIZES = [(97, 130), (131, 75)]  # (height, width): odd and non-square


# ----------------------------------------------------------------------------- map functions
def test_coord_attention_map_is_mean_of_gate_product():
    torch.manual_seed(0)
    m = CoordAtt(32, 32, reduction=4).eval()
    x = torch.randn(2, 32, 7, 9)
    # Straightforward recomputation with pooling layers instead of means.
    x_h = F.adaptive_avg_pool2d(x, (None, 1))
    x_w = F.adaptive_avg_pool2d(x, (1, None)).permute(0, 1, 3, 2)
    y = m.act(m.bn1(m.conv1(torch.cat([x_h, x_w], dim=2))))
    a_h = torch.sigmoid(m.conv_h(y[:, :, :7]))
    a_w = torch.sigmoid(m.conv_w(y[:, :, 7:].permute(0, 1, 3, 2)))
    got = coord_attention_map(m, x)
    assert got.shape == (2, 7, 9)
    torch.testing.assert_close(got, (a_h * a_w).mean(1))
    # On an all-ones map the module's output is the gate product itself.
    ones = torch.ones(1, 32, 5, 6)
    with torch.no_grad():
        torch.testing.assert_close(coord_attention_map(m, ones), m(ones).mean(1))


@pytest.mark.parametrize("pass_index", [0, -1])
def test_criss_cross_map_is_one_softmax_over_row_and_column(pass_index):
    torch.manual_seed(1)
    m = CrissCrossAttention(16, recurrence=2)
    with torch.no_grad():
        m.gamma.fill_(0.7)  # nonzero, so the second pass sees a different input
    x = torch.randn(1, 16, 5, 6)
    row, col = 2, 3
    got = criss_cross_map(m, x, (row, col), pass_index)[0]
    with torch.no_grad():
        feats = x if pass_index == 0 else m.forward_once(x)
        q, k = m.query_conv(feats)[0], m.key_conv(feats)[0]
    cross = [(g, col) for g in range(5) if g != row] + [(row, v) for v in range(6)]  # centre once
    weights = torch.softmax(torch.stack([q[:, row, col] @ k[:, g, v] for g, v in cross]), 0)
    expected = torch.zeros(5, 6)
    for (g, v), wt in zip(cross, weights):
        expected[g, v] = wt
    torch.testing.assert_close(got, expected)
    assert got.sum().item() == pytest.approx(1.0, abs=1e-5)
    off_cross = torch.ones(5, 6, dtype=torch.bool)
    off_cross[row, :] = False
    off_cross[:, col] = False
    assert (got[off_cross] == 0).all()


def test_gated_and_generic_maps():
    torch.manual_seed(2)
    x = torch.randn(1, 16, 6, 5)
    gated = ResidualGate(ACmix(16, 16, kernel_att=3, head=2))
    at_init = describe_attention(gated, x, gated(x))
    assert "gate=0" in at_init.note  # the gated change is 0: the inner map is shown instead
    with torch.no_grad():
        gated.gate.fill_(0.5)
        torch.testing.assert_close(acmix_map(gated.attn, x), change_map(x, gated.attn(x)))
        # The gated change is |gate| times the inner one: the same picture once normalised.
        torch.testing.assert_close(normalize_map(change_map(x, gated(x))), normalize_map(acmix_map(gated.attn, x)))
    flat = normalize_map(torch.full((1, 4, 4), 3.0))
    assert (flat == 0).all()


def test_recorder_leaves_outputs_unchanged():
    m = ResidualGate(CoordAtt(16, 16))
    x = torch.randn(1, 16, 4, 4)
    with torch.no_grad():
        before = m(x)
        with AttentionRecorder({"dark3": m}) as rec:
            after = m(x)
        maps = rec.maps(lambda name, grid: (0, 0))
    torch.testing.assert_close(before, after)
    assert maps["dark3"].values.shape == (1, 4, 4) and maps["dark3"].kind.startswith("ca")


# ------------------------------------------------------------------------------- demo pieces
def test_class_names_precedence(tmp_path):
    from loguru import logger

    warned = []
    handler = logger.add(lambda m: warned.append(str(m)), level="WARNING")
    try:
        exp = load_exp(SHAPES_EXP)
        (tmp_path / "annotations").mkdir()
        cats = [{"id": 7, "name": "b"}, {"id": 2, "name": "a"}, {"id": 9, "name": "d"}, {"id": 8, "name": "c"}]
        (tmp_path / "annotations" / exp.val_ann).write_text(json.dumps({"categories": cats}))
        exp.data_dir = str(tmp_path)
        ann = str(tmp_path / "annotations" / exp.val_ann)
        assert predictor.class_names_for(exp) == (["a", "b", "c", "d"], ann)  # by id, as COCODataset labels
        exp.class_names = ("w", "x", "y", "z")  # the exp's own names come first
        assert predictor.class_names_for(exp) == (["w", "x", "y", "z"], "exp.class_names")
        exp.class_names = "w, x,y,z"  # as `class_names w,x,y,z` on a command line gives it
        assert predictor.class_names_for(exp)[0] == ["w", "x", "y", "z"]
        exp.class_names = ["w", "x"]
        with pytest.raises(UsageError, match=r"exp.class_names has 2 names \['w', 'x'\] but num_classes is 4"):
            predictor.class_names_for(exp)
        exp.class_names = None
        assert warned == []
        exp.num_classes = 3  # the json no longer fits: said, and not used
        assert predictor.class_names_for(exp) == (["class0", "class1", "class2"], "none known (class0..class2)")
        assert "has 4 categories but the exp has num_classes=3" in warned[-1]
        exp.data_dir = str(tmp_path / "missing")
        exp.num_classes = 4
        names, source = predictor.class_names_for(exp)
        assert names == list(CLASS_NAMES) and is_guessed(source)
        assert "guessed from num_classes=4" in warned[-1]
        exp.num_classes = 80
        names, source = predictor.class_names_for(exp)
        assert names[0] == "person" and is_guessed(source)
        assert "COCO's names, guessed from num_classes=80" in warned[-1]
    finally:
        logger.remove(handler)


def test_query_point_and_grid_pixel():
    info = {"width": 130, "height": 97, "ratio": 128 / 130}
    assert image_demo.query_point(None, info, None) == ((64.5, 48.0), "image centre")
    assert image_demo.query_point(None, info, (500.0, -3.0))[0] == (129.0, 0.0)  # clamped into the image
    det = torch.tensor([[0, 0, 10, 10, 0.9, 0.5, 1], [20, 30, 40, 50, 0.9, 0.9, 2.0]])
    point, origin = image_demo.query_point(det, info, None)
    assert origin == "top detection" and point == pytest.approx((30 / info["ratio"], 40 / info["ratio"]))
    # A barely trained model's boxes can be inf on both sides (NaN centre) or NaN: clipped first.
    inf = float("inf")
    det = torch.tensor([[-inf, 20.0, inf, 40.0, 0.9, 0.9, 0], [0, 0, 10, 10, 0.1, 0.1, 1]])
    point, origin = image_demo.query_point(det, info, None)
    assert origin == "top detection" and point == (64.5, pytest.approx(30 / info["ratio"]))
    det[0, :4] = float("nan")
    assert image_demo.query_point(det, info, None)[0] == (0.0, 0.0)
    # Letterbox: the image fills the top 95 rows of 128; grid 4x4 (stride 32).
    assert image_demo.grid_pixel((129.0, 96.0), info, (128, 128), (4, 4)) == (2, 3)


def test_visual_draws_huge_boxes_and_classes_past_80():
    exp = SimpleNamespace(num_classes=90, test_conf=0.3, nmsthre=0.45, test_size=(64, 64))
    pred = predictor.Predictor(torch.nn.Identity(), exp, [f"c{i}" for i in range(90)], torch.device("cpu"))
    img = np.full((33, 47, 3), 100, np.uint8)
    info = {"raw_img": img, "ratio": 64 / 47, "height": 33, "width": 47}
    out = torch.tensor([[-1e12, 2.0, 1e12, 20.0, 0.9, 0.9, 85.0], [1.0, 1.0, 9.0, 9.0, 0.8, 0.9, 3.0]])
    drawn = pred.visual(out, info, 0.3)
    assert drawn.shape == img.shape and (drawn != 100).any()
    assert (img == 100).all()  # the input image is left untouched


@pytest.mark.parametrize("bad", [["video"], ["webcam"], ["image", "--tsize", "100"]])
def test_refused_arguments(tmp_path, bad):
    with pytest.raises(SystemExit):
        demo.run([*bad, "-f", str(SHAPES_EXP), "--path", str(tmp_path)])


# ---------------------------------------------------------------------------- demo end to end
def _write_images(folder):
    paths = []
    for i, (h, w) in enumerate(IMAGE_SIZES):
        img, _ = render_image(np.random.default_rng(i), max(h, w))
        path = folder / f"img{i}.jpg"
        cv2.imwrite(str(path), img[:h, :w])
        paths.append(path)
    return paths


def _gated_checkpoint(attention, path):
    """A random-init nano shapes model, BN-calibrated, every gate and gamma at 1, saved like YOLOX does."""
    exp = load_exp(SHAPES_EXP)
    exp.attention = attention
    torch.manual_seed(0)
    model = exp.get_model()
    # Random weights with fresh BN statistics shrink the features ~1e3x per stage, which leaves
    # CA's gates constant to float precision; batch statistics of a few images fix the scale.
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.momentum = None  # cumulative average over the calibration batches
    model.backbone.train()
    with torch.no_grad():
        model.backbone(torch.rand(2, 3, 128, 128) * 255)
        for name, p in model.named_parameters():
            if name.endswith(".gate") or name.endswith(".gamma"):
                p.fill_(1.0)
    torch.save({"model": model.state_dict()}, path)


@pytest.mark.parametrize("attention, extra", [
    ("ca", ["--conf", "1e-6"]),  # many detections: boxes drawn, top one is the query pixel
    ("cca", []),  # none at conf 0.3 on random weights: the image centre is the query pixel
    ("acmix", ["--conf", "1e-6", "--legacy", "--fuse"]),  # default output folder below
])
def test_demo_saves_detections_and_attention_maps(tmp_path, attention, extra):
    images = tmp_path / "images"
    images.mkdir()
    paths = _write_images(images)
    ckpt = tmp_path / "ckpt.pth"
    _gated_checkpoint(attention, ckpt)
    out = tmp_path / "out"
    where = ["output_dir", str(tmp_path / "outputs")] if attention == "acmix" else ["--output-dir", str(out)]
    # opts between flags on purpose: the parser takes them anywhere
    argv = ["image", "-f", str(SHAPES_EXP), "attention", attention, "-c", str(ckpt), "--path", str(images),
            "--tsize", "128", "--device", "cpu", "--save_result", "--attention-maps", *extra, *where]
    results = demo.run(argv)

    assert [r.image_path for r in results] == [str(p) for p in paths]
    for r, (h, w) in zip(results, IMAGE_SIZES):
        if attention == "acmix":
            # "attention acmix" names the experiment after it, as the acmix exp file would
            assert r.detection_file.startswith(str(tmp_path / "outputs" / "yolox_nano_acmix_shapes" / "vis_res"))
        else:
            assert r.detection_file.startswith(str(out))
        assert cv2.imread(r.detection_file).shape == (h, w, 3)
        figure = cv2.imread(r.attention_file)
        assert figure.shape == (h, (1 + len(LEVELS)) * w, 3)
        assert list(r.maps) == LEVELS
        for level, m in r.maps.items():
            assert m.shape == (h, w) and np.isfinite(m).all(), level
            assert m.min() >= 0.0 and m.max() <= 1.0, level
            assert m.max() - m.min() > 0.1, f"{attention} {level} map is constant"
        if attention == "cca":
            assert r.detections is None and r.query_point == ((w - 1) / 2, (h - 1) / 2)
        else:
            assert r.detections is not None and len(r.detections) > 0


def _demo_argv(tmp_path, ckpt, images):
    return ["image", "-f", str(SHAPES_EXP), "-c", str(ckpt), "--path", str(images), "--tsize", "128",
            "--device", "cpu", "--output-dir", str(tmp_path / "out")]


def test_demo_loads_a_ddp_prefixed_checkpoint(tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    _write_images(images)
    plain = tmp_path / "plain.pth"
    _gated_checkpoint("ca", plain)
    state = torch.load(plain)["model"]
    ddp = tmp_path / "ddp.pth"
    torch.save({"model": {f"module.{k}": v for k, v in state.items()}}, ddp)
    got = demo.run([*_demo_argv(tmp_path, ddp, images), "--conf", "1e-6"])
    want = demo.run([*_demo_argv(tmp_path, plain, images), "--conf", "1e-6"])
    assert len(got) == len(want) == len(IMAGE_SIZES)
    for a, b in zip(got, want):
        np.testing.assert_array_equal(a.detections, b.detections)


def test_demo_fails_when_a_picture_cannot_be_written(tmp_path, monkeypatch):
    images = tmp_path / "images"
    images.mkdir()
    _write_images(images)
    ckpt = tmp_path / "ckpt.pth"
    _gated_checkpoint("ca", ckpt)
    monkeypatch.setattr(cv2, "imwrite", lambda path, img: False)  # what OpenCV does on failure
    with pytest.raises(SystemExit, match="could not write .*img0.jpg"):
        demo.run(_demo_argv(tmp_path, ckpt, images))


def test_attention_panels_have_a_labelled_colour_scale():
    h, w = 240, 320
    img = np.full((h, w, 3), 128, np.uint8)
    heat = np.tile(np.linspace(0, 1, w, dtype=np.float32), (h, 1))
    described = {"dark3": AttentionMap(torch.zeros(1, 4, 4), "ca a_h*a_w")}
    point = (0.0, 0.0)
    plain = figure.attention_figure(img.copy(), img, {"dark3": heat}, described, point, 0)
    scaled = figure.attention_figure(img.copy(), img, {"dark3": heat}, described, point, 0, {"dark3": (0.25, 0.75)})
    bar = scaled[:, 2 * w - 6]  # a column inside the bar at the heat panel's right edge
    top, bottom = bar[h // 4 + 1].astype(int), bar[h - 13].astype(int)
    assert top[2] > 100 and top[0] < 60  # red (BGR) at the top: the map's maximum
    assert bottom[0] > 100 and bottom[2] < 60  # blue at the bottom: its minimum
    changed = np.argwhere((scaled != plain).any(axis=2))
    assert changed[:, 1].min() >= w  # only the heat panel carries the scale...
    assert changed[:, 1].min() < 2 * w - 20  # ...with its labels left of the bar


@pytest.mark.parametrize("low, high, labels", [
    (0.25, 0.75, ("0.25", "0.75")),
    (0.2520, 0.2523, ("0.252", "0.2523")),  # 3 digits print both as 0.252
    (0.99951, 1.0006, ("0.9995", "1.001")),  # just over the flat threshold: 4 digits
    (-1.5e-6, 2.25e-6, ("-1.5e-06", "2.25e-06")),
])
def test_colour_scale_labels_tell_the_ends_apart(low, high, labels):
    assert figure.scale_labels(low, high) == labels


def test_flat_maps_are_not_stretched_and_say_their_value():
    ramp = torch.linspace(0.0, 1.0, 20).reshape(1, 4, 5)
    flat = 0.2520 + 2.0e-4 * ramp  # max - min = 7.9e-4 of the max: flat
    varied = 0.2520 + 3.0e-4 * ramp  # 1.19e-3 of the max: stretched
    tiny = 1e-9 + 1e-9 * ramp  # far from constant, only small: stretched (the threshold is relative)
    maps = normalize_map(torch.cat([flat, varied, tiny, torch.zeros(1, 4, 5)]))
    assert (maps[0] == 0).all() and (maps[3] == 0).all()
    for m in maps[1:3]:
        torch.testing.assert_close(m, ramp[0], atol=1e-3, rtol=0)  # float32 rounding of 0.252 + 3e-4
    assert figure.flat_note(maps[0].numpy(), (0.2520, 0.2522)) == "flat: 0.2521 (max - min = 0.0002)"
    assert figure.flat_note(maps[3].numpy(), (0.0, 0.0)) == "flat: 0.000 (max - min = 0)"
    assert figure.flat_note(maps[3].numpy()) == "flat: no spatial variation"
    assert figure.flat_note(maps[1].numpy(), (0.2520, 0.2523)) == ""


def test_a_flat_panel_has_no_colour_scale():
    h, w = 240, 320
    img = np.full((h, w, 3), 128, np.uint8)
    described = {"dark3": AttentionMap(torch.zeros(1, 4, 4), "ca a_h*a_w")}
    flat = np.zeros((h, w), np.float32)
    with_range = figure.attention_figure(img.copy(), img, {"dark3": flat}, described, (0.0, 0.0), 0,
                                         {"dark3": (0.2520, 0.2522)})
    without_range = figure.attention_figure(img.copy(), img, {"dark3": flat}, described, (0.0, 0.0), 0)
    # Below the title strip the panel is the plain heat map: one colour, no bar, no labels.
    body = with_range[h // 4:, w:]
    assert (body == body[0, 0]).all()
    np.testing.assert_array_equal(body, without_range[h // 4:, w:])


def test_own_flags_take_both_spellings():
    parser = demo.make_parser()
    hyphen = parser.parse_intermixed_args(["image", "--output-dir", "o", "--attention-maps", "--attn-pixel", "3,4"])
    underscore = parser.parse_intermixed_args(["image", "--output_dir", "o", "--attention_maps", "--attn_pixel", "3,4"])
    assert vars(hyphen) == vars(underscore)
    assert (hyphen.output_dir, hyphen.attention_maps, hyphen.attn_pixel) == ("o", True, "3,4")


def test_old_import_paths_give_the_library_names():
    # The demo tool held these, and yolox_attn.attention_maps the maps, before the move to yolox_attn.visualize.
    for name, module in [("Predictor", predictor), ("class_names_for", predictor), ("query_point", image_demo),
                         ("grid_pixel", image_demo), ("attention_modules", image_demo)]:
        assert getattr(demo, name) is getattr(module, name), name
    import yolox_attn.attention_maps as old_maps
    import yolox_attn.visualize.attention_maps as maps

    assert old_maps.__all__ == maps.__all__
    for name in maps.__all__:
        assert getattr(old_maps, name) is getattr(maps, name), name

"""The synthetic shapes dataset: its generator (yolox_attn.data.shapes) and its command line
(yolox_attn.tools.make_shapes)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from pycocotools.coco import COCO

from yolox_attn.data import shapes as ms
from yolox_attn.tools import make_shapes as cli

ROOT = Path(__file__).resolve().parents[1]
SMALL: dict[str, int] = {"train": 6, "val": 3, "size": 96, "seed": 7}


def _load(root: Path, split: str) -> dict[str, Any]:
    return json.loads((root / "annotations" / f"instances_{split}.json").read_text())


def _names(folder: Path) -> list[str]:
    """Everything in a folder, hidden temp folders included."""
    return sorted(p.name for p in folder.iterdir())


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    out = tmp_path_factory.mktemp("shapes") / "ds"
    return out, ms.make_shapes(out, **SMALL)


def test_layout_and_summary(small: tuple[Path, dict[str, Any]]) -> None:
    out, summary = small
    assert _names(out) == ["annotations", "train2017", "val2017"]
    assert _names(out / "annotations") == ["instances_train2017.json", "instances_val2017.json"]
    assert _names(out.parent) == ["ds"]  # no temp folder left beside it
    assert summary["out_dir"] == str(out.absolute())
    assert summary["classes"] == list(ms.CLASS_NAMES)
    for split, n in (("train2017", 6), ("val2017", 3)):
        data = _load(out, split)
        s = summary["splits"][split]
        assert s["images"] == n == len(data["images"])
        assert s["objects"] == len(data["annotations"])
        assert sum(s["per_class"].values()) == s["objects"]
    text = ms.format_summary(summary)
    assert "train2017: 6 images" in text and "val2017: 3 images" in text


@pytest.mark.parametrize("split", ["train2017", "val2017"])
def test_annotations_are_valid_coco(small: tuple[Path, dict[str, Any]], split: str) -> None:
    out, _ = small
    coco = COCO(str(out / "annotations" / f"instances_{split}.json"))
    cats = coco.loadCats(coco.getCatIds())
    assert len(cats) >= 3
    assert [c["name"] for c in cats] == list(ms.CLASS_NAMES)
    assert [c["id"] for c in cats] == list(range(1, len(ms.CLASS_NAMES) + 1))
    img_ids = coco.getImgIds()
    ann_ids = coco.getAnnIds()
    assert len(set(ann_ids)) == len(ann_ids)
    assert len(ann_ids) / len(img_ids) >= 2.0  # several objects per image
    for img in coco.loadImgs(img_ids):
        path = out / split / img["file_name"]
        pixels = cv2.imread(str(path))
        assert pixels is not None, path
        assert pixels.shape == (img["height"], img["width"], 3) == (96, 96, 3)
        anns = coco.loadAnns(coco.getAnnIds(imgIds=[img["id"]]))
        assert ms.MIN_OBJECTS - 1 <= len(anns) <= ms.MAX_OBJECTS  # at most one failed placement tolerated
        for a in anns:
            x, y, w, h = a["bbox"]
            assert w > 0 and h > 0
            assert x >= 0 and y >= 0
            assert x + w <= img["width"] + 1e-6 and y + h <= img["height"] + 1e-6
            assert a["iscrowd"] == 0
            assert a["category_id"] in coco.getCatIds()
            # area is the visible pixel count: positive and not above the box (plus AA fringe).
            assert 0 < a["area"] <= (w + 1) * (h + 1)


def test_drawn_extent_matches_box() -> None:
    """Pixels at >= 50% coverage span the JSON box to within 1 px on every side."""
    rng = np.random.default_rng(0)
    size = 96
    seen = set()
    for _ in range(200):
        shape = ms.sample_shape(rng, size)
        seen.add(shape.cls)
        x0, y0, x1, y1 = ms.patch_bounds(shape, size)
        alpha = ms.rasterize(shape, x0, y0, x1, y1)
        assert alpha.shape == (y1 - y0, x1 - x0) and alpha.dtype == np.uint8
        ys, xs = np.nonzero(alpha >= 128)
        drawn = np.array([xs.min() + x0, ys.min() + y0, xs.max() + 1 + x0, ys.max() + 1 + y0], float)
        box = np.array(shape.bbox_xyxy())
        assert np.abs(drawn - box).max() <= 1.0, (ms.CLASS_NAMES[shape.cls], drawn, box)
        longest = max(box[2] - box[0], box[3] - box[1])
        assert ms.MIN_OBJECT_PX - 1e-6 <= longest <= size / 2 + 1e-6
        assert 0 <= box[0] and 0 <= box[1] and box[2] <= size and box[3] <= size
    assert seen == set(range(len(ms.CLASS_NAMES)))


def test_deterministic_and_seed_sensitive(small: tuple[Path, dict[str, Any]], tmp_path: Path) -> None:
    out, _ = small
    again = tmp_path / "again"
    other = tmp_path / "other"
    ms.make_shapes(again, **SMALL)
    ms.make_shapes(other, **{**SMALL, "seed": SMALL["seed"] + 1})
    for split in ms.SPLITS:
        name = f"annotations/instances_{split}.json"
        assert (out / name).read_bytes() == (again / name).read_bytes()
        assert (out / name).read_bytes() != (other / name).read_bytes()
        for f in _names(out / split):
            assert (out / split / f).read_bytes() == (again / split / f).read_bytes()
        first = _names(out / split)[0]
        a = cv2.imread(str(out / split / first))
        b = cv2.imread(str(other / split / first))
        assert a.shape == b.shape and not np.array_equal(a, b)


def test_image_does_not_depend_on_count(small: tuple[Path, dict[str, Any]], tmp_path: Path) -> None:
    """--train 2 --val 1 gives exactly the first images and labels of the larger run."""
    out, _ = small
    part = tmp_path / "part"
    ms.make_shapes(part, **{**SMALL, "train": 2, "val": 1})
    for split, n in (("train2017", 2), ("val2017", 1)):
        big, sub = _load(out, split), _load(part, split)
        assert sub["images"] == big["images"][:n]
        assert sub["annotations"] == [a for a in big["annotations"] if a["image_id"] <= n]
        for img in sub["images"]:
            f = img["file_name"]
            assert (part / split / f).read_bytes() == (out / split / f).read_bytes()


@pytest.mark.parametrize("split", ["train2017", "val2017"])
def test_yolox_coco_dataset_reads_it(small: tuple[Path, dict[str, Any]], split: str) -> None:
    from yolox.data import COCODataset

    out, _ = small
    ds = COCODataset(data_dir=str(out), json_file=f"instances_{split}.json", name=split,
                     img_size=(96, 96), preproc=None)
    assert len(ds) == {"train2017": 6, "val2017": 3}[split]
    assert ds._classes == ms.CLASS_NAMES
    img, target, info, img_id = ds.pull_item(0)
    assert img.shape == (96, 96, 3) and img.dtype == np.uint8
    assert info == (96, 96)
    anns = ds.coco.loadAnns(ds.coco.getAnnIds(imgIds=[int(img_id[0])]))
    assert target.shape == (len(anns), 5)
    # img_size equals the image size, so YOLOX's resize ratio is 1 and boxes come back as xyxy.
    expected = np.array([[a["bbox"][0], a["bbox"][1], a["bbox"][0] + a["bbox"][2], a["bbox"][1] + a["bbox"][3],
                          a["category_id"] - 1] for a in anns])
    np.testing.assert_allclose(target, expected, atol=1e-6)
    img2, target2, _, _ = ds[0]
    np.testing.assert_array_equal(img2, img)
    np.testing.assert_array_equal(target2, target)


@pytest.fixture(scope="module")
def small_voc(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    out = tmp_path_factory.mktemp("shapes_voc") / "ds"
    return out, ms.make_shapes(out, **SMALL, data_format="voc")


def test_voc_layout_and_summary(small: tuple[Path, dict[str, Any]], small_voc: tuple[Path, dict[str, Any]]) -> None:
    out, summary = small_voc
    voc = out / "VOC2007"
    assert _names(out) == ["VOC2007"] and _names(out.parent) == ["ds"]
    assert _names(voc) == ["Annotations", "ImageSets", "JPEGImages"]
    assert _names(voc / "ImageSets" / "Main") == ["test.txt", "trainval.txt"]
    assert summary["format"] == "voc" and small[1]["format"] == "coco"
    for image_set, split in (("trainval", "train2017"), ("test", "val2017")):
        ids = (voc / "ImageSets" / "Main" / f"{image_set}.txt").read_text().split()
        coco = _load(small[0], split)
        assert ids == [f"{split[:-4]}_{img['file_name'][:-4]}" for img in coco["images"]]
        assert summary["splits"][image_set] == small[1]["splits"][split]  # same counts per class
        for vid, img in zip(ids, coco["images"]):  # same pixels, byte for byte
            jpg = (small[0] / split / img["file_name"]).read_bytes()
            assert (voc / "JPEGImages" / f"{vid}.jpg").read_bytes() == jpg
            assert (voc / "Annotations" / f"{vid}.xml").is_file()
    assert _names(voc / "JPEGImages") == sorted(f"{p}_{i:012d}.jpg" for p, n in (("train", 6), ("val", 3))
                                                for i in range(1, n + 1))
    assert "trainval: 6 images" in ms.format_summary(summary)


@pytest.mark.parametrize("image_set, split", [("trainval", "train2017"), ("test", "val2017")])
def test_yolox_voc_dataset_reads_the_coco_boxes(small: tuple[Path, dict[str, Any]],
                                                small_voc: tuple[Path, dict[str, Any]],
                                                image_set: str, split: str) -> None:
    """YOLOX's VOCDetection reads the VOC set back as the COCO json of the same arguments says:
    the same classes, and each box within rounding of the COCO box in YOLOX's VOC convention
    (VOC's 1-based last pixel, less 1: right = x + w - 1)."""
    from yolox.data import VOCDetection
    from yolox.data.datasets.voc import AnnotationTransform

    coco = _load(small[0], split)
    index_of = {c["id"]: k for k, c in enumerate(sorted(coco["categories"], key=lambda c: c["id"]))}
    names = [c["name"] for c in sorted(coco["categories"], key=lambda c: c["id"])]
    ds = VOCDetection(data_dir=str(small_voc[0]), image_sets=[("2007", image_set)], img_size=(96, 96), preproc=None,
                      target_transform=AnnotationTransform(class_to_ind={n: i for i, n in enumerate(names)}))
    assert len(ds) == len(coco["images"])
    for k, img in enumerate(coco["images"]):
        pixels, target, info, _ = ds.pull_item(k)
        assert info == (img["height"], img["width"]) and pixels.shape == (96, 96, 3)
        anns = [a for a in coco["annotations"] if a["image_id"] == img["id"]]
        assert target.shape == (len(anns), 5)
        assert [int(c) for c in target[:, 4]] == [index_of[a["category_id"]] for a in anns]
        boxes = np.array([[x, y, x + w - 1, y + h - 1] for x, y, w, h in (a["bbox"] for a in anns)])
        assert np.abs(target[:, :4] - boxes).max() <= 0.5 + 1e-6
        assert np.array_equal(target[:, :4], np.round(target[:, :4]))  # whole pixels, as VOC writes them


def test_yolox_voc_eval_scores_the_true_boxes_perfectly(small_voc: tuple[Path, dict[str, Any]],
                                                        tmp_path: Path) -> None:
    """YOLOX's voc_eval parses every field it reads (name, pose, truncated, difficult, integer
    bndbox) and, given the ground truth written as YOLOX's VOC evaluator writes detections
    (YOLOX's boxes plus 1), finds AP 1 for each class at IoU 0.75."""
    from yolox.data import VOCDetection
    from yolox.data.datasets.voc import AnnotationTransform
    from yolox.evaluators.voc_eval import parse_rec, voc_eval

    voc = small_voc[0] / "VOC2007"
    ds = VOCDetection(data_dir=str(small_voc[0]), image_sets=[("2007", "test")], img_size=(96, 96), preproc=None,
                      target_transform=AnnotationTransform(class_to_ind={n: i for i, n in enumerate(ms.CLASS_NAMES)}))
    ids = [i for _, i in ds.ids]
    for vid in ids:
        for obj in parse_rec(str(voc / "Annotations" / f"{vid}.xml")):
            assert obj["name"] in ms.CLASS_NAMES and obj["difficult"] == obj["truncated"] == 0
    for cls, name in enumerate(ms.CLASS_NAMES):
        lines = [f"{vid} 0.900 " + " ".join(f"{v + 1:.1f}" for v in row[:4])
                 for k, vid in enumerate(ids) for row in ds.load_anno(k) if int(row[4]) == cls]
        if not lines:
            continue
        dets = tmp_path / f"det_{name}.txt"
        dets.write_text("\n".join(lines) + "\n")
        _, _, ap = voc_eval(str(dets), str(voc / "Annotations" / "{:s}.xml"), str(voc / "ImageSets/Main/test.txt"),
                            name, str(tmp_path / "cache"), ovthresh=0.75, use_07_metric=True)
        assert ap == pytest.approx(1.0), name


def test_voc_box_is_one_based_and_inclusive() -> None:
    # the full 96-px image is VOC's 1..96; a box over pixels 10..17 (edges 10-18) is 11..18
    assert ms.voc_box((0.0, 0.0, 96.0, 96.0)) == (1, 1, 96, 96)
    assert ms.voc_box((10.0, 20.0, 8.0, 4.0)) == (11, 21, 18, 24)
    assert ms.voc_box((10.49, 20.5, 8.02, 3.9)) == (11, 22, 19, 24)  # edges round to the nearest pixel
    assert ms.voc_box((3.4, 3.4, 0.2, 0.2)) == (4, 4, 4, 4)  # never empty


def test_sizes_span_small_to_large(tmp_path: Path) -> None:
    size = 160
    summary = ms.make_shapes(tmp_path / "sizes", train=40, val=1, size=size, seed=3)
    data = _load(tmp_path / "sizes", "train2017")
    longest = np.array([max(a["bbox"][2], a["bbox"][3]) for a in data["annotations"]])
    assert len(longest) == summary["splits"]["train2017"]["objects"] >= 40 * 3
    assert longest.min() >= ms.MIN_OBJECT_PX - 1e-6 and longest.max() <= size / 2 + 1e-6
    assert (longest < 16).sum() >= 5
    assert (longest > size / 3).sum() >= 5
    per_class = summary["splits"]["train2017"]["per_class"]
    assert min(per_class.values()) >= 0.1 * len(longest)  # every class well represented
    # Some images have overlapping boxes (occlusion happens, not just side-by-side shapes).
    overlaps = 0
    by_img: dict[int, list[list[float]]] = {}
    for a in data["annotations"]:
        by_img.setdefault(a["image_id"], []).append(a["bbox"])
    for boxes in by_img.values():
        for i, (x, y, w, h) in enumerate(boxes):
            for (u, v, p, q) in boxes[i + 1:]:
                overlaps += min(x + w, u + p) > max(x, u) and min(y + h, v + q) > max(y, v)
    assert overlaps >= 5


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"train": 0}, "--train must be in [1, "),
        ({"train": -3}, "got -3"),
        ({"val": 0}, "--val must be in [1, "),
        ({"size": 31}, "--size must be in [32, 2048], got 31"),
        ({"size": 32.5}, "--size must be an integer"),
        ({"size": "64"}, "--size must be an integer"),
        ({"train": True}, "--train must be an integer"),
        ({"seed": -1}, "--seed must be in [0, "),
        ({"data_format": "yolo"}, "--format must be one of coco, voc, got 'yolo'"),
    ],
)
def test_bad_arguments_raise_and_write_nothing(tmp_path: Path, kwargs: dict[str, Any], fragment: str) -> None:
    args = {"train": 2, "val": 1, "size": 64, "seed": 0, **kwargs}
    with pytest.raises(ValueError) as err:
        ms.make_shapes(tmp_path / "new" / "ds", **args)
    assert fragment in str(err.value)
    assert _names(tmp_path) == []


def test_non_empty_out_needs_force(tmp_path: Path) -> None:
    out = tmp_path / "ds"
    out.mkdir()
    (out / "keep.txt").write_text("old")
    with pytest.raises(ValueError, match="not empty; pass --force"):
        ms.make_shapes(out, train=1, val=1, size=48)
    assert _names(out) == ["keep.txt"] and _names(tmp_path) == ["ds"]
    ms.make_shapes(out, train=1, val=1, size=48, force=True)
    assert _names(out) == ["annotations", "train2017", "val2017"]
    assert _names(tmp_path) == ["ds"]  # old copy and temp folder both gone
    # The VOC layout follows the same rules and replaces the COCO one only with --force.
    with pytest.raises(ValueError, match="not empty; pass --force"):
        ms.make_shapes(out, train=1, val=1, size=48, data_format="voc")
    ms.make_shapes(out, train=1, val=1, size=48, force=True, data_format="voc")
    assert _names(out) == ["VOC2007"] and _names(tmp_path) == ["ds"]
    # An existing empty folder is fine without --force.
    empty = tmp_path / "empty"
    empty.mkdir()
    ms.make_shapes(empty, train=1, val=1, size=48)
    assert _names(empty) == ["annotations", "train2017", "val2017"]


def test_unusable_out_locations(tmp_path: Path) -> None:
    blocker = tmp_path / "afile"
    blocker.write_text("x")
    with pytest.raises(ValueError, match="not a directory"):
        ms.make_shapes(blocker, train=1, val=1, size=48)
    with pytest.raises(ValueError, match="not a writable directory"):
        ms.make_shapes(blocker / "ds", train=1, val=1, size=48)
    with pytest.raises(ValueError, match="cannot create the parent folder"):
        ms.make_shapes(blocker / "sub" / "ds", train=1, val=1, size=48)
    assert _names(tmp_path) == ["afile"] and blocker.read_text() == "x"


def test_failure_midway_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = {"n": 0}
    real_write = ms._write_image

    def flaky_write(path: Path, img: np.ndarray) -> None:
        calls["n"] += 1
        if calls["n"] == 3:
            raise OSError("disk full (simulated)")
        real_write(path, img)

    monkeypatch.setattr(ms, "_write_image", flaky_write)
    with pytest.raises(OSError, match="simulated"):
        ms.make_shapes(tmp_path / "made" / "for" / "ds", train=4, val=1, size=48)
    assert calls["n"] == 3
    assert _names(tmp_path) == []  # neither the dataset, its temp folder, nor the parents it made
    calls["n"] = 0
    with pytest.raises(OSError, match="simulated"):
        ms.make_shapes(tmp_path / "made" / "ds", train=4, val=1, size=48, data_format="voc")
    assert calls["n"] == 3 and _names(tmp_path) == []

    # With --force, a failed rebuild keeps the previous dataset intact.
    out = tmp_path / "ds"
    monkeypatch.setattr(ms, "_write_image", real_write)
    ms.make_shapes(out, train=1, val=1, size=48)
    before = (out / "annotations" / "instances_train2017.json").read_bytes()
    calls["n"] = 0
    monkeypatch.setattr(ms, "_write_image", flaky_write)
    with pytest.raises(OSError):
        ms.make_shapes(out, train=4, val=1, size=64, force=True)
    assert _names(tmp_path) == ["ds"]
    assert (out / "annotations" / "instances_train2017.json").read_bytes() == before


def test_cli_errors_and_help(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        cli.main(["--out", str(tmp_path / "ds"), "--size", "16"])
    assert exc.value.code == 2
    assert "--size must be in [32, 2048], got 16" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        cli.main(["--out", str(tmp_path / "ds"), "--train", "2.5"])
    assert exc.value.code == 2
    assert "invalid int value: '2.5'" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        cli.main(["--out", str(tmp_path / "ds"), "--format", "yolo"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "argument --format: invalid choice: 'yolo' (choose from " in err  # Pythons differ in quoting the choices
    assert err.rstrip().endswith(")") and all(name in err.split("choose from")[1] for name in ("coco", "voc"))
    assert _names(tmp_path) == []
    with pytest.raises(SystemExit) as exc:
        cli.main(["--help"])
    assert exc.value.code == 0
    help_text = " ".join(capsys.readouterr().out.split())
    for rule in ("[1, 1000000]", "[32, 2048]", "--force", "default 512", "default 128", "default 320",
                 "{coco,voc}", "default coco", "ImageSets/Main/{trainval,test}.txt"):
        assert rule in help_text
    assert cli.main(["--out", str(tmp_path / "voc"), "--format", "voc", "--train", "1", "--val", "1",
                     "--size", "48"]) == 0
    printed = capsys.readouterr().out
    assert f"wrote {tmp_path / 'voc'} (voc layout" in printed and "trainval: 1 images" in printed
    assert _names(tmp_path / "voc" / "VOC2007" / "Annotations") == ["train_000000000001.xml", "val_000000000001.xml"]


def test_module_entry_point(tmp_path: Path) -> None:
    out = tmp_path / "cli"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [sys.executable, "-m", "yolox_attn.tools.make_shapes", "--out", str(out),
         "--train", "2", "--val", "1", "--size", "64", "--seed", "5"],
        capture_output=True, text=True, cwd=ROOT, env=env, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert f"wrote {out}" in proc.stdout
    assert "train2017: 2 images" in proc.stdout and "val2017: 1 images" in proc.stdout
    for name in ms.CLASS_NAMES:
        assert name in proc.stdout
    assert len(_names(out / "train2017")) == 2 and len(_names(out / "val2017")) == 1


def test_shape_colours_contrast_with_what_they_cover() -> None:
    rng = np.random.default_rng(1)
    for _ in range(500):
        under = rng.uniform(0, 255, (20, 3)) * rng.uniform(0.2, 1.0) + rng.uniform(0, 50)
        col = ms._pick_colour(rng, under)
        ref = under.mean(axis=0)
        assert col.shape == (3,) and (0 <= col).all() and (col <= 255).all()
        assert np.linalg.norm(col - ref) >= ms.MIN_COLOUR_DIST * 0.6
        assert abs(ms._luma(col) - ms._luma(ref)) >= ms.MIN_LUMA_GAP


def test_old_import_path_gives_the_library_names() -> None:
    # make_shapes held the generator before it moved to yolox_attn.data.shapes
    for name in ("CLASS_NAMES", "make_shapes", "format_summary", "render_image", "sample_shape"):
        assert getattr(cli, name) is getattr(ms, name), name

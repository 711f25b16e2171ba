"""yolox_attn.data.checks: one-line errors and returned warnings about a COCO or VOC dataset and
about size settings that override others, each checked against what YOLOX itself reads."""

import json
import random
import re
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import cv2
import numpy as np
import pytest

from yolox_attn.data import checks
from yolox_attn.data import shapes as ms

# ----------------------------------------------------------------------------- COCO

LABEL_TOOL_NAMES = {7: "apple", 9: "pear", 12: "plum"}  # category ids that are not 1..N


def raises(exc: type, message: str):
    """pytest.raises for exactly this message."""
    return pytest.raises(exc, match=f"^{re.escape(message)}$")


def raises_with(exc: type, text: str):
    """pytest.raises for a message holding this text."""
    return pytest.raises(exc, match=re.escape(text))


def _jpg(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), np.full((8, 8, 3), 128, np.uint8))


def _coco(root: Path, ann_file: str, image_folder: Optional[str], files: Sequence[str], **extra) -> Path:
    """A COCO annotation file listing files (one box each, cycling through the categories), the
    images written under root/image_folder (None: written nowhere)."""
    ids = sorted(LABEL_TOOL_NAMES)
    data = {
        "images": [{"id": k + 1, "file_name": f, "width": 8, "height": 8} for k, f in enumerate(files)],
        "annotations": [{"id": k + 1, "image_id": k + 1, "category_id": ids[k % len(ids)], "bbox": [1, 1, 4, 4],
                         "area": 16.0, "iscrowd": 0} for k in range(len(files))],
        "categories": [{"id": i, "name": n} for i, n in LABEL_TOOL_NAMES.items()],
        **extra,
    }
    path = root / "annotations" / ann_file
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))
    if image_folder is not None:
        for f in files:
            _jpg(root / image_folder / f)
    return path


@pytest.fixture
def label_tool_export(tmp_path: Path) -> Path:
    """A labeling tool's COCO export: images/train + annotations/train.json, 3 classes 7/9/12."""
    _coco(tmp_path, "train.json", "images/train", ["a.jpg", "b.jpg", "c.jpg"])
    return tmp_path


def test_label_tool_export_with_its_folder_passes_and_yolox_reads_it(label_tool_export: Path) -> None:
    from yolox.data import COCODataset

    assert checks.check_coco_dataset(str(label_tool_export), "train.json", "images/train", 3) == []
    # What the check accepts, YOLOX reads: ids 7/9/12 become classes 0/1/2.
    ds = COCODataset(data_dir=str(label_tool_export), json_file="train.json", name="images/train", img_size=(8, 8))
    assert [int(ds.pull_item(k)[1][0, 4]) for k in range(3)] == [0, 1, 2]


def test_label_tool_export_names_the_folder_that_holds_its_images(label_tool_export: Path) -> None:
    from yolox.data import COCODataset

    folder = label_tool_export / "train2017"
    expected = (f"3 of the 3 images listed in {label_tool_export / 'annotations' / 'train.json'} are not in "
                f"{folder}, the folder YOLOX reads them from, which does not exist: the first is 'a.jpg'; all of "
                f"them are in {label_tool_export / 'images' / 'train'}: set train_image_dir 'images/train'")
    with raises(FileNotFoundError, expected):
        checks.check_coco_dataset(str(label_tool_export), "train.json", "train2017", 3,
                                  image_dir_attr="train_image_dir")
    # Without the attribute's name the message names both candidates.
    with raises_with(FileNotFoundError, "set the exp attribute that names the image folder "
                                                          "(train_image_dir or val_image_dir) 'images/train'"):
        checks.check_coco_dataset(str(label_tool_export), "train.json", "train2017", 3)
    # YOLOX itself fails only when it loads the image, with an assert naming the file.
    ds = COCODataset(data_dir=str(label_tool_export), json_file="train.json", name="train2017", img_size=(8, 8))
    with raises_with(AssertionError, f"file named {folder / 'a.jpg'} not found"):
        ds.pull_item(0)


def test_num_classes_against_the_categories(label_tool_export: Path) -> None:
    path = label_tool_export / "annotations" / "train.json"
    warnings = checks.check_coco_dataset(str(label_tool_export), "train.json", "images/train", 80)
    assert warnings == [f"num_classes is 80 but there are 3 categories in {path}: the head predicts 77 classes that "
                        f"never occur; set num_classes 3"]
    with raises(ValueError, f"num_classes is 2 but there are 3 categories in {path}; set num_classes 3"):
        checks.check_coco_dataset(str(label_tool_export), "train.json", "images/train", 2)
    for bad in (0, True, 3.0):
        with raises(ValueError, f"num_classes must be an integer >= 1, got {bad!r}"):
            checks.check_coco_dataset(str(label_tool_export), "train.json", "images/train", bad)


def test_some_images_missing_names_the_first_and_the_count(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = _coco(tmp_path, "instances_val2017.json", "val2017", ["a.jpg", "b.jpg", "c.jpg"])
    (tmp_path / "val2017" / "b.jpg").unlink()
    (tmp_path / "val2017" / "c.jpg").unlink()
    expected = (f"2 of the 3 images listed in {path} are not in {tmp_path / 'val2017'}, the folder YOLOX reads them "
                f"from: the first is 'b.jpg'")
    with raises(FileNotFoundError, expected):  # found nowhere else: no hint
        checks.check_coco_dataset(str(tmp_path), "instances_val2017.json", "val2017", 3)
    monkeypatch.chdir(tmp_path)
    with raises(FileNotFoundError, expected):  # a relative data_dir: the paths still say where
        checks.check_coco_dataset(".", "instances_val2017.json", "val2017", 3)
    # One of the two elsewhere, the other image in val2017: a folder holding no more of the listed
    # images than the one YOLOX reads (as a train and a val folder with the same file names) is no hint.
    _jpg(tmp_path / "extra" / "b.jpg")
    with raises(FileNotFoundError, expected):
        checks.check_coco_dataset(str(tmp_path), "instances_val2017.json", "val2017", 3, image_dir_attr="val_image_dir")
    # Both missing ones elsewhere: that folder holds more of them, and is named with how many.
    _jpg(tmp_path / "extra" / "c.jpg")
    with raises_with(FileNotFoundError, f"; all of them are in {tmp_path / 'extra'}: set "
                                        f"val_image_dir 'extra'"):
        checks.check_coco_dataset(str(tmp_path), "instances_val2017.json", "val2017", 3, image_dir_attr="val_image_dir")


def test_file_names_with_folders_and_without_file_name(tmp_path: Path) -> None:
    # A file_name with a folder in it is read below the image folder, as YOLOX joins them.
    _coco(tmp_path, "a.json", "train2017", ["sub/a.jpg"])
    assert checks.check_coco_dataset(str(tmp_path), "a.json", "train2017", 3) == []
    # An image without file_name is read as its 12-digit id + .jpg (YOLOX's rule).
    path = _coco(tmp_path, "b.json", None, [])
    data = json.loads(path.read_text())
    data["images"] = [{"id": 5, "width": 8, "height": 8}]
    path.write_text(json.dumps(data))
    with raises_with(FileNotFoundError, "the first is '000000000005.jpg'"):
        checks.check_coco_dataset(str(tmp_path), "b.json", "train2017", 3)
    _jpg(tmp_path / "train2017" / "000000000005.jpg")
    assert checks.check_coco_dataset(str(tmp_path), "b.json", "train2017", 3) == []


def test_annotation_file_errors(tmp_path: Path) -> None:
    with raises_with(FileNotFoundError, f"dataset not found: {tmp_path / 'annotations' / 'x.json'} "
                                                          f"does not exist. Point data_dir at a COCO-layout folder"):
        checks.check_coco_dataset(str(tmp_path), "x.json", "train2017", 3)
    bad = tmp_path / "annotations" / "bad.json"
    bad.parent.mkdir()
    bad.write_text("{not json")
    with raises(ValueError, f"{bad} is not a JSON file: Expecting property name enclosed in double quotes: "
                            f"line 1 column 2 (char 1)"):
        checks.check_coco_dataset(str(tmp_path), "bad.json", "train2017", 3)
    bad.write_text("[]")
    with raises(ValueError, f"{bad} is not a COCO annotation file: it holds a JSON list, not an object"):
        checks.check_coco_dataset(str(tmp_path), "bad.json", "train2017", 3)
    bad.write_text(json.dumps({"images": [], "categories": []}))
    with raises_with(ValueError, f"{bad} is not a COCO annotation file: it has no list 'annotations' "
                                                   f"(one needs 'images', 'annotations', 'categories')"):
        checks.check_coco_dataset(str(tmp_path), "bad.json", "train2017", 3)


def test_no_images_no_categories_and_stray_category_ids(tmp_path: Path) -> None:
    path = _coco(tmp_path, "empty.json", "train2017", [])
    with raises(ValueError, f"{path} lists no images: its \"images\" is empty"):
        checks.check_coco_dataset(str(tmp_path), "empty.json", "train2017", 3)
    path = _coco(tmp_path, "nocats.json", "train2017", ["a.jpg"], categories=[])
    with raises_with(ValueError, f"{path} lists no categories"):
        checks.check_coco_dataset(str(tmp_path), "nocats.json", "train2017", 3)
    path = _coco(tmp_path, "stray.json", "train2017", ["a.jpg"])
    data = json.loads(path.read_text())
    data["annotations"][0]["category_id"] = 8
    path.write_text(json.dumps(data))
    with raises_with(ValueError, f"{path}: 1 annotation has a category_id that \"categories\" does "
                                                   f"not list, the first 8; the listed ids are [7, 9, 12]"):
        checks.check_coco_dataset(str(tmp_path), "stray.json", "train2017", 3)


def test_an_image_list_without_annotations_passes_when_unlabelled(tmp_path: Path) -> None:
    """COCO's test-dev lists images and categories only."""
    path = _coco(tmp_path, "test.json", "test2017", ["a.jpg"])
    data = json.loads(path.read_text())
    del data["annotations"]
    path.write_text(json.dumps(data))
    assert checks.check_coco_dataset(str(tmp_path), "test.json", "test2017", 3, labelled=False) == []
    with raises_with(ValueError, "it has no list 'annotations'"):
        checks.check_coco_dataset(str(tmp_path), "test.json", "test2017", 3)


def test_require_annotations_still_imports_from_preflight() -> None:
    from yolox_attn import preflight

    assert preflight.require_annotations is checks.require_annotations
    assert preflight.MAKE_SHAPES == checks.MAKE_SHAPES


# ----------------------------------------------------------------------------- Pascal VOC

NAMES = ("cat", "dog")


def _obj(name: str, box: Tuple[str, ...] = ("2", "2", "6", "6"), drop: str = "") -> str:
    fields = {"name": name, "pose": "Unspecified", "truncated": "0", "difficult": "0"}
    body = "".join(f"<{k}>{v}</{k}>" for k, v in fields.items() if k != drop)
    coords = "".join(f"<{k}>{v}</{k}>" for k, v in zip(("xmin", "ymin", "xmax", "ymax"), box))
    return f"<object>{body}<bndbox>{coords}</bndbox></object>"


def _voc(root: Path, sets: Dict[str, List[str]], objects: Optional[Dict[str, str]] = None, year: str = "2007") -> Path:
    """VOC<year> with image set files, an 8x8 jpg and an annotation per id (objects: id -> XML)."""
    base = root / f"VOC{year}"
    (base / "ImageSets" / "Main").mkdir(parents=True, exist_ok=True)
    (base / "Annotations").mkdir(exist_ok=True)
    for name, ids in sets.items():
        (base / "ImageSets" / "Main" / f"{name}.txt").write_text("".join(f"{i}\n" for i in ids))
        for i in ids:
            _jpg(base / "JPEGImages" / f"{i}.jpg")
            body = (objects or {}).get(i, _obj(NAMES[0]))
            (base / "Annotations" / f"{i}.xml").write_text(
                f"<annotation><size><width>8</width><height>8</height><depth>3</depth></size>{body}</annotation>")
    return base


def test_voc_dataset_passes_and_make_shapes_voc_passes(tmp_path: Path) -> None:
    _voc(tmp_path, {"trainval": ["a", "b"], "test": ["c"]}, {"b": _obj("dog") + _obj("cat")})
    assert checks.check_voc_dataset(str(tmp_path), [("2007", "trainval"), ("2007", "test")], 2, NAMES) == []
    out = tmp_path / "shapes_voc"
    ms.make_shapes(out, train=2, val=1, size=48, data_format="voc")
    assert checks.check_voc_dataset(str(out), [("2007", "trainval"), ("2007", "test")], 4, ms.CLASS_NAMES) == []


def test_voc_image_set_missing_lists_what_exists(tmp_path: Path) -> None:
    _voc(tmp_path, {"train": ["a"], "test": ["b"]})
    set_file = tmp_path / "VOC2007" / "ImageSets" / "Main" / "trainval.txt"
    expected = (f"VOC image set not found: {set_file} does not exist; the image sets in {set_file.parent} are: test, "
                f"train. Point data_dir at the folder holding VOC<year> (opts: data_dir PATH), or generate the shapes "
                f"dataset in VOC layout: {checks.MAKE_SHAPES_VOC}")
    with raises(FileNotFoundError, expected):
        checks.check_voc_dataset(str(tmp_path), [("2007", "trainval")], 2, NAMES)
    with raises_with(FileNotFoundError, f"VOC2012/ImageSets/Main/trainval.txt does not exist; "
                                                          f"{tmp_path} holds VOC2007. Point data_dir"):
        checks.check_voc_dataset(str(tmp_path), [("2007", "train"), ("2012", "trainval")], 2, NAMES)
    with raises_with(FileNotFoundError, f"; {tmp_path / 'nowhere'} holds no VOC<year> folder."):
        checks.check_voc_dataset(str(tmp_path / "nowhere"), [("2007", "train")], 2, NAMES)


def test_voc_image_set_ids_without_files(tmp_path: Path) -> None:
    base = _voc(tmp_path, {"trainval": ["a", "b", "c"]})
    (base / "Annotations" / "b.xml").unlink()
    (base / "Annotations" / "c.xml").unlink()
    expected = (f"2 of the 3 images of image set 'trainval' ({base / 'ImageSets' / 'Main' / 'trainval.txt'}) have no "
                f"Annotations/<id>.xml: the first is {base / 'Annotations' / 'b.xml'}")
    with raises(FileNotFoundError, expected):
        checks.check_voc_dataset(str(tmp_path), [("2007", "trainval")], 2, NAMES)
    base = _voc(tmp_path / "2", {"trainval": ["a", "b"]})
    (base / "JPEGImages" / "a.jpg").unlink()
    expected = (f"1 of the 2 images of image set 'trainval' ({base / 'ImageSets' / 'Main' / 'trainval.txt'}) has no "
                f"JPEGImages/<id>.jpg: the first is {base / 'JPEGImages' / 'a.jpg'}")
    with raises(FileNotFoundError, expected):
        checks.check_voc_dataset(str(tmp_path / "2"), [("2007", "trainval")], 2, NAMES)


def test_voc_blank_and_empty_image_sets(tmp_path: Path) -> None:
    base = _voc(tmp_path, {"trainval": ["a"]})
    set_file = base / "ImageSets" / "Main" / "trainval.txt"
    set_file.write_text("a\n\n")
    with raises_with(ValueError, f"line 2 of VOC image set {set_file} is blank; YOLOX reads every "
                                                   f"line as an image id"):
        checks.check_voc_dataset(str(tmp_path), [("2007", "trainval")], 2, NAMES)
    set_file.write_text("")
    with raises(ValueError, f"VOC image set {set_file} lists no images"):
        checks.check_voc_dataset(str(tmp_path), [("2007", "trainval")], 2, NAMES)


def test_voc_object_names_outside_class_names(tmp_path: Path) -> None:
    base = _voc(tmp_path, {"trainval": ["a", "b"]},
                {"a": _obj("cat") + _obj("horse"), "b": _obj("cow") + _obj("horse")})
    expected = (f"object names not in class_names: 'horse', 'cow' (the first in {base / 'Annotations' / 'a.xml'}); "
                f"class_names are 'cat', 'dog'")
    with raises(ValueError, expected):
        checks.check_voc_dataset(str(tmp_path), [("2007", "trainval")], 2, NAMES)


def test_voc_fields_that_yolox_voc_eval_needs(tmp_path: Path) -> None:
    from yolox.evaluators.voc_eval import parse_rec

    base = _voc(tmp_path, {"trainval": ["a"]}, {"a": _obj("cat", box=("2", "2.5", "6", "6"))})
    xml = base / "Annotations" / "a.xml"
    with raises(ValueError, f"<bndbox/ymin> of object 1 of {xml} must be a whole number (YOLOX's VOC code reads it "
                            f"with int()), got '2.5'"):
        checks.check_voc_dataset(str(tmp_path), [("2007", "trainval")], 2, NAMES)
    with raises_with(ValueError, "invalid literal for int() with base 10: '2.5'"):
        parse_rec(str(xml))  # what the check prevents: YOLOX's evaluation failing after training
    size = "<size><width>8</width><height>8</height></size>"
    xml.write_text(f"<annotation>{size}{_obj('cat', drop='pose')}</annotation>")
    with raises(ValueError, f"object 1 of {xml} has no <pose>; YOLOX reads name, pose, truncated, difficult and "
                            f"bndbox of every object"):
        checks.check_voc_dataset(str(tmp_path), [("2007", "trainval")], 2, NAMES)
    with raises(AttributeError, "'NoneType' object has no attribute 'text'"):
        parse_rec(str(xml))
    xml.write_text(f"<annotation><size><width>8</width></size>{_obj('cat')}</annotation>")
    with raises_with(ValueError, f"<size/height> of {xml} must be a whole number (YOLOX's VOC code "
                                                   f"reads it with int()), got missing"):
        checks.check_voc_dataset(str(tmp_path), [("2007", "trainval")], 2, NAMES)
    xml.write_text(f"<annotation>{size}{_obj(' cat')}</annotation>")
    with raises_with(ValueError, f"object 1 of {xml} has the name ' cat', with spaces around it"):
        checks.check_voc_dataset(str(tmp_path), [("2007", "trainval")], 2, NAMES)
    xml.write_text("<annotation><size>")
    with raises_with(ValueError, f"{xml} is not valid XML: "):
        checks.check_voc_dataset(str(tmp_path), [("2007", "trainval")], 2, NAMES)


def test_voc_num_classes_and_arguments(tmp_path: Path) -> None:
    _voc(tmp_path, {"trainval": ["a"]})
    sets = [("2007", "trainval")]
    assert checks.check_voc_dataset(str(tmp_path), sets, 20, NAMES) == [
        "num_classes is 20 but there are 2 class_names (cat, dog): the head predicts 18 classes that never occur; "
        "set num_classes 2"]
    with raises(ValueError, "num_classes is 1 but there are 2 class_names (cat, dog); set num_classes 2"):
        checks.check_voc_dataset(str(tmp_path), sets, 1, NAMES)
    with raises_with(ValueError, "class_names must be distinct; named more than once: 'cat'"):
        checks.check_voc_dataset(str(tmp_path), sets, 3, ("cat", "dog", "cat"))
    for bad in ((), "cat", ("cat", "")):
        with raises_with(ValueError, f"class_names must be a non-empty list of names, got {bad!r}"):
            checks.check_voc_dataset(str(tmp_path), sets, 2, bad)
    with raises_with(ValueError, "image_sets must be a non-empty list of (year, name) pairs"):
        checks.check_voc_dataset(str(tmp_path), [], 2, NAMES)
    with raises_with(ValueError, "image_sets entries must be (year, name) string pairs such as "
                                                   "('2007', 'trainval'), got (2007, 'trainval')"):
        checks.check_voc_dataset(str(tmp_path), [(2007, "trainval")], 2, NAMES)


# ----------------------------------------------------------------------------- sizes


class _Sizes:
    def __init__(self, input_size: Tuple[int, int], multiscale_range: int, **random_size) -> None:
        self.input_size, self.multiscale_range = input_size, multiscale_range
        for key, value in random_size.items():
            setattr(self, key, value)


def _drawn(input_size: Tuple[int, int], multiscale_range: int, random_size: Optional[Tuple[int, int]] = None) -> set:
    """The sizes the project's trainers draw (the exp's random_resize, 400 draws); without
    random_size, from input_size and multiscale_range."""
    from yolox_attn.exp import AttentionExp

    exp = AttentionExp()
    assert not hasattr(exp, "random_size")
    exp.input_size, exp.multiscale_range = input_size, multiscale_range
    if random_size is not None:
        exp.random_size = random_size
    random.seed(0)
    return {exp.random_resize(None, 0, 0, False) for _ in range(400)}


def test_size_note_says_what_random_size_draws() -> None:
    note = checks.size_override_note(_Sizes((224, 224), 0, random_size=(10, 20)))
    assert note == ("training draws sizes 320-640 px from random_size (10, 20); input_size (224, 224) and "
                    "multiscale_range 0 do not apply (they would give 224 px, as random_size (7, 7) does)")
    drawn = _drawn((224, 224), 0, (10, 20))
    assert (min(drawn), max(drawn)) == ((320, 320), (640, 640))
    assert _drawn((224, 224), 0) == {(224, 224)}
    # Not square: the width follows input_size's aspect, as YOLOX computes it.
    note = checks.size_override_note(_Sizes((256, 320), 1, random_size=(8, 10)))
    assert note is not None and note.startswith("training draws sizes 256x320 to 320x384 px from random_size (8, 10);")
    assert note.endswith("(they would give 224x256 to 288x352 px, as random_size (7, 9) does)")
    drawn = _drawn((256, 320), 1, (8, 10))
    assert (min(drawn), max(drawn)) == ((256, 320), (320, 384))
    drawn = _drawn((256, 320), 1)
    assert (min(drawn), max(drawn)) == ((224, 256), (288, 352))
    # The shapes exps' own settings draw 224-288 px, not 256 +- 5 * 32.
    from yolox_attn.shapes_exp import NanoShapesExp

    note = checks.size_override_note(NanoShapesExp())
    assert note is not None and note.startswith("training draws sizes 224-288 px from random_size (7, 9);")


def test_size_note_is_none_when_nothing_is_overridden() -> None:
    assert checks.size_override_note(_Sizes((640, 640), 5)) is None  # no random_size
    assert checks.size_override_note(_Sizes((640, 640), 5, random_size=None)) is None
    assert checks.size_override_note(_Sizes((640, 640), 5, random_size=(15, 25))) is None  # the same range
    # A range from input_size that YOLOX could not draw is not suggested.
    note = checks.size_override_note(_Sizes((64, 64), 5, random_size=(2, 3)))
    assert note == ("training draws sizes 64-96 px from random_size (2, 3); input_size (64, 64) and "
                    "multiscale_range 5 do not apply")


@pytest.mark.parametrize("bad", [(10,), (20, 10), (0, 4), (1.5, 3), "10,20", (True, 3)])
def test_size_note_rejects_bad_random_size(bad: object) -> None:
    with raises(ValueError, f"random_size must be two integers (low, high) with 1 <= low <= high, got {bad!r}"):
        checks.size_override_note(_Sizes((416, 416), 5, random_size=bad))

"""Checks of a dataset and of an exp's size settings, for the trainers and the eval tool to run
before YOLOX reads anything.

YOLOX's datasets fail late and obscurely on a user's data: an image missing from ``train2017/``
stops training in its first epoch with a bare assert, ``num_classes`` above the number of
categories trains silently, a float VOC coordinate fails only in evaluation. Each check here
raises one line (``FileNotFoundError`` or ``ValueError``) naming the bad value and what is
expected, and returns the warnings as strings for the caller to log. Standard library only.
"""

import json
import os
import re
import xml.etree.ElementTree as ET
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

from ..multiscale import default_size_factors, drawn_size

MAKE_SHAPES = "python -m yolox_attn.tools.make_shapes --out datasets/shapes"
MAKE_SHAPES_VOC = "python -m yolox_attn.tools.make_shapes --out datasets/shapes_voc --format voc"
_SEARCH_DEPTH = 3  # folders below data_dir searched for images listed but missing where YOLOX reads


def require_annotations(data_dir: str, json_file: str) -> str:
    """The COCO-layout annotation file ``<data_dir>/annotations/<json_file>``; FileNotFoundError
    saying where to put data or how to make some when it is missing."""
    path = os.path.join(data_dir, "annotations", json_file)
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"dataset not found: {os.path.abspath(path)} does not exist. Point data_dir at a COCO-layout "
            f"folder (opts: data_dir PATH; default $YOLOX_DATADIR/COCO, else datasets/COCO), or generate "
            f"the shapes dataset: {MAKE_SHAPES}"
        )
    return path


def check_num_classes(num_classes: int, found: int, what: str) -> List[str]:
    """``num_classes`` against the ``found`` classes of a dataset (``what``: "categories in
    FILE"): fewer is an error (labels past the head's classes), more a warning."""
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"num_classes must be an integer >= 1, got {num_classes!r}")
    if num_classes < found:
        raise ValueError(f"num_classes is {num_classes} but there are {found} {what}; set num_classes {found}")
    if num_classes > found:
        return [f"num_classes is {num_classes} but there are {found} {what}: the head predicts "
                f"{num_classes - found} classes that never occur; set num_classes {found}"]
    return []


# ----------------------------------------------------------------------------- COCO


def check_coco_dataset(data_dir: str, ann_file: str, image_dir: str, num_classes: int,
                       image_dir_attr: Optional[str] = None, labelled: bool = True) -> List[str]:
    """Check the COCO-layout dataset YOLOX's ``COCODataset(data_dir, ann_file, name=image_dir)``
    would read, and ``num_classes`` against its categories; return warnings.

    ``image_dir_attr`` names the exp attribute that chooses ``image_dir`` (``train_image_dir``),
    for the message that points to the folder holding the images. ``labelled=False`` accepts a
    file without "annotations" (COCO's test-dev image lists). Category ids need not be 1..N:
    YOLOX maps the sorted ids to 0..N-1.
    """
    path = os.path.abspath(require_annotations(data_dir, ann_file))
    data = _load_json(path)
    required = ("images", "annotations", "categories") if labelled else ("images", "categories")
    absent = [key for key in required if not isinstance(data.get(key), list)]
    if absent:
        raise ValueError(f"{path} is not a COCO annotation file: it has no list {', '.join(map(repr, absent))} "
                         f"(one needs {', '.join(map(repr, required))})")
    images, categories = data["images"], data["categories"]
    if not images:
        raise ValueError(f"{path} lists no images: its \"images\" is empty")
    if not categories:
        raise ValueError(f"{path} lists no categories: its \"categories\" is empty")
    annotations = data.get("annotations")
    _check_category_ids(path, categories, annotations if isinstance(annotations, list) else [])
    _check_image_files(path, data_dir, image_dir, images, image_dir_attr)
    return check_num_classes(num_classes, len(categories), f"categories in {path}")


def _load_json(path: str) -> Dict[str, Any]:
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"{path} is not a JSON file: {err}") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path} is not a COCO annotation file: it holds a JSON {type(data).__name__}, not an object")
    return data


def _check_category_ids(path: str, categories: List[Any], annotations: List[Any]) -> None:
    """Every annotation's category is listed (YOLOX looks each up in the sorted category ids)."""
    ids = [c.get("id") if isinstance(c, dict) else None for c in categories]
    if any(not isinstance(i, int) or isinstance(i, bool) for i in ids) or len(set(ids)) != len(ids):
        raise ValueError(f"{path}: category ids must be distinct integers, got {ids}")
    known = set(ids)
    stray = [a.get("category_id") for a in annotations if isinstance(a, dict) and a.get("category_id") not in known]
    if stray:
        raise ValueError(f"{path}: {len(stray)} {_is(len(stray), 'annotation has', 'annotations have')} a "
                         f"category_id that \"categories\" does not list, the first {stray[0]!r}; the listed ids are "
                         f"{sorted(known)}")


def _file_name(image: Any) -> str:
    """The file YOLOX reads for an image record: its file_name, else the 12-digit id + .jpg."""
    if not isinstance(image, dict):
        raise ValueError(f"an entry of \"images\" is not an object: {image!r}")
    if "file_name" in image:
        return str(image["file_name"])
    return "{:012}.jpg".format(image.get("id"))


def _missing(folder: str, names: Iterable[str]) -> List[str]:
    """The names that are no file under folder; plain names are looked up in one listdir."""
    try:
        present = set(os.listdir(folder))
    except OSError:
        present = set()
    return [n for n in names
            if not (n in present if os.sep not in n and "/" not in n else os.path.isfile(os.path.join(folder, n)))]


def _check_image_files(path: str, data_dir: str, image_dir: str, images: List[Any],
                       image_dir_attr: Optional[str]) -> None:
    names = [_file_name(image) for image in images]
    folder = os.path.join(data_dir, image_dir)
    missing = _missing(folder, names)
    if not missing:
        return
    where = "" if os.path.isdir(folder) else ", which does not exist"
    message = (f"{len(missing)} of the {len(names)} images listed in {path} {_is(len(missing), 'is', 'are')} not in "
               f"{os.path.abspath(folder)}, the folder YOLOX reads them from{where}: the first is {missing[0]!r}")
    # another folder is suggested only where it holds more of the listed images than this one
    found = _folder_holding(data_dir, missing)
    if found is not None and len(names) - len(_missing(os.path.join(data_dir, found[0]), names)) > len(names) - len(missing):
        rel, count = found
        attr = image_dir_attr or "the exp attribute that names the image folder (train_image_dir or val_image_dir)"
        held = "all of them are" if count == len(missing) else f"{count} of them {_is(count, 'is', 'are')}"
        message += f"; {held} in {os.path.abspath(os.path.join(data_dir, rel))}: set {attr} {rel!r}"
    raise FileNotFoundError(message)


def _is(count: int, one: str, more: str) -> str:
    return one if count == 1 else more


def _folder_holding(data_dir: str, names: List[str]) -> Optional[Tuple[str, int]]:
    """The folder under data_dir (relative, at most _SEARCH_DEPTH deep) holding the first of
    names and most of the others, and how many it holds; None if none holds the first."""
    best: Optional[Tuple[str, int]] = None
    root_depth = os.path.abspath(data_dir).rstrip(os.sep).count(os.sep)
    for folder, subdirs, _ in os.walk(data_dir, followlinks=True):  # the depth limit ends link loops
        depth = os.path.abspath(folder).rstrip(os.sep).count(os.sep) - root_depth
        subdirs[:] = sorted(d for d in subdirs if not d.startswith(".")) if depth < _SEARCH_DEPTH else []
        if not os.path.isfile(os.path.join(folder, names[0])):
            continue
        count = len(names) - len(_missing(folder, names))
        if best is None or count > best[1]:
            best = (os.path.relpath(folder, data_dir), count)
    return best


# ----------------------------------------------------------------------------- Pascal VOC


def check_voc_dataset(data_dir: str, image_sets: Sequence[Tuple[str, str]], num_classes: int,
                      class_names: Sequence[str]) -> List[str]:
    """Check the VOC dataset YOLOX's ``VOCDetection(data_dir, image_sets)`` and ``voc_eval`` would
    read, with ``class_names`` as the names its objects may have, and ``num_classes``; return
    warnings. Every annotation of the image sets is parsed (YOLOX parses them all too)."""
    names = _check_class_names(class_names)
    warnings = check_num_classes(num_classes, len(names), f"class_names ({', '.join(names)})")
    if isinstance(image_sets, (str, bytes)) or not image_sets:
        raise ValueError(f"image_sets must be a non-empty list of (year, name) pairs such as [('2007', 'trainval')], "
                         f"got {image_sets!r}")
    unknown: Dict[str, str] = {}  # object name -> first annotation file holding it
    for pair in image_sets:
        if not (isinstance(pair, (tuple, list)) and len(pair) == 2 and all(isinstance(p, str) for p in pair)):
            raise ValueError(f"image_sets entries must be (year, name) string pairs such as ('2007', 'trainval'), "
                             f"got {pair!r}")
        year, name = pair
        root = os.path.abspath(os.path.join(data_dir, f"VOC{year}"))
        ids = _image_set_ids(data_dir, root, name)
        for sub, ext in (("Annotations", ".xml"), ("JPEGImages", ".jpg")):
            missing = _missing(os.path.join(root, sub), [i + ext for i in ids])
            if missing:
                raise FileNotFoundError(f"{len(missing)} of the {len(ids)} images of image set {name!r} "
                                        f"({_set_file(root, name)}) {_is(len(missing), 'has', 'have')} no "
                                        f"{sub}/<id>{ext}: the first is {os.path.join(root, sub, missing[0])}")
        for i in ids:
            xml = os.path.join(root, "Annotations", i + ".xml")
            for obj_name in _voc_object_names(xml):
                if obj_name not in names:
                    unknown.setdefault(obj_name, xml)
    if unknown:
        first = next(iter(unknown.items()))
        raise ValueError(f"object names not in class_names: {', '.join(map(repr, unknown))} (the first in {first[1]}); "
                         f"class_names are {', '.join(map(repr, names))}")
    return warnings


def _check_class_names(class_names: Sequence[str]) -> List[str]:
    if isinstance(class_names, str) or not class_names or not all(isinstance(n, str) and n for n in class_names):
        raise ValueError(f"class_names must be a non-empty list of names, got {class_names!r}")
    names = list(class_names)
    if len(set(names)) != len(names):
        twice = sorted({n for n in names if names.count(n) > 1})
        raise ValueError(f"class_names must be distinct; named more than once: {', '.join(map(repr, twice))}")
    return names


def _set_file(root: str, name: str) -> str:
    return os.path.join(root, "ImageSets", "Main", f"{name}.txt")


def _image_set_ids(data_dir: str, root: str, name: str) -> List[str]:
    """The ids of an image set file as YOLOX reads them (each line, stripped)."""
    path = _set_file(root, name)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"VOC image set not found: {os.path.abspath(path)} does not exist; "
                                f"{_what_is_there(data_dir, root)}. Point data_dir at the folder holding "
                                f"VOC<year> (opts: data_dir PATH), or generate the shapes dataset in VOC layout: "
                                f"{MAKE_SHAPES_VOC}")
    with open(path, encoding="utf-8") as f:
        lines = [line.strip() for line in f]
    if not lines:
        raise ValueError(f"VOC image set {path} lists no images")
    if "" in lines:
        raise ValueError(f"line {lines.index('') + 1} of VOC image set {path} is blank; "
                         f"YOLOX reads every line as an image id")
    return lines


def _what_is_there(data_dir: str, root: str) -> str:
    """What exists instead: the image set files of root, else the VOC<year> folders of data_dir."""
    main = os.path.join(root, "ImageSets", "Main")
    if os.path.isdir(main):
        sets = sorted(f[:-4] for f in os.listdir(main) if f.endswith(".txt"))
        return f"the image sets in {main} are: {', '.join(sets) if sets else 'none'}"
    years = sorted(d for d in os.listdir(data_dir) if d.startswith("VOC")) if os.path.isdir(data_dir) else []
    if years:
        return f"{os.path.abspath(data_dir)} holds {', '.join(years)}"
    return f"{os.path.abspath(data_dir)} holds no VOC<year> folder"


def _voc_object_names(path: str) -> List[str]:
    """The object names of one annotation, after checking the fields YOLOX's VOCDetection and
    voc_eval read: size/width and height; each object's name, pose, truncated, difficult and a
    bndbox of whole numbers (voc_eval reads them with ``int()``)."""
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as err:
        raise ValueError(f"{path} is not valid XML: {err}") from None
    for field in ("size/width", "size/height"):
        _whole_number(path, root, field)
    names = []
    for k, obj in enumerate(root.iter("object"), 1):
        for field in ("name", "pose", "truncated", "difficult"):
            if obj.find(field) is None or obj.find(field).text is None:
                raise ValueError(f"object {k} of {path} has no <{field}>; YOLOX reads name, pose, truncated, "
                                 f"difficult and bndbox of every object")
        for field in ("truncated", "difficult", "bndbox/xmin", "bndbox/ymin", "bndbox/xmax", "bndbox/ymax"):
            _whole_number(path, obj, field, f"object {k} of ")
        name = obj.find("name").text
        if name != name.strip():  # training strips it, voc_eval compares it as written
            raise ValueError(f"object {k} of {path} has the name {name!r}, with spaces around it; "
                             f"YOLOX's voc_eval compares names as written")
        names.append(name)
    return names


def _whole_number(path: str, element: ET.Element, field: str, what: str = "") -> None:
    node = element.find(field)
    text = None if node is None else (node.text or "").strip()
    if text is None or not re.fullmatch(r"[+-]?[0-9]+", text):
        shown = "missing" if text is None else repr(text)
        raise ValueError(f"<{field}> of {what}{path} must be a whole number (YOLOX's VOC code reads it with int()), "
                         f"got {shown}")


# ----------------------------------------------------------------------------- sizes


def size_override_note(exp: Any) -> Optional[str]:
    """One line saying which sizes training draws when the exp's ``random_size`` overrides
    ``input_size`` and ``multiscale_range``, else None.

    YOLOX's ``random_resize`` (every 10 iterations) draws ``s`` from ``random_size`` (inclusive)
    whenever the exp has that attribute, else from ``input_size[0] // 32 +- multiscale_range``,
    and trains at ``(32 s, 32 int(s * width / height))``. YOLOX's nano and tiny settings set
    ``random_size`` (10, 20). None counts as unset here; YOLOX's random_resize asks only whether
    the attribute exists (and fails on None), so an exp that allows None must treat it as unset.
    """
    random_size = getattr(exp, "random_size", None)
    if random_size is None:
        return None
    if (not isinstance(random_size, (tuple, list)) or len(random_size) != 2
            or not all(isinstance(v, int) and not isinstance(v, bool) for v in random_size)
            or not 1 <= random_size[0] <= random_size[1]):
        raise ValueError(f"random_size must be two integers (low, high) with 1 <= low <= high, got {random_size!r}")
    low, high = random_size
    default = default_size_factors(exp.input_size, exp.multiscale_range)
    if (low, high) == default:
        return None
    note = (f"training draws sizes {_size_range(low, high, exp.input_size)} from random_size {tuple(random_size)}; "
            f"input_size {tuple(exp.input_size)} and multiscale_range {exp.multiscale_range} do not apply")
    if default[0] >= 1:
        note += f" (they would give {_size_range(*default, exp.input_size)}, as random_size {default} does)"
    return note


def _size_range(low: int, high: int, input_size: Tuple[int, int]) -> str:
    """The sizes YOLOX's random_resize draws for random_size (low, high), as text."""
    first, last = drawn_size(low, input_size), drawn_size(high, input_size)
    if input_size[0] == input_size[1]:
        return f"{first[0]} px" if low == high else f"{first[0]}-{last[0]} px"
    return f"{first[0]}x{first[1]} px" if low == high else f"{first[0]}x{first[1]} to {last[0]}x{last[1]} px"

"""Generate a small synthetic detection dataset of geometric shapes, in COCO or Pascal VOC layout.

The COCO layout is the one ``yolox.data.COCODataset`` reads::

    OUT/annotations/instances_train2017.json
    OUT/annotations/instances_val2017.json
    OUT/train2017/000000000001.jpg ...
    OUT/val2017/000000000001.jpg ...

The VOC layout is the one ``yolox.data.VOCDetection`` and YOLOX's ``voc_eval`` read (OUT is a VOC
exp's ``data_dir``); the train split is the image set ``trainval``, the val split ``test``::

    OUT/VOC2007/ImageSets/Main/trainval.txt, test.txt
    OUT/VOC2007/JPEGImages/train_000000000001.jpg ..., val_000000000001.jpg ...
    OUT/VOC2007/Annotations/train_000000000001.xml ...

Both formats write the same images and boxes: one generator, a writer per format.

Every image has a textured background (gradient, low-frequency colour noise,
clutter lines, sensor noise) and 2-8 filled, rotated shapes of 4 classes
whose sizes run from 8 px up to half the image side.  Later shapes may cover
earlier ones, but a placement that would hide more than 40% of an existing
shape is rejected, so every drawn shape is labelled and every label is
honestly visible.  Boxes are the full (amodal) extent of the shape in COCO
``[x, y, w, h]`` pixel-edge coordinates; ``area`` is the visible pixel count,
as COCO's mask area would be.  VOC's boxes are the same, as VOC writes them: whole
1-based pixel indices of the first and last pixel (``voc_box``).

Image ``i`` of a split is drawn from its own generator seeded by
``(seed, split, i)``, so it does not depend on how many images come before
it: ``train=8`` yields the first 8 images of ``train=512``.

``make_shapes`` writes it; ``python -m yolox_attn.tools.make_shapes --out datasets/shapes
[--format voc]`` is its command line.
"""

from __future__ import annotations

import json
import math
import numbers
import os
import shutil
import tempfile
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

CLASS_NAMES: tuple[str, ...] = ("circle", "triangle", "rectangle", "cross")

# Defaults sized for a few minutes of CPU training of YOLOX-nano.
DEFAULT_TRAIN = 512
DEFAULT_VAL = 128
DEFAULT_SIZE = 320
DEFAULT_SEED = 0

MIN_IMAGE_SIZE = 32
MAX_IMAGE_SIZE = 2048
MAX_IMAGES = 1_000_000
MIN_OBJECTS, MAX_OBJECTS = 2, 8
MIN_OBJECT_PX = 8.0  # longest box side of the smallest object
MIN_VISIBLE = 0.6  # reject placements that hide more than 40% of a shape
MIN_COLOUR_DIST = 100.0  # L2 distance in BGR between a shape and what it covers
MIN_LUMA_GAP = 35.0  # and their luminance difference (0..255)
PLACEMENT_TRIES = 30
JPEG_QUALITY = 92

SPLITS: tuple[str, ...] = ("train2017", "val2017")
VOC_YEAR = "2007"
VOC_IMAGE_SETS: tuple[str, ...] = ("trainval", "test")  # VOC's names of the two SPLITS
DESCRIPTION = "yolox-attn synthetic shapes"

_AA_SHIFT = 4  # cv2 fixed-point bits: sub-pixel vertex positions
_AA_SCALE = 1 << _AA_SHIFT
_SUPERSAMPLE = 4  # render shapes at 4x and average down (exact-ish coverage)
_CV2_CIRCLE_OVERSHOOT = 0.7  # drawing px by which a filled LINE_AA cv2 circle exceeds its radius (measured)


@dataclass(frozen=True)
class Shape:
    """One shape in pixel-edge coordinates (pixel i spans [i, i + 1))."""

    cls: int
    verts: np.ndarray | None  # (N, 2) polygon, None for a circle
    cx: float = 0.0
    cy: float = 0.0
    radius: float = 0.0

    def bbox_xyxy(self) -> tuple[float, float, float, float]:
        """Full extent of the geometric shape."""
        if self.verts is None:
            r = self.radius
            return self.cx - r, self.cy - r, self.cx + r, self.cy + r
        lo = self.verts.min(axis=0)
        hi = self.verts.max(axis=0)
        return float(lo[0]), float(lo[1]), float(hi[0]), float(hi[1])


# ----------------------------------------------------------------------------
# Geometry and rasterisation
# ----------------------------------------------------------------------------


def _unit_polygon(cls: int, rng: np.random.Generator) -> np.ndarray:
    """Unrotated polygon of a class centred on the origin, about unit radius."""
    name = CLASS_NAMES[cls]
    if name == "triangle":
        # Jitter angles and radii so triangles are not all equilateral.
        ang = np.deg2rad(90.0 + np.array([0.0, 120.0, 240.0]) + rng.uniform(-12, 12, 3))
        rad = rng.uniform(0.85, 1.0, 3)
        return np.stack([rad * np.cos(ang), rad * np.sin(ang)], axis=1)
    if name == "rectangle":
        a = rng.uniform(0.5, 1.0)
        return np.array([[-1, -a], [1, -a], [1, a], [-1, a]], dtype=np.float64)
    if name == "cross":
        t = rng.uniform(0.28, 0.4)  # half arm width relative to half arm length
        return np.array(
            [[-t, -1], [t, -1], [t, -t], [1, -t], [1, t], [t, t],
             [t, 1], [-t, 1], [-t, t], [-1, t], [-1, -t], [-t, -t]],
            dtype=np.float64,
        )
    raise ValueError(f"no polygon for class {name!r}")


def sample_shape(rng: np.random.Generator, size: int) -> Shape:
    """Random shape whose longest box side is log-uniform in [8, size / 2]."""
    lo, hi = MIN_OBJECT_PX, max(MIN_OBJECT_PX, size / 2.0)
    extent = float(math.exp(rng.uniform(math.log(lo), math.log(hi))))
    cls = int(rng.integers(len(CLASS_NAMES)))
    if CLASS_NAMES[cls] == "circle":
        r = extent / 2.0
        return Shape(cls, None, cx=float(rng.uniform(r, size - r)),
                     cy=float(rng.uniform(r, size - r)), radius=r)
    poly = _unit_polygon(cls, rng)
    theta = rng.uniform(0.0, 2.0 * math.pi)
    c, s = math.cos(theta), math.sin(theta)
    poly = poly @ np.array([[c, s], [-s, c]])
    poly -= poly.min(axis=0)
    poly *= extent / poly.max()  # longest side of the box becomes `extent`
    span = poly.max(axis=0)
    # Place so the whole box lies inside the image.
    off = np.array([rng.uniform(0.0, size - span[0]), rng.uniform(0.0, size - span[1])])
    return Shape(cls, poly + off)


def patch_bounds(shape: Shape, size: int) -> tuple[int, int, int, int]:
    """Integer pixel window (x0, y0, x1, y1) that holds the shape and its AA fringe."""
    bx0, by0, bx1, by1 = shape.bbox_xyxy()
    return (max(0, math.floor(bx0) - 1), max(0, math.floor(by0) - 1),
            min(size, math.ceil(bx1) + 1), min(size, math.ceil(by1) + 1))


def rasterize(shape: Shape, x0: int, y0: int, x1: int, y1: int) -> np.ndarray:
    """Anti-aliased coverage (uint8 0..255) of the shape over window [x0, x1) x [y0, y1)."""
    h, w = y1 - y0, x1 - x0
    # cv2's own LINE_AA fill grows shapes by ~0.5 px per side (+12-28% area on
    # small shapes), so draw at _SUPERSAMPLE x and box-filter down: coverage
    # then matches the geometry, and so the box, to ~0.1 px.
    hi = np.zeros((h * _SUPERSAMPLE, w * _SUPERSAMPLE), np.uint8)
    # cv2 puts integer coordinates on pixel centres, hence the -0.5 to map
    # pixel-edge coordinates (those of the JSON boxes) onto them.
    if shape.verts is None:
        centre = (round(((shape.cx - x0) * _SUPERSAMPLE - 0.5) * _AA_SCALE),
                  round(((shape.cy - y0) * _SUPERSAMPLE - 0.5) * _AA_SCALE))
        radius = round((shape.radius * _SUPERSAMPLE - _CV2_CIRCLE_OVERSHOOT) * _AA_SCALE)
        cv2.circle(hi, centre, radius, 255, -1, cv2.LINE_AA, _AA_SHIFT)
    else:
        pts = np.round(((shape.verts - np.array([x0, y0])) * _SUPERSAMPLE - 0.5) * _AA_SCALE).astype(np.int32)
        cv2.fillPoly(hi, [pts], 255, cv2.LINE_AA, _AA_SHIFT)
    return cv2.resize(hi, (w, h), interpolation=cv2.INTER_AREA)


# ----------------------------------------------------------------------------
# Image synthesis
# ----------------------------------------------------------------------------


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    """Textured float32 BGR background: gradient + colour noise + clutter lines."""
    c0, c1 = rng.uniform(0, 255, 3), rng.uniform(0, 255, 3)
    theta = rng.uniform(0.0, 2.0 * math.pi)
    coords = np.arange(size, dtype=np.float32) / max(1, size - 1)
    t = np.cos(theta) * coords[None, :] + np.sin(theta) * coords[:, None]
    t = (t - t.min()) / max(float(t.max() - t.min()), 1e-6)
    bg = c0.astype(np.float32) + (c1 - c0).astype(np.float32) * t[..., None]
    # Low-frequency colour blobs, then a finer texture, at random strengths.
    for cells, amp in ((int(rng.integers(3, 9)), rng.uniform(10, 45)),
                       (max(4, size // int(rng.integers(4, 12))), rng.uniform(0, 18))):
        noise = rng.standard_normal((cells, cells, 3), dtype=np.float32)
        bg += cv2.resize(noise, (size, size), interpolation=cv2.INTER_CUBIC) * np.float32(amp)
    canvas = np.clip(bg, 0, 255).astype(np.uint8)
    # Straight clutter lines so edges alone do not give shapes away.
    for _ in range(int(rng.integers(0, 9))):
        p1 = tuple(int(v) for v in rng.integers(-size // 4, size + size // 4, 2))
        p2 = tuple(int(v) for v in rng.integers(-size // 4, size + size // 4, 2))
        colour = tuple(float(v) for v in rng.uniform(0, 255, 3))
        cv2.line(canvas, p1, p2, colour, int(rng.integers(1, 3)), cv2.LINE_AA)
    return canvas.astype(np.float32)


def _luma(bgr: np.ndarray) -> float:
    """Rec.601 luminance of a BGR colour."""
    return float(0.114 * bgr[0] + 0.587 * bgr[1] + 0.299 * bgr[2])


def _pick_colour(rng: np.random.Generator, under: np.ndarray) -> np.ndarray:
    """Random BGR colour that stands out from the mean of the pixels it will cover.

    Both a colour distance and a luminance gap are required: hue-only contrast
    (e.g. light cyan on light green) makes small shapes nearly invisible.
    """
    ref = under.reshape(-1, 3).mean(axis=0)
    for _ in range(32):
        col = rng.uniform(0, 255, 3)
        if np.linalg.norm(col - ref) >= MIN_COLOUR_DIST and abs(_luma(col) - _luma(ref)) >= MIN_LUMA_GAP:
            return col
    # Rare fallback: a random dark or light colour, whichever is farther in luminance.
    return rng.uniform(0, 60, 3) if _luma(ref) >= 127.5 else rng.uniform(195, 255, 3)


def _composite(img: np.ndarray, alpha: np.ndarray, colour: np.ndarray, window: tuple[int, int, int, int],
               rng: np.random.Generator) -> None:
    """Blend a softly shaded fill into img[window] using the AA coverage as alpha."""
    x0, y0, x1, y1 = window
    h, w = alpha.shape
    # A mild linear shading keeps fills from being perfectly flat.
    theta = rng.uniform(0.0, 2.0 * math.pi)
    amp = rng.uniform(0.0, 30.0)
    ramp = (math.cos(theta) * (np.arange(w, dtype=np.float32)[None, :] - w / 2)
            + math.sin(theta) * (np.arange(h, dtype=np.float32)[:, None] - h / 2)) / max(w, h)
    fill = colour.astype(np.float32) + (amp * ramp)[..., None]
    a = (alpha.astype(np.float32) / 255.0)[..., None]
    region = img[y0:y1, x0:x1]
    region *= 1.0 - a
    region += a * fill


def render_image(rng: np.random.Generator, size: int) -> tuple[np.ndarray, list[dict[str, Any]]]:
    """Draw one image; return it (uint8 BGR) and its objects (class, bbox xyxy, visible px)."""
    img = _background(rng, size)
    owner = np.full((size, size), -1, np.int16)  # index of the top shape at each pixel
    shapes: list[Shape] = []
    full_px: list[int] = []
    visible_px: list[int] = []
    for _ in range(int(rng.integers(MIN_OBJECTS, MAX_OBJECTS + 1))):
        for _attempt in range(PLACEMENT_TRIES):
            shape = sample_shape(rng, size)
            x0, y0, x1, y1 = patch_bounds(shape, size)
            alpha = rasterize(shape, x0, y0, x1, y1)
            mask = alpha >= 128
            n_px = int(mask.sum())
            if n_px == 0:
                continue
            win_owner = owner[y0:y1, x0:x1]
            covered = win_owner[mask]
            hidden = np.bincount(covered[covered >= 0], minlength=len(shapes))
            if any((visible_px[k] - hidden[k]) < MIN_VISIBLE * full_px[k] for k in range(len(shapes))):
                continue  # would bury an existing shape; labels must stay honest
            colour = _pick_colour(rng, img[y0:y1, x0:x1][mask])
            _composite(img, alpha, colour, (x0, y0, x1, y1), rng)
            for k in range(len(shapes)):
                visible_px[k] -= int(hidden[k])
            win_owner[mask] = len(shapes)
            shapes.append(shape)
            full_px.append(n_px)
            visible_px.append(n_px)
            break
    if rng.random() < 0.3:  # slight defocus on some images
        img = cv2.GaussianBlur(img, (3, 3), float(rng.uniform(0.5, 1.0)))
    img += rng.standard_normal(img.shape, dtype=np.float32) * np.float32(rng.uniform(2.0, 8.0))
    out = np.clip(np.rint(img), 0, 255).astype(np.uint8)
    objects = [{"cls": s.cls, "xyxy": s.bbox_xyxy(), "visible_px": v} for s, v in zip(shapes, visible_px)]
    return out, objects


def _image_rng(seed: int, split_index: int, image_index: int) -> np.random.Generator:
    """Independent generator per image so image i ignores how many come before it."""
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(split_index, image_index)))


# ----------------------------------------------------------------------------
# Dataset writing
# ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Label:
    """One labelled object of a written image."""

    cls: int  # index into CLASS_NAMES
    xywh: tuple[float, float, float, float]  # COCO box: pixel edges, inside the image, 2 decimals
    visible_px: int


def labelled_images(split_index: int, count: int, size: int,
                    seed: int) -> Iterator[tuple[int, np.ndarray, list[Label]]]:
    """The images of one split as (image number from 1, uint8 BGR pixels, labels): what every
    format writes."""
    for i in range(count):
        img, objects = render_image(_image_rng(seed, split_index, i), size)
        labels = []
        for obj in objects:
            bx0, by0, bx1, by1 = (min(max(v, 0.0), float(size)) for v in obj["xyxy"])
            x, y = round(bx0, 2), round(by0, 2)
            w, h = round(round(bx1, 2) - x, 2), round(round(by1, 2) - y, 2)
            labels.append(Label(obj["cls"], (x, y, w, h), obj["visible_px"]))
        yield i + 1, img, labels


def voc_box(xywh: tuple[float, float, float, float]) -> tuple[int, int, int, int]:
    """VOC's ``(xmin, ymin, xmax, ymax)`` of a pixel-edge box: 1-based indices of its first and
    last pixels, so the edges [x0, x1) become x0 + 1 .. x1 (rounded to whole pixels).

    YOLOX's VOCDetection subtracts 1 from each, and its VOC evaluation adds 1 to predictions
    before comparing them with these.
    """
    x, y, w, h = xywh
    x0, y0, x1, y1 = (math.floor(v + 0.5) for v in (x, y, x + w, y + h))
    return x0 + 1, y0 + 1, max(x1, x0 + 1), max(y1, y0 + 1)


def _write_image(path: Path, img: np.ndarray) -> None:
    """Encode as JPEG and write; cv2.imwrite fails silently, so check explicitly."""
    ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    if not ok:
        raise OSError(f"could not encode {path}")
    path.write_bytes(buf.tobytes())


class _CocoSplit:
    """One split in COCO layout: ``<split>/<12-digit id>.jpg`` and ``annotations/instances_<split>.json``."""

    def __init__(self, root: Path, split_index: int, size: int, seed: int) -> None:
        self.root, self.size, self.seed = root, size, seed
        self.name = SPLITS[split_index]
        (root / "annotations").mkdir(exist_ok=True)
        (root / self.name).mkdir()
        self.images: list[dict[str, Any]] = []
        self.annotations: list[dict[str, Any]] = []

    def add(self, image_id: int, img: np.ndarray, labels: list[Label]) -> None:
        file_name = f"{image_id:012d}.jpg"
        _write_image(self.root / self.name / file_name, img)
        self.images.append({"id": image_id, "file_name": file_name, "width": self.size, "height": self.size})
        for label in labels:
            self.annotations.append({
                "id": len(self.annotations) + 1,
                "image_id": image_id,
                "category_id": label.cls + 1,
                "bbox": list(label.xywh),
                "area": float(label.visible_px),
                "iscrowd": 0,
            })

    def close(self) -> None:
        coco = {
            "info": {"description": DESCRIPTION, "version": "1", "seed": self.seed, "size": self.size,
                     "split": self.name},
            "licenses": [],
            "images": self.images,
            "annotations": self.annotations,
            "categories": [{"id": k + 1, "name": n, "supercategory": "shape"} for k, n in enumerate(CLASS_NAMES)],
        }
        (self.root / "annotations" / f"instances_{self.name}.json").write_text(json.dumps(coco, separators=(",", ":")))


class _VocSplit:
    """One split in Pascal VOC layout under ``VOC<year>/``: ``JPEGImages/<id>.jpg``,
    ``Annotations/<id>.xml`` and the image set file ``ImageSets/Main/<trainval|test>.txt``.

    Both splits share the image folders, so an id starts with its split (``train_000000000001``).
    """

    def __init__(self, root: Path, split_index: int, size: int, seed: int) -> None:
        self.size = size
        self.name = VOC_IMAGE_SETS[split_index]
        self.prefix = SPLITS[split_index].removesuffix("2017")
        self.base = root / f"VOC{VOC_YEAR}"
        for folder in ("JPEGImages", "Annotations", "ImageSets/Main"):
            (self.base / folder).mkdir(parents=True, exist_ok=True)
        self.ids: list[str] = []

    def add(self, image_id: int, img: np.ndarray, labels: list[Label]) -> None:
        vid = f"{self.prefix}_{image_id:012d}"
        _write_image(self.base / "JPEGImages" / f"{vid}.jpg", img)
        (self.base / "Annotations" / f"{vid}.xml").write_text(self._xml(vid, labels))
        self.ids.append(vid)

    def close(self) -> None:
        (self.base / "ImageSets" / "Main" / f"{self.name}.txt").write_text("".join(f"{i}\n" for i in self.ids))

    def _xml(self, vid: str, labels: list[Label]) -> str:
        """The annotation with every field YOLOX's VOCDetection and voc_eval read."""
        root = ET.Element("annotation")
        _element(root, "folder", f"VOC{VOC_YEAR}")
        _element(root, "filename", f"{vid}.jpg")
        _element(_element(root, "source"), "database", DESCRIPTION)
        size = _element(root, "size")
        for tag, value in (("width", self.size), ("height", self.size), ("depth", 3)):
            _element(size, tag, str(value))
        _element(root, "segmented", "0")
        for label in labels:
            obj = _element(root, "object")
            _element(obj, "name", CLASS_NAMES[label.cls])
            _element(obj, "pose", "Unspecified")
            _element(obj, "truncated", "0")  # sample_shape places every shape wholly inside the image
            _element(obj, "difficult", "0")
            box = _element(obj, "bndbox")
            for tag, value in zip(("xmin", "ymin", "xmax", "ymax"), voc_box(label.xywh)):
                _element(box, tag, str(value))
        ET.indent(root)
        return ET.tostring(root, encoding="unicode") + "\n"


def _element(parent: ET.Element, tag: str, text: str | None = None) -> ET.Element:
    """A new child of parent, with its text."""
    child = ET.SubElement(parent, tag)
    child.text = text
    return child


_WRITERS = {"coco": _CocoSplit, "voc": _VocSplit}
FORMATS: tuple[str, ...] = tuple(_WRITERS)


def _write_split(root: Path, data_format: str, split_index: int, count: int, size: int,
                 seed: int) -> tuple[str, dict[str, Any]]:
    """Render one split into root in the given format; return its name and counts."""
    writer = _WRITERS[data_format](root, split_index, size, seed)
    objects = 0
    per_class = [0] * len(CLASS_NAMES)
    for image_id, img, labels in labelled_images(split_index, count, size, seed):
        writer.add(image_id, img, labels)
        objects += len(labels)
        for label in labels:
            per_class[label.cls] += 1
    writer.close()
    return writer.name, {"images": count, "objects": objects,
                         "per_class": {n: per_class[k] for k, n in enumerate(CLASS_NAMES)}}



def _check_int(name: str, value: object, lo: int, hi: int) -> int:
    """Return value as int or raise ValueError naming the option and the allowed range."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ValueError(f"{name} must be an integer in [{lo}, {hi}], got {value!r}")
    if not lo <= int(value) <= hi:
        raise ValueError(f"{name} must be in [{lo}, {hi}], got {value!r}")
    return int(value)


def _prepare_out(out: Path, force: bool) -> list[Path]:
    """Check the output location; create missing parents and return those created."""
    if out.exists() or out.is_symlink():
        if not out.is_dir():
            raise ValueError(f"--out {out} exists and is not a directory")
        if any(out.iterdir()) and not force:
            raise ValueError(f"--out {out} exists and is not empty; pass --force (force=True) to replace it")
    created: list[Path] = []
    parent = out.parent
    missing = [p for p in [parent, *parent.parents] if not p.exists()]
    try:
        for p in reversed(missing):
            p.mkdir()
            created.append(p)
    except OSError as exc:
        _remove_dirs(created)
        raise ValueError(f"cannot create the parent folder of --out {out}: {exc}") from exc
    if not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
        _remove_dirs(created)
        raise ValueError(f"the parent folder of --out {out} is not a writable directory")
    return created


def _remove_dirs(dirs: list[Path]) -> None:
    """Remove folders this run created (innermost first), if still empty."""
    for d in reversed(dirs):
        try:
            d.rmdir()
        except OSError:
            pass


def _move_into_place(tmp: Path, out: Path) -> None:
    """Rename the finished temp folder to out, replacing an old one only after success."""
    if not out.exists():
        os.rename(tmp, out)
        return
    if not any(out.iterdir()):
        out.rmdir()
        os.rename(tmp, out)
        return
    old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
    old.rmdir()
    os.rename(out, old)
    try:
        os.rename(tmp, out)
    except OSError:
        os.rename(old, out)  # put the previous dataset back
        raise
    shutil.rmtree(old, ignore_errors=True)


def make_shapes(
    out_dir: str | os.PathLike[str],
    train: int = DEFAULT_TRAIN,
    val: int = DEFAULT_VAL,
    size: int = DEFAULT_SIZE,
    seed: int = DEFAULT_SEED,
    force: bool = False,
    data_format: str = "coco",
) -> dict[str, Any]:
    """Write the shapes dataset to out_dir in ``data_format`` (one of FORMATS: "coco", "voc")
    and return a summary of counts.

    Raises ValueError for bad arguments before anything is written.  The data
    are built in a hidden temporary sibling of out_dir and renamed into place
    at the end, so a failure leaves neither out_dir nor the temp folder.
    """
    train = _check_int("--train", train, 1, MAX_IMAGES)
    val = _check_int("--val", val, 1, MAX_IMAGES)
    size = _check_int("--size", size, MIN_IMAGE_SIZE, MAX_IMAGE_SIZE)
    seed = _check_int("--seed", seed, 0, 2**63 - 1)
    if data_format not in FORMATS:
        raise ValueError(f"--format must be one of {', '.join(FORMATS)}, got {data_format!r}")
    out = Path(out_dir).expanduser().absolute()
    created = _prepare_out(out, force)
    tmp: Path | None = None
    try:
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o777 & ~umask)  # mkdtemp makes 0700; give the usual mode
        splits = dict(_write_split(tmp, data_format, k, count, size, seed) for k, count in enumerate((train, val)))
        _move_into_place(tmp, out)
    except BaseException:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
        _remove_dirs(created)
        raise
    return {"out_dir": str(out), "format": data_format, "size": size, "seed": seed, "classes": list(CLASS_NAMES),
            "splits": splits}


def format_summary(summary: dict[str, Any]) -> str:
    """Human-readable multi-line summary of make_shapes' result."""
    lines = [f"wrote {summary['out_dir']} ({summary['format']} layout, size {summary['size']}, seed {summary['seed']})"]
    for name, s in summary["splits"].items():
        per = ", ".join(f"{k} {v}" for k, v in s["per_class"].items())
        lines.append(f"  {name}: {s['images']} images, {s['objects']} objects "
                     f"({s['objects'] / s['images']:.1f}/image): {per}")
    return "\n".join(lines)

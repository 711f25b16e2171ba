"""Images through the predictor: detections, the attention maps of each attended level, and their
pictures saved."""

import os
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

import cv2
import numpy as np
import torch
from loguru import logger
from torch import nn

from .attention_maps import AttentionRecorder, normalize_map
from .figure import ImagePoint, attention_figure, map_in_image
# IMAGE_EXT, get_image_list: this module was their home
from .images import IMAGE_EXT, get_image_list, picture_path, write_picture  # noqa: F401
from .predictor import Predictor, boxes_in_image



@dataclass
class ImageResult:
    """What the demo produced for one image."""

    image_path: str
    detections: Optional[np.ndarray]  # (N, 7): x0, y0, x1, y1 (image pixels), obj, cls conf, class
    detection_file: Optional[str] = None
    attention_file: Optional[str] = None
    maps: Dict[str, np.ndarray] = field(default_factory=dict)  # level -> (H, W) in [0, 1]
    query_point: Optional[ImagePoint] = None


def query_point(output: Optional[torch.Tensor], info: Dict, requested: Optional[ImagePoint]) -> Tuple[ImagePoint, str]:
    """The CCA/non-local query pixel in image coordinates, clamped into the image, and its origin:
    ``requested``, else the centre of the most confident detection, else the image centre."""
    w, h = info["width"], info["height"]
    if requested is not None:
        point, origin = requested, "--attn-pixel"
    elif output is not None and len(output):
        scores = torch.nan_to_num(output[:, 4].float() * output[:, 5].float(), nan=-1.0)
        box = boxes_in_image(output[scores.argmax()][None], info)[0]
        point, origin = (float(box[0] + box[2]) / 2, float(box[1] + box[3]) / 2), "top detection"
    else:
        point, origin = ((w - 1) / 2, (h - 1) / 2), "image centre"
    clamped = (min(max(point[0], 0.0), w - 1.0), min(max(point[1], 0.0), h - 1.0))
    if clamped != point:
        logger.warning(f"query pixel {point} is outside the {w}x{h} image; using {clamped}")
    return clamped, origin


def grid_pixel(point: ImagePoint, info: Dict, test_size: Tuple[int, int], grid: Tuple[int, int]) -> Tuple[int, int]:
    """(row, col) of the feature cell that holds image point (x, y) after the letterbox."""
    rows, cols = grid
    x, y = point[0] * info["ratio"], point[1] * info["ratio"]  # letterboxed (top-left aligned) pixels
    row = int(y * rows / test_size[0])
    col = int(x * cols / test_size[1])
    return min(max(row, 0), rows - 1), min(max(col, 0), cols - 1)


def attention_modules(model: nn.Module) -> Dict[str, nn.Module]:
    """An ``AttentionPAFPN``'s per-level modules as a dict: ``model.backbone.attention`` by level,
    then those at the neck position (``neck_attention``) as ``"neck <level>"``."""
    neck = getattr(model, "backbone", None)
    modules = getattr(neck, "attention", None)
    if not isinstance(modules, nn.ModuleDict):
        raise SystemExit("--attention-maps needs a model whose neck is yolox_attn's AttentionPAFPN")
    found = dict(modules.items())
    found.update({f"neck {lvl}": m for lvl, m in getattr(neck, "neck_attention", {}).items()})
    if not found:
        raise SystemExit("--attention-maps: the model has no attended levels (attention_levels is empty)")
    return found


def process_image(predictor: Predictor, img: np.ndarray, path: str, recorder: Optional[AttentionRecorder],
                  pixel: Optional[ImagePoint]) -> Tuple[ImageResult, np.ndarray, Optional[np.ndarray]]:
    """Detect on one BGR image; return the result, the detection picture and the attention figure."""
    output, info = predictor.inference(img)
    dets = None
    if output is not None:
        dets = output.float().cpu().numpy()
        dets[:, :4] /= info["ratio"]
    result = ImageResult(path, dets)
    picture = predictor.visual(output, info, predictor.confthre)
    if recorder is None:
        return result, picture, None
    point, origin = query_point(output, info, pixel)
    result.query_point = point
    described = recorder.maps(lambda _, grid: grid_pixel(point, info, predictor.test_size, grid))
    ranges = {}
    for level, amap in described.items():
        values = map_in_image(amap.values[0].cpu().numpy(), info, predictor.test_size)
        ranges[level] = (float(np.nanmin(values)), float(np.nanmax(values)))
        result.maps[level] = normalize_map(torch.from_numpy(values)[None])[0].numpy()
    if any(m.uses_pixel for m in described.values()):
        logger.info(f"attention query pixel (x, y) = ({point[0]:.0f}, {point[1]:.0f}) from the {origin}")
    figure = attention_figure(picture, img, result.maps, described, point, 0 if dets is None else len(dets), ranges)
    return result, picture, figure


def image_demo(predictor: Predictor, files: Sequence[str], root: str, out_dir: Optional[str],
               attention_maps: bool = False, pixel: Optional[ImagePoint] = None) -> List[ImageResult]:
    """Run ``predictor`` on each image file; one ``ImageResult`` per image that could be read.

    With ``out_dir`` the detection picture (and with ``attention_maps`` the attention figure,
    ``<stem>_attention.png``) of each file goes there, at its path relative to ``root`` when
    ``root`` is a folder, so equal file names in two sub-folders do not collide.
    """
    recorder = AttentionRecorder(attention_modules(predictor.model)) if attention_maps else None
    results = []
    try:
        for path in files:
            img = cv2.imread(path)
            if img is None:
                logger.warning(f"cannot read {path} as an image; skipped")
                continue
            result, picture, figure = process_image(predictor, img, path, recorder, pixel)
            results.append(result)
            n = 0 if result.detections is None else len(result.detections)
            logger.info(f"{path}: {n} detection(s)")
            if out_dir is None:
                continue
            target = picture_path(path, root, out_dir)
            write_picture(target, picture)
            result.detection_file = target
            logger.info(f"Saving detection result in {target}")
            if figure is not None:
                result.attention_file = os.path.splitext(target)[0] + "_attention.png"
                write_picture(result.attention_file, figure)
                logger.info(f"Saving attention maps in {result.attention_file}")
    finally:
        if recorder is not None:
            recorder.remove()
    return results

"""YOLOX's image pipeline around an exported model, in numpy and OpenCV: the letterbox the model
expects, the decoding of raw outputs, score filtering with class-agnostic NMS (as the project's
demo runs ``yolox.utils.postprocess``), and the drawing of the detections.

The arithmetic follows YOLOX's (``ValTransform``, ``YOLOXHead.decode_outputs``, ``postprocess``);
tests compare each function with YOLOX's own. Raw outputs of an undertrained model can hold box
sizes whose exponential overflows float32: they decode to ``inf`` as in PyTorch, do not disturb
NMS, and are drawn clipped to the image.
"""

from typing import Optional, Sequence, Tuple

import cv2
import numpy as np

__all__ = ["PAD_VALUE", "letterbox", "decode_raw", "nms", "detect", "to_image", "draw"]

PAD_VALUE = 114  # YOLOX's letterbox fill
_HUGE = 1e15  # stands in for an infinite box edge in NMS: finite, so that overlaps stay defined


def letterbox(img: np.ndarray, size: Sequence[int]) -> Tuple[np.ndarray, float]:
    """A BGR image as the model input: (3, H, W) float32, scaled by ``ratio`` to fit ``size`` =
    (H, W) with its aspect ratio kept, at the top left of a canvas of ``PAD_VALUE``; and ``ratio``."""
    height, width = int(size[0]), int(size[1])
    ratio = min(height / img.shape[0], width / img.shape[1])
    resized = cv2.resize(img, (int(img.shape[1] * ratio), int(img.shape[0] * ratio)), interpolation=cv2.INTER_LINEAR)
    canvas = np.full((height, width, 3), PAD_VALUE, dtype=np.uint8)
    canvas[: resized.shape[0], : resized.shape[1]] = resized
    return np.ascontiguousarray(canvas.transpose(2, 0, 1), dtype=np.float32), ratio


def decode_raw(raw: np.ndarray, size: Sequence[int], strides: Sequence[int]) -> np.ndarray:
    """Raw head outputs (B, anchors, 5 + classes) to boxes (cx, cy, w, h) in input pixels.

    Anchors run over the strides in order, each a row-major (y, x) grid of ``size // stride``
    cells: a cell's centre offsets add to its (x, y) and scale by the stride, its log-sizes are
    exponentiated and scale by the stride. Objectness and class scores pass through.
    """
    grids, scales = [], []
    for stride in strides:
        rows, cols = int(size[0]) // stride, int(size[1]) // stride
        ys, xs = np.meshgrid(np.arange(rows), np.arange(cols), indexing="ij")
        grids.append(np.stack([xs.ravel(), ys.ravel()], axis=1))
        scales.append(np.full((rows * cols, 1), stride))
    grid = np.concatenate(grids).astype(raw.dtype)
    scale = np.concatenate(scales).astype(raw.dtype)
    if grid.shape[0] != raw.shape[1]:
        raise ValueError(f"{raw.shape[1]} anchors in the output, but an input of {tuple(size)} with strides "
                         f"{tuple(strides)} has {grid.shape[0]}")
    out = raw.copy()
    out[..., 0:2] = (raw[..., 0:2] + grid) * scale
    with np.errstate(over="ignore"):  # see the module's docstring
        out[..., 2:4] = np.exp(raw[..., 2:4]) * scale
    return out


def nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float) -> np.ndarray:
    """Indices of the boxes (x1, y1, x2, y2) greedy NMS keeps, by decreasing score; a box goes when
    its IoU (areas without YOLOX's old +1) with a kept, higher-scoring one exceeds the threshold."""
    boxes = np.nan_to_num(boxes.astype(np.float64), nan=0.0, posinf=_HUGE, neginf=-_HUGE)
    x1, y1, x2, y2 = boxes.T
    areas = (x2 - x1).clip(0) * (y2 - y1).clip(0)
    order = np.argsort(-scores, kind="stable")
    keep = []
    while order.size:
        i, rest = order[0], order[1:]
        keep.append(i)
        w = (np.minimum(x2[i], x2[rest]) - np.maximum(x1[i], x1[rest])).clip(0)
        h = (np.minimum(y2[i], y2[rest]) - np.maximum(y1[i], y1[rest])).clip(0)
        inter = w * h
        union = areas[i] + areas[rest] - inter
        iou = np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)
        order = rest[iou <= iou_threshold]
    return np.asarray(keep, dtype=np.int64)


def detect(pred: np.ndarray, conf: float, iou_threshold: float) -> np.ndarray:
    """One image's decoded predictions (anchors, 5 + classes) to detections (N, 7): x1, y1, x2, y2
    (input pixels), objectness, class score, class; those whose objectness x class score reaches
    ``conf``, after class-agnostic NMS, by decreasing score."""
    cls_conf = pred[:, 5:].max(axis=1)
    cls = pred[:, 5:].argmax(axis=1)
    score = pred[:, 4] * cls_conf
    mask = score >= conf
    half = pred[mask, 2:4] / 2
    boxes = np.concatenate([pred[mask, 0:2] - half, pred[mask, 0:2] + half], axis=1)
    dets = np.concatenate([boxes, pred[mask, 4:5], cls_conf[mask, None], cls[mask, None].astype(pred.dtype)], axis=1)
    return dets[nms(boxes, score[mask], iou_threshold)]


def to_image(dets: np.ndarray, ratio: float) -> np.ndarray:
    """Detections from input (letterboxed) pixels to the original image's pixels."""
    out = dets.copy()
    out[:, :4] /= ratio
    return out


def _colour(cls: int) -> Tuple[int, int, int]:
    """A distinct, saturated BGR colour per class (hues a golden-ratio step apart)."""
    hue = int((cls * 0.618034 % 1.0) * 179)
    bgr = cv2.cvtColor(np.uint8([[[hue, 220, 230]]]), cv2.COLOR_HSV2BGR)[0, 0]
    return int(bgr[0]), int(bgr[1]), int(bgr[2])


def draw(img: np.ndarray, dets: np.ndarray, names: Sequence[str], conf: Optional[float] = None) -> np.ndarray:
    """A copy of ``img`` with each detection (image pixels) drawn as a box labelled with its class
    name and score; boxes are clipped to the image (a huge or infinite box becomes its border)."""
    out = img.copy()
    h, w = out.shape[:2]
    for det in dets:
        score = float(det[4] * det[5])
        if conf is not None and score < conf:
            continue
        x1, y1, x2, y2 = (int(v) for v in np.clip(np.nan_to_num(det[:4]), 0, [w - 1, h - 1, w - 1, h - 1]))
        cls = int(det[6])
        colour = _colour(cls)
        cv2.rectangle(out, (x1, y1), (x2, y2), colour, 2)
        label = f"{names[cls] if cls < len(names) else cls} {score:.0%}"
        (tw, th), base = cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, 0.45, 1)
        top = max(y1 - th - base - 2, 0)
        cv2.rectangle(out, (x1, top), (x1 + tw + 2, top + th + base + 2), colour, -1)
        cv2.putText(out, label, (x1 + 1, top + th + 1), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
    return out

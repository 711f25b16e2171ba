"""Detection pictures (and attention heat maps) like ``python -m yolox.tools.demo image``.

    python -m yolox_attn.tools.demo image -f exps/example/yolox_nano_cam_shapes.py -c best_ckpt.pth \\
        --path datasets/shapes/val2017 --save_result --attention-maps

YOLOX's flags, its preprocessing (``ValTransform``, letterbox to ``test_size``), ``postprocess``
and its ``vis`` drawing; plus ``opts`` merged into the exp, ``--device auto`` (CUDA when there is
one, else the CPU), ``--output-dir`` and ``--attention-maps``. Only the ``image`` demo exists:
the machines this package targets are headless (opencv-python-headless has no window to show a
webcam in), so ``video``/``webcam`` are refused.

Pictures keep the input's size and go to ``--output-dir``, by default to
``<exp.output_dir>/<experiment name>/vis_res/<YYYY_mm_dd_HH_MM_SS>/`` as in YOLOX, mirroring the
sub-folders of a ``--path`` folder. ``--save_result`` saves them; ``--output-dir`` and
``--attention-maps`` imply it (nothing can be shown on a headless machine).

``--attention-maps`` also writes ``<stem>_attention.png`` per image: the detections, then one
panel per attended level (left to right, in the neck's order), each a heat map on the input image
(min-max scaled over the image region, JET colours, half blended) with a colour scale at its
right edge whose ends are labelled with the map's minimum and maximum, titled with the level,
the attention and what the map shows (see ``yolox_attn.attention_maps``). Where the attention
sits behind the identity-at-init gate, the title gives the gate value and says that the map is
the attention's own, before the gate: the output changes by the gate times that. CCA and non-local show the
weights of one query pixel, marked with a circle: ``--attn-pixel X,Y`` in input-image pixels,
else the centre of the most confident detection, else the image centre. The PNG is
``height x (1 + levels) * width`` of the input image; titles are drawn inside the panels.

Class names, first match wins: the categories of the exp's own dataset
(``<exp.data_dir>/annotations/<exp.val_ann>``, ordered by category id as YOLOX's ``COCODataset``
orders its labels) when the file exists and has ``num_classes`` categories; YOLOX's
``COCO_CLASSES`` when ``num_classes`` is 80; the shapes dataset's names when it is 4; else
``class0``, ``class1``, ... (the log says which source was used).

Without ``-c`` the tool loads ``<exp.output_dir>/<experiment name>/best_ckpt.pth`` as YOLOX's
does; when that does not exist either it warns and runs the randomly initialised model (useful
to look at the maps' mechanics, not at detections).
"""

import argparse
import json
import os
import time
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

import cv2
import numpy as np
import torch
from loguru import logger
from torch import nn
from yolox.data.data_augment import ValTransform
from yolox.data.datasets import COCO_CLASSES
from yolox.utils import fuse_model, get_model_info, postprocess, vis

from ..attention_maps import AttentionMap, AttentionRecorder, normalize_map
from ..checkpoint import load_checkpoint, load_weights, model_state
from ..preflight import load_exp, user_exit
from .eval import pick_device
from ..data.shapes import CLASS_NAMES

IMAGE_EXT = (".jpg", ".jpeg", ".webp", ".bmp", ".png")
_VIS_COLOURS = 80  # yolox.utils.visualize._COLORS has one colour per COCO class
ImagePoint = Tuple[float, float]  # (x, y) in input-image pixels


def make_parser() -> argparse.ArgumentParser:
    """YOLOX demo's arguments (their spelling kept), plus opts and our --output-dir, --attention-maps
    and --attn-pixel, which also take YOLOX's underscore spelling (--attention_maps, ...)."""
    parser = argparse.ArgumentParser("yolox-attn demo")
    parser.add_argument("demo", default="image", help="demo type: only 'image' (video/webcam are refused)")
    parser.add_argument("-expn", "--experiment-name", type=str, default=None)
    parser.add_argument("-n", "--name", type=str, default=None, help="model name")
    parser.add_argument("--path", default="./assets/dog.jpg", help="an image or a folder of images (searched recursively)")
    parser.add_argument("--camid", type=int, default=0, help="accepted for YOLOX compatibility; webcam is refused")
    parser.add_argument("--save_result", action="store_true", help="save the pictures")
    parser.add_argument("-f", "--exp_file", default=None, type=str, help="experiment description file")
    parser.add_argument("-c", "--ckpt", default=None, type=str, help="checkpoint ({'model': state_dict, ...})")
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "gpu"),
                        help="auto: CUDA when available, else the CPU")
    parser.add_argument("--conf", default=0.3, type=float, help="test conf")
    parser.add_argument("--nms", default=0.45, type=float, help="test nms threshold")
    parser.add_argument("--tsize", default=None, type=int, help="test img size (a multiple of 32)")
    parser.add_argument("--fp16", dest="fp16", default=False, action="store_true",
                        help="half precision (CUDA only; ignored with a warning on the CPU)")
    parser.add_argument("--legacy", dest="legacy", default=False, action="store_true",
                        help="preprocessing of old YOLOX checkpoints (RGB, ImageNet normalisation)")
    parser.add_argument("--fuse", dest="fuse", default=False, action="store_true", help="fuse conv and bn")
    parser.add_argument("--trt", dest="trt", default=False, action="store_true",
                        help="refused: use YOLOX's own demo for TensorRT")
    parser.add_argument("--output-dir", "--output_dir", default=None, type=str,
                        help="folder for the pictures (default <output_dir>/<exp>/vis_res/<time>); implies saving")
    parser.add_argument("--attention-maps", "--attention_maps", action="store_true",
                        help="also save detections + one heat-map panel per attended level; implies saving")
    parser.add_argument("--attn-pixel", "--attn_pixel", default=None, type=str,
                        help="X,Y query pixel (input-image coordinates) of the CCA/non-local maps")
    # "*" with parse_intermixed_args, not REMAINDER: after the "demo" positional a REMAINDER would
    # swallow every flag that follows it.
    parser.add_argument("opts", default=None, nargs="*", help="exp attributes: key value ...")
    return parser


def get_image_list(path: str) -> List[str]:
    """Image files under ``path`` (recursive, extension case-insensitive), sorted."""
    found = []
    for root, _, names in os.walk(path):
        found += [os.path.join(root, n) for n in names if os.path.splitext(n)[1].lower() in IMAGE_EXT]
    return sorted(found)


def class_names_for(exp) -> Tuple[List[str], str]:
    """(names, where they came from); the order of precedence is in the module docstring."""
    n = int(exp.num_classes)
    data_dir, val_ann = getattr(exp, "data_dir", None), getattr(exp, "val_ann", None)
    if data_dir and val_ann:
        ann = os.path.join(data_dir, "annotations", val_ann)
        if os.path.isfile(ann):
            try:
                with open(ann) as f:
                    cats = json.load(f)["categories"]
                names = [str(c["name"]) for c in sorted(cats, key=lambda c: c["id"])]
            except (OSError, ValueError, KeyError, TypeError) as err:
                logger.warning(f"could not read class names from {ann}: {err!r}")
            else:
                if len(names) == n:
                    return names, ann
                logger.warning(f"{ann} has {len(names)} categories but the exp has num_classes={n}; not using them")
    if n == len(COCO_CLASSES):
        return list(COCO_CLASSES), "COCO_CLASSES"
    if n == len(CLASS_NAMES):
        return list(CLASS_NAMES), "the shapes dataset's CLASS_NAMES"
    return [f"class{i}" for i in range(n)], "generic class<i> names"


def parse_pixel(text: Optional[str]) -> Optional[ImagePoint]:
    """'X,Y' -> (x, y); None stays None."""
    if text is None:
        return None
    try:
        x, y = (float(v) for v in text.split(","))
    except ValueError:
        raise SystemExit(f"--attn-pixel must be X,Y (input-image pixels), got {text!r}")
    return x, y


class Predictor:
    """YOLOX's demo predictor: letterbox with ``ValTransform``, forward, ``postprocess``, ``vis``."""

    def __init__(self, model: nn.Module, exp, cls_names: Sequence[str], device: torch.device,
                 fp16: bool = False, legacy: bool = False):
        self.model = model
        self.cls_names = list(cls_names)
        self.num_classes = exp.num_classes
        self.confthre = exp.test_conf
        self.nmsthre = exp.nmsthre
        self.test_size = tuple(exp.test_size)
        self.device = device
        self.fp16 = fp16
        self.preproc = ValTransform(legacy=legacy)

    def inference(self, img: np.ndarray) -> Tuple[Optional[torch.Tensor], Dict]:
        """Detections (N, 7) in letterboxed coordinates, or None, and the image's info."""
        height, width = img.shape[:2]
        ratio = min(self.test_size[0] / height, self.test_size[1] / width)
        info = {"height": height, "width": width, "raw_img": img, "ratio": ratio}
        tensor = torch.from_numpy(self.preproc(img, None, self.test_size)[0]).unsqueeze(0).float().to(self.device)
        if self.fp16:
            tensor = tensor.half()
        with torch.no_grad():
            t0 = time.time()
            outputs = self.model(tensor)
            outputs = postprocess(outputs, self.num_classes, self.confthre, self.nmsthre, class_agnostic=True)
            logger.info(f"Infer time: {time.time() - t0:.4f}s")
        return outputs[0], info

    def visual(self, output: Optional[torch.Tensor], info: Dict, cls_conf: float) -> np.ndarray:
        """A copy of the image with boxes, class names and scores drawn by YOLOX's ``vis``."""
        img = info["raw_img"].copy()
        if output is None:
            return img
        output = output.float().cpu()
        boxes = boxes_in_image(output, info)
        cls = output[:, 6]
        scores = output[:, 4] * output[:, 5]
        if self.num_classes <= _VIS_COLOURS:
            return vis(img, boxes, scores, cls, cls_conf, self.cls_names)
        # vis has 80 colours: draw one box at a time with its class name at its colour's index.
        for box, score, c in zip(boxes, scores, cls.long().tolist()):
            names = [""] * _VIS_COLOURS
            names[c % _VIS_COLOURS] = self.cls_names[c]
            vis(img, box[None], score[None], torch.tensor([c % _VIS_COLOURS]), cls_conf, names)
        return img


def boxes_in_image(output: torch.Tensor, info: Dict) -> torch.Tensor:
    """Detections' (x1, y1, x2, y2) in image pixels, clipped to the image.

    An untrained model can predict boxes of 1e8 px or inf (exp of its size logits), and inf - inf
    is NaN: cv2 cannot draw them and they have no centre. Only drawing and the query pixel use
    the clipped boxes; the returned detections stay as predicted.
    """
    boxes = torch.nan_to_num(output[:, 0:4].float().cpu() / info["ratio"])
    boxes[:, 0::2] = boxes[:, 0::2].clamp(0, info["width"] - 1)
    boxes[:, 1::2] = boxes[:, 1::2].clamp(0, info["height"] - 1)
    return boxes


def query_point(output: Optional[torch.Tensor], info: Dict, requested: Optional[ImagePoint]) -> Tuple[ImagePoint, str]:
    """The CCA/non-local query pixel in image coordinates, clamped into the image, and its origin."""
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


def map_in_image(grid_map: np.ndarray, info: Dict, test_size: Tuple[int, int]) -> np.ndarray:
    """A feature-grid map -> the input image's (H, W), through the letterbox, values kept.

    The grid covers the padded ``test_size`` canvas; only the part the image occupies is kept,
    so padding cannot set the colour range.
    """
    canvas = cv2.resize(grid_map.astype(np.float32), (test_size[1], test_size[0]), interpolation=cv2.INTER_LINEAR)
    # preproc pastes the resized image at the top-left with int() sizes
    h_in = max(1, int(info["height"] * info["ratio"]))
    w_in = max(1, int(info["width"] * info["ratio"]))
    return cv2.resize(canvas[:h_in, :w_in], (info["width"], info["height"]), interpolation=cv2.INTER_LINEAR)


def heat_panel(img: np.ndarray, heat: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """``heat`` in [0, 1] as JET colours blended over ``img`` (BGR uint8, same H, W)."""
    colours = cv2.applyColorMap(np.clip(heat * 255.0 + 0.5, 0, 255).astype(np.uint8), cv2.COLORMAP_JET)
    return cv2.addWeighted(img, 1.0 - alpha, colours, alpha, 0.0)


def colour_bar(panel: np.ndarray, low: float, high: float) -> np.ndarray:
    """Draw the JET scale at the panel's right edge, labelled with the map values of its ends; in place.

    The heat map is min-max scaled per panel, so blue is the map's ``low`` and red its ``high``.
    """
    font = cv2.FONT_HERSHEY_SIMPLEX
    h, w = panel.shape[:2]
    scale = float(np.clip(w / 600.0, 0.28, 0.6))
    bar_w = max(4, w // 30)
    top, bottom = h // 4, h - max(4, h // 20)
    if bottom - top < 8 or w < 4 * bar_w:
        return panel  # too small to be read
    ramp = np.linspace(255, 0, bottom - top).astype(np.uint8)[:, None].repeat(bar_w, axis=1)
    x0 = w - bar_w - 2
    panel[top:bottom, x0:x0 + bar_w] = cv2.applyColorMap(ramp, cv2.COLORMAP_JET)
    line_h = cv2.getTextSize("Ag", font, scale, 1)[0][1]
    for value, y in ((high, top + line_h), (low, bottom)):
        text = f"{value:.3g}"
        tw = cv2.getTextSize(text, font, scale, 1)[0][0]
        org = (max(0, x0 - tw - 3), y)
        cv2.putText(panel, text, org, font, scale, (0, 0, 0), 3, cv2.LINE_AA)  # outline: readable on any colour
        cv2.putText(panel, text, org, font, scale, (255, 255, 255), 1, cv2.LINE_AA)
    return panel


def _wrap(text: str, font: int, scale: float, max_width: int) -> List[str]:
    lines: List[str] = []
    for word in text.split():
        trial = f"{lines[-1]} {word}" if lines else word
        if lines and cv2.getTextSize(trial, font, scale, 1)[0][0] <= max_width:
            lines[-1] = trial
        else:
            lines.append(word)
    return lines


def put_title(panel: np.ndarray, lines: Sequence[str]) -> np.ndarray:
    """Write ``lines`` (word-wrapped) at the panel's top on a darkened strip; in place."""
    font = cv2.FONT_HERSHEY_SIMPLEX
    w = panel.shape[1]
    scale = float(np.clip(w / 600.0, 0.28, 0.6))  # readable on 100 px panels and 1000 px ones
    wrapped = [part for line in lines if line for part in _wrap(line, font, scale, w - 4)]
    line_h = cv2.getTextSize("Ag", font, scale, 1)[0][1] + 4
    strip = min(panel.shape[0], line_h * len(wrapped) + 3)
    panel[:strip] = (panel[:strip].astype(np.float32) * 0.35).astype(np.uint8)
    for i, text in enumerate(wrapped):
        cv2.putText(panel, text, (2, line_h * (i + 1)), font, scale, (255, 255, 255), 1, cv2.LINE_AA)
    return panel


def attention_figure(detections: np.ndarray, img: np.ndarray, maps: Dict[str, np.ndarray],
                     described: Dict[str, AttentionMap], point: ImagePoint, n_dets: int,
                     ranges: Optional[Dict[str, Tuple[float, float]]] = None) -> np.ndarray:
    """[detections | level 1 | level 2 | ...], each panel the input image's size; ``ranges`` (level ->
    the map's min and max in the image) labels each panel's colour scale."""
    panels = [put_title(detections.copy(), [f"detections ({n_dets})"])]
    radius = max(2, min(img.shape[:2]) // 40)
    for level, heat in maps.items():
        info = described[level]
        panel = heat_panel(img, heat)
        if info.uses_pixel:
            centre = (int(round(point[0])), int(round(point[1])))
            cv2.circle(panel, centre, radius, (255, 255, 255), max(1, radius // 2))
        # Say so when a map has no spatial variation (e.g. the tiny features of an untrained backbone).
        flat = "flat: no spatial variation" if not heat.any() else ""
        if ranges is not None:
            colour_bar(panel, *ranges[level])
        panels.append(put_title(panel, [f"{level}: {info.kind}", info.note, flat]))
    return np.concatenate(panels, axis=1)


@dataclass
class ImageResult:
    """What the demo produced for one image."""

    image_path: str
    detections: Optional[np.ndarray]  # (N, 7): x0, y0, x1, y1 (image pixels), obj, cls conf, class
    detection_file: Optional[str] = None
    attention_file: Optional[str] = None
    maps: Dict[str, np.ndarray] = field(default_factory=dict)  # level -> (H, W) in [0, 1]
    query_point: Optional[ImagePoint] = None


def load_model(exp, args, device: torch.device) -> nn.Module:
    """The exp's model with the checkpoint (or random weights, with a warning), on ``device``, eval."""
    model = exp.get_model()
    logger.info(f"Model Summary: {get_model_info(model, exp.test_size)}")
    ckpt_file = args.ckpt or os.path.join(exp.output_dir, args.experiment_name, "best_ckpt.pth")
    if args.ckpt or os.path.isfile(ckpt_file):
        logger.info(f"loading checkpoint {ckpt_file}")
        try:  # load_weights drops the module. prefix of DDP-saved checkpoints and names mismatched layers
            load_weights(model, model_state(load_checkpoint(ckpt_file), ckpt_file), ckpt_file)
        except (ValueError, OSError) as err:
            raise user_exit("demo", err) from None
        logger.info("loaded checkpoint done.")
    else:
        logger.warning(f"no -c and no {ckpt_file}: running the RANDOMLY INITIALISED model")
    model.to(device)
    if args.fp16:
        model.half()
    model.eval()
    if args.fuse:
        logger.info("\tFusing model...")
        model = fuse_model(model)
    return model


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


def _write_picture(path: str, picture: np.ndarray) -> None:
    # cv2.imwrite returns False instead of raising (unwritable folder, extension it cannot encode).
    if not cv2.imwrite(path, picture):
        raise SystemExit(f"could not write {path}: cv2.imwrite failed (is the folder writable and the "
                         "extension an image format such as .jpg or .png?)")


def main(exp, args) -> List[ImageResult]:
    """Run the image demo for parsed ``args``; return one ``ImageResult`` per image."""
    if args.demo != "image":
        raise SystemExit(f"demo {args.demo!r} is not supported: only 'image' (use YOLOX's own demo for video/webcam)")
    if args.trt:
        raise SystemExit("--trt: use YOLOX's own `python -m yolox.tools.demo --trt` on a CUDA machine")
    if not args.experiment_name:
        args.experiment_name = exp.exp_name
    if args.device == "gpu" and not torch.cuda.is_available():
        raise SystemExit("--device gpu: CUDA is not available here (use --device auto or cpu)")
    device = torch.device("cpu") if args.device == "cpu" else pick_device()
    if args.fp16 and device.type != "cuda":
        logger.warning("--fp16 is for CUDA; running in float32 on the CPU")
        args.fp16 = False
    if args.conf is not None:
        exp.test_conf = args.conf
    if args.nms is not None:
        exp.nmsthre = args.nms
    if args.tsize is not None:
        if args.tsize <= 0 or args.tsize % 32:
            raise SystemExit(f"--tsize must be a positive multiple of 32 (the largest stride), got {args.tsize}")
        exp.test_size = (args.tsize, args.tsize)
    if not os.path.exists(args.path):
        raise SystemExit(f"--path {args.path!r} does not exist")
    files = get_image_list(args.path) if os.path.isdir(args.path) else [args.path]
    if not files:
        raise SystemExit(f"no images ({', '.join(IMAGE_EXT)}) under {args.path!r}")
    pixel = parse_pixel(args.attn_pixel)
    logger.info(f"Args: {args}")
    logger.info(f"running on {device}")

    save = args.save_result or args.output_dir is not None or args.attention_maps
    if args.output_dir is not None:
        out_dir = args.output_dir
    else:
        stamp = time.strftime("%Y_%m_%d_%H_%M_%S", time.localtime())
        out_dir = os.path.join(exp.output_dir, args.experiment_name, "vis_res", stamp)
    if not save:
        logger.warning("nothing is saved without --save_result (this headless tool shows no window)")

    model = load_model(exp, args, device)
    names, source = class_names_for(exp)
    logger.info(f"class names from {source}: {names[:10]}{' ...' if len(names) > 10 else ''}")
    predictor = Predictor(model, exp, names, device, args.fp16, args.legacy)
    recorder = AttentionRecorder(attention_modules(model)) if args.attention_maps else None

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
            if not save:
                continue
            # Keep a folder's sub-folders so equal file names in two of them do not collide.
            rel = os.path.relpath(path, args.path) if os.path.isdir(args.path) else os.path.basename(path)
            target = os.path.join(out_dir, rel)
            os.makedirs(os.path.dirname(target), exist_ok=True)
            _write_picture(target, picture)
            result.detection_file = target
            logger.info(f"Saving detection result in {target}")
            if figure is not None:
                result.attention_file = os.path.splitext(target)[0] + "_attention.png"
                _write_picture(result.attention_file, figure)
                logger.info(f"Saving attention maps in {result.attention_file}")
    finally:
        if recorder is not None:
            recorder.remove()
    if save:
        logger.info(f"{len(results)} picture(s) in {out_dir}")
    return results


def run(argv: Optional[Sequence[str]] = None) -> List[ImageResult]:
    """Command-line entry: parse ``argv``, load the exp, merge opts and run ``main``."""
    args = make_parser().parse_intermixed_args(argv)
    exp = load_exp(args.exp_file, args.name)
    if args.opts:
        exp.merge(args.opts)
    return main(exp, args)


if __name__ == "__main__":
    run()

"""Detection pictures from an exported ONNX file, in onnxruntime or OpenVINO, without torch.

    python -m yolox_attn.tools.onnx_demo -m YOLOX_outputs/yolox_s_cam/yolox_s_cam.onnx --path img.jpg
    python -m yolox_attn.tools.onnx_demo -m model.onnx --path images/ --runtime openvino-f32

What YOLOX's ``demo/ONNXRuntime/onnx_inference.py`` does, for files of
``python -m yolox_attn.tools.export_onnx``: the file's metadata gives its class names, input size
and whether its boxes are decoded, so nothing is passed twice and no box is labelled with COCO's
names by mistake. Preprocessing (letterbox), decoding, score threshold ``--conf`` and
class-agnostic NMS ``--nms`` are those of ``python -m yolox_attn.tools.demo``; boxes too large
for the image (an undertrained model's) are drawn clipped to it. A file without that metadata
runs with YOLOX's defaults and generic class names, each assumption said in a warning. YOLOX's
flags (``-m -i -o -s --input_shape``) work as well.

``--runtime``: ``onnxruntime`` (CPU), ``openvino-f32`` (OpenVINO's CPU plugin in float32) or
``openvino`` (the plugin's default precision: bfloat16 on CPUs with native bf16, which moves
scores by a few hundredths; the README's Export section gives the AP it costs). Pictures go to
``--output-dir`` (default ``<the model's folder>/onnx_demo/``), mirroring the sub-folders of a
``--path`` folder. Nothing here imports torch.
"""

import argparse
import os
from dataclasses import dataclass
from typing import List, Optional, Sequence

import cv2
import numpy as np
from loguru import logger

from ..deploy.detect import draw
from ..deploy.predictor import OnnxPredictor
from ..deploy.runtime import RUNTIMES
from ..visualize.images import image_files, picture_path, write_picture


@dataclass
class OnnxImageResult:
    """One image's detections (N, 7: x1, y1, x2, y2 in image pixels, objectness, class score, class)."""

    image_path: str
    detections: np.ndarray
    picture: Optional[str] = None


def _size(text: str) -> List[int]:
    try:
        h, w = (int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be H,W (e.g. 640,640), got {text!r}") from None
    if h <= 0 or w <= 0 or h % 32 or w % 32:
        raise argparse.ArgumentTypeError(f"H and W must be positive multiples of 32, got {text!r}")
    return [h, w]


def make_parser() -> argparse.ArgumentParser:
    """The flags of YOLOX's onnx_inference.py (``-m -i -o -s --input_shape``, their spelling kept) under
    the names of this project's demo (``--path``, ``--output-dir``, ``--conf``), plus ``--runtime``."""
    parser = argparse.ArgumentParser("yolox-attn onnx demo")
    parser.add_argument("-m", "--model", required=True, help="an ONNX file (from yolox_attn.tools.export_onnx)")
    parser.add_argument("--path", "-i", "--image_path", dest="path", required=True,
                        help="an image or a folder of images (searched recursively)")
    parser.add_argument("--runtime", default="onnxruntime", choices=RUNTIMES,
                        help="onnxruntime; openvino-f32: OpenVINO in float32; openvino: its default precision")
    parser.add_argument("--conf", "-s", "--score_thr", dest="conf", default=0.3, type=float,
                        help="score threshold (objectness x class score)")
    parser.add_argument("--nms", default=0.45, type=float, help="IoU threshold of the class-agnostic NMS")
    parser.add_argument("--input-size", "--input_size", "--input_shape", dest="input_size", default=None, type=_size,
                        help="H,W: another input size for a --dynamic export, or the size of a file without metadata")
    parser.add_argument("--threads", default=None, type=int, help="the runtime's threads (default: its own choice)")
    parser.add_argument("--output-dir", "-o", "--output_dir", dest="output_dir", default=None,
                        help="folder for the pictures (default <the model's folder>/onnx_demo)")
    return parser


def main(argv: Optional[Sequence[str]] = None) -> List[OnnxImageResult]:
    """Run the demo for ``argv``; one ``OnnxImageResult`` per image that could be read."""
    args = make_parser().parse_args(argv)
    if not os.path.isfile(args.model):
        raise SystemExit(f"-m {args.model!r} is not a file")
    files = image_files(args.path)
    try:
        predictor = OnnxPredictor(args.model, args.runtime, args.conf, args.nms, args.threads, args.input_size)
    except ValueError as err:  # no metadata and no size, a size the file cannot take, no OpenVINO
        raise SystemExit(str(err)) from None
    out_dir = args.output_dir or os.path.join(os.path.dirname(os.path.abspath(args.model)), "onnx_demo")
    results = []
    for path in files:
        img = cv2.imread(path)
        if img is None:
            logger.warning(f"cannot read {path} as an image; skipped")
            continue
        dets = predictor.predict(img)
        target = picture_path(path, args.path, out_dir)
        write_picture(target, draw(img, dets, predictor.class_names))
        found = ", ".join(f"{predictor.class_names[int(d[6])]} {d[4] * d[5]:.2f}" for d in dets[:5])
        logger.info(f"{path}: {len(dets)} detection(s){': ' + found if found else ''}{' ...' if len(dets) > 5 else ''}"
                    f" -> {target}")
        results.append(OnnxImageResult(path, dets, target))
    return results


if __name__ == "__main__":
    main()

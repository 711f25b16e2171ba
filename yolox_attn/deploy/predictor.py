"""Detections of an exported ONNX model on images, without torch: the file's own metadata says
its class names, input size and whether its boxes are decoded."""

from dataclasses import replace
from typing import Optional, Sequence, Tuple

import numpy as np
from loguru import logger

from .detect import decode_raw, detect, letterbox, to_image
from .metadata import ModelInfo, onnx_io_shapes, read_onnx_info
from .runtime import open_runner

__all__ = ["OnnxPredictor", "YOLOX_STRIDES", "onnx_model_info"]

YOLOX_STRIDES = (8, 16, 32)  # YOLOXHead's default, which every YOLOX exp keeps


def _info_without_metadata(path: str, input_size: Optional[Tuple[int, int]]) -> ModelInfo:
    """What a file without yolox-attn metadata (YOLOX's own export tool, say) must be assumed to be:
    YOLOX's defaults, each said in a warning; its input size from the file, else ``input_size``."""
    inp, out = onnx_io_shapes(path)
    static = tuple(inp[2:4]) if all(isinstance(d, int) and d > 0 for d in inp[2:4]) else None
    size = input_size or static
    if size is None:
        raise ValueError(f"{path} has a dynamic input size and no metadata: give --input-size H,W")
    if not (isinstance(out[-1], int) and out[-1] > 5):
        raise ValueError(f"{path}: its output's last axis is {out[-1]!r}, not YOLOX's 5 + classes")
    n = out[-1] - 5
    logger.warning(f"{path} carries no class names (exported by another tool than yolox_attn.tools.export_onnx?): "
                   f"drawing class0..class{n - 1}; assuming YOLOX's raw outputs (not decoded) with strides "
                   f"{YOLOX_STRIDES}, input {size[0]}x{size[1]}")
    return ModelInfo(tuple(f"class{i}" for i in range(n)), (int(size[0]), int(size[1])), False, YOLOX_STRIDES,
                     "none in the file", dynamic=static is None)


def onnx_model_info(path: str, input_size: Optional[Sequence[int]] = None) -> ModelInfo:
    """The ``ModelInfo`` of the ONNX file at ``path`` (see ``_info_without_metadata`` for a file without
    any), at ``input_size`` (H, W) if given, which a file exported without ``--dynamic`` must match."""
    size = None if input_size is None else (int(input_size[0]), int(input_size[1]))
    info = read_onnx_info(path)
    if info is None:
        return _info_without_metadata(path, size)
    if size is not None and size != info.input_size:
        if not info.dynamic:
            raise ValueError(f"{path} takes {info.input_size[0]}x{info.input_size[1]} inputs only "
                             f"(exported without --dynamic), not {size[0]}x{size[1]}")
        info = replace(info, input_size=size)
    if info.names_guessed:
        logger.warning(f"{path}: its class names were guessed at export ({info.names_source}); set the exp's "
                       "class_names and export again if they are not these")
    return info


class OnnxPredictor:
    """An ONNX file in a runtime (``yolox_attn.deploy.runtime.RUNTIMES``) that turns a BGR image into
    detections (N, 7): x1, y1, x2, y2 in image pixels, objectness, class score, class index."""

    def __init__(self, path: str, runtime: str = "onnxruntime", conf: float = 0.3, nms: float = 0.45,
                 threads: Optional[int] = None, input_size: Optional[Sequence[int]] = None):
        self.info = info = onnx_model_info(path, input_size)
        self.runner = open_runner(path, runtime, threads)
        self.conf, self.nms = conf, nms
        logger.info(f"{path} in {self.runner.description}: input {info.input_size[0]}x{info.input_size[1]}, "
                    f"{'decoded' if info.decoded else 'raw'} outputs, {len(info.class_names)} classes "
                    f"(names from {info.names_source or 'the file'})")

    @property
    def class_names(self) -> Tuple[str, ...]:
        return self.info.class_names

    def predict(self, img: np.ndarray) -> np.ndarray:
        """Detections on one BGR image, in its pixels, by decreasing score."""
        x, ratio = letterbox(img, self.info.input_size)
        out = self.runner(x[None])
        pred = out if self.info.decoded else decode_raw(out, self.info.input_size, self.info.strides)
        return to_image(detect(pred[0], self.conf, self.nms), ratio)

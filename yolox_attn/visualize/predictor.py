"""YOLOX's demo predictor (letterbox with ``ValTransform``, forward, ``postprocess``, ``vis``) and
the model it runs; the class names it draws come from ``yolox_attn.class_names``."""

import time
from typing import Dict, Optional, Sequence, Tuple

import numpy as np
import torch
from loguru import logger
from torch import nn
from yolox.data.data_augment import ValTransform
from yolox.utils import fuse_model, get_model_info, postprocess, vis

from ..checkpoint import load_checkpoint, load_weights, model_state
from ..class_names import class_names_for  # noqa: F401  (its former home: the old import keeps working)
from ..preflight import user_exit

_VIS_COLOURS = 80  # yolox.utils.visualize._COLORS has one colour per COCO class


def load_model(exp, ckpt_file: Optional[str], device: torch.device, fp16: bool = False,
               fuse: bool = False) -> nn.Module:
    """The exp's model with the weights of ``ckpt_file`` (None: as initialised), on ``device``, in
    eval mode; a checkpoint that cannot be used ends in a one-line ``SystemExit``."""
    model = exp.get_model()
    logger.info(f"Model Summary: {get_model_info(model, exp.test_size)}")
    if ckpt_file is not None:
        logger.info(f"loading checkpoint {ckpt_file}")
        try:  # load_weights drops the module. prefix of DDP-saved checkpoints and names mismatched layers
            load_weights(model, model_state(load_checkpoint(ckpt_file), ckpt_file), ckpt_file)
        except (ValueError, OSError) as err:
            raise user_exit("demo", err) from None
        logger.info("loaded checkpoint done.")
    model.to(device)
    if fp16:
        model.half()
    model.eval()
    if fuse:
        logger.info("\tFusing model...")
        model = fuse_model(model)
    return model


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

"""An exported ONNX file, run by onnxruntime or OpenVINO, as a torch module that YOLOX's evaluator
can score like the exp's own model: images in, decoded predictions out."""

from typing import Optional

import torch
from torch import nn

from .detect import decode_raw
from .predictor import onnx_model_info
from .runtime import open_runner

__all__ = ["ExportedModel"]


class ExportedModel(nn.Module):
    """``path`` in ``runtime`` (``yolox_attn.deploy.runtime.RUNTIMES``), called like a YOLOX model in
    eval mode with decoding on: (B, 3, H, W) float images to (B, anchors, 5 + classes) with boxes as
    (cx, cy, w, h) input pixels. The runtime holds the weights."""

    def __init__(self, path: str, runtime: str = "onnxruntime", threads: Optional[int] = None,
                 input_size: Optional[tuple] = None):
        super().__init__()
        self.info = onnx_model_info(path, input_size)
        self.runner = open_runner(path, runtime, threads)
        # Evaluators read the device and dtype of the inputs from the model's first parameter.
        self.placeholder = nn.Parameter(torch.zeros(0), requires_grad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.runner(x.detach().float().cpu().numpy())
        if not self.info.decoded:
            out = decode_raw(out, tuple(x.shape[2:]), self.info.strides)
        return torch.from_numpy(out).to(x.device)

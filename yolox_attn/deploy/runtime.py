"""ONNX files in the runtimes users deploy YOLOX with: onnxruntime's CPU provider and OpenVINO's
CPU plugin, the latter in float32 (``openvino-f32``) or in the plugin's default precision
(``openvino``), which is bfloat16 on a CPU with native bf16 (AVX512_BF16 or AMX) and float32
elsewhere."""

from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np

__all__ = ["RUNTIMES", "RuntimeUnavailable", "Runner", "open_runner", "openvino_default_precision"]

RUNTIMES = ("onnxruntime", "openvino", "openvino-f32")
INSTALL_OPENVINO = "pip install openvino (or pip install 'yolox-attn[deploy]')"


class RuntimeUnavailable(ValueError):
    """The runtime asked for is not installed here."""


@dataclass
class Runner:
    """One ONNX file in one runtime: call it with a (B, 3, H, W) float32 array for its first output.

    A file exported with a fixed batch (``static_batch``) gets a larger batch one image at a time.
    """

    run_batch: Callable[[np.ndarray], np.ndarray]
    description: str  # runtime, device and precision, for logs
    static_batch: Optional[int] = None

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        batch = np.ascontiguousarray(batch, dtype=np.float32)
        if self.static_batch in (None, batch.shape[0]):
            return self.run_batch(batch)
        if self.static_batch != 1:
            raise ValueError(f"the model takes batches of {self.static_batch}, got {batch.shape[0]}")
        return np.concatenate([self.run_batch(batch[i:i + 1]) for i in range(batch.shape[0])])


def _openvino():
    try:
        import openvino
    except ImportError:
        raise RuntimeUnavailable(f"OpenVINO is not installed: {INSTALL_OPENVINO}") from None
    return openvino


def openvino_default_precision() -> str:
    """The CPU plugin's default inference precision on this machine (``bf16`` or ``f32``)."""
    return _openvino().Core().get_property("CPU", "INFERENCE_PRECISION_HINT").get_type_name()


def _ort_runner(path: str, threads: Optional[int]) -> Runner:
    import onnxruntime as ort

    options = ort.SessionOptions()
    if threads is not None:
        options.intra_op_num_threads = threads
    session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    node = session.get_inputs()[0]
    batch = node.shape[0] if isinstance(node.shape[0], int) else None
    return Runner(lambda x: session.run(None, {node.name: x})[0], "onnxruntime (CPU provider, float32)", batch)


def _openvino_runner(path: str, threads: Optional[int], f32: bool) -> Runner:
    ov = _openvino()
    config = {"INFERENCE_PRECISION_HINT": "f32"} if f32 else {}
    if threads is not None:
        config["INFERENCE_NUM_THREADS"] = threads
    compiled = ov.Core().compile_model(path, "CPU", config)
    precision = compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name()
    shape = compiled.input(0).get_partial_shape()
    batch = shape[0].get_length() if shape[0].is_static else None
    request = compiled.create_infer_request()
    output = compiled.output(0)

    def run(x: np.ndarray) -> np.ndarray:
        return np.array(request.infer({0: x})[output])

    how = "INFERENCE_PRECISION_HINT=f32" if f32 else "the plugin's default precision"
    return Runner(run, f"OpenVINO {ov.__version__.split('-')[0]} (CPU plugin, {precision}: {how})", batch)


def open_runner(path: str, runtime: str = "onnxruntime", threads: Optional[int] = None) -> Runner:
    """The ONNX file at ``path`` ready to run in ``runtime`` (one of ``RUNTIMES``), with ``threads``
    intra-op threads (None: the runtime's default)."""
    if runtime == "onnxruntime":
        return _ort_runner(path, threads)
    if runtime in ("openvino", "openvino-f32"):
        return _openvino_runner(path, threads, f32=runtime == "openvino-f32")
    raise ValueError(f"unknown runtime {runtime!r}; allowed: {', '.join(RUNTIMES)}")

"""yolox-attn: Coordinate, Criss-Cross and ACmix attention in the PAFPN neck of YOLOX."""

try:
    import yolox  # noqa: F401
except ImportError as err:  # pragma: no cover - exercised in a subprocess test
    raise ImportError(
        "yolox-attn needs the official YOLOX 0.3.0, which is not installed. Run `bash scripts/setup.sh` "
        "in the yolox-attn checkout, or install torch first and then "
        "`pip install --no-deps --no-build-isolation yolox==0.3.0` "
        "(its pinned onnx==1.8.1/onnxruntime==1.8.0 do not install on current Python)."
    ) from err

from .known_noise import silence_known_noise

silence_known_noise()  # YOLOX's deprecation warnings and nvidia-smi complaints on a CPU

__version__ = "0.1.0"
__all__ = ["attention_names", "build_attention", "__version__"]


def __getattr__(name: str):
    # Imported on first use: yolox_attn.attention imports torch, which the ONNX demo
    # (yolox_attn.tools.onnx_demo) and its deploy modules never need.
    if name in ("attention_names", "build_attention"):
        from . import attention

        return getattr(attention, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

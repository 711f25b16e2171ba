"""Which mixed precision ``--fp16`` gets on a CPU, and box decoding kept out of it."""

from pathlib import Path
from typing import Optional

import torch
from loguru import logger
from yolox.models import YOLOXHead

# CPU flags (x86 /proc/cpuinfo "flags", Arm "Features") of instructions that compute in bfloat16.
NATIVE_BF16_FLAGS = ("avx512_bf16", "amx_bf16", "bf16")


def cpu_flags(cpuinfo: Optional[str] = None) -> set:
    """The CPU's feature flags from ``/proc/cpuinfo`` (empty where it cannot be read)."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            return set()
    flags = set()
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip().lower() in ("flags", "features"):
            flags.update(value.split())
    return flags


def cpu_native_bf16() -> bool:
    """True where the CPU has bfloat16 instructions; elsewhere bf16 is emulated and slow."""
    return bool(cpu_flags() & set(NATIVE_BF16_FLAGS))


def cpu_autocast_dtype(fp16: bool) -> Optional[torch.dtype]:
    """The CPU autocast dtype for ``--fp16``: bfloat16 where native, else None (float32).

    Without native bf16 (e.g. AVX2 only) a bf16 YOLOX-s train step took about 10x longer than in
    float32, so there ``--fp16`` trains in float32 and says so once.
    """
    if not fp16:
        return None
    capability = torch.backends.cpu.get_cpu_capability()
    if cpu_native_bf16():
        logger.info(f"--fp16 on the CPU: training under bfloat16 autocast (native bf16, {capability})")
        return torch.bfloat16
    logger.warning(f"--fp16 on the CPU: this CPU ({capability}) has no native bfloat16 "
                   f"(none of the flags {', '.join(NATIVE_BF16_FLAGS)}), where bf16 runs many times slower; "
                   "training in float32")
    return None


class Float32DecodeHead(YOLOXHead):
    """YOLOX's head with its box decoding in float32 (at least), whatever the features' precision.

    Decoding adds the grid cell and multiplies by the stride: in bfloat16 (8 significant bits)
    a centre at 603 px becomes 604, and fp16 keeps only half-pixel steps above 512 px.
    """

    @staticmethod
    def _widen(t: torch.Tensor) -> torch.Tensor:
        return t.to(torch.promote_types(t.dtype, torch.float32))

    def get_output_and_grid(self, output, k, stride, dtype):
        output = self._widen(output)
        return super().get_output_and_grid(output, k, stride, output.type())

    def decode_outputs(self, outputs, dtype):
        outputs = self._widen(outputs)
        return super().decode_outputs(outputs, outputs.type())


def autocast_training_forward(model: torch.nn.Module, dtype: torch.dtype) -> None:
    """Run ``model``'s forward under CPU autocast in ``dtype`` while it is in training mode.

    YOLOX's training step enters ``torch.cuda.amp.autocast``, which does nothing on the CPU;
    this gives its forward (only: not the backward or the optimizer step) the CPU's autocast.
    """
    active = []

    def enter(module, args):
        if module.training:
            context = torch.autocast("cpu", dtype=dtype)
            context.__enter__()
            active.append(context)

    def leave(module, args, output):
        if active:
            active.pop().__exit__(None, None, None)

    model.register_forward_pre_hook(enter)
    model.register_forward_hook(leave, always_call=True)  # also when the forward raises

"""What the attention does while YOLOX trains: scalar values, gradient norms, activation sizes.

``AttentionMonitor`` hooks one model and its optimizer; on the iterations it is armed it records
each attention module's input and output RMS, the gradient norm of every level's attention
parameters against the rest of the model, and the learnable scalars (gates, CCA's ``gamma``,
ACmix's ``rate1``/``rate2``). ``attention_scalars`` reads those scalars from any model.
"""

import json
import os
from typing import Dict, List, Mapping, Optional

import torch
from torch import nn


def unwrap(model: nn.Module) -> nn.Module:
    """The model inside a DistributedDataParallel (or DataParallel) wrapper."""
    return getattr(model, "module", model)


def attention_modules(model: nn.Module) -> Dict[str, nn.Module]:
    """Each attention level's module by its qualified name (``backbone.attention.dark3``).

    A level is a direct child of a ``ModuleDict`` whose attribute name ends in ``attention``.
    """
    found = {}
    for name, module in unwrap(model).named_modules():
        if isinstance(module, nn.ModuleDict) and name.rsplit(".", 1)[-1].endswith("attention"):
            found.update({f"{name}.{level}": child for level, child in module.items()})
    return found


def _level_of(param_name: str, levels: List[str]) -> Optional[str]:
    return next((lvl for lvl in levels if param_name.startswith(lvl + ".")), None)


def attention_scalars(model: nn.Module) -> Dict[str, float]:
    """Every one-element attention parameter, by name without the ``backbone.`` prefixes."""
    out = {}
    for level, module in attention_modules(model).items():
        short = level.split(".", 1)[-1]
        for name, p in module.named_parameters():
            if p.numel() == 1:
                out[f"{short}.{name}"] = float(p.detach().float())
    return out


def _rms(t: torch.Tensor) -> float:
    return float(t.detach().float().pow(2).mean().sqrt())


class AttentionMonitor:
    """Records attention statistics on armed iterations; call ``arm()`` before the forward.

    Gradient norms are taken in an optimizer step pre-hook, where YOLOX's GradScaler has
    already unscaled them (a skipped fp16 step has no call, so it records none).
    """

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer):
        self.model = unwrap(model)
        self.levels = attention_modules(self.model)
        self.armed = False
        self.record: Dict[str, Dict] = {}
        self._handles = [m.register_forward_hook(self._activation_hook(name)) for name, m in self.levels.items()]
        self._handles.append(optimizer.register_step_pre_hook(self._gradient_hook))

    def close(self) -> None:
        for handle in self._handles:
            handle.remove()

    def arm(self) -> None:
        self.armed = True
        self.record = {"activation_rms": {}, "grad_norm": {}}

    def _activation_hook(self, name: str):
        def hook(module, inputs, output):
            if self.armed and module.training:
                self.record["activation_rms"][name.split(".", 1)[-1]] = {"in": _rms(inputs[0]), "out": _rms(output)}
        return hook

    def _gradient_hook(self, optimizer, args, kwargs) -> None:
        if not self.armed:
            return
        prefixes = list(self.levels)
        sums: Dict[str, float] = {}
        for name, p in self.model.named_parameters():
            if p.grad is None:
                continue
            level = _level_of(name, prefixes)
            key = level.split(".", 1)[-1] if level else "rest"
            sums[key] = sums.get(key, 0.0) + float(p.grad.detach().float().pow(2).sum())
        self.record["grad_norm"] = {k: v ** 0.5 for k, v in sums.items()}

    def collect(self) -> Dict[str, Dict]:
        """This armed iteration's record, with the scalars after the step; disarms."""
        self.armed = False
        return {**self.record, "scalars": attention_scalars(self.model)}


def append_jsonl(path: str, record: Mapping) -> None:
    """Append one JSON record as a line (the file is created with its folder). After a line a
    kill left torn, the record starts a line of its own, so only the torn one is lost."""
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    with open(path, "a+b") as f:
        torn = f.tell() > 0 and os.pread(f.fileno(), 1, f.tell() - 1) != b"\n"
        f.write(("\n" if torn else "").encode() + (json.dumps(record) + "\n").encode())


def read_jsonl(path: str) -> List[Dict]:
    """The records of a JSON-lines file; [] if it does not exist. A torn last line is dropped."""
    if not os.path.isfile(path):
        return []
    records = []
    with open(path) as f:
        for line in f:
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return records

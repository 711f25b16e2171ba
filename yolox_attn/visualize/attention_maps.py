"""Per-pixel maps of what each neck attention does, computed from forward-hook captures.

Every map function takes the attention module and the feature map ``x`` it received (B, C, H, W)
and returns a float32 (B, H, W) tensor on the feature grid; nothing in the model is changed.

* ``coord_attention_map`` (CA): ``mean_c a_h * a_w``, the product of the two sigmoid gates that
  multiply ``x``, recomputed from the module's own sub-layers.
* ``criss_cross_map`` (CCA): the softmax weights one pixel gives to its row and column (one
  joint softmax, centre counted once), scattered onto the grid; they sum to 1. With recurrence
  R, pass p sees the output of pass p-1; the default shows the last pass.
* ``non_local_map``: the softmax weights one pixel gives to every position.
* ``acmix_map``: ``||acmix(x) - x||_2`` over channels, the per-pixel change ACmix makes. ACmix
  replaces its input (no residual), so the change is what the rest of the neck sees; its
  attention path alone is internal to the forward and would need a copy of it.
* ``change_map``: the generic fallback for any attention, ``||out - x||_2`` over channels.

``describe_attention`` dispatches on the module type, unwraps ``ResidualGate`` (a scalar gate g
gives ``x + g (attn(x) - x)``: its change is ``|g|`` times the wrapped module's change, the same
picture once normalised, and nothing at all at g = 0, so the wrapped module's map is shown and
the note says so, with the gate value) and returns the map with a short description for titles.
"""

from dataclasses import dataclass
from typing import Callable, Dict, List, Mapping, Optional, Tuple

import torch
from torch import nn

from ..attention import ACmix, CoordAtt, CrissCrossAttention, NonLocal2d, ResidualGate
from ..attention.criss_cross import criss_cross_weights

Pixel = Tuple[int, int]  # (row, col) on the feature grid
FLAT_RANGE = 1e-3  # relative range below which a map is shown as flat (normalize_map)

__all__ = [
    "AttentionCapture",
    "AttentionMap",
    "AttentionRecorder",
    "FLAT_RANGE",
    "acmix_map",
    "change_map",
    "coord_attention_map",
    "criss_cross_map",
    "criss_cross_pass_inputs",
    "describe_attention",
    "non_local_map",
    "normalize_map",
]


def _check_pixel(pixel: Pixel, height: int, width: int) -> None:
    row, col = pixel
    if not (0 <= row < height and 0 <= col < width):
        raise ValueError(f"pixel (row, col) = {pixel} is outside the {height}x{width} feature grid")


@torch.no_grad()
def coord_attention_map(module: CoordAtt, x: torch.Tensor) -> torch.Tensor:
    """``mean_c a_h * a_w`` (B, H, W): the factor CA multiplies each pixel by, averaged over channels."""
    h = x.shape[2]
    # Same steps as CoordAtt.forward up to the two gates, from its own layers.
    x_h = x.mean(dim=3, keepdim=True)
    x_w = x.mean(dim=2, keepdim=True).transpose(2, 3)
    y = module.act(module.bn1(module.conv1(torch.cat([x_h, x_w], dim=2))))
    a_h = module.conv_h(y[:, :, :h]).sigmoid().float()  # (B, C, H, 1)
    a_w = module.conv_w(y[:, :, h:].transpose(2, 3)).sigmoid().float()  # (B, C, 1, W)
    return (a_h * a_w).mean(dim=1)


@torch.no_grad()
def criss_cross_pass_inputs(module: CrissCrossAttention, x: torch.Tensor) -> List[torch.Tensor]:
    """The input of each of the module's ``recurrence`` passes (pass p sees pass p-1's output)."""
    inputs = [x]
    for _ in range(module.recurrence - 1):
        inputs.append(module.forward_once(inputs[-1]))
    return inputs


@torch.no_grad()
def criss_cross_map(module: CrissCrossAttention, x: torch.Tensor, pixel: Pixel,
                    pass_index: int = -1) -> torch.Tensor:
    """Criss-cross weights of ``pixel`` = (row, col) in pass ``pass_index``, on the (B, H, W) grid.

    Zero off the pixel's row and column; the values sum to 1 (one joint softmax).
    """
    _, _, height, width = x.shape
    _check_pixel(pixel, height, width)
    feats = criss_cross_pass_inputs(module, x)[pass_index]
    row, col = pixel
    weights = criss_cross_weights(module.query_conv(feats), module.key_conv(feats))[:, row, col]  # (B, H+W)
    grid = weights.new_zeros(x.shape[0], height, width)
    grid[:, :, col] = weights[:, :height]
    # The column's centre entry is masked to 0; the row's carries the centre's weight.
    grid[:, row, :] = weights[:, height:]
    return grid.float()


@torch.no_grad()
def non_local_map(module: NonLocal2d, x: torch.Tensor, pixel: Pixel) -> torch.Tensor:
    """Embedded-Gaussian weights ``softmax_j(theta_u . phi_j)`` of ``pixel`` over all positions (B, H, W)."""
    b, _, height, width = x.shape
    _check_pixel(pixel, height, width)
    theta = module.theta(x).flatten(2).float()[:, :, pixel[0] * width + pixel[1]]  # (B, C')
    phi = module.phi(x).flatten(2).float()  # (B, C', N)
    return torch.softmax(torch.einsum("bc,bcn->bn", theta, phi), dim=1).reshape(b, height, width)


@torch.no_grad()
def change_map(x: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """Generic map for any attention: per-pixel L2 norm over channels of ``out - x`` (B, H, W)."""
    if out.shape != x.shape:
        raise ValueError(f"attention output {tuple(out.shape)} differs from its input {tuple(x.shape)}")
    return (out.float() - x.float()).norm(dim=1)


@torch.no_grad()
def acmix_map(module: ACmix, x: torch.Tensor, out: Optional[torch.Tensor] = None) -> torch.Tensor:
    """``||acmix(x) - x||`` over channels (B, H, W); pass ``out`` when it was captured already."""
    return change_map(x, module(x) if out is None else out)


def normalize_map(m: torch.Tensor) -> torch.Tensor:
    """Min-max scale each (H, W) map of a (B, H, W) batch to [0, 1]; a flat map becomes all 0.

    Flat: max - min at most ``FLAT_RANGE`` times the largest magnitude (a constant map, or 0.2520
    to 0.2522), where stretching would paint float noise as structure.
    """
    m = torch.nan_to_num(m.float(), nan=0.0, posinf=0.0, neginf=0.0)
    lo = m.amin(dim=(-2, -1), keepdim=True)
    hi = m.amax(dim=(-2, -1), keepdim=True)
    span = hi - lo
    flat = span <= FLAT_RANGE * torch.maximum(lo.abs(), hi.abs())
    return torch.where(flat, torch.zeros_like(m), (m - lo) / torch.where(flat, torch.ones_like(span), span))


@dataclass
class AttentionMap:
    """A (B, H, W) float32 map on the feature grid, what it shows, and whether it marks a pixel."""

    values: torch.Tensor
    kind: str  # short: "ca a_h*a_w", "cca pass 2/2", ...
    note: str = ""  # e.g. "gate=0: no effect yet"
    uses_pixel: bool = False


def _inner_map(module: nn.Module, x: torch.Tensor, out: Optional[torch.Tensor], pixel: Pixel) -> AttentionMap:
    if isinstance(module, CoordAtt):
        return AttentionMap(coord_attention_map(module, x), "ca a_h*a_w")
    if isinstance(module, CrissCrossAttention):
        gamma = float(module.gamma.detach())
        note = "gamma=0: no effect yet" if gamma == 0.0 else f"gamma={gamma:.2g}"
        return AttentionMap(criss_cross_map(module, x, pixel), f"cca pass {module.recurrence}/{module.recurrence}",
                            note, uses_pixel=True)
    if isinstance(module, NonLocal2d):
        zero = not bool(module.W.weight.any()) and not bool(module.W.bias.any())
        return AttentionMap(non_local_map(module, x, pixel), "nonlocal", "W=0: no effect yet" if zero else "",
                            uses_pixel=True)
    if isinstance(module, ACmix):
        return AttentionMap(acmix_map(module, x, out), "acmix |out-x|")
    if isinstance(module, nn.Identity):
        return AttentionMap(torch.zeros_like(x[:, 0], dtype=torch.float32), "identity", "no attention")
    name = type(module).__name__
    with torch.no_grad():
        return AttentionMap(change_map(x, module(x) if out is None else out), f"{name} |out-x|")


def describe_attention(module: nn.Module, x: torch.Tensor, out: Optional[torch.Tensor] = None,
                       pixel: Pixel = (0, 0)) -> AttentionMap:
    """The map for any neck attention module (see the module docstring); ``out`` = module(x) if known.

    ``pixel`` (row, col on the grid of ``x``) is used by the pixel-query attentions (CCA, non-local).
    """
    if isinstance(module, ResidualGate):
        gate = float(module.gate.detach())
        # The inner module sees the same x; its own output is not ``out`` (that one is gated).
        inner = _inner_map(module.attn, x, None, pixel)
        effect = "gate=0: no effect on the output yet" if gate == 0.0 else f"gate={gate:.2g}: output changes by gate x this"
        inner.note = f"{effect}; shown before the gate"
        return inner
    return _inner_map(module, x, out, pixel)


@dataclass
class AttentionCapture:
    """The input and output of one attention module in the last forward."""

    module: nn.Module
    x: Optional[torch.Tensor] = None
    out: Optional[torch.Tensor] = None


class AttentionRecorder:
    """Forward hooks recording each named attention module's input and output; a context manager.

    The hooks return nothing, so the model's outputs are untouched. Tensors are detached but
    kept on their device and dtype.
    """

    def __init__(self, modules: Mapping[str, nn.Module]):
        self.captures: Dict[str, AttentionCapture] = {name: AttentionCapture(m) for name, m in modules.items()}
        self._handles = [m.register_forward_hook(self._hook(name)) for name, m in modules.items()]

    def _hook(self, name: str) -> Callable:
        def record(module: nn.Module, inputs: Tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
            self.captures[name].x = inputs[0].detach()
            self.captures[name].out = output.detach()

        return record

    def maps(self, pixel_for: Callable[[str, Tuple[int, int]], Pixel]) -> Dict[str, AttentionMap]:
        """One ``AttentionMap`` per recorded module; ``pixel_for(name, (H, W))`` gives its query pixel."""
        result = {}
        for name, cap in self.captures.items():
            if cap.x is None:
                raise RuntimeError(f"attention {name!r} did not run in the last forward")
            pixel = pixel_for(name, (cap.x.shape[2], cap.x.shape[3]))
            result[name] = describe_attention(cap.module, cap.x, cap.out, pixel)
        return result

    def remove(self) -> None:
        """Remove the hooks."""
        for handle in self._handles:
            handle.remove()
        self._handles = []

    def __enter__(self) -> "AttentionRecorder":
        return self

    def __exit__(self, *exc) -> None:
        self.remove()

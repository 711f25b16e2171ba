"""YOLOX's PAFPN with attention on the backbone features it consumes."""

import contextlib
from typing import Dict, Mapping, Optional, Sequence, Tuple

import torch
from torch import nn
from yolox.models import YOLOPAFPN

from .attention import ResidualGate, build_attention, canonical_name
from .seeding import own_generator

LEVELS: Tuple[str, ...] = ("dark3", "dark4", "dark5")
# Where the attention goes: on the backbone outputs the PAFPN consumes, on the PAFPN's outputs
# (strides 8/16/32, named after the backbone level of the same stride) just before the head, or both.
POSITIONS: Tuple[str, ...] = ("backbone", "neck", "both")


def check_position(position: str) -> str:
    """Validate ``attention_position``; return it."""
    if position not in POSITIONS:
        raise ValueError(f"unknown attention_position {position!r}; allowed: {POSITIONS}")
    return position


def check_levels(levels: Sequence[str], allowed: Sequence[str] = LEVELS) -> Tuple[str, ...]:
    """Validate a subset of backbone levels; return it as a tuple in the given order."""
    if isinstance(levels, str) or not isinstance(levels, (list, tuple)):
        raise ValueError(
            f"attention_levels must be a list or tuple of level names, got {levels!r}; "
            f"allowed names: {tuple(allowed)}"
        )
    bad = [lvl for lvl in levels if lvl not in allowed]
    if bad:
        raise ValueError(f"unknown attention level(s) {bad}; allowed: {tuple(allowed)}")
    if len(set(levels)) != len(levels):
        raise ValueError(f"attention_levels has duplicates: {tuple(levels)!r}")
    return tuple(levels)


def build_level_attention(
    name: str, channels: int, kwargs: Optional[Mapping] = None, identity_init: bool = True
) -> nn.Module:
    """One level's attention; wrapped in a zero gate unless it is an identity at init already."""
    attn = build_attention(name, channels, **dict(kwargs or {}))
    already_identity = isinstance(attn, nn.Identity) or getattr(attn, "identity_at_init", False)
    if identity_init and not already_identity:
        attn = ResidualGate(attn)
    return attn


class AttentionPAFPN(YOLOPAFPN):
    """``YOLOPAFPN`` whose backbone outputs pass through an attention module per chosen level.

    The attention runs as a forward hook on the backbone, so YOLOX's own top-down/bottom-up
    forward is reused as is and every YOLOX state-dict key is unchanged; the attention only adds
    ``backbone.attention.<level>.*`` keys. ``position="neck"`` applies it to the PAFPN's three
    outputs instead (keys ``backbone.neck_attention.<level>.*``, the level of the same stride,
    same channel count), ``"both"`` at both places, each with its own modules.
    ``identity_init=True`` wraps attentions that are not already identities at init (CA, ACmix)
    in a zero-initialised residual gate, so the model computes exactly the baseline YOLOX until
    it trains; ``False`` gives the paper-exact modules.
    """

    def __init__(
        self,
        depth: float = 1.0,
        width: float = 1.0,
        in_features: Sequence[str] = LEVELS,
        in_channels: Sequence[int] = (256, 512, 1024),
        depthwise: bool = False,
        act: str = "silu",
        attention: str = "ca",
        attention_kwargs: Optional[Mapping] = None,
        attention_levels: Sequence[str] = LEVELS,
        identity_init: bool = True,
        position: str = "backbone",
        attention_seed: Optional[int] = None,
    ):
        super().__init__(depth, width, in_features, list(in_channels), depthwise, act)
        self.attention_name = canonical_name(attention)
        self.attention_position = check_position(position)
        levels = check_levels(attention_levels, in_features)
        # YOLOX's PAFPN outputs have the channel counts of the backbone levels of the same stride.
        channels = {f: int(c * width) for f, c in zip(in_features, in_channels)}

        def modules(enabled: bool) -> nn.ModuleDict:
            return nn.ModuleDict(
                {
                    lvl: build_level_attention(self.attention_name, channels[lvl], attention_kwargs, identity_init)
                    for lvl in (levels if enabled else ())
                }
            )

        with own_generator(attention_seed, "attention") if attention_seed is not None else contextlib.nullcontext():
            self.attention = modules(position in ("backbone", "both"))
            self.neck_attention = modules(position in ("neck", "both"))
        self.backbone.register_forward_hook(self._attend)

    def forward(self, input):
        outputs = super().forward(input)
        if not len(self.neck_attention):
            return outputs
        return tuple(
            self.neck_attention[lvl](x) if lvl in self.neck_attention else x
            for lvl, x in zip(self.in_features, outputs)
        )

    def _attend(self, module: nn.Module, inputs, features: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
        return {name: self.attention[name](x) if name in self.attention else x for name, x in features.items()}

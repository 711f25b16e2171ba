"""Attention modules for the YOLOX neck, built by name with ``build_attention``."""

from .registry import (
    attention_kwargs,
    attention_names,
    build_attention,
    canonical_name,
    describe_attentions,
    register_attention,
)
from .gate import ResidualGate
from .coord import CoordAtt
from .criss_cross import CrissCrossAttention
from .acmix import ACmix
from .non_local import NonLocal2d
from .simam import SimAM
from .ema import EMA
from .timm_attn import TIMM_TYPES, build_timm_attention

__all__ = [
    "ACmix",
    "CoordAtt",
    "CrissCrossAttention",
    "EMA",
    "NonLocal2d",
    "ResidualGate",
    "SimAM",
    "TIMM_TYPES",
    "attention_kwargs",
    "attention_names",
    "build_attention",
    "build_timm_attention",
    "canonical_name",
    "describe_attentions",
    "register_attention",
]

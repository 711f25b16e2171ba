"""Attention modules for the YOLOX neck, built by name with ``build_attention``."""

from .registry import attention_kwargs, attention_names, build_attention, canonical_name, register_attention
from .gate import ResidualGate
from .coord import CoordAtt
from .criss_cross import CrissCrossAttention
from .acmix import ACmix
from .non_local import NonLocal2d

__all__ = [
    "ACmix",
    "CoordAtt",
    "CrissCrossAttention",
    "NonLocal2d",
    "ResidualGate",
    "attention_kwargs",
    "attention_names",
    "build_attention",
    "canonical_name",
    "register_attention",
]

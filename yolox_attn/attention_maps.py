"""Moved to ``yolox_attn.visualize.attention_maps``; this module keeps the old import path."""

from .visualize.attention_maps import *  # noqa: F401,F403
from .visualize.attention_maps import __all__  # noqa: F401

"""Name -> builder registry for the attention modules, in the manner of timm's layer factories."""

import difflib
import inspect
from typing import Callable, Dict, Optional, Tuple

from torch import nn

_BUILDERS: Dict[str, Callable[..., nn.Module]] = {}
_ALIASES: Dict[str, str] = {}
_DESCRIPTIONS: Dict[str, str] = {}
# Builders taking **kwargs (timm's layers) say which keywords they accept; called lazily.
_KWARGS: Dict[str, Callable[[], Tuple[str, ...]]] = {}


def register_attention(
    name: str,
    aliases: Tuple[str, ...] = (),
    description: Optional[str] = None,
    kwargs: Optional[Callable[[], Tuple[str, ...]]] = None,
):
    """Decorator: register ``builder(channels, **kwargs) -> nn.Module`` under ``name``.

    ``description`` is the one line ``describe_attentions`` shows (default: the first line of
    the builder's docstring). ``kwargs`` returns the accepted keywords, for builders whose
    signature cannot tell (default: the builder's parameters besides ``channels``).
    """
    if not isinstance(name, str) or not name or name != name.lower():
        raise ValueError(f"attention name must be a non-empty lower-case string, got {name!r}")

    def decorate(builder: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        for key in (name, *aliases):
            if key in _BUILDERS or key in _ALIASES:
                raise ValueError(f"attention name {key!r} is registered twice")
        text = description or (inspect.getdoc(builder) or "").split("\n")[0]
        if not text.strip():
            raise ValueError(f"attention {name!r} needs a description (or a docstring on its builder)")
        _BUILDERS[name] = builder
        _DESCRIPTIONS[name] = text.strip()
        if kwargs is not None:
            _KWARGS[name] = kwargs
        for alias in aliases:
            _ALIASES[alias] = name
        return builder

    return decorate


def describe_attentions() -> Dict[str, str]:
    """``{name: one-line description}`` of every registered attention (no aliases), sorted."""
    return {name: _DESCRIPTIONS[name] for name in attention_names(include_aliases=False)}


def attention_names(include_aliases: bool = True) -> Tuple[str, ...]:
    """The names ``build_attention`` accepts, sorted."""
    names = set(_BUILDERS)
    if include_aliases:
        names |= set(_ALIASES)
    return tuple(sorted(names))


def canonical_name(name: str) -> str:
    """Resolve an alias (``"cam"`` -> ``"ca"``); raise ValueError for an unknown name, with the
    closest registered names (difflib) and all of them."""
    if not isinstance(name, str):
        raise ValueError(f"attention name must be a string, got {name!r}; allowed: {attention_names()}")
    key = name.lower()
    key = _ALIASES.get(key, key)
    if key not in _BUILDERS:
        close = difflib.get_close_matches(name.lower(), attention_names(), n=3, cutoff=0.6)
        hint = f"did you mean {' or '.join(map(repr, close))}? " if close else ""
        raise ValueError(f"unknown attention {name!r}; {hint}allowed: {attention_names()}")
    return key


def attention_kwargs(name: str) -> Tuple[str, ...]:
    """Keyword arguments the builder of ``name`` takes besides ``channels``."""
    key = canonical_name(name)
    if key in _KWARGS:
        return tuple(_KWARGS[key]())
    params = inspect.signature(_BUILDERS[key]).parameters
    return tuple(p for p in params if p != "channels")


def build_attention(name: str, channels: int, **kwargs) -> nn.Module:
    """Build the attention ``name`` for a ``channels``-channel map; output shape equals input shape.

    Raises ValueError for an unknown name, a keyword the attention does not take, or a channel
    count it cannot use.
    """
    key = canonical_name(name)
    allowed = attention_kwargs(key)
    unknown = sorted(set(kwargs) - set(allowed))
    if unknown:
        raise ValueError(f"attention {key!r} got unknown arguments {unknown}; allowed: {list(allowed)}")
    if isinstance(channels, bool) or not isinstance(channels, int) or channels < 1:
        raise ValueError(f"channels must be a positive int, got {channels!r}")
    return _BUILDERS[key](channels, **kwargs)


@register_attention("none")
def no_attention(channels: int) -> nn.Module:
    """No attention: plain YOLOX."""
    return nn.Identity()

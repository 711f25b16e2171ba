"""The name -> builder registry: names, aliases, kwargs and channel checks."""

import pytest
import torch
from torch import nn

import yolox_attn.attention as A


def test_expected_names_registered():
    names = A.attention_names(include_aliases=False)
    for name in ("none", "ca", "cca", "nonlocal"):
        assert name in names
    assert "cam" in A.attention_names() and "cam" not in names


def test_unknown_name_lists_allowed():
    with pytest.raises(ValueError, match="'bogus'") as err:
        A.build_attention("bogus", 16)
    for name in A.attention_names():
        assert repr(name) in str(err.value)


@pytest.mark.parametrize("name, hint", [
    ("nonlocl", "did you mean 'nonlocal'? "),
    ("ACMX", "did you mean 'acmix'? "),
    ("se2", "did you mean 'se' or 'ese'? "),
    ("transformer", ""),  # nothing close: the list alone
])
def test_unknown_name_suggests_the_closest(name, hint):
    with pytest.raises(ValueError) as err:
        A.canonical_name(name)
    assert str(err.value) == f"unknown attention {name!r}; {hint}allowed: {A.attention_names()}"


def test_alias_cam_builds_coord_attention():
    m = A.build_attention("cam", 64, reduction=16)
    assert isinstance(m, A.CoordAtt) and m.conv1.out_channels == 8
    assert A.canonical_name("cam") == "ca" and A.canonical_name("CA") == "ca"


@pytest.mark.parametrize("name,kwargs,allowed", [
    ("ca", {"ratio": 4}, ["reduction", "act"]),
    ("cca", {"reduction": 8}, ["recurrence"]),
    ("nonlocal", {"recurrence": 2}, []),
])
def test_unknown_kwarg_names_it_and_allowed(name, kwargs, allowed):
    bad = next(iter(kwargs))
    with pytest.raises(ValueError, match=bad) as err:
        A.build_attention(name, 32, **kwargs)
    assert str(allowed) in str(err.value)
    assert A.attention_kwargs(name) == tuple(allowed)


@pytest.mark.parametrize("channels", [4, 7])
def test_cca_needs_eight_channels(channels):
    with pytest.raises(ValueError, match=f"got {channels}"):
        A.build_attention("cca", channels)
    assert isinstance(A.build_attention("cca", 8), A.CrissCrossAttention)


def test_builders_return_expected_types():
    assert isinstance(A.build_attention("ca", 32), A.CoordAtt)
    assert A.build_attention("cca", 32, recurrence=1).recurrence == 1
    assert isinstance(A.build_attention("nonlocal", 32), A.NonLocal2d)


def test_none_is_identity():
    m = A.build_attention("none", 16)
    assert isinstance(m, nn.Identity) and not list(m.parameters())
    x = torch.randn(1, 16, 5, 7)
    assert m(x) is x


@pytest.mark.parametrize("channels", [0, -1, 2.5, True])
def test_bad_channel_values(channels):
    with pytest.raises(ValueError, match="channels"):
        A.build_attention("ca", channels)

"""Seeded runs: paired initial weights across attentions, data from the run's seed, checked seeds."""

import pytest
import torch
from conftest import small_exp

from yolox_attn.checkpoint import is_attention_key
from yolox_attn.seeding import derive_seed, own_generator

COMPARED = ("none", "ca", "cca", "acmix", "se")


def _state(attention: str, seed, **attrs):
    exp = small_exp(attention, seed=seed, **attrs)
    if seed is not None:
        torch.manual_seed(seed)  # what YOLOX's train tool does before the model is built
    return exp.get_model().state_dict()


def _split(state):
    base = {k: v for k, v in state.items() if not is_attention_key(k)}
    return base, {k: v for k, v in state.items() if is_attention_key(k)}


def test_every_attention_gets_the_same_base_weights_for_one_seed():
    base_none, _ = _split(_state("none", 7))
    for attention in COMPARED[1:]:
        base, own = _split(_state(attention, 7))
        assert own, attention
        assert base.keys() == base_none.keys()
        # the head is built after the neck's attention: it would draw other weights without its own generator
        assert all(torch.equal(base[k], base_none[k]) for k in base), attention
    other, _ = _split(_state("none", 8))
    assert not all(torch.equal(other[k], base_none[k]) for k in other)


def test_attention_weights_follow_the_seed_at_every_position():
    _, first = _split(_state("cca", 7, attention_position="both"))
    _, again = _split(_state("cca", 7, attention_position="both"))
    _, other = _split(_state("cca", 8, attention_position="both"))
    assert any(k.startswith("backbone.neck_attention.") for k in first)
    assert all(torch.equal(first[k], again[k]) for k in first)
    weights = [k for k in first if k.endswith("query_conv.weight")]
    assert weights and not any(torch.equal(first[k], other[k]) for k in weights)


def test_own_generator_leaves_the_global_stream_where_it_was():
    torch.manual_seed(3)
    with own_generator(5, "attention"):
        inside = torch.rand(3)
    after = torch.rand(3)
    torch.manual_seed(3)
    assert torch.equal(after, torch.rand(3))
    with own_generator(5, "attention"):
        assert torch.equal(inside, torch.rand(3))


def test_derived_seeds_are_distinct_per_key_and_checked():
    seeds = {derive_seed(1, "data", 0, w, e) for w in range(4) for e in range(4)}
    assert len(seeds) == 16 and all(0 <= s < 2 ** 32 for s in seeds)
    assert derive_seed(1, "data") == derive_seed(1, "data") != derive_seed(2, "data")
    for bad in (-1, 1.5, None, True):
        with pytest.raises(ValueError, match="seed keys"):
            derive_seed(bad)


@pytest.mark.parametrize("key, value", [("seed", "-3"), ("data_seed", "'abc'"), ("data_seed", "1.5")])
def test_bad_seeds_are_refused_when_merged_and_when_the_model_is_built(key, value):
    with pytest.raises(ValueError, match=f"^{key} must be an integer >= 0 or None, got {value}$"):
        small_exp("none").merge([key, value])
    with pytest.raises(ValueError, match=f"^{key} must be an integer >= 0 or None"):
        small_exp("none", **{key: eval(value)}).get_model()


def test_seeded_loader_repeats_its_batches_and_follows_data_seed(tmp_path):
    from yolox_attn.seeding import resumable_loader
    from yolox_attn.tools.make_shapes import make_shapes

    make_shapes(tmp_path / "s", train=6, val=2, size=64, seed=1)

    def first_batches(**attrs):
        exp = small_exp("none", data_dir=str(tmp_path / "s"), input_size=(64, 64), data_num_workers=1, **attrs)
        loader = exp.get_data_loader(batch_size=2, is_distributed=False)
        it = iter(resumable_loader(loader, exp.data_rng_seed(), 0))  # as the trainers start it
        return [next(it)[0] for _ in range(4)]  # more batches than images: augmentations matter

    first = first_batches(seed=3)
    assert all(torch.equal(a, b) for a, b in zip(first, first_batches(seed=3)))
    assert all(torch.equal(a, b) for a, b in zip(first, first_batches(seed=9, data_seed=3)))
    assert not all(torch.equal(a, b) for a, b in zip(first, first_batches(seed=3, data_seed=4)))

"""Seeds for reproducible, paired and resumable training runs: one run seed, a derived stream per use.

A seeded run (exp ``seed``) draws its base weights from the global torch generator, which YOLOX's
train tool seeds; the attention's own parameters from a generator of their own
(``own_generator``), so that adding an attention does not shift the rest of the model's
initialisation; data order and augmentations from ``data_seed`` (default: ``seed``).

The data of a run is a function of its position, not of where its loader started
(``resumable_loader``): the sample order is YOLOX's infinite stream entered at the run's
position (``ResumableSampler``), and every sample is augmented under a seed of its own, derived
from (data seed, rank, batch position, place in the batch) (``PositionedBatchSampler``,
``SeededDataset``). So a run resumed at any iteration sees the samples and augmentations the
uninterrupted run saw there; with the same seeds, device and thread count, it computes the same
losses and APs. The trainer's own random draws (the multi-scale size) come from the main
process's generators, whose states the checkpoints keep (``rng_state``).
"""

import contextlib
import random
import zlib
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple, Union

import numpy as np
import torch
from torch.utils.data import BatchSampler, Dataset
from yolox.data import InfiniteSampler, YoloBatchSampler

Key = Union[int, str]


def derive_seed(*keys: Key) -> int:
    """A 32-bit seed from ``keys`` (ints and names), independent streams for different keys."""
    if not keys:
        raise ValueError("derive_seed needs at least one key")
    entropy = []
    for key in keys:
        if isinstance(key, bool) or not isinstance(key, (int, str)):
            raise ValueError(f"seed keys must be ints or strings, got {key!r}")
        if isinstance(key, int) and key < 0:
            raise ValueError(f"seed keys must be >= 0, got {key}")
        entropy.append(zlib.crc32(key.encode()) if isinstance(key, str) else key)
    return int(np.random.SeedSequence(entropy).generate_state(1)[0])


def seed_all(seed: int) -> None:
    """Seed Python's ``random``, NumPy's global generator and torch's CPU generator."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


@contextlib.contextmanager
def rngs_forked() -> Iterator[None]:
    """Inside, Python's, NumPy's and torch's CPU generators may be reseeded and drawn from;
    afterwards they are back where they were."""
    python, numpy = random.getstate(), np.random.get_state()
    with torch.random.fork_rng(devices=[]):
        try:
            yield
        finally:
            random.setstate(python)
            np.random.set_state(numpy)


def order_seed(seed: int) -> int:
    """The sampler's seed (shared by all ranks): the data order of a run with data seed ``seed``."""
    return derive_seed(seed, "order")


@contextlib.contextmanager
def own_generator(seed: int, key: Key) -> Iterator[None]:
    """Inside, torch's CPU generator is seeded from ``(seed, key)``; afterwards it is back where
    it was, as if nothing had drawn from it."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(derive_seed(seed, key))
        yield


class ResumableSampler(InfiniteSampler):
    """YOLOX's ``InfiniteSampler`` entered ``start`` indices into this rank's share.

    The stream is YOLOX's: permutations of the dataset drawn one after another from one generator
    seeded with ``seed``, rank r taking every world_size-th index from r. Skipping a whole
    permutation costs one ``randperm``, so a run resumed after 300 COCO epochs starts in a second.
    """

    def __init__(self, size: int, shuffle: bool = True, seed: int = 0, start: int = 0):
        super().__init__(size, shuffle=shuffle, seed=seed)
        if isinstance(start, bool) or not isinstance(start, int) or start < 0:
            raise ValueError(f"start must be an integer >= 0, got {start!r}")
        self.start = start

    def _permutation(self, generator: torch.Generator) -> List[int]:
        if self._shuffle:
            return torch.randperm(self._size, generator=generator).tolist()
        return list(range(self._size))

    def __iter__(self) -> Iterator[int]:
        generator = torch.Generator()
        generator.manual_seed(self._seed)
        position = self._rank + self.start * self._world_size  # in the stream all ranks share
        block = 0
        while True:
            order = self._permutation(generator)
            end = (block + 1) * self._size
            while position < end:
                yield order[position - block * self._size]
                position += self._world_size
            block += 1


class PositionedBatchSampler(YoloBatchSampler):
    """YOLOX's batch sampler, numbering its batches from ``start``.

    Each item is YOLOX's ``(mosaic, index)``; with a ``seed``, it comes as ``(sample seed,
    (mosaic, index))`` for ``SeededDataset``, the sample seed derived from (seed, rank, batch
    number, place in the batch). Mosaic is off from batch ``mosaic_until`` on (and wherever
    ``mosaic`` is False, as ``close_mosaic`` sets it): YOLOX closes it with a flag the batches
    already queued for the loader's workers do not see, so which batches had mosaic would depend
    on where the loader started.
    """

    def __init__(self, sampler, batch_size: int, drop_last: bool = False, mosaic: bool = True, start: int = 0,
                 seed: Optional[int] = None, rank: int = 0, mosaic_until: Optional[int] = None):
        super().__init__(sampler, batch_size, drop_last, mosaic=mosaic)
        self.start, self.seed, self.rank, self.mosaic_until = start, seed, rank, mosaic_until

    def __iter__(self):
        for number, batch in enumerate(BatchSampler.__iter__(self), self.start):
            mosaic = self.mosaic and (self.mosaic_until is None or number < self.mosaic_until)
            if self.seed is None:
                yield [(mosaic, index) for index in batch]
            else:
                yield [(derive_seed(self.seed, "sample", self.rank, number, place), (mosaic, index))
                       for place, index in enumerate(batch)]


class SeededDataset(Dataset):
    """``dataset`` whose items are made under a seed each: ``[(seed, item)]`` seeds Python's,
    NumPy's and torch's generators (YOLOX's augmentations draw from them) and returns
    ``dataset[item]``; the generators are then back where they were, so that in a loader without
    workers the trainer's own draws do not depend on the data."""

    def __init__(self, dataset: Dataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, seeded_item: Tuple[int, Any]):
        seed, item = seeded_item
        with rngs_forked():
            seed_all(seed)
            return self.dataset[item]

    def __getattr__(self, name: str):
        if name == "dataset":  # not set yet (unpickling in a worker)
            raise AttributeError(name)
        return getattr(self.dataset, name)  # input_dim and the like, as on YOLOX's dataset


def resumable_loader(loader, seed: Optional[int], start: int, mosaic_until: Optional[int] = None,
                     worker_init_fn: Optional[Callable[[int], None]] = None):
    """YOLOX's training loader ``loader`` (an ``InfiniteSampler`` under a ``YoloBatchSampler``),
    rebuilt to deliver its stream from batch ``start`` on.

    With a data ``seed``, the order comes from ``order_seed(seed)`` and every sample gets its own
    seed (see ``PositionedBatchSampler``); without one, YOLOX's order and unseeded workers are
    kept, entered at the same position. Mosaic closes at batch ``mosaic_until``. The loader's
    other settings are kept; ``worker_init_fn`` replaces its workers' initialisation if given.
    Raises ValueError for a loader of another structure.
    """
    batches = loader.batch_sampler
    sampler = getattr(batches, "sampler", None)
    if not isinstance(batches, YoloBatchSampler) or not isinstance(sampler, InfiniteSampler):
        raise ValueError(f"the training loader must sample with YOLOX's InfiniteSampler under a YoloBatchSampler "
                         f"(YOLOX's get_data_loader); this exp's has {type(batches).__name__} over "
                         f"{type(sampler).__name__}")
    order = ResumableSampler(sampler._size, sampler._shuffle, sampler._seed if seed is None else order_seed(seed),
                             start * batches.batch_size)
    positioned = PositionedBatchSampler(order, batches.batch_size, batches.drop_last, batches.mosaic, start, seed,
                                        order._rank, mosaic_until)
    options: Dict[str, Any] = {
        "num_workers": loader.num_workers, "collate_fn": loader.collate_fn, "pin_memory": loader.pin_memory,
        "timeout": loader.timeout, "worker_init_fn": worker_init_fn or loader.worker_init_fn,
        "multiprocessing_context": loader.multiprocessing_context, "generator": loader.generator,
        "persistent_workers": loader.persistent_workers}
    if loader.num_workers > 0:
        options["prefetch_factor"] = loader.prefetch_factor
    dataset = loader.dataset if seed is None else SeededDataset(loader.dataset)
    return type(loader)(dataset, batch_sampler=positioned, **options)


def rng_state() -> Dict[str, Any]:
    """This process's Python, NumPy, torch (and CUDA) generator states, in types a weights-only
    ``torch.load`` reads back."""
    name, keys, pos, has_gauss, cached = np.random.get_state()
    state = {"python": random.getstate(), "numpy": (name, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss,
                                                     cached), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: Dict[str, Any]) -> None:
    """Put back the generator states ``rng_state`` returned (CUDA's where both have CUDA)."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])

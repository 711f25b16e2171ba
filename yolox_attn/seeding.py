"""Seeds for reproducible and paired training runs: one run seed, a derived stream per use.

A seeded run (exp ``seed``) draws its base weights from the global torch generator, which YOLOX's
train tool seeds; the attention's own parameters from a generator of their own
(``own_generator``), so that adding an attention does not shift the rest of the model's
initialisation; data order and augmentations from ``data_seed`` (default: ``seed``) through the
sampler and ``WorkerSeeder``, replacing YOLOX's ``uuid``-seeded DataLoader workers. With the same
seeds, device and thread count, two runs compute the same losses and APs.
"""

import contextlib
import random
import zlib
from typing import Iterator, Union

import numpy as np
import torch

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


class WorkerSeeder:
    """A DataLoader ``worker_init_fn``: each worker seeds ``random``, NumPy and torch from the run's
    data seed, its rank, its worker id and the epoch the loader starts at (0, or the resumed one).

    YOLOX's own ``worker_init_reset_seed`` seeds from ``uuid``, so no two runs see the same
    augmentations. A DataLoader hands batch i to worker i mod N, so each worker's stream is fixed.
    """

    def __init__(self, seed: int, rank: int = 0, epoch: int = 0):
        self.seed, self.rank, self.epoch = seed, rank, epoch

    def seed_for(self, worker: Key) -> int:
        return derive_seed(self.seed, "data", self.rank, worker, self.epoch)

    def __call__(self, worker_id: int) -> None:
        seed_all(self.seed_for(worker_id))


def order_seed(seed: int, epoch: int = 0) -> int:
    """The sampler's seed (shared by all ranks): the data order of a run starting at ``epoch``."""
    return derive_seed(seed, "order", epoch)


@contextlib.contextmanager
def own_generator(seed: int, key: Key) -> Iterator[None]:
    """Inside, torch's CPU generator is seeded from ``(seed, key)``; afterwards it is back where
    it was, as if nothing had drawn from it."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(derive_seed(seed, key))
        yield


def seed_loader(loader, seed: int, rank: int = 0, epoch: int = 0):
    """Seed a YOLOX training loader before its first batch: its sampler's order and its workers'
    augmentations follow (seed, rank, epoch) instead of YOLOX's fixed or uuid seeds; with no
    workers, the augmentations run in this process, which is seeded instead. Returns ``loader``."""
    seeder = WorkerSeeder(seed, rank, epoch)
    loader.batch_sampler.sampler._seed = order_seed(seed, epoch)
    loader.worker_init_fn = seeder
    if loader.num_workers == 0:
        seed_all(seeder.seed_for("main"))
    return loader

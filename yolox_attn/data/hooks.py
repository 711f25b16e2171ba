"""The dataset hooks of YOLOX's current source (``get_dataset``, ``get_eval_dataset``), also on PyPI's 0.3.0.

Both releases call themselves "0.3.0". The current source builds its loaders from two hooks, so an
exp changes its data by overriding them (YOLOX's VOC exp does). PyPI's release builds the COCO
dataset inside ``get_data_loader``/``get_eval_loader``; ``DatasetHooks`` gives it the same two
hooks, building the loaders around them with YOLOX's own classes (mosaic, samplers), as the
current source does. Where YOLOX has the hooks, ``DatasetHooks`` adds nothing.
"""

import torch
import torch.distributed as dist
from yolox.exp import Exp

# Told apart by the API present: the version string is "0.3.0" in both.
HAS_DATASET_HOOKS = hasattr(Exp, "get_eval_dataset")


def _per_rank(batch_size: int, is_distributed: bool) -> int:
    return batch_size // dist.get_world_size() if is_distributed else batch_size


class DatasetHooks:
    """Mixin (before YOLOX's Exp): loaders built from ``get_dataset()`` and ``get_eval_dataset()``."""

    if not HAS_DATASET_HOOKS:

        def get_data_loader(self, batch_size, is_distributed, no_aug=False, cache_img=False):
            from yolox.data import (DataLoader, InfiniteSampler, MosaicDetection, TrainTransform,
                                    YoloBatchSampler, worker_init_reset_seed)
            from yolox.utils import wait_for_the_master

            with wait_for_the_master():
                dataset = self.get_dataset(cache=bool(cache_img))
            self.dataset = MosaicDetection(
                dataset, mosaic=not no_aug, img_size=self.input_size,
                preproc=TrainTransform(max_labels=120, flip_prob=self.flip_prob, hsv_prob=self.hsv_prob),
                degrees=self.degrees, translate=self.translate, mosaic_scale=self.mosaic_scale,
                mixup_scale=self.mixup_scale, shear=self.shear, enable_mixup=self.enable_mixup,
                mosaic_prob=self.mosaic_prob, mixup_prob=self.mixup_prob,
            )
            sampler = InfiniteSampler(len(self.dataset), seed=self.seed if self.seed else 0)
            batches = YoloBatchSampler(sampler=sampler, batch_size=_per_rank(batch_size, is_distributed),
                                       drop_last=False, mosaic=not no_aug)
            return DataLoader(self.dataset, batch_sampler=batches, num_workers=self.data_num_workers,
                              pin_memory=True, worker_init_fn=worker_init_reset_seed)

        def get_eval_loader(self, batch_size, is_distributed, testdev=False, legacy=False):
            dataset = self.get_eval_dataset(testdev=testdev, legacy=legacy)
            if is_distributed:
                sampler = torch.utils.data.distributed.DistributedSampler(dataset, shuffle=False)
            else:
                sampler = torch.utils.data.SequentialSampler(dataset)
            return torch.utils.data.DataLoader(dataset, batch_size=_per_rank(batch_size, is_distributed),
                                               sampler=sampler, num_workers=self.data_num_workers,
                                               pin_memory=True)

"""The schedule of the embedded ``shapes`` dataset exps: YOLOX-nano trained on a 2-core CPU."""

import os

from .exp import AttentionExp
from .tools.make_shapes import CLASS_NAMES


class NanoShapesExp(AttentionExp):
    """YOLOX-nano (depthwise) on ``datasets/shapes`` from ``python -m yolox_attn.tools.make_shapes``.

    Tuned to train in under 10 minutes on 2 CPU cores at batch 8: 320 px inputs, a short
    cosine schedule with a one-epoch warm-up, a small multi-scale range, and mosaic with
    mixup off, as YOLOX-nano itself has.
    """

    def __init__(self):
        super().__init__()
        self.use_yolox_size("nano")
        self.num_classes = len(CLASS_NAMES)
        self.data_dir = os.path.join("datasets", "shapes")
        self.input_size = (320, 320)
        self.test_size = (320, 320)
        self.random_size = (8, 12)
        self.mosaic_prob = 0.5
        self.degrees = 5.0
        self.max_epoch = 12
        self.warmup_epochs = 1
        self.no_aug_epochs = 2
        self.basic_lr_per_img = 0.04 / 64.0
        self.eval_interval = 4
        self.print_interval = 16
        self.data_num_workers = 2
        self.save_history_ckpt = False

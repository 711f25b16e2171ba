"""Pascal VOC, or any data in VOC's layout, with attention: YOLOX's VOC exp with its own class names.

``data_dir`` holds ``VOC<year>/`` folders (``Annotations/``, ``JPEGImages/``,
``ImageSets/Main/<set>.txt``); ``train_image_sets`` and ``test_image_sets`` choose the
(year, set) pairs, so VOC2007 alone works. Evaluation is YOLOX's VOC evaluation (on any device):
the mean of VOC APs at IoU 0.50:0.05:0.95, and the AP at 0.50 (11-point AP for VOC2007).
"""

from typing import List, Sequence, Tuple

from yolox.data.datasets import voc
from yolox.exp import Exp

from .data.hooks import HAS_DATASET_HOOKS, DatasetHooks
from .exp import AttentionMixin, default_data_dir
from .patching import replaced

ImageSets = Tuple[Tuple[str, str], ...]


class VOCDataset(voc.VOCDetection):
    """YOLOX's ``VOCDetection`` with the class names of the data rather than VOC's 20.

    YOLOX reads object names with VOC's names and writes and scores its evaluation files
    per VOC class; both take ``class_names`` here.
    """

    def __init__(self, data_dir: str, image_sets: ImageSets, class_names: Sequence[str], **kwargs):
        self.class_names = tuple(class_names)
        if not HAS_DATASET_HOOKS:
            kwargs.pop("cache_type", None)  # PyPI's 0.3.0 caches in RAM only
        names = {name: index for index, name in enumerate(self.class_names)}
        super().__init__(data_dir=data_dir, image_sets=[tuple(s) for s in image_sets],
                         target_transform=voc.AnnotationTransform(class_to_ind=names), **kwargs)

    def evaluate_detections(self, all_boxes, output_dir=None):
        with replaced(voc, VOC_CLASSES=self.class_names):
            return super().evaluate_detections(all_boxes, output_dir)


class VOCAttentionExp(AttentionMixin, DatasetHooks, Exp):
    """YOLOX's VOC exp (``exps/example/yolox_voc/yolox_voc_s.py``) with attention.

    Attributes on top of ``AttentionMixin``'s: ``train_image_sets``, ``test_image_sets`` (tuples
    of (year, set) pairs) and ``class_names`` (VOC's 20 by default; ``num_classes`` must match).
    """

    def __init__(self):
        super().__init__()
        # YOLOX's VOC settings
        self.num_classes = 20
        self.depth, self.width = 0.33, 0.50
        self.warmup_epochs = 1
        self.mosaic_prob, self.mixup_prob, self.hsv_prob, self.flip_prob = 1.0, 1.0, 1.0, 0.5
        self.data_dir = default_data_dir("VOCdevkit")
        self.train_image_sets: ImageSets = (("2007", "trainval"), ("2012", "trainval"))
        self.test_image_sets: ImageSets = (("2007", "test"),)
        self.class_names = tuple(voc.VOC_CLASSES)

    def get_dataset(self, cache: bool = False, cache_type: str = "ram"):
        from yolox.data import TrainTransform

        return VOCDataset(self.data_dir, self.train_image_sets, self.class_names, img_size=self.input_size,
                          preproc=TrainTransform(max_labels=50, flip_prob=self.flip_prob, hsv_prob=self.hsv_prob),
                          cache=cache, cache_type=cache_type)

    def get_eval_dataset(self, **kwargs):
        from yolox.data import ValTransform

        return VOCDataset(self.data_dir, self.test_image_sets, self.class_names, img_size=self.test_size,
                          preproc=ValTransform(legacy=kwargs.get("legacy", False)))

    def get_evaluator(self, batch_size, is_distributed, testdev=False, legacy=False):
        from yolox.evaluators import VOCEvaluator

        return VOCEvaluator(dataloader=self.get_eval_loader(batch_size, is_distributed, testdev=testdev, legacy=legacy),
                            img_size=self.test_size, confthre=self.test_conf, nmsthre=self.nmsthre,
                            num_classes=self.num_classes)

    def check_dataset(self, splits: Sequence[str] = ("train", "val")) -> List[str]:
        """Check the image sets of ``splits`` ("train"; "val" and "test" both mean the test sets)."""
        from .data.checks import check_voc_dataset

        image_sets = [self.train_image_sets if split == "train" else self.test_image_sets for split in splits]
        return [note for sets in dict.fromkeys(image_sets)
                for note in check_voc_dataset(self.data_dir, sets, self.num_classes, self.class_names)]

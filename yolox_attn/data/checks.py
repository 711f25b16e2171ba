"""Placeholder until the data-checks branch lands."""
from typing import List

from ..preflight import require_annotations


def check_coco_dataset(data_dir, ann_file, image_dir, num_classes) -> List[str]:
    require_annotations(data_dir, ann_file)
    return []


def check_voc_dataset(data_dir, image_sets, num_classes, class_names) -> List[str]:
    return []

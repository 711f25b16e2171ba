"""Datasets: ``shapes``, the generated dataset of the shapes exps (COCO or VOC layout), and
``checks``, the checks of a user's COCO or VOC dataset run before training or evaluating."""

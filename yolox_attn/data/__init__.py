"""Datasets this package makes: ``shapes``, the generated COCO-format dataset of the shapes exps."""

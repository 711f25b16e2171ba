"""The names of a model's classes, and where they came from.

Detections are drawn, exported files labelled and AP tables printed with these names. A wrong
name is worse than none, so a name that is only guessed from the class count says so in a
warning, and the source travels with the names (``class_names_for`` returns both).
"""

import json
import os
from typing import List, Tuple

from loguru import logger

from .data.shapes import CLASS_NAMES as SHAPES_NAMES
from .preflight import UsageError

__all__ = ["class_names_for", "names_from_annotations", "is_guessed"]

GUESSED = "guessed from num_classes"


def _exp_attribute(exp, n: int) -> List[str]:
    """``exp.class_names`` as a list of ``n`` names; a comma-separated string (``opts``) is split."""
    value = exp.class_names
    names = [s.strip() for s in value.split(",")] if isinstance(value, str) else list(value)
    if not all(isinstance(s, str) and s for s in names):
        raise UsageError(f"exp.class_names must be non-empty strings, got {value!r}")
    if len(names) != n:
        raise UsageError(f"exp.class_names has {len(names)} names {names} but num_classes is {n}")
    return names


def names_from_annotations(path: str) -> List[str]:
    """The category names of a COCO annotation file, ordered by category id as YOLOX's
    ``COCODataset`` orders its labels (label i is the i-th smallest id)."""
    with open(path) as f:
        cats = json.load(f)["categories"]
    return [str(c["name"]) for c in sorted(cats, key=lambda c: c["id"])]


def class_names_for(exp) -> Tuple[List[str], str]:
    """(names, where they came from) for ``exp.num_classes`` classes; the first that applies:

    1. the exp's ``class_names`` attribute, when set (a wrong count is a ``UsageError``);
    2. the categories of the exp's COCO annotation file ``<data_dir>/annotations/<val_ann>``,
       when it exists and has ``num_classes`` of them;
    3. the shapes dataset's names when ``num_classes`` is 4, COCO's 80 names when it is 80, with a
       warning: a guess from the count alone;
    4. ``class0``, ``class1``, ...
    """
    n = int(exp.num_classes)
    if getattr(exp, "class_names", None) is not None:
        return _exp_attribute(exp, n), "exp.class_names"
    data_dir, val_ann = getattr(exp, "data_dir", None), getattr(exp, "val_ann", None)
    if data_dir and val_ann:
        ann = os.path.join(data_dir, "annotations", val_ann)
        if os.path.isfile(ann):
            try:
                names = names_from_annotations(ann)
            except (OSError, ValueError, KeyError, TypeError) as err:
                logger.warning(f"could not read class names from {ann}: {err!r}")
            else:
                if len(names) == n:
                    return names, ann
                logger.warning(f"{ann} has {len(names)} categories but the exp has num_classes={n}; not using them")
    guesses = {len(SHAPES_NAMES): ("the shapes dataset's names", SHAPES_NAMES)}
    if n == 80:
        from yolox.data.datasets import COCO_CLASSES  # imports torch: only where it is needed

        guesses[80] = ("COCO's names", COCO_CLASSES)
    if n in guesses:
        what, names = guesses[n]
        source = f"{what}, {GUESSED}={n}"
        logger.warning(f"class names: {source} (no exp.class_names and no annotation file "
                       f"{os.path.join(str(data_dir), 'annotations', str(val_ann))}); set class_names in the "
                       "exp if they are not these")
        return list(names), source
    return [f"class{i}" for i in range(n)], f"none known (class0..class{n - 1})"


def is_guessed(source: str) -> bool:
    """Whether ``source`` (from ``class_names_for``) says the names were only guessed from the count."""
    return GUESSED in source


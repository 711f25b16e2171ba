"""Per-class AP/AR tables in the unit of COCO's summary (fractions), not YOLOX's percent."""

import contextlib
import io

import numpy as np
import pytest
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from yolox_attn.evaluator import per_class_table, per_class_tables_as_fractions


def _coco_eval():
    gt = COCO()
    images = [{"id": i, "width": 100, "height": 100} for i in (1, 2)]
    boxes = {1: [10, 10, 30, 30], 2: [50, 50, 20, 40]}
    annotations = [{"id": i, "image_id": i, "category_id": c, "bbox": boxes[i], "area": 900.0, "iscrowd": 0}
                   for i, c in ((1, 1), (2, 2))]
    gt.dataset = {"images": images, "annotations": annotations,
                  "categories": [{"id": 1, "name": "square"}, {"id": 2, "name": "circle"}]}
    with contextlib.redirect_stdout(io.StringIO()):
        gt.createIndex()
        dets = gt.loadRes(np.array([[1, 12, 10, 30, 30, 0.9, 1], [2, 50, 50, 20, 20, 0.8, 2]]))
        ev = COCOeval(gt, dets, "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return ev


def _cells(table):
    rows = [line.split("|")[1:-1] for line in table.splitlines()[2:]]
    return {name.strip(): float(value) for row in rows for name, value in zip(row[0::2], row[1::2])}


def test_tables_are_fractions_like_the_summary():
    ev = _coco_eval()
    ap = _cells(per_class_table(ev, ["square", "circle"], "AP"))
    ar = _cells(per_class_table(ev, ["square", "circle"], "AR"))
    assert 0 < ap["square"] <= 1 and 0 <= ap["circle"] < ap["square"]
    # the mean over classes is COCO's summary AP / AR@100 (stats[0], stats[8])
    assert np.mean(list(ap.values())) == pytest.approx(ev.stats[0], abs=1e-3)
    assert np.mean(list(ar.values())) == pytest.approx(ev.stats[8], abs=1e-3)


def test_yolox_tables_print_fractions_while_active():
    from yolox.evaluators import coco_evaluator

    ev = _coco_eval()
    names = ["square", "circle"]
    percent = _cells(coco_evaluator.per_class_AR_table(ev, class_names=names))
    with per_class_tables_as_fractions():
        fractions = _cells(coco_evaluator.per_class_AR_table(ev, class_names=names))
    for name in names:
        assert fractions[name] == pytest.approx(percent[name] / 100, abs=1e-3)
    assert _cells(coco_evaluator.per_class_AR_table(ev, class_names=names)) == percent  # restored


def test_bad_arguments():
    ev = _coco_eval()
    with pytest.raises(ValueError, match="metric must be 'AP' or 'AR', got 'AP50'"):
        per_class_table(ev, ["square", "circle"], "AP50")
    with pytest.raises(ValueError, match="1 class names for 2 evaluated classes"):
        per_class_table(ev, ["square"], "AR")

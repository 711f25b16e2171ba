"""YOLOX's evaluators on the CPU, what their numbers are, and per-class tables in COCO's unit."""

import contextlib
import itertools
from typing import Iterator, Optional, Sequence, Tuple

import numpy as np
import torch
from tabulate import tabulate

from .patching import replaced


def write_voc_results(dataset, all_boxes) -> None:
    """What YOLOX's ``VOCDetection._write_voc_results_file`` writes, which numpy 2 stops it from
    writing (it skips an image by ``dets == []``, which numpy 2 refuses for any array of boxes):
    VOC's results files, one per class (the module's ``VOC_CLASSES``, which ``yolox_attn.voc``
    sets to the data's names), a line per detection: image id, score, box in VOC's 1-based pixels."""
    from yolox.data.datasets import voc

    for class_index, name in enumerate(voc.VOC_CLASSES):
        with open(dataset._get_voc_results_file_template().format(name), "wt") as f:
            for image_index, (_, image_id) in enumerate(dataset.ids):
                boxes = np.asarray(all_boxes[class_index][image_index], dtype=np.float64).reshape(-1, 5)
                for x1, y1, x2, y2, score in boxes:
                    f.write(f"{image_id} {score:.3f} {x1 + 1:.1f} {y1 + 1:.1f} {x2 + 1:.1f} {y2 + 1:.1f}\n")


@contextlib.contextmanager
def yolox_evaluation(evaluator=None) -> Iterator[None]:
    """Inside, YOLOX's evaluators run here, whatever the device and numpy.

    Without CUDA, ``torch.cuda.FloatTensor``/``HalfTensor`` (which their ``evaluate`` casts
    images to and builds its timing statistics with) are the CPU's tensor types, and
    ``evaluator``'s loader, if given, stops asking for pinned memory. YOLOX's VOC evaluation
    writes its result files with a test that numpy 2 refuses: ``write_voc_results`` writes them.
    """
    from yolox.data.datasets.voc import VOCDetection

    with contextlib.ExitStack() as stack:
        if not torch.cuda.is_available():
            loader = getattr(evaluator, "dataloader", None)
            if loader is not None:
                loader.pin_memory = False
            stack.enter_context(replaced(torch.cuda, FloatTensor=torch.FloatTensor, HalfTensor=torch.HalfTensor))
        stack.enter_context(replaced(VOCDetection, _write_voc_results_file=write_voc_results))
        yield


# What each of YOLOX's evaluators returns as (AP, AP50): COCO's, or VOC's as YOLOX computes it
# (``VOCDetection.evaluate_detections``: the mean of VOC APs at IoU 0.50:0.05:0.95, and the AP
# at 0.50; VOC2007's 11-point AP for years before 2010). Its evaluator's variable names say
# "mAP50, mAP70"; the values are those two.
METRICS = {"coco": ("COCO AP", "COCO AP50"), "voc": ("VOC mAP@[.5:.95]", "VOC mAP50")}


def metric_of(evaluator) -> str:
    """``"voc"`` for YOLOX's VOC evaluator, else ``"coco"``."""
    from yolox.evaluators import VOCEvaluator

    return "voc" if isinstance(evaluator, VOCEvaluator) else "coco"


def _scores_and_summary(result) -> tuple:
    """``(ap, ap50, summary)`` from what an evaluator's ``evaluate`` returned: that, or
    ``((ap, ap50, summary), predictions)`` with YOLOX's ``return_outputs=True``."""
    return result[0] if isinstance(result[0], tuple) else result


def scores_of(result) -> Tuple[float, float]:
    """(AP, AP50) from what an evaluator's ``evaluate`` returned (either form)."""
    scores = _scores_and_summary(result)
    return float(scores[0]), float(scores[1])


# COCO's 12 summary lines (pycocotools' COCOeval.summarize): (AP or AR, IoU, area, max detections)
_COCO_SUMMARY_ROWS = [("Precision", "AP", iou, area, dets) for iou, area, dets in (
    ("0.50:0.95", "all", 100), ("0.50", "all", 100), ("0.75", "all", 100), ("0.50:0.95", "small", 100),
    ("0.50:0.95", "medium", 100), ("0.50:0.95", "large", 100))] + [("Recall", "AR", "0.50:0.95", area, dets)
    for area, dets in (("all", 1), ("all", 10), ("all", 100), ("small", 100), ("medium", 100), ("large", 100))]


def zero_coco_summary() -> str:
    """COCO's summary lines, every value 0 (what COCO would print for no detections)."""
    return "\n".join(f" Average {kind:<9} ({short}) @[ IoU={iou:<9} | area={area:>6} | maxDets={dets:>3} ] = 0.000"
                     for kind, short, iou, area, dets in _COCO_SUMMARY_ROWS)


def evaluation_summary(evaluator, result, conf: float) -> Optional[str]:
    """What an evaluation says: the evaluator's summary, and a last line naming its metric and
    values. Where the model made no detection, YOLOX's COCO evaluator prints no AP table; here
    it gets COCO's table of zeros and the reason. None on ranks other than 0."""
    summary = _scores_and_summary(result)[-1]
    if summary is None:
        return None
    metric = metric_of(evaluator)
    ap, ap50 = scores_of(result)
    lines = [summary.rstrip("\n")]
    if metric == "coco" and "Average Precision" not in summary:
        names = getattr(evaluator.dataloader.dataset, "_classes", None)  # COCODataset's, in label order
        zeros = [class_value_table(names, [0.0] * len(names), m) for m in ("AP", "AR")] if names else []
        lines += [zero_coco_summary(), *zeros,
                  f"no detections: the model scored no box above the confidence threshold {conf} on any image "
                  "(an undertrained model, or a --conf too high), so every AP is 0"]
    names = METRICS[metric]
    lines.append(f"{names[0]}: {ap:.4f}, {names[1]}: {ap50:.4f}")
    return "\n".join(lines)


def class_value_table(class_names: Sequence[str], values: Sequence[float], metric: str, columns: int = 6) -> str:
    """One value per class, as fractions with 3 decimals, ``columns // 2`` classes to a row."""
    cells = [cell for pair in zip(class_names, values) for cell in pair]
    width = min(columns, len(cells)) // 2 * 2
    rows = itertools.zip_longest(*[cells[i::width] for i in range(width)])
    return tabulate(rows, tablefmt="pipe", floatfmt=".3f", headers=["class", metric] * (width // 2), numalign="left")


def per_class_table(coco_eval, class_names: Sequence[str], metric: str, columns: int = 6) -> str:
    """Per-class AP or AR (IoU 0.50:0.95, all areas, the most detections) of an accumulated
    ``COCOeval``, as fractions with 3 decimals like COCO's summary lines; NaN for a class with no
    ground truth. YOLOX's own tables print the same numbers in percent."""
    if metric not in ("AP", "AR"):
        raise ValueError(f"metric must be 'AP' or 'AR', got {metric!r}")
    # precision: (IoU, recall, class, area, max dets); recall: (IoU, class, area, max dets)
    values = coco_eval.eval["precision"][:, :, :, 0, -1] if metric == "AP" else coco_eval.eval["recall"][:, None, :, 0, -1]
    if values.shape[2] != len(class_names):
        raise ValueError(f"{len(class_names)} class names for {values.shape[2]} evaluated classes")
    means = []
    for idx in range(len(class_names)):
        v = values[:, :, idx]
        v = v[v > -1]  # -1: no ground truth for this class
        means.append(float(np.mean(v)) if v.size else float("nan"))
    return class_value_table(class_names, means, metric, columns)


@contextlib.contextmanager
def per_class_tables_as_fractions() -> Iterator[None]:
    """While active, YOLOX's evaluator prints its per-class AP/AR tables with ``per_class_table``
    (fractions, the unit of the COCO summary above them) instead of in percent."""
    from yolox.evaluators import coco_evaluator

    with replaced(coco_evaluator,
                  per_class_AP_table=lambda coco_eval, class_names: per_class_table(coco_eval, class_names, "AP"),
                  per_class_AR_table=lambda coco_eval, class_names: per_class_table(coco_eval, class_names, "AR")):
        yield

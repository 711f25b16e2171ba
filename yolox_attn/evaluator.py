"""YOLOX's COCO evaluator on whatever device the model is on, and per-class tables in COCO's unit."""

import contextlib
import itertools
import time
from typing import Iterator, Sequence

import numpy as np
import torch
from tabulate import tabulate
from tqdm import tqdm
from yolox.evaluators import COCOEvaluator
from yolox.utils import gather, is_main_process, postprocess, synchronize


def _sync(device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.time()


class DeviceCOCOEvaluator(COCOEvaluator):
    """``COCOEvaluator.evaluate`` without the hard-coded CUDA tensor types.

    Images go to the model's device; ``half=True`` runs the model in pure half precision as
    YOLOX's ``--fp16`` evaluation does. The COCO AP computation is YOLOX's own.
    """

    def evaluate(self, model, distributed=False, half=False, trt_file=None, decoder=None, test_size=None):
        if trt_file is not None:
            raise ValueError("TensorRT evaluation needs YOLOX's COCOEvaluator on a CUDA machine")
        model = model.eval()
        if half:
            model = model.half()
        param = next(model.parameters())
        device, dtype = param.device, param.dtype
        progress = tqdm if is_main_process() else iter

        data_list = []
        inference_time = nms_time = 0.0
        n_samples = max(len(self.dataloader) - 1, 1)
        for cur_iter, (imgs, _, info_imgs, ids) in enumerate(progress(self.dataloader)):
            with torch.no_grad():
                imgs = imgs.to(device=device, dtype=dtype)
                # The last batch may be short, so it is left out of the timing as YOLOX does.
                timed = cur_iter < len(self.dataloader) - 1
                start = _sync(device)
                outputs = model(imgs)
                if decoder is not None:
                    outputs = decoder(outputs, dtype=outputs.type())
                infer_end = _sync(device)
                outputs = postprocess(outputs, self.num_classes, self.confthre, self.nmsthre)
                nms_end = _sync(device)
                if timed:
                    inference_time += infer_end - start
                    nms_time += nms_end - infer_end
            data_list.extend(self.convert_to_coco_format(outputs, info_imgs, ids))

        statistics = torch.tensor([inference_time, nms_time, n_samples], dtype=torch.float32, device=device)
        if distributed:
            data_list = list(itertools.chain(*gather(data_list, dst=0)))
            torch.distributed.reduce(statistics, dst=0)
        results = self.evaluate_prediction(data_list, statistics.cpu())
        synchronize()
        return results


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
    cells = []
    for idx, name in enumerate(class_names):
        v = values[:, :, idx]
        v = v[v > -1]  # -1: no ground truth for this class
        cells += [name, float(np.mean(v)) if v.size else float("nan")]
    width = min(columns, len(cells)) // 2 * 2
    rows = itertools.zip_longest(*[cells[i::width] for i in range(width)])
    return tabulate(rows, tablefmt="pipe", floatfmt=".3f", headers=["class", metric] * (width // 2), numalign="left")


@contextlib.contextmanager
def per_class_tables_as_fractions() -> Iterator[None]:
    """While active, YOLOX's evaluator prints its per-class AP/AR tables with ``per_class_table``
    (fractions, the unit of the COCO summary above them) instead of in percent."""
    from yolox.evaluators import coco_evaluator

    saved = coco_evaluator.per_class_AP_table, coco_evaluator.per_class_AR_table
    coco_evaluator.per_class_AP_table = lambda coco_eval, class_names: per_class_table(coco_eval, class_names, "AP")
    coco_evaluator.per_class_AR_table = lambda coco_eval, class_names: per_class_table(coco_eval, class_names, "AR")
    try:
        yield
    finally:
        coco_evaluator.per_class_AP_table, coco_evaluator.per_class_AR_table = saved

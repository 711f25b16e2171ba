"""YOLOX's COCO evaluator on whatever device the model is on."""

import itertools
import time

import torch
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

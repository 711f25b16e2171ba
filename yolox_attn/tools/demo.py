"""Detection pictures (and attention heat maps) like ``python -m yolox.tools.demo image``.

    python -m yolox_attn.tools.demo image -f exps/example/yolox_nano_cam_shapes.py -c best_ckpt.pth \\
        --path datasets/shapes/val2017 --save_result --attention-maps

YOLOX's flags, its preprocessing (``ValTransform``, letterbox to ``test_size``), ``postprocess``
and its ``vis`` drawing; plus ``opts`` merged into the exp, ``--device auto`` (CUDA when there is
one, else the CPU), ``--output-dir`` and ``--attention-maps``. Only the ``image`` demo exists:
the machines this package targets are headless (opencv-python-headless has no window to show a
webcam in), so ``video``/``webcam`` are refused.

Pictures keep the input's size and go to ``--output-dir``, by default to
``<exp.output_dir>/<experiment name>/vis_res/<YYYY_mm_dd_HH_MM_SS>/`` as in YOLOX, mirroring the
sub-folders of a ``--path`` folder. ``--save_result`` saves them; ``--output-dir`` and
``--attention-maps`` imply it (nothing can be shown on a headless machine).

``--attention-maps`` also writes ``<stem>_attention.png`` per image: the detections, then one
panel per attended level (left to right, in the neck's order), each a heat map on the input image
(min-max scaled over the image region, JET colours, half blended) with a colour scale at its
right edge whose ends are labelled with the map's minimum and maximum (in as many digits as tell
them apart), titled with the level, the attention and what the map shows (see
``yolox_attn.visualize.attention_maps``). A flat map, whose max - min is at most 1e-3 of its
largest magnitude, is one colour without a scale, its value in the title ("flat: 0.2520 (max -
min = 2e-05)"). Where the attention sits behind the identity-at-init gate, the title gives the
gate value and says that the map is the attention's own, before the gate: the output changes by
the gate times that. CCA and non-local show the weights of one query pixel, marked with a
circle: ``--attn-pixel X,Y`` in input-image pixels, else the centre of the most confident
detection, else the image centre. The PNG is ``height x (1 + levels) * width`` of the input
image; titles are drawn inside the panels.

Class names: the exp's ``class_names``, else its own dataset's categories, else the shapes
dataset's or YOLOX's COCO names guessed from ``num_classes`` with a warning, else ``class0``, ...
(``yolox_attn.class_names.class_names_for``; the log says which).

Without ``-c`` the tool loads ``<exp.output_dir>/<experiment name>/best_ckpt.pth`` as YOLOX's
does; when that does not exist either it warns and runs the randomly initialised model (useful
to look at the maps' mechanics, not at detections).
"""

import argparse
import os
import time
from typing import List, Optional, Sequence

import torch
from loguru import logger

from ..preflight import load_exp
from ..visualize.figure import ImagePoint
from ..visualize.image_demo import (  # noqa: F401  (attention_modules, grid_pixel, query_point: re-exported)
    ImageResult,
    attention_modules,
    grid_pixel,
    image_demo,
    query_point,
)
from ..visualize.images import image_files
from ..visualize.predictor import Predictor, class_names_for, load_model
from .eval import pick_device


def make_parser() -> argparse.ArgumentParser:
    """YOLOX demo's arguments (their spelling kept), plus opts and our --output-dir, --attention-maps
    and --attn-pixel, which also take YOLOX's underscore spelling (--attention_maps, ...)."""
    parser = argparse.ArgumentParser("yolox-attn demo")
    parser.add_argument("demo", default="image", help="demo type: only 'image' (video/webcam are refused)")
    parser.add_argument("-expn", "--experiment-name", type=str, default=None)
    parser.add_argument("-n", "--name", type=str, default=None, help="model name")
    parser.add_argument("--path", default="./assets/dog.jpg", help="an image or a folder of images (searched recursively)")
    parser.add_argument("--camid", type=int, default=0, help="accepted for YOLOX compatibility; webcam is refused")
    parser.add_argument("--save_result", action="store_true", help="save the pictures")
    parser.add_argument("-f", "--exp_file", default=None, type=str, help="experiment description file")
    parser.add_argument("-c", "--ckpt", default=None, type=str, help="checkpoint ({'model': state_dict, ...})")
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "gpu"),
                        help="auto: CUDA when available, else the CPU")
    parser.add_argument("--conf", default=0.3, type=float, help="test conf")
    parser.add_argument("--nms", default=0.45, type=float, help="test nms threshold")
    parser.add_argument("--tsize", default=None, type=int, help="test img size (a multiple of 32)")
    parser.add_argument("--fp16", dest="fp16", default=False, action="store_true",
                        help="half precision (CUDA only; ignored with a warning on the CPU)")
    parser.add_argument("--legacy", dest="legacy", default=False, action="store_true",
                        help="preprocessing of old YOLOX checkpoints (RGB, ImageNet normalisation)")
    parser.add_argument("--fuse", dest="fuse", default=False, action="store_true", help="fuse conv and bn")
    parser.add_argument("--trt", dest="trt", default=False, action="store_true",
                        help="refused: use YOLOX's own demo for TensorRT")
    parser.add_argument("--output-dir", "--output_dir", default=None, type=str,
                        help="folder for the pictures (default <output_dir>/<exp>/vis_res/<time>); implies saving")
    parser.add_argument("--attention-maps", "--attention_maps", action="store_true",
                        help="also save detections + one heat-map panel per attended level; implies saving")
    parser.add_argument("--attn-pixel", "--attn_pixel", default=None, type=str,
                        help="X,Y query pixel (input-image coordinates) of the CCA/non-local maps")
    # "*" with parse_intermixed_args, not REMAINDER: after the "demo" positional a REMAINDER would
    # swallow every flag that follows it.
    parser.add_argument("opts", default=None, nargs="*", help="exp attributes: key value ...")
    return parser


def parse_pixel(text: Optional[str]) -> Optional[ImagePoint]:
    """'X,Y' -> (x, y); None stays None."""
    if text is None:
        return None
    try:
        x, y = (float(v) for v in text.split(","))
    except ValueError:
        raise SystemExit(f"--attn-pixel must be X,Y (input-image pixels), got {text!r}")
    return x, y


def main(exp, args) -> List[ImageResult]:
    """Run the image demo for parsed ``args``; return one ``ImageResult`` per image."""
    if args.demo != "image":
        raise SystemExit(f"demo {args.demo!r} is not supported: only 'image' (use YOLOX's own demo for video/webcam)")
    if args.trt:
        raise SystemExit("--trt: use YOLOX's own `python -m yolox.tools.demo --trt` on a CUDA machine")
    if not args.experiment_name:
        args.experiment_name = exp.exp_name
    if args.device == "gpu" and not torch.cuda.is_available():
        raise SystemExit("--device gpu: CUDA is not available here (use --device auto or cpu)")
    device = torch.device("cpu") if args.device == "cpu" else pick_device()
    if args.fp16 and device.type != "cuda":
        logger.warning("--fp16 is for CUDA; running in float32 on the CPU")
        args.fp16 = False
    if args.conf is not None:
        exp.test_conf = args.conf
    if args.nms is not None:
        exp.nmsthre = args.nms
    if args.tsize is not None:
        if args.tsize <= 0 or args.tsize % 32:
            raise SystemExit(f"--tsize must be a positive multiple of 32 (the largest stride), got {args.tsize}")
        exp.test_size = (args.tsize, args.tsize)
    files = image_files(args.path)
    pixel = parse_pixel(args.attn_pixel)
    logger.info(f"Args: {args}")
    logger.info(f"running on {device}")

    save = args.save_result or args.output_dir is not None or args.attention_maps
    if args.output_dir is not None:
        out_dir = args.output_dir
    else:
        stamp = time.strftime("%Y_%m_%d_%H_%M_%S", time.localtime())
        out_dir = os.path.join(exp.output_dir, args.experiment_name, "vis_res", stamp)
    if not save:
        logger.warning("nothing is saved without --save_result (this headless tool shows no window)")

    ckpt_file = args.ckpt or os.path.join(exp.output_dir, args.experiment_name, "best_ckpt.pth")
    if not (args.ckpt or os.path.isfile(ckpt_file)):
        logger.warning(f"no -c and no {ckpt_file}: running the RANDOMLY INITIALISED model")
        ckpt_file = None
    model = load_model(exp, ckpt_file, device, args.fp16, args.fuse)
    names, source = class_names_for(exp)
    logger.info(f"class names from {source}: {names[:10]}{' ...' if len(names) > 10 else ''}")
    predictor = Predictor(model, exp, names, device, args.fp16, args.legacy)
    results = image_demo(predictor, files, args.path, out_dir if save else None, args.attention_maps, pixel)
    if save:
        logger.info(f"{len(results)} picture(s) in {out_dir}")
    return results


def run(argv: Optional[Sequence[str]] = None) -> List[ImageResult]:
    """Command-line entry: parse ``argv``, load the exp, merge opts and run ``main``."""
    args = make_parser().parse_intermixed_args(argv)
    exp = load_exp(args.exp_file, args.name)
    if args.opts:
        exp.merge(args.opts)
    return main(exp, args)


if __name__ == "__main__":
    run()

"""Evaluation like ``python -m yolox.tools.eval`` (COCO, or VOC for a VOC exp), on CUDA when there is
one, else on the CPU.

    python -m yolox_attn.tools.eval -f exps/yolox_s_cam.py -c best_ckpt.pth -b 8 -d 1 --conf 0.001

Same flags and ``opts`` as YOLOX's tool (its parser is reused); ``--trt`` needs YOLOX's own tool.
An exp whose ``compile_model`` is true evaluates the model compiled (``torch.compile``): on a
2-core CPU, YOLOX-s at 640 ran inference 22-34 % faster compiled, with or without attention
(batch 1), after one to four minutes of compiling (docs/benchmarks.md, ``bench --compile``).

``--onnx FILE`` scores an exported ONNX file instead of the checkpoint, run by ``--runtime``:
``onnxruntime`` (default), ``openvino-f32`` or ``openvino`` (OpenVINO's CPU plugin in its default
precision, bfloat16 where the CPU has native bf16), with the same data, thresholds and COCO
evaluation: what a deployment in that runtime scores.
"""

import os
import random

import torch
from loguru import logger
from yolox.core import launch
from yolox.tools.eval import make_parser as yolox_parser
from yolox.utils import configure_module, fuse_model, get_local_rank, get_model_info, setup_logger

from ..checkpoint import load_checkpoint, load_weights, model_state
from ..deploy.runtime import RUNTIMES
from ..evaluator import evaluation_summary, per_class_tables_as_fractions, yolox_evaluation
from ..preflight import load_exp, user_exit


def make_parser():
    """YOLOX's eval flags, plus ``--onnx`` and ``--runtime``."""
    parser = yolox_parser()
    parser.add_argument("--onnx", default=None, type=str,
                        help="score this ONNX file (from yolox_attn.tools.export_onnx) instead of the checkpoint")
    parser.add_argument("--runtime", default="onnxruntime", choices=RUNTIMES,
                        help="runs the --onnx file: onnxruntime, openvino-f32, or openvino (its default precision)")
    return parser


def pick_device(rank: int = 0) -> torch.device:
    """``cuda:<rank>`` when CUDA is available, else the CPU."""
    return torch.device(f"cuda:{rank}") if torch.cuda.is_available() else torch.device("cpu")


def check_half_support(device: torch.device) -> None:
    """Fail early, with the reason, where pure half precision cannot run."""
    try:
        conv = torch.nn.Conv2d(3, 4, 3).to(device).half()
        conv(torch.zeros(1, 3, 8, 8, device=device, dtype=torch.half))
    except RuntimeError as err:
        raise SystemExit(f"--fp16 runs the model in half precision, which fails on {device}: {err}")


@logger.catch(reraise=True)
def main(exp, args, num_devices: int) -> str:
    if args.seed is not None:
        random.seed(args.seed)
        torch.manual_seed(args.seed)
    rank = get_local_rank()
    device = pick_device(rank)
    if device.type == "cuda":
        torch.cuda.set_device(rank)
    file_name = os.path.join(exp.output_dir, args.experiment_name)
    if rank == 0:
        os.makedirs(file_name, exist_ok=True)
    setup_logger(file_name, distributed_rank=rank, filename="val_log.txt", mode="a")
    logger.info(f"Args: {args}")
    logger.info(f"evaluating on {device}")

    if args.conf is not None:
        exp.test_conf = args.conf
    if args.nms is not None:
        exp.nmsthre = args.nms
    if args.tsize is not None:
        exp.test_size = (args.tsize, args.tsize)
    if args.fp16:
        check_half_support(device)

    is_distributed = num_devices > 1
    if getattr(args, "onnx", None) is not None:  # YOLOX's own parser (as the DDP test uses) has no --onnx
        return evaluate_onnx(exp, args)
    try:  # the user's choices (exp, checkpoint, then dataset): a mistake ends in one line
        model = exp.get_model()
        if not args.speed:
            ckpt_file = args.ckpt or os.path.join(file_name, "best_ckpt.pth")
            logger.info(f"loading checkpoint from {ckpt_file}")
            load_weights(model, model_state(load_checkpoint(ckpt_file, map_location=device), ckpt_file), ckpt_file)
            logger.info("loaded checkpoint done.")
        check_dataset = getattr(exp, "check_dataset", None)
        for note in check_dataset(("test",) if args.test else ("val",)) if check_dataset else []:
            logger.warning(note)
        evaluator = exp.get_evaluator(args.batch_size, is_distributed, args.test, args.legacy)
    except (ValueError, OSError) as err:
        raise user_exit("evaluation", err) from None
    logger.info(f"Model Summary: {get_model_info(model, exp.test_size)}")
    model.to(device).eval()
    if is_distributed:
        model = torch.nn.parallel.DistributedDataParallel(model, device_ids=[rank] if device.type == "cuda" else None)
    if args.fuse:
        logger.info("\tFusing model...")
        model = fuse_model(model)
    if getattr(exp, "compile_model", False):
        logger.info("\tCompiling the model with torch.compile (the first batches compile it)")
        # in place (the same module, attributes and state-dict keys), static shapes as in the trainers
        # and bench --compile: a smaller last batch compiles once more rather than a dynamic graph,
        # which a whole ACmix model fails to compile
        model.compile(dynamic=False)

    return evaluate(evaluator, model, exp, is_distributed, args.fp16)


def evaluate(evaluator, model, exp, is_distributed: bool, half: bool) -> str:
    """Run YOLOX's evaluator on ``model`` here (any device, numpy 2), with per-class tables in COCO's
    unit (YOLOX prints them in percent under a summary in fractions); log and return the summary."""
    evaluator.per_class_AP = True
    evaluator.per_class_AR = True
    with per_class_tables_as_fractions(), yolox_evaluation(evaluator):
        result = evaluator.evaluate(model, is_distributed, half, None, None, exp.test_size)
    summary = evaluation_summary(evaluator, result, exp.test_conf)
    if summary is not None:  # YOLOX's evaluators return the summary on rank 0 only
        logger.info("\n" + summary)
    return summary


def check_onnx_args(args, num_devices: int) -> None:
    """``--onnx`` scores the file as exported, in one process: a one-line ``SystemExit`` for the flags
    that would change the model or spread it over processes."""
    refused = [flag for flag, on in (("-d > 1", num_devices > 1), ("--fp16", args.fp16), ("--fuse", args.fuse),
                                     ("--speed", args.speed), ("-c", args.ckpt is not None)) if on]
    if refused:
        raise SystemExit(f"--onnx evaluates the file as exported, in one process: drop {', '.join(refused)}")


def evaluate_onnx(exp, args) -> str:
    """COCO evaluation of the ``--onnx`` file in ``--runtime`` on the exp's data, as ``main`` scores a checkpoint."""
    from ..deploy.torch_bridge import ExportedModel

    try:
        model = ExportedModel(args.onnx, args.runtime, threads=torch.get_num_threads(), input_size=exp.test_size)
        evaluator = exp.get_evaluator(args.batch_size, False, args.test, args.legacy)
    except (ValueError, OSError) as err:
        raise user_exit("evaluation", err) from None
    logger.info(f"evaluating {args.onnx} in {model.runner.description}")
    return evaluate(evaluator, model, exp, False, False)


def run(argv=None) -> None:
    configure_module()
    args = make_parser().parse_args(argv)
    if args.trt:
        raise SystemExit("--trt: use YOLOX's own `python -m yolox.tools.eval --trt` on a CUDA machine")
    exp = load_exp(args.exp_file, args.name)
    exp.merge(args.opts)
    if not args.experiment_name:
        args.experiment_name = exp.exp_name

    available = torch.cuda.device_count() if torch.cuda.is_available() else 1
    num_devices = available if args.devices is None else args.devices
    if not 1 <= num_devices <= available:
        where = f"{available} CUDA device(s)" if torch.cuda.is_available() else "the CPU only (use -d 1)"
        raise SystemExit(f"-d {num_devices}: this machine has {where}")
    if args.onnx is not None:
        check_onnx_args(args, num_devices)
    backend = args.dist_backend if torch.cuda.is_available() else "gloo"
    dist_url = "auto" if args.dist_url is None else args.dist_url
    launch(main, num_devices, args.num_machines, args.machine_rank, backend=backend, dist_url=dist_url,
           args=(exp, args, num_devices))


if __name__ == "__main__":
    run()

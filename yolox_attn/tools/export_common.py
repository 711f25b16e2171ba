"""What the ONNX and TorchScript export tools share: flags, exp and model loading, checks."""

import argparse
import os
from typing import Iterable, List, Mapping, Optional, Sequence, Tuple

import torch
from loguru import logger
from torch import nn

from ..checkpoint import ATTENTION_KEY, load_checkpoint, model_state

__all__ = [
    "ExportCheckError",
    "add_common_args",
    "add_opts_arg",
    "check_within",
    "check_state_fits",
    "exp_from_args",
    "load_export_model",
    "max_abs_diff",
    "random_input",
    "second_size",
]


class ExportCheckError(RuntimeError):
    """The exported model does not reproduce PyTorch's output (or cannot run at all)."""


def add_common_args(parser: argparse.ArgumentParser, default_output: str) -> argparse.ArgumentParser:
    """The flags both YOLOX export tools have (``-f -c -n -expn --output-name -b --decode_in_inference``).

    ``opts`` is not added here: it swallows the rest of the command line, so each tool adds it
    last, after its own flags.
    """
    parser.add_argument("-f", "--exp_file", default=None, type=str, help="experiment description file")
    parser.add_argument("-n", "--name", default=None, type=str, help="model name (a YOLOX built-in exp)")
    parser.add_argument("-expn", "--experiment-name", default=None, type=str,
                        help="only named in the no-checkpoint warning (where YOLOX would look for best_ckpt.pth)")
    parser.add_argument("-c", "--ckpt", default=None, type=str,
                        help="checkpoint ({'model': state_dict}); without it the randomly initialised "
                             "model is exported, with a warning (a quick check of the graph only)")
    parser.add_argument("--output-name", default=default_output, type=str, help="output file")
    parser.add_argument("-b", "--batch-size", default=1, type=int, help="batch size of the traced input")
    parser.add_argument("--decode_in_inference", action="store_true",
                        help="decode boxes to image coordinates inside the model")
    return parser


def add_opts_arg(parser: argparse.ArgumentParser) -> None:
    """YOLOX's trailing ``key value`` pairs merged into the exp (add it after every other flag)."""
    parser.add_argument("opts", nargs=argparse.REMAINDER, default=None,
                        help="exp attributes to change, as key value pairs (e.g. test_size '(320,320)')")


def exp_from_args(args: argparse.Namespace):
    """YOLOX's ``get_exp`` plus the ``opts`` merge; fills ``args.experiment_name`` as YOLOX does."""
    from yolox.exp import get_exp

    if args.exp_file is None and args.name is None:
        raise SystemExit("give an exp: -f exps/yolox_s_cam.py (or -n with a YOLOX built-in name)")
    exp = get_exp(args.exp_file, args.name)
    exp.merge(list(args.opts or []))
    if not args.experiment_name:
        args.experiment_name = exp.exp_name
    return exp


def _strip_ddp(state: Mapping[str, torch.Tensor]) -> dict:
    # Checkpoints saved from a DistributedDataParallel model prefix every key with "module.".
    return {(k[len("module."):] if k.startswith("module.") else k): v for k, v in state.items()}


def check_state_fits(model: nn.Module, state: Mapping[str, torch.Tensor], source: str = "checkpoint") -> None:
    """Raise ValueError naming the layers unless ``state`` loads strictly into ``model``.

    ``load_state_dict`` reports the same problems, but as one long list per key; this says what
    kind of mismatch it is (another YOLOX size, another attention, a plain YOLOX checkpoint).
    """
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    wrong = [k for k in own if k in state and tuple(own[k].shape) != tuple(state[k].shape)]
    if not (missing or unexpected or wrong):
        return
    problems: List[str] = []
    if wrong:
        shapes = [f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(own[k].shape)}" for k in wrong[:6]]
        problems.append(f"{len(wrong)} layer(s) of another shape (another depth/width/num_classes?): "
                        + "; ".join(shapes))
    if missing:
        problems.append(f"{len(missing)} model key(s) missing from the checkpoint: {missing[:6]}")
        if all(ATTENTION_KEY in k for k in missing):
            problems.append("only attention weights are missing: this is a checkpoint of YOLOX without this "
                            "attention; fine-tune it with the attention exp before exporting")
    if unexpected:
        problems.append(f"{len(unexpected)} checkpoint key(s) the model lacks: {unexpected[:6]}")
    raise ValueError(f"{source} does not fit the model of this exp: " + " | ".join(problems))


def load_export_model(exp, ckpt: Optional[str], decode: bool, onnx_silu: bool = False,
                      experiment_name: Optional[str] = None) -> nn.Module:
    """The exp's model in eval mode, with ``ckpt`` loaded strictly, ready to trace.

    ``ckpt=None`` keeps the random initialisation (with a warning). ``onnx_silu`` swaps
    ``nn.SiLU`` for YOLOX's ``x * sigmoid(x)`` module as YOLOX's ONNX tool does, so the graph
    holds Sigmoid and Mul, which every ONNX runtime has.
    """
    model = exp.get_model()
    if ckpt is None:
        default = os.path.join(exp.output_dir, experiment_name or exp.exp_name, "best_ckpt.pth")
        logger.warning(
            "no checkpoint given (-c): exporting the RANDOMLY INITIALISED model. This only checks "
            f"that the graph exports and runs; YOLOX's tool would load {default}, pass -c to use it."
        )
    else:
        state = _strip_ddp(model_state(load_checkpoint(ckpt), str(ckpt)))
        check_state_fits(model, state, f"checkpoint {str(ckpt)!r}")
        model.load_state_dict(state)
        logger.info(f"loaded checkpoint {ckpt}")
    model.eval()
    if onnx_silu:
        from yolox.models.network_blocks import SiLU
        from yolox.utils import replace_module

        model = replace_module(model, nn.SiLU, SiLU)
    model.head.decode_in_inference = decode
    return model


def second_size(size: Sequence[int]) -> Tuple[int, int]:
    """A second, non-square input size to check dynamic shapes: H - 64 (or + 64), W + 32, multiples of 32."""
    h, w = (max(32, int(s) // 32 * 32) for s in size)
    h2 = h - 64 if h > 64 else h + 64
    w2 = w + 32
    if h2 == w2:  # a square second size could hide swapped H and W
        w2 += 32
    return h2, w2


def random_input(batch: int, size: Sequence[int], seed: int = 0) -> torch.Tensor:
    """A reproducible (batch, 3, H, W) float32 input, scaled like YOLOX's 0-255 images."""
    g = torch.Generator().manual_seed(seed)
    return torch.rand(batch, 3, int(size[0]), int(size[1]), generator=g) * 255.0


def max_abs_diff(reference: torch.Tensor, other: torch.Tensor, what: str) -> float:
    """Max |reference - other|; ExportCheckError if the shapes differ."""
    other = torch.as_tensor(other)
    if tuple(reference.shape) != tuple(other.shape):
        raise ExportCheckError(f"{what}: output shape {tuple(other.shape)} differs from PyTorch's "
                               f"{tuple(reference.shape)}")
    return float((reference.double() - other.double()).abs().max())


def check_within(diffs: Iterable[Tuple[str, float]], tol: float, what: str) -> None:
    """Raise ExportCheckError listing every check whose max abs difference exceeds ``tol``."""
    bad = [f"{name}: max abs diff {d:.3g}" for name, d in diffs if not d <= tol]  # NaN fails too
    if bad:
        raise ExportCheckError(f"{what} does not match PyTorch within {tol:g}: " + "; ".join(bad))

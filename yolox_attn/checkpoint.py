"""Loading YOLOX checkpoints with current torch, and fine-tuning from official weights."""

import glob
import os
import pickle
import zipfile
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from loguru import logger
from torch import nn

# YOLOX checkpoints hold numpy scalars (``best_ap``); allow exactly those with weights_only.
try:
    _numpy_scalar = np._core.multiarray.scalar  # numpy >= 2
except AttributeError:  # numpy < 2
    _numpy_scalar = np.core.multiarray.scalar


def _scalar_spelled(module: str):
    """numpy's scalar constructor under the name a pickle written with numpy 1 or 2 looks up."""
    def scalar(*args):
        return _numpy_scalar(*args)

    scalar.__module__, scalar.__name__, scalar.__qualname__ = module, "scalar", "scalar"
    return scalar


# numpy 1 (every stock YOLOX 0.3.0 set-up) pickles numpy.core.multiarray.scalar, numpy 2
# numpy._core.multiarray.scalar; torch matches allowed globals by module and name.
_NUMPY_SCALAR_GLOBALS = [np.dtype, type(np.dtype(np.float64)), type(np.dtype(np.float32)),
                         _scalar_spelled("numpy.core.multiarray"), _scalar_spelled("numpy._core.multiarray")]

# The head's class-prediction layers: their shape follows num_classes, as on any custom dataset.
CLASS_LAYER_PREFIX = "head.cls_preds."
ATTENTION_KEY = ".attention."
# Every position's namespace: backbone.attention.* (backbone position), backbone.neck_attention.*.
ATTENTION_KEYS = (ATTENTION_KEY, ".neck_attention.")


def is_attention_key(key: str) -> bool:
    """Whether a state-dict key belongs to an attention module (at any position), not to YOLOX."""
    return any(part in key for part in ATTENTION_KEYS)


def _load_error_reason(err: BaseException) -> str:
    """The informative line of a torch.load error (weights-only errors open with a paragraph of advice)."""
    text = str(err)
    marker = "WeightsUnpickler error:"
    if marker in text:
        text = text.split(marker, 1)[1]
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[0] if lines else type(err).__name__


def load_checkpoint(path: Union[str, os.PathLike], map_location: Any = "cpu") -> Dict[str, Any]:
    """``torch.load`` a YOLOX checkpoint with ``weights_only=True`` and numpy scalars allowed."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"checkpoint {str(path)!r} does not exist")
    try:
        with torch.serialization.safe_globals(_NUMPY_SCALAR_GLOBALS):
            ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except (RuntimeError, EOFError, pickle.UnpicklingError, zipfile.BadZipFile) as err:
        raise ValueError(f"checkpoint {str(path)!r} cannot be read (corrupt, truncated, not a torch checkpoint, "
                         f"or holding objects a weights-only load refuses): {_load_error_reason(err)}") from err
    if not isinstance(ckpt, dict):
        raise ValueError(f"checkpoint {str(path)!r} holds a {type(ckpt).__name__}, not a dict")
    return ckpt


def newest_readable_checkpoint(folder: Union[str, os.PathLike], exclude: Sequence[str] = ()
                               ) -> Optional[Tuple[str, Dict[str, Any]]]:
    """The most recently written ``*_ckpt.pth`` in ``folder`` that loads, but ``exclude``, with
    its contents; None if none does. The history files ``epoch_<N>`` (YOLOX's
    ``save_history_ckpt``, which the trainers write without what an exact resume needs) come
    after the others. Tried in that order, so usually only one is read."""
    skip = {os.path.abspath(p) for p in exclude}
    paths = [p for p in glob.glob(os.path.join(glob.escape(os.fspath(folder)), "*_ckpt.pth"))
             if os.path.abspath(p) not in skip]
    for path in sorted(paths, key=lambda p: (os.path.basename(p).startswith("epoch_"), -os.path.getmtime(p))):
        try:
            return path, load_checkpoint(path)
        except ValueError:
            continue
    return None


def model_state(ckpt: Mapping[str, Any], path: str = "checkpoint") -> Mapping[str, torch.Tensor]:
    """The model state dict of a YOLOX checkpoint (``{"model": state_dict, ...}``)."""
    if "model" not in ckpt:
        raise ValueError(f"{path} has no 'model' entry (keys: {sorted(ckpt)[:10]}); not a YOLOX checkpoint")
    return ckpt["model"]


def strip_ddp_prefix(state: Mapping[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """Drop the ``module.`` prefix a DistributedDataParallel model puts on every key."""
    return {(k[len("module."):] if k.startswith("module.") else k): v for k, v in state.items()}


def _mismatch(own: Mapping[str, torch.Tensor], state: Mapping[str, torch.Tensor], ignore=lambda k: False):
    """Keys missing from ``state``, keys ``own`` lacks, and keys of another shape, skipping ``ignore``d ones."""
    missing = [k for k in own if k not in state and not ignore(k)]
    unexpected = [k for k in state if k not in own and not ignore(k)]
    wrong = [k for k in own if k in state and own[k].shape != state[k].shape and not ignore(k)]
    return missing, unexpected, wrong


def _raise_mismatch(source: str, own, state, missing: List[str], unexpected: List[str], wrong: List[str]) -> None:
    if not (missing or unexpected or wrong):
        return
    problems = []
    if wrong:
        shapes = [f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(own[k].shape)}" for k in wrong[:8]]
        problems.append(f"{len(wrong)} layer(s) of another shape (another YOLOX size or class count?): "
                        + "; ".join(shapes))
    if missing:
        problems.append(f"{len(missing)} model key(s) missing from the checkpoint: {missing[:8]}")
        if all(is_attention_key(k) for k in missing):
            problems.append("only attention weights are missing: a checkpoint of YOLOX without this attention "
                            "(fine-tune from it with -c instead)")
    if unexpected:
        problems.append(f"{len(unexpected)} checkpoint key(s) the model lacks: {unexpected[:8]}")
    raise ValueError(f"{source} does not fit this model: " + " | ".join(problems))


def check_weights(model: nn.Module, state: Mapping[str, torch.Tensor], source: str = "checkpoint") -> None:
    """Raise ValueError naming the layers unless ``state`` fits ``model`` exactly (DDP prefix aside)."""
    state = strip_ddp_prefix(state)
    own = model.state_dict()
    _raise_mismatch(source, own, state, *_mismatch(own, state))


def load_weights(model: nn.Module, state: Mapping[str, torch.Tensor], source: str = "checkpoint") -> None:
    """Load ``state`` strictly (evaluation, export); a mismatch raises ValueError naming the layers."""
    check_weights(model, state, source)
    model.load_state_dict(strip_ddp_prefix(state))


def check_pretrained(model: nn.Module, state: Mapping[str, torch.Tensor],
                     source: str = "checkpoint") -> Tuple[List[str], List[str], List[str]]:
    """Whether ``state`` can fine-tune ``model``; return (new attention, dropped attention, skipped class) keys.

    Attention keys absent from ``state`` keep their initialisation; attention keys of another
    attention type in ``state`` are dropped; head class layers whose shape differs (another
    class count) are skipped. Every other missing, unexpected or mis-shaped key raises
    ValueError naming the layers, so a model is never fine-tuned from half-loaded weights.
    """
    state = strip_ddp_prefix(state)
    own = model.state_dict()
    new_attention = [k for k in own if k not in state and is_attention_key(k)]
    dropped_attention = [k for k in state if k not in own and is_attention_key(k)]
    skipped = [k for k in own if k in state and own[k].shape != state[k].shape and k.startswith(CLASS_LAYER_PREFIX)]
    tolerated = set(new_attention) | set(dropped_attention) | set(skipped)
    _raise_mismatch(source, own, state, *_mismatch(own, state, ignore=tolerated.__contains__))
    return new_attention, dropped_attention, skipped


def load_pretrained(model: nn.Module, state: Mapping[str, torch.Tensor],
                    source: str = "checkpoint") -> Tuple[List[str], List[str]]:
    """Load YOLOX weights for fine-tuning (see ``check_pretrained``); return (new attention keys,
    skipped class-layer keys)."""
    new_attention, dropped_attention, skipped = check_pretrained(model, state, source)
    state = strip_ddp_prefix(state)
    own = model.state_dict()
    model.load_state_dict({k: v for k, v in state.items() if k in own and k not in skipped}, strict=False)
    if new_attention:
        logger.info(f"{len(new_attention)} attention key(s) not in the checkpoint, kept at init: {new_attention}")
    if dropped_attention:
        logger.warning(f"dropped {len(dropped_attention)} attention key(s) of another attention: {dropped_attention}")
    if skipped:
        logger.warning(f"skipped class layers of another class count (normal for a custom dataset): {skipped}")
    return new_attention, skipped

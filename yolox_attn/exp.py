"""``AttentionMixin`` gives any YOLOX exp an attention neck, a complete optimizer and CPU support;
``AttentionExp`` is the mixin over YOLOX's COCO ``Exp``."""

import ast
import os
import random
from typing import Dict, List, Optional, Sequence, Tuple

import torch
import torch.distributed as dist
from torch import nn
from yolox.exp import Exp

from .attention import attention_kwargs, attention_names, canonical_name
from .checkpoint import is_attention_key
from .neck import LEVELS, AttentionPAFPN, check_levels, check_position
from .multiscale import default_size_factors, drawn_size
from .data.hooks import HAS_DATASET_HOOKS, DatasetHooks
from .preflight import UsageError, check_yolox_tool_run, yolox_tool


# What YOLOX's own exps (yolox/exp/default/yolox_<size>.py) set for each size.
_SMALL_INPUT = {"input_size": (416, 416), "test_size": (416, 416), "random_size": (10, 20),
                "mosaic_scale": (0.5, 1.5), "enable_mixup": False}
YOLOX_SIZES: Dict[str, Dict] = {
    "nano": {"depth": 0.33, "width": 0.25, "depthwise": True, "mosaic_prob": 0.5, **_SMALL_INPUT},
    "tiny": {"depth": 0.33, "width": 0.375, **_SMALL_INPUT},
    "s": {"depth": 0.33, "width": 0.50},
    "m": {"depth": 0.67, "width": 0.75},
    "l": {"depth": 1.0, "width": 1.0},
    "x": {"depth": 1.33, "width": 1.25},
}


LR_MULT_DEFAULT = "default"  # the key of attention_lr_mult for the attentions it does not name


def default_data_dir(dataset: str = "COCO") -> str:
    """``$YOLOX_DATADIR/<dataset>`` if the variable is set, else ``datasets/<dataset>`` here."""
    root = os.environ.get("YOLOX_DATADIR")
    return os.path.join(root, dataset) if root else os.path.join("datasets", dataset)


def _parse_levels(value: str) -> Tuple[str, ...]:
    # "dark3,dark5", "('dark3', 'dark5')" or "[]" from the command line.
    text = value.strip()
    if text[:1] in "([":
        return tuple(ast.literal_eval(text))
    return tuple(part.strip() for part in text.split(",") if part.strip())


def _parse_kwargs(value: str) -> Dict:
    # "{'head': 8}" or "head=8,kernel_att=5" from the command line.
    text = value.strip()
    if text.startswith("{"):
        return dict(ast.literal_eval(text))
    pairs = [part.split("=", 1) for part in text.split(",") if part.strip()]
    bad = [p[0] for p in pairs if len(p) != 2]
    if bad:
        raise ValueError(f"attention_kwargs entries must be key=value, got {bad}")
    return {k.strip(): ast.literal_eval(v.strip()) for k, v in pairs}


def scale_lr_during_step(optimizer: torch.optim.Optimizer) -> None:
    """Multiply each group's lr by its ``lr_mult`` for the length of ``step()``.

    YOLOX's trainers (and the CPU one) set the scheduler's lr on every group each iteration,
    so the multiplier is applied around the step and the group's lr restored afterwards.
    """

    def scale(opt, args, kwargs):
        for group in opt.param_groups:
            group["lr_base"] = group["lr"]
            group["lr"] = group["lr"] * group.get("lr_mult", 1.0)

    def restore(opt, args, kwargs):
        for group in opt.param_groups:
            group["lr"] = group.pop("lr_base")

    optimizer.register_step_pre_hook(scale)
    optimizer.register_step_post_hook(restore)


def _parse_lr_mult(value: str):
    # "0.1", "{'cca': 0.1}" or "cca=0.1,acmix=0.5" from the command line.
    text = value.strip()
    return _parse_kwargs(text) if text.startswith("{") or "=" in text else _literal_or_text(text)


def _literal_or_text(value: str):
    try:
        return ast.literal_eval(value)
    except (ValueError, SyntaxError):
        return value


class AttentionMixin:
    """Attention for any YOLOX exp: ``class Exp(AttentionMixin, <a YOLOX exp>)``.

    Adds the attention options, the model (YOLOX with ``AttentionPAFPN`` as its neck), an
    optimizer that holds every parameter, ``opts`` parsing, and the trainer for the device (the
    CPU one where there is no CUDA). Data, evaluation and everything else stay the exp's own.

    Attributes on top of YOLOX's:
        attention: "ca" (alias "cam"), "cca", "acmix", "nonlocal", "none" or any other registered
            name (``yolox_attn.attention.describe_attentions()``: SimAM, EMA, timm's layers).
        attention_kwargs: keyword arguments of that attention (e.g. ``{"recurrence": 2}``).
        attention_levels: any subset of ("dark3", "dark4", "dark5").
        attention_position: "backbone" (default: on the backbone outputs the PAFPN consumes),
            "neck" (on the PAFPN outputs, before the head) or "both".
        attention_identity_init: True (default) makes the model exactly the baseline YOLOX at
            initialisation (zero-gated residual around CA/ACmix; CCA and non-local already are);
            False uses the paper-exact modules.
        depthwise: depthwise convolutions in neck and head, as YOLOX-nano has.
        optimizer_type: "sgd" (YOLOX's Nesterov SGD) or "adamw" (for short runs from scratch).
        attention_lr_mult: the attention parameters' learning rate as a multiple of YOLOX's
            (1: the same; their own optimizer groups otherwise, with the same weight decay rules),
            or a dict of such multiples by attention name (``{"cca": 0.1}``; the others take the
            entry ``"default"``, else 1).
        attention_stats_interval: every this many iterations the trainer records the
            attention's scalars, gradient norms and activation sizes in ``metrics.jsonl``
            (0: never).
        data_seed: seeds data order and augmentations, each sample from its place in the run, so
            that a resumed run sees what the uninterrupted one would (``yolox_attn.seeding``);
            None (the default) takes ``seed``. With both None, YOLOX's random seeding is kept.
        finetune_schedule: the exp options of this exp's fine-tuning schedule, which the
            ablation tool applies to runs that continue from a checkpoint (``{}``: the exp's own).
        compile_model: True runs the model through ``torch.compile`` in the trainers and the eval
            tool (each input size compiles once, for minutes; see docs/benchmarks.md).
        class_names: the class names, in label order, for tables, pictures and exported files;
            None (the default): the dataset's.
        save_history_ckpt: YOLOX's (kept as the exp sets it): True, YOLOX's default, keeps the checkpoint of
            every evaluated epoch, ``epoch_<N>_ckpt.pth`` (YOLOX-s: 72 MB each, 44 files and 3.2 GB
            in its 300-epoch schedule); False keeps only ``latest``, ``last_epoch``, ``best`` and
            ``last_mosaic_epoch``.
    """

    def __init__(self):
        super().__init__()
        self.attention = "ca"
        self.attention_kwargs = {}
        self.attention_levels = LEVELS
        self.attention_position = "backbone"
        self.attention_identity_init = True
        self.depthwise = getattr(self, "depthwise", False)
        self.optimizer_type = "sgd"
        self.attention_lr_mult = 1.0
        self.attention_stats_interval = 0
        self.data_seed = None
        self.finetune_schedule = {}
        self.compile_model = False
        self.class_names = None

    def use_yolox_size(self, size: str) -> None:
        """Take the settings YOLOX's own exp of ``size`` (nano, tiny, s, m, l, x) has."""
        if size not in YOLOX_SIZES:
            raise ValueError(f"unknown YOLOX size {size!r}; allowed: {list(YOLOX_SIZES)}")
        for key, value in YOLOX_SIZES[size].items():
            setattr(self, key, value)

    # ------------------------------------------------------------------ model
    def check_attention(self) -> None:
        """Validate the attention attributes; raise ValueError naming any bad value."""
        name = canonical_name(self.attention)
        if not isinstance(self.attention_kwargs, dict):
            raise ValueError(f"attention_kwargs must be a dict, got {self.attention_kwargs!r}")
        unknown = sorted(set(self.attention_kwargs) - set(attention_kwargs(name)))
        if unknown:
            raise ValueError(
                f"attention {name!r} got unknown attention_kwargs {unknown}; allowed: {list(attention_kwargs(name))}"
            )
        check_levels(self.attention_levels)
        self.attention_lr_factor()
        check_position(self.attention_position)
        self.data_rng_seed()
        if not isinstance(self.attention_identity_init, bool):
            raise ValueError(f"attention_identity_init must be True or False, got {self.attention_identity_init!r}")

    def attention_lr_factor(self) -> float:
        """This exp's attention lr multiplier: ``attention_lr_mult``, or its entry for the attention."""
        mult = self.attention_lr_mult
        values = list(mult.values()) if isinstance(mult, dict) else [mult]
        if any(isinstance(v, bool) or not isinstance(v, (int, float)) or not v >= 0 for v in values):
            raise ValueError(f"attention_lr_mult must be a number >= 0 or a dict of them by attention name "
                             f"(and '{LR_MULT_DEFAULT}'), got {self.attention_lr_mult!r}")
        if isinstance(mult, dict):
            # ValueError on an unknown name
            by_name = {canonical_name(k): v for k, v in mult.items() if k != LR_MULT_DEFAULT}
            mult = by_name.get(canonical_name(self.attention), mult.get(LR_MULT_DEFAULT, 1.0))
        return float(mult)

    def get_model(self):
        from yolox.models import YOLOX

        from .precision import Float32DecodeHead

        self.check_attention()
        if getattr(self, "model", None) is None:
            in_channels = [256, 512, 1024]
            neck = AttentionPAFPN(
                self.depth,
                self.width,
                in_channels=in_channels,
                depthwise=self.depthwise,
                act=self.act,
                attention=self.attention,
                attention_kwargs=self.attention_kwargs,
                attention_levels=self.attention_levels,
                identity_init=self.attention_identity_init,
                position=self.attention_position,
                attention_seed=self.seed,
            )
            head = Float32DecodeHead(
                self.num_classes, self.width, in_channels=in_channels, act=self.act, depthwise=self.depthwise
            )
            self.model = YOLOX(neck, head)

        for m in self.model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.eps = 1e-3
                m.momentum = 0.03
        self.model.head.initialize_biases(1e-2)
        self.model.train()
        return self.model

    # -------------------------------------------------------------- optimizer
    def optimizer_groups(self) -> Tuple[List[nn.Parameter], List[nn.Parameter], List[nn.Parameter]]:
        """YOLOX's three groups, holding every trainable parameter exactly once.

        (no decay: norm weights, gates, scales; decay: conv/linear weights; biases). YOLOX
        only looks at modules' ``.weight``/``.bias``, which leaves bare parameters such as
        CCA's ``gamma`` or ACmix's ``rate1`` out of every group: they would never train.
        """
        no_decay, decay, biases = [], [], []
        for name, p in self.model.named_parameters():
            if not p.requires_grad:
                continue
            if name.endswith(".bias"):
                biases.append(p)
            elif p.ndim <= 1:
                no_decay.append(p)
            else:
                decay.append(p)
        return no_decay, decay, biases

    def get_optimizer(self, batch_size):
        if "optimizer" not in self.__dict__:
            lr = self.warmup_lr if self.warmup_epochs > 0 else self.basic_lr_per_img * batch_size
            attention = {id(p) for name, p in self.model.named_parameters() if is_attention_key(name)}
            mult = self.attention_lr_factor()
            groups = []
            for params, decay in zip(self.optimizer_groups(), (0.0, self.weight_decay, 0.0)):
                own = [p for p in params if id(p) in attention]
                if mult == 1 or not own:
                    groups.append({"params": params, "weight_decay": decay})
                    continue
                rest = [p for p in params if id(p) not in attention]
                groups += [{"params": rest, "weight_decay": decay},
                           {"params": own, "weight_decay": decay, "lr_mult": mult}]
            if self.optimizer_type == "sgd":
                self.optimizer = torch.optim.SGD(groups, lr=lr, momentum=self.momentum, nesterov=True)
            elif self.optimizer_type == "adamw":
                self.optimizer = torch.optim.AdamW(groups, lr=lr, betas=(self.momentum, 0.999))
            else:
                raise ValueError(f"optimizer_type must be 'sgd' or 'adamw', got {self.optimizer_type!r}")
            if any("lr_mult" in g for g in groups):
                scale_lr_during_step(self.optimizer)
        return self.optimizer

    # ------------------------------------------------------ device awareness
    def random_resize(self, data_loader, epoch, rank, is_distributed):
        # YOLOX puts this tensor on CUDA unconditionally; gloo and the CPU need it on the CPU.
        on_cuda = torch.cuda.is_available() and not (is_distributed and dist.get_backend() == "gloo")
        size = torch.zeros(2, dtype=torch.long, device="cuda" if on_cuda else "cpu")
        if rank == 0:
            if getattr(self, "random_size", None) is None:
                self.random_size = default_size_factors(self.input_size, self.multiscale_range)
            size[0], size[1] = drawn_size(random.randint(*self.random_size), self.input_size)
        if is_distributed:
            dist.barrier()
            dist.broadcast(size, 0)
        return int(size[0].item()), int(size[1].item())

    def data_rng_seed(self) -> Optional[int]:
        """The seed of data order and augmentations: ``data_seed``, else ``seed`` (None: unseeded)."""
        for key in ("seed", "data_seed"):
            value = getattr(self, key)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
                raise ValueError(f"{key} must be an integer >= 0 or None, got {value!r}")
        return self.seed if self.data_seed is None else self.data_seed

    def get_trainer(self, args):
        from .trainer import AttentionTrainer, CPUTrainer

        return AttentionTrainer(self, args) if torch.cuda.is_available() else CPUTrainer(self, args)

    # ------------------------------------------------------------ overrides
    def merge(self, cfg_list):
        """YOLOX's ``opts`` merge, with the parsing it lacks and no silent drops.

        YOLOX casts a string to the attribute's type, which turns "(320,320)" into a tuple of
        characters; tuples, lists and dicts are parsed as Python literals here instead. Errors
        are ``UsageError``s: a ValueError, and a one-line exit on YOLOX's command line. Run by
        one of YOLOX's tools, it also checks what that tool is about to read (``check_yolox_tool_run``).
        """
        try:
            self._merge_opts(cfg_list)
            check_yolox_tool_run(self)
        except UsageError as err:
            if yolox_tool() is None:
                raise
            # YOLOX's export tools merge inside their logger.catch, which would catch a ValueError
            raise SystemExit(err.code) from None

    def _merge_opts(self, cfg_list):
        if len(cfg_list) % 2:
            raise UsageError(f"opts must be key value pairs, got {cfg_list!r}")
        old_attention = self.attention
        parsers = {"attention_levels": _parse_levels, "attention_kwargs": _parse_kwargs,
                   "attention_lr_mult": _parse_lr_mult}
        rest = []
        for key, value in zip(cfg_list[0::2], cfg_list[1::2]):
            current = getattr(self, key, None)
            if not hasattr(self, key) and not key.startswith("wandb-"):
                raise UsageError(f"unknown exp option {key!r}; it is not an attribute of {type(self).__name__}")
            if not isinstance(value, str):
                rest += [key, value]
            elif key in parsers:
                setattr(self, key, parsers[key](value))
            elif current is None:
                # YOLOX would keep "0" a string (seed None): take a literal where it is one.
                setattr(self, key, _literal_or_text(value))
            elif isinstance(current, bool):
                if value not in ("True", "False"):
                    raise UsageError(f"{key} must be True or False, got {value!r}")
                setattr(self, key, value == "True")
            elif isinstance(current, (tuple, list, dict)):
                parsed = ast.literal_eval(value)
                if not isinstance(parsed, type(current)) and not (
                    isinstance(current, (tuple, list)) and isinstance(parsed, (tuple, list))
                ):
                    raise UsageError(f"{key} must be a {type(current).__name__}, got {value!r}")
                setattr(self, key, type(current)(parsed))
            else:
                rest += [key, value]
        super().merge(rest)
        try:
            self.data_rng_seed()
        except ValueError as err:
            raise UsageError(str(err)) from None
        self._name_after_attention(old_attention)

    def _name_after_attention(self, old: str) -> None:
        """After ``opts`` changed the attention, rename ``exp_name`` where it names the old one
        (``yolox_s_cam`` with ``attention cca`` becomes ``yolox_s_cca``, the cca exp's name), so
        the run gets its own output folder instead of writing into the old attention's."""
        names = set(attention_names())
        try:
            old_key, new_key = canonical_name(old), canonical_name(self.attention)
        except ValueError:
            return  # get_model reports a bad name
        parts = self.exp_name.split("_")
        hits = [i for i, part in enumerate(parts) if part in names and canonical_name(part) == old_key]
        if old_key != new_key and hits:
            parts[hits[-1]] = self.attention.lower()
            self.exp_name = "_".join(parts)


class AttentionExp(AttentionMixin, DatasetHooks, Exp):
    """YOLOX's COCO exp with attention; the data of any COCO-format dataset.

    Attributes on top of ``AttentionMixin``'s: ``train_image_dir``, ``val_image_dir`` and
    ``test_image_dir``, the image folders under ``data_dir`` (YOLOX's ``train2017``, ``val2017``,
    ``test2017``; a labeling tool's export may use e.g. ``images/train``).
    """

    def __init__(self):
        super().__init__()
        self.data_dir = default_data_dir()
        self.train_image_dir = "train2017"
        self.val_image_dir = "val2017"
        self.test_image_dir = "test2017"

    def get_dataset(self, cache: bool = False, cache_type: str = "ram"):
        from yolox.data import COCODataset, TrainTransform

        cache_kwargs = {"cache_type": cache_type} if HAS_DATASET_HOOKS else {}
        return COCODataset(data_dir=self.data_dir, json_file=self.train_ann, name=self.train_image_dir,
                           img_size=self.input_size, cache=cache, **cache_kwargs,
                           preproc=TrainTransform(max_labels=50, flip_prob=self.flip_prob, hsv_prob=self.hsv_prob))

    def get_eval_dataset(self, **kwargs):
        from yolox.data import COCODataset, ValTransform

        testdev = kwargs.get("testdev", False)
        return COCODataset(data_dir=self.data_dir, json_file=self.test_ann if testdev else self.val_ann,
                           name=self.test_image_dir if testdev else self.val_image_dir, img_size=self.test_size,
                           preproc=ValTransform(legacy=kwargs.get("legacy", False)))

    def check_dataset(self, splits: Sequence[str] = ("train", "val")) -> List[str]:
        """Check the data of ``splits`` ("train", "val", "test") before they are read: a one-line
        error for what would fail; return warnings."""
        from .data.checks import check_coco_dataset

        own = [name for name in ("get_dataset", "get_eval_dataset", "get_data_loader", "get_eval_loader")
               if getattr(type(self), name) is not getattr(AttentionExp, name)]
        if own:
            return [f"{type(self).__name__} loads its data with its own {own[0]}, which is not checked in advance"]
        files = {"train": (self.train_ann, "train_image_dir"), "val": (self.val_ann, "val_image_dir"),
                 "test": (self.test_ann, "test_image_dir")}
        return [note for split in splits for note in check_coco_dataset(
            self.data_dir, files[split][0], getattr(self, files[split][1]), self.num_classes,
            image_dir_attr=files[split][1], labelled=split != "test")]

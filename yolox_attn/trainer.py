"""YOLOX's Trainer made to load checkpoints with current torch, and a version that runs on the CPU."""

import os
import time

import torch
from loguru import logger
from torch.nn.parallel import DistributedDataParallel as DDP
from yolox.core import Trainer
from yolox.utils import ModelEMA, get_model_info, get_world_size

from .checkpoint import (check_pretrained, check_weights, load_checkpoint, load_pretrained, load_weights,
                         model_state)
from .monitor import AttentionMonitor, append_jsonl, attention_scalars, read_jsonl
from .precision import cpu_autocast_dtype
from .preflight import error_line, require_annotations, user_exit
from .threads import start_thread_policy

METRICS_FILE = "metrics.jsonl"


class AttentionTrainer(Trainer):
    """YOLOX's own Trainer with checkpoint loading that works on current torch, and a record.

    ``torch.load`` now defaults to ``weights_only=True``, which rejects the numpy ``best_ap``
    YOLOX stores; fine-tuning checks that the weights fit (see ``load_pretrained``).

    Rank 0 writes ``metrics.jsonl`` into the experiment folder: one line per evaluation (epoch,
    AP, AP50, seconds), one at the end (seconds, seconds per iteration, the attention's learned
    scalars) and, every ``exp.attention_stats_interval`` iterations if that is > 0, one with the
    losses and ``AttentionMonitor``'s statistics. A resumed run appends; a new run starts afresh.
    """

    def train(self):
        # What the user chose (exp, data, checkpoint) is checked before YOLOX logs its long set-up,
        # and a mistake there ends in one line. Any later error ends in one line too, naming it and
        # the log that holds its traceback, and exit 1 (YOLOX's logger.catch would exit 0).
        try:
            self.check_inputs()
            self.thread_policy = start_thread_policy(self.device, seeded=self.exp.seed is not None)
            self.before_train()
        except (ValueError, OSError) as err:
            raise user_exit("training", err) from None
        except Exception as err:
            raise self.failure(err, "while setting up") from None
        try:
            self.train_in_epoch()
        except Exception as err:
            raise self.failure(err, f"in epoch {self.epoch + 1}/{self.max_epoch}") from None
        self.after_train()
        self.finish_records()

    def failure(self, err: Exception, where: str) -> SystemExit:
        # DataLoader workers may still be printing (OpenCV's warnings on missing images): stop
        # them first, so that the message is the last line. Both prefetchers keep iter(loader).
        shutdown = getattr(getattr(getattr(self, "prefetcher", None), "loader", None), "_shutdown_workers", None)
        if shutdown is not None:
            shutdown()
        hint = " (out of memory: lower -b or input_size)" if isinstance(err, torch.OutOfMemoryError) else ""
        log = os.path.join(self.file_name, "train_log.txt")
        return user_exit("training", err, f"{where}: {error_line(err)}{hint}; traceback in {log}")

    def _ckpt_file(self):
        if self.args.resume:
            return self.args.ckpt or os.path.join(self.file_name, "latest_ckpt.pth")
        return self.args.ckpt

    def check_inputs(self) -> None:
        """The attention, the dataset's annotation files, and that the checkpoint loads and fits."""
        if hasattr(self.exp, "check_attention"):
            self.exp.check_attention()
        for ann in (self.exp.train_ann, self.exp.val_ann):
            require_annotations(self.exp.data_dir, ann)
        ckpt_file = self._ckpt_file()
        self._ckpt = None
        if ckpt_file is not None:
            self._ckpt = load_checkpoint(ckpt_file, map_location="cpu")
            state = model_state(self._ckpt, ckpt_file)
            check = check_weights if self.args.resume else check_pretrained
            check(self.exp.get_model(), state, ckpt_file)

    def _load(self, ckpt_file):
        # the checkpoint check_inputs read (to the CPU: the optimizer moves its state to the parameters')
        ckpt, self._ckpt = getattr(self, "_ckpt", None), None
        return ckpt if ckpt is not None else load_checkpoint(ckpt_file, map_location=self.device)

    def before_train(self):
        super().before_train()
        self.compile_if_asked()
        self.start_records()

    def compile_if_asked(self) -> None:
        if not getattr(self.exp, "compile_model", False):
            return
        # The backbone and neck (attention included), whose shapes follow the input size only; the
        # head's loss has data-dependent shapes. In place, after the EMA copy (which evaluates
        # uncompiled): same modules, same state-dict keys. Static shapes, since the dynamic graph
        # of a whole ACmix model fails to compile.
        logger.info("Compiling the backbone with torch.compile (each new input size compiles once)")
        model = self.model.module if isinstance(self.model, DDP) else self.model
        model.backbone.compile(dynamic=False)

    def start_records(self) -> None:
        self.metrics_path = os.path.join(self.file_name, METRICS_FILE)
        previous = read_jsonl(self.metrics_path) if self.args.resume else []
        if self.rank == 0 and not self.args.resume and os.path.exists(self.metrics_path):
            os.remove(self.metrics_path)
        last = previous[-1] if previous else {}
        self.wall_offset = last.get("wall_seconds", 0.0)
        self.train_seconds = last.get("train_seconds", 0.0)
        self.clock_start = time.time()
        interval = getattr(self.exp, "attention_stats_interval", 0)
        self.monitor = AttentionMonitor(self.model, self.optimizer) if interval > 0 and self.rank == 0 else None
        self.write_record("start", **self.run_conditions())

    def run_conditions(self) -> dict:
        """What decides this run's numbers besides the exp: seeds, checkpoint, device, threads."""
        seed, data_seed = self.exp.seed, self.exp.data_rng_seed()
        return {"seed": seed, "data_seed": data_seed, "start_epoch": self.start_epoch,
                "checkpoint": self._ckpt_file(), "resume": bool(self.args.resume),
                "device": str(self.device), "threads": torch.get_num_threads(),
                "world_size": get_world_size(), "data_workers": self.exp.data_num_workers,
                "seeded": {
                    "base weights": "torch's global generator, seeded by YOLOX's train tool" if seed is not None
                    else "unseeded",
                    "attention weights": "own generator from seed" if seed is not None else "unseeded",
                    "data order and augmentations": "sampler and workers from (data seed, rank, worker, "
                    "start epoch)" if data_seed is not None else "unseeded (YOLOX's uuid worker seeds)"}}

    def write_record(self, event: str, **fields) -> None:
        if self.rank == 0:
            seconds = {"wall_seconds": round(self.wall_offset + time.time() - self.clock_start, 3),
                       "train_seconds": round(self.train_seconds, 3)}
            epoch = getattr(self, "epoch", self.start_epoch) + 1  # YOLOX sets epoch when the first one starts
            append_jsonl(self.metrics_path, {"event": event, "epoch": epoch, **seconds, **fields})

    def before_iter(self):
        super().before_iter()
        self.iter_start = time.time()
        if self.monitor is not None and self.progress_in_iter % self.exp.attention_stats_interval == 0:
            self.monitor.arm()

    def after_iter(self):
        self.train_seconds += time.time() - self.iter_start
        # read before YOLOX's after_iter, which clears the meters every print_interval
        self.last_losses = {k: float(v.latest) for k, v in self.meter.get_filtered_meter("loss").items()}
        if self.monitor is not None and self.monitor.armed:
            self.write_record("stats", iter=self.progress_in_iter + 1, lr=float(self.meter["lr"].latest),
                              loss=self.last_losses, **self.monitor.collect())
        super().after_iter()

    def finish_records(self) -> None:
        iterations = self.max_iter * self.max_epoch
        self.write_record("end", iterations=iterations,
                          seconds_per_iter=round(self.train_seconds / max(iterations, 1), 5),
                          scalars=attention_scalars(self.model))

    def resume_train(self, model):
        if self.args.resume:
            ckpt_file = self._ckpt_file()
            logger.info(f"resume training from {ckpt_file}")
            ckpt = self._load(ckpt_file)
            load_weights(model, model_state(ckpt, ckpt_file), ckpt_file)
            self.optimizer.load_state_dict(ckpt["optimizer"])
            self.best_ap = float(ckpt.get("best_ap", 0))
            if self.args.start_epoch is not None:
                self.start_epoch = self.args.start_epoch - 1
            else:
                self.start_epoch = ckpt["start_epoch"]
            logger.info(f"loaded checkpoint {ckpt_file!r} (epoch {self.start_epoch})")
        else:
            if self.args.ckpt is not None:
                logger.info(f"loading checkpoint {self.args.ckpt!r} for fine tuning")
                ckpt = self._load(self.args.ckpt)
                load_pretrained(model, model_state(ckpt, self.args.ckpt))
            self.start_epoch = 0
        self.exp.data_start_epoch = self.start_epoch  # the data loader, built next, seeds from it
        return model

    def evaluate_and_save_model(self):
        super().evaluate_and_save_model()
        ap, ap50 = self.exp.last_eval
        # with the last iteration's losses: a reproduced run has the same
        self.write_record("eval", ap=float(ap), ap50=float(ap50), loss=getattr(self, "last_losses", {}))
        # COCOeval returns numpy floats; keep checkpoints loadable with weights_only=True.
        self.best_ap = float(self.best_ap)

    def save_ckpt(self, ckpt_name, update_best_ckpt=False):
        self.best_ap = float(self.best_ap)
        super().save_ckpt(ckpt_name, update_best_ckpt)


class _CPUPrefetcher:
    """Stands in for YOLOX's CUDA-stream DataPrefetcher: same ``next()`` API."""

    def __init__(self, loader):
        self.loader = iter(loader)

    def next(self):
        inputs, targets, _, _ = next(self.loader)
        return inputs, targets


class CPUTrainer(AttentionTrainer):
    """The YOLOX training loop on the CPU: no CUDA device, streams or GradScaler.

    ``--fp16`` becomes bfloat16 autocast where the CPU has native bf16, else float32; inputs
    stay float32.
    """

    def __init__(self, exp, args):
        super().__init__(exp, args)
        self.device = "cpu"
        self.data_type = torch.float32
        self.scaler = None
        self.autocast_dtype = cpu_autocast_dtype(self.amp_training)

    def before_train(self):
        logger.info(f"args: {self.args}")
        logger.info(f"exp value:\n{self.exp}")
        model = self.exp.get_model()
        logger.info(f"Model Summary: {get_model_info(model, self.exp.test_size)}")
        model.to(self.device)
        self.optimizer = self.exp.get_optimizer(self.args.batch_size)
        model = self.resume_train(model)

        self.no_aug = self.start_epoch >= self.max_epoch - self.exp.no_aug_epochs
        self.train_loader = self.exp.get_data_loader(
            batch_size=self.args.batch_size,
            is_distributed=self.is_distributed,
            no_aug=self.no_aug,
            cache_img=self.args.cache,
        )
        self.prefetcher = _CPUPrefetcher(self.train_loader)
        self.max_iter = len(self.train_loader)
        self.lr_scheduler = self.exp.get_lr_scheduler(
            self.exp.basic_lr_per_img * self.args.batch_size, self.max_iter
        )
        if self.args.occupy:  # YOLOX's occupy_mem parses nvidia-smi, which a CPU machine lacks
            logger.warning("-o/--occupy reserves GPU memory; there is no GPU here, so it is ignored")
        if self.is_distributed:
            model = DDP(model, broadcast_buffers=False)
        if self.use_model_ema:
            self.ema_model = ModelEMA(model, 0.9998)
            self.ema_model.updates = self.max_iter * self.start_epoch
        self.model = model
        self.compile_if_asked()
        self.evaluator = self.exp.get_evaluator(batch_size=self.args.batch_size, is_distributed=self.is_distributed)
        if self.rank == 0:
            if self.args.logger != "tensorboard":
                raise ValueError(f"logger {self.args.logger!r} is not supported on the CPU; allowed: 'tensorboard'")
            from torch.utils.tensorboard import SummaryWriter

            self.tblogger = SummaryWriter(os.path.join(self.file_name, "tensorboard"))
        self.start_records()
        logger.info("Training start...")
        logger.info(f"\n{model}")

    def train_one_iter(self):
        iter_start_time = time.time()
        inps, targets = self.prefetcher.next()
        inps = inps.to(self.data_type)
        targets = targets.to(self.data_type)
        targets.requires_grad = False
        inps, targets = self.exp.preprocess(inps, targets, self.input_size)
        data_end_time = time.time()

        amp = self.autocast_dtype is not None
        with torch.autocast("cpu", dtype=self.autocast_dtype or torch.bfloat16, enabled=amp):
            outputs = self.model(inps, targets)
        loss = outputs["total_loss"]
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()

        if self.use_model_ema:
            self.ema_model.update(self.model)
        lr = self.lr_scheduler.update_lr(self.progress_in_iter + 1)
        for param_group in self.optimizer.param_groups:
            param_group["lr"] = lr
        self.meter.update(
            iter_time=time.time() - iter_start_time,
            data_time=data_end_time - iter_start_time,
            lr=lr,
            **outputs,
        )

"""YOLOX's own Trainer with checked inputs, current torch's checkpoint loading, seeded data and a
record of the run; and the same on the CPU with only YOLOX's CUDA pieces replaced."""

import os
import time
from typing import Any, Dict

import torch
import torch.distributed as dist
from loguru import logger
from torch.nn.parallel import DistributedDataParallel as DDP
from yolox.core import Trainer
from yolox.core import trainer as yolox_trainer
from yolox.utils import get_world_size

from .checkpoint import (check_pretrained, check_weights, load_checkpoint, load_pretrained, load_weights,
                         model_state)
from .data.checks import size_override_note
from .evaluator import METRICS, metric_of, scores_of, yolox_evaluation
from .monitor import AttentionMonitor, append_jsonl, attention_scalars, read_jsonl, unwrap
from .patching import replaced
from .precision import autocast_training_forward, cpu_autocast_dtype
from .preflight import error_line, user_exit
from .seeding import seed_loader

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
        """The attention, the dataset (where the exp can check it), and that the checkpoint loads and fits."""
        if hasattr(self.exp, "check_attention"):
            self.exp.check_attention()
        check_dataset = getattr(self.exp, "check_dataset", None)
        notes = check_dataset() if check_dataset is not None else [
            f"{type(self.exp).__name__} has no check_dataset: its data are not checked before training"]
        for note in notes:
            logger.warning(note)
        sizes = size_override_note(self.exp)
        if sizes is not None:
            logger.info(sizes)
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

    def yolox_replacements(self) -> Dict[str, Any]:
        """Names in YOLOX's trainer module that its ``before_train`` uses, replaced while it runs:
        the prefetcher gets the loader once ``prepare_train_loader`` has seeded it."""
        prefetcher = yolox_trainer.DataPrefetcher
        return {"DataPrefetcher": lambda loader: prefetcher(self.prepare_train_loader(loader))}

    def before_train(self):
        with replaced(yolox_trainer, **self.yolox_replacements()):
            super().before_train()
        self.compile_if_asked()
        self.record_evaluations()
        self.start_records()

    def prepare_train_loader(self, loader):
        """The exp's training loader, seeded before its first batch where the exp has a data seed.

        YOLOX seeds its workers from uuid: that is replaced, and the sampler's seed, so that a
        run's data follow its seed (and a resumed run does not replay its first epoch's).
        """
        seed = self.exp.data_rng_seed() if hasattr(self.exp, "data_rng_seed") else None
        if seed is None:
            return loader
        return seed_loader(loader, seed, dist.get_rank() if self.is_distributed else 0, self.start_epoch)

    def record_evaluations(self) -> None:
        """Keep each evaluation's (AP, AP50), whichever YOLOX API returned it, for the records."""
        evaluate = self.evaluator.evaluate
        self.metric = metric_of(self.evaluator)
        self.last_eval = (0.0, 0.0)

        def evaluate_and_keep(*args, **kwargs):
            result = evaluate(*args, **kwargs)
            self.last_eval = scores_of(result)
            return result

        self.evaluator.evaluate = evaluate_and_keep

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
        return model

    def evaluate_and_save_model(self):
        if self.best_ap == 0 and not getattr(self, "evaluated", False):
            # YOLOX writes best_ckpt.pth when AP rises above the best so far (0 at the start): a run
            # that never scored would end without one, or with an earlier run's. Until something
            # scores, this run's first evaluation counts.
            self.best_ap = -1.0
        self.evaluated = True
        with yolox_evaluation(self.evaluator):
            super().evaluate_and_save_model()
        ap, ap50 = self.last_eval
        names = METRICS[self.metric]
        logger.info(f"epoch {self.epoch + 1}: {names[0]} {ap:.4f}, {names[1]} {ap50:.4f}")
        # with the last iteration's losses: a reproduced run has the same
        self.write_record("eval", metric=self.metric, ap=ap, ap50=ap50, loss=getattr(self, "last_losses", {}))
        # COCOeval returns numpy floats; keep checkpoints loadable with weights_only=True.
        self.best_ap = float(self.best_ap)

    def save_ckpt(self, ckpt_name, update_best_ckpt=False, **kwargs):
        # kwargs: YOLOX's current source passes the evaluation's ap
        self.best_ap = float(self.best_ap)
        super().save_ckpt(ckpt_name, update_best_ckpt, **kwargs)


class CPUPrefetcher:
    """Stands in for YOLOX's CUDA-stream ``DataPrefetcher``: the same ``next()``, on the CPU."""

    def __init__(self, loader):
        loader.pin_memory = False  # pinning needs CUDA; YOLOX's loaders always ask for it
        self.loader = iter(loader)

    def next(self):
        inputs, targets, _, _ = next(self.loader)
        return inputs, targets


def _cpu_ddp(model, device_ids=None, **kwargs) -> DDP:
    # YOLOX passes device_ids=[local_rank], which DDP accepts for CUDA modules only
    return DDP(model, **kwargs)


def _no_occupy(local_rank) -> None:
    # YOLOX's occupy_mem parses nvidia-smi, which a CPU machine lacks
    logger.warning("-o/--occupy reserves GPU memory; there is no GPU here, so it is ignored")


class CPUTrainer(AttentionTrainer):
    """YOLOX's own training loop on the CPU: its ``before_train`` and ``train_one_iter`` run as they
    are, with only their CUDA pieces replaced (device selection, the CUDA-stream prefetcher, DDP's
    device ids, ``--occupy``, the GradScaler; evaluation's CUDA tensor types: ``yolox_evaluation``).

    ``--fp16`` becomes bfloat16 autocast of the training forward where the CPU has native bf16,
    else float32; inputs stay float32.
    """

    def __init__(self, exp, args):
        super().__init__(exp, args)
        self.device = "cpu"
        self.data_type = torch.float32
        self.autocast_dtype = cpu_autocast_dtype(self.amp_training)
        self.amp_training = False  # YOLOX's torch.cuda.amp.autocast: off; the CPU's is autocast_training_forward
        self.scaler = torch.amp.GradScaler("cpu", enabled=False)  # steps the optimizer as it is

    def yolox_replacements(self) -> Dict[str, Any]:
        return {**super().yolox_replacements(), "DDP": _cpu_ddp, "occupy_mem": _no_occupy,
                "DataPrefetcher": lambda loader: CPUPrefetcher(self.prepare_train_loader(loader))}

    def before_train(self):
        with replaced(torch.cuda, set_device=lambda device: None):
            super().before_train()
        if self.autocast_dtype is not None:
            # after the EMA copy, which evaluates in float32 without the hooks
            autocast_training_forward(unwrap(self.model), self.autocast_dtype)

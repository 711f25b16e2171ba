"""YOLOX's own Trainer with checked inputs, current torch's checkpoint loading, atomic checkpoints,
clean stops on signals, exact resumes and a record of the run; and the same on the CPU with only
YOLOX's CUDA pieces replaced."""

import os
import shlex
import signal
import sys
import time
from typing import Any, Dict

import torch
import torch.distributed as dist
from loguru import logger
from torch.nn.parallel import DistributedDataParallel as DDP
from yolox.core import Trainer
from yolox.core import trainer as yolox_trainer
from yolox.utils import all_reduce_norm, get_world_size, synchronize

from .atomic import WriteError, atomic_link, atomic_save, remove_leftovers
from .checkpoint import (check_pretrained, check_weights, load_checkpoint, load_pretrained, load_weights,
                         model_state, newest_readable_checkpoint)
from .data.checks import size_override_note
from .distributed import norm_sync_on_the_cpu
from .evaluator import METRICS, metric_of, scores_of, yolox_evaluation
from .known_noise import yolox_tool
from .monitor import AttentionMonitor, append_jsonl, attention_scalars, read_jsonl, unwrap
from .multiscale import warn_if_sizes_exceed_recompile_limit
from .patching import replaced
from .precision import autocast_training_forward, cpu_autocast_dtype
from .preflight import error_line, final_line, user_exit
from .seeding import resumable_loader, rng_state, set_rng_state
from .stopping import IgnoreStopSignals, RankWatchdog, StopSignals, signal_name
from .threads import start_thread_policy

METRICS_FILE = "metrics.jsonl"
LATEST = "latest"
# What a checkpoint holds beyond YOLOX's keys (start_epoch, model, optimizer, best_ap) for an exact
# resume, read back after YOLOX's set-up (``restore_run_state``).
RESUME_KEYS = ("start_iter", "train_model", "ema_updates", "eval_pending", "input_size", "rng", "last_losses",
               "batch_size", "world_size", "iterations_per_epoch")


class Stopped(SystemExit):
    """The run stopped on a signal, at a checkpoint; exit status 128 + the signal's number."""


def resume_command() -> str:
    """The train tool's command line of this process, made to resume: ``--resume`` first, and
    without ``-c``/``-e`` (a resumed run reads its own latest checkpoint). Run any other way: how."""
    if yolox_tool() != "yolox.tools.train":
        return "the same training with --resume"
    argv = sys.argv[1:]
    opts = sys.modules["__main__"].make_parser().parse_args(argv).opts or []
    flags, kept, skip = argv[:len(argv) - len(opts)], [], False
    for token in flags:
        if skip:
            skip = False
        elif token in ("-c", "--ckpt", "-e", "--start_epoch"):
            skip = True
        elif not token.startswith(("--ckpt=", "--start_epoch=")) and token != "--resume":
            kept.append(token)
    return shlex.join(["python", "-m", "yolox.tools.train", "--resume", *kept, *opts])


class AttentionTrainer(Trainer):
    """YOLOX's own Trainer with checkpoint loading that works on current torch, atomic checkpoints,
    clean stops, exact resumes, and a record.

    ``torch.load`` now defaults to ``weights_only=True``, which rejects the numpy ``best_ap``
    YOLOX stores; fine-tuning checks that the weights fit (see ``load_pretrained``).

    Checkpoints are written atomically (``yolox_attn.atomic``), and ``latest_ckpt.pth`` is always
    the newest one; a checkpoint of a state already on disk is a hard link to that file. Beyond
    YOLOX's keys they hold the trained weights next to their EMA (``model``, which YOLOX
    evaluates), the position in the epoch, the random generators, the multi-scale size, the AMP
    scaler and whether the epoch's evaluation is still to come, so that ``--resume`` continues the
    very run it resumes, from the iteration where it stopped. A stop signal
    (``yolox_attn.stopping``) ends the run after its current iteration with such a checkpoint, one
    line and exit status 128 + the signal's number.

    Rank 0 writes ``metrics.jsonl`` into the experiment folder: one line at each start (what seeded
    the run, where it starts), per evaluation (epoch, AP, AP50, seconds), at a stop or a failure,
    at the end (seconds, seconds per iteration, the attention's learned scalars) and, every
    ``exp.attention_stats_interval`` iterations if that is > 0, one with the losses and
    ``AttentionMonitor``'s statistics. A resumed run appends; a new run starts afresh.
    """

    def train(self):
        # DDP: a rank that fails tells the others through the store, and they end within seconds.
        self.watchdog = RankWatchdog(self.rank, get_world_size()) if self.is_distributed else None
        try:
            with StopSignals(self.stop_notice if self.rank == 0 else None) as self.stop_signals:
                self.train_to_the_end()
        except SystemExit as end:
            if self.watchdog is not None and not isinstance(end, Stopped):
                reason = end.code if isinstance(end.code, str) else f"exited with status {end.code}"
                self.watchdog.report(f"rank {self.rank}: {reason}")
            raise
        finally:
            if self.watchdog is not None:
                self.watchdog.close()

    def train_to_the_end(self) -> None:
        # What the user chose (exp, data, checkpoint) is checked before YOLOX logs its long set-up,
        # and a mistake there ends in one line. Any later error ends in one line too, naming it and
        # the log that holds its traceback, and exit 1 (YOLOX's logger.catch would exit 0).
        try:
            self.check_inputs()
            self.thread_policy = start_thread_policy(self.device, seeded=self.exp.seed is not None)
            self.before_train()
        except (ValueError, OSError) as err:
            raise user_exit("training", err) from None
        except KeyboardInterrupt:
            raise self.interrupted("while setting up") from None
        except Exception as err:
            raise self.failure(err, "while setting up") from None
        try:
            self.train_in_epoch()
        except KeyboardInterrupt:
            raise self.interrupted(f"in epoch {self.epoch + 1}/{self.max_epoch}") from None
        except Exception as err:
            raise self.failure(err, f"in epoch {self.epoch + 1}/{self.max_epoch}") from None
        if self.watchdog is not None:  # every rank is done with the others
            self.watchdog.close()
            synchronize()
        self.after_train()
        self.finish_records()

    def failure(self, err: BaseException, where: str) -> SystemExit:
        self.stop_workers()
        rank = f" on rank {self.rank}" if self.is_distributed else ""
        self.write_record("failed", where=where, error=error_line(err))
        if isinstance(err, WriteError):  # it names the file and says that the previous one is intact
            return user_exit("training", err, f"{where}{rank}: {err}")
        hint = " (out of memory: lower -b or input_size)" if isinstance(err, torch.OutOfMemoryError) else ""
        log = os.path.join(self.file_name, "train_log.txt")
        return user_exit("training", err, f"{where}{rank}: {error_line(err)}{hint}; traceback in {log}")

    def stop_workers(self) -> None:
        # DataLoader workers may still be printing (OpenCV's warnings on missing images): stop
        # them first, so that the message is the last line. Both prefetchers keep iter(loader).
        shutdown = getattr(getattr(getattr(self, "prefetcher", None), "loader", None), "_shutdown_workers", None)
        if shutdown is not None:
            shutdown()

    def _ckpt_file(self):
        if self.args.resume:
            return self.args.ckpt or self.ckpt_path(LATEST)
        return self.args.ckpt

    def ckpt_path(self, name: str) -> str:
        return os.path.join(self.file_name, f"{name}_ckpt.pth")

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
            try:
                self._ckpt = load_checkpoint(ckpt_file, map_location="cpu")
            except ValueError as err:
                raise self.unreadable_resume(ckpt_file, err) if self.args.resume else err from None
            state = model_state(self._ckpt, ckpt_file)
            check = check_weights if self.args.resume else check_pretrained
            check(self.exp.get_model(), state, ckpt_file)

    def unreadable_resume(self, ckpt_file: str, err: ValueError) -> ValueError:
        """``err``, naming the newest checkpoint of the run that does load, and how to resume from it."""
        found = newest_readable_checkpoint(os.path.dirname(os.path.abspath(ckpt_file)), exclude=(ckpt_file,))
        if found is None:
            return ValueError(f"{err}; no other checkpoint in its folder loads: start afresh without --resume")
        path, ckpt = found
        where = f"epoch {ckpt.get('start_epoch', '?')}" + (f", iteration {ckpt['start_iter']}" if ckpt.get(
            "start_iter") else "")
        return ValueError(f"{err}; the newest checkpoint that loads is {path} (after {where}): resume from it with "
                          f"--resume -c {path}")

    def _load(self, ckpt_file):
        # the checkpoint check_inputs read (to the CPU: the optimizer moves its state to the parameters')
        ckpt, self._ckpt = getattr(self, "_ckpt", None), None
        return ckpt if ckpt is not None else load_checkpoint(ckpt_file, map_location=self.device)

    def yolox_replacements(self) -> Dict[str, Any]:
        """Names in YOLOX's trainer module that its ``before_train`` uses, replaced while it runs
        (none on CUDA; the CPU trainer's replace its CUDA pieces)."""
        return {}

    def before_train(self):
        with replaced(yolox_trainer, **self.yolox_replacements()):
            super().before_train()
        self.restore_run_state()
        self.compile_if_asked()
        self.record_evaluations()
        self.start_records()

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

    def restore_run_state(self) -> None:
        """What an exact resume needs beyond YOLOX's set-up, which both trainers call this after:
        the data loader entered at the run's position, the EMA, the multi-scale size and the random
        generators as the checkpoint has them. A fresh run starts its data here the same way."""
        state, self.resume_state = self.resume_state, {}
        self.done = self.start_epoch * self.max_iter + self.start_iter
        self.eval_pending = bool(state.get("eval_pending", False))
        self._check_same_schedule(state)
        if self.use_model_ema:
            if "train_model" in state:  # else YOLOX's checkpoint: weights and EMA are both its "model"
                load_weights(self.ema_model.ema, state["model"], "the checkpoint's EMA")
            self.ema_model.updates = state.get("ema_updates", self.done)
        self.input_size = tuple(state.get("input_size", self.input_size))
        self.last_losses = state.get("last_losses", {})  # for the record of an evaluation still to come
        # YOLOX closes mosaic at the start of epoch max_epoch - no_aug_epochs (1-based)
        mosaic_until = max(self.max_epoch - self.exp.no_aug_epochs - 1, 0) * self.max_iter
        try:
            loader = resumable_loader(self.train_loader, self.exp.data_rng_seed(), self.done, mosaic_until,
                                      IgnoreStopSignals(self.train_loader.worker_init_fn))
        except ValueError as err:  # an exp's own loader: kept as it is, and the records say so
            self.data_note = f"the exp's own loader, not seeded by yolox-attn ({err})"
            logger.warning(f"{err}: its data order and augmentations are not seeded, and a resumed run "
                           "starts their stream afresh")
        else:
            self.stop_workers()  # of the loader YOLOX's set-up started
            self.train_loader = loader
            self.prefetcher = type(self.prefetcher)(self.train_loader)
        evaluation = getattr(self.evaluator, "dataloader", None)
        if evaluation is not None:
            evaluation.worker_init_fn = IgnoreStopSignals(evaluation.worker_init_fn)
        if "rng" in state and self.rank == 0:  # the only rank that draws (the multi-scale size)
            set_rng_state(state["rng"])
        if self.rank == 0:
            removed = remove_leftovers(self.file_name)
            if removed:
                logger.info(f"removed {len(removed)} partial file(s) of writes a kill interrupted: {removed}")

    def _check_same_schedule(self, state) -> None:
        now = {"batch_size": self.args.batch_size, "world_size": get_world_size(),
               "iterations_per_epoch": self.max_iter}
        other = {k: state[k] for k in now if k in state and state[k] != now[k]}
        if other:
            logger.warning(f"resuming with {', '.join(f'{k} {now[k]}' for k in other)} where the checkpoint's run had "
                           f"{', '.join(f'{k} {v}' for k, v in other.items())}: the run continues from iteration "
                           f"{self.done}, but not as the interrupted run would have")

    def compile_if_asked(self) -> None:
        if not getattr(self.exp, "compile_model", False):
            return
        # The backbone and neck (attention included), whose shapes follow the input size only; the
        # head's loss has data-dependent shapes. In place, after the EMA copy (which evaluates
        # uncompiled): same modules, same state-dict keys. Static shapes, since the dynamic graph
        # of a whole ACmix model fails to compile.
        logger.info("Compiling the backbone with torch.compile (each new input size compiles once)")
        warn_if_sizes_exceed_recompile_limit(self.exp)
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
        data = getattr(self, "data_note", None) or ("order from the data seed; each sample from (data seed, rank, "
                                                    "batch, place)" if data_seed is not None
                                                    else "unseeded (YOLOX's order and uuid worker seeds)")
        return {"seed": seed, "data_seed": data_seed, "start_epoch": self.start_epoch, "start_iter": self.start_iter,
                "checkpoint": self._ckpt_file(), "resume": bool(self.args.resume),
                "device": str(self.device), "threads": torch.get_num_threads(),
                "world_size": get_world_size(), "data_workers": self.exp.data_num_workers,
                "seeded": {
                    "base weights": "torch's global generator, seeded by YOLOX's train tool" if seed is not None
                    else "unseeded",
                    "attention weights": "own generator from seed" if seed is not None else "unseeded",
                    "data order and augmentations": data}}

    def write_record(self, event: str, **fields) -> None:
        if self.rank == 0 and hasattr(self, "metrics_path"):
            seconds = {"wall_seconds": round(self.wall_offset + time.time() - self.clock_start, 3),
                       "train_seconds": round(self.train_seconds, 3)}
            epoch = getattr(self, "epoch", self.start_epoch) + 1  # YOLOX sets epoch when the first one starts
            append_jsonl(self.metrics_path, {"event": event, "epoch": epoch, **seconds, **fields})

    # ------------------------------------------------------------ the loop
    def train_in_epoch(self):
        if self.eval_pending:  # the checkpoint was saved before its epoch's evaluation, which comes first
            self.epoch = self.start_epoch - 1
            all_reduce_norm(self.model)
            self.evaluate_and_save_model()
        super().train_in_epoch()

    def before_epoch(self):
        self.stop_if_asked()  # a signal during the evaluation, or the set-up
        super().before_epoch()

    def train_in_iter(self):
        # YOLOX's loop, from the iteration a resumed run stopped at
        for self.iter in range(self.start_iter if self.epoch == self.start_epoch else 0, self.max_iter):
            self.before_iter()
            self.train_one_iter()
            self.after_iter()

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
        self.done += 1
        if self.iter + 1 == self.max_iter and (self.epoch + 1) % self.exp.eval_interval == 0:
            self.eval_pending = True  # YOLOX's after_epoch evaluates this epoch
        self.stop_if_asked()

    def finish_records(self) -> None:
        iterations = self.max_iter * self.max_epoch
        self.write_record("end", iterations=iterations,
                          seconds_per_iter=round(self.train_seconds / max(iterations, 1), 5),
                          scalars=attention_scalars(self.model))

    # --------------------------------------------------------------- stops
    def stop_notice(self, signum: int) -> str:
        again = "; Ctrl-C again stops at once, without saving" if signum == signal.SIGINT else ""
        return f"{signal_name(signum)}: stopping after this iteration, with a checkpoint{again}"

    def describe(self, done: int) -> str:
        """Where a run with ``done`` iterations stands, in words."""
        if not getattr(self, "max_iter", 0):  # the loader is not built yet
            return f"after iteration {done}"
        epoch, it = divmod(done, self.max_iter)
        if it == 0:
            return f"after epoch {epoch}/{self.max_epoch}"
        return f"in epoch {epoch + 1}/{self.max_epoch} after iteration {it}/{self.max_iter}"

    def stop_if_asked(self) -> None:
        """Where a stop signal reached any rank: a checkpoint here (unless ``latest`` holds this
        state already), a record, one line on rank 0, and ``Stopped``. All ranks call it together."""
        stop = getattr(self, "stop_signals", None)
        signum = stop.agreed() if stop is not None else 0
        if not signum:
            return
        if self._saved is None or self._saved[0] != self.state_key():
            self.save_ckpt(LATEST)
        synchronize()
        epoch, it = divmod(self.done, self.max_iter)
        latest = self.ckpt_path(LATEST)
        self.write_record("stop", signal=signal_name(signum), next_epoch=epoch + 1, next_iter=it + 1,
                          checkpoint=latest)
        self.stop_workers()
        if self.rank == 0:
            final_line(f"training stopped by {signal_name(signum)} {self.describe(self.done)}; saved {latest}; "
                       f"continue with: {resume_command()}")
        raise Stopped(128 + signum)

    def interrupted(self, where: str) -> SystemExit:
        self.stop_workers()
        self.write_record("stop", signal="SIGINT", at_once=True, where=where)
        saved = getattr(self, "_saved", None)
        newest = f"{saved[1]} ({self.describe(saved[0][0])})" if saved else "none of this run"
        if self.rank == 0:
            final_line(f"training interrupted {where} by a second Ctrl-C, without saving; the newest checkpoint is "
                       f"{newest}; continue with: {resume_command()}")
        return SystemExit(128 + signal.SIGINT)

    # --------------------------------------------------------- checkpoints
    def resume_train(self, model):
        self.start_iter, self.resume_state, self._saved = 0, {}, None
        if self.args.resume:
            ckpt_file = self._ckpt_file()
            logger.info(f"resume training from {ckpt_file}")
            ckpt = self._load(ckpt_file)
            load_weights(model, ckpt.get("train_model", model_state(ckpt, ckpt_file)), ckpt_file)
            self.optimizer.load_state_dict(ckpt["optimizer"])
            if "scaler" in ckpt and self.scaler is not None:
                self.scaler.load_state_dict(ckpt["scaler"])
            self.best_ap = float(ckpt.get("best_ap", 0))
            if self.args.start_epoch is not None:
                self.start_epoch = self.args.start_epoch - 1
                logger.warning(f"-e {self.args.start_epoch}: training continues at that epoch with the checkpoint's "
                               f"weights and optimizer; not as the checkpoint's run would have")
            else:
                self.start_epoch, self.start_iter = ckpt["start_epoch"], ckpt.get("start_iter", 0)
                self.resume_state = {k: ckpt[k] for k in (*RESUME_KEYS, "model") if k in ckpt}
                if os.path.abspath(ckpt_file) == os.path.abspath(self.ckpt_path(LATEST)):
                    done = self.start_epoch * ckpt.get("iterations_per_epoch", 0) + self.start_iter
                    self._saved = ((done, bool(ckpt.get("eval_pending")), self.best_ap), ckpt_file)
            logger.info(f"loaded checkpoint {ckpt_file!r} (epoch {self.start_epoch}, iteration {self.start_iter})")
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
        self.eval_pending = False  # for the checkpoints YOLOX saves after the evaluation
        with yolox_evaluation(self.evaluator):
            super().evaluate_and_save_model()
        ap, ap50 = self.last_eval
        names = METRICS[self.metric]
        logger.info(f"epoch {self.epoch + 1}: {names[0]} {ap:.4f}, {names[1]} {ap50:.4f}")
        # with the last iteration's losses: a reproduced run has the same
        self.write_record("eval", metric=self.metric, ap=ap, ap50=ap50, loss=getattr(self, "last_losses", {}))
        # COCOeval returns numpy floats; keep checkpoints loadable with weights_only=True.
        self.best_ap = float(self.best_ap)

    def state_key(self) -> tuple:
        """What tells two checkpoint states of one run apart: iterations done, whether the last
        epoch's evaluation is to come, the best AP."""
        return self.done, self.eval_pending, float(self.best_ap)

    def checkpoint_state(self, ap=None, trained_weights: bool = True) -> dict:
        """YOLOX's checkpoint keys and those of an exact resume; without ``trained_weights`` (the
        weights the optimizer trains, beside their EMA in ``model``), a resume from it restarts
        the EMA from ``model`` as YOLOX's does."""
        model = unwrap(self.model)
        start_epoch, start_iter = divmod(self.done, self.max_iter)
        state = {"start_epoch": start_epoch,
                 "model": (self.ema_model.ema if self.use_model_ema else model).state_dict(),
                 "optimizer": self.optimizer.state_dict(), "best_ap": float(self.best_ap),
                 "start_iter": start_iter, "eval_pending": self.eval_pending, "input_size": list(self.input_size),
                 "rng": rng_state(), "last_losses": getattr(self, "last_losses", {}),
                 "batch_size": self.args.batch_size, "world_size": get_world_size(),
                 "iterations_per_epoch": self.max_iter}
        if self.use_model_ema and trained_weights:
            state.update(train_model=model.state_dict(), ema_updates=self.ema_model.updates)
        if self.scaler is not None and self.scaler.is_enabled():
            state["scaler"] = self.scaler.state_dict()
        if ap is not None:  # YOLOX's current source records each checkpoint's AP
            state["curr_ap"] = float(ap)
        return state

    def save_ckpt(self, ckpt_name, update_best_ckpt=False, ap=None):
        """YOLOX's checkpoint ``<ckpt_name>_ckpt.pth`` with what an exact resume needs, written
        atomically; ``latest`` (and ``best`` if ``update_best_ckpt``) then become this file, and a
        state already on disk (``last_mosaic_epoch``) is a link to its file. The history files
        ``epoch_<N>`` (``save_history_ckpt``) keep YOLOX's size: the EMA weights without the trained
        ones, which would add half as much again to each."""
        self.best_ap = float(self.best_ap)
        if self.rank != 0:
            return
        logger.info(f"Save weights to {self.file_name}")
        path, key = self.ckpt_path(ckpt_name), self.state_key()
        history = ckpt_name.startswith("epoch_")  # YOLOX's name for them
        if history:
            atomic_save(self.checkpoint_state(ap, trained_weights=False), path)
        elif self._saved is not None and self._saved[0] == key and os.path.isfile(self._saved[1]):
            atomic_link(self._saved[1], path)
        else:
            atomic_save(self.checkpoint_state(ap), path)
            self._saved = (key, path)
        if ckpt_name != LATEST and not history:
            atomic_link(path, self.ckpt_path(LATEST))
        if update_best_ckpt:
            atomic_link(path, self.ckpt_path("best"))
        if self.args.logger == "wandb":
            self.wandb_logger.save_checkpoint(self.file_name, ckpt_name, update_best_ckpt)


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
    device ids, ``--occupy``, the GradScaler, the CUDA tensor of the BatchNorm sync under DDP;
    evaluation's CUDA tensor types: ``yolox_evaluation``).

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
                "DataPrefetcher": CPUPrefetcher}

    def before_train(self):
        with replaced(torch.cuda, set_device=lambda device: None):
            super().before_train()
        if self.autocast_dtype is not None:
            # after the EMA copy, which evaluates in float32 without the hooks
            autocast_training_forward(unwrap(self.model), self.autocast_dtype)

    def train_in_epoch(self):
        with norm_sync_on_the_cpu():  # YOLOX's BatchNorm sync under DDP before each evaluation needs it
            super().train_in_epoch()

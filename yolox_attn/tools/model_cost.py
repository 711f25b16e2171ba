"""The bench tool's ``model`` mode: what each attention costs in a whole YOLOX model.

One row per attention on dark3/dark4/dark5 of a YOLOX size (YOLOX's own depth, width and
depthwise for that size, ``AttentionExp.use_yolox_size``), each figure also as a ratio to the
``none`` row (plain YOLOX, always measured):

* params: every parameter of the model, in millions.
* GFLOPs (YOLOX): what ``yolox.utils.get_model_info`` reports (thop on a 64x64 input, scaled by
  (tsize/64)^2 and doubled), unrounded. thop only counts modules it has rules for (convolutions, BN,
  pooling, linear), so the attention's matmuls/einsums count 0 and the quadratic cost of attention
  is scaled as if it were linear: it under-counts attention.
* GFLOPs (counted): ``torch.utils.flop_counter.FlopCounterMode`` on the real input at batch 1,
  which sees every matmul/bmm/conv including those inside einsum (2 FLOPs per multiply-add;
  softmax and element-wise ops are not counted by either).
* inference: batch 1, eval mode, ``torch.no_grad``; median [min, max] over the repeats.
* training step: forward with targets, backward, SGD step (YOLOX's optimizer at its warm-up
  start lr, so every repeat does the same work), at ``--train-batch``.
* peak memory of one inference and of one training step, each row in a fresh worker process,
  after model build and a 64x64 warm-up (see ``yolox_attn.tools.benchmarking``). CPU (Linux): peak RSS
  (VmHWM, reset through /proc/self/clear_refs before each phase) over the RSS at the phase's
  start, with freed heap returned to the OS first (malloc_trim) and a fixed glibc mmap threshold
  (large tensors unmapped when freed). CUDA:
  torch.cuda.max_memory_allocated over the memory allocated at the phase's start.

With ``--onnxruntime``, each row's model (its own weights, through a checkpoint) also goes
through the project's ONNX tool (``yolox_attn.tools.export_onnx``, static 1x3xtsize x tsize
input, boxes decoded as in the inference column, simplified unless ``--no-onnxsim``), which
verifies the file against PyTorch in onnxruntime before writing it:

* export s: wall seconds of that tool (export, simplification and its onnxruntime check).
* ONNX nodes: nodes of the written graph.
* ORT inference: onnxruntime's CPU provider with ``--threads`` intra-op threads, batch 1, as a
  deployment runs it: one session in a fresh process, nothing else in it. The rows take turns
  in rounds of a few repeats each (a fresh process per row and round, ``--warmup`` untimed runs
  first), so a shared machine's drift hits every row alike (on the CPU whatever ``--device`` is).

A row whose model cannot be exported reports why instead of these columns.

With ``--compile``, each row is also timed as the ``compile_model`` exp option runs it (static
shapes, fresh models): inference through the whole model compiled, as the eval tool does, and
training steps with the backbone (neck and attention) compiled, as the trainers do. Its columns:
both times (ratios to ``none`` compiled, and to the row's eager time), and compile s, the wall
seconds of the first compiled inference and training step.

PyTorch timings run in this process with the repeats interleaved across attentions (round-robin),
so a shared machine's drift hits every row alike; the memory workers run before them. CPU runs in
float32 with ``--threads`` threads; CUDA runs under float16 autocast. A row that runs out of
memory reports the error instead of stopping the run.
"""

import argparse
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import torch
from torch import nn

from ..exp import AttentionExp
from . import benchmarking as bm

ATTENTIONS: Tuple[str, ...] = ("none", "ca", "cca", "acmix", "nonlocal")  # the default rows
THOP_STRIDE = 64  # the input side yolox.utils.get_model_info profiles before scaling
WARM_SIZE = 64  # smallest input whose 2x2 stride-32 map lets batch-1 BatchNorm train; warms before the baseline
ORT_REPEATS_PER_PROCESS = 5  # onnxruntime repeats of one row per fresh process (one round)
# What export_onnx loads with -f: an AttentionExp of the row's size (the rest comes as opts).
EXP_SOURCE = """from yolox_attn.exp import AttentionExp


class Exp(AttentionExp):
    def __init__(self):
        super().__init__()
        self.use_yolox_size({size!r})
"""

# (column, ratio column or None); every JSON row has all of these keys.
FIGURES: Tuple[Tuple[str, Optional[str]], ...] = (
    ("params_m", "params_ratio"),
    ("gflops_yolox", "gflops_yolox_ratio"),
    ("gflops_counted", "gflops_counted_ratio"),
    ("infer_ms_median", "infer_ratio"),
    ("infer_ms_min", None),
    ("infer_ms_max", None),
    ("train_ms_median", "train_ratio"),
    ("train_ms_min", None),
    ("train_ms_max", None),
    ("infer_peak_mib", "infer_peak_ratio"),
    ("train_peak_mib", "train_peak_ratio"),
)
# With --onnxruntime only (None otherwise).
ORT_FIGURES: Tuple[Tuple[str, Optional[str]], ...] = (
    ("ort_ms_median", "ort_ratio"),
    ("ort_ms_min", None),
    ("ort_ms_max", None),
    ("export_s", "export_ratio"),
    ("onnx_nodes", "onnx_nodes_ratio"),
)
# With --compile only: the compile_model forms' times, ratios to none's compiled times, and to the row's eager times.
COMPILE_FIGURES: Tuple[Tuple[str, Optional[str]], ...] = (
    ("infer_compiled_ms_median", "infer_compiled_ratio"),
    ("infer_compiled_ms_min", None),
    ("infer_compiled_ms_max", None),
    ("train_compiled_ms_median", "train_compiled_ratio"),
    ("train_compiled_ms_min", None),
    ("train_compiled_ms_max", None),
    ("compile_s", None),
)
VS_EAGER: Tuple[Tuple[str, str, str], ...] = (
    ("infer_compiled_vs_eager", "infer_compiled_ms_median", "infer_ms_median"),
    ("train_compiled_vs_eager", "train_compiled_ms_median", "train_ms_median"),
)
ONNX_FACTS: Tuple[str, ...] = ("onnx_exporter", "onnx_simplified")  # which exporter wrote it, simplified or not
SETTINGS: Tuple[str, ...] = ("size", "tsize", "device", "precision", "threads", "train_batch", "repeats", "warmup")
COLUMNS: Tuple[str, ...] = (
    ("attention",) + SETTINGS + tuple(c for pair in FIGURES + ORT_FIGURES + COMPILE_FIGURES for c in pair if c)
    + tuple(v[0] for v in VS_EAGER) + ONNX_FACTS + ("error",)
)


# ----------------------------------------------------------------------------- model
def build_model(size: str, attention: str, device: torch.device) -> Tuple[nn.Module, torch.optim.Optimizer]:
    """The YOLOX model of ``size`` with ``attention`` on its three backbone outputs, and its optimizer."""
    exp = AttentionExp()
    exp.use_yolox_size(size)
    exp.attention = attention
    model = exp.get_model().to(device)
    # YOLOX's trainer builds the optimizer the same way; its warm-up lr starts at 0.
    return model, exp.get_optimizer(1)


def make_inputs(batch: int, tsize: int, device: torch.device, seed: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """Images (pixel range 0..255, as YOLOX feeds them) and targets (B, 50, 5) of 3 boxes each."""
    g = torch.Generator().manual_seed(seed)
    images = torch.rand(batch, 3, tsize, tsize, generator=g) * 255
    targets = torch.zeros(batch, 50, 5)
    for b in range(batch):
        for i in range(3):
            wh = tsize * (0.1 + 0.3 * torch.rand(2, generator=g))
            centre = wh / 2 + (tsize - wh) * torch.rand(2, generator=g)
            targets[b, i] = torch.tensor([i, *centre.tolist(), *wh.tolist()])
    return images.to(device), targets.to(device)


class Steps:
    """Inference and training-step closures of one model (autocast float16 on CUDA)."""

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer, device: torch.device):
        self.model = model
        self.inference_model = model
        self.optimizer = optimizer
        self.device = device
        self.amp = device.type == "cuda"
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp)

    def infer(self, images: torch.Tensor) -> None:
        self.inference_model.eval()
        with torch.no_grad(), torch.autocast(self.device.type, dtype=torch.float16, enabled=self.amp):
            self.inference_model(images)

    def train(self, images: torch.Tensor, targets: torch.Tensor) -> None:
        self.model.train()
        with torch.autocast(self.device.type, dtype=torch.float16, enabled=self.amp):
            loss = self.model(images, targets)["total_loss"]
        self.scaler.scale(loss).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)


def yolox_gflops(model: nn.Module, tsize: int) -> float:
    """GFLOPs exactly as ``yolox.utils.get_model_info`` computes them, without its rounding."""
    from copy import deepcopy

    from thop import profile

    img = torch.zeros((1, 3, THOP_STRIDE, THOP_STRIDE), device=next(model.parameters()).device)
    macs, _ = profile(deepcopy(model), inputs=(img,), verbose=False)
    return macs / 1e9 * tsize * tsize / THOP_STRIDE / THOP_STRIDE * 2


def counted_gflops(model: nn.Module, tsize: int, device: torch.device) -> float:
    """FlopCounterMode GFLOPs of one batch-1 forward in eval mode."""
    images, _ = make_inputs(1, tsize, device, seed=0)
    model.eval()
    with torch.no_grad():
        return bm.count_flops(lambda: model(images)) / 1e9


# ---------------------------------------------------------------------------- onnx
def _add_error(row: Dict, message: str) -> None:
    row["error"] = f"{row['error']}; {message}" if row["error"] else message


def export_onnx_row(args: argparse.Namespace, name: str, model: nn.Module, folder: Path) -> Dict:
    """Export ``model`` with the project's ONNX tool, which verifies it in onnxruntime.

    The model goes through a checkpoint, so the file holds this row's weights. Returns the file,
    the tool's wall seconds, the node count and the tool's facts; ``{"error": ...}`` when the
    tool cannot export or verify this model.
    """
    from . import export_onnx
    from .export_common import ExportCheckError

    path = folder / f"{name}.onnx"
    with tempfile.TemporaryDirectory(prefix="bench_export_") as work:
        exp_file, ckpt = Path(work) / f"yolox_{args.size}.py", Path(work) / f"{name}.pth"
        exp_file.write_text(EXP_SOURCE.format(size=args.size))
        torch.save({"model": {k: v.cpu() for k, v in model.state_dict().items()}}, ckpt)
        argv = ["-f", str(exp_file), "-c", str(ckpt), "--output-name", str(path), "--decode_in_inference",
                *(["--no-onnxsim"] if args.no_onnxsim else []),
                "attention", name, "test_size", f"({args.tsize},{args.tsize})"]
        start = time.perf_counter()
        try:
            result = export_onnx.main(argv)
        except (ExportCheckError, ValueError) as err:
            return {"error": f"ONNX export failed: {str(err).splitlines()[0][:300]}"}
        seconds = time.perf_counter() - start
    return {"path": str(path), "export_s": seconds, "onnx_nodes": bm.onnx_node_count(str(path)),
            "onnx_exporter": result.exporter, "onnx_simplified": result.simplified}


def ort_task(path: str, repeats: int, warmup: int, profile: bool = False) -> Dict:
    """The worker task that runs one ONNX file in onnxruntime (``benchmarking.onnxruntime_runs``)."""
    return {"task": "ort", "path": path, "repeats": repeats, "warmup": warmup, "profile": profile}


def run_onnxruntime(args: argparse.Namespace, models: Dict[str, nn.Module], rows: Dict[str, Dict],
                    folder: Path) -> None:
    """Export every row, then time each file in fresh worker processes, rows taking turns by rounds."""
    paths = {}
    for i, (name, model) in enumerate(models.items()):
        bm.log(f"[onnx] {i + 1}/{len(models)} {name}: export with yolox_attn.tools.export_onnx")
        exported = export_onnx_row(args, name, model, folder)
        if "error" in exported:
            _add_error(rows[name], exported["error"])
            bm.log(f"  [onnx] {name}: {exported['error']}")
            continue
        rows[name].update({k: v for k, v in exported.items() if k != "path"})
        paths[name] = exported["path"]
    rounds = -(-args.repeats // ORT_REPEATS_PER_PROCESS)
    times: Dict[str, List[float]] = {name: [] for name in paths}
    bm.log(f"[onnxruntime] {len(paths)} rows x {args.repeats} repeats, {rounds} round(s) of one fresh process per row")
    for r in range(rounds):
        chunk = min(ORT_REPEATS_PER_PROCESS, args.repeats - r * ORT_REPEATS_PER_PROCESS)
        for name, path in list(paths.items()):
            result = bm.run_worker(bm.worker_argv(args, ort_task(path, chunk, args.warmup)), mmap_threshold=None)
            if "error" in result:  # killed, e.g. out of memory: no later rounds for this row
                _add_error(rows[name], f"onnxruntime: {result['error']}")
                del paths[name], times[name]
                continue
            times[name] += result["times_s"]
            bm.log(f"  [onnxruntime] round {r + 1}/{rounds} {name}: "
                   + ", ".join(f"{t * 1e3:.1f}" for t in result["times_s"]) + " ms")
    for name, measured in times.items():
        if measured:
            timing = bm.summarize(measured)
            rows[name].update(ort_ms_median=timing.median_s * 1e3, ort_ms_min=timing.min_s * 1e3,
                              ort_ms_max=timing.max_s * 1e3)


# ---------------------------------------------------------------------------- worker
def memory_peaks(args: argparse.Namespace, attention: str) -> Dict:
    """In a worker: peak memory of one row's inference and training step."""
    device = args.device
    steps = Steps(*build_model(args.size, attention, device), device)
    images1, _ = make_inputs(1, args.tsize, device, args.seed)
    images, targets = make_inputs(args.train_batch, args.tsize, device, args.seed)
    small, small_targets = make_inputs(args.train_batch, WARM_SIZE, device, args.seed)

    def warm() -> None:
        steps.infer(small)
        steps.train(small, small_targets)

    peaks = bm.measure_peaks(
        {"infer": lambda: steps.infer(images1), "train": lambda: steps.train(images, targets)}, device, warm
    )
    return {"infer_peak_mib": peaks["infer"], "train_peak_mib": peaks["train"]}


# ------------------------------------------------------------------------------- run
class CompiledSteps(Steps):
    """The same closures as ``compile_model`` runs them: inference through the whole model compiled
    (the eval tool), training with the backbone compiled (the trainers); one fresh model for each."""

    def __init__(self, size: str, attention: str, device: torch.device):
        model, optimizer = build_model(size, attention, device)
        model.backbone.compile(dynamic=False)
        super().__init__(model, optimizer, device)
        self.inference_model, _ = build_model(size, attention, device)
        self.inference_model.compile(dynamic=False)

    def compile_seconds(self, images1: torch.Tensor, images: torch.Tensor, targets: torch.Tensor) -> float:
        """Seconds of the first inference and the first training step, which compile."""
        start = time.perf_counter()
        self.infer(images1)
        self.train(images, targets)
        return time.perf_counter() - start


def run(args: argparse.Namespace) -> List[Dict]:
    """Measure every row; return the rows with every column of ``COLUMNS``."""
    torch.set_num_threads(args.threads)
    device = args.device
    names = args.attentions
    settings = {
        "size": args.size, "tsize": args.tsize, "device": device.type,
        "precision": "float16 autocast" if device.type == "cuda" else "float32",
        "threads": args.threads, "train_batch": args.train_batch, "repeats": args.repeats, "warmup": args.warmup,
    }
    if args.no_timing:
        settings.update(repeats=0, warmup=0)
    rows: Dict[str, Dict] = {n: {c: None for c in COLUMNS} | {"attention": n} | settings for n in names}

    if not args.no_timing:
        bm.log(f"[memory] {len(names)} rows, each in a fresh worker ({args.jobs} at a time)")
        argvs = [bm.worker_argv(args, {"task": "memory", "attention": n}) for n in names]
        for name, peaks in zip(names, bm.run_workers(argvs, args.jobs)):
            rows[name].update(peaks)
            bm.log(f"  [memory] {name}: {peaks}")

    steps: Dict[str, Steps] = {}
    for i, name in enumerate(names):
        bm.log(f"[build] {i + 1}/{len(names)} {name}: model, params, FLOPs")
        model, optimizer = build_model(args.size, name, device)
        rows[name]["params_m"] = sum(p.numel() for p in model.parameters()) / 1e6
        rows[name]["gflops_yolox"] = yolox_gflops(model, args.tsize)  # a 64x64 input: always fits
        if rows[name]["error"]:
            continue  # its worker ran out of memory at tsize: so would this process
        try:
            rows[name]["gflops_counted"] = counted_gflops(model, args.tsize, device)
        except Exception as err:  # noqa: BLE001
            if not bm.is_out_of_memory(err):
                raise
            rows[name]["error"] = f"out of memory counting FLOPs: {str(err).splitlines()[0][:200]}"
            continue
        steps[name] = Steps(model, optimizer, device)

    images1, _ = make_inputs(1, args.tsize, device, args.seed)
    images, targets = make_inputs(args.train_batch, args.tsize, device, args.seed)
    phases = () if args.no_timing else (
        ("infer", "[inference]", {n: (lambda s=s: s.infer(images1)) for n, s in steps.items()}),
        ("train", "[train step]", {n: (lambda s=s: s.train(images, targets)) for n, s in steps.items()}),
    )
    if args.compile and not args.no_timing:
        compiled = {}
        for name in steps:
            bm.log(f"[compile] {name}: first inference and training step")
            compiled[name] = CompiledSteps(args.size, name, device)
            rows[name]["compile_s"] = compiled[name].compile_seconds(images1, images, targets)
        phases += (
            ("infer_compiled", "[inference, compiled]", {n: (lambda s=s: s.infer(images1)) for n, s in compiled.items()}),
            ("train_compiled", "[train step, compiled]",
             {n: (lambda s=s: s.train(images, targets)) for n, s in compiled.items()}),
        )
    for key, label, cases in phases:
        bm.log(f"{label} {len(cases)} rows x ({args.warmup} warm-up + {args.repeats} repeats), interleaved")
        for name, result in bm.interleaved_timings(cases, args.repeats, args.warmup, device, label).items():
            if isinstance(result, str):
                rows[name]["error"] = result
                continue
            rows[name][f"{key}_ms_median"] = result.median_s * 1e3
            rows[name][f"{key}_ms_min"] = result.min_s * 1e3
            rows[name][f"{key}_ms_max"] = result.max_s * 1e3

    if args.onnxruntime and not args.no_timing:
        models = {n: s.model for n, s in steps.items()}
        if args.onnx_dir is None:
            with tempfile.TemporaryDirectory(prefix="bench_onnx_") as folder:
                run_onnxruntime(args, models, rows, Path(folder))
        else:
            args.onnx_dir.mkdir(parents=True, exist_ok=True)
            run_onnxruntime(args, models, rows, args.onnx_dir)

    ref = rows["none"]
    for row in rows.values():
        for column, ratio_column in FIGURES + ORT_FIGURES + COMPILE_FIGURES:
            if ratio_column:
                row[ratio_column] = bm.ratio(row[column], ref[column])
        for column, compiled, eager in VS_EAGER:
            row[column] = bm.ratio(row[compiled], row[eager])
    return [rows[n] for n in names]


# ----------------------------------------------------------------------------- table
def _x(value: Optional[float]) -> str:
    return "" if value is None else f"({value:.2f}x)"


def format_table(rows: List[Dict]) -> str:
    """Readable table with ratios to ``none`` and footnotes."""
    s = rows[0]
    head = (f"YOLOX-{s['size']} at {s['tsize']}x{s['tsize']} on {s['device']} ({s['precision']}, "
            f"{s['threads']} threads), {s['repeats']} repeats after {s['warmup']} warm-up; ratios to 'none'")
    header = (f"{'attention':10s} {'params M':>16s} {'GFLOPs yolox[1]':>18s} {'GFLOPs counted[2]':>19s} "
              f"{'infer ms (b=1) med [min-max]':>38s} {'train step ms (b=' + str(s['train_batch']) + ') med [min-max]':>42s} "
              f"{'infer peak MiB[3]':>20s} {'train peak MiB[3]':>20s}")
    lines = [head, header, "-" * len(header)]
    for r in rows:
        infer = (f"{bm.fmt(r['infer_ms_median'], '.1f')} [{bm.fmt(r['infer_ms_min'], '.1f')}-"
                 f"{bm.fmt(r['infer_ms_max'], '.1f')}] {_x(r['infer_ratio'])}")
        train = (f"{bm.fmt(r['train_ms_median'], '.1f')} [{bm.fmt(r['train_ms_min'], '.1f')}-"
                 f"{bm.fmt(r['train_ms_max'], '.1f')}] {_x(r['train_ratio'])}")
        lines.append(
            f"{r['attention']:10s} {bm.fmt(r['params_m'], '.3f'):>8s} {_x(r['params_ratio']):>7s} "
            f"{bm.fmt(r['gflops_yolox'], '.2f'):>10s} {_x(r['gflops_yolox_ratio']):>7s} "
            f"{bm.fmt(r['gflops_counted'], '.2f'):>11s} {_x(r['gflops_counted_ratio']):>7s} "
            f"{infer:>38s} {train:>42s} "
            f"{bm.fmt(r['infer_peak_mib'], '.1f'):>12s} {_x(r['infer_peak_ratio']):>7s} "
            f"{bm.fmt(r['train_peak_mib'], '.1f'):>12s} {_x(r['train_peak_ratio']):>7s}"
            + (f"  error: {r['error']}" if r["error"] else "")
        )
    if any(r["export_s"] is not None for r in rows):
        lines += ["", f"ONNX Runtime (CPU provider, {s['threads']} threads, batch 1, one session per fresh process) "
                      "of each row exported by yolox_attn.tools.export_onnx:",
                  f"{'attention':10s} {'ORT infer ms med [min-max]':>34s} {'export s[4]':>16s} {'ONNX nodes':>16s} "
                  f"{'exporter':>9s} {'simplified':>10s}"]
        for r in rows:
            ort = "-" if r["ort_ms_median"] is None else (
                f"{r['ort_ms_median']:.1f} [{r['ort_ms_min']:.1f}-{r['ort_ms_max']:.1f}] {_x(r['ort_ratio'])}")
            simplified = "-" if r["onnx_simplified"] is None else ("yes" if r["onnx_simplified"] else "no")
            lines.append(f"{r['attention']:10s} {ort:>34s} {bm.fmt(r['export_s'], '.1f'):>8s} {_x(r['export_ratio']):>7s} "
                         f"{bm.fmt(r['onnx_nodes'], 'd'):>8s} {_x(r['onnx_nodes_ratio']):>7s} "
                         f"{r['onnx_exporter'] or '-':>9s} {simplified:>10s}")
    if any(r["compile_s"] is not None for r in rows):
        lines += ["", "torch.compile (static shapes) as compile_model runs it: inference through the whole model "
                      "compiled, training steps with the backbone compiled; ratios to 'none' compiled, then to "
                      "the row's eager time:",
                  f"{'attention':10s} {'infer ms compiled':>26s} {'vs eager':>9s} {'train step ms compiled':>28s} "
                  f"{'vs eager':>9s} {'compile s[5]':>13s}"]
        for r in rows:
            lines.append(f"{r['attention']:10s} {bm.fmt(r['infer_compiled_ms_median'], '.1f'):>18s} "
                         f"{_x(r['infer_compiled_ratio']):>7s} {_x(r['infer_compiled_vs_eager']):>9s} "
                         f"{bm.fmt(r['train_compiled_ms_median'], '.1f'):>20s} {_x(r['train_compiled_ratio']):>7s} "
                         f"{_x(r['train_compiled_vs_eager']):>9s} {bm.fmt(r['compile_s'], '.1f'):>13s}")
    memory_note = (
        "growth of peak RSS (VmHWM, reset per phase) over RSS at the phase's start, fresh worker per row,\n"
        "    after model build and a 64x64 warm-up; coarse for tiny inputs (resident pages, not tensors)"
        if s["device"] == "cpu"
        else "torch.cuda.max_memory_allocated over the memory allocated at the phase's start, fresh worker\n"
        "    per row, after model build and a 64x64 warm-up"
    )
    lines += [
        "",
        "[1] as yolox.utils.get_model_info reports them: thop on a 64x64 input, scaled by (tsize/64)^2, x2.",
        "    thop has no rule for matmul/einsum, so the attention maps themselves count 0 and the",
        "    quadratic terms are scaled as if linear: it under-counts attention (most for nonlocal).",
        "[2] torch.utils.flop_counter.FlopCounterMode on the real input, batch 1: every conv/matmul/bmm",
        "    (einsum included), 2 FLOPs per multiply-add; softmax/element-wise ops uncounted in both.",
        f"[3] {memory_note}.",
    ]
    if any(r["export_s"] is not None for r in rows):
        lines.append("[4] wall seconds of the export tool: torch.export, ONNX translation, simplification and its "
                     "onnxruntime check.")
    if any(r["compile_s"] is not None for r in rows):
        lines.append("[5] wall seconds of the first compiled inference and training step, which compile both graphs.")
    return "\n".join(lines)

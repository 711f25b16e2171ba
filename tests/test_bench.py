"""The bench tool on tiny configurations: every column present, figures checked against values
computed another way, onnxruntime in processes of its own, clear errors.

Timings are never asserted: the figures come from a shared machine.
"""

import contextlib
import io
import json
import re
import statistics
import subprocess
import sys

import onnx
import pytest
import torch
from conftest import EXPS_DIR, load_exp

from yolox_attn.tools import bench, benchmarking, model_cost, module_cost

TINY = ["--size", "nano", "--tsize", "64", "--repeats", "1", "--warmup", "0", "--threads", "1", "--device", "cpu"]


@pytest.fixture(scope="module")
def bench_run():
    # The smallest real run: one thread per process, two memory workers at once on two cores.
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        rows = bench.main([*TINY, "--jobs", "2", "--json"])
    return rows, json.loads(printed.getvalue())


def test_bench_json_has_every_column_for_every_row(bench_run):
    bench_rows, printed = bench_run
    assert printed == bench_rows
    assert [r["attention"] for r in bench_rows] == list(model_cost.ATTENTIONS)
    for row in bench_rows:
        assert set(row) == set(model_cost.COLUMNS), row["attention"]
        assert row["error"] is None, row
        for column, _ in model_cost.FIGURES:
            assert row[column] is not None, (row["attention"], column)


def test_bench_models_are_the_exp_files_models(bench_run):
    # The bench builds each size without the checkout's exps: its parameter counts must be those of
    # exps/yolox_nano_cam.py with the attention swapped, and its ratios theirs.
    bench_rows, _ = bench_run
    counts = {}
    for row in bench_rows:
        exp = load_exp(EXPS_DIR / "yolox_nano_cam.py")
        exp.attention = row["attention"]
        counts[row["attention"]] = sum(p.numel() for p in exp.get_model().parameters())
        assert round(row["params_m"] * 1e6) == counts[row["attention"]], row["attention"]
    for row in bench_rows[1:]:
        assert row["params_ratio"] == pytest.approx(counts[row["attention"]] / counts["none"])


def test_bench_counted_flops_see_the_matmuls_thop_misses(bench_run):
    bench_rows, _ = bench_run
    none = bench_rows[0]
    for row in bench_rows[1:]:
        assert row["gflops_yolox"] >= none["gflops_yolox"] and row["gflops_counted"] >= none["gflops_counted"]
    by_name = {r["attention"]: r for r in bench_rows}
    for name in ("cca", "nonlocal"):  # built on matmuls, which thop has no rule for
        assert by_name[name]["gflops_counted_ratio"] > by_name[name]["gflops_yolox_ratio"]


def test_bench_without_onnxruntime_leaves_its_columns_empty(bench_run):
    bench_rows, _ = bench_run
    for row in bench_rows:
        assert all(row[c] is None for pair in model_cost.ORT_FIGURES + model_cost.COMPILE_FIGURES for c in pair if c)
        assert row["onnx_exporter"] is None and row["onnx_simplified"] is None


def test_bench_onnxruntime_times_each_file_alone_in_fresh_processes(tmp_path, capsys, monkeypatch):
    # One session per process, as a deployment runs it, the rows taking turns by rounds (of one
    # repeat here); this process never opens a timing session. bat cannot be exported: its row says
    # why and keeps its PyTorch figures.
    workers = []
    run_worker = benchmarking.run_worker

    def record(argv, mmap_threshold=benchmarking.MMAP_THRESHOLD):
        result = run_worker(argv, mmap_threshold)
        workers.append((json.loads(argv[argv.index("--worker") + 1]), mmap_threshold, result))
        return result

    def no_session_here(*args, **kwargs):
        raise AssertionError("an onnxruntime session was opened in the bench's own process")

    monkeypatch.setattr(benchmarking, "run_worker", record)
    monkeypatch.setattr(benchmarking, "ort_session", no_session_here)
    monkeypatch.setattr(model_cost, "ORT_REPEATS_PER_PROCESS", 1)
    argv = [*TINY, "--repeats", "2", "--attentions", "ca,bat", "--onnxruntime", "--no-onnxsim", "--onnx-dir", str(tmp_path),
            "--json"]
    rows = bench.main(argv)
    assert rows == json.loads(capsys.readouterr().out)
    none, ca, bat = rows
    ort = [(task["path"].rsplit("/", 1)[1], task["repeats"], threshold) for task, threshold, _ in workers
           if task["task"] == "ort"]
    assert ort == [("none.onnx", 1, None), ("ca.onnx", 1, None)] * 2
    for row in (none, ca):
        assert row["error"] is None, row
        times = [t for task, _, result in workers
                 if task["task"] == "ort" and task["path"].endswith(f"/{row['attention']}.onnx") for t in result["times_s"]]
        assert len(times) == 2 and row["ort_ms_median"] == pytest.approx(statistics.median(times) * 1e3)
        assert row["export_s"] > 0 and row["onnx_exporter"] == "dynamo" and row["onnx_simplified"] is False
        assert row["onnx_nodes"] == len(onnx.load(str(tmp_path / f"{row['attention']}.onnx")).graph.node)
    assert ca["onnx_nodes"] > none["onnx_nodes"]
    assert "ONNX export failed" in bat["error"] and "cannot be exported" in bat["error"]
    assert bat["infer_ms_median"] is not None and bat["ort_ms_median"] is None and bat["export_s"] is None
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ca.onnx", "none.onnx"]  # no checkpoint or exp left


def test_bench_compile_compiles_what_compile_model_compiles(eager_compile, capsys):
    # Which modules, with which options: the whole model for inference (the eval tool), the backbone
    # for the training step (the trainers). Dynamo's eager backend stands in for inductor here
    # (tests/test_compile.py compiles with inductor).
    rows = bench.main([*TINY, "--attentions", "none", "--compile"])
    assert sorted(eager_compile) == [("AttentionPAFPN", {"dynamic": False}), ("YOLOX", {"dynamic": False})]
    for row in rows:
        for column, _ in model_cost.COMPILE_FIGURES:
            assert row[column] is not None and row[column] > 0, (row["attention"], column)
        for column, _, _ in model_cost.VS_EAGER:
            assert row[column] is not None and row[column] > 0, (row["attention"], column)
    assert "torch.compile (static shapes)" in capsys.readouterr().out


def test_bench_reports_an_infeasible_row(monkeypatch, capsys):
    # Stand-in memory workers: nonlocal's "was killed" (as the OOM killer would), none's worked.
    def fake_workers(argvs, jobs=1, mmap_threshold=None):
        return [{"error": "memory worker killed by signal 9 (out of memory?)"} if '"nonlocal"' in argv[-1]
                else {"infer_peak_mib": 1.0, "train_peak_mib": 2.0} for argv in argvs]

    monkeypatch.setattr(benchmarking, "run_workers", fake_workers)
    rows = bench.main([*TINY, "--attentions", "nonlocal"])
    none, nonlocal_ = rows
    assert none["error"] is None and none["train_ms_median"] is not None
    assert "out of memory" in nonlocal_["error"] and nonlocal_["params_m"] > none["params_m"]
    assert nonlocal_["infer_ms_median"] is None and nonlocal_["gflops_counted"] is None
    assert "killed by signal 9" in capsys.readouterr().out  # the table shows it in the row


def test_bench_reports_a_type_that_cannot_train_at_batch_one():
    # timm's sk puts a BatchNorm on pooled (B, C, 1, 1) vectors: its row says why and what to do.
    none, sk = bench.main([*TINY, "--attentions", "sk", "--jobs", "2", "--json"])
    assert none["error"] is None and none["train_ms_median"] is not None
    assert "--train-batch 2" in sk["error"] and sk["params_m"] > none["params_m"]
    assert sk["train_ms_median"] is None


def test_cpu_peak_memory_per_phase_in_a_worker():
    # The parent (this test process) once holds 512 MiB: a worker reading getrusage's ru_maxrss
    # would inherit that peak and see no growth below it. Each phase must read its own peak.
    big = torch.ones(2**27)
    del big
    code = (
        "import json, torch\n"
        "from yolox_attn.tools.benchmarking import measure_peaks\n"
        "def alloc(mib):\n"
        "    t = torch.ones(mib * 2**18)\n"
        "    t += 1\n"
        "print(json.dumps(measure_peaks({'a64': lambda: alloc(64), 'a16': lambda: alloc(16)}, torch.device('cpu'),"
        " warmup=lambda: alloc(1))))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, check=True)
    peaks = json.loads(proc.stdout)
    assert 60 < peaks["a64"] < 80 and 14 < peaks["a16"] < 30


def test_yolox_gflops_is_what_get_model_info_reports():
    from yolox.utils import get_model_info

    model, _ = model_cost.build_model("nano", "cca", torch.device("cpu"))
    reported = re.search(r"Gflops: ([0-9.]+)", get_model_info(model, (320, 320))).group(1)
    assert f"{model_cost.yolox_gflops(model, 320):.2f}" == reported


def test_bench_modules_flops_known_for_ca_and_growing_with_the_map_as_each_attention_does():
    rows = bench.main(["modules", "--attentions", "ca,nonlocal,cca", "--channels", "16", "--sides", "5,9", "--batch", "2",
                       "--no-timing", "--device", "cpu"])
    flops = {(r["side"], r["attention"]): r["gflops"] * 1e9 for r in rows}
    # CA: a 1x1 conv C -> mip on the H + W pooled vectors, then mip -> C on each: 4*C*mip*(H+W)
    # FLOPs per image (2 per multiply-add; BatchNorm, pooling and the sigmoid gates uncounted).
    mip = 8  # max(8, 16 // 32)
    assert (flops[(5, "ca")], flops[(9, "ca")]) == (2 * 4 * 16 * mip * 10, 2 * 4 * 16 * mip * 18)
    # Criss-cross grows as HW(H+W), non-local as (HW)^2: CCA is cheaper only once the map is large enough.
    assert flops[(5, "cca")] > flops[(5, "nonlocal")] and flops[(9, "cca")] < flops[(9, "nonlocal")]
    assert all(r["step_ms_median"] is None and r["fwd_peak_mib"] is None for r in rows)


def test_bench_modules_json_has_every_column_timed_and_measured(capsys):
    rows = bench.main(["modules", "--attentions", "nonlocal,cca", "--channels", "16", "--sides", "9", "--jobs", "2",
                       "--repeats", "1", "--warmup", "0", "--threads", "1", "--device", "cpu", "--json"])
    assert rows == json.loads(capsys.readouterr().out)
    assert [(r["side"], r["attention"]) for r in rows] == [(9, "nonlocal"), (9, "cca")]
    for row in rows:
        assert set(row) == set(module_cost.COLUMNS) and row["error"] is None, row
        assert row["step_ms_median"] > 0 and row["fwd_peak_mib"] >= 0 and row["train_peak_mib"] >= 0, row


def test_bench_profile_sees_every_convolution_once_per_run_in_both_runtimes(capsys):
    # Each of plain YOLOX-nano's Conv2d modules runs once per inference: in torch.profiler's
    # aten::convolution calls, and in onnxruntime's Conv kernels (BatchNorm folded into them).
    profiles = bench.main(["profile", "--size", "nano", "--tsize", "64", "--attentions", "none", "--repeats", "2",
                           "--warmup", "1", "--threads", "1", "--json"])
    assert json.loads(capsys.readouterr().out)
    convs = sum(isinstance(m, torch.nn.Conv2d) for m in model_cost.build_model("nano", "none", torch.device("cpu"))[0].modules())
    assert profiles[("torch", "inference")]["none"]["aten::convolution"][1] == convs
    assert profiles[("onnxruntime", "inference")]["none"]["Conv"][1] == convs


@pytest.mark.parametrize(
    "argv, expected",
    [
        (["--size", "huge"], ["huge", "nano", "tiny", "x"]),
        (["--attentions", "none,foo"], ["'foo'", "'ca'", "'simam'", "'cbam'"]),  # every registered name
        (["--tsize", "100"], ["100", "multiple of 32"]),
        (["--repeats", "0"], ["0", ">= 1"]),
        (["--no-onnxsim"], ["--no-onnxsim", "--onnxruntime"]),
        (["modules", "--sides", "9,x"], ["x", ">= 1"]),
        (["modules", "--channels", "0"], ["'0'", ">= 1"]),
        (["modules", "--device", "tpu"], ["tpu", "auto", "cpu", "cuda"]),
        (["modules", "--attentions", "ca,acmix", "--channels", "10"], ["--channels 10", "acmix", "divisible by head=4"]),
        (["profile", "--runtimes", "torch,tensorrt"], ["tensorrt", "torch, onnxruntime"]),
    ],
)
def test_bench_bad_arguments(argv, expected, capsys):
    with pytest.raises(SystemExit) as exc:
        bench.parse_args(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    for text in expected:
        assert text in err


def test_bench_help_names_the_modes(capsys):
    with pytest.raises(SystemExit) as exc:
        bench.parse_args(["-h"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert all(re.search(rf"^\s+{mode}\s", out, re.MULTILINE) for mode in bench.MODES)


def test_retired_benchmark_tools_name_their_new_spelling():
    import importlib

    for old, new in [("bench_modules", "bench modules"), ("bench_ccnet", "bench modules"), ("profile_ops", "bench profile")]:
        with pytest.raises(ModuleNotFoundError, match=f"yolox_attn.tools.{old} was merged into the bench tool: "
                                                      f"run python -m yolox_attn.tools.{new}"):
            importlib.import_module(f"yolox_attn.tools.{old}")
    # and as a command: that line alone, exit 1
    proc = subprocess.run([sys.executable, "-m", "yolox_attn.tools.bench_ccnet", "--json"], capture_output=True, text=True)
    assert proc.returncode == 1 and proc.stdout == ""
    assert len(proc.stderr.strip().splitlines()) == 1 and "python -m yolox_attn.tools.bench modules" in proc.stderr


def test_bench_lists_every_registered_attention(capsys):
    from yolox_attn.attention import describe_attentions

    assert bench.main(["--list"]) == []
    lines = capsys.readouterr().out.strip().splitlines()
    assert [line.split()[0] for line in lines] == list(describe_attentions())
    assert all(text in line for line, text in zip(lines, describe_attentions().values()))


def test_bench_takes_any_registered_name_and_all():
    args = bench.parse_args(["--attention", "simam,CAM,se"])  # argparse's prefix of --attentions
    assert args.mode == "model" and args.attentions == ["none", "simam", "ca", "se"]
    from yolox_attn.attention import attention_names

    everything = bench.parse_args(["--attentions", "all"]).attentions
    assert everything[0] == "none" and sorted(everything) == sorted(attention_names(include_aliases=False))


def test_bench_no_timing_measures_params_and_flops_of_new_types(capsys):
    rows = bench.main([*TINY, "--attentions", "simam,ema,bat,se,sk", "--no-timing", "--json"])
    assert rows == json.loads(capsys.readouterr().out)
    none, *others = rows
    assert [r["attention"] for r in others] == ["simam", "ema", "bat", "se", "sk"]
    for row in rows:
        assert row["error"] is None and row["repeats"] == 0
        assert row["params_m"] > 0 and row["gflops_yolox"] > 0 and row["gflops_counted"] > 0
        assert row["infer_ms_median"] is None and row["train_peak_mib"] is None
    by_name = {r["attention"]: r for r in rows}
    # SimAM adds only its three zero gates; the others add weights and FLOPs.
    assert round((by_name["simam"]["params_m"] - none["params_m"]) * 1e6) == 3
    for name in ("ema", "bat", "sk"):
        assert by_name[name]["params_m"] > none["params_m"] and by_name[name]["gflops_counted"] > none["gflops_counted"]

"""The benchmark tools on tiny configurations: every column present, sane ratios, clear errors.

Timings are never asserted: the figures come from a shared machine.
"""

import contextlib
import io
import json
import re
import subprocess
import sys

import pytest
import torch

from yolox_attn.tools import bench, bench_ccnet

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _json_rows(capsys) -> list:
    return json.loads(capsys.readouterr().out)


@pytest.fixture(scope="module")
def bench_run():
    # The smallest real run: one thread per process, two memory workers at once on two cores.
    argv = ["--size", "nano", "--tsize", "64", "--repeats", "1", "--warmup", "0", "--jobs", "2", "--threads", "1",
            "--device", "cpu", "--json"]
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        rows = bench.main(argv)
    return rows, json.loads(printed.getvalue())


def test_bench_json_has_every_column_for_every_row(bench_run):
    bench_rows, printed = bench_run
    assert printed == bench_rows
    assert [r["attention"] for r in bench_rows] == list(bench.ATTENTIONS)
    for row in bench_rows:
        assert set(row) == set(bench.COLUMNS), row["attention"]
        assert row["error"] is None, row
        for column, _ in bench.FIGURES:
            assert row[column] is not None, (row["attention"], column)


def test_bench_ratios_and_flops(bench_run):
    bench_rows, _ = bench_run
    none = bench_rows[0]
    for column, ratio_column in bench.FIGURES:
        if ratio_column is None:
            continue
        if none[column] > 0:
            assert none[ratio_column] == pytest.approx(1.0), ratio_column
        else:  # a CPU peak-RSS reading can be 0 on an input this small: no ratio then
            assert none[ratio_column] is None and "peak" in column
    for row in bench_rows[1:]:
        assert row["params_m"] > none["params_m"]
        assert row["gflops_yolox"] >= none["gflops_yolox"]
        assert row["gflops_counted"] >= none["gflops_counted"]
    # The matmuls thop misses show in the counted FLOPs of the attentions built on them.
    by_name = {r["attention"]: r for r in bench_rows}
    for name in ("cca", "nonlocal"):
        assert by_name[name]["gflops_counted_ratio"] > by_name[name]["gflops_yolox_ratio"]


def test_bench_without_onnxruntime_leaves_its_columns_empty(bench_run):
    bench_rows, _ = bench_run
    for row in bench_rows:
        assert all(row[c] is None for pair in bench.ORT_FIGURES + bench.COMPILE_FIGURES for c in pair if c), row["attention"]
        assert row["onnx_exporter"] is None and row["onnx_simplified"] is None


def test_bench_onnxruntime_exports_times_and_reports_what_cannot_export(tmp_path, capsys):
    # bat declares that it cannot be exported to ONNX: its row says why and keeps its PyTorch figures.
    rows = bench.main(["--size", "nano", "--tsize", "64", "--attentions", "ca,bat", "--repeats", "1", "--warmup", "0",
                       "--threads", "1", "--device", "cpu", "--onnxruntime", "--onnx-dir", str(tmp_path), "--json"])
    assert rows == json.loads(capsys.readouterr().out)
    none, ca, bat = rows
    for row in (none, ca):
        assert row["error"] is None, row
        for column, _ in bench.ORT_FIGURES:
            assert row[column] is not None and row[column] > 0, (row["attention"], column)
        assert row["onnx_exporter"] == "dynamo" and isinstance(row["onnx_simplified"], bool)
        assert (tmp_path / f"{row['attention']}.onnx").is_file()
    for _, ratio_column in bench.ORT_FIGURES:
        if ratio_column:
            assert none[ratio_column] == pytest.approx(1.0), ratio_column
    assert ca["onnx_nodes"] > none["onnx_nodes"] and ca["onnx_nodes_ratio"] > 1
    assert "ONNX export failed" in bat["error"] and "cannot be exported" in bat["error"]
    assert bat["infer_ms_median"] is not None and bat["ort_ms_median"] is None and bat["export_s"] is None
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ca.onnx", "none.onnx"]  # checkpoints removed


def test_bench_compile_times_the_compile_model_forms(eager_compile, capsys):
    rows = bench.main(["--size", "nano", "--tsize", "64", "--attentions", "ca", "--repeats", "1", "--warmup", "0",
                       "--threads", "1", "--device", "cpu", "--compile"])
    assert sorted(eager_compile) == sorted([("AttentionPAFPN", {"dynamic": False}), ("YOLOX", {"dynamic": False})] * 2)
    none, ca = rows
    for row in rows:
        for column, _ in bench.COMPILE_FIGURES:
            assert row[column] is not None and row[column] > 0, (row["attention"], column)
        for column, compiled_column, eager_column in bench.VS_EAGER:
            assert row[column] == pytest.approx(row[compiled_column] / row[eager_column])
    assert none["infer_compiled_ratio"] == pytest.approx(1.0)
    assert ca["train_compiled_ratio"] == pytest.approx(ca["train_compiled_ms_median"] / none["train_compiled_ms_median"])
    assert "torch.compile (static shapes)" in capsys.readouterr().out


def test_bench_reports_an_infeasible_row(monkeypatch, capsys):
    # Stand-in memory workers: nonlocal's "was killed" (as the OOM killer would), none's worked.
    def fake_workers(module, argvs, jobs=1):
        return [{"error": "memory worker killed by signal 9 (out of memory?)"} if "nonlocal" in argv
                else {"infer_peak_mib": 1.0, "train_peak_mib": 2.0} for argv in argvs]

    monkeypatch.setattr(bench.bm, "run_workers", fake_workers)
    rows = bench.main(["--size", "nano", "--tsize", "64", "--attentions", "nonlocal", "--repeats", "1",
                       "--warmup", "0", "--threads", "1", "--device", "cpu"])
    none, nonlocal_ = rows
    assert none["error"] is None and none["train_ms_median"] is not None
    assert "out of memory" in nonlocal_["error"] and nonlocal_["params_m"] > none["params_m"]
    assert nonlocal_["infer_ms_median"] is None and nonlocal_["gflops_counted"] is None
    assert "killed by signal 9" in capsys.readouterr().out  # the table shows it in the row


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

    model, _ = bench.build_model("nano", "cca", torch.device("cpu"))
    reported = re.search(r"Gflops: ([0-9.]+)", get_model_info(model, (320, 320))).group(1)
    assert f"{bench.yolox_gflops(model, 320):.2f}" == reported


@pytest.mark.parametrize(
    "argv, expected",
    [
        (["--size", "huge"], ["huge", "nano", "tiny", "x"]),
        (["--attentions", "none,foo"], ["'foo'", "'ca'", "'simam'", "'cbam'"]),  # every registered name
        (["--tsize", "100"], ["100", "multiple of 32"]),
        (["--repeats", "0"], ["0", ">= 1"]),
        (["--no-onnxsim"], ["--no-onnxsim", "--onnxruntime"]),
    ],
)
def test_bench_bad_arguments(argv, expected, capsys):
    with pytest.raises(SystemExit) as exc:
        bench.parse_args(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    for text in expected:
        assert text in err


def test_bench_lists_every_registered_attention(capsys):
    from yolox_attn.attention import describe_attentions

    assert bench.main(["--list"]) == []
    lines = capsys.readouterr().out.strip().splitlines()
    assert [line.split()[0] for line in lines] == list(describe_attentions())
    assert all(text in line for line, text in zip(lines, describe_attentions().values()))


def test_bench_takes_any_registered_name_and_all():
    args = bench.parse_args(["--attention", "simam,CAM,se"])  # argparse's prefix of --attentions
    assert args.attentions == ["none", "simam", "ca", "se"]
    from yolox_attn.attention import attention_names

    everything = bench.parse_args(["--attentions", "all"]).attentions
    assert everything[0] == "none" and sorted(everything) == sorted(attention_names(include_aliases=False))


def test_bench_no_timing_measures_params_and_flops_of_new_types(capsys):
    argv = ["--size", "nano", "--tsize", "64", "--attentions", "simam,ema,bat,se,sk", "--no-timing",
            "--threads", "1", "--device", "cpu", "--json"]
    rows = bench.main(argv)
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


def test_bench_ccnet_json_and_plot(tmp_path, capsys):
    png = tmp_path / "ccnet.png"
    rows = bench_ccnet.main(["--channels", "16", "--sizes", "5,9", "--jobs", "2", "--threads", "1", "--device", "cpu",
                             "--plot", str(png), "--json"])
    assert _json_rows(capsys) == rows
    assert [r["size"] for r in rows] == [5, 9]
    for row in rows:
        assert set(row) == set(bench_ccnet.COLUMNS)
        assert row["error"] is None
        for column in bench_ccnet.COLUMNS:
            if column != "error":
                assert row[column] is not None or column.endswith("_ratio"), (row["size"], column)
    # Criss-cross grows as HW(H+W), non-local as (HW)^2: CCA is cheaper only once the map is large enough.
    assert rows[0]["gflops_ratio"] > 1 > rows[1]["gflops_ratio"]
    assert png.read_bytes()[:8] == PNG_SIGNATURE and png.stat().st_size > 1000


@pytest.mark.parametrize(
    "argv, expected",
    [
        (["--channels", "4"], ["4", ">= 8", "C/8"]),
        (["--sizes", "9,x"], ["x", ">= 1"]),
        (["--device", "tpu"], ["tpu", "auto", "cpu", "cuda"]),
    ],
)
def test_bench_ccnet_bad_arguments(argv, expected, capsys):
    with pytest.raises(SystemExit) as exc:
        bench_ccnet.parse_args(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    for text in expected:
        assert text in err


def test_bench_modules_json_columns_diffs_and_memory(capsys):
    from yolox_attn.tools import bench_modules

    rows = bench_modules.main(["--shape", "1", "16", "9", "11", "--repeats", "1", "--warmup", "0",
                               "--threads", "1", "--device", "cpu", "--json"])
    printed = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert printed == rows
    cases = [r for r in rows if r["kind"] == "case"]
    compares = [r for r in rows if r["kind"] == "compare"]
    assert [(r["pair"], r["impl"]) for r in cases] == bench_modules.CASES
    assert [r["pair"] for r in compares] == list(bench_modules.PAIRS)
    for row in cases:
        assert set(row) == set(bench_modules.CASE_COLUMNS), row["label"]
        assert row["error"] is None, row
        assert all(row[c] is not None for c in bench_modules.CASE_COLUMNS if c != "error"), row
        # Memory of one step measured in a worker; never assert timings.
        assert isinstance(row["peak_mib"], float) and row["peak_mib"] > 0, row
    for row in compares:
        assert set(row) == set(bench_modules.COMPARE_COLUMNS), row["pair"]
        assert row["error"] is None, row
        assert all(row[c] is not None for c in bench_modules.COMPARE_COLUMNS if c != "error"), row
        assert row["max_abs_diff_out"] <= 1e-5 and row["max_abs_diff_grad_x"] <= 1e-5, row
        assert row["within_tolerance"] is True
        assert isinstance(row["memory_ratio"], float) and row["memory_ratio"] > 0


@pytest.mark.parametrize(
    "argv, expected",
    [
        (["--shape", "1", "16", "9"], ["--shape", "expected 4 arguments"]),
        (["--shape", "1", "0", "9", "11"], ["'0'", ">= 1"]),
        (["--only", "foo"], ["foo", "acmix, cca"]),
        (["--shape", "1", "4", "9", "11", "--only", "cca"], ["C=4", "C >= 8"]),
        (["--shape", "1", "10", "9", "11", "--only", "acmix"], ["C=10", "divisible by", "4 heads"]),
        (["--repeats", "0"], ["'0'", ">= 1"]),
    ],
)
def test_bench_modules_bad_arguments(argv, expected, capsys):
    from yolox_attn.tools import bench_modules

    with pytest.raises(SystemExit) as exc:
        bench_modules.main(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    for text in expected:
        assert text in err


def test_bench_reports_a_type_that_cannot_train_at_batch_one(capsys):
    # timm's sk puts a BatchNorm on pooled (B, C, 1, 1) vectors: its row says why and what to do.
    rows = bench.main(["--size", "nano", "--tsize", "64", "--attentions", "sk", "--repeats", "1", "--warmup", "0",
                       "--threads", "1", "--device", "cpu", "--json"])
    none, sk = rows
    assert none["error"] is None and none["train_ms_median"] is not None
    assert "--train-batch 2" in sk["error"] and sk["params_m"] > none["params_m"]
    assert sk["train_ms_median"] is None

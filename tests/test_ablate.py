"""The ablation tool: a real 2 x 2 grid of YOLOX train-tool runs on a tiny dataset, and its statistics."""

import json
import math
import subprocess
import sys

import pytest
from conftest import ROOT

from yolox_attn.tools import ablate

EXP = ROOT / "exps" / "example" / "yolox_nano_none_shapes.py"


def _ablate(work, out, *extra):
    tiny = ["data_dir", str(work / "shapes"), "input_size", "(96,96)", "test_size", "(96,96)",
            "random_size", "(3,3)", "data_num_workers", "0", "test_conf", "0.0", "max_epoch", "1",
            "no_aug_epochs", "0", "eval_interval", "1", "warmup_epochs", "0", "print_interval", "1",
            "attention_stats_interval", "1"]
    # gated CA (the shapes exps train the paper's): its learned gates are part of the record
    cmd = [sys.executable, "-m", "yolox_attn.tools.ablate", "-f", str(EXP), "--attention", "none", "ca",
           "--seeds", "0", "1", "--identity-init", "True", "-b", "4", "--output-dir", str(out), *extra, *tiny]
    proc = subprocess.run(cmd, cwd=work, capture_output=True, text=True, timeout=900)
    return proc.returncode, proc.stdout + proc.stderr


@pytest.fixture(scope="module")
def grid(tmp_path_factory):
    work = tmp_path_factory.mktemp("ablate")
    proc = subprocess.run([sys.executable, "-m", "yolox_attn.tools.make_shapes", "--out", str(work / "shapes"),
                           "--train", "8", "--val", "4", "--size", "96", "--seed", "2"],
                          cwd=work, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    out = work / "grid"
    code, log = _ablate(work, out)
    return work, out, code, log


def test_every_run_finishes_with_a_complete_record(grid):
    _, out, code, log = grid
    assert code == 0, log[-3000:]
    results = json.loads((out / "results.json").read_text())
    assert results["command"].startswith("python -m yolox_attn.tools.ablate -f ")
    runs = results["runs"]
    assert [r["name"] for r in runs] == ["none_seed0", "ca_gated_seed0", "none_seed1", "ca_gated_seed1"]
    for r in runs:
        assert r["status"] == "done" and r["returncode"] == 0
        assert r["attention"] in ("none", "ca") and r["seed"] in (0, 1)
        gated = r["attention"] == "ca"
        assert r["group"] == ("ca (gated)" if gated else "none") and r["identity_init"] is (True if gated else None)
        assert [e["epoch"] for e in r["evals"]] == [1]
        assert 0 <= r["final_ap"] <= r["final_ap50"] <= 1 and r["final_epoch"] == 1
        assert r["final_ap50"] == r["evals"][-1]["ap50"]
        assert 0 < r["evals"][0]["train_seconds"] <= r["evals"][0]["wall_seconds"] <= r["wall_seconds"]
        assert 0 < r["train_seconds"] <= r["wall_seconds"]
        # 8 images at batch 4: 2 iterations
        assert r["seconds_per_iter"] == pytest.approx(r["train_seconds"] / 2, abs=1e-3)
        assert (out / "logs" / f"{r['name']}.log").is_file() and r["log"].endswith(f"{r['name']}.log")
    assert runs[0]["scalars"] == {}
    # CA is gated: one learned gate per level, moved off 0 by training
    assert sorted(runs[1]["scalars"]) == ["attention.dark3.gate", "attention.dark4.gate", "attention.dark5.gate"]
    assert all(math.isfinite(v) for v in runs[1]["scalars"].values())
    assert log.count("[ablate] ") == 5 and "4 of 4 runs finished" in log
    # attention_stats_interval 1: the trainer's monitor wrote a record for each of the 2 iterations
    stats = [json.loads(line) for line in (out / "ca_gated_seed1" / "metrics.jsonl").read_text().splitlines()]
    stats = [r for r in stats if r["event"] == "stats"]
    assert [r["iter"] for r in stats] == [1, 2]
    assert sorted(stats[0]["activation_rms"]) == ["attention.dark3", "attention.dark4", "attention.dark5"]
    assert set(stats[0]["grad_norm"]) >= {"rest"} and "total_loss" in stats[0]["loss"]


def test_summary_and_plot(grid):
    import cv2

    _, out, _, _ = grid
    summary = (out / "summary.md").read_text()
    rows = [line for line in summary.splitlines() if line.startswith(("| none |", "| ca (gated) |"))]
    assert len(rows) == 2
    none_row, ca_row = (row.split("|")[1:-1] for row in rows)
    assert none_row[1].strip() == "2" and ca_row[1].strip() == "2"
    assert "±" in none_row[2] and "p=" in ca_row[4] and ca_row[5].strip() in (
        "above none, beyond the seed noise", "below none, beyond the seed noise", "within the seed noise")
    runs = json.loads((out / "results.json").read_text())["runs"]
    ca_mean = sum(r["final_ap50"] for r in runs if r["attention"] == "ca") / 2
    assert ca_row[2].strip().startswith(f"{ca_mean:.3f}")
    image = cv2.imread(str(out / "ablation.png"))
    assert image is not None and image.shape[0] > 300 and image.shape[1] > 800


def test_rerun_skips_finished_runs_and_reports_a_failed_one(grid):
    work, out, _, _ = grid
    # A broken checkpoint makes the resumed run fail; the finished ones are skipped.
    broken = out / "ca_gated_seed2"
    broken.mkdir()
    (broken / "latest_ckpt.pth").write_bytes(b"not a checkpoint")
    code, log = _ablate(work, out, "--seeds", "0", "1", "2")
    assert code == 1
    assert log.count("finished earlier") == 4
    assert "none_seed2: done" in log
    assert "ca_gated_seed2: FAILED" in log and "failed: ca_gated_seed2" in log
    runs = json.loads((out / "results.json").read_text())["runs"]
    failed = [r for r in runs if r["status"] != "done"]
    assert [r["name"] for r in failed] == ["ca_gated_seed2"] and failed[0]["error"].startswith("training failed: ")
    summary = (out / "summary.md").read_text()
    assert "Runs not averaged: ca_gated_seed2 (failed)" in summary
    assert "| ca (gated) | 2 |" in summary and "| none | 3 |" in summary


def test_report_only_starts_nothing(grid):
    work, out, _, _ = grid
    before = sorted(p.name for p in out.iterdir())
    code, log = _ablate(work, out, "--seeds", "0", "7", "--report-only")
    assert code == 0, log[-2000:]
    assert log.count("finished earlier") == 2 and log.count(": not run") == 2
    assert sorted(p.name for p in out.iterdir()) == before
    runs = json.loads((out / "results.json").read_text())["runs"]
    assert [r["name"] for r in runs] == ["none_seed0", "ca_gated_seed0"]


def test_plan_orders_seed_major_and_applies_the_init_axis_to_gated_attentions_only():
    runs = ablate.plan_runs(["none", "acmix", "cca"], [0, 1], [True, False])
    assert [r.name for r in runs] == ["none_seed0", "acmix_gated_seed0", "acmix_paper_seed0", "cca_seed0",
                                      "none_seed1", "acmix_gated_seed1", "acmix_paper_seed1", "cca_seed1"]
    assert runs[2].group == "acmix (paper)" and runs[3].group == "cca"
    assert [r.name for r in ablate.plan_runs(["ca"], [3], None)] == ["ca_seed3"]


def test_exp_opts_follow_the_grid_values():
    own, opts = ablate.split_argv(["-f", "e.py", "--attention", "none", "cam", "--seeds", "0", "1",
                                   "max_epoch", "7", "data_dir", "d"])
    assert own == ["-f", "e.py", "--attention", "none", "cam", "--seeds", "0", "1"]
    assert opts == ["max_epoch", "7", "data_dir", "d"]
    own, opts = ablate.split_argv(["--seeds", "3", "--fp16", "-b", "4", "eval_interval", "1"])
    assert own == ["--seeds", "3", "--fp16", "-b", "4"] and opts == ["eval_interval", "1"]
    assert ablate.split_argv(["--identity-init", "True", "False", "--", "seed_x", "1"]) == (
        ["--identity-init", "True", "False"], ["seed_x", "1"])


def test_bad_arguments_fail_with_the_reason(capsys):
    with pytest.raises(SystemExit):
        ablate.make_parser().parse_args(["-f", "x.py", "--attention", "nope"])
    assert "nope" in capsys.readouterr().err
    with pytest.raises(SystemExit, match="set per run"):
        ablate.check_opts(["seed", "3"])
    with pytest.raises(SystemExit, match="key value pairs"):
        ablate.check_opts(["max_epoch"])
    with pytest.raises(SystemExit, match="does not exist"):
        ablate.main(["-f", "missing_exp.py"])


T_975_DF_2_624 = 3.45662  # Student's t, 97.5 % quantile at 2.624 degrees of freedom


def test_welch_interval_matches_a_hand_computation():
    a, b = [0.60, 0.62, 0.64], [0.50, 0.55, 0.60]
    test = ablate.welch(a, b)
    # means 0.62 and 0.55, variances 4e-4 and 2.5e-3: se = sqrt((4e-4 + 2.5e-3) / 3)
    se = math.sqrt((4e-4 + 2.5e-3) / 3)
    # Welch-Satterthwaite: df = (se^2)^2 / sum((var_i / n_i)^2 / (n_i - 1)) = 2.624
    assert test["diff"] == pytest.approx(0.07)
    assert (test["high"] - test["low"]) / 2 == pytest.approx(T_975_DF_2_624 * se, rel=1e-4)
    assert 0.05 < test["p"] < 0.2
    assert ablate.welch([0.5], b) is None
    assert ablate.verdict(test) == "within the seed noise"
    assert ablate.verdict({"low": 0.01, "high": 0.1}) == "above none, beyond the seed noise"

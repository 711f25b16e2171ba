"""The ablation tool: real grids of YOLOX train-tool runs on a tiny dataset (two at once, fine-tuning,
through submitit), reproduced runs, and its statistics."""

import json
import math
import os
import subprocess
import sys

import pytest
from conftest import ROOT

from yolox_attn import ablation
from yolox_attn.tools import ablate

EXP = ROOT / "exps" / "example" / "yolox_nano_none_shapes.py"
JOBS = str(min(2, len(os.sched_getaffinity(0))))
TIMING = ("wall_seconds", "train_seconds", "seconds_per_iter")


def _tiny(work, workers="0"):
    return ["data_dir", str(work / "shapes"), "input_size", "(96,96)", "test_size", "(96,96)",
            "random_size", "(3,3)", "data_num_workers", workers, "test_conf", "0.0", "max_epoch", "1",
            "no_aug_epochs", "0", "eval_interval", "1", "warmup_epochs", "0", "print_interval", "1",
            "attention_stats_interval", "1"]


def _ablate(work, out, *extra, grid=("--attention", "none", "ca", "--seeds", "0", "1"), workers="0"):
    # gated CA (the shapes exps train the paper's): its learned gates are part of the record
    cmd = [sys.executable, "-m", "yolox_attn.tools.ablate", "-f", str(EXP), *grid, "--identity-init", "True",
           "-b", "4", "--jobs", JOBS, "--output-dir", str(out), *extra, *_tiny(work, workers)]
    proc = subprocess.run(cmd, cwd=work, capture_output=True, text=True, timeout=900)
    return proc.returncode, proc.stdout + proc.stderr


def _metrics(folder):
    """A run's metrics.jsonl without its clock readings."""
    records = [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if k not in TIMING} for r in records]


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    work = tmp_path_factory.mktemp("ablate")
    proc = subprocess.run([sys.executable, "-m", "yolox_attn.tools.make_shapes", "--out", str(work / "shapes"),
                           "--train", "8", "--val", "4", "--size", "96", "--seed", "2"],
                          cwd=work, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    return work


@pytest.fixture(scope="module")
def grid(work):
    out = work / "grid"
    code, log = _ablate(work, out, workers="1")  # a DataLoader worker: its seeding is part of the runs
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
    # --jobs 2: two runs at once, each on its own core with one thread, as each run recorded
    setup = results["setup"]
    assert setup["jobs"] == int(JOBS) and len(setup["slots"]) == int(JOBS)
    for r in runs:
        if JOBS != "1":
            assert r["conditions"]["threads"] == len(os.sched_getaffinity(0)) // int(JOBS)
        assert r["conditions"]["seed"] == r["conditions"]["data_seed"] == r["seed"]
        assert r["conditions"]["checkpoint"] is None and r["resumed"] == 0
        seeded = r["conditions"]["seeded"]["data order and augmentations"]
        assert "each sample from (data seed, rank, batch, place)" in seeded
    # attention_stats_interval 1: the trainer's monitor wrote a record for each of the 2 iterations
    stats = [json.loads(line) for line in (out / "ca_gated_seed1" / "metrics.jsonl").read_text().splitlines()]
    stats = [r for r in stats if r["event"] == "stats"]
    assert [r["iter"] for r in stats] == [1, 2]
    assert sorted(stats[0]["activation_rms"]) == ["attention.dark3", "attention.dark4", "attention.dark5"]
    assert set(stats[0]["grad_norm"]) >= {"rest"} and "total_loss" in stats[0]["loss"]


def test_a_seeded_run_repeats_bit_for_bit(grid):
    work, out, _, _ = grid
    again = work / "again"
    code, log = _ablate(work, again, grid=("--attention", "ca", "--seeds", "1"), workers="1")
    assert code == 0, log[-3000:]
    first, second = _metrics(out / "ca_gated_seed1"), _metrics(again / "ca_gated_seed1")
    assert [r["event"] for r in first] == ["start", "stats", "stats", "eval", "end"]
    assert second == first  # every loss, gradient norm, learned scalar and AP
    other = _metrics(out / "ca_gated_seed0")
    assert other[1]["loss"] != first[1]["loss"]


def test_summary_and_plot(grid):
    import cv2

    _, out, _, _ = grid
    summary = (out / "summary.md").read_text()
    unpaired = summary[summary.index("## Unpaired"):]
    rows = [line for line in unpaired.splitlines() if line.startswith(("| none |", "| ca (gated) |"))]
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
    runs = ablation.plan_runs(["none", "acmix", "cca"], [0, 1], [True, False])
    assert [r.name for r in runs] == ["none_seed0", "acmix_gated_seed0", "acmix_paper_seed0", "cca_seed0",
                                      "none_seed1", "acmix_gated_seed1", "acmix_paper_seed1", "cca_seed1"]
    assert runs[2].group == "acmix (paper)" and runs[3].group == "cca"
    assert [r.name for r in ablation.plan_runs(["ca"], [3], None)] == ["ca_seed3"]


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
    test = ablation.welch(a, b)
    # means 0.62 and 0.55, variances 4e-4 and 2.5e-3: se = sqrt((4e-4 + 2.5e-3) / 3)
    se = math.sqrt((4e-4 + 2.5e-3) / 3)
    # Welch-Satterthwaite: df = (se^2)^2 / sum((var_i / n_i)^2 / (n_i - 1)) = 2.624
    assert test["diff"] == pytest.approx(0.07)
    assert (test["high"] - test["low"]) / 2 == pytest.approx(T_975_DF_2_624 * se, rel=1e-4)
    assert 0.05 < test["p"] < 0.2
    assert ablation.welch([0.5], b) is None
    assert ablation.verdict(test) == "within the seed noise"
    assert ablation.verdict({"low": 0.01, "high": 0.1}) == "above none, beyond the seed noise"


T_975_DF_2 = 4.302653  # Student's t, 97.5 % quantile at 2 degrees of freedom


def test_paired_interval_matches_a_hand_computation():
    a = {0: 0.60, 1: 0.62, 2: 0.66, 5: 0.9}  # seed 5 has no partner: left out
    b = {0: 0.58, 1: 0.61, 2: 0.62, 3: 0.1}
    test = ablation.paired(a, b)
    diffs = [0.02, 0.01, 0.04]
    mean = sum(diffs) / 3
    sd = math.sqrt(sum((d - mean) ** 2 for d in diffs) / 2)
    assert test["seeds"] == [0, 1, 2] and test["diffs"] == pytest.approx(diffs) and test["n"] == 3
    assert test["diff"] == pytest.approx(mean) and test["wins"] == 3
    half = T_975_DF_2 * sd / math.sqrt(3)
    assert test["low"] == pytest.approx(mean - half, rel=1e-5) and test["high"] == pytest.approx(mean + half, rel=1e-5)
    # t = mean / (sd / sqrt(3)) = 2.6458 on 2 degrees of freedom: two-sided p = 0.118
    assert test["p"] == pytest.approx(0.1181, abs=1e-3)
    # the same differences everywhere: no spread, an exact difference
    exact = ablation.paired({0: 0.5, 1: 0.6}, {0: 0.4, 1: 0.5})
    assert exact["low"] == exact["high"] == pytest.approx(0.1) and exact["p"] == 0.0
    one = ablation.paired({0: 0.5}, {0: 0.6})
    assert one["low"] is None and one["wins"] == 0 and ablation.verdict(one).startswith("needs")
    assert ablation.paired({0: 0.5}, {1: 0.5}) is None


def test_summary_leads_with_the_paired_table():
    def run(attention, seed, ap50):
        return {"name": f"{attention}_seed{seed}", "group": attention, "seed": seed, "pair": seed, "status": "done",
                "final_ap50": ap50, "final_ap": ap50 / 2, "wall_seconds": 100.0 if attention == "none" else 150.0}

    records = [run("none", 0, 0.58), run("ca", 0, 0.60), run("none", 1, 0.61), run("ca", 1, 0.62),
               run("none", 2, 0.62), run("ca", 2, 0.66)]
    text = ablation.summary_markdown(ablation.summarize(records), "cmd")
    paired = text.index("## Paired by seed")
    assert paired < text.index("## Unpaired")
    row = next(line for line in text.splitlines() if line.startswith("| ca | 3 |"))
    cells = [c.strip() for c in row.split("|")[1:-1]]
    assert cells[2] == "0: +0.020, 1: +0.010, 2: +0.040" and cells[3].startswith("+0.023 [-0.015, +0.061], p=0.12")
    assert cells[4] == "3/3" and cells[5] == "within the seed noise" and cells[7] == "150 (1.50x)"


def test_slots_split_cores_or_gpus_and_refuse_too_many_jobs():
    assert ablation.local_slots(1, 1, [], [0, 1]) == [ablation.launch.Slot()]
    cpu = ablation.local_slots(2, 1, [], [0, 1, 2, 3, 4])
    assert [s.cpus for s in cpu] == [(0, 1), (2, 3)] and all(s.env["OMP_NUM_THREADS"] == "2" for s in cpu)
    gpu = ablation.local_slots(2, 2, ["0", "1", "2", "3"], [0, 1])
    assert [s.env for s in gpu] == [{"CUDA_VISIBLE_DEVICES": "0,1"}, {"CUDA_VISIBLE_DEVICES": "2,3"}]
    assert gpu[0].cpus == ()
    with pytest.raises(ValueError, match="--jobs 3 exceeds the 2 CPU cores"):
        ablation.local_slots(3, 1, [], [0, 1])
    with pytest.raises(ValueError, match="--jobs 2 with -d 2 needs 4 GPUs; this machine has 3"):
        ablation.local_slots(2, 2, ["0", "1", "2"], [0])


def test_finetuning_grid_pretrains_once_through_submitit(work):
    out = work / "finetune"
    args = ("--pretrain-epochs", "1", "--launcher", "submitit-local", "--slurm", "timeout_min=10")
    code, log = _ablate(work, out, *args, grid=("--attention", "none", "ca", "--seeds", "0"))
    assert code == 0, log[-3000:]
    results = json.loads((out / "results.json").read_text())
    pretrain, ckpt = results["pretrain"], str(out / "pretrain_none_e1_seed1000" / "latest_ckpt.pth")
    assert pretrain["status"] == "done" and pretrain["checkpoint"] == ckpt == results["setup"]["checkpoint"]
    assert results["setup"]["launcher"] == "submitit-local"
    assert results["setup"]["finetune_opts"][:2] == ["max_epoch", "4"]  # the exp's schedule, before the opts
    for r in results["runs"]:
        assert r["status"] == "done" and r["conditions"]["checkpoint"] == ckpt
        command = (out / "logs" / f"{r['name']}.log").read_text().splitlines()[0]
        assert f" -c {ckpt} " in command and command.index("basic_lr_per_img") < command.index("data_dir")
    assert list((out / "submitit").glob("*_result.pkl"))  # submitit ran them
    assert "Every run continues from" in (out / "summary.md").read_text()
    code, log = _ablate(work, out, *args, grid=("--attention", "none", "ca", "--seeds", "0"))
    assert code == 0 and log.count("finished earlier") == 3  # the pretraining and both runs


def test_finetune_and_launch_errors_name_the_cause(capsys):
    with pytest.raises(SystemExit, match=r"^ablate: checkpoint 'nope.pth' \(--finetune-from\) does not exist$"):
        ablate.main(["-f", str(EXP), "--finetune-from", "nope.pth"])
    with pytest.raises(SystemExit, match="--slurm parameters need --launcher slurm or submitit-local"):
        ablate.main(["-f", str(EXP), "--slurm", "partition=a"])
    with pytest.raises(SystemExit, match="^ablate: unknown exp option 'max_epochs'"):
        ablate.main(["-f", str(EXP), "--seeds", "0", "max_epochs", "3"])
    with pytest.raises(SystemExit):
        ablate.main(["-f", str(EXP), "--jobs", "0"])
    assert "argument --jobs: '0' is not an integer >= 1" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        ablate.main(["-f", str(EXP), "--pretrain-epochs", "2", "--finetune-from", "x.pth"])
    assert "not allowed with argument" in capsys.readouterr().err


def test_variance_split_matches_a_hand_computation():
    # seed effects -0.1, 0, +0.1 and data effects -0.05, +0.05 around 0.5, plus interaction e
    e = {(0, 0): 0.01, (0, 1): -0.01, (1, 0): -0.02, (1, 1): 0.02, (2, 0): 0.01, (2, 1): -0.01}
    seed_effect, data_effect = {0: -0.1, 1: 0.0, 2: 0.1}, {0: -0.05, 1: 0.05}
    table = {(s, d): 0.5 + seed_effect[s] + data_effect[d] + e[(s, d)] for s in range(3) for d in range(2)}
    v = ablation.variance_split(table)
    # residuals are e itself (it sums to 0 along every row and column): MS_rest = sum(e^2) / 2
    ms_rest = sum(x * x for x in e.values()) / 2
    ms_seed = 2 * (0.1 ** 2 + 0 + 0.1 ** 2) / 2
    ms_data = 3 * (0.05 ** 2 * 2) / 1
    assert v["rest"] == pytest.approx(ms_rest)
    assert v["seed"] == pytest.approx((ms_seed - ms_rest) / 2) and v["data"] == pytest.approx((ms_data - ms_rest) / 3)
    assert v["total"] == pytest.approx(v["seed"] + v["data"] + v["rest"]) and (v["seeds"], v["data_seeds"]) == (3, 2)
    table.pop((2, 1))
    assert ablation.variance_split(table) is None  # incomplete
    assert ablation.variance_split({0: 0.5, 1: 0.6}) is None  # no data-seed axis
    names = [r.name for r in ablation.plan_runs(["none"], [0, 1], None, data_seeds=[3, 4])]
    assert names == ["none_seed0_data3", "none_seed0_data4", "none_seed1_data3", "none_seed1_data4"]


def test_reports_name_the_metric_the_runs_were_scored_with():
    from yolox_attn.ablation.report import metric_names, summary_markdown

    def runs(*metrics):
        return [{"evals": [{"epoch": 1, "metric": m, "ap50": 0.5, "ap": 0.3}]} for m in metrics]

    assert metric_names(runs("voc", "voc")) == ("VOC mAP@[.5:.95]", "VOC mAP50")
    assert metric_names([{"evals": [{"epoch": 1, "ap50": 0.5}]}]) == ("COCO AP", "COCO AP50")  # records without it
    with pytest.raises(ValueError, match=r"different metrics \['coco', 'voc'\]; compare like with like"):
        metric_names(runs("coco", "voc"))
    assert "AP is VOC mAP@[.5:.95], AP50 VOC mAP50" in summary_markdown([], "cmd", metric=metric_names(runs("voc")))

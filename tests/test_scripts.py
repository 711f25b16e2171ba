"""The shell scripts: the main job's steps (attention, earlier runs, pictures), and no pipe that
SIGPIPE can kill."""

import os
import re
import subprocess
import sys

import pytest

from conftest import ROOT

SCRIPTS = sorted((ROOT / "scripts").glob("*.sh"))


def _main_sh_part(start: str, end: str) -> str:
    text = (ROOT / "scripts" / "main.sh").read_text()
    i, j = text.index(start), text.index(end)
    return text[i:j]


def _shell_options() -> str:
    lines = (ROOT / "scripts" / "main.sh").read_text().splitlines()
    return next(line for line in lines if line.startswith("set -"))


def test_demo_input_step_survives_50_runs_and_picks_the_first_six(tmp_path):
    # As many images as the default val split, with the dataset's file names.
    val = tmp_path / "datasets" / "shapes" / "val2017"
    val.mkdir(parents=True)
    names = [f"{i:012d}.jpg" for i in range(1, 129)]
    for name in names:
        (val / name).write_bytes(b"x")
    step = _main_sh_part("# demo inputs", "# end demo inputs")
    script = (f"{_shell_options()}\n"
              f"for run in $(seq 1 50); do\n  OUT=out/$run\n{step}\ndone\n")
    proc = subprocess.run(["bash", "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    for run in range(1, 51):
        picked = sorted(p.name for p in (tmp_path / "out" / str(run) / "demo_inputs").iterdir())
        assert picked == names[:6], run


def test_demo_input_step_fails_clearly_without_images(tmp_path):
    step = _main_sh_part("# demo inputs", "# end demo inputs")
    proc = subprocess.run(["bash", "-c", f"{_shell_options()}\nOUT=out\n{step}"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1
    assert "no images in datasets/shapes/val2017/" in proc.stderr


def test_no_script_pipes_into_an_early_exiting_reader():
    # head/grep -q/-m close the pipe early; under pipefail the writer's SIGPIPE fails the script.
    early_exit = re.compile(r"\|\s*(head|grep\s+(-\w*q|-m)|sed\s+-n\s*'?\d+q)")
    offenders = [f"{path.name}:{n}: {line.strip()}"
                 for path in SCRIPTS
                 for n, line in enumerate(path.read_text().splitlines(), 1)
                 if not line.lstrip().startswith("#") and early_exit.search(line)]
    assert SCRIPTS and offenders == []


def test_earlier_run_step_keeps_every_earlier_run(tmp_path):
    out = tmp_path / "YOLOX_outputs" / "x"
    step = _main_sh_part("# earlier run", "# end earlier run")
    script = f"{_shell_options()}\nOUT={out}\n{step}"
    runs = {"1": "2026-01-02 03:04:05", "2": "2026-01-02 03:04:05", "3": "2026-02-03 04:05:06"}
    for run, when in runs.items():  # runs 1 and 2 wrote their files in the same second
        out.mkdir(parents=True, exist_ok=True)
        for name in ("best_ckpt.pth", "latest_ckpt.pth", "train_log.txt", "val_log.txt", "metrics.jsonl"):
            (out / name).write_text(f"run {run}")
            subprocess.run(["touch", "-d", when, str(out / name)], check=True)
        (out / "events.out").write_text("tensorboard's own file")
        proc = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0, proc.stderr
        assert sorted(p.name for p in out.iterdir()) == ["events.out", "previous"]
    kept = {p.name: (p / "train_log.txt").read_text() for p in (out / "previous").iterdir()}
    assert kept == {"2026-01-02_03-04-05": "run 1", "2026-01-02_03-04-05_2": "run 2", "2026-02-03_04-05-06": "run 3"}
    assert sorted(p.name for p in (out / "previous" / "2026-02-03_04-05-06").iterdir()) == [
        "best_ckpt.pth", "latest_ckpt.pth", "metrics.jsonl", "train_log.txt", "val_log.txt"]
    # A first run (nothing there) passes silently.
    proc = subprocess.run(["bash", "-c", f"{_shell_options()}\nOUT={tmp_path / 'new'}\n{step}"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and proc.stderr == ""


@pytest.mark.parametrize("attn, exp, opts, name", [
    ("cca", "yolox_nano_cca_shapes.py", "", "yolox_nano_cca_shapes"),  # its own exp file
    ("ca", "yolox_nano_cam_shapes.py", "attention ca", "yolox_nano_cam_shapes"),  # ca is cam: same folder
    ("simam", "yolox_nano_cam_shapes.py", "attention simam", "yolox_nano_simam_shapes"),  # renamed by the opt
])
def test_main_takes_every_registered_attention_and_follows_its_folder(attn, exp, opts, name):
    step = _main_sh_part("# attention:", "# end attention")
    script = f'{_shell_options()}\nPY={sys.executable}\nATTN={attn}\n{step}\necho "$EXP|${{ATTN_OPTS[*]}}|$NAME"'
    proc = subprocess.run(["bash", "-c", script], cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == f"exps/example/{exp}|{opts}|{name}"


def test_main_refuses_an_unknown_attention_naming_the_allowed():
    from yolox_attn.attention import attention_names

    step = _main_sh_part("# attention:", "# end attention")
    script = f"{_shell_options()}\nPY={sys.executable}\nATTN=nonlocl\n{step}\necho reached"
    proc = subprocess.run(["bash", "-c", script], cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.strip() == (f"ATTN=nonlocl: unknown attention 'nonlocl'; did you mean 'nonlocal'? "
                                   f"allowed: {attention_names()}")


def test_main_refuses_an_attention_in_opts(tmp_path):
    # It would rename the experiment away from the folder the job reads; ATTN= is the way.
    (tmp_path / "scripts").mkdir()
    (tmp_path / "scripts" / "main.sh").write_text((ROOT / "scripts" / "main.sh").read_text())
    env = {"PATH": "/usr/bin:/bin", "OPTS": "max_epoch 2 attention cca"}
    proc = subprocess.run(["bash", str(tmp_path / "scripts" / "main.sh")], env=env, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 2 and "choose the attention with ATTN=" in proc.stderr

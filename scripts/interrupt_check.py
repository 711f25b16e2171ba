"""Interrupt YOLOX's train tool the ways a cluster does and check what survives (docs/resume.md).

    python scripts/interrupt_check.py save-kills --out /tmp/ic/a -- -f exps/yolox_s_cam.py data_dir /tmp/shapes22 ...
    python scripts/interrupt_check.py epoch-kill --out /tmp/ic/b -- -f exps/example/yolox_nano_cam_shapes.py ...
    python scripts/interrupt_check.py term-mid-epoch --out /tmp/ic/c -- -f ... max_epoch 3

Everything after ``--`` goes to ``python -m yolox.tools.train -d 1`` (``-expn`` and ``output_dir``
are set here). ``save-kills``: SIGKILL the moment the "Save weights" line of ``latest_ckpt.pth``
appears (after the last iteration of epoch 2 on; ``print_interval 1``), ``--tries`` times, each
time checking that ``latest_ckpt.pth`` still loads.
``epoch-kill``: SIGKILL once the first evaluation is recorded, then ``--resume``. ``term-mid-epoch``:
SIGTERM at the ``--at``-th logged iteration of epoch 2, then ``--resume``. Both compare every
evaluation (total loss of its last iteration, AP, AP50) with an uninterrupted run of the same
command. The code under test is whatever ``python -m yolox.tools.train`` imports (PYTHONPATH).
"""

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import time
from typing import Callable, List, Optional, Tuple

import torch


def train(argv: List[str], out: str, name: str, resume: bool = False,
          when: Optional[Callable[[str, str], bool]] = None, sig: int = signal.SIGKILL) -> Tuple[int, float, List[str]]:
    """One train-tool process; ``sig`` to its process group once ``when(line, folder)`` holds. (exit
    status, seconds from the signal to the exit or None, output lines). A resumed run drops ``-c``: it reads its own
    latest checkpoint."""
    if resume and "-c" in argv:
        at = argv.index("-c")
        argv = argv[:at] + argv[at + 2:]
    cmd = [sys.executable, "-m", "yolox.tools.train", "-d", "1", "-expn", name, *(["--resume"] * resume),
           *argv, "output_dir", out]
    # its own process group, which gets the signal, DataLoader workers included, as from Slurm or a terminal
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1,
                            start_new_session=True)
    lines, sent = [], None
    for line in proc.stdout:
        lines.append(line.rstrip("\n"))
        if sent is None and when is not None and when(line, os.path.join(out, name)):
            os.killpg(proc.pid, sig)
            sent = time.time()
    code = proc.wait()
    return code, (time.time() - sent if sent else None), lines


def evals(folder: str) -> List[dict]:
    with open(os.path.join(folder, "metrics.jsonl")) as f:
        records = [json.loads(line) for line in f if line.strip()]
    return [{"epoch": r["epoch"], "total_loss": r["loss"].get("total_loss"), "ap": r["ap"], "ap50": r["ap50"]}
            for r in records if r["event"] == "eval"]


def readable(path: str) -> str:
    """Whether the checkpoint loads, and then the epoch it resumes at (the one being saved, or the
    one before if the kill interrupted that save)."""
    try:
        return f"loads (start_epoch {torch.load(path, map_location='cpu', weights_only=False)['start_epoch']})"
    except FileNotFoundError:
        return "missing"
    except Exception as err:  # noqa: BLE001 - any failure to load is the finding
        return f"unreadable ({os.path.getsize(path)} bytes: {type(err).__name__})"


def partial_files(folder: str) -> int:
    """Temporary files of atomic writes a kill cut short (hidden, beside their target)."""
    return sum(name.startswith(".") and name.endswith(".partial") for name in os.listdir(folder))


def save_kills(argv, out, tries):
    results = []
    for k in range(tries):
        name = f"kill{k}"
        state = {"epochs": 0}

        def at_save(line, folder, state=state):
            # the save right after the last iteration of epoch 2 on: latest_ckpt.pth's (YOLOX's after_epoch)
            done = re.search(r"epoch: (\d+)/\d+, iter: (\d+)/(\d+)", line)
            if done:
                state["epochs"] = int(done[1]) if done[2] == done[3] else 0
            return state["epochs"] >= 2 and "Save weights" in line
        code, _, _ = train(argv, out, name, when=at_save)
        folder = os.path.join(out, name)
        results.append({"try": k + 1, "exit": code, "partial files": partial_files(folder),
                        "latest_ckpt.pth": readable(os.path.join(folder, "latest_ckpt.pth"))})
        print(json.dumps(results[-1]), flush=True)
    ok = sum(r["latest_ckpt.pth"].startswith("loads") for r in results)
    print(f"save-kills: latest_ckpt.pth loads after {ok} of {tries} kills during a save")


def compare(argv, out, name, when, sig):
    code, _, lines = train(argv, out, "straight")
    assert code == 0, "\n".join(lines[-20:])
    code, seconds, lines = train(argv, out, name, when=when, sig=sig)
    stop_lines = lines[-3:]
    resumed, _, more = train(argv, out, name, resume=True)
    straight, interrupted = evals(os.path.join(out, "straight")), evals(os.path.join(out, name))
    print(json.dumps({"interrupted_exit": code, "seconds_to_exit": seconds and round(seconds, 1),
                      "last_lines": stop_lines, "resumed_exit": resumed}, indent=1))
    print(json.dumps({"uninterrupted": straight, "interrupted_and_resumed": interrupted}, indent=1))
    same = straight[-1:] == interrupted[-1:]
    print(f"{name}: final {'identical' if same else 'DIFFERENT'}: uninterrupted {straight[-1:]} vs "
          f"resumed {interrupted[-1:]}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("check", choices=["save-kills", "epoch-kill", "term-mid-epoch"])
    p.add_argument("--out", required=True, help="output_dir of the runs (a fresh folder)")
    p.add_argument("--tries", type=int, default=4, help="save-kills: kills (default 4)")
    p.add_argument("--at", type=int, default=2, help="term-mid-epoch: the logged iteration of epoch 2 (default 2)")
    args, rest = p.parse_known_args()
    argv = rest[1:] if rest[:1] == ["--"] else rest
    os.makedirs(args.out, exist_ok=True)
    if args.check == "save-kills":
        save_kills(argv, args.out, args.tries)
    elif args.check == "epoch-kill":
        compare(argv, args.out, "epoch_kill",
                lambda line, folder: os.path.isfile(os.path.join(folder, "metrics.jsonl")) and bool(evals(folder)),
                signal.SIGKILL)
    else:
        compare(argv, args.out, "term_mid_epoch",
                lambda line, folder: f"epoch: 2/" in line and f"iter: {args.at}/" in line, signal.SIGTERM)


if __name__ == "__main__":
    main()

"""Interrupt YOLOX's train tool the ways a cluster does and check what survives (docs/resume.md).

    python scripts/interrupt_check.py save-kills --out DIR -- -f exps/yolox_s_cam.py -b 4 [opts]
    python scripts/interrupt_check.py epoch-kill --out DIR [--repeat] -- -f EXP -b 8 [-c CKPT] [opts]
    python scripts/interrupt_check.py term-mid-epoch --out DIR [--at N] [--repeat] -- -f EXP ... [opts]

Everything after ``--`` goes to ``python -m yolox.tools.train -d 1`` (``-expn`` and ``output_dir``
are set here; the signals go to the run's whole process group, DataLoader workers included, as
Slurm's and a terminal's do). ``save-kills``: SIGKILL the moment the "Save weights" line of
``latest_ckpt.pth`` appears (after the last iteration of epoch 2 on; ``print_interval 1``),
``--tries`` times, each time checking that ``latest_ckpt.pth`` still loads. ``epoch-kill``:
SIGKILL once the first evaluation is recorded, then ``--resume``. ``term-mid-epoch``: SIGTERM at
the ``--at``-th logged iteration of epoch 2, then ``--resume``. Both compare every evaluation
(total loss of its last iteration, AP, AP50) with an uninterrupted run of the same command
(``--repeat``: two, to show what runs differ by without any interruption). The code under test is
whatever ``python -m yolox.tools.train`` imports: run it outside a checkout, with PYTHONPATH.
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
    """Temporary files of atomic writes a kill cut short (hidden, beside their target). Written out
    rather than imported from yolox_attn.atomic: the "before" runs use a checkout that lacks it."""
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


def compare(argv, out, name, when, sig, repeat=False):
    """An uninterrupted run (two with ``repeat``: what two runs differ by anyway, as on CUDA), one
    interrupted by ``sig`` once ``when`` holds and resumed; their evaluations side by side."""
    for straight in ["straight", "straight_again"][:1 + repeat]:
        code, _, lines = train(argv, out, straight)
        assert code == 0, "\n".join(lines[-20:])
    code, seconds, lines = train(argv, out, name, when=when, sig=sig)
    stop_lines = lines[-3:]
    resumed, _, _ = train(argv, out, name, resume=True)
    runs = {folder: evals(os.path.join(out, folder)) for folder in ["straight", "straight_again"][:1 + repeat]}
    runs["interrupted_and_resumed"] = evals(os.path.join(out, name))
    print(json.dumps({"interrupted_exit": code, "seconds_to_exit": seconds and round(seconds, 1),
                      "last_lines": stop_lines, "resumed_exit": resumed}, indent=1))
    print(json.dumps(runs, indent=1))
    straight, interrupted = runs["straight"], runs["interrupted_and_resumed"]
    same = straight[-1:] == interrupted[-1:]
    print(f"{name}: final {'identical' if same else 'DIFFERENT'}: uninterrupted {straight[-1:]} vs "
          f"resumed {interrupted[-1:]}" + (f"; again uninterrupted {runs['straight_again'][-1:]}" if repeat else ""))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("check", choices=["save-kills", "epoch-kill", "term-mid-epoch"])
    p.add_argument("--out", required=True, help="output_dir of the runs (a fresh folder)")
    p.add_argument("--tries", type=int, default=4, help="save-kills: kills (default 4)")
    p.add_argument("--at", type=int, default=2, help="term-mid-epoch: the logged iteration of epoch 2 (default 2)")
    p.add_argument("--repeat", action="store_true",
                   help="epoch-kill, term-mid-epoch: a second uninterrupted run, for the difference between runs "
                        "that no interruption causes (CUDA's nondeterminism)")
    args, rest = p.parse_known_args()
    argv = rest[1:] if rest[:1] == ["--"] else rest
    os.makedirs(args.out, exist_ok=True)
    if args.check == "save-kills":
        save_kills(argv, args.out, args.tries)
    elif args.check == "epoch-kill":
        compare(argv, args.out, "epoch_kill",
                lambda line, folder: os.path.isfile(os.path.join(folder, "metrics.jsonl")) and bool(evals(folder)),
                signal.SIGKILL, args.repeat)
    else:
        compare(argv, args.out, "term_mid_epoch",
                lambda line, folder: "epoch: 2/" in line and f"iter: {args.at}/" in line, signal.SIGTERM, args.repeat)


if __name__ == "__main__":
    main()

"""Every command in README.md's code blocks names a module, script and exp file that exist."""

import importlib.util
import re
from typing import Dict, List

from conftest import ROOT

FENCED = re.compile(r"^```[^\n]*\n(.*?)^```", re.S | re.M)
MODULE = re.compile(r"\bpython3?\s+-m\s+([\w.]+)")
SCRIPT = re.compile(r"\bbash\s+(\S+\.sh)\b")
EXP_FILE = re.compile(r"\s(?:-f|--exp_file)\s+(\S+\.py)\b")
SAVED_AS = re.compile(r"^```python\n# save as (\S+\.py)\n", re.M)  # exp files the README writes out


def commands(markdown: str) -> Dict[str, List[str]]:
    """The modules (``python -m X``), scripts (``bash X.sh``) and exp files (``-f X.py``) that the
    fenced code blocks of ``markdown`` name."""
    blocks = "\n".join(FENCED.findall(markdown))
    return {"module": MODULE.findall(blocks), "script": SCRIPT.findall(blocks), "exp": EXP_FILE.findall(blocks)}


def module_exists(name: str) -> bool:
    """Whether ``python -m name`` finds a module: ours in this checkout, others (YOLOX's tools)
    where the interpreter finds them."""
    if name == "yolox_attn" or name.startswith("yolox_attn."):
        path = ROOT.joinpath(*name.split("."))
        return path.with_suffix(".py").is_file() or (path / "__main__.py").is_file()
    try:
        return importlib.util.find_spec(name) is not None
    except ModuleNotFoundError:  # a missing parent package
        return False


def missing(markdown: str) -> List[str]:
    named = commands(markdown)
    return ([f"python -m {m}" for m in named["module"] if not module_exists(m)]
            + [f"bash {s}" for s in named["script"] if not (ROOT / s).is_file()]
            + [f"-f {e}" for e in named["exp"] if not (ROOT / e).is_file() and e not in SAVED_AS.findall(markdown)])


def test_readme_commands_name_what_exists():
    named = commands((ROOT / "README.md").read_text())
    assert "yolox.tools.train" in named["module"] and "yolox_attn.tools.eval" in named["module"]
    assert "scripts/main.sh" in named["script"]
    assert missing((ROOT / "README.md").read_text()) == []


def test_missing_modules_scripts_and_exps_are_found():
    text = "\n".join([
        "Prose is not checked: python -m yolox_attn.tools.gone",
        "```bash",
        "python -m yolox_attn.tools.make_shapes --out datasets/shapes   # exists",
        "python -m yolox.tools.train -f exps/yolox_s_cam.py -d 1   # both exist",
        ".venv/bin/python -m yolox_attn.tools.visualise -f exps/yolox_s_typo.py",
        "ATTN=ca bash scripts/main.sh && bash scripts/mian.sh",
        "python -m yolox.tools.nope; python -m nowhere.tool",
        "python -m yolox.tools.train -f exps/mine.py; python -m yolox.tools.train -f exps/yours.py",
        "```",
        "```python",
        "# save as exps/mine.py",
        "```",
    ])
    assert missing(text) == ["python -m yolox_attn.tools.visualise", "python -m yolox.tools.nope",
                             "python -m nowhere.tool", "bash scripts/mian.sh", "-f exps/yolox_s_typo.py",
                             "-f exps/yours.py"]


def _section(title: str) -> str:
    text = (ROOT / "README.md").read_text()
    return text.split(f"## {title}\n", 1)[1].split("\n## ", 1)[0]


def _labeling_tool_export(root, tmp_path):
    """The shapes data as a labeling tool exports COCO: 3 classes with ids 7/9/12 and their own
    names, images/{train,val}/, annotations/{train,val}.json."""
    import json
    import shutil

    from yolox_attn.data.shapes import make_shapes

    make_shapes(tmp_path / "shapes", train=8, val=4, size=128, seed=3)
    ids = {1: (7, "bolt"), 2: (9, "nut"), 3: (12, "washer")}
    for split in ("train", "val"):
        data = json.loads((tmp_path / "shapes" / "annotations" / f"instances_{split}2017.json").read_text())
        data["annotations"] = [{**a, "category_id": ids[a["category_id"]][0]}
                               for a in data["annotations"] if a["category_id"] in ids]
        data["categories"] = [{"id": i, "name": name, "supercategory": "part"} for i, name in ids.values()]
        (root / "annotations").mkdir(parents=True, exist_ok=True)
        (root / "annotations" / f"{split}.json").write_text(json.dumps(data))
        shutil.copytree(tmp_path / "shapes" / f"{split}2017", root / "images" / split)


def test_readme_your_own_dataset_runs(tmp_path):
    import subprocess
    import sys

    section = _section("Your own dataset")
    for block in re.findall(r"```python\n(.*?)```", section, flags=re.S):
        (saved_as,) = re.findall(r"^# save as (\S+)", block)
        (tmp_path / saved_as).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / saved_as).write_text(block)
    _labeling_tool_export(tmp_path / "datasets" / "my_parts", tmp_path)
    # the README's commands, on a YOLOX-nano-sized model at 128 px for one epoch
    tiny = ["depth", "0.33", "width", "0.25", "input_size", "(128,128)", "test_size", "(128,128)",
            "multiscale_range", "0", "max_epoch", "1", "data_num_workers", "0", "mosaic_prob", "0.0", "mixup_prob", "0.0"]
    outputs = []
    for block in re.findall(r"```bash\n(.*?)```", section, flags=re.S):
        for line in block.splitlines():
            args = line.split("#")[0].split()
            assert args[:2] == ["python", "-m"], line
            extra = ["--train", "8", "--val", "4", "--size", "128"] if args[2].endswith("make_shapes") else tiny
            proc = subprocess.run([sys.executable, *args[1:], *extra], cwd=tmp_path, capture_output=True, text=True,
                                  timeout=900)
            assert proc.returncode == 0, (line, (proc.stdout + proc.stderr)[-3000:])
            outputs.append(proc.stdout + proc.stderr)
    coco_eval, voc_eval = outputs[1], outputs[-1]
    assert re.search(r"\| bolt +\| [0-9.]+ +\| nut +\| [0-9.]+ +\| washer", coco_eval)  # the data's names
    assert re.search(r"^COCO AP: [0-9.]+, COCO AP50: [0-9.]+$", coco_eval, re.M)
    assert re.search(r"^VOC mAP@\[\.5:\.95\]: [0-9.]+, VOC mAP50: [0-9.]+$", voc_eval, re.M)

"""Every command in README.md's code blocks names a module, script and exp file that exist."""

import importlib.util
import re
from typing import Dict, List

from conftest import ROOT

FENCED = re.compile(r"^```[^\n]*\n(.*?)^```", re.S | re.M)
MODULE = re.compile(r"\bpython3?\s+-m\s+([\w.]+)")
SCRIPT = re.compile(r"\bbash\s+(\S+\.sh)\b")
EXP_FILE = re.compile(r"\s(?:-f|--exp_file)\s+(\S+\.py)\b")


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
            + [f"-f {e}" for e in named["exp"] if not (ROOT / e).is_file()])


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
        "```",
    ])
    assert missing(text) == ["python -m yolox_attn.tools.visualise", "python -m yolox.tools.nope",
                             "python -m nowhere.tool", "bash scripts/mian.sh", "-f exps/yolox_s_typo.py"]

"""Importing yolox_attn without YOLOX says how to install it."""

import subprocess
import sys

from conftest import ROOT

# Hide yolox from the import system, as on a machine where it was never installed.
_WITHOUT_YOLOX = """
import sys
class _NoYolox:
    def find_spec(self, name, path=None, target=None):
        if name == "yolox" or name.startswith("yolox."):
            raise ModuleNotFoundError(f"No module named {name!r}")
        return None
sys.meta_path.insert(0, _NoYolox())
import yolox_attn
"""


def test_import_without_yolox_explains_the_install():
    proc = subprocess.run([sys.executable, "-c", _WITHOUT_YOLOX], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0
    assert "ImportError" in proc.stderr
    assert "bash scripts/setup.sh" in proc.stderr and "--no-deps --no-build-isolation yolox==0.3.0" in proc.stderr

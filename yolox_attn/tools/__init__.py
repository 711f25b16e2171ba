"""The command-line tools (``python -m yolox_attn.tools.<name>``).

The benchmark tools that were merged into ``bench`` still answer to their old names, with one
line that gives the new spelling: ``python -m`` reports an import error's message on one line
and exits 1.
"""

import sys
from typing import Optional

RETIRED = {
    "bench_modules": "python -m yolox_attn.tools.bench modules (attention modules alone; the comparison with "
                     "the common implementations is in docs/benchmarks.md)",
    "bench_ccnet": "python -m yolox_attn.tools.bench modules --attentions nonlocal,cca --channels 512 "
                   "--sides 17,33,49,65,97",
    "profile_ops": "python -m yolox_attn.tools.bench profile (same options)",
}


class _RetiredTools:
    """Import hook consulted last: a retired tool's name raises ModuleNotFoundError naming its successor."""

    @staticmethod
    def find_spec(name: str, path: Optional[object] = None, target: Optional[object] = None) -> None:
        package, _, tool = name.rpartition(".")
        if package == __name__ and tool in RETIRED:
            raise ModuleNotFoundError(f"{name} was merged into the bench tool: run {RETIRED[tool]}", name=name)


if not any(isinstance(finder, _RetiredTools) for finder in sys.meta_path):
    sys.meta_path.append(_RetiredTools())

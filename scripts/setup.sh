#!/usr/bin/env bash
# Creates .venv/ at the repository root with torch, the official YOLOX 0.3.0 and yolox-attn.
# TORCH_SPEC overrides the torch pins (e.g. a CUDA build elsewhere); PYTHON the interpreter.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
TORCH_SPEC=${TORCH_SPEC:-"torch==2.14.1 torchvision==0.29.1"}

[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
pip() { .venv/bin/python -m pip --disable-pip-version-check -q "$@"; }
echo "[setup] pip, setuptools, wheel" >&2
pip install --upgrade pip setuptools wheel
echo "[setup] $TORCH_SPEC" >&2
# shellcheck disable=SC2086
pip install $TORCH_SPEC
echo "[setup] yolox-attn (editable) with YOLOX's runtime, test and deploy (OpenVINO) dependencies" >&2
pip install -e ".[test,deploy]"
# YOLOX builds a C++ extension against the installed torch and pins onnx==1.8.1 /
# onnxruntime==1.8.0, which no current Python installs: build it here, without its deps. It comes
# last because pip checks an installed package's pins whenever one of its dependencies is
# installed after it, and would print a resolver ERROR about yolox's unused pins.
if ! .venv/bin/python -c "import yolox, sys; sys.exit(yolox.__version__ != '0.3.0')" 2>/dev/null; then
    echo "[setup] yolox==0.3.0 (no deps, no build isolation)" >&2
    pip install --no-deps --no-build-isolation yolox==0.3.0
fi
.venv/bin/python -c "import yolox_attn, yolox, torch; print(f'[setup] ready: torch {torch.__version__}, yolox {yolox.__version__}, yolox-attn {yolox_attn.__version__}')"

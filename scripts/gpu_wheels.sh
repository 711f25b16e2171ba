#!/usr/bin/env bash
# Fills .whl/ with the wheels scripts/gpu_check.sh installs on a CUDA machine that has its own
# torch but no network and no YOLOX: a pure-Python build of yolox==0.3.0 (its optional C++ COCO
# eval op left out: it would have to match that machine's torch; YOLOX compiles it on first use,
# with ninja, or gpu_check.sh falls back to pycocotools) and YOLOX's runtime dependencies for the target
# Python. .whl/if-missing/ holds what the machine may already have (torchvision, numpy, ninja, pytest; opencv with
# GPU_OPENCV=1, a 50 MiB wheel that does not fit the 60 MiB a device run carries next to the rest);
# gpu_check.sh installs those only when they cannot be imported there. This package itself runs
# from the working tree (PYTHONPATH), so it needs no wheel.
#   bash scripts/gpu_wheels.sh        # GPU_PYTHON=3.12 GPU_TORCHVISION=0.26.0 (torch 2.11's) by default
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
[ -x "$PY" ] || PY=python3
if ! "$PY" -c "import torch" 2>/dev/null; then
    echo "[gpu_wheels] $PY has no torch, which yolox's setup.py imports: run bash scripts/setup.sh first (or set PYTHON)" >&2
    exit 1
fi
GPU_PYTHON=${GPU_PYTHON:-3.12}
GPU_TORCHVISION=${GPU_TORCHVISION:-0.26.0}
LIMIT_MIB=60
pip() { "$PY" -m pip --disable-pip-version-check -q "$@"; }

rm -rf .whl
mkdir -p .whl/if-missing
target=(--no-deps --only-binary=:all: --implementation cp --python-version "$GPU_PYTHON"
        --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux_2_28_x86_64)
echo "[gpu_wheels] YOLOX's runtime dependencies for Python $GPU_PYTHON" >&2
# tensorboard without its server (grpcio, data server): torch's SummaryWriter needs only it and protobuf.
pip download -d .whl "${target[@]}" loguru "pycocotools>=2.0.2" thop tabulate tqdm tensorboard protobuf
echo "[gpu_wheels] if missing there: torchvision==$GPU_TORCHVISION, numpy, ninja, pytest" >&2
pip download -d .whl/if-missing "${target[@]}" "torchvision==$GPU_TORCHVISION" numpy ninja pytest pluggy iniconfig packaging pygments
if [ "${GPU_OPENCV:-0}" = 1 ]; then
    pip download -d .whl/if-missing "${target[@]}" opencv-python-headless
fi

echo "[gpu_wheels] yolox==0.3.0 as a pure-Python wheel (sdist built without its C++ op)" >&2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# The sdist's setup.py imports torch, hence no build isolation (the local torch is only read).
pip download --no-deps --no-binary :all: --no-build-isolation -d "$tmp" yolox==0.3.0
tar -xzf "$tmp"/yolox-0.3.0.tar.gz -C "$tmp"
setup="$tmp/yolox-0.3.0/setup.py"
grep -q "ext_modules=get_ext_modules()," "$setup" || { echo "[gpu_wheels] yolox's setup.py changed: cannot drop its C++ op" >&2; exit 1; }
sed -i 's/ext_modules=get_ext_modules(),/ext_modules=[],/' "$setup"
pip wheel --no-deps --no-build-isolation -w .whl "$tmp/yolox-0.3.0"
ls .whl/yolox-0.3.0-py3-none-any.whl >/dev/null

size=$(du -sm .whl | cut -f1)
ls -1 .whl .whl/if-missing >&2
if [ "$size" -gt "$LIMIT_MIB" ]; then
    echo "[gpu_wheels] .whl/ is $size MiB, over the $LIMIT_MIB MiB a device run may carry" >&2
    exit 1
fi
echo "[gpu_wheels] .whl/ ready: $size MiB"

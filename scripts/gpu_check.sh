#!/usr/bin/env bash
# The project's CUDA check, one command on a CUDA machine (under 9 minutes on one H200):
#   1. the test suite's CUDA cases (tests/test_cuda.py: every module on CUDA against the CPU, fp16
#      autocast finite) and the fp16 scalar-gradient tests;
#   2. for cam, cca and acmix: python -m yolox.tools.train -f exps/yolox_s_<a>.py -d 1 -b 16 --fp16
#      max_epoch 1, on a generated COCO-layout shapes dataset at 640 px;
#   3. YOLOX's own python -m yolox.tools.eval on each result, and ours (yolox_attn.tools.eval);
#   4. the bench tool on CUDA (fp16 autocast), YOLOX-s at 640.
# Writes a JSON summary to $OUT/gpu_check.json if OUT is set, else YOLOX_outputs/gpu_check.json,
# with each step's command, exit status, seconds, figures and log tail (full logs beside it).
# Uses the machine's python3 and torch. If .whl/ exists (scripts/gpu_wheels.sh), its wheels are
# installed into /tmp/site without network, and .whl/if-missing/ ones only when not importable.
#   bash scripts/gpu_check.sh
set -uo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
PY=${PYTHON:-python3}
START=$(date +%s)
BUDGET_S=${GPU_CHECK_BUDGET_S:-510}  # stop starting steps after 8.5 minutes

if ! "$PY" -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null; then
    echo "gpu_check: no CUDA device visible to $PY's torch (or no torch): this check needs a CUDA machine" >&2
    exit 2
fi

if [ -d .whl ]; then
    SITE=/tmp/site
    "$PY" -m pip install -q --no-index --no-deps --no-compile --upgrade --target "$SITE" .whl/*.whl || exit 1
    for w in .whl/if-missing/*.whl; do
        [ -e "$w" ] || continue
        dist=$(basename "$w" | cut -d- -f1 | tr 'A-Z' 'a-z')
        case "$dist" in opencv_python*) mod=cv2 ;; *) mod=$dist ;; esac
        if ! "$PY" -c "import $mod" 2>/dev/null; then
            echo "gpu_check: installing $(basename "$w") ($mod is missing)" >&2
            "$PY" -m pip install -q --no-index --no-deps --no-compile --upgrade --target "$SITE" "$w" || exit 1
        fi
    done
    export PYTHONPATH="$REPO:$SITE${PYTHONPATH:+:$PYTHONPATH}"
else
    export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}"
fi
missing=$("$PY" -c "
import importlib.util as u
print(' '.join(m for m in ('yolox', 'loguru', 'pycocotools', 'thop', 'tabulate', 'tqdm', 'cv2', 'torchvision',
                           'tensorboard', 'pytest') if u.find_spec(m) is None))")
if [ -n "$missing" ]; then
    echo "gpu_check: missing Python modules: $missing (run scripts/gpu_wheels.sh where there is network and carry .whl/)" >&2
    exit 1
fi

WORK=$(mktemp -d /tmp/gpu_check.XXXXXX)
SUMMARY=${OUT:+$OUT/gpu_check.json}
SUMMARY=${SUMMARY:-$REPO/YOLOX_outputs/gpu_check.json}
mkdir -p "$(dirname "$SUMMARY")" "$WORK/logs"
DATA=$WORK/shapes
export YOLOX_DATADIR=$WORK  # nothing reads datasets/COCO by accident
: >"$WORK/steps.tsv"

# step NAME TIMEOUT_S CMD...: runs CMD with a time limit, records name, status, seconds, log file.
step() {
    local name=$1 limit=$2
    shift 2
    local now=$(( $(date +%s) - START ))
    if [ "$now" -ge "$BUDGET_S" ]; then
        printf '%s\tskipped\t0\t%s\t%s\n' "$name" "-" "$*" >>"$WORK/steps.tsv"
        echo "gpu_check: $name skipped (time budget spent)" >&2
        return 1
    fi
    [ $(( now + limit )) -gt "$BUDGET_S" ] && limit=$(( BUDGET_S - now + 30 ))
    echo "gpu_check: $name ..." >&2
    local t0=$(date +%s)
    timeout "$limit" "$@" >"$WORK/logs/$name.log" 2>&1
    local rc=$?
    printf '%s\t%s\t%s\t%s\t%s\n' "$name" "$rc" "$(( $(date +%s) - t0 ))" "$WORK/logs/$name.log" "$*" >>"$WORK/steps.tsv"
    echo "gpu_check: $name exit $rc" >&2
    return "$rc"
}

"$PY" -c "import torch; print(torch.__version__, torch.version.cuda, torch.cuda.get_device_name(0))" >"$WORK/device.txt" 2>&1
# YOLOX's COCOEvaluator uses its C++ COCO-eval op, which the wheel from gpu_wheels.sh leaves out:
# YOLOX JIT-compiles it on first use (ninja, a C++ compiler, Python headers). Where that fails,
# a sitecustomize points YOLOX at pycocotools' COCOeval, as YOLOX does when the op is not importable
# (same AP, slower).
if ! step cocoeval_op 180 "$PY" -c "from yolox.layers import FastCOCOEvalOp; FastCOCOEvalOp().load()"; then
    mkdir -p "$WORK/fallback"
    cat >"$WORK/fallback/sitecustomize.py" <<'PYEOF'
import yolox.layers
from pycocotools.cocoeval import COCOeval

yolox.layers.COCOeval_opt = COCOeval  # gpu_check.sh: YOLOX's C++ op could not be built here
PYEOF
    export PYTHONPATH="$WORK/fallback:$PYTHONPATH"
    echo "gpu_check: YOLOX's C++ COCO-eval op could not be built; evaluating with pycocotools' COCOeval" >&2
fi
step tests_cuda 150 "$PY" -m pytest -q -rs -p no:cacheprovider tests/test_cuda.py tests/test_fp16_scalars.py
step dataset 60 "$PY" -m yolox_attn.tools.make_shapes --out "$DATA" --train 128 --val 32 --size 640 --seed 0
COMMON=(data_dir "$DATA" output_dir "$WORK/out" data_num_workers 4)
for a in cam cca acmix; do
    exp=exps/yolox_s_$a.py
    if step "train_$a" 150 "$PY" -m yolox.tools.train -f "$exp" -d 1 -b 16 --fp16 max_epoch 1 eval_interval 1 \
            print_interval 2 "${COMMON[@]}"; then
        ckpt=$WORK/out/yolox_s_$a/latest_ckpt.pth  # best_ckpt.pth is only written for an AP above 0
        step "yolox_eval_$a" 60 "$PY" -m yolox.tools.eval -f "$exp" -c "$ckpt" -b 16 -d 1 --fp16 --conf 0.001 "${COMMON[@]}"
        step "ours_eval_$a" 60 "$PY" -m yolox_attn.tools.eval -f "$exp" -c "$ckpt" -b 16 -d 1 --fp16 --conf 0.001 "${COMMON[@]}"
    fi
done
step bench 120 "$PY" -m yolox_attn.tools.bench --size s --tsize 640 --device cuda --repeats 10 --json

"$PY" - "$WORK" "$SUMMARY" "$(( $(date +%s) - START ))" <<'PYEOF'
import json, os, re, sys
work, summary, total = sys.argv[1], sys.argv[2], int(sys.argv[3])
AP = re.compile(r"Average Precision\s+\(AP\) @\[ IoU=(0\.50:0\.95|0\.50)\s+\| area=\s*all \| maxDets=100 \] = ([0-9.]+)")
steps = []
for line in open(f"{work}/steps.tsv"):
    name, rc, secs, log, cmd = line.rstrip("\n").split("\t", 4)
    text = open(log, errors="replace").read() if log != "-" else ""
    entry = {"step": name, "command": cmd, "exit": None if rc == "skipped" else int(rc),
             "ok": rc == "0" or name == "cocoeval_op", "seconds": int(secs), "log_tail": text.strip().splitlines()[-15:]}
    found = {iou: float(v) for iou, v in AP.findall(text)}
    if found:
        entry["AP50_95"], entry["AP50"] = found.get("0.50:0.95"), found.get("0.50")
    if name == "tests_cuda":
        entry["pytest"] = next((l for l in reversed(text.splitlines()) if " passed" in l or " failed" in l), None)
    if name == "bench" and rc == "0":
        try:
            start = re.search(r"^\[\s*$", text, re.M)  # the JSON list, after the progress lines
            entry["rows"] = json.loads(text[start.start():text.rindex("]") + 1])
        except (AttributeError, ValueError):
            pass
    steps.append(entry)
result = {"device": open(f"{work}/device.txt").read().strip(), "seconds": total,
          "cocoeval": "pycocotools (fallback)" if os.path.exists(f"{work}/fallback") else "yolox C++ op",
          "ok": all(s["ok"] for s in steps), "steps": steps}
with open(summary, "w") as f:
    json.dump(result, f, indent=1)
print(f"gpu_check: {'all steps passed' if result['ok'] else 'some steps FAILED'} in {total} s; summary {summary}")
PYEOF
tar -czf "$(dirname "$SUMMARY")/gpu_check_logs.tar.gz" -C "$WORK" logs device.txt steps.tsv 2>/dev/null
"$PY" -c "import json, sys; sys.exit(0 if json.load(open('$SUMMARY'))['ok'] else 1)"

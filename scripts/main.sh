#!/usr/bin/env bash
# The main job, on any machine (CPU or CUDA): set-up, the generated shapes dataset, YOLOX-nano
# with attention trained by YOLOX's own train tool, COCO evaluation, detection and attention
# pictures. ATTN picks the attention: any registered name (`python -m yolox_attn.tools.bench
# --list`; default cam); BATCH the batch size (8); OPTS extra exp options for the train tool
# (e.g. OPTS="max_epoch 2" for a quick check).
set -euo pipefail
cd "$(dirname "$0")/.."
ATTN=${ATTN:-cam}
BATCH=${BATCH:-8}
# "attention X" in OPTS would rename the experiment (and its folder) after X, away from $OUT below.
case " ${OPTS:-} " in *" attention "*) echo "OPTS: choose the attention with ATTN=..., not OPTS" >&2; exit 2 ;; esac
PY=.venv/bin/python

bash scripts/setup.sh
# attention: its own exp file where there is one, else the cam exp with "attention $ATTN" as an
# opt, which names the experiment (and its output folder) after the attention. The name is read
# from the exp as the tools will merge it; an unknown attention exits 2 naming the allowed ones.
EXP=exps/example/yolox_nano_${ATTN}_shapes.py
ATTN_OPTS=()
if [ ! -f "$EXP" ]; then
    EXP=exps/example/yolox_nano_cam_shapes.py
    ATTN_OPTS=(attention "$ATTN")
fi
NAME=$($PY -c '
import sys
from yolox_attn.attention import canonical_name
from yolox_attn.preflight import load_exp
exp = load_exp(sys.argv[1])
exp.merge(sys.argv[2:])
try:
    canonical_name(exp.attention)
except ValueError as err:
    print(f"ATTN={exp.attention}: {err}", file=sys.stderr)
    sys.exit(2)
print(exp.exp_name)
' "$EXP" "${ATTN_OPTS[@]}")
# end attention
OUT=YOLOX_outputs/$NAME
echo "[main] attention $ATTN: $EXP ${ATTN_OPTS[*]}, outputs in $OUT/" >&2

if [ ! -f datasets/shapes/annotations/instances_val2017.json ]; then
    $PY -m yolox_attn.tools.make_shapes --out datasets/shapes
fi

# earlier run: a stale best_ckpt.pth would be evaluated as this run's, and YOLOX appends to its
# logs, so this run's train_log.txt / val_log.txt would start with the earlier run's tables. Each
# earlier run is kept in previous/<the time its first file was written>/.
earlier=()
for f in "$OUT"/*_ckpt.pth "$OUT"/train_log.txt "$OUT"/val_log.txt "$OUT"/metrics.jsonl; do
    if [ -e "$f" ]; then earlier+=("$f"); fi
done
if [ ${#earlier[@]} -gt 0 ]; then
    stamp=$(date -r "${earlier[0]}" +%Y-%m-%d_%H-%M-%S)
    dest=$OUT/previous/$stamp
    n=1
    while [ -e "$dest" ]; do n=$((n + 1)); dest=$OUT/previous/${stamp}_$n; done
    echo "[main] moving the checkpoints and logs of an earlier run to $dest/" >&2
    mkdir -p "$dest" && mv "${earlier[@]}" "$dest/"
fi
# end earlier run
start=$(date +%s)
# shellcheck disable=SC2086
$PY -m yolox.tools.train -f "$EXP" -d 1 -b "$BATCH" "${ATTN_OPTS[@]}" ${OPTS:-}
echo "[main] training took $(( $(date +%s) - start )) s" >&2
CKPT=$OUT/best_ckpt.pth
[ -f "$CKPT" ] || CKPT=$OUT/latest_ckpt.pth
# Any failure ends the train tool with exit 1 (set -e stops here); a run that still wrote no
# checkpoint is named rather than passed on to the eval tool.
[ -f "$CKPT" ] || { echo "[main] training wrote no checkpoint; see $OUT/train_log.txt" >&2; exit 1; }

$PY -m yolox_attn.tools.eval -f "$EXP" -c "$CKPT" -b "$BATCH" -d 1 --conf 0.001 "${ATTN_OPTS[@]}"

# demo inputs: the first 6 val images. No pipe: under pipefail, `ls | head` fails with 141 whenever
# head exits before ls has written everything (SIGPIPE).
mkdir -p "$OUT/demo_inputs"
shopt -s nullglob
val_images=(datasets/shapes/val2017/*.jpg)
shopt -u nullglob
[ ${#val_images[@]} -gt 0 ] || { echo "[main] no images in datasets/shapes/val2017/" >&2; exit 1; }
cp "${val_images[@]:0:6}" "$OUT/demo_inputs/"
# end demo inputs
$PY -m yolox_attn.tools.demo image -f "$EXP" -c "$CKPT" --path "$OUT/demo_inputs" --conf 0.3 \
    --save_result --attention-maps --output-dir "$OUT/pictures" "${ATTN_OPTS[@]}"
echo "[main] this run's COCO AP table: $OUT/val_log.txt (training log: $OUT/train_log.txt); detection and attention pictures: $OUT/pictures/" >&2

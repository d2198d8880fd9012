#!/usr/bin/env bash
# The GPU session: one prepared command for a 15-minute GPU loan (docs/gpu_session.md).
#
#   bash benchmarks/gpu_session.sh [--dry-run] [--stages 1,2,2c,3,4,5] OUTDIR
#
# Stages (each stops itself at its budget; the summary is written whatever happened):
#   1  install the kit offline (pip --no-index --no-deps --target), record the environment, import every
#      module a session or kit user imports first (benchmarks/gpu_env_check.py)
#   2  the GPU test tier but torch.compile (pytest -m gpu tests/test_gpu.py; FAISS: kit part2)
#   2c the tier's torch.compile test (needs part1 only)
#   3  speed: train.py vs timm's train.py (ResNet-50, 224 px, bf16, channels-last, synthetic data);
#      embedding extraction vs a bare forward
#   4  results: experiment=fmnist_best_h200 and fmnist_retrieval_h200, evaluate.py, fashionlab record
#   5  OUTDIR: summary.json, summary.md, env.txt, logs.tar.gz, records.tar.gz
# With a kit split in two (make gpu-kit says so), run `--stages 1,2c,3` carrying gpu_kit/part1, then
# `--stages 1,2,4,5` carrying gpu_kit/part2: stage 1 installs the parts present, and the stage results
# of the first command wait in .gpu_site/work on the warm machine. Every stage's time limit is its budget,
# cut to what is left of the command's window (GPU_SESSION_WINDOW seconds, default 570: a 10-minute command
# less 30 s); a stage with nothing left is skipped (exit 124), and the summary is always written.
# --dry-run: the same stages on this CPU at toy size (one recipe, a few steps each); the kit is built offline
# (this project's wheel and a 600 + 200 item Fashion-MNIST, benchmarks/gpu_kit.py --local) and installed into
# a clean target beside OUTDIR (OUTDIR.site), against the system torch. FASHION_MNIST_DIR=<folder> picks the
# data (default: data/, the system's).
set -u
DRY=0
STAGES="1,2,2c,3,4,5"
while [ $# -gt 0 ]; do
  case "$1" in
    --dry-run) DRY=1; shift ;;
    --stages) STAGES="$2"; shift 2 ;;
    -h|--help) sed -n '2,24p' "$0"; exit 0 ;;
    *) break ;;
  esac
done
[ $# -eq 1 ] || { echo "usage: bash benchmarks/gpu_session.sh [--dry-run] [--stages LIST] OUTDIR" >&2; exit 2; }
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
mkdir -p "$1"
OUT=$(cd "$1" && pwd)
PY=${PYTHON:-python3}
if [ "$DRY" = 1 ]; then
  SITE=${GPU_SITE:-$OUT.site}
  KIT=${GPU_KIT:-$SITE/kit}
else
  SITE=${GPU_SITE:-$ROOT/.gpu_site}
  KIT=${GPU_KIT:-$ROOT/gpu_kit}
fi
WORK=$SITE/work
LOGS=$WORK/logs
mkdir -p "$LOGS" "$SITE/lib"
export PYTHONPATH="$SITE/lib${PYTHONPATH:+:$PYTHONPATH}"
export PATH="$SITE/lib/bin:$PATH"
export PYTHONUNBUFFERED=1 WANDB_MODE=offline WANDB_SILENT=true HF_HUB_OFFLINE=1 PROJECT_ROOT="$ROOT"
DATA=$SITE/data/fashion-mnist
SESSION_START=$(date +%s)
WINDOW=${GPU_SESSION_WINDOW:-570}
SUMMARY_RESERVE=10  # seconds kept for stage 5 at the end of the window

has_stage() { case ",$STAGES," in *",$1,"*) return 0 ;; *) return 1 ;; esac; }
elapsed() { echo $(( $(date +%s) - SESSION_START )); }
# stage NAME BUDGET_S COMMAND...: run with a time limit, log to $LOGS/NAME.log, record status and time
stage() {
  local name=$1 budget=$2; shift 2
  local t0; t0=$(date +%s)
  local left=$(( WINDOW - SUMMARY_RESERVE - $(elapsed) ))
  [ "$left" -lt "$budget" ] && budget=$left
  if [ "$budget" -le 0 ]; then
    echo "{\"stage\": \"$name\", \"rc\": 124, \"seconds\": 0, \"budget_s\": 0}" >>"$WORK/stages.jsonl"
    echo "== $name: skipped, nothing left of the ${WINDOW}s window"
    return 124
  fi
  echo "== $name (budget ${budget}s, session at $(elapsed)s)"
  timeout --kill-after=5 "$budget" bash -c '"$@"' _ "$@" >"$LOGS/$name.log" 2>&1
  local rc=$?
  local took=$(( $(date +%s) - t0 ))
  echo "{\"stage\": \"$name\", \"rc\": $rc, \"seconds\": $took, \"budget_s\": $budget}" >>"$WORK/stages.jsonl"
  echo "   $name: exit $rc in ${took}s$([ $rc = 124 ] && echo ' (stopped at its budget)')"
  tail -n 3 "$LOGS/$name.log" | sed 's/^/   | /'
  return $rc
}

install_kit() {
  if [ "$DRY" = 1 ] && [ ! -d "$KIT/part1" ]; then
    "$PY" benchmarks/gpu_kit.py --local --out "$KIT" --limit-mib 1024 ${FASHION_MNIST_DIR:+--data "$FASHION_MNIST_DIR"} || return 1
  fi
  local part found=0
  for part in "$KIT"/part*; do
    [ -d "$part" ] || continue
    found=1
    local name; name=$(basename "$part")
    if [ -f "$SITE/.installed-$name" ]; then echo "$name: installed already"; continue; fi
    if compgen -G "$part/wheels/*.whl" >/dev/null; then
      "$PY" -m pip install -q --no-index --no-deps --upgrade --target "$SITE/lib" "$part"/wheels/*.whl || return 1
    fi
    if compgen -G "$part/reference/*.whl" >/dev/null; then
      "$PY" -m pip install -q --no-index --no-deps --upgrade --target "$SITE/timm_ref" "$part"/reference/*.whl || return 1
    fi
    if [ -d "$part/data/fashion-mnist" ]; then
      mkdir -p "$DATA"
      "$PY" - "$part/data/fashion-mnist" "$DATA" <<'EOF' || return 1
import gzip, lzma, shutil, sys
from pathlib import Path
src, dst = Path(sys.argv[1]), Path(sys.argv[2])
for f in sorted(src.iterdir()):
    if f.suffix == ".xz":  # the kit's xz copy of a .gz file: restore the .gz the reader expects
        (dst / (f.stem + ".gz")).write_bytes(gzip.compress(lzma.decompress(f.read_bytes()), compresslevel=1))
    else:
        shutil.copy2(f, dst / f.name)
print("data:", ", ".join(sorted(p.name for p in dst.iterdir())))
EOF
    fi
    cp "$part/manifest.json" "$SITE/manifest.json" 2>/dev/null
    touch "$SITE/.installed-$name"
    echo "$name: installed"
  done
  [ "$found" = 1 ] || { echo "no kit in $KIT (make gpu-kit)"; return 1; }
  # the environment, and every module a session or a kit user imports first (readers, cache) with the
  # kit's left-out packages absent (benchmarks/gpu_env_check.py); an import error fails the stage
  "$PY" benchmarks/gpu_env_check.py "$SITE" || return 1
  "$PY" -c 'import json, sys; sys.exit(1 if json.load(open(sys.argv[1]))["import_errors"] else 0)' "$WORK/env.json"
}

# gpu_tests WHICH: the tier but its torch.compile test (tests), or that test only (compile)
gpu_tests() {
  local select="not compiled" xml=$WORK/gpu_tests.xml
  [ "$1" = compile ] && { select="compiled"; xml=$WORK/gpu_compile.xml; }
  "$PY" -m pytest -m gpu tests/test_gpu.py -k "$select" -q -p no:cacheprovider -o addopts="" --junitxml "$xml"
}

speed() {
  local ref=()
  [ -d "$SITE/timm_ref" ] && ref=(--timm-pythonpath "$SITE/timm_ref")
  if [ "$DRY" = 1 ]; then
    "$PY" benchmarks/gpu_speed.py --out "$WORK/speed" --device cpu --model test_resnet --image-size 32 \
      --batch-size 16 --steps 5 --warmup 2 --workers 0 --num-classes 10 --distinct 8 --embed-batches 2 "${ref[@]}"
  else
    "$PY" benchmarks/gpu_speed.py --out "$WORK/speed" --device cuda --model resnet50 --image-size 224 \
      --batch-size 256 --steps 100 --warmup 15 --workers 12 "${ref[@]}"
  fi
}

# recipe NAME: train, evaluate and record one H200 recipe into $WORK/records/NAME
recipe() {
  local name=$1 run=$WORK/runs/$1
  local toy=()
  [ "$DRY" = 1 ] && toy=(trainer=cpu trainer.precision=32-true trainer.max_epochs=1 trainer.limit_train_batches=2
                         trainer.limit_val_batches=1 trainer.limit_test_batches=1 data.image_size=32
                         data.num_workers=0 data.pin_memory=false data.val_size=40 data.eval_batch_size=64
                         training.compile=false callbacks.ema.decay=0.5)
  local device=cuda; [ "$DRY" = 1 ] && device=cpu
  rm -rf "$run"
  local train_cmd=("$PY" train.py "experiment=$name" "data.root=$DATA" data.system_dirs=[] data.download=false
                   logger=csv trainer.enable_progress_bar=false "hydra.run.dir=$run" "${toy[@]}")
  stage "train_$name" "$TRAIN_BUDGET" "${train_cmd[@]}" || return 1
  stage "evaluate_$name" "$EVAL_BUDGET" "$PY" evaluate.py "ckpt_path=$run/checkpoints/best.ckpt" "device=$device" \
    progress=false "hydra.run.dir=$run/eval/session" || return 1
  mkdir -p "$WORK/records"
  rm -rf "$WORK/records/${name}"
  stage "record_$name" "$RECORD_BUDGET" "$PY" -m fashionlab.cli record "$name" --into "$WORK/records" --runs "$run" \
    --command "python train.py experiment=$name logger=csv" \
    --command "python evaluate.py ckpt_path=<run>/checkpoints/best.ckpt device=cuda" \
    --title "experiment=$name on one H200 (benchmarks/gpu_session.sh)"
}

results() {  # the dry-run trains the retrieval recipe only (the same path, plus the metric head)
  local rc=0
  [ "$DRY" = 1 ] || recipe fmnist_best_h200 || rc=1
  recipe fmnist_retrieval_h200 || rc=1
  return $rc
}

summary() {
  "$PY" benchmarks/gpu_summary.py --work "$WORK" --out "$OUT" --elapsed "$(elapsed)" $([ "$DRY" = 1 ] && echo --dry-run)
}

if [ "$DRY" = 1 ]; then
  B_INSTALL=300; B_TESTS=300; B_COMPILE=300; B_SPEED=300; TRAIN_BUDGET=300; EVAL_BUDGET=300; RECORD_BUDGET=120
  WINDOW=${GPU_SESSION_WINDOW:-3600}
else  # estimate + margin per stage, on one H100/H200 with 16 cores: docs/gpu_session.md, "Budgets"
  B_INSTALL=45; B_TESTS=110; B_COMPILE=120; B_SPEED=110; TRAIN_BUDGET=140; EVAL_BUDGET=45; RECORD_BUDGET=15
fi
export DRY ROOT OUT PY SITE KIT WORK LOGS DATA SESSION_START TRAIN_BUDGET EVAL_BUDGET RECORD_BUDGET WINDOW \
  SUMMARY_RESERVE
export -f has_stage elapsed stage install_kit gpu_tests speed recipe results
status=0
if has_stage 1; then
  stage install $B_INSTALL install_kit || status=1
  cat "$LOGS/install.log"
fi
has_stage 2c && { stage gpu_compile $B_COMPILE gpu_tests compile || status=1; }
has_stage 2 && { stage gpu_tests $B_TESTS gpu_tests tests || status=1; }
has_stage 3 && { stage speed $B_SPEED speed || status=1; }
has_stage 4 && { results || status=1; }
summary || status=1
echo "== session: $(elapsed)s, exit $status; OUTDIR: $OUT"
ls -la "$OUT"
exit $status

#!/usr/bin/env bash
# One prepared pass on a lent GPU machine (its own python3 with torch + Triton; no project venv, no network):
# the kernel tests, then the GPU benchmarks in priority order, each under its own time limit so one failure
# or overrun leaves the others' results. Writes everything to $OUT (default ./gpu_out).
#   bash scripts/gpu_check.sh <git-sha> [all|attention|profile|train]
# train: the quick kernel tests, then a bf16 GR training run profiled (bench/gr_train_profile.py: step time
# triton vs pytorch, phases, top kernels, checkpoint stall on the GR loop) and bench/checkpoint.py on CUDA
# (≈ 5 min; the limits add up to 490 s).
set -u
cd "$(dirname "$0")/.."
OUT="${OUT:-gpu_out}"
mkdir -p "$OUT"
SHA="${1:-unknown}"
WHAT="${2:-all}"
export PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1
step() {  # step <seconds> <name> <command…>
  local limit=$1 name=$2; shift 2
  echo "=== $name (limit ${limit}s) $(date -u +%T)"
  local t0=$SECONDS
  timeout "$limit" "$@"; local rc=$?
  echo "=== $name rc=$rc in $((SECONDS - t0))s"
}
PYTEST=(python3 -m pytest -q -p no:cacheprovider --noconftest -o addopts="" -W ignore::FutureWarning
  --import-mode=importlib)
{
  nvidia-smi -L; python3 -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__)"
  if [ "$WHAT" = all ]; then
    step 150 tests "${PYTEST[@]}" tests/kernels tests/training/ranking/test_model.py
  else
    step 170 tests "${PYTEST[@]}" tests/kernels/test_triton_jagged_attention.py tests/training/ranking/test_model.py
  fi
  if [ "$WHAT" = profile ]; then
    step 90 profile python3 bench/attention_profile.py --out "$OUT/attention_profile.json" --git-commit "$SHA"
    exit 0
  fi
  if [ "$WHAT" = train ]; then
    # rewrites its JSON after every section, so a run cut at the limit keeps what it measured
    step 200 gr_train_profile python3 bench/gr_train_profile.py --out "$OUT/gr_train_profile.json" \
      --models serving,large --deadline-s 170 --git-commit "$SHA"
    # ≈ 100 ms steps (batch 16,384 on the 50 M-parameter MLP), so 10 steps between saves can hide a write
    step 120 checkpoint python3 bench/checkpoint.py --device cuda --out "$OUT/checkpoint_gpu.json" \
      --batch 16384 --steps 30 --every 10 --rounds 1 --git-commit "$SHA"
    exit 0
  fi
  step 120 attention python3 bench/attention.py --out "$OUT/attention.json" --git-commit "$SHA" --deadline-s 90
  step 120 attention_b64 python3 bench/attention.py --out "$OUT/attention_b64.json" --batch 64 \
    --git-commit "$SHA" --deadline-s 80 --no-plot
  step 60 gr_kernels python3 bench/gr_kernels.py --out "$OUT/gr_kernels.json" --git-commit "$SHA"
  if [ "$WHAT" = all ]; then
    step 50 auc python3 bench/auc.py --out "$OUT/auc_gpu.json" --repeats 3 --git-commit "$SHA"
    step 90 gpu_knn python3 bench/gpu_knn.py --out "$OUT/gpu_knn.json" --seconds 1.5
  fi
} 2>&1 | tee "$OUT/run.log"

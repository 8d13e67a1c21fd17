#!/usr/bin/env bash
# The precision matrix on CUDA, torch and jax, in under 5 minutes on one GPU (issue #27): fp32 / bf16 / fp16 (and
# bf16 with precision.hypergrad=full) × cg, darts, exact on the quadratic (d = 100, its oracle) and cg, darts on the
# Meta-Weight-Net demo; then one table with max_memory_allocated (the records' peak_memory_bytes, memory_kind
# cuda_allocated / jax_device) beside the counted peak_live_bytes.
#
#   bash benchmarks/gpu_check.sh [RESULTS_DIR]      (default results/gpu_check)
#
# Knobs (environment): DEVICE (cuda; cpu runs the same path here, as the test does), BACKENDS (torch,jax),
# QUAD_METHODS (cg,darts,exact), MWN_METHODS (cg,darts; empty: no MWN), STEPS (empty: each task's default),
# ISOLATE (true: each run in its own worker, its own memory figure).
# CI has no GPU: tests/test_precision.py runs this script with DEVICE=cpu on a tiny matrix.
set -euo pipefail
OUT=${1:-results/gpu_check}
DEVICE=${DEVICE:-cuda}
BACKENDS=${BACKENDS:-torch,jax}
QUAD_METHODS=${QUAD_METHODS:-cg,darts,exact}
MWN_METHODS=${MWN_METHODS-cg,darts}
STEPS=${STEPS:-}
ISOLATE=${ISOLATE:-true}
MLO=${MLO:-mlo-bench}
common=(device="$DEVICE" backend="$BACKENDS" isolate="$ISOLATE" progress=false results_dir="$OUT")
[ -n "$STEPS" ] && common+=(steps="$STEPS")
status=0
$MLO run -m task=quadratic method="$QUAD_METHODS" precision=fp32,bf16,fp16 "${common[@]}" || status=$?
$MLO run -m task=quadratic method="$QUAD_METHODS" precision=bf16 precision.hypergrad=full "${common[@]}" || status=$?
if [ -n "$MWN_METHODS" ]; then
  $MLO run -m task=mwn +preset=demo method="$MWN_METHODS" precision=fp32,bf16,fp16 "${common[@]}" || status=$?
fi
python "$(dirname "$0")/precision_table.py" "$OUT"
exit $status

#!/usr/bin/env bash
# The round-trip experiments behind docs/results.md (resumable: re-run to continue).
#   bash experiments/round_trip.sh [runs]
# Then: python experiments/collect_results.py runs/* > runs/table.md
set -euo pipefail
RUNS=${1:-runs}
IFV=${IFV:-lucid-ifv}
common=(--n-hoyer 30 --adam 800 --lbfgs 300 --batch-size 10 --seed 0)

# MNIST-5k conv net, conv2 (32 features), grey pixels + sigmoid
for prior in 0 1e-4 1e-3; do
  $IFV experiment --model mnist_small --layer conv2 --param pixel --prior $prior "${common[@]}" \
    --out "$RUNS/mnist_conv2_pixel_prior$prior"
done
# Inception-style shapes10 classifier, mixed3b (192 features)
for param in pixel fft; do
  for prior in 0 1e-4 1e-3; do
    extra=()
    [ "$param" = pixel ] && extra=(--no-decorrelate)
    $IFV experiment --model inception_small --layer mixed3b --param $param "${extra[@]}" --prior $prior \
      "${common[@]}" --out "$RUNS/inception_mixed3b_${param}_prior$prior"
  done
done

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
# Beyond the paper: the same realizations inverted after 8-bit quantization (as saved in a PNG)
$IFV experiment --model mnist_small --layer conv2 --param pixel --prior 1e-4 --invert-8bit "${common[@]}" \
  --out "$RUNS/mnist_conv2_pixel_prior1e-4_8bit"
# Sec. 3.6 on the MNIST net: cosine power and aggregation (prior 1e-4)
for variant in "--cossim-pow 0" "--cossim-pow 2" "--aggregation mean" "--aggregation center"; do
  name=$(echo "$variant" | tr -d '-' | tr ' ' '_')
  $IFV experiment --model mnist_small --layer conv2 --param pixel --prior 1e-4 $variant "${common[@]}" \
    --out "$RUNS/mnist_conv2_pixel_prior1e-4_$name"
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
# DenseNet-BC-style classifiers, softmax layer (10 features): the paper's Sec. 3.5
for model in densenet_small densenet_small_no4; do
  $IFV experiment --model $model --layer softmax --param fft --prior 1e-4 "${common[@]}" \
    --out "$RUNS/${model}_softmax_fft_prior1e-4"
done
# Algorithm 1 (critical spaces), then re-solve inside each candidate. Not on the 192-feature
# inception runs: their eps search (per-sample trivial subspaces of up to ~190 dimensions,
# merged pairwise) takes tens of CPU minutes each here.
for run in "$RUNS"/mnist_*/ "$RUNS"/densenet_*/; do
  $IFV critical --run "$run" --eps-hi 0.1
done
python "$(dirname "$0")/collect_results.py" "$RUNS"/*/ > "$RUNS/table.md"

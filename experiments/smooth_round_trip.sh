#!/usr/bin/env bash
# Issue 8's round trips (docs/results.md): every shipped model's studied layer, rendered and
# inverted on the smooth surrogate (--smooth) and on the plain ReLU network, pixel and Fourier,
# 30 Hoyer targets each, with the library's defaults: relative L2 prior 1e-4, 400 Adam steps,
# then L-BFGS until every sample is stationary to 1e-3 (at most 1000 steps).
# Resumable: re-run to continue. Then: python experiments/collect_results.py runs/*/ > runs/table.md
#   bash experiments/smooth_round_trip.sh [runs] [group]     group: core (default), more, all
set -euo pipefail
RUNS=${1:-runs}
GROUP=${2:-core}
IFV=${IFV:-lucid-ifv}
common=(--n-hoyer 30 --adam 400 --lbfgs 0 --converge 1e-3 --max-lbfgs 1000 --prior 1e-4 --batch-size 15 --seed 0)

run() {  # run NAME MODEL LAYER PARAM [extra flags...]
  local name=$1 model=$2 layer=$3 param=$4; shift 4
  local pflags=(--param "$param")
  [ "$param" = pixel ] && pflags+=(--no-decorrelate)
  $IFV experiment --model "$model" --layer "$layer" "${pflags[@]}" "${common[@]}" "$@" --out "$RUNS/$name"
}

core() {
  for param in pixel fft; do
    run "inception_small_mixed3b_${param}_smooth" inception_small mixed3b $param --smooth
    run "inception_small_mixed3b_${param}_relu" inception_small mixed3b $param
  done
  run mnist_small_conv2_pixel_smooth mnist_small conv2 pixel --smooth
  run mnist_small_conv2_pixel_relu mnist_small conv2 pixel
  run densenet_small_softmax_fft_smooth densenet_small softmax fft --smooth
  run densenet_small_softmax_fft_relu densenet_small softmax fft
}

more() {
  for layer in mixed3a mixed4a; do
    for param in pixel fft; do
      run "inception_small_${layer}_${param}_smooth" inception_small $layer $param --smooth
    done
    run "inception_small_${layer}_pixel_relu" inception_small $layer pixel
  done
  run mnist_small_conv2_fft_smooth mnist_small conv2 fft --smooth
  run densenet_small_softmax_pixel_smooth densenet_small softmax pixel --smooth
  for param in pixel fft; do
    run "photos_cnn_${param}_smooth" photos_cnn "${PHOTOS_LAYER:-conv2d_3}" $param --smooth
  done
  run photos_cnn_pixel_relu photos_cnn "${PHOTOS_LAYER:-conv2d_3}" pixel
}

case "$GROUP" in
  core) core ;;
  more) more ;;
  all) core; more ;;
  *) echo "unknown group $GROUP (core, more, all)" >&2; exit 2 ;;
esac
# The DenseNet softmax layer is compared inside its critical space (paper Sec. 3.5)
for run in "$RUNS"/densenet_*/; do
  [ -f "$run/records.jsonl" ] && $IFV critical --run "$run" --eps-hi 0.1
done
python "$(dirname "$0")/collect_results.py" "$RUNS"/*/ > "$RUNS/table.md"

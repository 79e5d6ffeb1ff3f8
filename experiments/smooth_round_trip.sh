#!/usr/bin/env bash
# Issue 8's round trips (docs/results.md): the shipped models' studied layers, rendered and
# inverted on the smooth surrogate (--smooth) and on the plain ReLU network, 30 Hoyer targets
# each: relative L2 prior 1e-4 on the parameters, 400 Adam steps, then L-BFGS until every
# sample is stationary to 1e-3. The plain ReLU runs cannot become stationary (their optima sit
# on kinks), so they stop at 300 L-BFGS steps.
# The `each_f64` lines are smooth mode's defaults since 2026-12-06 (each sample converged alone in float32,
# then in float64, inverted in float64; docs/results.md, "Smooth mode's defaults").
# The `each` lines were the library's defaults from 2026-12-04, evening, to 2026-12-06 (each sample converged
# alone; the surrogate's pool is the log-mean-exp one; at most 4000 L-BFGS steps). The
# `floorless` lines are the same with L-BFGS on the whole batch (the defaults before). The earlier lines (`smooth` and the
# variants after it) were run with the log-sum-exp pool, the default before then: they name it
# (floored_max_pool_mean) so they reproduce unchanged.
# Runs go in priority order; each is resumable: re-run to continue, or name runs to do only them.
#   bash experiments/smooth_round_trip.sh [runs-folder] [run names...]
# Then: python experiments/collect_results.py runs/*/ > runs/table.md
set -euo pipefail
RUNS=${1:-runs}
shift || true
IFV=${IFV:-lucid-ifv}
common=(--n-hoyer 30 --adam 400 --lbfgs 0 --prior 1e-4 --batch-size 15 --seed 0)
floored=(--smooth --aggregation floored_max_pool_mean)  # the log-sum-exp pool (with its floor T log 9)
smooth=("${floored[@]}" --converge 1e-3 --max-lbfgs 1000)
relu=(--converge 1e-3 --max-lbfgs 300)
tight=("${floored[@]}" --converge 1e-4 --max-lbfgs 3000)  # does a tighter stationarity close the deep layers' tails?
beta30=("${floored[@]}" --relu-beta 30 --converge 1e-3 --max-lbfgs 1000)  # a surrogate that follows photos_cnn (docs/smooth.md)
# a saturating output (softmax) with sparse targets has no finite optimum: a stronger prior gives it one
prior1e3=("${smooth[@]}" --prior 1e-3)
prior1e2=("${smooth[@]}" --prior 1e-2)
warmup=("${smooth[@]}" --warmup 200)  # compare's prior-free warm-up: fewer weak features?
p0=("${smooth[@]}" --cossim-pow 0)  # the linear objective t.f (Lucid's channel/direction-free form)
# compare's surrogate: the pool's temperature relative to each channel's RMS and a softplus beta per ReLU unit
# relative to its input's RMS (no absolute floor for the weak units that carry mixed3a's tail?)
unit=(--smooth --converge 1e-3 --max-lbfgs 1000 --cossim-pow 0 --aggregation homogeneous_max_pool_mean --relu-beta-relative)
# compare's cap (4000 L-BFGS steps): do mixed4a's unconverged renders (8 of 30 pixel, 25 of 30 Fourier at 1000) close its tail?
cap4000=("${floored[@]}" --converge 1e-3 --max-lbfgs 4000)
# the smooth aggregation without the log-sum-exp pool's floor (log-mean-exp: a dead unit responds 0, not T log 9), with
# compare's cap: the library's defaults since 2026-12-04 (the main table)
floorless=(--smooth --converge 1e-3 --max-lbfgs 4000 --aggregation floorless_max_pool_mean)
# a softer surrogate for mixed3a's weak units: a switched-off unit's softplus slope (its Jacobian row) is larger at beta 5
floorless_beta5=(--smooth --relu-beta 5 --converge 1e-3 --max-lbfgs 4000 --aggregation floorless_max_pool_mean)
floorless_prior1e2=("${floorless[@]}" --prior 1e-2)  # DenseNet's softmax: a prior strong enough to give it a finite optimum
# every mode above ran L-BFGS on the whole batch (--joint-lbfgs, added below); the `each` modes converge each sample
# alone (the library's default since 2026-12-04, evening: render.converge_each_sample), otherwise as `floorless`
# (--float32: as these runs were made, before smooth mode's float64 stage became the default on 2026-12-06)
each=(--smooth --converge 1e-3 --max-lbfgs 4000 --float32)
each_seed1=("${each[@]}" --seed 1)  # 30 more targets per setting (another draw): the tails' uncertainty at n = 60
# then each sample in float64 to 1e-8, inverted in float64 (lucid_ifv.precision): smooth mode's defaults since
# 2026-12-06 (`lucid-ifv experiment --smooth` with no precision option), given explicitly here
each_f64=(--smooth --converge 1e-3 --max-lbfgs 4000 --float64-converge 1e-8)
each_f64_seed1=("${each_f64[@]}" --seed 1)

# name model layer param mode
ALL="
inception_small_mixed3b_pixel_smooth inception_small mixed3b pixel smooth
mnist_small_conv2_pixel_smooth mnist_small conv2 pixel smooth
inception_small_mixed3b_pixel_relu inception_small mixed3b pixel relu
inception_small_mixed3b_fft_smooth inception_small mixed3b fft smooth
densenet_small_softmax_fft_smooth densenet_small softmax fft smooth
photos_cnn_conv2d_3_pixel_smooth photos_cnn conv2d_3 pixel smooth
mnist_small_conv2_pixel_relu mnist_small conv2 pixel relu
photos_cnn_conv2d_3_pixel_relu photos_cnn conv2d_3 pixel relu
densenet_small_softmax_fft_relu densenet_small softmax fft relu
inception_small_mixed3a_pixel_smooth inception_small mixed3a pixel smooth
inception_small_mixed4a_pixel_smooth inception_small mixed4a pixel smooth
photos_cnn_conv2d_3_fft_smooth photos_cnn conv2d_3 fft smooth
mnist_small_conv2_fft_smooth mnist_small conv2 fft smooth
inception_small_mixed3a_fft_smooth inception_small mixed3a fft smooth
inception_small_mixed4a_fft_smooth inception_small mixed4a fft smooth
densenet_small_softmax_pixel_smooth densenet_small softmax pixel smooth
densenet_small_logits_fft_smooth densenet_small logits fft smooth
inception_small_mixed3b_fft_relu inception_small mixed3b fft relu
inception_small_mixed3a_pixel_smooth_conv1e-4 inception_small mixed3a pixel tight
inception_small_mixed4a_pixel_smooth_conv1e-4 inception_small mixed4a pixel tight
photos_cnn_conv2d_3_pixel_smooth_beta30 photos_cnn conv2d_3 pixel beta30
inception_small_mixed3a_fft_smooth_conv1e-4 inception_small mixed3a fft tight
inception_small_mixed4a_fft_smooth_conv1e-4 inception_small mixed4a fft tight
densenet_small_softmax_fft_smooth_prior1e-3 densenet_small softmax fft prior1e3
densenet_small_softmax_fft_smooth_prior1e-2 densenet_small softmax fft prior1e2
inception_small_mixed3a_pixel_smooth_warmup inception_small mixed3a pixel warmup
inception_small_mixed4a_pixel_smooth_warmup inception_small mixed4a pixel warmup
inception_small_mixed3a_pixel_smooth_p0 inception_small mixed3a pixel p0
inception_small_mixed4a_pixel_smooth_p0 inception_small mixed4a pixel p0
inception_small_mixed3b_pixel_smooth_p0 inception_small mixed3b pixel p0
inception_small_mixed3a_pixel_smooth_unit inception_small mixed3a pixel unit
inception_small_mixed4a_pixel_smooth_unit inception_small mixed4a pixel unit
inception_small_mixed4a_pixel_smooth_lbfgs4000 inception_small mixed4a pixel cap4000
inception_small_mixed4a_fft_smooth_lbfgs4000 inception_small mixed4a fft cap4000
inception_small_mixed3a_pixel_smooth_floorless_lbfgs4000 inception_small mixed3a pixel floorless
inception_small_mixed4a_pixel_smooth_floorless_lbfgs4000 inception_small mixed4a pixel floorless
inception_small_mixed3a_fft_smooth_floorless_lbfgs4000 inception_small mixed3a fft floorless
inception_small_mixed4a_fft_smooth_floorless_lbfgs4000 inception_small mixed4a fft floorless
inception_small_mixed3b_pixel_smooth_floorless_lbfgs4000 inception_small mixed3b pixel floorless
mnist_small_conv2_pixel_smooth_floorless_lbfgs4000 mnist_small conv2 pixel floorless
photos_cnn_conv2d_3_pixel_smooth_floorless_lbfgs4000 photos_cnn conv2d_3 pixel floorless
inception_small_mixed3b_fft_smooth_floorless_lbfgs4000 inception_small mixed3b fft floorless
mnist_small_conv2_fft_smooth_floorless_lbfgs4000 mnist_small conv2 fft floorless
photos_cnn_conv2d_3_fft_smooth_floorless_lbfgs4000 photos_cnn conv2d_3 fft floorless
inception_small_mixed3a_pixel_smooth_floorless_beta5_lbfgs4000 inception_small mixed3a pixel floorless_beta5
densenet_small_softmax_fft_smooth_floorless_lbfgs4000 densenet_small softmax fft floorless
densenet_small_softmax_pixel_smooth_floorless_lbfgs4000 densenet_small softmax pixel floorless
densenet_small_logits_fft_smooth_floorless_lbfgs4000 densenet_small logits fft floorless
densenet_small_logits_pixel_smooth_floorless_lbfgs4000 densenet_small logits pixel floorless
densenet_small_softmax_fft_smooth_floorless_prior1e-2_lbfgs4000 densenet_small softmax fft floorless_prior1e2
densenet_small_softmax_pixel_smooth_floorless_prior1e-2_lbfgs4000 densenet_small softmax pixel floorless_prior1e2
densenet_small_softmax_fft_smooth_each densenet_small softmax fft each
densenet_small_softmax_pixel_smooth_each densenet_small softmax pixel each
inception_small_mixed3a_pixel_smooth_each inception_small mixed3a pixel each
inception_small_mixed3a_fft_smooth_each inception_small mixed3a fft each
densenet_small_logits_fft_smooth_each densenet_small logits fft each
densenet_small_logits_pixel_smooth_each densenet_small logits pixel each
inception_small_mixed3b_pixel_smooth_each inception_small mixed3b pixel each
inception_small_mixed3b_fft_smooth_each inception_small mixed3b fft each
inception_small_mixed4a_pixel_smooth_each inception_small mixed4a pixel each
inception_small_mixed4a_fft_smooth_each inception_small mixed4a fft each
mnist_small_conv2_pixel_smooth_each mnist_small conv2 pixel each
mnist_small_conv2_fft_smooth_each mnist_small conv2 fft each
photos_cnn_conv2d_3_pixel_smooth_each photos_cnn conv2d_3 pixel each
photos_cnn_conv2d_3_fft_smooth_each photos_cnn conv2d_3 fft each
inception_small_mixed3b_pixel_relu_each inception_small mixed3b pixel each_relu
inception_small_mixed3b_fft_relu_each inception_small mixed3b fft each_relu
mnist_small_conv2_pixel_relu_each mnist_small conv2 pixel each_relu
photos_cnn_conv2d_3_pixel_relu_each photos_cnn conv2d_3 pixel each_relu
densenet_small_softmax_fft_relu_each densenet_small softmax fft each_relu
inception_small_mixed3a_fft_smooth_each_seed1 inception_small mixed3a fft each_seed1
inception_small_mixed3a_pixel_smooth_each_seed1 inception_small mixed3a pixel each_seed1
inception_small_mixed4a_fft_smooth_each_seed1 inception_small mixed4a fft each_seed1
densenet_small_softmax_fft_smooth_each_seed1 densenet_small softmax fft each_seed1
densenet_small_softmax_pixel_smooth_each_seed1 densenet_small softmax pixel each_seed1
mnist_small_conv2_fft_smooth_each_seed1 mnist_small conv2 fft each_seed1
inception_small_mixed4a_pixel_smooth_each_seed1 inception_small mixed4a pixel each_seed1
inception_small_mixed3b_fft_smooth_each_seed1 inception_small mixed3b fft each_seed1
inception_small_mixed3b_pixel_smooth_each_seed1 inception_small mixed3b pixel each_seed1
mnist_small_conv2_pixel_smooth_each_seed1 mnist_small conv2 pixel each_seed1
photos_cnn_conv2d_3_fft_smooth_each_seed1 photos_cnn conv2d_3 fft each_seed1
photos_cnn_conv2d_3_pixel_smooth_each_seed1 photos_cnn conv2d_3 pixel each_seed1
densenet_small_logits_fft_smooth_each_seed1 densenet_small logits fft each_seed1
densenet_small_logits_pixel_smooth_each_seed1 densenet_small logits pixel each_seed1
inception_small_mixed4a_fft_smooth_each_f64 inception_small mixed4a fft each_f64
inception_small_mixed3a_pixel_smooth_each_f64 inception_small mixed3a pixel each_f64
inception_small_mixed3a_fft_smooth_each_f64 inception_small mixed3a fft each_f64
photos_cnn_conv2d_3_fft_smooth_each_f64 photos_cnn conv2d_3 fft each_f64
densenet_small_softmax_fft_smooth_each_f64 densenet_small softmax fft each_f64
inception_small_mixed4a_pixel_smooth_each_f64 inception_small mixed4a pixel each_f64
inception_small_mixed3b_fft_smooth_each_f64 inception_small mixed3b fft each_f64
mnist_small_conv2_fft_smooth_each_f64 mnist_small conv2 fft each_f64
densenet_small_logits_fft_smooth_each_f64 densenet_small logits fft each_f64
inception_small_mixed4a_fft_smooth_each_f64_seed1 inception_small mixed4a fft each_f64_seed1
inception_small_mixed3a_pixel_smooth_each_f64_seed1 inception_small mixed3a pixel each_f64_seed1
inception_small_mixed3a_fft_smooth_each_f64_seed1 inception_small mixed3a fft each_f64_seed1
densenet_small_softmax_fft_smooth_each_f64_seed1 densenet_small softmax fft each_f64_seed1
inception_small_mixed4a_pixel_smooth_each_f64_seed1 inception_small mixed4a pixel each_f64_seed1
inception_small_mixed3b_pixel_smooth_each_f64 inception_small mixed3b pixel each_f64
mnist_small_conv2_pixel_smooth_each_f64 mnist_small conv2 pixel each_f64
photos_cnn_conv2d_3_pixel_smooth_each_f64 photos_cnn conv2d_3 pixel each_f64
densenet_small_logits_pixel_smooth_each_f64 densenet_small logits pixel each_f64
densenet_small_softmax_pixel_smooth_each_f64 densenet_small softmax pixel each_f64
inception_small_mixed3a_fft_relu_each inception_small mixed3a fft each_relu
inception_small_mixed4a_fft_relu_each inception_small mixed4a fft each_relu
inception_small_mixed3a_pixel_relu_each inception_small mixed3a pixel each_relu
inception_small_mixed4a_pixel_relu_each inception_small mixed4a pixel each_relu
"

echo "$ALL" | while read -r name model layer param mode; do
  [ -n "$name" ] || continue
  if [ $# -gt 0 ] && [[ ! " $* " == *" $name "* ]]; then continue; fi
  pflags=(--param "$param")
  [ "$param" = pixel ] && pflags+=(--no-decorrelate)
  case "$mode" in
    smooth) extra=("${smooth[@]}") ;; tight) extra=("${tight[@]}") ;; beta30) extra=("${beta30[@]}") ;;
    prior1e3) extra=("${prior1e3[@]}") ;; prior1e2) extra=("${prior1e2[@]}") ;; warmup) extra=("${warmup[@]}") ;; p0) extra=("${p0[@]}") ;; unit) extra=("${unit[@]}") ;; cap4000) extra=("${cap4000[@]}") ;; floorless) extra=("${floorless[@]}") ;; floorless_beta5) extra=("${floorless_beta5[@]}") ;; floorless_prior1e2) extra=("${floorless_prior1e2[@]}") ;;
    each) extra=("${each[@]}") ;;
    each_seed1) extra=("${each_seed1[@]}") ;;
    each_f64) extra=("${each_f64[@]}") ;;
    each_f64_seed1) extra=("${each_f64_seed1[@]}") ;;
    each_relu) extra=("${relu[@]}") ;;  # the plain ReLU runs with each sample's L-BFGS alone (at most 300 steps)
    *) extra=("${relu[@]}") ;;
  esac
  case "$mode" in each*) ;; *) extra+=(--joint-lbfgs) ;; esac
  $IFV experiment --model "$model" --layer "$layer" "${pflags[@]}" "${common[@]}" "${extra[@]}" --out "$RUNS/$name" </dev/null
  case "$model/$layer" in densenet_*/softmax) $IFV critical --run "$RUNS/$name" --eps-hi 0.1 </dev/null ;; esac
done
python "$(dirname "$0")/collect_results.py" "$RUNS"/*/ > "$RUNS/table.md"

#!/usr/bin/env bash
# Issue 12's network comparisons (docs/compare.md), with `lucid-ifv compare`'s defaults (smooth
# surrogates, pixel parametrization, relative L2 prior 1e-4, 400 Adam steps, then L-BFGS to a
# relative stationarity residual of 1e-3) and the L-BFGS cap, the objective's p and the
# aggregation given per run (the cap was 1000 by default until the *_lbfgs4000 runs, it is 4000
# now; the default was p = 1 until the *_p0 runs, it is 0 now; the aggregation was max_pool_mean
# until the *_homogeneous runs, it is homogeneous_max_pool_mean now).
# Resumable; runs in this order:
#  - ground truth: every feature of a shipped model's studied layer, visualized in the model
#    and inverted in a copy whose layer has its channels permuted and rescaled (the same
#    function; `lucid_ifv.symmetry`);
#  - two independently trained copies (mnist_small, mnist_small_seed1), both directions, beside
#    activation-correlation matching on the held-out images (--baseline);
#  - photos_cnn_conv2d_3_retries3: unsound visualizations rendered again (--retries 3);
#  - photos_cnn_conv2d_3_beta30: with a sharper surrogate (softplus beta 30; docs/smooth.md, fidelity);
#  - srnet_small_res_block8(_beta30): the residual stream of srnet_small (every block's output
#    permuted alike), at the default surrogate and at the sharper one;
#  - srnet_small_res_block8_p0 / _p2: the same with --cossim-pow 0 (Lucid's channel objective, linear)
#    and 2: with p = 1 the objective is even in the sign of a channel that can go negative
#    (docs/compare.md, "Signed layers");
#  - inception_small_mixed3b_first16_p0 / _p1: p = 0 against p = 1 on 16 channels; then p = 0 (today's
#    default) on every shipped model's studied layer (all 192 channels of mixed3b) and the two seeds;
#  - inception_small_mixed3b_pre_relu_p0: mixed3b's 192 units compared at their pre-ReLU features
#    (`mixed3b_pre_relu`; the same permutation; docs/compare.md, "Silent units"); then inception_small's
#    other studied layers, mixed3a (128 units; also after its ReLU) and mixed4a (every third of 256), the same way;
#  - *_homogeneous: the surrogate's pooled response kept positively homogeneous per channel
#    (--aggregation homogeneous_max_pool_mean, today's default; docs/compare.md, "Rescaled units"): B's
#    rescaled units no longer meet another aggregation than A's (experiments/compare_scale_check.py);
#    last, inception_small_mixed4a_pre_relu_homogeneous: all 256 of mixed4a's units (about 1.5 h on 2 cores).
#  - *_relative_beta: also each ReLU unit's softplus beta relative to its input's RMS (--relu-beta-relative,
#    today's default; docs/smooth.md), so B's rescaled units meet the rescaled softplus too: the whole
#    surrogate up to the studied layer is then exactly A's, permuted and rescaled. Every older run names
#    --no-relu-beta-relative (one absolute beta), so it reproduces unchanged.
#  - densenet_small_block3_layer4_relative_beta: densenet_small's last dense block (the concatenation
#    of transition2's pooled output and four layers' 3x3 convs, 90 linear channels), each unit
#    permuted within its channels, every later BatchNorm and conv compensated (its studied layers,
#    logits and softmax, are outputs and have no such symmetry); _rms: each compared feature read in
#    units of its RMS on the calibration noise (--feature-units=rms; docs/compare.md, "Feature units");
#    _rms_retries3: the same, unsound visualizations rendered again (up to 3 times; uses only A).
#  - *_retries3 with from=<run>: that run's saved batches given 3 retries (`compare` continues a folder
#    whose only difference is fewer retries: the same result as --retries 3 from the start, without
#    rendering the sound rows again): inception_small mixed4a after its ReLU and densenet's last block.
#  - inception_small_mixed4a_third_relative_beta_lbfgs4000: most of mixed4a's unsound renders stopped at the
#    1000-step L-BFGS cap above the 1e-3 residual; the same run with a cap of 4000 (experiments/compare_by_convergence.py),
#    then given 3 retries (_lbfgs4000_retries3).
#  - inception_small_mixed4a_rest_relative_beta_lbfgs4000: mixed4a's other 170 units (not a multiple of 3),
#    with the 4000-step cap; with _third_relative_beta_lbfgs4000, all 256 (about 3 h on 2 cores;
#    python experiments/collect_compare.py --combine runs/compare/inception_small_mixed4a_*_relative_beta_lbfgs4000).
#  - mnist_small_seed1_conv2_relative_beta, densenet_small_no4_block3_layer4_relative_beta_retries3: the two
#    shipped twins (another seed; trained without class 4) permuted like their originals, with today's defaults
#    (cap 4000), the DenseNet block with 3 retries as its original's best run.
#  - densenet_small_block3_layer4_relative_beta_lbfgs4000: densenet's last block with today's defaults (cap 4000,
#    one render per feature).
#   bash experiments/compare_networks.sh [runs-folder] [run names...]
# Then: python experiments/collect_compare.py runs/compare/*/ > runs/compare/table.md
set -euo pipefail
RUNS=${1:-runs/compare}
shift || true
IFV=${IFV:-lucid-ifv}

# name model layer how
ALL="
mnist_small_conv2 mnist_small conv2 --permuted=0 --max-lbfgs=1000 --cossim-pow=1 --aggregation=max_pool_mean --no-relu-beta-relative
photos_cnn_conv2d_3 photos_cnn conv2d_3 --permuted=0 --max-lbfgs=1000 --cossim-pow=1 --aggregation=max_pool_mean --no-relu-beta-relative
mnist_small_to_seed1 mnist_small conv2 --model-b=mnist_small_seed1 --max-lbfgs=1000 --cossim-pow=1 --aggregation=max_pool_mean --no-relu-beta-relative
mnist_small_seed1_to_seed0 mnist_small_seed1 conv2 --model-b=mnist_small --max-lbfgs=1000 --cossim-pow=1 --aggregation=max_pool_mean --no-relu-beta-relative
inception_small_mixed3b inception_small mixed3b --permuted=0 --max-lbfgs=1000 every-third --cossim-pow=1 --aggregation=max_pool_mean --no-relu-beta-relative
photos_cnn_conv2d_3_retries3 photos_cnn conv2d_3 --permuted=0 --max-lbfgs=1000 --retries=3 --cossim-pow=1 --aggregation=max_pool_mean --no-relu-beta-relative
photos_cnn_conv2d_3_beta30 photos_cnn conv2d_3 --permuted=0 --max-lbfgs=1000 --retries=3 --relu-beta=30 --cossim-pow=1 --aggregation=max_pool_mean --no-relu-beta-relative
srnet_small_res_block8 srnet_small res_block8 --permuted=0 --max-lbfgs=1000 --cossim-pow=1 --aggregation=max_pool_mean --no-relu-beta-relative
srnet_small_res_block8_beta30 srnet_small res_block8 --permuted=0 --max-lbfgs=1000 --retries=3 --relu-beta=30 --cossim-pow=1 --aggregation=max_pool_mean --no-relu-beta-relative
srnet_small_res_block8_p0 srnet_small res_block8 --permuted=0 --max-lbfgs=1000 --cossim-pow=0 --aggregation=max_pool_mean --no-relu-beta-relative
srnet_small_res_block8_p2 srnet_small res_block8 --permuted=0 --max-lbfgs=1000 --cossim-pow=2 --aggregation=max_pool_mean --no-relu-beta-relative
inception_small_mixed3b_first16_p0 inception_small mixed3b --permuted=0 --max-lbfgs=1000 first-16 --cossim-pow=0 --aggregation=max_pool_mean --no-relu-beta-relative
inception_small_mixed3b_first16_p1 inception_small mixed3b --permuted=0 --max-lbfgs=1000 first-16 --cossim-pow=1 --aggregation=max_pool_mean --no-relu-beta-relative
mnist_small_conv2_p0 mnist_small conv2 --permuted=0 --max-lbfgs=1000 --cossim-pow=0 --aggregation=max_pool_mean --no-relu-beta-relative
photos_cnn_conv2d_3_p0 photos_cnn conv2d_3 --permuted=0 --max-lbfgs=1000 --cossim-pow=0 --aggregation=max_pool_mean --no-relu-beta-relative
inception_small_mixed3b_all_p0 inception_small mixed3b --permuted=0 --max-lbfgs=1000 --cossim-pow=0 --aggregation=max_pool_mean --no-relu-beta-relative
mnist_small_to_seed1_p0 mnist_small conv2 --model-b=mnist_small_seed1 --max-lbfgs=1000 --cossim-pow=0 --aggregation=max_pool_mean --no-relu-beta-relative
mnist_small_seed1_to_seed0_p0 mnist_small_seed1 conv2 --model-b=mnist_small --max-lbfgs=1000 --cossim-pow=0 --aggregation=max_pool_mean --no-relu-beta-relative
inception_small_mixed3b_pre_relu_p0 inception_small mixed3b_pre_relu --permuted=0 --max-lbfgs=1000 --cossim-pow=0 --aggregation=max_pool_mean --no-relu-beta-relative
inception_small_mixed3a_pre_relu_p0 inception_small mixed3a_pre_relu --permuted=0 --max-lbfgs=1000 --cossim-pow=0 --aggregation=max_pool_mean --no-relu-beta-relative
inception_small_mixed3a_p0 inception_small mixed3a --permuted=0 --max-lbfgs=1000 --cossim-pow=0 --aggregation=max_pool_mean --no-relu-beta-relative
inception_small_mixed4a_pre_relu_third_p0 inception_small mixed4a_pre_relu --permuted=0 --max-lbfgs=1000 every-third-256 --cossim-pow=0 --aggregation=max_pool_mean --no-relu-beta-relative
inception_small_mixed3a_pre_relu_homogeneous inception_small mixed3a_pre_relu --permuted=0 --max-lbfgs=1000 --cossim-pow=0 --aggregation=homogeneous_max_pool_mean --no-relu-beta-relative
inception_small_mixed3b_pre_relu_homogeneous inception_small mixed3b_pre_relu --permuted=0 --max-lbfgs=1000 --cossim-pow=0 --aggregation=homogeneous_max_pool_mean --no-relu-beta-relative
inception_small_mixed3a_homogeneous inception_small mixed3a --permuted=0 --max-lbfgs=1000 --cossim-pow=0 --aggregation=homogeneous_max_pool_mean --no-relu-beta-relative
inception_small_mixed4a_pre_relu_third_homogeneous inception_small mixed4a_pre_relu --permuted=0 --max-lbfgs=1000 every-third-256 --cossim-pow=0 --aggregation=homogeneous_max_pool_mean --no-relu-beta-relative
mnist_small_conv2_homogeneous mnist_small conv2 --permuted=0 --max-lbfgs=1000 --cossim-pow=0 --aggregation=homogeneous_max_pool_mean --no-relu-beta-relative
photos_cnn_conv2d_3_homogeneous photos_cnn conv2d_3 --permuted=0 --max-lbfgs=1000 --cossim-pow=0 --aggregation=homogeneous_max_pool_mean --no-relu-beta-relative
srnet_small_res_block8_homogeneous srnet_small res_block8 --permuted=0 --max-lbfgs=1000 --cossim-pow=0 --aggregation=homogeneous_max_pool_mean --no-relu-beta-relative
mnist_small_to_seed1_homogeneous mnist_small conv2 --model-b=mnist_small_seed1 --max-lbfgs=1000 --cossim-pow=0 --aggregation=homogeneous_max_pool_mean --no-relu-beta-relative
mnist_small_seed1_to_seed0_homogeneous mnist_small_seed1 conv2 --model-b=mnist_small --max-lbfgs=1000 --cossim-pow=0 --aggregation=homogeneous_max_pool_mean --no-relu-beta-relative
inception_small_mixed4a_pre_relu_homogeneous inception_small mixed4a_pre_relu --permuted=0 --max-lbfgs=1000 --cossim-pow=0 --aggregation=homogeneous_max_pool_mean --no-relu-beta-relative
inception_small_mixed3a_relative_beta inception_small mixed3a --permuted=0 --max-lbfgs=1000 --cossim-pow=0 --aggregation=homogeneous_max_pool_mean --relu-beta-relative
mnist_small_conv2_relative_beta mnist_small conv2 --permuted=0 --max-lbfgs=1000 --cossim-pow=0 --aggregation=homogeneous_max_pool_mean --relu-beta-relative
srnet_small_res_block8_relative_beta srnet_small res_block8 --permuted=0 --max-lbfgs=1000 --cossim-pow=0 --aggregation=homogeneous_max_pool_mean --relu-beta-relative
photos_cnn_conv2d_3_relative_beta photos_cnn conv2d_3 --permuted=0 --max-lbfgs=1000 --cossim-pow=0 --aggregation=homogeneous_max_pool_mean --relu-beta-relative
inception_small_mixed3b_relative_beta inception_small mixed3b --permuted=0 --max-lbfgs=1000 --cossim-pow=0 --aggregation=homogeneous_max_pool_mean --relu-beta-relative
mnist_small_to_seed1_relative_beta mnist_small conv2 --model-b=mnist_small_seed1 --max-lbfgs=1000 --cossim-pow=0 --aggregation=homogeneous_max_pool_mean --relu-beta-relative
mnist_small_seed1_to_seed0_relative_beta mnist_small_seed1 conv2 --model-b=mnist_small --max-lbfgs=1000 --cossim-pow=0 --aggregation=homogeneous_max_pool_mean --relu-beta-relative
inception_small_mixed4a_pre_relu_third_relative_beta inception_small mixed4a_pre_relu --permuted=0 --max-lbfgs=1000 every-third-256 --cossim-pow=0 --aggregation=homogeneous_max_pool_mean --relu-beta-relative
inception_small_mixed3a_pre_relu_relative_beta inception_small mixed3a_pre_relu --permuted=0 --max-lbfgs=1000 --cossim-pow=0 --aggregation=homogeneous_max_pool_mean --relu-beta-relative
inception_small_mixed4a_third_relative_beta inception_small mixed4a --permuted=0 --max-lbfgs=1000 every-third-256 --cossim-pow=0 --aggregation=homogeneous_max_pool_mean --relu-beta-relative
densenet_small_block3_layer4_relative_beta densenet_small block3_layer4 --permuted=0 --max-lbfgs=1000 --cossim-pow=0 --aggregation=homogeneous_max_pool_mean --relu-beta-relative
densenet_small_block3_layer4_rms densenet_small block3_layer4 --permuted=0 --max-lbfgs=1000 --cossim-pow=0 --aggregation=homogeneous_max_pool_mean --relu-beta-relative --feature-units=rms
densenet_small_block3_layer4_rms_retries3 densenet_small block3_layer4 --permuted=0 --max-lbfgs=1000 --retries=3 --cossim-pow=0 --aggregation=homogeneous_max_pool_mean --relu-beta-relative --feature-units=rms
inception_small_mixed4a_third_relative_beta_retries3 inception_small mixed4a --permuted=0 --max-lbfgs=1000 every-third-256 --retries=3 --cossim-pow=0 --aggregation=homogeneous_max_pool_mean --relu-beta-relative from=inception_small_mixed4a_third_relative_beta
densenet_small_block3_layer4_relative_beta_retries3 densenet_small block3_layer4 --permuted=0 --max-lbfgs=1000 --retries=3 --cossim-pow=0 --aggregation=homogeneous_max_pool_mean --relu-beta-relative from=densenet_small_block3_layer4_relative_beta
inception_small_mixed4a_third_relative_beta_lbfgs4000 inception_small mixed4a --permuted=0 every-third-256 --max-lbfgs=4000 --cossim-pow=0 --aggregation=homogeneous_max_pool_mean --relu-beta-relative
inception_small_mixed4a_third_relative_beta_lbfgs4000_retries3 inception_small mixed4a --permuted=0 every-third-256 --max-lbfgs=4000 --retries=3 --cossim-pow=0 --aggregation=homogeneous_max_pool_mean --relu-beta-relative from=inception_small_mixed4a_third_relative_beta_lbfgs4000
inception_small_mixed4a_rest_relative_beta_lbfgs4000 inception_small mixed4a --permuted=0 rest-of-256 --max-lbfgs=4000 --cossim-pow=0 --aggregation=homogeneous_max_pool_mean --relu-beta-relative
mnist_small_seed1_conv2_relative_beta mnist_small_seed1 conv2 --permuted=0 --max-lbfgs=4000 --cossim-pow=0 --aggregation=homogeneous_max_pool_mean --relu-beta-relative
densenet_small_block3_layer4_relative_beta_lbfgs4000 densenet_small block3_layer4 --permuted=0 --max-lbfgs=4000 --cossim-pow=0 --aggregation=homogeneous_max_pool_mean --relu-beta-relative
densenet_small_no4_block3_layer4_relative_beta_retries3 densenet_small_no4 block3_layer4 --permuted=0 --retries=3 --max-lbfgs=4000 --cossim-pow=0 --aggregation=homogeneous_max_pool_mean --relu-beta-relative
"
# inception_small mixed3b: every third of its 192 channels (64), for CPU time (~1 h on 2 cores)
echo "$ALL" | while read -r name model layer how rest; do
  [ -n "$name" ] || continue
  if [ $# -gt 0 ] && [[ ! " $* " == *" $name "* ]]; then continue; fi
  extra=()
  [[ "$how" == --model-b=* ]] && extra=(--baseline)
  for word in ${rest:-}; do
    case "$word" in
      every-third) extra+=(--features $(seq 0 3 191)) ;;
      every-third-256) extra+=(--features $(seq 0 3 255)) ;;  # mixed4a: 86 of 256 (all 256: over an hour on 2 cores)
      rest-of-256) extra+=(--features $(seq 1 3 255) $(seq 2 3 255)) ;;  # mixed4a's other 170 units
      first-16) extra+=(--features $(seq 0 3 45)) ;;  # the first 16 of every-third: a quick A/B of p
      from=*) base="$RUNS/${word#from=}/batches"  # start from that run's batches (if this run has none yet)
        if [ ! -e "$RUNS/$name/batches" ] && [ -d "$base" ]; then mkdir -p "$RUNS/$name" && cp -r "$base" "$RUNS/$name/"; fi ;;
      *) extra+=("$word") ;;
    esac
  done
  # every run here converged its renders jointly (before 2026-12-04, evening): pinned so they reproduce
  $IFV compare --model "$model" --layer "$layer" "$how" "${extra[@]}" --joint-lbfgs --out "$RUNS/$name" </dev/null
done

#!/usr/bin/env bash
# Issue 8, item 6: "which channel was this visualization made for?" on every shipped model's
# studied layer. Lucid's channel objective rendered on the plain ReLU network with Lucid's
# redirected ReLU gradient (its default), saved as an 8-bit PNG, inverted without the target;
# the default solve's answers from the PNGs are checked by 4 re-dithered inversions (its verdict).
# Resumable (finished batches are skipped); name models to run only those.
#   bash experiments/target_free_channels.sh [runs-folder] [models...]
set -euo pipefail
RUNS=${1:-runs/target_free}
shift || true
MODELS=${*:-"inception_small mnist_small photos_cnn densenet_small"}  # srnet_small: 5-channel geometry input, no PNG
for model in $MODELS; do
  python "$(dirname "$0")/target_free.py" --model "$model" --parts channel --n 30 --batch 10 \
    --adam 800 --lbfgs 300 --tol 3e-4 1e-3 --redirect --dither 4 --out "$RUNS/${model}_channel_redirect" </dev/null
done

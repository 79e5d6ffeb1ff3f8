#!/usr/bin/env bash
# Issue 13 / the paper's Sec. 3.7: Grad-IFV on geometry images. FVs of Hoyer targets on the
# 8th residual block of the shipped SRNet (`srnet_small`, input: normal map, depth, hit mask;
# parametrization `lucid_ifv.param.geometry`), 30 targets per run, the library's defaults
# (relative L2 prior 1e-4, 400 Adam steps, then L-BFGS to a relative stationarity of 1e-3,
# at most 1000 steps), then inverted. Runs: with and without the cosine term (p = 1, p = 0)
# on the smooth surrogate, the mask fixed to one, and the plain ReLU network. The smooth runs
# name the surrogate's pool they were made with (floored_max_pool_mean, the default until
# 2026-12-04), so they reproduce unchanged.
#   bash experiments/srnet_geometry.sh [runs-folder]
# Writes the runs, then docs/results/srnet/table.md and one figure of realizations per run.
set -euo pipefail
RUNS=${1:-runs}
IFV=${IFV:-lucid-ifv}
common=(--model srnet_small --layer res_block8 --param pixel --no-decorrelate --n-hoyer 30 --adam 400 --lbfgs 0
        --prior 1e-4 --batch-size 15 --seed 0 --converge 1e-3 --joint-lbfgs)  # (joint: as these runs were made)
# name extra-options
ALL="
srnet_small_res_block8_p1_smooth --smooth --aggregation floored_max_pool_mean --max-lbfgs 1000
srnet_small_res_block8_p0_smooth --smooth --aggregation floored_max_pool_mean --max-lbfgs 1000 --cossim-pow 0
srnet_small_res_block8_p1_smooth_mask1 --smooth --aggregation floored_max_pool_mean --max-lbfgs 1000 --mask one
srnet_small_res_block8_p1_relu --max-lbfgs 300
"
echo "$ALL" | while read -r name extra; do
    [ -z "$name" ] && continue
    # shellcheck disable=SC2086
    $IFV experiment "${common[@]}" $extra --out "$RUNS/$name"
    python experiments/plot_geometry_realizations.py "$RUNS/$name" --out "docs/results/srnet/$name.png"
done
mkdir -p docs/results/srnet
python experiments/collect_results.py "$RUNS"/srnet_small_res_block8_*/ > docs/results/srnet/table.md

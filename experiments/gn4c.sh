#!/usr/bin/env bash
# The paper's GN4c setting (Sec. 3.4): GoogLeNet/InceptionV1 `mixed4c` (inception4c, 512
# channels), 150 Hoyer-sparse + 150 canonical (one-hot) targets, Fourier + decorrelated
# colours, 3000 Adam + 500 L-BFGS steps, the paper's objective (p = 1, max-pool + mean) and no
# prior (the paper's setting), on the network itself. It needs Lucid's InceptionV1 graph
# (downloaded once into the cache; not reachable from the machine this was written on).
#   bash experiments/gn4c.sh [runs-folder] [extra lucid-ifv experiment options...]
# e.g. on a Dask cluster:  bash experiments/gn4c.sh runs --scheduler tcp://host:8786
# Estimated cost (docs/results.md, "Issue 13: experiments on Dask", the latest measurement):
# ~8.5 min per realization on one 2-core worker of this machine's speed (0.133 s per step,
# 44.3 s per Jacobian), i.e. about 42 h on 1 worker, 5.4 h on 8 and 0.71 h on 64.
# The second run is the library's invertible variant (smooth surrogate, relative L2 prior
# 1e-4, L-BFGS until stationary), the setting docs/results.md reports for the shipped models.
# ECHO=1 prints the commands instead of running them.
set -euo pipefail
RUNS=${1:-runs}
shift || true
IFV=${IFV:-lucid-ifv}
run() { if [ "${ECHO:-0}" = 1 ]; then echo "$*"; else "$@"; fi; }
common=(--model InceptionV1 --layer mixed4c --param fft --n-hoyer 150 --n-canonical 150 --seed 0 --batch-size 8)
run $IFV experiment "${common[@]}" --adam 3000 --lbfgs 500 --prior 0 --out "$RUNS/gn4c_paper" "$@"
run $IFV experiment "${common[@]}" --adam 3000 --lbfgs 0 --prior 1e-4 --smooth --converge 1e-3 --max-lbfgs 3000 \
    --aggregation floored_max_pool_mean --joint-lbfgs \
    --out "$RUNS/gn4c_smooth" "$@"

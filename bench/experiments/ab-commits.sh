#!/usr/bin/env bash
# Experiment: the same benchmarks on two built checkouts, alternating A B A B …, on one machine (the VM's noise is
# ±15 %, so single runs compare nothing). Each checkout must be built (`npm ci` or `npx tsc -p . && npm run build`).
# Usage: bash bench/experiments/ab-commits.sh DIR_A DIR_B [rounds=3]
# Prints the d16 transformer / decode lines of var-generate, the best decode of vqvae-decode and bench actvar's JSON.
set -u
A=$1 B=$2 ROUNDS=${3:-3}
for i in $(seq "$ROUNDS"); do
  for side in "$A" "$B"; do
    echo "== var-generate d16 | $side | round $i | $(date -u +%H:%M:%S) | $(git -C "$side" rev-parse --short HEAD)"
    (cd "$side" && node dist/bench/var-generate.js d16 2>&1 | grep -E "^(transformer|decode|peak RSS after)")
    echo "== vqvae-decode | $side | round $i"
    (cd "$side" && node dist/bench/vqvae-decode.js 2 2>&1 | grep -E "decode seconds")
    echo "== bench actvar d16 | $side | round $i"
    (cd "$side" && node dist/src/cli/main.js bench actvar --preset d16 --repeats 3 --json 2>/dev/null | tail -1)
  done
done

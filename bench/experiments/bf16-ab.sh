#!/usr/bin/env bash
# Experiment: d16 generation (transformer only, `bench/var-generate.ts --no-decode`) with fp32 and bf16 weights,
# alternating fp32 bf16 fp32 bf16 … (each run its own process, so its peak RSS is its own), at each batch size.
# Prints one JSON line per run (var-generate's result plus the process's max RSS from /usr/bin/time -v).
# Usage: bash bench/experiments/bf16-ab.sh [rounds=3] [batches="1 4"]
set -u
ROUNDS=${1:-3} BATCHES=${2:-"1 4"}
cd "$(dirname "$0")/../.."
for b in $BATCHES; do
  for i in $(seq "$ROUNDS"); do
    for dt in fp32 bf16; do
      out=$( { /usr/bin/time -v node dist/bench/var-generate.js d16 --no-decode --weights-dtype "$dt" --batch "$b" 2>&1 1>&3 3>&-; } 3>&1 )
      json=$(printf '%s\n' "$out" | grep '^{' | tail -1)
      maxrss=$(printf '%s\n' "$out" | sed -n 's/.*Maximum resident set size (kbytes): //p')
      echo "{\"round\":$i,\"time_maxrss_mb\":$((maxrss / 1024)),\"load1\":\"$(cut -d' ' -f1 /proc/loadavg)\",\"at\":\"$(date -u +%H:%M:%S)\",\"run\":$json}"
    done
  done
done

#!/usr/bin/env bash
# Runs the issue-3 benchmark set with the release simulator and prints one JSON line per
# run (the contract keys plus a few more). Usage: simulations/bench.sh [OUTDIR]
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-bench-out}"
mkdir -p "$out"
swift build -c release --product meshsim >/dev/null
sim=.build/release/meshsim
run() { local name=$1; shift; "$sim" "$@" --json | tee -a "$out/$name.jsonl"; }
: > "$out/spread.jsonl"; : > "$out/partition-heal.jsonl"; : > "$out/detect.jsonl"; : > "$out/scale.jsonl"; : > "$out/churn.jsonl"
for s in 1 2 3 4 5; do run spread spread --seed "$s"; done
for s in 1 2 3; do run spread spread --seed "$s" --items-per-s 100; done
for s in 1 2 3 4 5 6 7 8 9 10; do run partition-heal partition-heal --seed "$s"; done
for s in $(seq 1 13); do run detect detect --seed "$s"; done
for s in 1 2 3; do run churn churn --seed "$s"; done
run scale scale --seed 1
"$sim" swarm --seed 100000 --runs 500 | tail -3 | tee "$out/swarm.txt"

#!/usr/bin/env bash
# Reruns every figure of docs/durability.md: half of a 10,000-node small world fails
# after 100,000 distinct blocks (or whole documents) are inserted. Two runs at a time;
# about ten minutes on two cores. Usage: sim/scripts/durability.sh [OUT_DIR]
set -euo pipefail
out=${1:-out/durability}
mkdir -p "$out"
cargo build --release -q -p veil-sim
sim=target/release/veil-sim
base=(run --nodes 10000 --requests 100000 --keys 100000)
jobs=()
half="--fail-fraction 0.5"
for r in 1 3 7; do jobs+=("s1-r$r --seed 1 --replicas $r $half"); done
for r in 1 3 5 6 7 8 10 14; do jobs+=("s3-r$r --seed 3 --replicas $r $half"); done
jobs+=("s1-nofail --seed 1 --fail-fraction 0")
jobs+=("doc10 --seed 1 --doc-blocks 10 $half")
jobs+=("doc10-i7 --seed 1 --doc-blocks 10 --index-replicas 7 $half")
jobs+=("doc100 --seed 1 --doc-blocks 100 $half")
printf '%s\n' "${jobs[@]}" | xargs -P 2 -I{} sh -c \
  'set -- {}; name=$1; shift; '"$sim"' '"${base[*]}"' "$@" --out '"$out"'/$name > '"$out"'/$name.txt'
printf '%-10s %8s %9s %8s %10s %10s %8s %8s\n' run success mean-hops storage live-copy by-routing docs top
for j in "${jobs[@]}"; do
  set -- $j
  python3 - "$out/$1/summary.json" "$1" <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))
f = lambda v: "-" if v is None else f"{v:.4f}"
print(f"{sys.argv[2]:<10} {s['success_rate']:8.4f} {s['mean_hops']:9.2f} {s['store_blocks_per_node']:8.1f} "
      f"{s['keys_with_live_copy']:10.4f} {s['failed_with_live_copy']:10.4f} "
      f"{f(s['document_success_rate']):>8} {f(s['top_block_success_rate']):>8}")
PY
done

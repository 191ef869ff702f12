#!/usr/bin/env bash
# Cross-checks Portcullis against the independent workload generator in ../shared/workload
# (a separate implementation of the same decision rule, in Python): for each preset and seed,
# generate, import, serve, and replay every request, failing on any answer that differs.
#
#   scripts/crosscheck-shared.sh                       # small and medium, release build
#   PRESETS=small PROFILE=debug scripts/crosscheck-shared.sh
#   AGENTS=1 PRESETS=small SEEDS="1 2" scripts/crosscheck-shared.sh   # gen.py --agents: agents,
#                                  # the setting, selectors, step-up, authentication contexts
#
# Skips, saying so, when ../shared is absent (people clone only this repository).
set -euo pipefail
cd "$(dirname "$0")/.."

gen=../shared/workload/gen.py
if [ ! -f "$gen" ]; then
  echo "crosscheck skipped: $gen not found (the independent generator lives beside this repository in development)"
  exit 0
fi

presets=${PRESETS:-small medium}
seeds=${SEEDS:-1 2}
profile=${PROFILE:-release}
if [ "$profile" = release ]; then cargo build --release --quiet; else cargo build --quiet; fi
bin=${CARGO_TARGET_DIR:-target}/$profile/portcullis
agents=()
label=
if [ "${AGENTS:-0}" = 1 ]; then agents=(--agents); label=" --agents"; fi

tmp=$(mktemp -d)
pid=
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null; rm -rf "$tmp"; }
trap cleanup EXIT

for preset in $presets; do
  for seed in $seeds; do
    wl=$tmp/wl-$preset-$seed
    data=$tmp/data-$preset-$seed
    echo "== $preset seed $seed$label"
    python3 "$gen" --preset "$preset" --seed "$seed" "${agents[@]}" --out "$wl" >/dev/null
    "$bin" import --data-dir "$data" "$wl"
    RUST_LOG=info "$bin" serve --data-dir "$data" --grpc-addr 127.0.0.1:0 --http-addr 127.0.0.1:0 2>"$tmp/serve.log" &
    pid=$!
    addr=
    for _ in $(seq 1 600); do
      addr=$(sed -n 's/.*grpc_addr=\([^ ]*\).*/\1/p' "$tmp/serve.log" | head -n 1)
      [ -n "$addr" ] && break
      kill -0 "$pid" 2>/dev/null || { cat "$tmp/serve.log"; exit 1; }
      sleep 0.1
    done
    [ -n "$addr" ] || { echo "serve did not start"; cat "$tmp/serve.log"; exit 1; }
    "$bin" workload replay --addr "$addr" --dir "$wl"
    "$bin" workload replay --addr "$addr" --dir "$wl" --batch 500
    kill "$pid"; wait "$pid" || true; pid=
  done
done
echo "crosscheck passed: every answer matched the independent generator's"

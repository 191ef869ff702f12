#!/usr/bin/env bash
# The fuzz targets of fuzz/ (FUZZING.md), with cargo-fuzz on the nightly toolchain.
#
#   scripts/fuzz.sh smoke [SECONDS]      every target for SECONDS (default 20) each: CI's run
#   scripts/fuzz.sh run TARGET [ARGS…]   one target until stopped (or libFuzzer's ARGS say),
#                                        optimized, with AddressSanitizer (FUZZ_SANITIZER=none
#                                        for none, several times faster): the long runs
#   scripts/fuzz.sh list                 the targets
#
# Each target reads its checked-in seeds (fuzz/seeds/TARGET) and keeps what it finds in
# fuzz/corpus/TARGET (not checked in); a crash is saved under fuzz/artifacts/TARGET.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"

# What this needs, installed when missing: the nightly toolchain and cargo-fuzz.
rustup toolchain list | grep -q '^nightly' || rustup toolchain install nightly --profile minimal
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --version 0.13.2 --locked

targets() { cargo +nightly fuzz list; }

case "${1:-smoke}" in
smoke)
  seconds="${2:-20}"
  # Unoptimized and without a sanitizer: the build is the cost here, not the speed. The code
  # under test forbids unsafe, so the sanitizer finds little the panics do not.
  cargo +nightly fuzz build --dev -s none
  for target in $(targets); do
    mkdir -p "corpus/$target"
    echo "-- $target (${seconds}s)"
    log="$(mktemp)"
    if ! cargo +nightly fuzz run --dev -s none "$target" "corpus/$target" "seeds/$target" -- \
      -max_total_time="$seconds" -rss_limit_mb=2048 -timeout=10 -print_final_stats=1 >"$log" 2>&1; then
      tail -n 60 "$log"
      rm -f "$log"
      echo "fuzz target $target failed: the input is under fuzz/artifacts/$target" >&2
      exit 1
    fi
    grep -E '^stat::number_of_executed_units' "$log" || true
    rm -f "$log"
  done
  ;;
run)
  target="${2:?which target? scripts/fuzz.sh list}"
  shift 2
  mkdir -p "corpus/$target"
  exec cargo +nightly fuzz run -s "${FUZZ_SANITIZER:-address}" "$target" "corpus/$target" "seeds/$target" -- -rss_limit_mb=4096 -timeout=10 "$@"
  ;;
list) targets ;;
*) echo "usage: scripts/fuzz.sh smoke [SECONDS] | run TARGET [ARGS…] | list" >&2; exit 2 ;;
esac

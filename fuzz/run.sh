#!/usr/bin/env bash
# Runs every cargo-fuzz target for FUZZ_SECONDS (default 60) each, one at a time on one core,
# and prints executions, corpus size and findings per target. Used by `make fuzz`.
#   FUZZ_SECONDS=300 fuzz/run.sh                 # longer
#   FUZZ_TARGETS="jwt_exp route_path" fuzz/run.sh  # some targets only
# Working corpora grow in fuzz/corpus/<target> (not committed; fuzz/seeds/<target> is),
# crash inputs land in fuzz/artifacts/<target>, logs in fuzz/artifacts/<target>/run.log.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${FUZZ_SECONDS:-60}"
all="config_compile xff_and_headers request_headers jwt_exp signature_header route_path shared_records"
targets="${FUZZ_TARGETS:-$all}"

# cargo-fuzz passes nightly-only -Z flags (sanitizer, coverage) to rustc. Without a nightly
# toolchain, and where none can be fetched, stable accepts them under RUSTC_BOOTSTRAP=1.
if rustup toolchain list | grep -q '^nightly' \
  || timeout 300 rustup toolchain install nightly --profile minimal; then
  toolchain=+nightly
else
  echo "no nightly toolchain: building the fuzz targets with the default one and RUSTC_BOOTSTRAP=1"
  toolchain=
  export RUSTC_BOOTSTRAP=1
fi
command -v cargo-fuzz >/dev/null 2>&1 || cargo install cargo-fuzz --locked

# cargo-fuzz's default build: optimised, AddressSanitizer, debug assertions and overflow checks
# on, so an arithmetic overflow is a finding too.
cargo $toolchain fuzz build
status=0
summary=()
for t in $targets; do
  mkdir -p "fuzz/corpus/$t" "fuzz/artifacts/$t"
  dict=()
  [ -f "fuzz/dicts/$t.dict" ] && dict=("-dict=fuzz/dicts/$t.dict")
  log="fuzz/artifacts/$t/run.log"
  echo "fuzzing $t for ${seconds}s (log: $log)"
  if cargo $toolchain fuzz run "$t" "fuzz/corpus/$t" "fuzz/seeds/$t" -- \
      -max_total_time="$seconds" -print_final_stats=1 -max_len=65536 -timeout=10 -rss_limit_mb=2048 \
      "${dict[@]}" >"$log" 2>&1; then
    result="no crash"
  else
    result="FINDING (see $log and fuzz/artifacts/$t)"
    status=1
  fi
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  files=$(find "fuzz/corpus/$t" -type f | wc -l)
  summary+=("$(printf '%-18s %12s execs  corpus %6s files  %s' "$t" "${execs:-?}" "$files" "$result")")
done
printf '%s\n' "${summary[@]}"
exit $status

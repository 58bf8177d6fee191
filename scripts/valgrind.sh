#!/usr/bin/env bash
# Runs a subset of the integration tests under valgrind memcheck; fails on any memcheck error
# (invalid read/write, use of uninitialised value in a syscall, ...).
#
#   scripts/valgrind.sh            # the CI subset (about 25 s on 2 cores)
#   VALGRIND_ARGS="--num-callers=40" scripts/valgrind.sh
#
# What it can and cannot see: pagewise's large blocks are anonymous mmaps, opaque to memcheck
# (it sees mappings, not blocks), and valgrind knows nothing of MADV_FREE. So this looks for
# invalid reads/writes and bad syscall arguments — in pagewise, the inner allocator path and the
# tests — not for leaks inside large blocks.
#
set -euo pipefail
cd "$(dirname "$0")/.."

command -v valgrind >/dev/null || { echo "valgrind not installed" >&2; exit 2; }

# Build once (release, the profile `cargo test --release` already built), find the test executables.
build_json=$(cargo test --release --tests --no-run --message-format=json 2>/dev/null)
exe() {
    # The executable of integration test $1 from cargo's JSON messages.
    printf '%s\n' "$build_json" |
        grep -F "\"name\":\"$1\"" | grep -F '"test":true' |
        sed -n 's/.*"executable":"\([^"]*\)".*/\1/p' | tail -1
}

VG=(valgrind --tool=memcheck --error-exitcode=1 --quiet ${VALGRIND_ARGS:-})
status=0
run() {
    local name=$1; shift
    local bin; bin=$(exe "$name")
    [ -n "$bin" ] || { echo "no executable for tests/$name.rs" >&2; exit 2; }
    echo "== valgrind tests/$name.rs $*" >&2
    local t0=$SECONDS
    if ! env "${ENVS[@]}" "${VG[@]}" "$bin" --test-threads=1 "$@"; then
        echo "!! valgrind reported errors (or the tests failed) in tests/$name.rs" >&2
        status=1
    fi
    echo "== tests/$name.rs: $((SECONDS - t0)) s" >&2
}

start=$SECONDS
ENVS=(RUST_BACKTRACE=1 PROPTEST_CASES=16)
run model
ENVS=(RUST_BACKTRACE=1)
run policies threshold_boundary stats_counters_behave zeroed_after_dirty_free pattern_helpers
ENVS=(RUST_BACKTRACE=1)
run global threshold_boundary_global effective_config_and_purge vec_growth_to_300mib_uses_mremap
ENVS=(RUST_BACKTRACE=1)
run kernel_facts madvise_probe_reports_support dontneed_zeroes_and_drops_rss

echo "valgrind: total $((SECONDS - start)) s, status $status" >&2
exit $status

#!/usr/bin/env bash
# Real programs that no one here wrote, run with libpagewise.so preloaded under the default and
# every release policy (and at PAGEWISE_THRESHOLD=4096), their output compared byte for byte with
# a run without it (issue #18): python3 (big bytes, bytearray and lists in a loop, and its own
# test_bytes and test_list), sort -S 512M, xz -9 and zstd --long=27 (compress and decompress),
# sqlite3 (a table of millions of rows, indexed, grouped, sorted and joined).
#
#   scripts/preload_programs.sh            # full inputs: a 300 MiB file, 3 M rows (minutes)
#   scripts/preload_programs.sh --quick    # small inputs (preload/tests/programs.rs runs this)
#   LIB=/path/libpagewise.so scripts/preload_programs.sh
#
# A program that is not installed is named and skipped. Each preloaded run must also have used
# pagewise (PAGEWISE_STATS=1: large_allocs > 0 in some process), or it proves nothing.
# Exit status: 0 if every run matched, 1 otherwise.
set -euo pipefail
cd "$(dirname "$0")/.."

quick=0
[ "${1:-}" = "--quick" ] && quick=1
LIB=${LIB:-$PWD/target/release/libpagewise.so}
[ -f "$LIB" ] || { echo "no $LIB: cargo build --release -p pagewise-preload" >&2; exit 2; }
LIB=$(realpath "$LIB")
export LC_ALL=C

if [ "$quick" = 1 ]; then
    SORT_MIB=8 XZ_MIB=2 ZSTD_MIB=8 ROWS=100000 PY_MIB=4 PY_ROUNDS=4
else
    SORT_MIB=300 XZ_MIB=48 ZSTD_MIB=300 ROWS=3000000 PY_MIB=64 PY_ROUNDS=20
fi

# name and environment of each preloaded configuration; "ref" runs without the library
CONFIGS=(default unmap dontneed free adaptive t4096)
config_env() {
    case $1 in
        default) echo "" ;; # retain
        t4096) echo "PAGEWISE_THRESHOLD=4096" ;;
        *) echo "PAGEWISE_RELEASE=$1" ;;
    esac
}

work=$(mktemp -d "${TMPDIR:-/tmp}/pagewise-programs.XXXXXX")
trap 'rm -rf "$work"' EXIT

# $1: output directory; $2: config. Runs "${@:3}" preloaded (unless ref), stderr kept apart.
pre() {
    local dir=$1
    pre_merged "$@" 2>>"$dir/stderr"
}

# As pre, with stderr left where the caller sends it.
pre_merged() {
    local config=$2
    shift 2
    if [ "$config" = ref ]; then
        "$@"
    else
        # shellcheck disable=SC2046 # the config's variables, one word each
        env LD_PRELOAD="$LIB" PAGEWISE_STATS=1 $(config_env "$config") "$@"
    fi
}

# --- the programs: each writes its outputs into $1 (compared file by file with ref's) ---------

PY=""
if command -v python3 >/dev/null; then
    PY=$(python3 -c 'import sys; print(sys.executable)') # the interpreter, not a shim script
fi

cat >"$work/big.py" <<'EOF'
import hashlib, sys
mib, rounds = int(sys.argv[1]), int(sys.argv[2])
h = hashlib.sha256()
for i in range(rounds):
    b = bytes([i % 251]) * (mib << 20)         # a big bytes object
    ba = bytearray(b)                          # and a copy to change
    ba[::4096] = bytes(len(range(0, len(ba), 4096)))
    ba += b[: mib << 18]                       # grow it (realloc)
    l = list(range(mib * 40000 + i))           # a big list, grown by appends below
    for j in range(1000):
        l.append(j)
    s = b"".join([b, bytes(ba[:1000]), b])     # a bigger one made of both
    h.update(hashlib.sha256(ba).digest())
    h.update(str(sum(l)).encode())
    h.update(s[-4096:])
    del b, ba, l, s
print(h.hexdigest())
EOF

run_python3() {
    local dir=$1 config=$2
    pre "$dir" "$config" "$PY" "$work/big.py" "$PY_MIB" "$PY_ROUNDS" >"$dir/big.out"
    if "$PY" -c 'import test.test_bytes, test.test_list' 2>/dev/null; then
        # unittest reports on stderr: its report minus the timing is compared, pagewise's lines
        # go with the other stderr
        pre_merged "$dir" "$config" "$PY" -m unittest -q test.test_bytes test.test_list \
            >"$work/unittest.raw" 2>&1 || true
        grep '^pagewise: ' "$work/unittest.raw" >>"$dir/stderr" || true
        grep -v '^pagewise: ' "$work/unittest.raw" | sed 's/ in [0-9.]*s$//' >"$dir/unittest.out"
    fi
}

make_text() { # $1: MiB of lines "hex-key number text" in pseudo-random order
    awk -v n=$(($1 * 1048576 / 32)) 'BEGIN { srand(42); for (i = 0; i < n; i++)
        printf "%08x %6d line %09d\n", int(rand() * 4294967296), i % 100000, i }'
}

run_sort() {
    local dir=$1 config=$2
    pre "$dir" "$config" sort -S 512M "$work/sort.in" >"$dir/sorted"
    pre "$dir" "$config" sort -S 512M -k2,2n -k1,1r "$work/sort.in" | sha256sum >"$dir/sorted-k2"
}

run_xz() {
    local dir=$1 config=$2
    pre "$dir" "$config" xz -9 -T1 -c "$work/xz.in" >"$dir/out.xz"
    pre "$dir" "$config" xz -d -T1 -c "$dir/out.xz" >"$dir/back"
    cmp -s "$dir/back" "$work/xz.in" || echo "xz: decompressed output differs from the input" >"$dir/roundtrip"
    rm "$dir/back"
}

run_zstd() {
    local dir=$1 config=$2
    pre "$dir" "$config" zstd -q -T1 --long=27 -c "$work/zstd.in" >"$dir/out.zst"
    pre "$dir" "$config" zstd -q -d --long=27 -c "$dir/out.zst" >"$dir/back"
    cmp -s "$dir/back" "$work/zstd.in" || echo "zstd: decompressed output differs from the input" >"$dir/roundtrip"
    rm "$dir/back"
}

cat >"$work/rows.sql" <<EOF
PRAGMA cache_size = -262144;
CREATE TABLE t(id INTEGER PRIMARY KEY, k INTEGER, s TEXT);
WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < $ROWS)
INSERT INTO t SELECT x, (x * 2654435761) % 1000003, printf('row-%08d-%04x', x, (x * 40503) % 65536) FROM c;
CREATE INDEX t_k ON t(k);
SELECT count(*), sum(k), min(s), max(s) FROM t;
SELECT k, count(*) FROM t GROUP BY k ORDER BY count(*) DESC, k LIMIT 5;
SELECT id, s FROM t ORDER BY s DESC, id LIMIT 5;
SELECT count(*), sum(b.k) FROM t AS a JOIN t AS b ON b.id = a.k WHERE a.id % 7 = 0;
SELECT length(group_concat(s, ',')) FROM (SELECT s FROM t WHERE k < 100000 ORDER BY s);
DELETE FROM t WHERE id % 3 = 0;
SELECT count(*), total(k) FROM t;
EOF

run_sqlite3() {
    local dir=$1 config=$2
    pre "$dir" "$config" sqlite3 :memory: <"$work/rows.sql" >"$dir/rows.out"
}

# --- the harness --------------------------------------------------------------------------------

programs=()
missing=()
for p in python3 sort xz zstd sqlite3; do
    if command -v "$p" >/dev/null; then programs+=("$p"); else missing+=("$p"); fi
done
[ ${#missing[@]} -eq 0 ] || echo "missing, skipped: ${missing[*]}"

if [[ " ${programs[*]} " == *" sort "* ]] || [[ " ${programs[*]} " == *" xz "* ]] ||
    [[ " ${programs[*]} " == *" zstd "* ]]; then
    make_text "$SORT_MIB" >"$work/sort.in"
    head -c $((XZ_MIB << 20)) "$work/sort.in" >"$work/xz.in"
    head -c $((ZSTD_MIB << 20)) "$work/sort.in" >"$work/zstd.in"
fi

echo "inputs: sort ${SORT_MIB} MiB, xz ${XZ_MIB} MiB, zstd ${ZSTD_MIB} MiB, sqlite3 ${ROWS} rows, python3 ${PY_MIB} MiB x ${PY_ROUNDS}"
echo "library: $LIB"
printf '%-8s %-10s %-9s %8s %s\n' program config result seconds "large blocks (pagewise's, all processes)"
status=0
for p in "${programs[@]}"; do
    ref="$work/$p-ref"
    mkdir -p "$ref"
    "run_$p" "$ref" ref
    for c in "${CONFIGS[@]}"; do
        dir="$work/$p-$c"
        mkdir -p "$dir"
        t0=$(date +%s.%N)
        ok=1
        "run_$p" "$dir" "$c" || ok=0
        secs=$(echo "$(date +%s.%N) - $t0" | bc)
        for f in "$ref"/* "$dir"/*; do
            name=$(basename "$f")
            [ "$name" = stderr ] && continue
            cmp -s "$ref/$name" "$dir/$name" || { ok=0; echo "  $p/$c: $name differs" >&2; }
        done
        large=$( (grep -o 'large_allocs=[0-9]*' "$dir/stderr" || true) | cut -d= -f2 | paste -sd+ | bc)
        [ "${large:-0}" -gt 0 ] || { ok=0; echo "  $p/$c: pagewise served no large block" >&2; }
        result=identical
        [ "$ok" = 1 ] || { result=DIFFERENT; status=1; }
        printf '%-8s %-10s %-9s %8.1f %s\n' "$p" "$c" "$result" "$secs" "${large:-0}"
        rm -rf "$dir"
    done
    rm -rf "$ref"
done
exit $status

#!/usr/bin/env python3
"""Real programs under each malloc, preloaded the same way: glibc (nothing preloaded),
pagewise (target/release/libpagewise.so, its default policy), and jemalloc, mimalloc and
tcmalloc where their Debian packages are installed (libjemalloc2, libmimalloc2.0,
libtcmalloc-minimal4). Issue #18. Not a test: a measurement, printed as a Markdown table.

    cargo build --release -p pagewise-preload
    scripts/preload_bench.py                 # 5 rounds (about 15 minutes on 2 cores)
    scripts/preload_bench.py --reps 3 --only sort,python-big
    scripts/preload_bench.py --variant prefetch-none=PAGEWISE_PREFETCH=none   # pagewise again, so set

Each round runs every workload under every allocator, in an order rotated from round to round
(this VM's timings drift by 20-40%); the table gives the median of the rounds with the fastest
and slowest in brackets. Wall time is the program's (for python-big: up to the end of its work,
before its pause); peak RSS is the kernel's (ru_maxrss); RSS after is measured by the program
itself 1.5 s after its work (python-big only: the other programs exit when done).
"""

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LIBDIR = "/usr/lib/x86_64-linux-gnu"
ALLOCATORS = [
    ("glibc", None, None),
    ("pagewise", os.path.join(ROOT, "target/release/libpagewise.so"),
     "cargo build --release -p pagewise-preload"),
    ("jemalloc", f"{LIBDIR}/libjemalloc.so.2", "apt-get install libjemalloc2"),
    ("mimalloc", f"{LIBDIR}/libmimalloc.so.2", "apt-get install libmimalloc2.0"),
    ("tcmalloc", f"{LIBDIR}/libtcmalloc_minimal.so.4", "apt-get install libtcmalloc-minimal4"),
]

BIG_PY = r"""
import hashlib, sys, time
mib, rounds = int(sys.argv[1]), int(sys.argv[2])
h = hashlib.sha256()
for i in range(rounds):
    b = bytes([i % 251]) * (mib << 20)
    ba = bytearray(b)
    ba[::4096] = bytes(len(range(0, len(ba), 4096)))
    ba += b[: mib << 18]
    l = list(range(mib * 40000 + i))
    for j in range(1000):
        l.append(j)
    s = b"".join([b, bytes(ba[:1000])])
    h.update(hashlib.sha256(ba).digest())
    del b, ba, l, s
print(h.hexdigest())
print("DONE", flush=True)
time.sleep(1.5)
rss = [l for l in open("/proc/self/status") if l.startswith("VmRSS:")][0].split()[1]
print("RSS_AFTER_KIB", rss, flush=True)
"""

SQL = """
PRAGMA cache_size = -262144;
CREATE TABLE t(id INTEGER PRIMARY KEY, k INTEGER, s TEXT);
WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < {rows})
INSERT INTO t SELECT x, (x * 2654435761) % 1000003, printf('row-%08d-%04x', x, (x * 40503) % 65536) FROM c;
CREATE INDEX t_k ON t(k);
SELECT count(*), sum(k) FROM t;
SELECT k, count(*) FROM t GROUP BY k ORDER BY count(*) DESC, k LIMIT 5;
SELECT id, s FROM t ORDER BY s DESC, id LIMIT 5;
SELECT count(*), sum(b.k) FROM t AS a JOIN t AS b ON b.id = a.k WHERE a.id % 7 = 0;
"""


def workloads(work, python):
    """name -> (argv, stdin file or None, what it is)."""
    big = os.path.join(work, "big.py")
    with open(big, "w") as f:
        f.write(BIG_PY)
    sql = os.path.join(work, "rows.sql")
    with open(sql, "w") as f:
        f.write(SQL.format(rows=2_000_000))
    text = os.path.join(work, "text")
    return {
        "sort": (["sort", "-S", "512M", text], None, "sort -S 512M, 256 MiB of text lines"),
        "xz": (["xz", "-9", "-T1", "-c", text + ".16"], None, "xz -9 -T1, 16 MiB of them"),
        "zstd": (["zstd", "-q", "-T1", "--long=27", "-c", text], None,
                 "zstd --long=27 -T1, the 256 MiB"),
        "python-big": ([python, big, "64", "12"], None,
                       "python3: 64 MiB bytes, bytearray, joins, 2.6 M-item lists, x12"),
        "python-start": ([python, "-c", "pass"], None, "python3 -c pass (start-up), x20"),
        "sqlite": (["sqlite3", ":memory:"], sql,
                   "sqlite3: 2 M rows inserted, indexed, grouped, sorted, joined"),
    }


def make_text(path, mib):
    with open(path, "w") as out:
        subprocess.run(
            ["awk", "-v", f"n={mib * 1048576 // 32}",
             'BEGIN { srand(42); for (i = 0; i < n; i++) '
             'printf "%08x %6d line %09d\\n", int(rand() * 4294967296), i % 100000, i }'],
            stdout=out, check=True)
    with open(path, "rb") as f, open(path + ".16", "wb") as g:
        g.write(f.read(16 << 20))


def run_once(argv, stdin, lib, repeat=1):
    """(wall s, peak RSS MiB, RSS after MiB or None) of one run (repeat: back-to-back runs).
    lib: (path or None, extra environment)."""
    lib, extra = lib
    env = {k: v for k, v in os.environ.items() if not k.startswith("PAGEWISE_")}
    env["LC_ALL"] = "C"
    env.update(extra)
    if lib:
        env["LD_PRELOAD"] = lib
    total, peak, after = 0.0, 0.0, None
    for _ in range(repeat):
        inp = open(stdin) if stdin else subprocess.DEVNULL
        t0 = time.monotonic()
        p = subprocess.Popen(argv, stdin=inp, stdout=subprocess.PIPE, env=env)
        done = None
        for line in p.stdout:
            if line.startswith(b"DONE"):
                done = time.monotonic()
            elif line.startswith(b"RSS_AFTER_KIB"):
                after = int(line.split()[1]) / 1024
        _, status, ru = os.wait4(p.pid, 0)
        end = time.monotonic()
        if stdin:
            inp.close()
        if status != 0:
            sys.exit(f"{argv[0]} failed (status {status}) with LD_PRELOAD={lib}")
        total += (done or end) - t0
        peak = max(peak, ru.ru_maxrss / 1024)
    return total, peak, after


def fmt(values, digits):
    if not values:
        return "—"
    med = statistics.median(values)
    return f"{med:.{digits}f} [{min(values):.{digits}f}–{max(values):.{digits}f}]"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--only", help="comma-separated workloads")
    ap.add_argument("--variant", action="append", default=[],
                    help="NAME=VAR=VALUE[,VAR=VALUE]: pagewise once more with these variables")
    args = ap.parse_args()

    allocators = []
    for name, lib, how in ALLOCATORS:
        if lib and not os.path.exists(lib):
            print(f"{name}: missing ({lib}; {how}), left out")
        else:
            allocators.append((name, (lib, {})))
    pagewise = ALLOCATORS[1][1]
    for v in args.variant:
        name, _, assignments = v.partition("=")
        extra = dict(a.split("=", 1) for a in assignments.split(","))
        allocators.append((f"pagewise-{name}", (pagewise, extra)))
    python = shutil.which("python3")
    python = subprocess.run([python, "-c", "import sys; print(sys.executable)"],
                            capture_output=True, text=True, check=True).stdout.strip()
    work = tempfile.mkdtemp(prefix="pagewise-bench.")
    try:
        loads = workloads(work, python)
        if args.only:
            loads = {k: v for k, v in loads.items() if k in args.only.split(",")}
        for name, (argv, _, _) in list(loads.items()):
            if not shutil.which(argv[0]):
                print(f"{name}: {argv[0]} missing, left out")
                del loads[name]
        if any(k in loads for k in ("sort", "xz", "zstd")):
            make_text(os.path.join(work, "text"), 256)
        results = {(w, a): [] for w in loads for a, _ in allocators}
        for rep in range(args.reps):
            for w, (argv, stdin, _) in loads.items():
                order = allocators[rep % len(allocators):] + allocators[:rep % len(allocators)]
                for a, lib in order:
                    repeat = 20 if w == "python-start" else 1
                    results[(w, a)].append(run_once(argv, stdin, lib, repeat))
            print(f"round {rep + 1}/{args.reps} done", file=sys.stderr)
        report(loads, allocators, results, args.reps)
    finally:
        shutil.rmtree(work)


def report(loads, allocators, results, reps):
    print(f"\n{reps} rounds; median [fastest–slowest]\n")
    print("| workload | allocator | wall time, s | peak RSS, MiB | RSS after, MiB |")
    print("|---|---|---:|---:|---:|")
    for w, (_, _, what) in loads.items():
        for a, _ in allocators:
            r = results[(w, a)]
            after = [x[2] for x in r if x[2] is not None]
            print(f"| {w} | {a} | {fmt([x[0] for x in r], 2)} | {fmt([x[1] for x in r], 0)} | "
                  f"{fmt(after, 0)} |")
    print()
    for w, (_, _, what) in loads.items():
        print(f"- {w}: {what}")
    # The targets, from the medians.
    print("\n| workload | pagewise s | vs glibc | fastest peer s | vs fastest | pagewise peak MiB | "
          "leanest peer MiB | peak ≤ 1.10x + 8 MiB |")
    print("|---|---:|---:|---:|---:|---:|---:|---|")
    for w in loads:
        med = {a: (statistics.median(x[0] for x in results[(w, a)]),
                   statistics.median(x[1] for x in results[(w, a)])) for a, _ in allocators}
        if "pagewise" not in med:
            continue
        peers = {a: v for a, v in med.items() if not a.startswith("pagewise")}
        fast = min(peers, key=lambda a: peers[a][0])
        lean = min(peers, key=lambda a: peers[a][1])
        pt, pp = med["pagewise"]
        ok = "✓" if pp <= 1.10 * peers[lean][1] + 8 else "✗"
        vs_glibc = f"{pt / med['glibc'][0]:.2f}x" if "glibc" in med else "—"
        print(f"| {w} | {pt:.2f} | {vs_glibc} | {fast} {peers[fast][0]:.2f} | "
              f"{pt / peers[fast][0]:.2f}x | {pp:.0f} | {lean} {peers[lean][1]:.0f} | {ok} |")


if __name__ == "__main__":
    main()

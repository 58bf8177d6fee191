//! Stress under every release policy × prefetch mode: several threads allocate, realloc up and
//! down, alloc_zeroed and free blocks of random sizes and alignments, each marked with a pattern
//! derived from its identity and checked before every realloc and free. Meanwhile a reclaimer
//! thread calls MADV_PAGEOUT over every private anonymous mapping of the process every few ms,
//! which drops lazily freed pages exactly as memory pressure would.
//!
//! An *op* is one alloc, alloc_zeroed, realloc or dealloc; it is a *large* op when the block (for
//! realloc: the old or the new size) is at least the 256 KiB threshold, i.e. when it goes through
//! the allocator's own mappings. Small ops (routed to the inner allocator) are counted apart.
//!
//! **CI default** (no variable): every one of the 20 combinations runs for 2.5 s (~50 s in all)
//! with log-uniform sizes 4 KiB … 64 MiB, alignments 8 B … 2 MiB (log-uniform), and the full
//! pattern: every byte of every block is written, and every byte is checked before each realloc and
//! free (alloc_zeroed: every byte is checked to be zero). `PAGEWISE_STRESS_SECS=<f64>` changes the
//! time per combination.
//!
//! **Soak** (`PAGEWISE_SOAK=1`): runs until every release policy has done at least 1,000,000 large
//! ops (`PAGEWISE_SOAK_OPS=<n>` changes that per-policy target). That is about 2,400 s of CPU on
//! the 2-core development VM, nearly all of it in the kernel: ~20–25 min when the test has the
//! machine to itself (46 min measured while other builds shared it). A policy's target is split evenly over its
//! four prefetch modes — each combination runs until it has done a quarter of it — rather than
//! given to one representative mode: the modes change where a block's pages come from (demand
//! faults, populate, huge pages), which is exactly what the reclaimer interferes with, so none of
//! them gets a token count.
//!
//! Soak sizes: 90% log-uniform in 256 KiB … 4 MiB, so the count is made of real large blocks; 10%
//! log-uniform in 4 KiB … 64 MiB, so small-block routing, threshold crossings and big mremaps still
//! happen (about 4% of all blocks are small, 3% are 4 … 64 MiB). Not 80/20: the cost is the
//! kernel's (faults, zeroing, munmap, the reclaimer), about proportional to the bytes touched, and
//! at 80/20 the 4 … 64 MiB draws are half of those bytes (short runs took 1.6× as long as at 90/10,
//! which would have put the soak well past 30 min). Alignment: 8 B … 4 KiB nine times in ten, else
//! 8 KiB … 2 MiB.
//!
//! Soak checking is sparse, so that it costs next to nothing beside the kernel's work: one 8-byte
//! word at the start of every 4 KiB chunk of the block (its value derived from the block's id and
//! the word's index, never zero) plus the first and last 64 bytes. Large blocks are page-aligned,
//! so every page of a block holds a checked word at the same place: a page that was dropped (reads
//! zero), stale (another block's or an earlier generation's word), misplaced or shared with another
//! live block (whose word overwrote ours) is still caught, as is a realloc that loses or misplaces
//! pages. alloc_zeroed is checked at the same words and ends. `PAGEWISE_STRESS_SECS` caps each
//! combination in soak mode (default 900 s): a combination that hits the cap before its share of
//! the target fails the test.
//!
//! Every realloc gives the block a new id (after the kept prefix has been checked against the old
//! one), so pages left over from an earlier generation of the same block are not mistaken for
//! current data.
//!
//! Both modes print, per combination and per policy: ops, large ops, small ops, elapsed time,
//! ops/s, reclaimer sweeps and a few allocator counters, then a table of ops/s per policy.
//! `PAGEWISE_STRESS_SEED=<u64>` replays a seed (each thread's sequence of ops and sizes; the
//! interleaving of threads and the reclaimer's timing still vary); `PAGEWISE_STRESS_THREADS=<n>`
//! sets the number of worker threads (default 3).

mod common;

use std::alloc::{GlobalAlloc, Layout};
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::*;
use pagewise::{Config, PageAlloc, Prefetch, Release, Stats};

/// The allocator's threshold in this test: blocks this big or bigger are large.
const THRESHOLD: usize = 256 * KIB;
const MIN_SIZE: usize = 4 * KIB;
const MAX_SIZE: usize = 64 * MIB;
/// The range most soak sizes come from.
const SOAK_LO: usize = 256 * KIB;
const SOAK_HI: usize = 4 * MIB;
/// Percent of soak sizes drawn from SOAK_LO..=SOAK_HI (the rest from MIN_SIZE..=MAX_SIZE).
const SOAK_MAIN_PERCENT: u64 = 90;
const MAX_ALIGN_POW: u64 = 21; // 2 MiB
const SLOTS: usize = 8;
/// Default per-policy target of large ops in soak mode.
const SOAK_OPS: u64 = 1_000_000;
/// Default cap per combination in soak mode, seconds.
const SOAK_CAP_SECS: f64 = 900.0;
/// Bytes checked at each end of a block in sparse mode.
const ENDS: usize = 64;
/// Distance between the checked words in sparse mode (one per page of a page-aligned block).
const STRIDE: usize = 4096;

/// How a run is bounded and how blocks are checked.
#[derive(Clone, Copy, Debug)]
struct Plan {
    /// Soak mode: soak sizes and alignments, sparse pattern, stop at `combo_target`.
    soak: bool,
    /// CI: run this long. Soak: give up (and fail) after this long.
    secs: f64,
    /// Soak: large ops each combination must reach (0 in CI mode).
    combo_target: u64,
}

struct Block {
    ptr: *mut u8,
    size: usize,
    align: usize,
    id: u64,
}

/// Where an op happened, for failure messages (formatted only on failure).
struct At<'a> {
    what: &'a str,
    thread: u64,
    op: u64,
}

impl fmt::Display for At<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} thread {} op {}", self.what, self.thread, self.op)
    }
}

fn env_f64(name: &str) -> Option<f64> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

fn unit(rng: &mut XorShift) -> f64 {
    (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64
}

/// Log-uniform size in lo..=hi, half the time taken off a page boundary (never below lo).
fn log_uniform_size(rng: &mut XorShift, lo: usize, hi: usize) -> usize {
    let (l, h) = ((lo as f64).ln(), (hi as f64).ln());
    let mut s = (l + (h - l) * unit(rng)).exp() as usize;
    if rng.chance(50) {
        s = s.saturating_sub(rng.range(0, 4095) as usize);
    }
    s.clamp(lo, hi)
}

fn random_size(rng: &mut XorShift, soak: bool) -> usize {
    if soak && rng.chance(SOAK_MAIN_PERCENT) {
        log_uniform_size(rng, SOAK_LO, SOAK_HI)
    } else {
        log_uniform_size(rng, MIN_SIZE, MAX_SIZE)
    }
}

fn random_align(rng: &mut XorShift, soak: bool) -> usize {
    let pow = if !soak {
        rng.range(3, MAX_ALIGN_POW)
    } else if rng.chance(90) {
        rng.range(3, 12)
    } else {
        rng.range(13, MAX_ALIGN_POW)
    };
    1 << pow
}

/// Counts one op on a block of `size` bytes (for realloc: the larger of the two sizes).
fn tally(size: usize, large: &AtomicU64, small: &mut u64) {
    if size >= THRESHOLD {
        large.fetch_add(1, Ordering::Relaxed);
    } else {
        *small += 1;
    }
}

/// Byte `pos` of the sparse pattern of `id`: byte `pos % 8` of word `pos / 8`.
fn sparse_byte(id: u64, pos: usize) -> u8 {
    pattern_word(id, pos / 8).to_ne_bytes()[pos % 8]
}

/// The byte ranges of a block of `len` bytes that carry the sparse pattern, besides the words
/// at every multiple of STRIDE: the first and the last ENDS bytes.
fn sparse_ends(len: usize) -> [std::ops::Range<usize>; 2] {
    [0..len.min(ENDS), len.saturating_sub(ENDS)..len]
}

/// Writes the sparse pattern of `id` into the `len` bytes at `p`.
///
/// # Safety
/// `p` is valid for writes of `len` bytes and aligned to at least 8.
unsafe fn sparse_fill(p: *mut u8, len: usize, id: u64) {
    let mut off = 0;
    while off + 8 <= len {
        // SAFETY: off + 8 <= len, and p + off is 8-aligned (p is, STRIDE is a multiple of 8).
        unsafe { p.add(off).cast::<u64>().write(pattern_word(id, off / 8)) };
        off += STRIDE;
    }
    for r in sparse_ends(len) {
        for pos in r {
            // SAFETY: pos < len.
            unsafe { p.add(pos).write(sparse_byte(id, pos)) };
        }
    }
}

/// Checks the first `kept` bytes at `p` of a block whose `written` bytes got the sparse
/// pattern of `id` (`kept <= written`); returns the first wrong offset.
///
/// # Safety
/// `p` is valid for reads of `kept` bytes and aligned to at least 8.
unsafe fn sparse_check(p: *const u8, written: usize, kept: usize, id: u64) -> Option<usize> {
    let mut off = 0;
    while off + 8 <= kept {
        // SAFETY: off + 8 <= kept, and p + off is 8-aligned.
        let w = unsafe { p.add(off).cast::<u64>().read() };
        if w != pattern_word(id, off / 8) {
            // SAFETY: as above, the 8 bytes at off are readable.
            let s = unsafe { std::slice::from_raw_parts(p.add(off), 8) };
            let i = (0..8).find(|&i| s[i] != sparse_byte(id, off + i)).unwrap();
            return Some(off + i);
        }
        off += STRIDE;
    }
    for r in sparse_ends(written) {
        for pos in r.start..r.end.min(kept) {
            // SAFETY: pos < kept.
            if unsafe { p.add(pos).read() } != sparse_byte(id, pos) {
                return Some(pos);
            }
        }
    }
    None
}

/// Checks that the fresh block of `len` bytes at `p` (from alloc_zeroed) reads zero and marks
/// it with the pattern of `id`; returns the first nonzero offset (the block is then only partly
/// marked). In CI mode every byte is checked, then the full pattern written.
///
/// In soak mode only the sparse positions are checked, and each page's word is checked and
/// written in one atomic compare-exchange: a write access, so a page not yet faulted in is
/// faulted in once, for writing. (Reading first would map the shared zero page, and the pattern
/// write would then take a second, copy-on-write fault with a TLB shootdown on every fresh page:
/// about a sixth of the soak's time.)
///
/// # Safety
/// `p` is valid for reads and writes of `len` bytes, aligned to at least 8, and not accessed by
/// anyone else meanwhile.
unsafe fn zero_check_and_fill(p: *mut u8, len: usize, id: u64, soak: bool) -> Option<usize> {
    if !soak {
        // SAFETY: p is readable and writable for len bytes and ours alone.
        let s = unsafe { std::slice::from_raw_parts_mut(p, len) };
        let bad = first_not(s, 0);
        if bad.is_none() {
            fill_pattern(s, id);
        }
        return bad;
    }
    let mut off = 0;
    while off + 8 <= len {
        // SAFETY: off + 8 <= len, p + off is 8-aligned (p is, STRIDE is a multiple of 8), and
        // nobody else accesses the block, so atomic access to it cannot race.
        let w = unsafe { std::sync::atomic::AtomicU64::from_ptr(p.add(off).cast::<u64>()) };
        if let Err(v) = w.compare_exchange(
            0,
            pattern_word(id, off / 8),
            Ordering::Relaxed,
            Ordering::Relaxed,
        ) {
            let i = v.to_ne_bytes().iter().position(|&b| b != 0).unwrap();
            return Some(off + i);
        }
        off += STRIDE;
    }
    // The ends, except the words just checked and marked.
    let marked = |pos: usize| pos % STRIDE < 8 && pos - pos % STRIDE + 8 <= len;
    for r in sparse_ends(len) {
        for pos in r.filter(|&pos| !marked(pos)) {
            // SAFETY: pos < len.
            if unsafe { p.add(pos).read() } != 0 {
                return Some(pos);
            }
        }
    }
    for r in sparse_ends(len) {
        for pos in r {
            // SAFETY: pos < len.
            unsafe { p.add(pos).write(sparse_byte(id, pos)) };
        }
    }
    None
}

/// Writes the pattern of `b.id` into `b` (every byte, or sparse in soak mode).
fn fill(b: &Block, plan: &Plan) {
    if plan.soak {
        // SAFETY: b.ptr is a live block of b.size bytes owned by this thread, aligned to
        // b.align >= 8.
        unsafe { sparse_fill(b.ptr, b.size, b.id) };
    } else {
        // SAFETY: b.ptr is a live block of b.size bytes owned by this thread.
        fill_pattern(
            unsafe { std::slice::from_raw_parts_mut(b.ptr, b.size) },
            b.id,
        );
    }
}

/// Checks the first `kept` bytes of `b` (whose `b.size` bytes were filled with its pattern);
/// panics with the details on the first wrong byte.
fn check(b: &Block, kept: usize, plan: &Plan, at: &At, when: fmt::Arguments) {
    debug_assert!(kept <= b.size);
    let bad = if plan.soak {
        // SAFETY: the first kept bytes at b.ptr are live and owned by this thread (the whole
        // block before a realloc or free, the kept prefix after one); b.ptr is 8-aligned.
        unsafe { sparse_check(b.ptr, b.size, kept, b.id) }
    } else {
        // SAFETY: as above.
        check_pattern(unsafe { std::slice::from_raw_parts(b.ptr, kept) }, b.id)
    };
    let Some(off) = bad else { return };
    let expected = if plan.soak {
        sparse_byte(b.id, off)
    } else {
        pattern_byte(b.id, off)
    };
    // The 8-byte word around the bad byte, to tell a dropped (zero) page from a stale one.
    let w = off & !7;
    let n = 8.min(kept - w);
    // SAFETY: w + n <= kept, readable as above.
    let found = unsafe { std::slice::from_raw_parts(b.ptr.add(w), n) };
    panic!(
        "{at}: {when}: block id {:#x} ({} bytes, {kept} checked, align {}, at {:p}) corrupted at \
         offset {off} (page {} of the block): {:#04x}, expected {:#04x}; bytes {w}..{}: \
         {found:02x?}{}",
        b.id,
        b.size,
        b.align,
        b.ptr,
        off / STRIDE,
        found[off - w],
        expected,
        w + n,
        if found.iter().all(|&x| x == 0) {
            " (zero: page dropped or zeroed)"
        } else {
            ""
        }
    );
}

/// One worker: runs random ops until `stop`, counting large ops into `large`; returns the number
/// of small ops.
fn worker(
    a: &PageAlloc,
    plan: &Plan,
    seed: u64,
    thread: u64,
    stop: &AtomicBool,
    large: &AtomicU64,
    what: &str,
) -> u64 {
    let mut rng = XorShift::new(seed ^ (thread + 1).wrapping_mul(0xA24B_AED4_963E_E407));
    let mut slots: Vec<Option<Block>> = (0..SLOTS).map(|_| None).collect();
    let mut small = 0u64;
    let mut at = At {
        what,
        thread,
        op: 0,
    };
    let mut next_id = thread << 40;
    while !stop.load(Ordering::Relaxed) {
        at.op += 1;
        let i = rng.range(0, SLOTS as u64 - 1) as usize;
        match slots[i].take() {
            None => {
                let size = random_size(&mut rng, plan.soak);
                let align = random_align(&mut rng, plan.soak);
                let zeroed = rng.chance(30);
                let l = Layout::from_size_align(size, align).unwrap();
                // SAFETY: size > 0.
                let ptr = unsafe { alloc_maybe_zeroed(a, l, zeroed) };
                tally(size, large, &mut small);
                assert!(!ptr.is_null(), "{at}: alloc({l:?}) returned null");
                assert_eq!(ptr as usize % align, 0, "{at}: {ptr:p} not {align}-aligned");
                next_id += 1;
                let b = Block {
                    ptr,
                    size,
                    align,
                    id: next_id,
                };
                if zeroed {
                    // SAFETY: ptr is a fresh block of size bytes owned by this thread, aligned
                    // to align >= 8.
                    if let Some(off) = unsafe { zero_check_and_fill(ptr, size, b.id, plan.soak) } {
                        // SAFETY: off < size.
                        let v = unsafe { ptr.add(off).read() };
                        panic!("{at}: alloc_zeroed({l:?}) at {ptr:p}: byte {off} is {v:#04x}");
                    }
                } else {
                    fill(&b, plan);
                }
                slots[i] = Some(b);
            }
            Some(b) if rng.chance(50) => {
                // realloc up or down
                check(&b, b.size, plan, &at, format_args!("before realloc"));
                let new = random_size(&mut rng, plan.soak);
                let l = Layout::from_size_align(b.size, b.align).unwrap();
                // SAFETY: b.ptr is live with layout l; new > 0.
                let q = unsafe { a.realloc(b.ptr, l, new) };
                tally(b.size.max(new), large, &mut small);
                assert!(!q.is_null(), "{at}: realloc({l:?} -> {new}) returned null");
                assert_eq!(q as usize % b.align, 0, "{at}: realloc lost alignment");
                let moved = Block { ptr: q, ..b };
                let (old, from) = (b.size, b.ptr);
                check(
                    &moved,
                    old.min(new),
                    plan,
                    &at,
                    format_args!("after realloc {old} -> {new} from {from:p}"),
                );
                next_id += 1;
                let nb = Block {
                    ptr: q,
                    size: new,
                    align: b.align,
                    id: next_id,
                };
                fill(&nb, plan);
                slots[i] = Some(nb);
            }
            Some(b) => {
                check(&b, b.size, plan, &at, format_args!("before free"));
                let l = Layout::from_size_align(b.size, b.align).unwrap();
                // SAFETY: b.ptr is live with layout l.
                unsafe { a.dealloc(b.ptr, l) };
                tally(b.size, large, &mut small);
            }
        }
    }
    at.op += 1;
    for b in slots.into_iter().flatten() {
        check(&b, b.size, plan, &at, format_args!("final"));
        // SAFETY: live block with this layout.
        unsafe { a.dealloc(b.ptr, Layout::from_size_align(b.size, b.align).unwrap()) };
        tally(b.size, large, &mut small);
    }
    small
}

/// PAGEOUT over every private anonymous rw mapping every few ms until `stop`.
fn reclaimer(stop: &AtomicBool, rounds: &AtomicU64) {
    let mut maps = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        anon_rw_mappings(&mut maps);
        for &(start, end) in &maps {
            // Errors (a mapping gone meanwhile, mlocked, ...) are expected and ignored.
            let _ = advise(start as *mut u8, end - start, MADV_PAGEOUT);
        }
        rounds.fetch_add(1, Ordering::Relaxed);
        std::thread::sleep(Duration::from_millis(3));
    }
}

/// What one combination (or, summed, one policy) did.
#[derive(Clone, Copy, Debug, Default)]
struct Tally {
    large: u64,
    small: u64,
    secs: f64,
    sweeps: u64,
    large_allocs: u64,
    cache_hits: u64,
    mremaps: u64,
    decay_releases: u64,
    pressure_releases: u64,
}

impl Tally {
    fn new(large: u64, small: u64, secs: f64, sweeps: u64, s: &Stats) -> Tally {
        Tally {
            large,
            small,
            secs,
            sweeps,
            large_allocs: s.large_allocs,
            cache_hits: s.cache_hits,
            mremaps: s.mremaps,
            decay_releases: s.decay_releases,
            pressure_releases: s.pressure_releases,
        }
    }

    fn add(&mut self, o: &Tally) {
        self.large += o.large;
        self.small += o.small;
        self.secs += o.secs;
        self.sweeps += o.sweeps;
        self.large_allocs += o.large_allocs;
        self.cache_hits += o.cache_hits;
        self.mremaps += o.mremaps;
        self.decay_releases += o.decay_releases;
        self.pressure_releases += o.pressure_releases;
    }

    fn ops(&self) -> u64 {
        self.large + self.small
    }

    fn rate(&self, n: u64) -> f64 {
        n as f64 / self.secs.max(1e-9)
    }
}

impl fmt::Display for Tally {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} ops ({} large, {} small), {:.2} s, {:.0} ops/s ({:.0} large ops/s), {} reclaimer \
             sweeps; large_allocs {} cache_hits {} mremaps {} decay_releases {} \
             pressure_releases {}",
            self.ops(),
            self.large,
            self.small,
            self.secs,
            self.rate(self.ops()),
            self.rate(self.large),
            self.sweeps,
            self.large_allocs,
            self.cache_hits,
            self.mremaps,
            self.decay_releases,
            self.pressure_releases
        )
    }
}

/// Runs one combination until the plan says stop; asserts it left nothing live.
fn run_combination(r: Release, p: Prefetch, plan: &Plan, seed: u64, threads: u64) -> Tally {
    let what = format!("release={} prefetch={}", r.name(), p.name());
    let a = PageAlloc::new().with_config(
        Config::DEFAULT
            .ignore_env()
            .release(r)
            .prefetch(p)
            .threshold(THRESHOLD)
            .cache(256 * MIB)
            .decay_ms(Some(50))
            .background(true),
    );
    let stop = AtomicBool::new(false);
    let rounds = AtomicU64::new(0);
    let large = AtomicU64::new(0);
    let t0 = Instant::now();
    let small: u64 = std::thread::scope(|sc| {
        let rec = sc.spawn(|| reclaimer(&stop, &rounds));
        let hs: Vec<_> = (0..threads)
            .map(|t| {
                let (a, stop, large, what) = (&a, &stop, &large, &what);
                sc.spawn(move || worker(a, plan, seed, t, stop, large, what))
            })
            .collect();
        let mut next_progress = 60.0;
        loop {
            std::thread::sleep(Duration::from_millis(5));
            let el = t0.elapsed().as_secs_f64();
            let done = large.load(Ordering::Relaxed);
            if el >= plan.secs
                || (plan.soak && done >= plan.combo_target)
                || hs.iter().any(|h| h.is_finished())
            {
                break;
            }
            if plan.soak && el >= next_progress {
                println!(
                    "  ... {what}: {done}/{} large ops after {el:.0} s",
                    plan.combo_target
                );
                next_progress += 60.0;
            }
        }
        stop.store(true, Ordering::Relaxed);
        let mut small = 0;
        let mut failure = None;
        for h in hs {
            match h.join() {
                Ok(n) => small += n,
                Err(e) => failure = Some(e),
            }
        }
        rec.join().expect("reclaimer panicked");
        if let Some(e) = failure {
            std::panic::resume_unwind(e);
        }
        small
    });
    let el = t0.elapsed().as_secs_f64();
    let s = a.stats();
    let t = Tally::new(large.into_inner(), small, el, rounds.into_inner(), &s);
    println!("stress {what}: {t}");
    assert!(t.ops() > 0 && t.sweeps > 0, "{what}: nothing ran");
    assert_eq!(
        s.live_bytes, 0,
        "{what}: live_bytes after freeing all: {s:?}"
    );
    if plan.soak {
        assert!(
            t.large >= plan.combo_target,
            "{what}: {} large ops in {el:.0} s, short of {} (cap PAGEWISE_STRESS_SECS={})",
            t.large,
            plan.combo_target,
            plan.secs
        );
    }
    t
}

#[test]
fn stress_every_policy_and_prefetch() {
    let soak = std::env::var("PAGEWISE_SOAK").is_ok_and(|v| v == "1");
    let policy_target = if soak {
        env_f64("PAGEWISE_SOAK_OPS").map_or(SOAK_OPS, |n| n as u64)
    } else {
        0
    };
    let modes = Prefetch::ALL.len() as u64;
    let plan = Plan {
        soak,
        secs: env_f64("PAGEWISE_STRESS_SECS").unwrap_or(if soak { SOAK_CAP_SECS } else { 2.5 }),
        combo_target: policy_target.div_ceil(modes),
    };
    let threads = env_f64("PAGEWISE_STRESS_THREADS")
        .map_or(3, |t| t as u64)
        .max(1);
    let seed = std::env::var("PAGEWISE_STRESS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5EED_2024u64);
    if soak {
        println!(
            "stress soak: seed {seed}, {threads} threads, {policy_target} large ops per policy \
             ({} per combination, cap {} s each), sparse pattern",
            plan.combo_target, plan.secs
        );
    } else {
        println!(
            "stress: seed {seed}, {threads} threads, {} s per combination, full pattern",
            plan.secs
        );
    }
    let t_all = Instant::now();
    let mut policies = Vec::new();
    for r in Release::ALL {
        let mut pt = Tally::default();
        for p in Prefetch::ALL {
            pt.add(&run_combination(r, p, &plan, seed, threads));
        }
        println!("stress policy {}: {pt}", r.name());
        policies.push((r, pt));
    }
    let total_secs = t_all.elapsed().as_secs_f64();
    println!(
        "stress summary ({}, seed {seed}, {threads} threads + 1 reclaimer):",
        if soak { "soak" } else { "CI" }
    );
    println!(
        "  {:<9} {:>10} {:>9} {:>8} {:>13} {:>10} {:>7}",
        "policy", "large ops", "small", "secs", "large ops/s", "ops/s", "sweeps"
    );
    let mut all = Tally::default();
    for (r, t) in &policies {
        println!(
            "  {:<9} {:>10} {:>9} {:>8.1} {:>13.0} {:>10.0} {:>7}",
            r.name(),
            t.large,
            t.small,
            t.secs,
            t.rate(t.large),
            t.rate(t.ops()),
            t.sweeps
        );
        all.add(t);
    }
    println!(
        "  {:<9} {:>10} {:>9} {:>8.1} {:>13.0} {:>10.0} {:>7}",
        "all",
        all.large,
        all.small,
        all.secs,
        all.rate(all.large),
        all.rate(all.ops()),
        all.sweeps
    );
    println!(
        "stress total: {} ops ({} large), {total_secs:.1} s wall, {} combinations",
        all.ops(),
        all.large,
        policies.len() * Prefetch::ALL.len()
    );
    for (r, t) in &policies {
        assert!(
            t.large >= policy_target,
            "release={}: {} large ops, short of the target {policy_target}",
            r.name(),
            t.large
        );
    }
}

//! Stress under every release policy × prefetch mode: several threads allocate, realloc up and
//! down, alloc_zeroed and free blocks of random sizes (4 KiB … 64 MiB) and alignments
//! (8 B … 2 MiB), each filled with a pattern derived from its identity and checked before every
//! realloc and free. Meanwhile a reclaimer thread calls MADV_PAGEOUT over every private
//! anonymous mapping of the process every few ms, which drops lazily freed pages exactly as
//! memory pressure would.
//!
//! CI default: about 2.5 s per combination (~50 s in all). Longer:
//! `PAGEWISE_SOAK=1` (30 s per combination) or `PAGEWISE_STRESS_SECS=<f64>` per combination;
//! `PAGEWISE_STRESS_SEED=<u64>` replays a seed; `PAGEWISE_STRESS_THREADS=<n>` (default 3).

mod common;

use std::alloc::{GlobalAlloc, Layout};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::*;
use pagewise::{Config, PageAlloc, Prefetch, Release};

const MIN_SIZE: u64 = 4 * KIB as u64;
const MAX_SIZE: u64 = 64 * MIB as u64;
const MAX_ALIGN_POW: u64 = 21; // 2 MiB
const SLOTS: usize = 8;

struct Block {
    ptr: *mut u8,
    size: usize,
    align: usize,
    id: u64,
}

fn env_f64(name: &str) -> Option<f64> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

/// Log-uniform size in MIN_SIZE..=MAX_SIZE, sometimes off a page boundary.
fn random_size(rng: &mut XorShift) -> usize {
    let lo = (MIN_SIZE as f64).ln();
    let hi = (MAX_SIZE as f64).ln();
    let u = (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
    let mut s = (lo + (hi - lo) * u).exp() as u64;
    if rng.chance(50) {
        s = s.saturating_sub(rng.range(0, 4095)).max(MIN_SIZE);
    }
    s.clamp(MIN_SIZE, MAX_SIZE) as usize
}

fn check(b: &Block, what: &str) {
    // SAFETY: b.ptr is a live block of b.size bytes owned by this thread.
    let s = unsafe { std::slice::from_raw_parts(b.ptr, b.size) };
    if let Some(off) = check_pattern(s, b.id) {
        panic!(
            "{what}: block id {:#x} ({} bytes, align {}, at {:p}) corrupted at offset {off}: \
             {:#04x}, expected {:#04x}",
            b.id,
            b.size,
            b.align,
            b.ptr,
            s[off],
            pattern_byte(b.id, off)
        );
    }
}

fn fill(b: &Block) {
    // SAFETY: b.ptr is a live block of b.size bytes owned by this thread.
    fill_pattern(
        unsafe { std::slice::from_raw_parts_mut(b.ptr, b.size) },
        b.id,
    );
}

/// One worker: runs random ops until `stop`; returns the number of ops.
fn worker(a: &PageAlloc, seed: u64, thread: u64, stop: &AtomicBool, what: &str) -> u64 {
    let mut rng = XorShift::new(seed ^ (thread + 1).wrapping_mul(0xA24B_AED4_963E_E407));
    let mut slots: Vec<Option<Block>> = (0..SLOTS).map(|_| None).collect();
    let mut ops = 0u64;
    let mut next_id = thread << 40;
    while !stop.load(Ordering::Relaxed) {
        ops += 1;
        let i = rng.range(0, SLOTS as u64 - 1) as usize;
        let what = format!("{what} thread {thread} op {ops}");
        match slots[i].take() {
            None => {
                let size = random_size(&mut rng);
                let align = 1usize << rng.range(3, MAX_ALIGN_POW);
                let zeroed = rng.chance(30);
                let l = Layout::from_size_align(size, align).unwrap();
                // SAFETY: size > 0.
                let ptr = unsafe { alloc_maybe_zeroed(a, l, zeroed) };
                assert!(!ptr.is_null(), "{what}: alloc({l:?}) returned null");
                assert_eq!(
                    ptr as usize % align,
                    0,
                    "{what}: {ptr:p} not {align}-aligned"
                );
                if zeroed {
                    // SAFETY: ptr is a fresh block of size bytes.
                    let s = unsafe { std::slice::from_raw_parts(ptr, size) };
                    if let Some(off) = first_not(s, 0) {
                        panic!(
                            "{what}: alloc_zeroed({l:?}) at {ptr:p}: byte {off} is {:#04x}",
                            s[off]
                        );
                    }
                }
                next_id += 1;
                let b = Block {
                    ptr,
                    size,
                    align,
                    id: next_id,
                };
                fill(&b);
                slots[i] = Some(b);
            }
            Some(b) if rng.chance(50) => {
                // realloc up or down
                check(&b, &format!("{what}: before realloc"));
                let new = random_size(&mut rng);
                let l = Layout::from_size_align(b.size, b.align).unwrap();
                // SAFETY: b.ptr is live with layout l; new > 0.
                let q = unsafe { a.realloc(b.ptr, l, new) };
                assert!(
                    !q.is_null(),
                    "{what}: realloc({:?} -> {new}) returned null",
                    l
                );
                assert_eq!(q as usize % b.align, 0, "{what}: realloc lost alignment");
                let kept = Block {
                    ptr: q,
                    size: b.size.min(new),
                    align: b.align,
                    id: b.id,
                };
                check(&kept, &format!("{what}: after realloc {} -> {new}", b.size));
                let nb = Block {
                    ptr: q,
                    size: new,
                    align: b.align,
                    id: b.id,
                };
                fill(&nb);
                slots[i] = Some(nb);
            }
            Some(b) => {
                check(&b, &format!("{what}: before free"));
                let l = Layout::from_size_align(b.size, b.align).unwrap();
                // SAFETY: b.ptr is live with layout l.
                unsafe { a.dealloc(b.ptr, l) };
            }
        }
    }
    for b in slots.into_iter().flatten() {
        check(&b, &format!("{what} thread {thread}: final"));
        // SAFETY: live block with this layout.
        unsafe { a.dealloc(b.ptr, Layout::from_size_align(b.size, b.align).unwrap()) };
    }
    ops
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

#[test]
fn stress_every_policy_and_prefetch() {
    let soak = std::env::var("PAGEWISE_SOAK").is_ok_and(|v| v == "1");
    let secs = env_f64("PAGEWISE_STRESS_SECS").unwrap_or(if soak { 30.0 } else { 2.5 });
    let threads = env_f64("PAGEWISE_STRESS_THREADS")
        .map_or(3, |t| t as u64)
        .max(1);
    let seed = std::env::var("PAGEWISE_STRESS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5EED_2024u64);
    println!("stress: seed {seed}, {threads} threads, {secs} s per combination");
    let (mut total_ops, mut total_reclaims) = (0u64, 0u64);
    let t_all = Instant::now();
    for r in Release::ALL {
        for p in Prefetch::ALL {
            let what = format!("release={} prefetch={}", r.name(), p.name());
            let a = PageAlloc::new().with_config(
                Config::DEFAULT
                    .ignore_env()
                    .release(r)
                    .prefetch(p)
                    .threshold(256 * KIB)
                    .cache(256 * MIB)
                    .decay_ms(Some(50))
                    .background(true),
            );
            let stop = AtomicBool::new(false);
            let rounds = AtomicU64::new(0);
            let t0 = Instant::now();
            let ops: u64 = std::thread::scope(|sc| {
                let rec = sc.spawn(|| reclaimer(&stop, &rounds));
                let hs: Vec<_> = (0..threads)
                    .map(|t| {
                        let (a, stop, what) = (&a, &stop, &what);
                        sc.spawn(move || worker(a, seed, t, stop, what))
                    })
                    .collect();
                std::thread::sleep(Duration::from_secs_f64(secs));
                stop.store(true, Ordering::Relaxed);
                let mut ops = 0;
                let mut failure = None;
                for h in hs {
                    match h.join() {
                        Ok(n) => ops += n,
                        Err(e) => failure = Some(e),
                    }
                }
                rec.join().expect("reclaimer panicked");
                if let Some(e) = failure {
                    std::panic::resume_unwind(e);
                }
                ops
            });
            let el = t0.elapsed().as_secs_f64();
            let reclaims = rounds.load(Ordering::Relaxed);
            let s = a.stats();
            println!(
                "stress {what}: {ops} ops, {threads} threads, {el:.2} s, {reclaims} reclaims \
                 (PAGEOUT sweeps); large_allocs {} mremaps {} cache_hits {} decay_releases {}",
                s.large_allocs, s.mremaps, s.cache_hits, s.decay_releases
            );
            assert!(ops > 0 && reclaims > 0, "{what}: nothing ran");
            assert_eq!(
                s.live_bytes, 0,
                "{what}: live_bytes after freeing all: {s:?}"
            );
            total_ops += ops;
            total_reclaims += reclaims;
        }
    }
    println!(
        "stress total: {total_ops} ops, {threads} threads (+1 reclaimer), {:.1} s, \
         {total_reclaims} reclaims, 20 combinations, seed {seed}",
        t_all.elapsed().as_secs_f64()
    );
}

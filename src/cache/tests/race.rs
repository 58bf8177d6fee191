//! Threads racing on one cache: workers insert and take ranges of a shared arena while another
//! thread plays the background thread (holding every slot and putting it back, draining,
//! coalescing). Afterwards no page may be lost or held twice, and the counts must be exact
//! whatever the interleaving was.

use core::sync::atomic::{AtomicBool, Ordering::Relaxed};

use super::model::{full_ranges, Xorshift};
use super::*;
use crate::os::PAGE;

const BASE: usize = 0x8000_0000;
const WORKERS: usize = 3;
const PAGES_EACH: usize = 256;
const OPS: usize = if cfg!(debug_assertions) {
    20_000
} else {
    200_000
};

/// One worker: random inserts and takes; returns the ranges it holds at the end.
fn worker(c: &Cache, t: usize) -> Vec<Range> {
    let mut rng = Xorshift(0x2545_F491_4F6C_DD1D * (t as u64 + 1));
    let start = BASE + t * PAGES_EACH * PAGE;
    let mut loose: Vec<Range> = (0..PAGES_EACH / 4)
        .map(|i| Range {
            addr: start + i * 4 * PAGE,
            len: 4 * PAGE,
            pages: Pages::Resident,
            since_ms: 0,
        })
        .collect();
    for op in 0..OPS as u64 {
        match rng.below(10) {
            0..=4 if !loose.is_empty() => {
                let r = Range {
                    pages: rng.pages(),
                    since_ms: op,
                    ..loose.swap_remove(rng.below(loose.len()))
                };
                if let Err(merged) = c.insert(r) {
                    loose.push(merged);
                }
            }
            5..=6 => {
                let need = (1 + rng.below(6)) * PAGE;
                if let Some((block, head, tail)) = c.take(need, PAGE << rng.below(2)) {
                    loose.extend([Some(block), head, tail].into_iter().flatten());
                }
            }
            7 if !loose.is_empty() => {
                let (addr, len) = (
                    loose[rng.below(loose.len())].end(),
                    PAGE * (1 + rng.below(4)),
                );
                if let Some((pages, rest)) = c.take_at(addr, len) {
                    let since_ms = op;
                    loose.push(Range {
                        addr,
                        len,
                        pages,
                        since_ms,
                    });
                    loose.extend(rest);
                }
            }
            8 => loose.extend(c.take_smallest()),
            _ => loose.extend(c.take_oldest()),
        }
    }
    loose
}

/// The background thread's part: looks at every slot (holding each, putting it back), sometimes
/// takes ranges out and puts them back, and coalesces; until `stop`. Returns what it holds.
fn background(c: &Cache, stop: &AtomicBool) -> Vec<Range> {
    let mut rng = Xorshift(0x9E37_79B9);
    let mut mine = Vec::new();
    while !stop.load(Relaxed) {
        c.drain(|_| false, |_| unreachable!());
        let salt = rng.below(5);
        c.drain(|r| (r.addr / PAGE + salt) % 5 == 0, |r| mine.push(r));
        // Put back what it took; with full slots, keep the rest for the next round.
        while let Some(r) = mine.pop() {
            if let Err(merged) = c.insert(r) {
                mine.push(merged);
                break;
            }
        }
        if rng.below(8) == 0 {
            c.coalesce();
        }
    }
    mine
}

#[test]
fn racing_threads_lose_no_page_and_keep_counts_exact() {
    let c = Cache::new();
    let stop = AtomicBool::new(false);
    let mut held = std::thread::scope(|s| {
        let bg = s.spawn(|| background(&c, &stop));
        let workers: Vec<_> = (0..WORKERS)
            .map(|t| {
                s.spawn({
                    let c = &c;
                    move || worker(c, t)
                })
            })
            .collect();
        let mut held: Vec<Range> = workers
            .into_iter()
            .flat_map(|w| w.join().unwrap())
            .collect();
        stop.store(true, Relaxed);
        held.extend(bg.join().unwrap());
        held
    });
    // Quiet now: the counts must equal what the slots hold, exactly.
    let bytes = ok(&c);
    let cached = full_ranges(&c);
    assert_eq!(
        bytes.total,
        cached.iter().map(|r| r.len as u64).sum::<u64>()
    );
    c.drain(|_| true, |r| held.push(r));
    assert_eq!(ok(&c), CachedBytes::default());
    held.sort_by_key(|r| r.addr);
    for w in held.windows(2) {
        assert!(w[0].end() <= w[1].addr, "{:x?} overlaps {:x?}", w[0], w[1]);
    }
    let total: usize = held.iter().map(|r| r.len).sum();
    assert_eq!(total, WORKERS * PAGES_EACH * PAGE);
}

//! Runs: a request that no single range fits is served by adjacent cached ranges, taken out
//! together and merged (coalescing on demand).
//!
//! Four steps, each a function: a snapshot of the FULL slots sorted by address, the shortest run
//! in it that fits, holding every slot of that run (all or none), and taking them out. This is on
//! the allocation path, so the snapshot lives on the stack and stays at 1.5 KiB.

use super::{Cache, Pages, Range, SLOTS};

/// How many snapshots one request may take. A slot held or changed between a snapshot and its
/// hold (decay, another thread's take) makes an attempt fail; a few more almost always get
/// through.
const ATTEMPTS: usize = 4;

/// What a scan saw of one FULL slot (no timestamp: 24 bytes, so the snapshot stays at 1.5 KiB of
/// stack).
#[derive(Clone, Copy)]
struct Seen {
    addr: usize,
    len: usize,
    pages: Pages,
    slot: u8,
}

const NONE: Seen = Seen {
    addr: 0,
    len: 0,
    pages: Pages::Zero,
    slot: 0,
};

// The stack bound above, at compile time; and slot indices must fit `Seen::slot`.
const _: () = assert!(core::mem::size_of::<[Seen; SLOTS]>() <= 1536);
const _: () = assert!(SLOTS <= u8::MAX as usize + 1);

/// The first and last index (in the snapshot) of a run and its total length.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Run {
    first: usize,
    last: usize,
    total: usize,
}

impl Cache {
    /// Takes the shortest run of adjacent cached ranges in the same page state (one range is a
    /// run too; the run starting at `from` only, if given) for which `fits(start, total_len)`
    /// holds, merged into one range. `None` if there is none (or if other threads kept holding
    /// its slots through [`ATTEMPTS`] attempts).
    pub(super) fn take_run(
        &self,
        from: Option<usize>,
        fits: impl Fn(usize, usize) -> bool,
    ) -> Option<Range> {
        let mut seen = [NONE; SLOTS];
        for _ in 0..ATTEMPTS {
            let n = self.snapshot(&mut seen);
            let snap = &seen[..n];
            let run = shortest_run(snap, from, &fits)?;
            let run_seen = &snap[run.first..=run.last];
            if let Some(since_ms) = self.hold_run(run_seen) {
                return Some(self.take_out_run(run_seen, run.total, since_ms));
            }
        }
        None
    }

    /// Fills `seen` with the FULL slots sorted by address; returns how many. Unheld reads may be
    /// stale: [`Cache::hold_run`] re-checks.
    fn snapshot(&self, seen: &mut [Seen; SLOTS]) -> usize {
        let mut n = 0;
        for (i, slot) in self.slots.iter().enumerate() {
            let Some(r) = slot.peek() else {
                continue;
            };
            // Insertion sort: a few dozen entries, no allocation.
            let mut k = n;
            while k > 0 && seen[k - 1].addr > r.addr {
                seen[k] = seen[k - 1];
                k -= 1;
            }
            seen[k] = Seen {
                addr: r.addr,
                len: r.len,
                pages: r.pages,
                slot: i as u8,
            };
            n += 1;
        }
        n
    }

    /// Holds every slot of `run`, checking that each still holds what the snapshot saw. Returns
    /// the latest `since_ms` of the run, every slot then HELD; or `None`, every slot put back as
    /// it was (another thread got there first).
    fn hold_run(&self, run: &[Seen]) -> Option<u64> {
        let mut since_ms = 0;
        let mut held = 0;
        for seen in run {
            let Some(h) = self.slots[seen.slot as usize].hold_full() else {
                break;
            };
            let r = h.range;
            if (r.addr, r.len, r.pages) != (seen.addr, seen.len, seen.pages) {
                h.put_back_unchanged();
                break;
            }
            // Not keeping the token (a run may span every slot, and the stack is bounded):
            // `run[..held]` says which slots this thread holds from here on.
            since_ms = since_ms.max(r.since_ms);
            held += 1;
        }
        if held == run.len() {
            return Some(since_ms);
        }
        for seen in &run[..held] {
            self.slots[seen.slot as usize].put_back_unchanged();
        }
        None
    }

    /// Takes out every slot of a run this thread holds (see [`Cache::hold_run`]): one range of
    /// `total` bytes from the first one's start.
    fn take_out_run(&self, run: &[Seen], total: usize, since_ms: u64) -> Range {
        for seen in run {
            self.slots[seen.slot as usize].vacate();
        }
        // One subtraction for the whole run: its ranges share their page state.
        self.counts.sub(run[0].pages, total);
        Range {
            addr: run[0].addr,
            len: total,
            pages: run[0].pages,
            since_ms,
        }
    }
}

/// The run in `snap` (sorted by address) with the smallest total for which `fits(start, total)`
/// holds, starting at `from` if given. From each start the run grows only until it fits: a longer
/// one from the same start would be bigger.
fn shortest_run(
    snap: &[Seen],
    from: Option<usize>,
    fits: impl Fn(usize, usize) -> bool,
) -> Option<Run> {
    let mut best: Option<Run> = None;
    for (i, first) in snap.iter().enumerate() {
        if from.is_some_and(|a| a != first.addr) {
            continue;
        }
        let (mut j, mut total) = (i, first.len);
        loop {
            if fits(first.addr, total) {
                if best.is_none_or(|b| total < b.total) {
                    best = Some(Run {
                        first: i,
                        last: j,
                        total,
                    });
                }
                break;
            }
            let Some(next) = snap.get(j + 1) else {
                break;
            };
            let prev = snap[j];
            if next.addr != prev.addr + prev.len || next.pages != first.pages {
                break;
            }
            j += 1;
            total += next.len;
        }
    }
    best
}

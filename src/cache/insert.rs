//! Putting ranges in the cache, and merging neighbours when the slots run out.

use super::{Cache, Range};

impl Cache {
    /// Puts `r` in the cache as it is, so that a program that frees and allocates the same sizes
    /// again finds each block whole (best fit then replays the previous layout exactly). Only
    /// when every slot is taken are neighbours coalesced to make room; gives `r` back (merged
    /// with its neighbours, which then left the cache too) if that does not free a slot either.
    pub(crate) fn insert(&self, r: Range) -> Result<(), Range> {
        debug_assert!(
            r.is_well_formed(),
            "inserting a range not of whole pages: {r:?}"
        );
        if self.put(r) {
            return Ok(());
        }
        self.coalesce();
        let (r, _) = self.absorb_neighbours(r);
        if self.put(r) {
            Ok(())
        } else {
            Err(r)
        }
    }

    /// Publishes `r` in an empty slot, if there is one.
    fn put(&self, r: Range) -> bool {
        for slot in &self.slots {
            if let Some(filling) = slot.hold_empty() {
                self.enter(filling, r);
                return true;
            }
        }
        false
    }

    /// Merges every cached range with the cached ranges right before and after it whose pages
    /// are in the same state; returns whether anything merged. Used only when every slot is
    /// taken: otherwise merging is deferred to [`Cache::take`], which merges just the run a
    /// request needs. Merging on every free fused blocks that a program frees side by side (a
    /// HashMap's successive tables) into one big range; the next build carved its small tables
    /// out of it and then found no hole for its biggest one. Measured on a 4 M-entry
    /// `HashMap<u64, u64>` built 8 times: eager merging cached 411 MiB and took ~580 ms on the
    /// second build (fresh pages) against ~270 ms on later ones; deferred merging replays the
    /// first build's layout (273 MiB cached, ~300 ms from the second build on). The test
    /// `a_doubling_table_replays_its_layout_from_the_cache` keeps this.
    pub(crate) fn coalesce(&self) -> bool {
        let mut any = false;
        for slot in &self.slots {
            let Some(held) = slot.hold_full() else {
                continue;
            };
            // Held, this slot is skipped by the scan for neighbours: it cannot absorb itself.
            match self.absorb_neighbours(held.range) {
                (merged, true) => {
                    self.replace(held, merged);
                    any = true;
                }
                (_, false) => held.put_back_unchanged(),
            }
        }
        any
    }

    /// Takes the cached neighbours of `r` (same page state) out of their slots and returns `r`
    /// grown over them, and whether there was any.
    pub(super) fn absorb_neighbours(&self, mut r: Range) -> (Range, bool) {
        // A merge can make the range adjacent to a slot scanned before it: scan until a pass
        // merges nothing (at most a few passes: each merge empties a slot).
        let mut any = false;
        let mut merged = true;
        while merged {
            merged = false;
            for slot in &self.slots {
                let adjacent = |addr, len| addr + len == r.addr || addr == r.end();
                if !slot.peek_extent().is_some_and(|(a, l)| adjacent(a, l)) {
                    continue;
                }
                let Some(held) = slot.hold_full() else {
                    continue;
                };
                let n = held.range;
                if n.pages != r.pages || !adjacent(n.addr, n.len) {
                    held.put_back_unchanged(); // replaced since the unheld read
                    continue;
                }
                let n = self.take_out(held);
                r = Range {
                    addr: r.addr.min(n.addr),
                    len: r.len + n.len,
                    pages: r.pages,
                    since_ms: r.since_ms.max(n.since_ms),
                };
                merged = true;
                any = true;
            }
        }
        (r, any)
    }
}

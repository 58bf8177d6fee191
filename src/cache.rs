//! The cache of freed ranges: a fixed array of slots, claimed with compare-and-swap, never a lock.
//!
//! Each slot is EMPTY, BUSY (one thread owns it for a moment) or FULL (it describes a cached range:
//! address, length, what its pages hold, and when it was freed). A thread that finds a slot BUSY
//! skips it and never waits, so a signal handler that allocates, a thread stopped by a debugger, or
//! a `fork` while a slot is BUSY cannot deadlock anyone: at worst that one range is not reused (and
//! the `fork` child resets its BUSY slots, see `engine::after_fork_in_child`).
//!
//! Ranges are plain page ranges inside pagewise's own mappings, so the cache can hand out the head
//! of a bigger range and keep the rest (a split costs no syscall), serve a request from a run of
//! adjacent ranges, and let a block grow in place into the cached ranges that follow it.
//!
//! Freed blocks are kept as they were freed and merged with their neighbours only on demand (a
//! request no single range fits, or full slots): see [`Cache::coalesce`] for the measurement
//! behind that.

use core::sync::atomic::{AtomicU64, AtomicU8, AtomicUsize, Ordering};

/// Slots per allocator: enough for the working sets in the report (the widest, a HashMap
/// rebuilt from 4 M entries, frees about 20 distinct tables), small enough that a full scan is a
/// few dozen loads.
pub(crate) const SLOTS: usize = 64;

const EMPTY: u8 = 0;
const BUSY: u8 = 1;
const FULL: u8 = 2;

/// What the pages of a cached range hold; decides whether `alloc_zeroed` must clear them and
/// whether a populate is needed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Pages {
    /// Resident, holding old data (`retain`).
    Resident,
    /// Marked `MADV_FREE`: resident until reclaimed, stale or zero page by page.
    Lazy,
    /// Dropped with `MADV_DONTNEED` or never touched: reads as zero, faults on touch.
    Zero,
}

impl Pages {
    const fn to_u64(self) -> u64 {
        match self {
            Pages::Resident => 0,
            Pages::Lazy => 1,
            Pages::Zero => 2,
        }
    }
    const fn from_u64(v: u64) -> Pages {
        match v {
            0 => Pages::Resident,
            1 => Pages::Lazy,
            _ => Pages::Zero,
        }
    }
}

/// A cached range taken out of (or to be put into) the cache.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Range {
    pub(crate) addr: usize,
    pub(crate) len: usize,
    pub(crate) pages: Pages,
    /// `os::now_ms()` when the range was freed.
    pub(crate) since_ms: u64,
}

struct Slot {
    state: AtomicU8,
    addr: AtomicUsize,
    len: AtomicUsize,
    /// `since_ms << 2 | pages`.
    meta: AtomicU64,
}

impl Slot {
    const fn new() -> Slot {
        Slot {
            state: AtomicU8::new(EMPTY),
            addr: AtomicUsize::new(0),
            len: AtomicUsize::new(0),
            meta: AtomicU64::new(0),
        }
    }

    fn claim(&self, from: u8) -> bool {
        self.state
            .compare_exchange(from, BUSY, Ordering::Acquire, Ordering::Relaxed)
            .is_ok()
    }

    /// Reads the range of a slot (exact for a slot this thread holds BUSY).
    fn read(&self) -> Range {
        let meta = self.meta.load(Ordering::Relaxed);
        Range {
            addr: self.addr.load(Ordering::Relaxed),
            len: self.len.load(Ordering::Relaxed),
            pages: Pages::from_u64(meta & 3),
            since_ms: meta >> 2,
        }
    }

    /// Publishes `r` in a slot this thread holds BUSY.
    fn publish(&self, r: Range) {
        self.addr.store(r.addr, Ordering::Relaxed);
        self.len.store(r.len, Ordering::Relaxed);
        self.meta
            .store(r.since_ms << 2 | r.pages.to_u64(), Ordering::Relaxed);
        self.state.store(FULL, Ordering::Release);
    }

    /// Hands back a slot this thread claimed from FULL and did not change.
    fn unclaim(&self) {
        self.state.store(FULL, Ordering::Release);
    }

    fn vacate(&self) {
        self.state.store(EMPTY, Ordering::Release);
    }
}

/// The slot array of one allocator.
pub(crate) struct Cache {
    slots: [Slot; SLOTS],
}

/// Where a block may be carved out of a range: the aligned start, if `need` bytes fit.
fn fit(r_addr: usize, r_len: usize, need: usize, align: usize) -> Option<usize> {
    let start = r_addr.checked_add(align - 1)? & !(align - 1);
    let end = start.checked_add(need)?;
    (end <= r_addr + r_len).then_some(start)
}

impl Cache {
    pub(crate) const fn new() -> Cache {
        Cache {
            slots: [const { Slot::new() }; SLOTS],
        }
    }

    /// Puts `r` in the cache as it is, so that a program that frees and allocates the same sizes
    /// again finds each block whole (best fit then replays the previous layout exactly). Only
    /// when every slot is taken are neighbours coalesced to make room; gives `r` back (merged
    /// with its neighbours) if that does not free a slot either.
    pub(crate) fn insert(&self, r: Range) -> Result<(), Range> {
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
            if slot.state.load(Ordering::Relaxed) == EMPTY && slot.claim(EMPTY) {
                slot.publish(r);
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
            if slot.state.load(Ordering::Acquire) != FULL || !slot.claim(FULL) {
                continue;
            }
            let (r, merged) = self.absorb_neighbours(slot.read());
            slot.publish(r);
            any |= merged;
        }
        any
    }

    /// Takes the cached neighbours of `r` (same page state) out of their slots and returns `r`
    /// grown over them, and whether there was any.
    fn absorb_neighbours(&self, mut r: Range) -> (Range, bool) {
        // A merge can make the range adjacent to a slot scanned before it: scan until a pass
        // merges nothing (at most a few passes: each merge empties a slot).
        let mut any = false;
        let mut merged = true;
        while merged {
            merged = false;
            for slot in &self.slots {
                if slot.state.load(Ordering::Acquire) != FULL {
                    continue;
                }
                let (addr, len) = (
                    slot.addr.load(Ordering::Relaxed),
                    slot.len.load(Ordering::Relaxed),
                );
                if addr + len != r.addr && addr != r.addr + r.len {
                    continue;
                }
                if !slot.claim(FULL) {
                    continue;
                }
                let n = slot.read();
                if n.pages != r.pages || (n.addr + n.len != r.addr && n.addr != r.addr + r.len) {
                    slot.publish(n);
                    continue;
                }
                slot.vacate();
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

    /// Takes the best-fitting range that can hold `need` bytes at `align`, and the leftovers on
    /// either side of the block carved from it (`None` where there is none; the caller puts them
    /// back or releases them). Best fit is the smallest range that fits, which keeps big ranges
    /// whole for big requests; when no single range fits, the smallest run of adjacent cached
    /// ranges that does is merged and carved (coalescing on demand, see [`Cache::coalesce`]).
    pub(crate) fn take(
        &self,
        need: usize,
        align: usize,
    ) -> Option<(Range, Option<Range>, Option<Range>)> {
        let fits = |addr, len| fit(addr, len, need, align).is_some();
        // An exact fit (the common case: a program reusing one size) needs no run search.
        let r = self
            .take_single(|addr, len| len == need && fits(addr, len), true)
            .or_else(|| self.take_run(None, fits))
            .or_else(|| self.take_single(fits, false))?;
        // Only a range replaced between a scan and its claim can fail here, and claims
        // re-check: `r` fits.
        let start = fit(r.addr, r.len, need, align)?;
        let head = (start > r.addr).then_some(Range {
            len: start - r.addr,
            ..r
        });
        let end = start + need;
        let tail = (end < r.addr + r.len).then_some(Range {
            addr: end,
            len: r.addr + r.len - end,
            ..r
        });
        Some((
            Range {
                addr: start,
                len: need,
                ..r
            },
            head,
            tail,
        ))
    }

    /// Takes the smallest single cached range for which `fits(addr, len)` holds (the first one
    /// found, if `first`).
    fn take_single(&self, fits: impl Fn(usize, usize) -> bool, first: bool) -> Option<Range> {
        loop {
            let mut best: Option<(usize, usize)> = None; // (slot, len)
            for (i, slot) in self.slots.iter().enumerate() {
                if slot.state.load(Ordering::Acquire) != FULL {
                    continue;
                }
                let len = slot.len.load(Ordering::Relaxed);
                let addr = slot.addr.load(Ordering::Relaxed);
                if fits(addr, len) && best.is_none_or(|(_, b)| len < b) {
                    best = Some((i, len));
                    if first {
                        break;
                    }
                }
            }
            let (i, _) = best?;
            let slot = &self.slots[i];
            if !slot.claim(FULL) {
                continue; // someone took it between the scan and the claim: scan again
            }
            let r = slot.read();
            if !fits(r.addr, r.len) {
                slot.publish(r); // replaced by another range since the scan
                continue;
            }
            slot.vacate();
            return Some(r);
        }
    }

    /// Takes the shortest run of adjacent cached ranges in the same page state (one range is a
    /// run too; the run starting at `from` only, if given) for which `fits(start, total_len)`
    /// holds, merged into one range. `None` if there is none (or if other threads kept claiming
    /// its slots through a few attempts).
    fn take_run(&self, from: Option<usize>, fits: impl Fn(usize, usize) -> bool) -> Option<Range> {
        /// What a scan saw of one FULL slot (no timestamp: 24 bytes, so the snapshot stays at
        /// 1.5 KiB of stack on the allocation path).
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
        // A slot claimed between our scan and our claim (decay, another thread's take) makes an
        // attempt fail; a few more scans almost always get through.
        for _ in 0..4 {
            // A snapshot sorted by address; unclaimed reads may be stale, claims re-check.
            let mut snap = [NONE; SLOTS];
            let mut n = 0;
            for (i, slot) in self.slots.iter().enumerate() {
                if slot.state.load(Ordering::Acquire) != FULL {
                    continue;
                }
                let r = slot.read();
                let mut k = n;
                while k > 0 && snap[k - 1].addr > r.addr {
                    snap[k] = snap[k - 1];
                    k -= 1;
                }
                snap[k] = Seen {
                    addr: r.addr,
                    len: r.len,
                    pages: r.pages,
                    slot: i as u8,
                };
                n += 1;
            }
            let snap = &snap[..n];
            let mut best: Option<(usize, usize, usize)> = None; // (first, last, total)
            for (i, first) in snap.iter().enumerate() {
                if from.is_some_and(|a| a != first.addr) {
                    continue;
                }
                let (mut j, mut total) = (i, first.len);
                loop {
                    if fits(first.addr, total) {
                        if best.is_none_or(|(_, _, b)| total < b) {
                            best = Some((i, j, total));
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
            let (first, last, total) = best?;
            let run = &snap[first..=last];
            let mut since_ms = 0;
            let mut claimed = 0;
            for seen in run {
                let slot = &self.slots[seen.slot as usize];
                if !slot.claim(FULL) {
                    break;
                }
                let r = slot.read();
                if (r.addr, r.len, r.pages) != (seen.addr, seen.len, seen.pages) {
                    slot.unclaim();
                    break;
                }
                since_ms = since_ms.max(r.since_ms);
                claimed += 1;
            }
            if claimed < run.len() {
                // Give back what this attempt claimed, untouched, and scan again.
                for seen in &run[..claimed] {
                    self.slots[seen.slot as usize].unclaim();
                }
                continue;
            }
            for seen in run {
                self.slots[seen.slot as usize].vacate();
            }
            return Some(Range {
                addr: run[0].addr,
                len: total,
                pages: run[0].pages,
                since_ms,
            });
        }
        None
    }

    /// Takes the first `len` bytes of the cached range (or run of adjacent ranges) that starts
    /// exactly at `addr`, to grow a block in place. Returns what the taken pages hold, and the
    /// rest of a run, if one was merged, for the caller to put back (the rest of a single range
    /// stays in its slot).
    pub(crate) fn take_at(&self, addr: usize, len: usize) -> Option<(Pages, Option<Range>)> {
        for slot in &self.slots {
            if slot.state.load(Ordering::Acquire) != FULL
                || slot.addr.load(Ordering::Relaxed) != addr
            {
                continue;
            }
            if slot.len.load(Ordering::Relaxed) < len {
                break; // a run may still cover it
            }
            if !slot.claim(FULL) {
                return None;
            }
            let r = slot.read();
            if r.addr != addr || r.len < len {
                slot.publish(r);
                return None;
            }
            if r.len == len {
                slot.vacate();
            } else {
                slot.publish(Range {
                    addr: addr + len,
                    len: r.len - len,
                    ..r
                });
            }
            return Some((r.pages, None));
        }
        let r = self.take_run(Some(addr), |_, total| total >= len)?;
        let rest = (r.len > len).then_some(Range {
            addr: addr + len,
            len: r.len - len,
            ..r
        });
        Some((r.pages, rest))
    }

    /// Takes every cached range for which `pick` says yes, handing each to `release` (which
    /// unmaps or advises it). Returns how many were taken.
    pub(crate) fn drain(
        &self,
        mut pick: impl FnMut(&Range) -> bool,
        mut release: impl FnMut(Range),
    ) -> usize {
        let mut n = 0;
        for slot in &self.slots {
            if slot.state.load(Ordering::Acquire) != FULL || !slot.claim(FULL) {
                continue;
            }
            let r = slot.read();
            if pick(&r) {
                slot.vacate();
                release(r);
                n += 1;
            } else {
                slot.publish(r);
            }
        }
        n
    }

    /// Takes the cached range with the lowest `rank`, skipping those ranked `None`.
    fn take_min(&self, rank: impl Fn(&Range) -> Option<u64>) -> Option<Range> {
        loop {
            let mut best: Option<(usize, u64)> = None;
            for (i, slot) in self.slots.iter().enumerate() {
                if slot.state.load(Ordering::Acquire) != FULL {
                    continue;
                }
                // An unclaimed read may mix two publications; the claim below re-checks.
                if let Some(k) = rank(&slot.read()) {
                    if best.is_none_or(|(_, b)| k < b) {
                        best = Some((i, k));
                    }
                }
            }
            let (i, _) = best?;
            let slot = &self.slots[i];
            if !slot.claim(FULL) {
                continue;
            }
            let r = slot.read();
            if rank(&r).is_none() {
                slot.publish(r); // replaced by another range since the scan
                continue;
            }
            slot.vacate();
            return Some(r);
        }
    }

    /// Takes the range freed longest ago, if any.
    pub(crate) fn take_oldest(&self) -> Option<Range> {
        self.take_min(|r| Some(r.since_ms))
    }

    /// Takes the range freed longest ago among those whose pages are still resident (retained or
    /// lazily freed) and that were freed at or before `freed_by` (ms), if any.
    pub(crate) fn take_oldest_resident(&self, freed_by: u64) -> Option<Range> {
        self.take_min(|r| (r.pages != Pages::Zero && r.since_ms <= freed_by).then_some(r.since_ms))
    }

    /// Takes the smallest cached range, if any (to make room in the slots at the least cost).
    pub(crate) fn take_smallest(&self) -> Option<Range> {
        self.take_min(|r| Some(r.len as u64))
    }

    /// Takes the largest cached range shorter than `len`, if it is at least `min` long.
    pub(crate) fn take_largest_below(&self, len: usize, min: usize) -> Option<Range> {
        self.take_min(|r| (r.len < len && r.len >= min).then(|| u64::MAX - r.len as u64))
    }

    /// Whether any slot holds a range.
    pub(crate) fn is_empty(&self) -> bool {
        self.slots
            .iter()
            .all(|s| s.state.load(Ordering::Relaxed) != FULL)
    }

    /// In a `fork` child: slots that were BUSY in the parent belong to threads that do not exist
    /// here. Their ranges (if any) are forgotten — leaked in the child, never handed out twice.
    pub(crate) fn reset_busy(&self) {
        for slot in &self.slots {
            if slot.state.load(Ordering::Relaxed) == BUSY {
                slot.vacate();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(addr: usize, len: usize) -> Range {
        Range {
            addr,
            len,
            pages: Pages::Resident,
            since_ms: addr as u64,
        }
    }

    #[test]
    fn best_fit_and_split() {
        let c = Cache::new();
        c.insert(r(0x100000, 0x40000)).unwrap();
        c.insert(r(0x800000, 0x10000)).unwrap();
        let (got, head, tail) = c.take(0x8000, 4096).unwrap();
        assert_eq!((got.addr, got.len), (0x800000, 0x8000));
        assert_eq!(head, None);
        assert_eq!(tail.map(|t| (t.addr, t.len)), Some((0x808000, 0x8000)));
        // Alignment carves a head too.
        let (got, head, tail) = c.take(0x1000, 0x20000).unwrap();
        assert_eq!(got.addr, 0x100000); // already aligned
        assert!(head.is_none() && tail.is_some());
        c.insert(r(0x201000, 0x80000)).unwrap();
        let (got, head, tail) = c.take(0x20000, 0x40000).unwrap();
        assert_eq!(got.addr, 0x240000);
        assert_eq!(head.map(|h| (h.addr, h.len)), Some((0x201000, 0x3f000)));
        assert_eq!(tail.map(|t| (t.addr, t.len)), Some((0x260000, 0x21000)));
        assert!(c.take(1 << 30, 4096).is_none());
    }

    #[test]
    fn runs_of_neighbours_serve_what_no_single_range_can() {
        let c = Cache::new();
        c.insert(r(0x10000, 0x1000)).unwrap();
        c.insert(r(0x12000, 0x1000)).unwrap();
        c.insert(Range {
            pages: Pages::Zero,
            ..r(0x13000, 0x1000)
        })
        .unwrap();
        c.insert(r(0x11000, 0x1000)).unwrap();
        // Kept apart on insert: an exact fit takes one range only.
        let (got, _, tail) = c.take(0x1000, 4096).unwrap();
        assert_eq!((got.addr, tail), (0x10000, None));
        c.insert(r(0x10000, 0x1000)).unwrap();
        // No single range holds 0x3000: the run of the three Resident ones does, not the Zero one.
        let (got, _, tail) = c.take(0x3000, 4096).unwrap();
        assert_eq!((got.addr, got.len, tail), (0x10000, 0x3000, None));
        assert_eq!(got.since_ms, 0x12000);
        assert_eq!(
            c.take_smallest().map(|x| (x.addr, x.pages)),
            Some((0x13000, Pages::Zero))
        );
        assert!(c.is_empty());
        // The shortest run that fits wins over a longer one and over a bigger single range.
        for (addr, len) in [(0x100000, 0x2000), (0x102000, 0x2000), (0x200000, 0x1000)] {
            c.insert(r(addr, len)).unwrap();
        }
        c.insert(r(0x201000, 0x1000)).unwrap();
        c.insert(r(0x202000, 0x1000)).unwrap();
        c.insert(r(0x400000, 0x10000)).unwrap();
        let (got, _, tail) = c.take(0x3000, 4096).unwrap();
        assert_eq!((got.addr, tail), (0x200000, None));
        let (got, _, tail) = c.take(0x3000, 4096).unwrap();
        assert_eq!((got.addr, tail.map(|t| t.len)), (0x100000, Some(0x1000)));
    }

    #[test]
    fn coalesce_merges_neighbours_in_the_same_state() {
        let c = Cache::new();
        c.insert(r(0x10000, 0x1000)).unwrap();
        c.insert(r(0x11000, 0x1000)).unwrap();
        c.insert(Range {
            pages: Pages::Lazy,
            ..r(0x12000, 0x1000)
        })
        .unwrap();
        assert!(c.coalesce());
        assert!(!c.coalesce());
        assert_eq!(
            c.take_smallest().map(|x| (x.addr, x.len)),
            Some((0x12000, 0x1000))
        );
        assert_eq!(
            c.take_smallest().map(|x| (x.addr, x.len)),
            Some((0x10000, 0x2000))
        );
        assert!(c.is_empty());
        // Full slots: inserting a neighbour of cached ranges coalesces to make room.
        for i in 0..SLOTS {
            c.insert(r(0x1000 * i, 0x1000)).unwrap();
        }
        c.insert(r(0x1000 * SLOTS, 0x1000)).unwrap();
        assert_eq!(c.take_smallest().map(|x| x.len), Some(0x1000 * (SLOTS + 1)));
        assert!(c.is_empty());
    }

    #[test]
    fn take_at_grows_in_place_and_drain_picks() {
        let c = Cache::new();
        c.insert(r(0x10000, 0x3000)).unwrap();
        assert_eq!(c.take_at(0x10000, 0x4000), None);
        assert_eq!(c.take_at(0x10000, 0x1000), Some((Pages::Resident, None)));
        assert_eq!(c.take_at(0x11000, 0x2000), Some((Pages::Resident, None)));
        assert!(c.is_empty());
        c.insert(r(0x40000, 0x1000)).unwrap();
        c.insert(r(0x80000, 0x3000)).unwrap();
        assert_eq!(
            c.take_largest_below(0x3000, 0).map(|x| x.addr),
            Some(0x40000)
        );
        assert_eq!(c.take_largest_below(0x1000, 0), None);
        assert_eq!(c.take_largest_below(0x8000, 0x4000), None);
        assert_eq!(
            c.take_largest_below(0x4000, 0x2000).map(|x| x.addr),
            Some(0x80000)
        );
        assert!(c.is_empty());
        for i in 0..SLOTS {
            c.insert(r(i << 20, 4096)).unwrap();
        }
        assert!(c.insert(r(1 << 40, 4096)).is_err());
        assert_eq!(c.take_oldest().map(|o| o.addr), Some(0));
        let mut seen = 0;
        let n = c.drain(|x| x.addr < 10 << 20, |_| seen += 1);
        assert_eq!((n, seen), (9, 9));
        c.reset_busy();
        assert!(!c.is_empty());
    }
}

//! The cache of freed ranges: a fixed array of slots, each held by one thread at a time through a
//! compare-and-swap, never a lock.
//!
//! A thread that finds a slot BUSY skips it and never waits, so a signal handler that allocates, a
//! thread stopped by a debugger, or a `fork` while a slot is BUSY cannot deadlock anyone: at worst
//! that one range is not reused (and the `fork` child forgets its BUSY slots, see
//! [`Cache::reset_busy`]).
//!
//! Ranges are plain page ranges inside pagewise's own mappings, so the cache can hand out the head
//! of a bigger range and keep the rest (a split costs no syscall), serve a request from a run of
//! adjacent ranges, and let a block grow in place into the cached ranges that follow it.
//!
//! Freed blocks are kept as they were freed and merged with their neighbours only on demand (a
//! request no single range fits, or full slots): see [`Cache::coalesce`] for the measurement
//! behind that.
//!
//! # Glossary
//!
//! - **Range** ([`Range`]): whole pages `addr..addr + len` inside one or more adjacent mappings
//!   of pagewise, with what its pages hold and when it was freed.
//! - **Pages** ([`Pages`]): what a range's pages hold. `Resident` (old data, retained), `Lazy`
//!   (`MADV_FREE`: resident until the kernel reclaims them) or `Zero` (dropped or never touched).
//! - **Slot**: one of the [`SLOTS`] entries of the array. Its state is EMPTY (no range), FULL (it
//!   describes a cached range) or BUSY: one thread holds it for a moment, FILLING when it took it
//!   from EMPTY (to publish a range), HELD when it took it from FULL (to look at its range, and
//!   take it out, replace it, or put it back unchanged).
//! - **Hold**: to move a slot from EMPTY or FULL to BUSY with a compare-and-swap. Only the holder
//!   writes a BUSY slot, and it always gives it back (FULL or EMPTY) before it returns. Every other
//!   thread skips a BUSY slot: a hold never blocks anyone, it is not a lock.
//! - **Take out**: a holder empties a HELD slot; the range leaves the cache and is the taker's.
//! - **Run**: cached ranges that follow one another without a gap (each ends where the next
//!   starts) and whose pages are in the same state; one range is a run too. A request that no
//!   single range fits may be served by a run, taken out and merged.
//! - **Fit**: a block of `need` bytes at `align` fits a range if the first `align`ed address in
//!   it leaves `need` bytes before the range ends. What lies before that address is the **head**,
//!   what lies after the block the **tail**; both stay free ranges.
//! - **Best fit**: the smallest range (or shortest run) that fits, so that big ranges stay whole
//!   for big requests and a program that frees and allocates the same sizes finds its layout
//!   again.
//! - **Cached bytes** ([`CachedBytes`](counts::CachedBytes)): the lengths of the cached ranges,
//!   in total and by [`Pages`]. Kept by the cache itself ([`Cache::bytes`]).
//!
//! # Who owns a range
//!
//! Every page of pagewise's mappings is, at each moment, in exactly one place: a live block (the
//! program's), the cache (a FULL slot, or a BUSY slot HELD by a thread that has not taken it out
//! yet), the hands of one pagewise thread (taken out: about to become a block, go back to the
//! cache, or be unmapped), or the kernel's (unmapped). Only a holder may move a range out of a
//! slot, so no range is ever handed out twice.
//!
//! # Invariants
//!
//! Checked by [`Cache::check`] whenever no thread is inside the cache (the unit tests run it
//! after every operation), and by `debug_assert!`s on every transition.
//!
//! 1. **Ranges**: a range in a slot starts on a page boundary and is a non-zero whole number of
//!    pages, without wrapping around the address space.
//! 2. **No overlap**: no two FULL slots share a page.
//! 3. **Transitions**: a slot goes EMPTY → FILLING → FULL (a range enters), FULL → HELD → FULL
//!    (put back, unchanged or replaced) or FULL → HELD → EMPTY (taken out), each step by the
//!    holder alone. The one exception is [`Cache::reset_busy`] in a `fork` child: BUSY → EMPTY.
//! 4. **Counts**: for each [`Pages`], the count equals the summed lengths of the ranges in FULL
//!    slots and in HELD slots (a held range stays counted until it is taken out or replaced).
//!    With no thread inside the cache, that is the sum of the FULL slots. A count grows just
//!    before its range becomes FULL (the release that publishes the slot follows it) and shrinks
//!    just after the range left; whoever takes a range out has acquired that publication, so
//!    every subtraction follows the addition it undoes and a count never underflows. A reader
//!    that runs beside other threads may see a count above the slots by the ranges in flight.
//! 5. **No waiting**: nothing in the cache waits for a BUSY slot, allocates, or panics (outside
//!    `debug_assert!`s); atomics are relaxed except for the acquire/release pairs that hand a
//!    slot's fields from one holder to the next.

mod check;
mod counts;
mod insert;
mod run;
mod slot;
mod take;
#[cfg(test)]
mod tests;

use crate::os::PAGE;
pub(crate) use check::CacheFault;
pub(crate) use counts::CachedBytes;
use counts::Counts;
pub(crate) use slot::lost_holds;
use slot::{Filling, Held, Slot};

/// Slots per allocator: enough for the working sets in the report (the widest, a HashMap
/// rebuilt from 4 M entries, frees about 20 distinct tables), small enough that a full scan is a
/// few dozen loads.
pub(crate) const SLOTS: usize = 64;

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
    /// The slot encoding (two bits), also the index of this state's byte count.
    const fn index(self) -> usize {
        match self {
            Pages::Resident => 0,
            Pages::Lazy => 1,
            Pages::Zero => 2,
        }
    }

    const fn from_index(v: usize) -> Pages {
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

impl Range {
    /// One past the last byte.
    fn end(&self) -> usize {
        self.addr + self.len
    }

    /// Whether the range honours invariant 1 (page-aligned, whole pages, not empty, no wrap).
    fn is_well_formed(&self) -> bool {
        self.len != 0
            && self.addr % PAGE == 0
            && self.len % PAGE == 0
            && self.addr.checked_add(self.len).is_some()
    }
}

/// The slot array of one allocator, and its byte counts.
pub(crate) struct Cache {
    slots: [Slot; SLOTS],
    counts: Counts,
}

impl Cache {
    pub(crate) const fn new() -> Cache {
        Cache {
            slots: [const { Slot::new() }; SLOTS],
            counts: Counts::new(),
        }
    }

    /// Whether no slot holds a range.
    pub(crate) fn is_empty(&self) -> bool {
        self.slots.iter().all(|s| !s.is_full())
    }

    /// In a `fork` child: slots that were BUSY in the parent belong to threads that do not exist
    /// here. Their ranges (if any) are forgotten (leaked in the child, never handed out twice), and
    /// leave the counts. The gone thread may have stopped between a count change and the slot
    /// change it goes with, so the counts are recomputed from the FULL slots rather than
    /// adjusted. Only for a fork child (or any moment no other thread uses the cache): a
    /// concurrent count change would be lost.
    pub(crate) fn reset_busy(&self) {
        let mut sums = [0u64; 3];
        for slot in &self.slots {
            slot.forget_if_busy();
            if let Some(r) = slot.peek() {
                sums[r.pages.index()] += r.len as u64;
            }
        }
        self.counts.set(sums);
    }

    // Every change of the counts is in the three functions below (and `take_out_run`,
    // `reset_busy`), each next to the slot transition it goes with: see invariant 4.

    /// FILLING → FULL: `r` enters the cache. Counted first, so a thread that takes it out at once
    /// subtracts after this addition.
    fn enter(&self, filling: Filling<'_>, r: Range) {
        self.counts.add(r.pages, r.len);
        filling.0.publish(r);
    }

    /// HELD → EMPTY: the held range leaves the cache and is the caller's.
    fn take_out(&self, held: Held<'_>) -> Range {
        let r = held.range;
        held.slot.vacate();
        self.counts.sub(r.pages, r.len);
        r
    }

    /// HELD → FULL with `new` in place of the held range: growth is counted before `new` is
    /// published, shrinkage after.
    fn replace(&self, held: Held<'_>, new: Range) {
        let old = held.range;
        if new.pages == old.pages && new.len < old.len {
            held.slot.publish(new);
            self.counts.sub(old.pages, old.len - new.len);
        } else if new.pages == old.pages {
            self.counts.add(new.pages, new.len - old.len);
            held.slot.publish(new);
        } else {
            self.counts.add(new.pages, new.len);
            held.slot.publish(new);
            self.counts.sub(old.pages, old.len);
        }
    }
}

/// Where a block may be carved out of a range: the aligned start, if `need` bytes fit.
fn fit(r_addr: usize, r_len: usize, need: usize, align: usize) -> Option<usize> {
    let start = r_addr.checked_next_multiple_of(align)?;
    let end = start.checked_add(need)?;
    (end <= r_addr + r_len).then_some(start)
}

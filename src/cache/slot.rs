//! One slot of the cache: its states, how a thread holds it, and how the holder gives it back.
//!
//! The state is the only field written with release and read with acquire: a holder writes the
//! range (relaxed) and then releases the slot, so the next holder, whose compare-and-swap
//! acquires it, reads exactly that range. A scan that reads a slot without holding it may see two
//! publications mixed; whoever acts on such a read holds the slot first and reads it again.

use core::sync::atomic::Ordering::{Acquire, Relaxed, Release};
use core::sync::atomic::{AtomicU64, AtomicU8, AtomicUsize};

use super::{Pages, Range};

/// Holds lost, in every cache of the process: a FULL slot found busy (another thread holds it),
/// or a compare-and-swap that found the slot held by another thread since it was loaded.
/// Counted on the losing path only, so the winning path pays nothing; it measures contention on
/// the slots (issue #20: what 64 cores would see) and is reported as `Stats::lost_holds`.
static LOST_HOLDS: AtomicU64 = AtomicU64::new(0);

#[cold]
fn lost_hold() {
    LOST_HOLDS.fetch_add(1, Relaxed);
}

/// How many holds were lost so far (see [`LOST_HOLDS`]).
pub(crate) fn lost_holds() -> u64 {
    LOST_HOLDS.load(Relaxed)
}

const EMPTY: u8 = 0;
/// BUSY, taken from EMPTY: the holder is publishing a range.
const FILLING: u8 = 1;
const FULL: u8 = 2;
/// BUSY, taken from FULL: the holder is looking at the range (still cached, still counted).
const HELD: u8 = 3;

pub(super) struct Slot {
    state: AtomicU8,
    addr: AtomicUsize,
    len: AtomicUsize,
    /// `since_ms << 2 | pages.index()`.
    meta: AtomicU64,
}

/// A slot this thread took from EMPTY (FILLING). Give it back with `Cache::enter`.
#[must_use]
pub(super) struct Filling<'a>(pub(super) &'a Slot);

/// A slot this thread took from FULL (HELD) and the range in it, exact: only the holder writes a
/// held slot. Give it back with `Cache::take_out`, `Cache::replace` or
/// [`Held::put_back_unchanged`].
#[must_use]
pub(super) struct Held<'a> {
    pub(super) slot: &'a Slot,
    pub(super) range: Range,
}

impl Held<'_> {
    /// HELD → FULL, range and counts untouched.
    pub(super) fn put_back_unchanged(self) {
        self.slot.put_back_unchanged();
    }
}

impl Slot {
    pub(super) const fn new() -> Slot {
        Slot {
            state: AtomicU8::new(EMPTY),
            addr: AtomicUsize::new(0),
            len: AtomicUsize::new(0),
            meta: AtomicU64::new(0),
        }
    }

    /// Whether the slot holds a range now (a hint: it may change at once).
    pub(super) fn is_full(&self) -> bool {
        self.state.load(Relaxed) == FULL
    }

    /// Whether a thread holds the slot (FILLING or HELD).
    pub(super) fn is_busy(&self) -> bool {
        matches!(self.state.load(Relaxed), FILLING | HELD)
    }

    /// The range of a FULL slot, read without holding it: may mix two publications, so act on it
    /// only after holding the slot and reading it again.
    pub(super) fn peek(&self) -> Option<Range> {
        (self.state.load(Acquire) == FULL).then(|| self.read())
    }

    /// The start and length of a FULL slot's range, read without holding it (see [`Slot::peek`]).
    pub(super) fn peek_extent(&self) -> Option<(usize, usize)> {
        (self.state.load(Acquire) == FULL)
            .then(|| (self.addr.load(Relaxed), self.len.load(Relaxed)))
    }

    fn read(&self) -> Range {
        let meta = self.meta.load(Relaxed);
        Range {
            addr: self.addr.load(Relaxed),
            len: self.len.load(Relaxed),
            pages: Pages::from_index((meta & 3) as usize),
            since_ms: meta >> 2,
        }
    }

    /// EMPTY → FILLING, if the slot is EMPTY.
    pub(super) fn hold_empty(&self) -> Option<Filling<'_>> {
        if self.state.load(Relaxed) != EMPTY {
            return None;
        }
        self.state
            .compare_exchange(EMPTY, FILLING, Acquire, Relaxed)
            .map_err(|_| lost_hold())
            .ok()?;
        Some(Filling(self))
    }

    /// FULL → HELD, if the slot is FULL; its range is then exactly what the slot says.
    pub(super) fn hold_full(&self) -> Option<Held<'_>> {
        // A load first: a compare-and-swap on a slot that is not FULL would still take its cache
        // line from the other cores.
        match self.state.load(Relaxed) {
            FULL => {}
            EMPTY => return None,
            _ => {
                lost_hold(); // busy: another thread holds it
                return None;
            }
        }
        self.state
            .compare_exchange(FULL, HELD, Acquire, Relaxed)
            .map_err(|_| lost_hold())
            .ok()?;
        Some(Held {
            slot: self,
            range: self.read(),
        })
    }

    /// FILLING or HELD → FULL with `r` (the counts are the caller's: see `Cache::enter`).
    pub(super) fn publish(&self, r: Range) {
        debug_assert!(
            self.is_busy(),
            "publish into a slot this thread does not hold"
        );
        debug_assert!(r.is_well_formed(), "cached range not whole pages: {r:?}");
        debug_assert!(r.since_ms < 1 << 62, "since_ms does not fit the slot");
        self.addr.store(r.addr, Relaxed);
        self.len.store(r.len, Relaxed);
        self.meta
            .store(r.since_ms << 2 | r.pages.index() as u64, Relaxed);
        self.state.store(FULL, Release);
    }

    /// HELD → FULL, the range unchanged.
    pub(super) fn put_back_unchanged(&self) {
        debug_assert_eq!(self.state.load(Relaxed), HELD, "put back a slot not held");
        self.state.store(FULL, Release);
    }

    /// HELD → EMPTY: the range was taken out (the counts are the caller's).
    pub(super) fn vacate(&self) {
        debug_assert_eq!(self.state.load(Relaxed), HELD, "vacate a slot not held");
        self.state.store(EMPTY, Release);
    }

    /// BUSY → EMPTY, for a slot whose holder no longer exists (see `Cache::reset_busy`).
    pub(super) fn forget_if_busy(&self) {
        if self.is_busy() {
            self.state.store(EMPTY, Relaxed);
        }
    }
}

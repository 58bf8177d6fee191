//! [`Cache::check`]: the invariants of the module documentation, checked on the whole cache.

use core::fmt;

use super::{Cache, Pages};

/// The first broken invariant [`Cache::check`] found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum CacheFault {
    /// A slot is BUSY although no thread should be inside the cache (a hold never given back).
    Busy { slot: usize },
    /// A slot's range is empty, not page-aligned, not whole pages, or wraps (invariant 1).
    BadRange {
        slot: usize,
        addr: usize,
        len: usize,
    },
    /// Two slots' ranges share pages (invariant 2).
    Overlap { slot: usize, other: usize },
    /// A byte count is not the sum of the FULL slots' lengths (invariant 4).
    Count {
        pages: Pages,
        counted: u64,
        in_slots: u64,
    },
}

impl fmt::Display for CacheFault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            CacheFault::Busy { slot } => write!(f, "cache slot {slot} left BUSY"),
            CacheFault::BadRange { slot, addr, len } => {
                write!(
                    f,
                    "cache slot {slot}: {addr:#x}+{len:#x} is not whole pages"
                )
            }
            CacheFault::Overlap { slot, other } => {
                write!(f, "cache slots {slot} and {other} overlap")
            }
            CacheFault::Count {
                pages,
                counted,
                in_slots,
            } => write!(
                f,
                "cached {pages:?} bytes counted {counted}, slots hold {in_slots}"
            ),
        }
    }
}

impl Cache {
    /// Checks the invariants of the module documentation: no slot BUSY, every range whole pages,
    /// no two ranges overlapping, every count equal to the sum of the FULL slots. Meaningful only
    /// while no other thread uses the cache (another thread's hold or take in flight looks like a
    /// fault). Reads the slots without allocating; quadratic in [`SLOTS`](super::SLOTS), so kept
    /// off the allocation path: for tests, and for the engine to expose to them.
    pub(crate) fn check(&self) -> Result<(), CacheFault> {
        let mut in_slots = [0u64; 3];
        for (i, slot) in self.slots.iter().enumerate() {
            if slot.is_busy() {
                return Err(CacheFault::Busy { slot: i });
            }
            let Some(r) = slot.peek() else {
                continue;
            };
            if !r.is_well_formed() {
                return Err(CacheFault::BadRange {
                    slot: i,
                    addr: r.addr,
                    len: r.len,
                });
            }
            // Slots before `i` passed the check above: their ends do not wrap.
            for (j, other) in self.slots[..i].iter().enumerate() {
                if other
                    .peek()
                    .is_some_and(|o| o.addr < r.end() && r.addr < o.end())
                {
                    return Err(CacheFault::Overlap { slot: j, other: i });
                }
            }
            in_slots[r.pages.index()] += r.len as u64;
        }
        for pages in [Pages::Resident, Pages::Lazy, Pages::Zero] {
            let counted = self.counts.get(pages);
            let in_slots = in_slots[pages.index()];
            if counted != in_slots {
                return Err(CacheFault::Count {
                    pages,
                    counted,
                    in_slots,
                });
            }
        }
        Ok(())
    }
}

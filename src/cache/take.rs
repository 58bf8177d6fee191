//! Taking ranges out of the cache: for a block (best fit), to grow a block in place, and to
//! release them (by age, size or any rule).

use super::{fit, Cache, Pages, Range};
use crate::os::PAGE;

/// A block carved out of a cached range: the block, and the leftovers before and after it
/// (`None` where there is none), which are the caller's to put back or release.
pub(crate) type Carved = (Range, Option<Range>, Option<Range>);

impl Cache {
    /// Takes the best-fitting range that can hold `need` bytes at `align`, and the leftovers on
    /// either side of the block carved from it. Best fit is the smallest range that fits, which
    /// keeps big ranges whole for big requests; when no single range fits, the smallest run of
    /// adjacent cached ranges that does is merged and carved (coalescing on demand, see
    /// [`Cache::coalesce`]). `need` is a whole number of pages and `align` a power of two of at
    /// least a page, so the block and its leftovers are whole pages.
    pub(crate) fn take(&self, need: usize, align: usize) -> Option<Carved> {
        debug_assert!(
            need != 0 && need % PAGE == 0,
            "need {need:#x} not whole pages"
        );
        debug_assert!(align.is_power_of_two() && align >= PAGE, "align {align:#x}");
        let fits = |addr, len| fit(addr, len, need, align).is_some();
        // An exact fit (the common case: a program reusing one size) needs no run search.
        let r = self
            .take_single(|addr, len| len == need && fits(addr, len), true)
            .or_else(|| self.take_run(None, fits))
            .or_else(|| self.take_single(fits, false))?;
        // Every take re-checks `fits` on the range it holds, so this cannot fail.
        let start = fit(r.addr, r.len, need, align)?;
        let head = (start > r.addr).then_some(Range {
            len: start - r.addr,
            ..r
        });
        let end = start + need;
        let tail = (end < r.end()).then_some(Range {
            addr: end,
            len: r.end() - end,
            ..r
        });
        let block = Range {
            addr: start,
            len: need,
            ..r
        };
        Some((block, head, tail))
    }

    /// Takes the smallest single cached range for which `fits(addr, len)` holds (the first one
    /// found, if `first`).
    fn take_single(&self, fits: impl Fn(usize, usize) -> bool, first: bool) -> Option<Range> {
        loop {
            let mut best: Option<(usize, usize)> = None; // (slot, len)
            for (i, slot) in self.slots.iter().enumerate() {
                let Some((addr, len)) = slot.peek_extent() else {
                    continue;
                };
                if fits(addr, len) && best.is_none_or(|(_, b)| len < b) {
                    best = Some((i, len));
                    if first {
                        break;
                    }
                }
            }
            let (i, _) = best?;
            let Some(held) = self.slots[i].hold_full() else {
                continue; // someone took it between the scan and the hold: scan again
            };
            if !fits(held.range.addr, held.range.len) {
                held.put_back_unchanged(); // replaced by another range since the scan
                continue;
            }
            return Some(self.take_out(held));
        }
    }

    /// Takes the first `len` bytes of the cached range (or run of adjacent ranges) that starts
    /// exactly at `addr`, to grow a block in place. Returns what the taken pages hold, and the
    /// rest of a run, if one was merged, for the caller to put back (the rest of a single range
    /// stays in its slot).
    pub(crate) fn take_at(&self, addr: usize, len: usize) -> Option<(Pages, Option<Range>)> {
        debug_assert!(
            addr % PAGE == 0 && len != 0 && len % PAGE == 0,
            "take_at {addr:#x}+{len:#x}"
        );
        for slot in &self.slots {
            let Some((a, l)) = slot.peek_extent() else {
                continue;
            };
            if a != addr {
                continue;
            }
            if l < len {
                break; // a run may still cover it
            }
            let held = slot.hold_full()?;
            let r = held.range;
            if r.addr != addr || r.len < len {
                held.put_back_unchanged();
                return None;
            }
            if r.len == len {
                self.take_out(held);
            } else {
                let rest = Range {
                    addr: addr + len,
                    len: r.len - len,
                    ..r
                };
                self.replace(held, rest);
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

    /// Takes the cached range that starts exactly at `addr`, whole, if there is one (and no
    /// other thread holds it).
    pub(crate) fn take_starting_at(&self, addr: usize) -> Option<Range> {
        let slot = self
            .slots
            .iter()
            .find(|slot| slot.peek_extent().is_some_and(|(a, _)| a == addr))?;
        let held = slot.hold_full()?;
        if held.range.addr != addr {
            held.put_back_unchanged(); // replaced by another range since the scan
            return None;
        }
        Some(self.take_out(held))
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
            let Some(held) = slot.hold_full() else {
                continue;
            };
            if pick(&held.range) {
                release(self.take_out(held));
                n += 1;
            } else {
                held.put_back_unchanged();
            }
        }
        n
    }

    /// Takes the cached range with the lowest `rank`, skipping those ranked `None`.
    fn take_min(&self, rank: impl Fn(&Range) -> Option<u64>) -> Option<Range> {
        loop {
            let mut best: Option<(usize, u64)> = None;
            for (i, slot) in self.slots.iter().enumerate() {
                // An unheld read may mix two publications; the hold below re-checks.
                if let Some(k) = slot.peek().and_then(|r| rank(&r)) {
                    if best.is_none_or(|(_, b)| k < b) {
                        best = Some((i, k));
                    }
                }
            }
            let (i, _) = best?;
            let Some(held) = self.slots[i].hold_full() else {
                continue;
            };
            if rank(&held.range).is_none() {
                held.put_back_unchanged(); // replaced by another range since the scan
                continue;
            }
            return Some(self.take_out(held));
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

    /// When the resident range freed longest ago was freed, without taking it: a peek, so the
    /// range may be gone by the time it is taken (the soft limit compares engines with it).
    pub(crate) fn oldest_resident_since(&self) -> Option<u64> {
        self.slots
            .iter()
            .filter_map(|slot| slot.peek())
            .filter(|r| r.pages != Pages::Zero)
            .map(|r| r.since_ms)
            .min()
    }

    /// Takes the smallest cached range, if any (to make room in the slots at the least cost).
    pub(crate) fn take_smallest(&self) -> Option<Range> {
        self.take_min(|r| Some(r.len as u64))
    }

    /// Takes the largest cached range shorter than `len`, if it is at least `min` long.
    pub(crate) fn take_largest_below(&self, len: usize, min: usize) -> Option<Range> {
        self.take_min(|r| (r.len < len && r.len >= min).then(|| u64::MAX - r.len as u64))
    }
}

//! The process's mappings against `vm.max_map_count`: stop mapping before the kernel must refuse.
//!
//! Measured in `tests/map_count.rs` (issue #10): a program that holds many blocks of 1.5 MiB and
//! 3 MiB alternately needs one mapping per block (the two kinds differ in huge-page advice, so
//! their mappings do not merge), and reaches the limit (65,530) with a third of its blocks
//! served. Falling back to the inner allocator then is not enough by itself: once the count is
//! over the limit, the kernel refuses every `mmap` *and* every `brk` (`do_brk_flags` checks the
//! same count), so glibc could serve 28 more blocks from its free heap and then nothing. Hence
//! this module: pagewise stops making ordinary mappings while fewer than [`headroom`] mappings
//! are left, so that the count never reaches the limit.
//!
//! Nor is it needed: while mappings are scarce, blocks are still mapped by pagewise, but packed
//! ([`map_packed`]): plain mappings placed right below one another, which the kernel merges into
//! one, so thousands of blocks cost one mapping. The inner allocator serves only what even that
//! cannot place.
//!
//! The count costs nothing until the process has made [`FIRST_CHECK`] fresh mappings: only then is
//! `/proc/self/maps` counted (about 10 ms at 65,000 lines), and again each time half the room
//! left at the previous count has been used, so a program that climbs to the limit reads it
//! about a dozen times. While mappings are scarce, every [`RECHECK_UNMAPS`] unmaps count again,
//! so a program that frees blocks gets mappings back.

use core::sync::atomic::{AtomicBool, AtomicIsize, AtomicUsize, Ordering::Relaxed};

use crate::os;

/// Fresh mappings before the first count. A quarter of the default limit: most programs never
/// get there, and one that does still has three quarters of the room left.
pub(crate) const FIRST_CHECK: isize = 16 << 10;
/// Unmaps between two counts while mappings are scarce.
pub(crate) const RECHECK_UNMAPS: isize = 64;
/// `vm.max_map_count` when `/proc/sys/vm/max_map_count` cannot be read (the kernel's default).
const DEFAULT_MAX: usize = 65530;

static FRESH_UNTIL_CHECK: AtomicIsize = AtomicIsize::new(FIRST_CHECK);
static UNMAPS_UNTIL_CHECK: AtomicIsize = AtomicIsize::new(RECHECK_UNMAPS);
static SCARCE: AtomicBool = AtomicBool::new(false);
static COUNTING: AtomicBool = AtomicBool::new(false);
static MAX: AtomicUsize = AtomicUsize::new(0);
/// Start of the latest [`map_packed`] mapping: the next one goes right below it.
static PACKED_CURSOR: AtomicUsize = AtomicUsize::new(0);

/// Mappings left for the rest of the process (thread stacks, `dlopen`, the inner allocator's own
/// mappings): 1/64 of the limit, 1023 by default.
pub(crate) fn headroom(max: usize) -> usize {
    (max / 64).max(64)
}

/// Whether pagewise may make a fresh mapping now.
#[inline]
pub(crate) fn may_map() -> bool {
    !SCARCE.load(Relaxed)
}

/// A fresh mapping was made.
#[inline]
pub(crate) fn note_mapped() {
    if FRESH_UNTIL_CHECK.fetch_sub(1, Relaxed) <= 1 {
        count_now();
    }
}

/// The kernel refused a fresh mapping (`ENOMEM`): count now, whatever made the process reach
/// the limit (its own mappings count too, and pagewise may have made few of them).
#[cold]
pub(crate) fn note_refused() {
    count_now();
}

/// A range was unmapped.
#[inline]
pub(crate) fn note_unmapped() {
    if SCARCE.load(Relaxed) && UNMAPS_UNTIL_CHECK.fetch_sub(1, Relaxed) <= 1 {
        count_now();
    }
}

/// Maps `len` bytes at `align` while mappings are scarce: a plain mapping (no huge-page advice,
/// no name) placed right below the previous one, so that the kernel merges the two into one
/// mapping and the count does not grow. The first one, or one whose place is taken, goes where
/// the kernel puts it (a mapping more). Blocks from here are ordinary blocks of the engine.
pub(crate) fn map_packed(len: usize, align: usize) -> Option<*mut u8> {
    let below = PACKED_CURSOR.load(Relaxed);
    let hint = below.checked_sub(len).map(|h| h & !(align - 1));
    let placed = hint
        .filter(|&h| h != 0)
        .and_then(|h| os::map_at(h, len).ok());
    let p = match placed {
        Some(p) if p as usize & (align - 1) == 0 => p,
        Some(p) => {
            // An old kernel took the hint as a hint and the result is misaligned: give it back.
            // SAFETY: p..p+len was just mapped and is not handed out.
            let _ = unsafe { os::unmap(p, len) };
            map_plain_aligned(len, align)?
        }
        None => map_plain_aligned(len, align)?,
    };
    PACKED_CURSOR.store(p as usize, Relaxed);
    Some(p)
}

/// A plain mapping at `align` wherever the kernel puts it.
fn map_plain_aligned(len: usize, align: usize) -> Option<*mut u8> {
    os::map_aligned(len, align, 0).ok().map(|(p, _)| p)
}

/// In a `fork` child: a count under way belongs to a thread that does not exist there.
pub(crate) fn after_fork_in_child() {
    COUNTING.store(false, Relaxed);
}

fn max_map_count() -> usize {
    match MAX.load(Relaxed) {
        0 => {
            let mut buf = [0u8; 32];
            let max = os::read_file(c"/proc/sys/vm/max_map_count", &mut buf)
                .ok()
                .and_then(|n| parse_count(&buf[..n]))
                .unwrap_or(DEFAULT_MAX);
            MAX.store(max, Relaxed);
            max
        }
        max => max,
    }
}

fn parse_count(text: &[u8]) -> Option<usize> {
    let digits = text.strip_suffix(b"\n").unwrap_or(text);
    usize::try_from(crate::decimal::parse_u64(digits)?).ok()
}

/// Counts the mappings and decides; one thread at a time (the others go on as before).
#[cold]
fn count_now() {
    if COUNTING.swap(true, Relaxed) {
        return;
    }
    let max = max_map_count();
    match os::count_lines(c"/proc/self/maps") {
        Ok(count) => decide(max, count),
        // Without /proc the kernel's refusal stays the signal (and the fallback still serves
        // what the inner allocator can).
        Err(_) => FRESH_UNTIL_CHECK.store(FIRST_CHECK, Relaxed),
    }
    COUNTING.store(false, Relaxed);
}

fn decide(max: usize, count: usize) {
    let room = max.saturating_sub(count);
    let reserve = headroom(max);
    // Hysteresis: scarce below the headroom, plentiful again only above twice it.
    let scarce = room <= reserve || (SCARCE.load(Relaxed) && room <= 2 * reserve);
    SCARCE.store(scarce, Relaxed);
    if scarce {
        UNMAPS_UNTIL_CHECK.store(RECHECK_UNMAPS, Relaxed);
        FRESH_UNTIL_CHECK.store(isize::MAX, Relaxed);
    } else {
        // Each fresh mapping adds at most one; others may map meanwhile: count again when half
        // of what is left above the headroom is used.
        let next = ((room - reserve) / 2).max(1);
        FRESH_UNTIL_CHECK.store(next.min(isize::MAX as usize) as isize, Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_sysctl() {
        assert_eq!(parse_count(b"65530\n"), Some(65530));
        assert_eq!(parse_count(b"x\n"), None);
        assert_eq!(parse_count(b""), None);
        assert!(max_map_count() >= 64);
    }

    #[test]
    fn counts_this_process_s_mappings() {
        let n = os::count_lines(c"/proc/self/maps").unwrap();
        let expected = std::fs::read_to_string("/proc/self/maps")
            .unwrap()
            .lines()
            .count();
        // Another test thread may map or unmap meanwhile.
        assert!(n.abs_diff(expected) < 64, "{n} vs {expected}");
    }

    #[test]
    fn scarce_below_the_headroom_with_hysteresis() {
        let max = 65530;
        let h = headroom(max);
        decide(max, 1000);
        assert!(may_map());
        assert_eq!(
            FRESH_UNTIL_CHECK.load(Relaxed) as usize,
            (max - 1000 - h) / 2
        );
        decide(max, max - h);
        assert!(!may_map());
        decide(max, max - h - 10);
        assert!(!may_map(), "not plentiful again until twice the headroom");
        decide(max, max - 3 * h);
        assert!(may_map());
    }
}

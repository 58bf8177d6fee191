//! The cache's unit tests: its behaviour case by case, the invariants after every sequence
//! ([`Cache::check`] and the byte counts), a random sequence against a model, and threads racing
//! on one cache.

use super::counts::CachedBytes;
use super::*;

mod model;
mod race;

/// Asserts the invariants (no other thread uses `c`) and returns the byte counts.
#[track_caller]
fn ok(c: &Cache) -> CachedBytes {
    if let Err(fault) = c.check() {
        panic!("{fault}");
    }
    c.bytes()
}

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
    // The block and its tail left the cache: the caller puts the tail back or releases it.
    assert_eq!(ok(&c).total, 0x40000);
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
    assert_eq!(ok(&c).total, 0);
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
    let bytes = ok(&c);
    assert_eq!((bytes.total, bytes.resident), (0x4000, 0x3000));
    // Kept apart on insert: an exact fit takes one range only.
    let (got, _, tail) = c.take(0x1000, 4096).unwrap();
    assert_eq!((got.addr, tail), (0x10000, None));
    c.insert(r(0x10000, 0x1000)).unwrap();
    // No single range holds 0x3000: the run of the three Resident ones does, not the Zero one.
    let (got, _, tail) = c.take(0x3000, 4096).unwrap();
    assert_eq!((got.addr, got.len, tail), (0x10000, 0x3000, None));
    assert_eq!(got.since_ms, 0x12000);
    let bytes = ok(&c);
    assert_eq!((bytes.total, bytes.resident), (0x1000, 0));
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
    assert_eq!(ok(&c).total, 0x10000);
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
    let bytes = ok(&c);
    assert_eq!(
        (bytes.total, bytes.resident, bytes.lazy),
        (0x3000, 0x2000, 0x1000)
    );
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
    assert_eq!(ok(&c).total, 0x1000 * (SLOTS as u64 + 1));
    assert_eq!(c.take_smallest().map(|x| x.len), Some(0x1000 * (SLOTS + 1)));
    assert!(c.is_empty());
}

#[test]
fn take_at_grows_in_place_and_drain_picks() {
    let c = Cache::new();
    c.insert(r(0x10000, 0x3000)).unwrap();
    assert_eq!(c.take_at(0x10000, 0x4000), None);
    assert_eq!(c.take_at(0x10000, 0x1000), Some((Pages::Resident, None)));
    assert_eq!(ok(&c).total, 0x2000); // the rest stays in its slot
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
    assert_eq!(ok(&c).total, 4096 * SLOTS as u64);
    assert_eq!(c.take_oldest().map(|o| o.addr), Some(0));
    let mut seen = 0;
    let n = c.drain(|x| x.addr < 10 << 20, |_| seen += 1);
    assert_eq!((n, seen), (9, 9));
    c.reset_busy();
    assert!(!c.is_empty());
    assert_eq!(ok(&c).total, 4096 * (SLOTS as u64 - 10));
}

#[test]
fn counts_follow_runs_splits_and_merges() {
    let c = Cache::new();
    let lazy = |addr, len| Range {
        pages: Pages::Lazy,
        ..r(addr, len)
    };
    c.insert(lazy(0x10000, 0x2000)).unwrap();
    c.insert(lazy(0x12000, 0x2000)).unwrap();
    c.insert(r(0x20000, 0x4000)).unwrap();
    assert_eq!(
        ok(&c),
        CachedBytes {
            total: 0x8000,
            resident: 0x4000,
            lazy: 0x4000
        }
    );
    // Growing in place over a run: the whole run leaves, the rest is the caller's.
    let (pages, rest) = c.take_at(0x10000, 0x3000).unwrap();
    assert_eq!(
        (pages, rest.map(|x| (x.addr, x.len))),
        (Pages::Lazy, Some((0x13000, 0x1000)))
    );
    assert_eq!(ok(&c).lazy, 0);
    c.insert(rest.unwrap()).unwrap();
    assert_eq!(ok(&c).lazy, 0x1000);
    // A split leaves the rest of a single range in its slot, counted.
    assert_eq!(c.take_at(0x20000, 0x1000), Some((Pages::Resident, None)));
    assert_eq!(ok(&c).resident, 0x3000);
    // Full slots: a range between two cached ones takes their place, merged with them; one
    // that has no cached neighbour is given back, and the counts do not move.
    for i in 0..SLOTS - 2 {
        c.insert(r(0x100000 + 0x2000 * i, 0x1000)).unwrap();
    }
    let before = ok(&c).total;
    c.insert(r(0x101000, 0x1000)).unwrap();
    assert_eq!(ok(&c).total, before + 0x1000);
    assert_eq!(c.take_at(0x100000, 0x3000), Some((Pages::Resident, None)));
    c.insert(r(0x100000, 0x1000)).unwrap();
    c.insert(r(0x102000, 0x1000)).unwrap();
    assert_eq!(c.insert(r(1 << 30, 0x1000)), Err(r(1 << 30, 0x1000)));
    assert_eq!(ok(&c).total, before);
    // Draining everything empties the counts.
    c.drain(|_| true, |_| {});
    assert_eq!(ok(&c), CachedBytes::default());
}

/// The case `Engine::claim` worries about: the background thread holds a slot while the owner
/// purges; the purge skips it, and the range comes back when the holder puts it back. The range
/// stays counted throughout, so the counts are right after the purge as before it.
#[test]
fn a_held_range_stays_counted_through_a_purge() {
    let c = Cache::new();
    c.insert(r(0x10000, 0x1000)).unwrap();
    c.insert(r(0x20000, 0x3000)).unwrap();
    let held = c.slots.iter().find_map(|s| s.hold_full()).unwrap();
    assert_eq!(c.check(), Err(CacheFault::Busy { slot: 0 }));
    assert_eq!(c.drain(|_| true, |_| {}), 1);
    assert_eq!(c.bytes().total, held.range.len as u64);
    held.put_back_unchanged();
    assert_eq!(ok(&c).total, 0x1000);
    assert!(!c.is_empty());
}

/// After `fork`, slots the parent's other threads held are forgotten: neither in the cache nor
/// in its counts, whether the holder was taking a range out (HELD) or putting one in (FILLING),
/// and wherever between the slot change and the count change it stopped.
#[test]
fn reset_busy_forgets_held_ranges_and_recounts() {
    let c = Cache::new();
    c.insert(r(0x10000, 0x1000)).unwrap();
    c.insert(r(0x20000, 0x2000)).unwrap();
    c.insert(r(0x30000, 0x4000)).unwrap();
    let held = c.slots[1].hold_full().unwrap();
    assert_eq!(held.range.addr, 0x20000);
    let filling = c.slots[5].hold_empty().unwrap();
    // A holder that stopped after counting a range it had not published yet.
    c.counts.add(Pages::Lazy, 0x8000);
    let _ = (held, filling); // their threads are gone
    c.reset_busy();
    assert_eq!(ok(&c).total, 0x5000);
    assert_eq!(c.take_at(0x20000, 0x1000), None);
}

#[test]
fn check_finds_each_broken_invariant() {
    let c = Cache::new();
    c.insert(r(0x10000, 0x2000)).unwrap();
    assert_eq!(ok(&c).total, 0x2000);
    // Written behind the cache's back, as a bug would.
    let filling = c.slots[1].hold_empty().unwrap();
    filling.0.publish(r(0x11000, 0x1000));
    assert_eq!(c.check(), Err(CacheFault::Overlap { slot: 0, other: 1 }));
    let held = c.slots[1].hold_full().unwrap();
    held.slot.publish(r(0x40000, 0x1000));
    assert_eq!(
        c.check(),
        Err(CacheFault::Count {
            pages: Pages::Resident,
            counted: 0x2000,
            in_slots: 0x3000
        })
    );
    // A range that is not whole pages cannot even be published (debug builds assert).
    let bad = CacheFault::BadRange {
        slot: 2,
        addr: 0x50800,
        len: 0x1000,
    };
    let bad_range = Range {
        addr: 0x50800,
        ..r(0, 0x1000)
    };
    assert!(!bad_range.is_well_formed());
    assert_eq!(
        bad.to_string(),
        "cache slot 2: 0x50800+0x1000 is not whole pages"
    );
}

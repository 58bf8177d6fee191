//! Large blocks start at a cache line inside their first page (their colour, issue #20), within
//! the slack they already have: the pointer is all `dealloc` and `realloc` have to find the
//! engine's mapping again, so every path that takes a block back is exercised with a coloured
//! pointer here, including clearing for `alloc_zeroed` over dirty cached pages.

mod common;

use std::alloc::{GlobalAlloc, Layout};

use common::{MIB, PAGE};
use pagewise::{Config, PageAlloc, Prefetch, Release};

fn alloc() -> PageAlloc {
    // The colour does not depend on the policy; retain keeps freed ranges for the reuse checks.
    PageAlloc::new().with_config(
        Config::DEFAULT
            .release(Release::Retain)
            .prefetch(Prefetch::None)
            .ignore_env(),
    )
}

fn colour(p: *mut u8) -> usize {
    p as usize % PAGE
}

fn fill(p: *mut u8, len: usize, byte: u8) {
    // SAFETY: the callers' blocks hold len bytes.
    unsafe { std::ptr::write_bytes(p, byte, len) }
}

fn all(p: *mut u8, len: usize, byte: u8) -> bool {
    // SAFETY: the callers' blocks hold len bytes.
    unsafe { std::slice::from_raw_parts(p, len) }
        .iter()
        .all(|&b| b == byte)
}

#[test]
fn blocks_with_slack_start_at_a_cache_line_inside_their_first_page() {
    let a = alloc();
    let mut colours = std::collections::BTreeSet::new();
    for (i, align) in [1usize, 8, 16, 64, 256].into_iter().enumerate() {
        for k in 0..16 {
            // Slack of a page less 1..=100 bytes: room for every colour.
            let size = MIB + k * 3 * PAGE + i * 7 + 1;
            let l = Layout::from_size_align(size, align).unwrap();
            // SAFETY: a valid non-zero layout; freed below.
            let p = unsafe { a.alloc(l) };
            assert!(!p.is_null());
            let c = colour(p);
            assert!(
                (128..=PAGE - 128).contains(&c),
                "size {size} align {align}: at {c}"
            );
            assert_eq!(c % 64, 0);
            assert_eq!(p as usize % align, 0);
            colours.insert(c);
            fill(p, size, 0xA5);
            // SAFETY: allocated above with l.
            unsafe { a.dealloc(p, l) };
        }
    }
    assert!(
        colours.len() >= 8,
        "sizes spread over the page: {colours:?}"
    );
    // Without slack, or with a page's alignment, a block starts on its page.
    for (size, align) in [
        (4 * MIB, 8),
        (4 * MIB + 2 * PAGE, 64),
        (MIB + 5, PAGE),
        (MIB + 5, 2 * MIB),
    ] {
        let l = Layout::from_size_align(size, align).unwrap();
        // SAFETY: as above.
        let p = unsafe { a.alloc(l) };
        assert!(!p.is_null());
        assert_eq!(colour(p), 0, "size {size} align {align}");
        fill(p, size, 1);
        // SAFETY: as above.
        unsafe { a.dealloc(p, l) };
    }
    let s = a.stats();
    assert_eq!(
        s.live_bytes, 0,
        "every block went back to the engine: {s:?}"
    );
    assert_eq!(s.fallback_allocs, 0);
}

#[test]
fn a_block_freed_and_asked_again_comes_back_at_the_same_address_cleared() {
    let a = alloc();
    let l = Layout::from_size_align(3 * MIB + 1000, 8).unwrap();
    // SAFETY: a valid non-zero layout; freed below.
    let p = unsafe { a.alloc(l) };
    assert_ne!(colour(p), 0);
    fill(p, l.size(), 0xFF);
    // SAFETY: allocated above with l.
    unsafe { a.dealloc(p, l) };
    // SAFETY: as above.
    let q = unsafe { a.alloc_zeroed(l) };
    assert_eq!(q, p, "same size, same cached range, same colour");
    assert!(
        all(q, l.size(), 0),
        "a retained range is cleared for alloc_zeroed"
    );
    fill(q, l.size(), 0xEE);
    // SAFETY: allocated above with l.
    unsafe { a.dealloc(q, l) };

    // Another size in the same pages: another colour over the same dirty range, the whole of
    // the new block cleared (the engine clears from the start of the page, colour included).
    let m = (1..4000)
        .map(|d| Layout::from_size_align(3 * MIB + 1000 + d, 8).unwrap())
        .find(|m| {
            // SAFETY: a valid non-zero layout; freed at once unless it is the one wanted.
            let r = unsafe { a.alloc_zeroed(*m) };
            let other = colour(r) != colour(p) && colour(r) != 0;
            assert!(all(r, m.size(), 0), "size {}: not cleared", m.size());
            fill(r, m.size(), 0xDD);
            // SAFETY: allocated just above with m.
            unsafe { a.dealloc(r, *m) };
            other
        })
        .expect("some size in the same pages has another colour");
    assert_eq!(m.size().div_ceil(PAGE), l.size().div_ceil(PAGE));
    let s = a.stats();
    assert!(s.cache_hits >= 2, "the range was reused: {s:?}");
    assert_eq!(s.live_bytes, 0);
}

#[test]
fn realloc_keeps_the_colour_and_the_bytes() {
    let a = alloc();
    let l = Layout::from_size_align(2 * MIB + 777, 16).unwrap();
    // SAFETY: a valid non-zero layout; freed below.
    let p = unsafe { a.alloc(l) };
    let c = colour(p);
    assert_ne!(c, 0);
    for i in 0..l.size() {
        // SAFETY: p holds l.size() bytes.
        unsafe { *p.add(i) = (i % 251) as u8 };
    }
    let mut cur = (p, l);
    // Grow by moving pages, grow in place into the slack, shrink: the colour is the pointer's.
    for new in [64 * MIB + 5, 64 * MIB + 900, 8 * MIB + 3] {
        // SAFETY: a live block with cur.1; new is large and non-zero.
        let q = unsafe { a.realloc(cur.0, cur.1, new) };
        assert!(!q.is_null());
        assert_eq!(colour(q), c, "resized to {new}: the block keeps its colour");
        let kept = cur.1.size().min(new).min(l.size());
        for i in (0..kept).step_by(997) {
            // SAFETY: q holds at least kept bytes.
            assert_eq!(
                unsafe { *q.add(i) },
                (i % 251) as u8,
                "byte {i} after resizing to {new}"
            );
        }
        fill(
            // SAFETY: q holds new bytes; the first l.size() keep the pattern.
            unsafe { q.add(l.size().min(new)) },
            new - l.size().min(new),
            9,
        );
        cur = (q, Layout::from_size_align(new, 16).unwrap());
    }
    let s = a.stats();
    assert!(
        s.mremaps + s.in_place_reallocs >= 2,
        "the engine resized: {s:?}"
    );
    // SAFETY: the live block with cur.1.
    unsafe { a.dealloc(cur.0, cur.1) };
    assert_eq!(a.stats().live_bytes, 0);
}

//! `allocator_api2::alloc::Allocator` for `PageAlloc` (feature `allocator-api2`): collections on
//! a static and on a local instance, routing by size and alignment (up to 1 GiB), zero-size
//! blocks, growth and shrinking that keep content, `grow_zeroed` after dirty frees on every path
//! (in place, into the cached range that follows, by `mremap`, by copy) without clearing fresh
//! pages, `AllocError` when the kernel refuses, a local instance dropped after its collections,
//! and an instance past the 64-engine pool that still works on the overflow engine.
//!
//! The global allocator of this binary is `System`: pagewise serves only what the tests give it.
//! Every test takes the process lock, so the mappings and faults each one reads are its own.

mod common;

use std::alloc::Layout;
use std::ptr::NonNull;
use std::time::Duration;

use allocator_api2::alloc::{AllocError, Allocator};
use allocator_api2::vec::Vec as AVec;
use common::*;
use hashbrown::HashMap;
use pagewise::{Config, PageAlloc, Prefetch, Release};

/// A static instance with a fixed configuration, as the README shows.
static BIG: PageAlloc = PageAlloc::new().with_config(
    Config::DEFAULT
        .ignore_env()
        .release(Release::Retain)
        .decay_ms(None),
);

/// A local instance with `release`, no prefetch, no decay, no background thread.
fn local(release: Release) -> PageAlloc {
    PageAlloc::new().with_config(
        Config::DEFAULT
            .ignore_env()
            .release(release)
            .prefetch(Prefetch::None)
            .decay_ms(None)
            .background(false),
    )
}

fn layout(size: usize, align: usize) -> Layout {
    Layout::from_size_align(size, align).unwrap()
}

/// The bytes of a block.
///
/// # Safety
/// `p` is a live block of at least `len` bytes, used by nobody else while the slice lives.
unsafe fn bytes<'a>(p: NonNull<u8>, len: usize) -> &'a mut [u8] {
    // SAFETY: the caller's guarantees.
    unsafe { std::slice::from_raw_parts_mut(p.as_ptr(), len) }
}

fn assert_zero(s: &[u8], what: &str) {
    if let Some(i) = first_not(s, 0) {
        panic!("{what}: byte {i} of {} is {:#x}, not zero", s.len(), s[i]);
    }
}

/// Whether `addr` lies in a mapping of this process.
fn mapped(addr: usize) -> bool {
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
    maps.lines().any(|l| {
        let range = l.split_whitespace().next().unwrap();
        let (a, b) = range.split_once('-').unwrap();
        let (a, b) = (
            usize::from_str_radix(a, 16).unwrap(),
            usize::from_str_radix(b, 16).unwrap(),
        );
        (a..b).contains(&addr)
    })
}

#[test]
fn vec_and_hashmap_work_on_a_static_and_on_a_local_instance() {
    let _g = process_lock();
    let before = BIG.stats();
    check_collections(&BIG, "static");
    let after = BIG.stats();
    assert!(after.large_allocs > before.large_allocs, "{after}");
    assert!(
        after.mremaps > before.mremaps,
        "Vec growth moves pages: {after}"
    );
    assert_eq!(after.live_bytes, before.live_bytes, "{after}");

    let mine = local(Release::DontNeed);
    check_collections(&mine, "local");
    let s = mine.stats();
    assert!(s.large_allocs > 0 && s.large_allocs == s.large_frees, "{s}");
    assert_eq!((s.live_bytes, s.overflow_engine), (0, 0), "{s}");
    assert_eq!(mine.config().get_release(), Release::DontNeed);
    // Each instance counts its own blocks only.
    assert_eq!(BIG.stats().large_allocs, after.large_allocs);
}

/// A Vec grown by pushes to 64 MiB and shrunk, and a map of a million entries grown and shrunk,
/// both checked entry by entry.
fn check_collections(a: &PageAlloc, what: &str) {
    let n = 8 << 20;
    let mut v: AVec<u64, _> = AVec::new_in(a);
    for i in 0..n {
        v.push(pattern_word(1, i));
    }
    v.truncate(n / 16);
    v.shrink_to_fit(); // 64 MiB to 4 MiB: Allocator::shrink
    assert_eq!(v.capacity(), n / 16);
    v.extend((n / 16..n / 8).map(|i| pattern_word(1, i)));
    for (i, x) in v.iter().enumerate() {
        assert_eq!(*x, pattern_word(1, i), "{what}: Vec word {i}");
    }

    let mut m: HashMap<u64, u64, _, _> = HashMap::new_in(a);
    for k in 0..1_000_000u64 {
        m.insert(k, pattern_word(2, k as usize));
    }
    m.retain(|k, _| k % 10 == 0);
    m.shrink_to_fit();
    assert_eq!(m.len(), 100_000, "{what}");
    for k in (0..1_000_000u64).step_by(10) {
        assert_eq!(
            m.get(&k),
            Some(&pattern_word(2, k as usize)),
            "{what}: key {k}"
        );
    }
}

#[test]
fn an_instance_given_by_value_moves_with_its_collection() {
    let _g = process_lock();
    let mut v: AVec<u64, PageAlloc> = AVec::new_in(local(Release::Retain));
    v.extend((0..1 << 20).map(|i| pattern_word(3, i)));
    // Moved after use, allocator and all, then grown and shrunk again.
    let mut v = *Box::new(v);
    v.extend((1 << 20..4 << 20).map(|i| pattern_word(3, i)));
    v.truncate(3 << 20);
    v.shrink_to_fit();
    for (i, x) in v.iter().enumerate() {
        assert_eq!(*x, pattern_word(3, i), "word {i}");
    }
    let s = v.allocator().stats();
    assert!(s.large_allocs >= 1 && s.reallocs >= 2, "{s}");
    assert_eq!(s.live_bytes, 24 * MIB as u64, "{s}");
}

#[test]
fn small_requests_go_to_the_inner_allocator_large_ones_and_large_alignments_to_the_engine() {
    let _g = process_lock();
    let a = local(Release::Retain);
    let threshold = a.config().get_threshold();
    // Small size, small alignment: the inner allocator (no engine counter moves).
    let small = layout(threshold / 2, 64);
    let p = a.allocate(small).unwrap();
    assert_eq!(p.len(), small.size());
    assert_eq!(a.stats().large_allocs, 0);
    // SAFETY: p was allocated with `small`.
    unsafe { a.deallocate(p.cast(), small) };
    // A block is exactly the size asked for, mapping or not.
    let large = layout(threshold + 1, 8);
    let p = a.allocate(large).unwrap();
    assert_eq!(p.len(), large.size());
    assert_eq!(a.stats().large_allocs, 1);
    // SAFETY: p was allocated with `large`.
    unsafe { a.deallocate(p.cast(), large) };

    // Every alignment up to 1 GiB, for small and large sizes: aligned, usable, resizable.
    for align in [8, PAGE, 64 * KIB, threshold, 2 * MIB, 64 * MIB, GIB] {
        for size in [64, PAGE + 1, threshold + 100, 3 * MIB] {
            let l = layout(size, align);
            let before = a.stats().large_allocs;
            let p = a.allocate(l).expect("allocate");
            let to_engine = a.stats().large_allocs > before;
            assert_eq!(
                to_engine,
                size.max(align) >= threshold,
                "size {size} align {align}: routed by size or alignment"
            );
            assert_eq!(
                p.cast::<u8>().as_ptr() as usize % align,
                0,
                "{size} @ {align}"
            );
            // SAFETY: p is a live block of `size` bytes.
            let s = unsafe { bytes(p.cast(), size) };
            fill_pattern(s, size as u64);
            let bigger = layout(size * 2, align);
            // SAFETY: p is live with `l`; the new size is bigger.
            let q = unsafe { a.grow(p.cast(), l, bigger) }.expect("grow");
            assert_eq!(q.cast::<u8>().as_ptr() as usize % align, 0);
            // SAFETY: q holds size * 2 bytes, the first `size` kept.
            let s = unsafe { bytes(q.cast(), size) };
            assert_eq!(
                check_pattern(s, size as u64),
                None,
                "{size} @ {align} grown"
            );
            // SAFETY: q is live with `bigger`; `l` is smaller.
            let r = unsafe { a.shrink(q.cast(), bigger, l) }.expect("shrink");
            // SAFETY: r holds `size` bytes.
            let s = unsafe { bytes(r.cast(), size) };
            assert_eq!(
                check_pattern(s, size as u64),
                None,
                "{size} @ {align} shrunk"
            );
            // SAFETY: r is live with `l`.
            unsafe { a.deallocate(r.cast(), l) };
        }
    }
    let s = a.stats();
    assert_eq!(s.live_bytes, 0, "{s}");
    assert_eq!(s.fallback_allocs, 0, "{s}");
}

#[test]
fn zero_size_blocks_are_dangling_and_aligned_and_cost_nothing() {
    let _g = process_lock();
    let a = local(Release::Retain);
    for align in [1, 8, PAGE, 2 * MIB, GIB] {
        let z = layout(0, align);
        let p = a.allocate(z).unwrap();
        let q = a.allocate_zeroed(z).unwrap();
        assert_eq!((p.len(), q.len()), (0, 0));
        assert_eq!(p.cast::<u8>().as_ptr() as usize % align, 0);
        // SAFETY: zero-size blocks of this allocator.
        unsafe {
            a.deallocate(p.cast(), z);
            a.deallocate(q.cast(), z);
        }
        // From nothing to 1 MiB (zeroed) and back to nothing.
        let one = layout(MIB, align);
        // SAFETY: p is a zero-size block with `z`.
        let g = unsafe { a.grow_zeroed(p.cast(), z, one) }.unwrap();
        // SAFETY: g holds 1 MiB.
        assert_zero(unsafe { bytes(g.cast(), MIB) }, "grown from size 0");
        // SAFETY: g is live with `one`.
        let e = unsafe { a.shrink(g.cast(), one, z) }.unwrap();
        assert_eq!(e.len(), 0);
        assert_eq!(e.cast::<u8>().as_ptr() as usize % align, 0);
        // SAFETY: a zero-size block.
        unsafe { a.deallocate(e.cast(), z) };
    }
    let s = a.stats();
    // Only the 1 MiB blocks were mapped, one per alignment.
    assert_eq!(
        (s.large_allocs, s.large_frees, s.live_bytes),
        (5, 5, 0),
        "{s}"
    );
    // A Vec of zero-size elements and an empty one allocate nothing either.
    let mut units: AVec<(), _> = AVec::new_in(&a);
    units.extend(std::iter::repeat_n((), 1 << 20));
    let empty: AVec<u64, _> = AVec::with_capacity_in(0, &a);
    drop((units, empty));
    assert_eq!(a.stats().large_allocs, 5);
}

#[test]
fn growth_and_shrinking_keep_content_across_the_threshold_and_alignments() {
    let _g = process_lock();
    let a = local(Release::Retain);
    // (from, to) sizes and alignments: small to small, small to large, large to large (mremap
    // and in place), large to small, and changes of alignment.
    let steps: [(usize, usize, usize, usize); 9] = [
        (1000, 8, 100 * KIB, 8),
        (100 * KIB, 8, 3 * MIB, 8),
        (3 * MIB, 8, 40 * MIB, 8),
        (40 * MIB, 8, 33 * MIB, 8),
        (33 * MIB, 8, 5 * MIB, PAGE),
        (5 * MIB, PAGE, 64 * KIB, PAGE),
        (64 * KIB, PAGE, 8 * MIB, 2 * MIB),
        (8 * MIB, 2 * MIB, 300 * KIB, 8),
        (300 * KIB, 8, 1000, 16),
    ];
    let first = layout(1000, 8);
    let mut p = a.allocate(first).unwrap().cast::<u8>();
    // SAFETY: p holds 1000 bytes.
    fill_pattern(unsafe { bytes(p, 1000) }, 9);
    let mut filled = 1000;
    for (from, fa, to, ta) in steps {
        let (old, new) = (layout(from, fa), layout(to, ta));
        // SAFETY: p is live with `old`; grow for bigger sizes, shrink for smaller.
        let q = unsafe {
            if to >= from {
                a.grow(p, old, new)
            } else {
                a.shrink(p, old, new)
            }
        }
        .unwrap_or_else(|_| panic!("{from}@{fa} -> {to}@{ta}"));
        assert_eq!(q.len(), to);
        p = q.cast();
        assert_eq!(p.as_ptr() as usize % ta, 0);
        let kept = filled.min(to);
        // SAFETY: p holds `to` bytes.
        let s = unsafe { bytes(p, to) };
        assert_eq!(
            check_pattern(&s[..kept], 9),
            None,
            "{from}@{fa} -> {to}@{ta}: content lost"
        );
        fill_pattern(s, 9);
        filled = to;
    }
    // SAFETY: p is live with the last layout.
    unsafe { a.deallocate(p, layout(1000, 16)) };
    let s = a.stats();
    assert!(s.mremaps >= 1 && s.in_place_reallocs >= 1, "{s}");
    assert_eq!(s.live_bytes, 0, "{s}");
}

/// `grow_zeroed` after a dirty free, on each path of the engine and under every release policy:
/// the head keeps its bytes, everything past the old size reads zero.
#[test]
fn grow_zeroed_after_a_dirty_free_reads_zero_on_every_path() {
    let _g = process_lock();
    for release in Release::ALL {
        let a = local(release);
        let what = release.name();
        // Where each step must have gone (`adaptive` depends on the machine's pressure signal,
        // `unmap` keeps no cache): the bytes are checked under every policy.
        let caches = matches!(release, Release::Retain | Release::DontNeed | Release::Free);

        // 1. Into the cached range right after the block (no syscall): the range held 0xAB.
        let whole = layout(16 * MIB, 8);
        let w = a.allocate(whole).unwrap().cast::<u8>();
        // SAFETY: w holds 16 MiB.
        unsafe { bytes(w, 16 * MIB) }.fill(0xAB);
        // SAFETY: w is live with `whole`.
        unsafe { a.deallocate(w, whole) };
        let head = layout(4 * MIB, 8);
        let x = a.allocate(head).unwrap().cast::<u8>();
        // SAFETY: x holds 4 MiB.
        fill_pattern(unsafe { bytes(x, 4 * MIB) }, 1);
        let before = a.stats();
        let grown = layout(12 * MIB, 8);
        // SAFETY: x is live with `head`.
        let y = unsafe { a.grow_zeroed(x, head, grown) }
            .unwrap()
            .cast::<u8>();
        let after = a.stats();
        if caches {
            assert_eq!(y, x, "{what}: grown in place into the freed range");
            assert_eq!(after.in_place_reallocs, before.in_place_reallocs + 1);
        }
        // SAFETY: y holds 12 MiB.
        let s = unsafe { bytes(y, 12 * MIB) };
        assert_eq!(check_pattern(&s[..4 * MIB], 1), None, "{what}: head");
        assert_zero(
            &s[4 * MIB..],
            &format!("{what}: grown into a dirty cached range"),
        );

        // 2. In place within the mapping: shrink a dirty block, grow it back zeroed.
        s.fill(0xCD);
        let less = layout(12 * MIB - 3 * MIB / 2, 8); // same 12 MiB mapping
                                                      // SAFETY: y is live with `grown`.
        let y = unsafe { a.shrink(y, grown, less) }.unwrap().cast::<u8>();
        // SAFETY: y is live with `less`.
        let y = unsafe { a.grow_zeroed(y, less, grown) }
            .unwrap()
            .cast::<u8>();
        // SAFETY: y holds 12 MiB.
        let s = unsafe { bytes(y, 12 * MIB) };
        assert_eq!(first_not(&s[..less.size()], 0xCD), None, "{what}: head");
        assert_zero(
            &s[less.size()..],
            &format!("{what}: the slack of a shrunk block"),
        );

        // 3. By mremap, from a block whose slack is dirty: nothing cached after it.
        a.purge();
        s.fill(0xEF);
        let odd = layout(10 * MIB + 12345, 8); // a 12 MiB mapping with dirty slack
                                               // SAFETY: y is live with `grown`.
        let y = unsafe { a.shrink(y, grown, odd) }.unwrap().cast::<u8>();
        let before = a.stats();
        let big = layout(40 * MIB, 8);
        // SAFETY: y is live with `odd`.
        let z = unsafe { a.grow_zeroed(y, odd, big) }.unwrap().cast::<u8>();
        let after = a.stats();
        assert_eq!(after.mremaps, before.mremaps + 1, "{what}: {after}");
        // SAFETY: z holds 40 MiB.
        let s = unsafe { bytes(z, 40 * MIB) };
        assert_eq!(first_not(&s[..odd.size()], 0xEF), None, "{what}: head");
        assert_zero(&s[odd.size()..], &format!("{what}: grown by mremap"));
        // SAFETY: z is live with `big`.
        unsafe { a.deallocate(z, big) };

        // 4. By copy into a dirty cached range: a 2 MiB-aligned block (never moved with mremap)
        //    with a live neighbour after it, and a dirty 64 MiB range in the cache.
        a.purge();
        let pair = layout(8 * MIB, 2 * MIB);
        let p = a.allocate(pair).unwrap().cast::<u8>();
        // SAFETY: p is live with `pair`.
        unsafe { a.deallocate(p, pair) };
        let quarter = layout(4 * MIB, 2 * MIB);
        let x = a.allocate(quarter).unwrap().cast::<u8>();
        let neighbour = a.allocate(quarter).unwrap().cast::<u8>();
        if caches {
            assert_eq!(neighbour.as_ptr() as usize, x.as_ptr() as usize + 4 * MIB);
        }
        let dirty = layout(64 * MIB, 2 * MIB);
        let d = a.allocate(dirty).unwrap().cast::<u8>();
        // SAFETY: d holds 64 MiB.
        unsafe { bytes(d, 64 * MIB) }.fill(0x5A);
        // SAFETY: d is live with `dirty`.
        unsafe { a.deallocate(d, dirty) };
        // SAFETY: x holds 4 MiB.
        fill_pattern(unsafe { bytes(x, 4 * MIB) }, 4);
        let before = a.stats();
        let to = layout(32 * MIB, 2 * MIB);
        // SAFETY: x is live with `quarter`.
        let y = unsafe { a.grow_zeroed(x, quarter, to) }
            .unwrap()
            .cast::<u8>();
        let after = a.stats();
        assert_eq!(
            after.copied_reallocs,
            before.copied_reallocs + 1,
            "{what}: {after}"
        );
        if caches {
            assert_eq!(after.cache_hits, before.cache_hits + 1, "{what}: {after}");
        }
        // SAFETY: y holds 32 MiB.
        let s = unsafe { bytes(y, 32 * MIB) };
        assert_eq!(check_pattern(&s[..4 * MIB], 4), None, "{what}: head");
        assert_zero(
            &s[4 * MIB..],
            &format!("{what}: copied into a dirty cached range"),
        );
        // SAFETY: live blocks with their layouts.
        unsafe {
            a.deallocate(y, to);
            a.deallocate(neighbour, quarter);
        }

        // 5. allocate_zeroed after a dirty free of the same size.
        let l = layout(24 * MIB, 8);
        let p = a.allocate(l).unwrap().cast::<u8>();
        // SAFETY: p holds 24 MiB.
        unsafe { bytes(p, 24 * MIB) }.fill(0x77);
        // SAFETY: p is live with `l`.
        unsafe { a.deallocate(p, l) };
        let q = a.allocate_zeroed(l).unwrap().cast::<u8>();
        // SAFETY: q holds 24 MiB.
        assert_zero(
            unsafe { bytes(q, 24 * MIB) },
            &format!("{what}: allocate_zeroed"),
        );
        // SAFETY: q is live with `l`.
        unsafe { a.deallocate(q, l) };
        assert_eq!(a.stats().live_bytes, 0, "{what}");
    }
}

/// `grow_zeroed` of the inner allocator's blocks, in place over a dirty freed neighbour or across
/// the threshold into a dirty cached range.
#[test]
fn grow_zeroed_of_small_blocks_reads_zero() {
    let _g = process_lock();
    let a = local(Release::Retain);
    for round in 0..100 {
        let wide = layout(64 * KIB, 8);
        let d = a.allocate(wide).unwrap().cast::<u8>();
        // SAFETY: d holds 64 KiB.
        unsafe { bytes(d, 64 * KIB) }.fill(0xAB);
        // SAFETY: d is live with `wide`.
        unsafe { a.deallocate(d, wide) };
        let narrow = layout(KIB, 8);
        let p = a.allocate(narrow).unwrap().cast::<u8>();
        // SAFETY: p holds 1 KiB.
        unsafe { bytes(p, KIB) }.fill(0x11);
        // SAFETY: p is live with `narrow`.
        let q = unsafe { a.grow_zeroed(p, narrow, wide) }
            .unwrap()
            .cast::<u8>();
        // SAFETY: q holds 64 KiB.
        let s = unsafe { bytes(q, 64 * KIB) };
        assert_eq!(first_not(&s[..KIB], 0x11), None, "round {round}");
        assert_zero(&s[KIB..], &format!("round {round}: small, grown zeroed"));
        // Across the threshold, into a dirty cached range of the same size.
        let large = layout(4 * MIB, 8);
        let r = a.allocate(large).unwrap().cast::<u8>();
        // SAFETY: r holds 4 MiB.
        unsafe { bytes(r, 4 * MIB) }.fill(0xCD);
        // SAFETY: r is live with `large`.
        unsafe { a.deallocate(r, large) };
        // SAFETY: q is live with `wide`.
        let t = unsafe { a.grow_zeroed(q, wide, large) }
            .unwrap()
            .cast::<u8>();
        // SAFETY: t holds 4 MiB.
        let s = unsafe { bytes(t, 4 * MIB) };
        assert_eq!(first_not(&s[..KIB], 0x11), None, "round {round}");
        assert_zero(&s[KIB..], &format!("round {round}: across the threshold"));
        // SAFETY: t is live with `large`.
        unsafe { a.deallocate(t, large) };
    }
}

/// The point of `grow_zeroed` in the engine: growing a block to 512 MiB by `mremap` clears the
/// old block's slack, not the 508 MiB of fresh zero pages (which would fault 130,000 pages in).
#[test]
fn grow_zeroed_does_not_touch_fresh_pages() {
    let _g = process_lock();
    let a = local(Release::Retain);
    let small = layout(4 * MIB - 100, 8);
    let p = a.allocate(small).unwrap().cast::<u8>();
    // SAFETY: p holds small.size() bytes.
    unsafe { bytes(p, small.size()) }.fill(1);
    let big = layout(512 * MIB, 8);
    let (faults, rss) = (thread_minflt(), rollup().rss);
    // SAFETY: p is live with `small`.
    let q = unsafe { a.grow_zeroed(p, small, big) }
        .unwrap()
        .cast::<u8>();
    let (faults, rss) = (thread_minflt() - faults, rollup().rss.saturating_sub(rss));
    assert_eq!(a.stats().mremaps, 1);
    println!(
        "grow_zeroed 4 MiB -> 512 MiB: {faults} faults, RSS +{:.1} MiB",
        mib(rss)
    );
    assert!(faults < 1024, "{faults} faults: fresh pages were cleared");
    assert!(rss < 16 * MIB as u64, "RSS grew by {:.0} MiB", mib(rss));
    // SAFETY: q holds 512 MiB.
    let s = unsafe { bytes(q, 512 * MIB) };
    assert_eq!(first_not(&s[..small.size()], 1), None);
    assert_zero(&s[small.size()..], "grown by mremap");
    // SAFETY: q is live with `big`.
    unsafe { a.deallocate(q, big) };
}

#[test]
fn a_local_instance_dropped_after_its_collections_gives_its_pages_back() {
    let _g = process_lock();
    let (vec_addr, map_addr);
    {
        let pages = local(Release::Retain);
        let mut v: AVec<u8, _> = AVec::with_capacity_in(32 * MIB, &pages);
        v.resize(32 * MIB, 3);
        let mut m: HashMap<u64, [u64; 4], _, _> = HashMap::new_in(&pages);
        m.extend((0..100_000u64).map(|k| (k, [k; 4])));
        vec_addr = v.as_ptr() as usize;
        map_addr = m.get(&7).unwrap() as *const _ as usize;
        assert_eq!(first_not(&v, 3), None);
        // The collections go first (the borrow checker sees to it); their ranges stay cached.
        drop(v);
        drop(m);
        let s = pages.stats();
        assert_eq!(s.live_bytes, 0, "{s}");
        assert!(s.cached_bytes >= 32 * MIB as u64, "{s}");
        assert!(
            mapped(vec_addr) && mapped(map_addr),
            "cached ranges stay mapped"
        );
    }
    // Dropped: its cache is unmapped, and its engine goes back to the pool.
    assert!(!mapped(vec_addr), "the Vec's range is still mapped");
    assert!(!mapped(map_addr), "the map's range is still mapped");
    let next = local(Release::Retain);
    let v: AVec<u8, _> = AVec::with_capacity_in(8 * MIB, &next);
    let s = next.stats();
    assert_eq!((s.large_allocs, s.overflow_engine), (1, 0), "{s}");
    drop(v);
}

const OVERFLOW_TEST: &str = "an_instance_past_the_pool_works_on_the_overflow_engine";

#[test]
fn an_instance_past_the_pool_works_on_the_overflow_engine() {
    match child_mode().as_deref() {
        Some("overflow") => return overflow_child(),
        Some(_) => return,
        None => {}
    }
    let out = run_child(OVERFLOW_TEST, "overflow", &[], Duration::from_secs(120));
    println!("{}", out.stdout.trim_end());
    assert!(
        out.status.success() && out.stdout.contains("OVERFLOW-OK"),
        "{}",
        out.describe()
    );
}

/// In a fresh process whose global allocator is `System`: 64 instances take the pool, the 65th
/// runs on the overflow engine and serves collections all the same; dropping a pooled instance
/// frees an engine for the next new one.
fn overflow_child() {
    let mut pooled: Vec<PageAlloc> = (0..64).map(|_| local(Release::Retain)).collect();
    for (i, a) in pooled.iter().enumerate() {
        let v: AVec<u8, _> = AVec::with_capacity_in(MIB, a);
        drop(v);
        let s = a.stats();
        assert_eq!(
            (s.overflow_engine, s.cached_bytes),
            (0, MIB as u64),
            "instance {i}: {s}"
        );
    }
    let past = local(Release::Retain);
    assert_eq!(past.stats().overflow_engine, 1, "the 65th instance");
    let c = past.config();
    assert_eq!(
        (c.get_release(), c.get_prefetch(), c.get_cache()),
        (Release::Unmap, Prefetch::None, 0),
        "the overflow engine's fixed configuration"
    );
    past.reconfigure(Config::DEFAULT.release(Release::Retain));
    assert_eq!(
        past.config().get_release(),
        Release::Unmap,
        "reconfigure is ignored"
    );
    check_collections(&past, "overflow");
    let (small, big) = (layout(3 * MIB, 8), layout(48 * MIB, 8));
    let p = past.allocate(small).unwrap().cast::<u8>();
    // SAFETY: p holds 3 MiB.
    unsafe { bytes(p, 3 * MIB) }.fill(9);
    // SAFETY: p is live with `small`.
    let q = unsafe { past.grow_zeroed(p, small, big) }
        .unwrap()
        .cast::<u8>();
    // SAFETY: q holds 48 MiB.
    let s = unsafe { bytes(q, 48 * MIB) };
    assert_eq!(first_not(&s[..3 * MIB], 9), None);
    assert_zero(&s[3 * MIB..], "overflow engine, grown zeroed");
    // SAFETY: q is live with `big`.
    unsafe { past.deallocate(q, big) };
    let s = past.stats();
    assert!(s.large_allocs > 0 && s.mremaps > 0, "{s}");
    assert_eq!((s.cached_bytes, s.live_bytes), (0, 0), "no cache: {s}");
    assert!(s.munmap_calls >= s.large_frees, "every free unmaps: {s}");

    // A second instance past the pool shares the overflow engine, and its counters.
    let also = local(Release::DontNeed);
    assert_eq!(also.stats(), past.stats());
    // A dropped pooled instance frees its engine for the next new instance, not for `past`.
    drop(pooled.pop());
    let next = local(Release::Retain);
    assert_eq!(next.stats().overflow_engine, 0);
    assert_eq!(past.stats().overflow_engine, 1);
    println!(
        "OVERFLOW-OK: 64 pooled instances, the 65th on the overflow engine: {}",
        past.stats()
    );
}

const OOM_TEST: &str = "refusals_are_alloc_errors_and_leave_blocks_intact";

#[test]
fn refusals_are_alloc_errors_and_leave_blocks_intact() {
    match child_mode().as_deref() {
        Some("oom") => return oom_child(),
        Some(_) => return,
        None => {}
    }
    let mut failures = Vec::new();
    for release in [Release::Retain, Release::Unmap] {
        let out = run_child(
            OOM_TEST,
            "oom",
            &[("ALLOC_API_TEST_RELEASE", Some(release.name()))],
            Duration::from_secs(120),
        );
        println!("{}", out.stdout.trim_end());
        if !(out.status.success() && out.stdout.contains("OOM-OK")) {
            failures.push(out.describe());
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

/// Under `RLIMIT_AS` of the current address space plus 512 MiB: requests past it are
/// `Err(AllocError)` (never a null, a panic or an abort), failed growth leaves the block intact,
/// and the allocator keeps working.
fn oom_child() {
    let release = std::env::var("ALLOC_API_TEST_RELEASE").unwrap();
    let release = Release::parse(release.as_bytes()).unwrap();
    let a = local(release);
    let warm = a.allocate(layout(4 * MIB, 8)).unwrap();
    // SAFETY: warm is live with this layout.
    unsafe { a.deallocate(warm.cast(), layout(4 * MIB, 8)) };
    limit_address_space(512 * MIB as u64);

    for l in [
        layout(2 * GIB, 8),
        layout(2 * GIB, 2 * MIB),
        layout(64, GIB), // small, but its alignment needs 1 GiB of address space
    ] {
        assert_eq!(a.allocate(l), Err(AllocError), "{l:?}");
        assert_eq!(a.allocate_zeroed(l), Err(AllocError), "{l:?}");
    }
    let mut v: AVec<u8, _> = AVec::new_in(&a);
    assert!(v.try_reserve(2 * GIB).is_err());
    let mut m: HashMap<u64, u64, _, _> = HashMap::new_in(&a);
    assert!(m.try_reserve(200_000_000).is_err());

    let l = layout(8 * MIB, 8);
    let p = a.allocate(l).unwrap().cast::<u8>();
    // SAFETY: p holds 8 MiB.
    fill_pattern(unsafe { bytes(p, 8 * MIB) }, 5);
    for zeroed in [false, true] {
        let huge = layout(2 * GIB, 8);
        // SAFETY: p is live with `l`; on Err it stays live.
        let r = unsafe {
            if zeroed {
                a.grow_zeroed(p, l, huge)
            } else {
                a.grow(p, l, huge)
            }
        };
        assert_eq!(r, Err(AllocError), "zeroed {zeroed}");
        // SAFETY: p still holds 8 MiB.
        assert_eq!(
            check_pattern(unsafe { bytes(p, 8 * MIB) }, 5),
            None,
            "block intact"
        );
    }
    // A 300 MiB block still fits, then the first one is freed and all is well.
    let big = layout(300 * MIB, 8);
    // SAFETY: p is live with `l`.
    let q = unsafe { a.grow_zeroed(p, l, big) }.unwrap().cast::<u8>();
    // SAFETY: q holds 300 MiB.
    let s = unsafe { bytes(q, 300 * MIB) };
    assert_eq!(check_pattern(&s[..8 * MIB], 5), None);
    assert_zero(&s[8 * MIB..], "grown under the limit");
    // SAFETY: q is live with `big`.
    unsafe { a.deallocate(q, big) };
    v.extend(std::iter::repeat_n(1u8, 64 * MIB));
    assert_eq!(first_not(&v, 1), None);
    println!("OOM-OK release={}: {}", release.name(), a.stats());
}

/// Sets `RLIMIT_AS` to the current address space plus `headroom` bytes.
fn limit_address_space(headroom: u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let vm_kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmSize:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap();
    let rl = libc::rlimit {
        rlim_cur: vm_kib * 1024 + headroom,
        rlim_max: libc::RLIM_INFINITY,
    };
    // SAFETY: rl is a valid rlimit; lowering our own soft limit is always allowed.
    let rc = unsafe { libc::setrlimit(libc::RLIMIT_AS, &rl) };
    assert_eq!(rc, 0, "setrlimit: {}", std::io::Error::last_os_error());
}

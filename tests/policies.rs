//! Every release policy × prefetch mode on local `PageAlloc` instances, called through the
//! `GlobalAlloc` methods directly: content through realloc, zeroing after dirty frees,
//! alignments, the threshold boundary, threads, stats, and that the policies really differ in
//! what reuse costs (minor faults).

mod common;

use std::alloc::{GlobalAlloc, Layout};

use common::*;
use pagewise::{Config, PageAlloc, Prefetch, Release, Stats};

const THRESHOLD: usize = 256 * KIB;

fn base_config(release: Release, prefetch: Prefetch) -> Config {
    Config::DEFAULT
        .ignore_env()
        .release(release)
        .prefetch(prefetch)
        .threshold(THRESHOLD)
}

fn instance(release: Release, prefetch: Prefetch) -> PageAlloc {
    PageAlloc::new().with_config(base_config(release, prefetch))
}

fn combos() -> Vec<(Release, Prefetch)> {
    let mut v = Vec::new();
    for r in Release::ALL {
        for p in Prefetch::ALL {
            v.push((r, p));
        }
    }
    v
}

fn tag(r: Release, p: Prefetch) -> String {
    format!("release={} prefetch={}", r.name(), p.name())
}

fn layout(size: usize, align: usize) -> Layout {
    Layout::from_size_align(size, align).expect("valid layout")
}

/// alloc (or alloc_zeroed) that must succeed with the requested alignment.
fn must_alloc(a: &PageAlloc, l: Layout, zeroed: bool, what: &str) -> *mut u8 {
    // SAFETY: l has non-zero size (all callers pass sizes >= 1).
    let p = unsafe {
        if zeroed {
            a.alloc_zeroed(l)
        } else {
            a.alloc(l)
        }
    };
    assert!(!p.is_null(), "{what}: alloc({l:?}) returned null");
    assert_eq!(
        p as usize % l.align(),
        0,
        "{what}: alloc({l:?}) returned {p:p}, not aligned"
    );
    p
}

/// realloc that must succeed; keeps the alignment.
fn must_realloc(a: &PageAlloc, p: *mut u8, l: Layout, new_size: usize, what: &str) -> *mut u8 {
    // SAFETY: p was allocated by `a` with layout l and is still live; new_size > 0.
    let q = unsafe { a.realloc(p, l, new_size) };
    assert!(
        !q.is_null(),
        "{what}: realloc({p:p}, {l:?}, {new_size}) returned null"
    );
    assert_eq!(
        q as usize % l.align(),
        0,
        "{what}: realloc to {new_size} returned {q:p}, alignment {} lost",
        l.align()
    );
    q
}

fn slice<'a>(p: *mut u8, len: usize) -> &'a mut [u8] {
    // SAFETY: callers pass a live block of at least len bytes that nothing else references.
    unsafe { std::slice::from_raw_parts_mut(p, len) }
}

fn assert_pattern(p: *mut u8, len: usize, id: u64, what: &str) {
    if let Some(off) = check_pattern(slice(p, len), id) {
        panic!(
            "{what}: content lost at offset {off} of {len} (byte {:#04x}, expected {:#04x})",
            slice(p, len)[off],
            pattern_byte(id, off)
        );
    }
}

fn assert_zero(p: *mut u8, len: usize, what: &str) {
    if let Some(off) = first_not(slice(p, len), 0) {
        panic!(
            "{what}: byte {off} of {len} is {:#04x}, expected zero",
            slice(p, len)[off]
        );
    }
}

#[test]
fn realloc_growth_and_shrink_preserve_content() {
    for (r, p) in combos() {
        let what = tag(r, p);
        let a = instance(r, p);
        let l = layout(MIB, 8);
        let mut ptr = must_alloc(&a, l, false, &what);
        fill_pattern(slice(ptr, MIB), 1);
        let mut size = MIB;
        // Grow by doubling to 256 MiB; odd sizes in between catch page-rounding mistakes.
        while size < 256 * MIB {
            let odd = size * 2 - 123;
            ptr = must_realloc(&a, ptr, layout(size, 8), odd, &what);
            assert_pattern(ptr, size, 1, &format!("{what}: grow {size} -> {odd}"));
            fill_pattern(slice(ptr, odd), 1);
            ptr = must_realloc(&a, ptr, layout(odd, 8), size * 2, &what);
            assert_pattern(ptr, odd, 1, &format!("{what}: grow {odd} -> {}", size * 2));
            size *= 2;
            fill_pattern(slice(ptr, size), 1);
        }
        // Shrink back by halving, to sizes that end mid-page, checking what is kept each time.
        while size > MIB {
            let new = size / 2 + 123;
            ptr = must_realloc(&a, ptr, layout(size, 8), new, &what);
            assert_pattern(ptr, new, 1, &format!("{what}: shrink {size} -> {new}"));
            // A shrunk block must stay fully writable up to its new size.
            slice(ptr, new)[new - 1] = pattern_byte(1, new - 1);
            size = new;
        }
        // Shrink below the threshold: the content moves to the inner allocator.
        let small = THRESHOLD / 2 + 5;
        ptr = must_realloc(&a, ptr, layout(size, 8), small, &what);
        assert_pattern(ptr, small, 1, &format!("{what}: shrink {size} -> {small}"));
        // And grow it back across the threshold.
        ptr = must_realloc(&a, ptr, layout(small, 8), 3 * MIB + 1, &what);
        assert_pattern(ptr, small, 1, &format!("{what}: grow {small} -> 3 MiB+1"));
        // SAFETY: ptr is live with this layout.
        unsafe { a.dealloc(ptr, layout(3 * MIB + 1, 8)) };
        let s = a.stats();
        assert!(s.reallocs > 0, "{what}: stats.reallocs did not move: {s:?}");
        assert_eq!(
            s.live_bytes, 0,
            "{what}: live_bytes should be 0 when nothing is live: {s:?}"
        );
    }
}

#[test]
fn zeroed_after_dirty_free_is_zero() {
    // Same size (exact cache hit), a smaller size (a larger cached range reused) and odd sizes.
    let cases: &[(usize, usize)] = &[
        (THRESHOLD, THRESHOLD),
        (MIB, MIB),
        (2 * MIB, 2 * MIB),
        (64 * MIB + 4096, 64 * MIB + 4096),
        (8 * MIB, 8 * MIB - 100),
        (3 * MIB + 17, 3 * MIB + 17),
    ];
    for (r, p) in combos() {
        let what = tag(r, p);
        let a = instance(r, p);
        for &(dirty, zeroed) in cases {
            for align in [8, 4096, 2 * MIB] {
                let ld = layout(dirty, align);
                let d = must_alloc(&a, ld, false, &what);
                slice(d, dirty).fill(0xAB);
                // SAFETY: d is live with layout ld.
                unsafe { a.dealloc(d, ld) };
                let lz = layout(zeroed, align);
                let z = must_alloc(&a, lz, true, &what);
                assert_zero(
                    z,
                    zeroed,
                    &format!(
                        "{what}: alloc_zeroed({zeroed}, align {align}) after dirty free of {dirty}"
                    ),
                );
                // Dirty it too, so the next case starts from a dirty cache again.
                slice(z, zeroed).fill(0xCD);
                // SAFETY: z is live with layout lz.
                unsafe { a.dealloc(z, lz) };
            }
        }
    }
}

#[test]
fn zeroed_after_dirty_free_and_reclaim_is_zero() {
    // The dirty block is freed, then the kernel reclaims part of it (MADV_PAGEOUT over the
    // freed range stands in for memory pressure: it discards lazily-freed pages). A recycled
    // block is then a mix of stale and zero pages; alloc_zeroed must still be all zero, and a
    // plain alloc must keep what is written into it.
    for (r, p) in combos() {
        let what = tag(r, p);
        let a = instance(r, p);
        let size = 16 * MIB;
        let l = layout(size, 4096);
        let d = must_alloc(&a, l, false, &what);
        slice(d, size).fill(0xAB);
        // SAFETY: d is live with layout l.
        unsafe { a.dealloc(d, l) };
        // Reclaim every other MiB of the freed range (it may be unmapped: ignore errors).
        for k in (0..16).step_by(2) {
            // SAFETY: d + k MiB is inside the range we were given; madvise only advises.
            let _ = advise(unsafe { d.add(k * MIB) }, MIB, MADV_PAGEOUT);
        }
        let z = must_alloc(&a, l, true, &what);
        assert_zero(
            z,
            size,
            &format!("{what}: alloc_zeroed after free + reclaim"),
        );
        fill_pattern(slice(z, size), 9);
        // SAFETY: z is live with layout l.
        unsafe { a.dealloc(z, l) };
        let q = must_alloc(&a, l, false, &what);
        fill_pattern(slice(q, size), 10);
        for k in (1..16).step_by(2) {
            // SAFETY: inside the live block q; PAGEOUT only drops clean lazy-free pages, never
            // data the program wrote.
            let _ = advise(unsafe { q.add(k * MIB) }, MIB, MADV_PAGEOUT);
        }
        assert_pattern(q, size, 10, &format!("{what}: written block after PAGEOUT"));
        // SAFETY: q is live with layout l.
        unsafe { a.dealloc(q, l) };
    }
}

#[test]
fn large_alignments_up_to_1gib() {
    for (r, p) in combos() {
        let what = tag(r, p);
        let a = instance(r, p);
        let mut align = 8usize;
        while align <= GIB {
            for size in [THRESHOLD, 3 * MIB + 5] {
                let l = layout(size, align);
                let q = must_alloc(&a, l, false, &format!("{what} align {align}"));
                let s = slice(q, size);
                s[0] = 0x11;
                s[size - 1] = 0x22;
                assert_eq!((s[0], s[size - 1]), (0x11, 0x22));
                // Grow and shrink keep the alignment (must_realloc checks it).
                let q2 = must_realloc(&a, q, l, size * 2, &format!("{what} align {align}"));
                let s = slice(q2, size * 2);
                assert_eq!(
                    (s[0], s[size - 1]),
                    (0x11, 0x22),
                    "{what}: realloc with align {align} lost content"
                );
                s[size * 2 - 1] = 0x33;
                // SAFETY: q2 is live with size*2 and alignment align.
                unsafe { a.dealloc(q2, layout(size * 2, align)) };
            }
            align *= 2;
        }
        // Small blocks with page alignment still come back aligned.
        for align in [8usize, 64, 4096] {
            let l = layout(100, align);
            let q = must_alloc(&a, l, true, &what);
            assert_zero(q, 100, &what);
            // SAFETY: q is live with layout l.
            unsafe { a.dealloc(q, l) };
        }
    }
}

#[test]
fn threshold_boundary() {
    for (r, p) in combos() {
        let what = tag(r, p);
        let t = 1 << 20;
        let a = PageAlloc::new().with_config(base_config(r, p).threshold(t));
        assert_eq!(
            a.config().get_threshold(),
            t,
            "{what}: threshold not applied"
        );
        let s0 = a.stats();
        let below = layout(t - 1, 8);
        let q = must_alloc(&a, below, false, &what);
        slice(q, t - 1).fill(3);
        let s1 = a.stats();
        assert_eq!(
            s1.large_allocs, s0.large_allocs,
            "{what}: threshold-1 bytes should go to the inner allocator: {s0:?} -> {s1:?}"
        );
        let at = layout(t, 8);
        let b = must_alloc(&a, at, false, &what);
        slice(b, t).fill(4);
        let s2 = a.stats();
        assert_eq!(
            s2.large_allocs,
            s1.large_allocs + 1,
            "{what}: threshold bytes should be a large allocation: {s1:?} -> {s2:?}"
        );
        // SAFETY: both blocks are live with these layouts.
        unsafe {
            a.dealloc(q, below);
            a.dealloc(b, at);
        }
        let s3 = a.stats();
        assert_eq!(
            s3.large_frees,
            s2.large_frees + 1,
            "{what}: exactly one large free expected: {s2:?} -> {s3:?}"
        );
        assert_eq!(
            s3.live_bytes, 0,
            "{what}: live_bytes after freeing all: {s3:?}"
        );
    }
}

#[test]
fn threads_share_one_instance() {
    for (r, p) in combos() {
        let what = tag(r, p);
        let a = instance(r, p);
        std::thread::scope(|sc| {
            for t in 0..4u64 {
                let a = &a;
                let what = &what;
                sc.spawn(move || {
                    let mut rng = XorShift::new(t + 1);
                    for i in 0..20u64 {
                        let id = t << 32 | i;
                        let size = rng.range(THRESHOLD as u64, 8 * MIB as u64) as usize;
                        let align = 1usize << rng.range(3, 21);
                        let l = layout(size, align);
                        let q = must_alloc(a, l, i % 3 == 0, what);
                        if i % 3 == 0 {
                            assert_zero(q, size, &format!("{what} thread {t}: alloc_zeroed"));
                        }
                        fill_pattern(slice(q, size), id);
                        let new = rng.range(THRESHOLD as u64 / 2, 8 * MIB as u64) as usize;
                        let q = must_realloc(a, q, l, new, what);
                        assert_pattern(
                            q,
                            size.min(new),
                            id,
                            &format!("{what} thread {t}: realloc {size} -> {new}"),
                        );
                        // SAFETY: q is live with (new, align).
                        unsafe { a.dealloc(q, layout(new, align)) };
                    }
                });
            }
        });
        let s = a.stats();
        assert_eq!(
            s.live_bytes, 0,
            "{what}: live_bytes after all threads: {s:?}"
        );
    }
}

/// Minor faults of this thread over `reuses` rounds of: alloc 64 MiB, write every page,
/// dealloc (after one warm-up round).
fn faults_per_reuse(release: Release) -> (f64, Stats) {
    const SIZE: usize = 64 * MIB;
    const REUSES: u64 = 4;
    let a = PageAlloc::new().with_config(
        base_config(release, Prefetch::None)
            .decay_ms(None)
            .background(false),
    );
    let l = layout(SIZE, 4096);
    let round = |v: u8| {
        let q = must_alloc(&a, l, false, release.name());
        touch_pages(q, SIZE, v);
        // SAFETY: q is live with layout l.
        unsafe { a.dealloc(q, l) };
    };
    round(1);
    let f0 = thread_minflt();
    for i in 0..REUSES {
        round(i as u8 + 2);
    }
    let faults = thread_minflt() - f0;
    (faults as f64 / REUSES as f64, a.stats())
}

#[test]
fn policies_really_differ_in_reuse_faults() {
    let pages = (64 * MIB / PAGE) as f64;
    let thp_always = thp_mode().as_deref() == Some("always");
    for r in [
        Release::Retain,
        Release::Free,
        Release::DontNeed,
        Release::Unmap,
    ] {
        let (per_reuse, stats) = faults_per_reuse(r);
        println!(
            "release={}: {per_reuse:.0} minor faults per reuse of a 64 MiB buffer ({pages} pages)",
            r.name()
        );
        match r {
            Release::Retain | Release::Free => assert!(
                per_reuse <= pages / 100.0,
                "release={}: reusing a cached 64 MiB buffer should not fault, got {per_reuse} \
                 faults per reuse; stats {stats:?}",
                r.name()
            ),
            _ if thp_always => {
                println!("NOTE: THP is `always`: pages may be 2 MiB; lower bound not checked")
            }
            _ => assert!(
                per_reuse >= pages * 0.9,
                "release={}: reuse should fault in every 4 KiB page again (~{pages}), got \
                 {per_reuse}; stats {stats:?}",
                r.name()
            ),
        }
    }
}

#[test]
fn stats_counters_behave() {
    let a = PageAlloc::new().with_config(
        base_config(Release::Retain, Prefetch::None)
            .decay_ms(None)
            .background(false)
            .cache(512 * MIB),
    );
    let l = layout(32 * MIB, 4096);
    let s0 = a.stats();
    let q = must_alloc(&a, l, false, "retain");
    touch_pages(q, 32 * MIB, 1);
    let s1 = a.stats();
    assert_eq!(s1.large_allocs, s0.large_allocs + 1, "{s0:?} -> {s1:?}");
    assert!(s1.live_bytes >= 32 * MIB as u64, "live_bytes: {s1:?}");
    assert!(
        s1.mmap_calls > s0.mmap_calls,
        "first alloc must mmap: {s1:?}"
    );
    // SAFETY: q is live with layout l.
    unsafe { a.dealloc(q, l) };
    let s2 = a.stats();
    assert_eq!(s2.large_frees, s1.large_frees + 1, "{s1:?} -> {s2:?}");
    assert_eq!(s2.live_bytes, 0, "live_bytes after free: {s2:?}");
    assert!(
        s2.cached_bytes >= 32 * MIB as u64,
        "retain keeps the freed range in the cache: {s2:?}"
    );
    let q = must_alloc(&a, l, false, "retain");
    let s3 = a.stats();
    assert_eq!(
        s3.cache_hits,
        s2.cache_hits + 1,
        "same-size alloc should hit the cache: {s2:?} -> {s3:?}"
    );
    assert_eq!(
        s3.mmap_calls, s2.mmap_calls,
        "a cache hit needs no mmap: {s2:?} -> {s3:?}"
    );
    assert!(
        s3.cached_bytes < s2.cached_bytes,
        "cached_bytes should fall on a hit: {s2:?} -> {s3:?}"
    );
    // Grow a 32 MiB block to 512 MiB: the big ones are moved with mremap, not copied.
    let q = must_realloc(&a, q, l, 512 * MIB, "retain");
    let s4 = a.stats();
    assert!(s4.reallocs > s3.reallocs, "reallocs: {s3:?} -> {s4:?}");
    assert!(
        s4.mremaps + s4.in_place_reallocs > s3.mremaps + s3.in_place_reallocs,
        "large->large realloc should use mremap or grow in place: {s3:?} -> {s4:?}"
    );
    // SAFETY: q is live with 512 MiB, align 4096.
    unsafe { a.dealloc(q, layout(512 * MIB, 4096)) };
    let s5 = a.stats();
    assert!(s5.cached_bytes > 0, "the 512 MiB range is cached: {s5:?}");
    a.purge();
    let s6 = a.stats();
    assert_eq!(s6.cached_bytes, 0, "purge empties the cache: {s6:?}");
    assert!(
        s6.purge_releases > s5.purge_releases,
        "purge_releases: {s5:?} -> {s6:?}"
    );
    assert!(
        s6.munmap_calls > s5.munmap_calls,
        "purge munmaps: {s5:?} -> {s6:?}"
    );
    // Display works and mentions a counter.
    let text = s6.to_string();
    assert!(
        text.contains("cache"),
        "Stats Display should name its counters: {text}"
    );
    // Cache bound: freeing more than the cache holds keeps cached_bytes within the bound.
    let big = layout(300 * MIB, 4096);
    let x = must_alloc(&a, big, false, "retain");
    let y = must_alloc(&a, big, false, "retain");
    // SAFETY: x and y are live with layout big.
    unsafe {
        a.dealloc(x, big);
        a.dealloc(y, big);
    }
    let s7 = a.stats();
    assert!(
        s7.cached_bytes <= 512 * MIB as u64,
        "cached_bytes {} exceeds the 512 MiB cache bound: {s7:?}",
        s7.cached_bytes
    );
}

#[test]
fn pattern_helpers_detect_corruption() {
    // The checks above are only as good as these helpers: make sure they can fail.
    let mut v = vec![0u64; (3 * PAGE + 100) / 8 + 1];
    // SAFETY: reinterpret the u64 buffer as bytes (8-aligned, in bounds).
    let s = unsafe { std::slice::from_raw_parts_mut(v.as_mut_ptr() as *mut u8, 3 * PAGE + 100) };
    fill_pattern(s, 5);
    assert_eq!(check_pattern(s, 5), None);
    assert_eq!(check_pattern(s, 6).map(|o| o < 8), Some(true), "other id");
    for off in [0, 7, 8, PAGE - 1, PAGE, PAGE + 3, 3 * PAGE + 99] {
        s[off] ^= 0x40;
        assert_eq!(check_pattern(s, 5), Some(off), "flipped byte {off}");
        s[off] ^= 0x40;
    }
    // A page copied to the wrong place is detected (chunk number in the first word).
    let (a, b) = s.split_at_mut(PAGE);
    b[..PAGE].copy_from_slice(a);
    assert_eq!(check_pattern(s, 5), Some(PAGE), "misplaced page");
    fill_pattern(s, 5);
    s[2 * PAGE..3 * PAGE].fill(0);
    assert_eq!(check_pattern(s, 5), Some(2 * PAGE), "zeroed page");
    assert_eq!(first_not(&s[2 * PAGE..3 * PAGE], 0), None);
    assert_eq!(first_not(s, 0), Some(0));
    let mut z = vec![0u8; 3 * PAGE + 5];
    assert_eq!(first_not(&z, 0), None);
    z[3 * PAGE + 4] = 1;
    assert_eq!(first_not(&z, 0), Some(3 * PAGE + 4));
}

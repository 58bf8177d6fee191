//! Kernel facts the design relies on (how fresh pages fault, what each release advice does to a
//! range, huge pages and `mremap`), checked with libc only — no pagewise API. If one of these
//! fails on a machine, the library's policies do not mean there what the documentation says they
//! mean.
//!
//! Fault counts come from `getrusage(RUSAGE_THREAD)` (each test runs on its own thread), memory
//! from `/proc/self/smaps_rollup`; tests that read smaps take a process-wide lock so that the
//! others' mappings do not disturb their deltas.

mod common;

use common::*;

const LEN: usize = 64 * MIB;
const PAGES: u64 = (LEN / PAGE) as u64;

/// A 64 MiB mapping with THP disabled (so every page is a 4 KiB page).
fn small_page_mapping() -> Mapping {
    let m = Mapping::new(LEN);
    m.advise(MADV_NOHUGEPAGE).expect("MADV_NOHUGEPAGE");
    m
}

#[test]
fn fresh_mapping_faults_once_per_page() {
    let m = small_page_mapping();
    let before = thread_minflt();
    touch_pages(m.ptr, m.len, 1);
    let faults = thread_minflt() - before;
    println!("touching {PAGES} fresh pages: {faults} minor faults");
    assert!(
        (PAGES * 98 / 100..=PAGES + PAGES / 50 + 64).contains(&faults),
        "expected about one minor fault per 4 KiB page ({PAGES}), got {faults}"
    );
}

#[test]
fn populate_write_prefaults() {
    let m = small_page_mapping();
    match m.advise(MADV_POPULATE_WRITE) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
            println!("NOTE: MADV_POPULATE_WRITE not supported (kernel < 5.14); skipped");
            return;
        }
        Err(e) => panic!("MADV_POPULATE_WRITE failed: {e}"),
    }
    // The populate call itself counts its page-ins as minor faults; measure the touch only.
    let before = thread_minflt();
    touch_pages(m.ptr, m.len, 1);
    let faults = thread_minflt() - before;
    println!("touching {PAGES} pages after MADV_POPULATE_WRITE: {faults} minor faults");
    assert!(
        faults <= PAGES / 100,
        "after MADV_POPULATE_WRITE touching should not fault, got {faults} faults for {PAGES} pages"
    );
}

#[test]
fn dontneed_zeroes_and_drops_rss() {
    let _g = process_lock();
    let mut m = small_page_mapping();
    m.as_mut_slice().fill(0xAB);
    let before = rollup();
    m.advise(MADV_DONTNEED).expect("MADV_DONTNEED");
    let after = rollup();
    let dropped = before.rss.saturating_sub(after.rss);
    assert!(
        dropped >= LEN as u64 * 95 / 100,
        "MADV_DONTNEED of {} MiB populated should drop RSS at once; dropped {:.1} MiB \
         (before {before:?}, after {after:?})",
        LEN / MIB,
        mib(dropped)
    );
    // The next access gets zero-fill-on-demand pages (and faults, one per page).
    let f0 = thread_minflt();
    if let Some(i) = first_not(m.as_slice(), 0) {
        panic!(
            "after MADV_DONTNEED byte {i} reads {:#x}, expected 0",
            m.as_slice()[i]
        );
    }
    touch_pages(m.ptr, m.len, 2);
    let faults = thread_minflt() - f0;
    assert!(
        faults >= PAGES * 98 / 100,
        "re-touching after MADV_DONTNEED should fault about once per page, got {faults}"
    );
}

#[test]
fn free_keeps_data_lazily_and_lazyfree_rises() {
    let _g = process_lock();
    let mut m = small_page_mapping();
    m.as_mut_slice().fill(0xAB);
    let before = rollup();
    m.advise(MADV_FREE).expect("MADV_FREE");
    let after = rollup();
    let lazy = after.lazy_free.saturating_sub(before.lazy_free);
    println!(
        "MADV_FREE of {} MiB: LazyFree +{:.1} MiB, Rss {:.1} -> {:.1} MiB",
        LEN / MIB,
        mib(lazy),
        mib(before.rss),
        mib(after.rss)
    );
    // smaps may under-count pages still sitting in a per-CPU lazyfree batch: allow 1 MiB.
    assert!(
        lazy + MIB as u64 >= LEN as u64,
        "LazyFree should rise by about {} MiB after MADV_FREE, rose by {:.1} MiB \
         (before {before:?}, after {after:?})",
        LEN / MIB,
        mib(lazy)
    );
    assert!(
        after.rss + MIB as u64 >= before.rss,
        "MADV_FREE should not drop RSS without memory pressure (before {before:?}, after {after:?})"
    );
    // Contents: each page is either still the old data or (if reclaimed meanwhile) all zero.
    let s = m.as_slice();
    let mut stale = 0;
    for (i, page) in s.chunks(PAGE).enumerate() {
        match page[0] {
            0xAB if first_not(page, 0xAB).is_none() => stale += 1,
            0 if first_not(page, 0).is_none() => {}
            _ => panic!("after MADV_FREE page {i} is neither the old data nor zero"),
        }
    }
    println!("{stale} of {PAGES} pages still hold the old data");
    // A write cancels the free for that page: LazyFree falls by the written pages.
    let mid = rollup();
    touch_pages(m.ptr, m.len, 0xCD);
    let end = rollup();
    assert!(
        end.lazy_free + (LEN as u64) / 2 <= mid.lazy_free + MIB as u64,
        "writing every page should cancel MADV_FREE (LazyFree {:.1} -> {:.1} MiB)",
        mib(mid.lazy_free),
        mib(end.lazy_free)
    );
}

#[test]
fn free_then_pageout_discards_without_swap() {
    let _g = process_lock();
    // PAGEOUT drains only the local CPU's LRU batches: stay on one CPU for FREE and PAGEOUT.
    pin_to_current_cpu();
    let mut m = small_page_mapping();
    m.as_mut_slice().fill(0xAB);
    let base = rollup();
    m.advise(MADV_FREE).expect("MADV_FREE");
    let freed = rollup();
    let mut rounds = 0;
    let mut now = freed;
    while rounds < 10 {
        rounds += 1;
        m.advise(MADV_PAGEOUT).expect("MADV_PAGEOUT");
        now = rollup();
        if base.rss.saturating_sub(now.rss) >= LEN as u64 * 99 / 100 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    unpin();
    println!(
        "FREE+PAGEOUT ({rounds} rounds): Rss {:.1} -> {:.1} MiB, LazyFree {:.1} -> {:.1} -> {:.1} MiB",
        mib(base.rss),
        mib(now.rss),
        mib(base.lazy_free),
        mib(freed.lazy_free),
        mib(now.lazy_free)
    );
    assert!(
        base.rss.saturating_sub(now.rss) >= LEN as u64 * 99 / 100,
        "MADV_PAGEOUT after MADV_FREE should drop the {} MiB from RSS even without swap \
         (after {rounds} rounds: base {base:?}, now {now:?})",
        LEN / MIB
    );
    assert!(
        now.lazy_free <= base.lazy_free + MIB as u64,
        "LazyFree should fall back after PAGEOUT (base {base:?}, now {now:?})"
    );
    if let Some(i) = first_not(m.as_slice(), 0) {
        panic!(
            "after MADV_FREE + MADV_PAGEOUT byte {i} reads {:#x}, expected 0",
            m.as_slice()[i]
        );
    }
}

#[test]
fn madvise_probe_reports_support() {
    let supported = [
        ("MADV_DONTNEED", MADV_DONTNEED),
        ("MADV_FREE", MADV_FREE),
        ("MADV_HUGEPAGE", MADV_HUGEPAGE),
        ("MADV_NOHUGEPAGE", MADV_NOHUGEPAGE),
        ("MADV_COLD", MADV_COLD),
        ("MADV_PAGEOUT", MADV_PAGEOUT),
        ("MADV_POPULATE_READ", MADV_POPULATE_READ),
        ("MADV_POPULATE_WRITE", MADV_POPULATE_WRITE),
    ];
    for (name, adv) in supported {
        if let Err(e) = advise(std::ptr::null_mut(), 0, adv) {
            panic!("probe madvise(0, 0, {name}) should return 0 on Linux 6.x, got {e}");
        }
    }
    let bogus = 12345;
    let e = advise(std::ptr::null_mut(), 0, bogus).expect_err("unknown advice must fail");
    assert_eq!(
        e.raw_os_error(),
        Some(libc::EINVAL),
        "unknown advice should give EINVAL, got {e}"
    );
}

#[test]
fn hugepage_advice_gives_anon_huge_pages() {
    match thp_mode().as_deref() {
        Some("never") | None => {
            println!("NOTE: THP is disabled (or unknown); skipped");
            return;
        }
        _ => {}
    }
    let _g = process_lock();
    const HUGE: usize = 2 * MIB;
    const SPAN: usize = 8 * MIB;
    // Over-map by 2 MiB and use the 2 MiB aligned part.
    let m = Mapping::new(SPAN + HUGE);
    let aligned = (m.ptr as usize + HUGE - 1) & !(HUGE - 1);
    let p = aligned as *mut u8;
    advise(p, SPAN, MADV_HUGEPAGE).expect("MADV_HUGEPAGE");
    let before = rollup();
    let f0 = thread_minflt();
    touch_pages(p, SPAN, 7);
    let faults = thread_minflt() - f0;
    let after = rollup();
    let huge = after.anon_huge.saturating_sub(before.anon_huge);
    println!(
        "MADV_HUGEPAGE on {} MiB aligned: AnonHugePages +{:.1} MiB, {faults} faults",
        SPAN / MIB,
        mib(huge)
    );
    assert!(
        huge >= HUGE as u64,
        "touching a 2 MiB-aligned MADV_HUGEPAGE range should give AnonHugePages > 0 \
         (before {before:?}, after {after:?}, {faults} faults; is memory too fragmented?)"
    );
    // Fewer faults than 4 KiB pages: one per huge page where THP succeeded.
    assert!(
        faults < (SPAN / PAGE) as u64,
        "THP-backed touch should take far fewer than one fault per 4 KiB page, got {faults}"
    );
}

#[test]
fn mremap_maymove_preserves_content_without_faults() {
    // Map LEN + one page and make the last page a separate PROT_NONE mapping right after the
    // part we grow, so the grow cannot happen in place and the kernel must move.
    let total = LEN + PAGE;
    let m = Mapping::new(total);
    m.advise(MADV_NOHUGEPAGE).expect("MADV_NOHUGEPAGE");
    // SAFETY: the last page lies inside the mapping m owns.
    let rc = unsafe { libc::mprotect(m.ptr.add(LEN) as *mut libc::c_void, PAGE, libc::PROT_NONE) };
    assert_eq!(rc, 0, "mprotect: {}", std::io::Error::last_os_error());
    {
        // SAFETY: the first LEN bytes are read-write and owned by m.
        let s = unsafe { std::slice::from_raw_parts_mut(m.ptr, LEN) };
        fill_pattern(s, 42);
    }
    let old = m.ptr;
    let f0 = thread_minflt();
    // SAFETY: old..old+LEN is a mapping we own; MAYMOVE lets the kernel pick a new place.
    let new = unsafe { libc::mremap(old as *mut libc::c_void, LEN, 2 * LEN, libc::MREMAP_MAYMOVE) };
    assert_ne!(
        new,
        libc::MAP_FAILED,
        "mremap: {}",
        std::io::Error::last_os_error()
    );
    let new = new as *mut u8;
    // From here the old range [old, old+LEN) is gone; only the guard page remains in m.
    let moved = new != old;
    // SAFETY: new..new+2*LEN is now our mapping.
    let s = unsafe { std::slice::from_raw_parts(new, 2 * LEN) };
    let wrong = check_pattern(&s[..LEN], 42);
    let faults = thread_minflt() - f0;
    let tail_nonzero = first_not(&s[LEN..], 0);
    // SAFETY: unmap what mremap gave us and the guard page still owned through m. m must not
    // unmap its whole old range on drop: another thread may have mapped something there since.
    unsafe {
        libc::munmap(new as *mut libc::c_void, 2 * LEN);
        libc::munmap(old.add(LEN) as *mut libc::c_void, PAGE);
    }
    std::mem::forget(m);
    assert!(
        moved,
        "the grow was expected to move (the next page is taken)"
    );
    assert_eq!(
        wrong, None,
        "mremap(MAYMOVE) lost content at offset {wrong:?}"
    );
    assert!(
        faults <= PAGES / 100,
        "reading moved pages should not fault (PTEs move), got {faults} faults for {PAGES} pages"
    );
    assert_eq!(tail_nonzero, None, "grown tail should read zero");
}

#[test]
fn mremap_places_2mib_multiples_at_2mib_boundaries() {
    // pagewise grows blocks with plain mremap(MREMAP_MAYMOVE) (MREMAP_FIXED into a reservation
    // is unsound on kernels that unmap the destination before checking the source), and relies
    // on Linux 6.7+ placing moved ranges of 2 MiB multiples at 2 MiB-aligned addresses, so that
    // a grown block keeps its transparent huge pages. Each round blocks in-place growth with a
    // guard page, so the kernel must choose a new place.
    const HUGE: usize = 2 * MIB;
    let mut aligned = 0;
    let rounds = 16;
    for _ in 0..rounds {
        let m = Mapping::new(4 * MIB + PAGE);
        // SAFETY: the last page lies inside the mapping m owns.
        let rc = unsafe {
            libc::mprotect(
                m.ptr.add(4 * MIB) as *mut libc::c_void,
                PAGE,
                libc::PROT_NONE,
            )
        };
        assert_eq!(rc, 0);
        // SAFETY: the first 4 MiB are ours; MAYMOVE picks a free destination.
        let new = unsafe {
            libc::mremap(
                m.ptr as *mut libc::c_void,
                4 * MIB,
                8 * MIB,
                libc::MREMAP_MAYMOVE,
            )
        };
        assert_ne!(new, libc::MAP_FAILED, "{}", std::io::Error::last_os_error());
        aligned += usize::from(new as usize % HUGE == 0);
        // SAFETY: new..new+8 MiB and the guard page are ours; the old range moved away.
        unsafe {
            libc::munmap(new, 8 * MIB);
            libc::munmap(m.ptr.add(4 * MIB) as *mut libc::c_void, PAGE);
        }
        std::mem::forget(m);
    }
    println!("mremap(MAYMOVE) 4 MiB -> 8 MiB: {aligned}/{rounds} results 2 MiB-aligned");
    assert_eq!(
        aligned, rounds,
        "moved 2 MiB-multiple ranges are not 2 MiB-aligned here"
    );
}

/// `Rss` and `AnonHugePages` (bytes) of the mapping that starts at `start`, from
/// `/proc/self/smaps`.
fn smaps_of(start: usize) -> Option<(u64, u64)> {
    let text = std::fs::read_to_string("/proc/self/smaps").expect("read /proc/self/smaps");
    let head = format!("{start:x}-");
    let mut lines = text.lines().skip_while(|l| !l.starts_with(&head));
    lines.next()?;
    let (mut rss, mut huge) = (None, None);
    for l in lines {
        let mut f = l.split_whitespace();
        match (f.next(), f.next().and_then(|v| v.parse::<u64>().ok())) {
            (Some("Rss:"), Some(kb)) => rss = Some(kb * 1024),
            (Some("AnonHugePages:"), Some(kb)) => huge = Some(kb * 1024),
            (Some(k), _) if !k.ends_with(':') => break, // the next mapping's header
            _ => {}
        }
    }
    Some((rss?, huge?))
}

#[test]
fn hugepage_mapping_with_a_partial_tail_takes_huge_pages_for_the_whole_2mib_ranges_only() {
    // pagewise rounds blocks to pages, not to 2 MiB (issue #12): a block of 4 MiB + 256 KiB is
    // a 2 MiB-aligned MADV_HUGEPAGE mapping of exactly that length, and its RSS once touched is
    // its length, because the kernel gives a huge page only to an aligned 2 MiB range the
    // mapping covers whole; the tail takes 4 KiB pages. If the kernel put a huge page over the
    // tail, every block would cost up to 2 MiB more than its size.
    match thp_mode().as_deref() {
        Some("never") | None => {
            println!("NOTE: THP is disabled (or unknown); skipped");
            return;
        }
        _ => {}
    }
    const HUGE: usize = 2 * MIB;
    const LEN: usize = 4 * MIB + 256 * KIB;
    // Map the length rounded up to 2 MiB plus 2 MiB, take the aligned part, and unmap the rest
    // on both sides (what pagewise's fresh path does, in the over-map form).
    let over = 8 * MIB;
    // SAFETY: a fresh private anonymous mapping; no existing memory is affected.
    let raw = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            over,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    assert_ne!(raw, libc::MAP_FAILED, "{}", std::io::Error::last_os_error());
    let raw = raw as usize;
    let start = (raw + HUGE - 1) & !(HUGE - 1);
    // SAFETY: both ranges lie in the mapping just made and outside start..start+LEN.
    unsafe {
        if start > raw {
            libc::munmap(raw as *mut libc::c_void, start - raw);
        }
        libc::munmap((start + LEN) as *mut libc::c_void, raw + over - start - LEN);
    }
    let p = start as *mut u8;
    advise(p, LEN, MADV_HUGEPAGE).expect("MADV_HUGEPAGE");
    touch_pages(p, LEN, 3);
    let (rss, huge) = smaps_of(start).expect("the mapping is in /proc/self/smaps");
    // SAFETY: start..start+LEN is the mapping this test made; nothing refers to it any more.
    unsafe { libc::munmap(p as *mut libc::c_void, LEN) };
    println!(
        "MADV_HUGEPAGE mapping of {:.2} MiB: Rss {:.2} MiB, AnonHugePages {:.2} MiB",
        LEN as f64 / MIB as f64,
        mib(rss),
        mib(huge)
    );
    assert_eq!(
        rss, LEN as u64,
        "a touched mapping should hold exactly its length (no huge page past its end)"
    );
    assert!(
        huge <= 4 * MIB as u64,
        "only the two whole 2 MiB ranges may be huge pages, got {huge} bytes"
    );
    assert!(
        huge >= HUGE as u64,
        "the 2 MiB-aligned body should get huge pages (is memory too fragmented?), got {huge}"
    );
}

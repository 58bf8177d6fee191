//! A large allocation: from the cache, by growing a smaller cached range, or fresh.

use core::ptr;
use core::sync::atomic::Ordering::Relaxed;

use super::maintain::evict_oldest_resident;
use super::{map_len, Engine, Why};
use crate::cache::{Pages, Range};
use crate::map_count;
use crate::os::{self, HUGE, PAGE};
use crate::policy::Prefetch;
use crate::stats::Counters;

/// How long a cached range must have sat idle before a miss may give its pages back to make
/// room while the cache is serving well (see `Engine::recycle`): longer than a program cycling
/// through sizes leaves a range unused (malloc_large reuses within a few ms; 50 and 100 ms both
/// left it alone), shorter than the phases of one that has moved on (sort_merge's merges take
/// 100+ ms each).
const RECYCLE_IDLE_MS: u64 = 100;
/// The cache is not serving when this many of the last [`RECYCLE_WINDOW`] large allocations
/// missed: then a miss may recycle any resident range. Half of 8 was measured against 8 of 16
/// (single runs: the same on malloc_large and mixed_threads, sort_merge's first round 1.4 s
/// instead of 1.7 s).
const RECYCLE_MISSES: u32 = 4;
const RECYCLE_WINDOW: u32 = 8;
/// The most cached ranges [`Engine::fill_from_cache`] moves into one block: each move is a
/// syscall and splits a mapping.
const MAX_MOVES: usize = 4;

/// One allocation request, as the three steps see it.
struct Block {
    size: usize,
    /// [`map_len`] of `size`.
    len: usize,
    /// At least a page.
    align: usize,
    zeroed: bool,
    /// When the request came (`os::now_ms`).
    now: u64,
}

impl Engine {
    /// A large block of `size` bytes at `align`, or null if the kernel refuses a mapping. Three
    /// steps, each tried only if the one before could not serve: a cached range that fits, a
    /// smaller cached range grown by `mremap`, a fresh mapping.
    pub(crate) fn alloc(&self, size: usize, align: usize, zeroed: bool) -> *mut u8 {
        let Some(len) = map_len(size) else {
            return ptr::null_mut();
        };
        let now = os::now_ms();
        self.maintain_if_due(now);
        let block = Block {
            size,
            len,
            align: align.max(PAGE),
            zeroed,
            now,
        };
        let p = self
            .take_from_cache(&block)
            .or_else(|| self.grow_smaller_range(&block))
            .unwrap_or_else(|| self.map_fresh_block(&block));
        if !p.is_null() {
            Counters::add(&self.counters.large_allocs, 1);
            self.add_live(len as u64);
        }
        p
    }

    /// Step 1: a cached range that fits, carved at 2 MiB boundaries where huge pages are in use
    /// (so that a range that lost its pages faults back in as huge pages), else at `align`.
    fn take_from_cache(&self, b: &Block) -> Option<*mut u8> {
        let prefetch = self.prefetch();
        let carve_align = if prefetch.huge_pages() && b.len >= HUGE {
            b.align.max(HUGE)
        } else {
            b.align
        };
        let r = self
            .take_own(b.len, carve_align, b.now)
            .or_else(|| self.take_cached(b.len, carve_align))
            .or_else(|| {
                (carve_align != b.align)
                    .then(|| self.take_cached(b.len, b.align))
                    .flatten()
            })?;
        let c = &self.counters;
        Counters::add(&c.cache_hits, 1);
        self.note_outcome(false);
        let p = r.addr as *mut u8;
        match r.pages {
            // SAFETY: the range was just taken out of the cache: we own it and it is mapped
            // read-write for `len >= size` bytes.
            Pages::Resident | Pages::Lazy if b.zeroed => unsafe { ptr::write_bytes(p, 0, b.size) },
            Pages::Zero if prefetch.populates() => {
                Counters::add(&c.populate_calls, 1);
                // SAFETY: as above; populating keeps the (zero) contents.
                unsafe { os::populate(p, b.len) };
            }
            _ => {}
        }
        Some(p)
    }

    /// Step 2: nothing cached is big enough: grow the largest smaller range, if it is at least
    /// a quarter of the request, rather than map fresh pages beside it. Its pages serve the
    /// head, other cached ranges are moved in after them (`fill_from_cache`), and only the rest
    /// is new, so the cache does not pile up ranges of sizes the program has moved away from.
    /// Smaller ranges are left alone: growing a table from one far smaller (HashMap's doubling)
    /// would eat every small range, so that the next round of the same program finds only big
    /// ones, carves them, and faults again for its biggest table. A quarter (not half, as before
    /// issue #12) keeps that replay exact (`tests/engine_paths.rs`) and grows more of
    /// `malloc_large`'s blocks from pages the process holds.
    fn grow_smaller_range(&self, b: &Block) -> Option<*mut u8> {
        let own = self.take_own_extent(b.len, b.align, b.now);
        // This thread's own range is grown where it lies if the address space after it is free
        // (see `map_tail`); any other, or where that fails, by `mremap`.
        let in_place = own.as_ref().and_then(|r| self.map_tail(r, b.len));
        let r = own.or_else(|| self.cache.take_largest_below(b.len, b.len / 4))?;
        // SAFETY: the range was just taken out of the cache; nothing else uses it.
        let grown = in_place.map(Ok).unwrap_or_else(|| unsafe {
            self.grow_by_moving(r.addr as *mut u8, r.len, b.len, b.align)
        });
        match grown {
            Ok(p) => {
                // A tail mapped in place under 2 MiB is left to fault: filling it would take the
                // small ranges behind other threads' blocks (their tails), which is what made
                // them miss in turn; a bigger one takes resident cached pages as a move does
                // (mixed_threads grows ranges by up to 32 MiB: without this, 440 instead of 408
                // MiB peak in one report run).
                if in_place.is_none() || b.len - r.len >= HUGE {
                    // SAFETY: p..p+len is our grown block; its pages past r.len are fresh.
                    unsafe { self.fill_from_cache(p, r.len, b) }?;
                }
                Counters::add(&self.counters.grown_hits, 1);
                self.note_outcome(false);
                if b.zeroed && r.pages != Pages::Zero {
                    // SAFETY: p is our block of len >= size bytes; the head came from the cached
                    // range and may hold old bytes (what was moved in after it is cleared
                    // already), the rest is fresh and zero.
                    unsafe { ptr::write_bytes(p, 0, b.size.min(r.len)) };
                }
                Some(p)
            }
            Err(_) => {
                self.put_back(r);
                None
            }
        }
    }

    /// Moves the pages of resident cached ranges into the fresh part `p+from..p+len` of a block
    /// just grown from a cached range or freshly mapped, with `mremap(MREMAP_FIXED)`: the block
    /// gets pages the process already holds instead of faulting fresh ones in beside them,
    /// which the cache's budget would make it give back (issue #12: on `malloc_large`, 4 of 5
    /// fresh bytes came from growing a range into a block bigger than any cached one). At most
    /// [`MAX_MOVES`] ranges, each the best fit for what is left or else the largest smaller one
    /// of at least 2 MiB; ranges whose pages were dropped are not worth a syscall.
    ///
    /// Returns how far the block now holds moved pages (`from` if none moved). For a zeroed
    /// block, the bytes moved in are cleared here (they may hold old data); the fresh ones read
    /// zero. A failed move ends the moves (issue #20): its source is unmapped rather than cached
    /// again, where the next miss would try the same move, and the hole is mended. `None` if the
    /// hole could not be told to be ours: the block's own parts are then unmapped (its pages
    /// released, nothing left mapped) and the caller maps a fresh one.
    ///
    /// # Safety
    /// `p..p+b.len` is the caller's block for `b`, whose pages from `from` on are fresh.
    unsafe fn fill_from_cache(&self, p: *mut u8, mut from: usize, b: &Block) -> Option<usize> {
        let len = b.len;
        if !map_count::may_map() {
            return Some(from); // each move adds mappings: not near vm.max_map_count
        }
        for _ in 0..MAX_MOVES {
            let want = len - from;
            if want == 0 {
                break;
            }
            let Some(r) = self
                .take_cached(want, PAGE)
                .or_else(|| self.cache.take_largest_below(want, HUGE))
            else {
                break;
            };
            if r.pages == Pages::Zero {
                self.put_back(r);
                break;
            }
            let dest = p.wrapping_add(from);
            // SAFETY: r was just taken out of the cache (ours, a whole number of pages, at most
            // `want` long); dest..dest+r.len is the fresh part of our block.
            if unsafe { os::move_pages(r.addr as *mut u8, r.len, dest) }.is_err() {
                Counters::add(&self.counters.failed_moves, 1);
                // Nothing moved: the kernel moves a range whole or moves it back (mremap(2)).
                self.unmap_range(&r);
                // SAFETY: as above; from..from+r.len is the hole, the rest is still ours.
                if unsafe { self.mend_hole(p, from, r.len, len) } {
                    break;
                }
                // SAFETY: p..dest and dest+r.len..p+len are this block's, which no one else has
                // (the hole is not ours any more).
                unsafe {
                    self.unmap_part(p, from);
                    self.unmap_part(dest.add(r.len), len - from - r.len);
                }
                return None;
            }
            Counters::add(&self.counters.moved_ranges, 1);
            // The move splits the block's mapping around it (and the source's).
            map_count::note_mapped();
            let clear = b.size.min(from + r.len).saturating_sub(from);
            if b.zeroed && clear > 0 {
                // SAFETY: dest..dest+r.len now holds the moved pages, inside our block.
                unsafe { ptr::write_bytes(dest, 0, clear) };
            }
            from += r.len;
        }
        Some(from)
    }

    /// After a failed move into `p+at..p+at+hole`, part of the block `p..p+len` whose pages
    /// from `at` on are fresh: whether the hole is mapped and ours, as the rest of the block. The kernel may have failed before unmapping the
    /// destination (a refusal near `vm.max_map_count`, a seccomp filter, and since Linux 6.10 a
    /// bad source are all checked first) or after (a kernel-side allocation failure; a bad source
    /// before 6.10). If it unmapped the hole, the hole is mapped afresh here (zero pages, set up
    /// as the block's). If something is mapped there, it is either the block's untouched pages or
    /// what another thread mapped into the hole since, and `/proc/self/maps` decides (a failure
    /// path only: about 0.1 ms). The block's untouched pages are one mapping from `at` (or
    /// before) through the block's end; another thread's mapping lies within the hole, so it
    /// reaches the block's end only if the hole is the block's tail, and then it could pass for
    /// ours only if it started exactly at the hole and were named `[anon:pagewise]` too (another
    /// pagewise block mapped, at exactly that size and place, in that window). Without VMA
    /// names (before 5.17) a hole at the tail is taken for lost: the block is mapped afresh and the
    /// hole, if it was ours after all, stays mapped (address space only, never touched). A
    /// mapping that is not ours is never kept.
    ///
    /// # Safety
    /// `p..p+at` and `p+at+hole..p+len` are the caller's block; `hole` pages at `p+at` were its.
    unsafe fn mend_hole(&self, p: *mut u8, at: usize, hole: usize, len: usize) -> bool {
        let c = &self.counters;
        let dest = p.wrapping_add(at);
        Counters::add(&c.mmap_calls, 1);
        match os::map_at(dest as usize, hole) {
            Ok(q) if q == dest => {
                map_count::note_mapped();
                if self.prefetch().huge_pages() && len >= HUGE {
                    Counters::add(&c.madvise_calls, 1);
                    // SAFETY: dest..dest+hole was just mapped for this block.
                    let _ = unsafe { os::advise(dest, hole, libc::MADV_HUGEPAGE) };
                }
                // SAFETY: as above; naming only labels the VMA.
                unsafe { os::name(dest, hole) };
                return true;
            }
            Ok(q) => {
                // A kernel before 4.17 took the address as a hint only: something is in the hole.
                // SAFETY: q..q+hole was just mapped for us and is not handed out.
                unsafe { self.unmap_part(q, hole) };
            }
            Err(_) => {}
        }
        let (at, tail, end) = (dest as usize, dest as usize + hole, p as usize + len);
        matches!(os::mapping_around(at), Ok(Some(m))
            if m.start <= at && m.end >= end && (m.start < at || m.end > tail || m.pagewise))
    }

    /// Unmaps `len` bytes at `p` (nothing if `len` is 0): part of a block being given up.
    ///
    /// # Safety
    /// The range is the caller's, and no block or cached range includes it.
    pub(super) unsafe fn unmap_part(&self, p: *mut u8, len: usize) {
        if len > 0 {
            Counters::add(&self.counters.munmap_calls, 1);
            // SAFETY: as the caller guarantees.
            if unsafe { os::unmap(p, len) }.is_ok() {
                map_count::note_unmapped();
            }
        }
    }

    /// Step 3: a fresh mapping, or null.
    fn map_fresh_block(&self, b: &Block) -> *mut u8 {
        self.note_outcome(true);
        let prefetch = self.prefetch();
        let mut p = self.fresh(b.len, b.align, prefetch);
        if p.is_null() && !self.cache.is_empty() {
            // The kernel refused (ENOMEM: out of memory, RLIMIT_AS, max_map_count; mmap fails
            // only that way here): give the cache back and try once more, so that freed memory
            // is never what makes an allocation fail.
            self.release_cache(Why::Pressure);
            p = self.fresh(b.len, b.align, prefetch);
        }
        if p.is_null() {
            return p;
        }
        // Counted once the mapping exists: a refused one is no block (the caller may serve it
        // from its fallback, `Stats::fallback_allocs`).
        Counters::add(&self.counters.cache_misses, 1);
        // Pages the process already holds go into the new block first (a populated mapping has
        // its pages already, and a block under 2 MiB fits no cached range, or it would have been
        // a hit).
        let mut moved = 0;
        if b.len >= HUGE && !prefetch.populates() {
            // SAFETY: p..p+len is the fresh mapping just made, ours.
            match unsafe { self.fill_from_cache(p, 0, b) } {
                Some(to) => moved = to,
                None => {
                    p = self.fresh(b.len, b.align, prefetch);
                    if p.is_null() {
                        return p;
                    }
                }
            }
        }
        // The new block's fresh pages will be live once touched: the cache gives back what has
        // sat idle (`recycle`), what is over its budget then, and, under a soft limit, what
        // would take usage over it, so that the process does not grow by them beside the cache.
        let now = os::now_ms();
        self.recycle(b.len - moved);
        self.fit_budget(b.len as u64, now);
        self.enforce_limit(b.len as u64, now);
        p
    }

    /// Takes a fitting range out of the cache, putting back what is left on either side, dated
    /// now: a leftover lies next to the block just carved and is joined to it again when that
    /// block is freed (a run), so it must not be the first to go when the cache is over its
    /// budget, as its old date would make it. Decay counts from the carve. (Measured on 8
    /// threads churning 4–5 MiB buffers: 3,200 instead of 8,300 faults per run in one run of 5,
    /// 8,200 against 8,600 in another, the same peak: no more than that is shown.)
    fn take_cached(&self, len: usize, align: usize) -> Option<Range> {
        let (r, head, tail) = self.cache.take(len, align)?;
        let now = os::now_ms();
        for rest in [head, tail].into_iter().flatten() {
            self.put_back(Range {
                since_ms: now,
                ..rest
            });
        }
        Some(r)
    }

    /// Puts a range that is still counted as cached back in the cache, or unmaps it if no slot
    /// can take it.
    pub(super) fn put_back(&self, rest: Range) {
        if let Err(rest) = self.cache.insert(rest) {
            self.unmap_range(&rest);
        }
    }

    /// About to map `len` fresh bytes that no cached range could serve: give back resident
    /// cached ranges, oldest first, up to `len` bytes. The kernel hands those just-freed pages to
    /// the new mapping, so a program that has moved on to other sizes moves memory from the cache
    /// to its new blocks instead of growing by `len` while the cache sits on ranges it no longer
    /// asks for.
    ///
    /// Which ranges may go depends on how well the cache is serving: while at least
    /// [`RECYCLE_MISSES`] of the last [`RECYCLE_WINDOW`] large allocations missed, any resident
    /// range may; otherwise only those idle for [`RECYCLE_IDLE_MS`]. A program cycling through
    /// random sizes misses rarely and reuses what it freed within milliseconds: releasing those
    /// ranges turned its hits into misses (malloc_large: 611 instead of 23 faults, +30% time,
    /// when every range was fair game). A program whose sizes keep growing misses on most
    /// allocations, and then nothing it cached will be asked for soon.
    ///
    /// Measured with `examples/sort_merge` (32 MiB runs merged into 64, 128 and 256 MiB outputs,
    /// 3 rounds, this VM): without recycling, the first round held 640 MiB and took 2.3–3.0 s;
    /// with the idle rule alone, the same; with both rules, 514 MiB (as `unmap`) and 1.4–2.0 s
    /// (`unmap`: 1.5 s). A miss that grows a cached range (`grow_by_moving`) does not recycle:
    /// measured, it only added releases.
    fn recycle(&self, len: usize) {
        let cached = self.cache.bytes();
        if cached.resident + cached.lazy == 0 {
            return;
        }
        let window = (1u32 << RECYCLE_WINDOW) - 1;
        let missing = (self.recent_misses.load(Relaxed) & window).count_ones() >= RECYCLE_MISSES;
        let idle = if missing { 0 } else { RECYCLE_IDLE_MS };
        let freed_by = os::now_ms().saturating_sub(idle);
        let oldest = || Some(self).zip(self.cache.take_oldest_resident(freed_by));
        evict_oldest_resident(Why::Recycle, false, oldest, |released| {
            len.saturating_sub(released)
        });
    }

    /// Records whether a large allocation missed the cache (for [`Engine::recycle`]).
    fn note_outcome(&self, miss: bool) {
        let _ = self
            .recent_misses
            .fetch_update(Relaxed, Relaxed, |h| Some(h << 1 | miss as u32));
    }

    /// A fresh private anonymous mapping of `len` bytes at `align`, set up for `prefetch`.
    fn fresh(&self, len: usize, align: usize, prefetch: Prefetch) -> *mut u8 {
        if !map_count::may_map() {
            // Close to vm.max_map_count: map so that mappings merge (see map_count).
            Counters::add(&self.counters.mmap_calls, 1);
            return map_count::map_packed(len, align).unwrap_or(ptr::null_mut());
        }
        let huge = prefetch.huge_pages() && len >= HUGE;
        let align = if huge { align.max(HUGE) } else { align };
        let populate = prefetch.populates();
        // Without MADV_POPULATE_WRITE (before 5.14) populate at mmap time instead.
        let map_populate = populate && !os::has_populate_write();
        let flags = if map_populate { libc::MAP_POPULATE } else { 0 };
        let Some(p) = self.map_aligned(len, align, flags) else {
            map_count::note_refused();
            return ptr::null_mut();
        };
        map_count::note_mapped();
        let c = &self.counters;
        if huge {
            Counters::add(&c.madvise_calls, 1);
            // SAFETY: p..p+len is the mapping just made; MADV_HUGEPAGE only changes how it faults.
            let _ = unsafe { os::advise(p, len, libc::MADV_HUGEPAGE) };
        }
        // SAFETY: as above; naming only labels the VMA.
        unsafe { os::name(p, len) };
        if populate {
            Counters::add(&c.populate_calls, 1);
            if !map_populate {
                // SAFETY: as above.
                unsafe { os::populate(p, len) };
            }
        }
        p
    }

    /// `mmap` of `len` bytes whose start is a multiple of `align`.
    ///
    /// Linux 6.7+ places a mapping whose length is a multiple of 2 MiB on a 2 MiB boundary
    /// (`tests/kernel_facts.rs`), so for an alignment up to 2 MiB the length rounded up to
    /// `align` is mapped first and, if it came out aligned, the slack past `len` is unmapped at
    /// once: two syscalls, and the slack never holds a page (a huge page over the block's last
    /// bytes would cost up to 2 MiB of RSS, see [`map_len`]). Otherwise, over-map by
    /// `align - PAGE` and unmap the excess on both sides.
    fn map_aligned(&self, len: usize, align: usize, flags: libc::c_int) -> Option<*mut u8> {
        let c = &self.counters;
        if align <= HUGE {
            let whole = len.checked_next_multiple_of(align)?;
            Counters::add(&c.mmap_calls, 1);
            let p = os::map(whole, flags).ok()?;
            if p as usize & (align - 1) == 0 {
                self.unmap_slack(p, len, whole);
                return Some(p);
            }
            Counters::add(&c.munmap_calls, 1);
            // SAFETY: p..p+whole was just mapped and is not handed out.
            let _ = unsafe { os::unmap(p, whole) };
        }
        Counters::add(&c.mmap_calls, 1);
        let (p, trims) = os::map_aligned(len, align, flags).ok()?;
        Counters::add(&c.munmap_calls, trims.into());
        Some(p)
    }

    /// Unmaps `p+len..p+whole`, the part of a mapping (or `mremap` result) of `whole` bytes past
    /// the `len` bytes a block uses, if there is any. Unmapping the end of a mapping shrinks it
    /// and never needs a new VMA, so it does not fail at `vm.max_map_count`; if it failed all
    /// the same, the slack would stay mapped and untouched (address space, no memory).
    pub(super) fn unmap_slack(&self, p: *mut u8, len: usize, whole: usize) {
        if whole > len {
            Counters::add(&self.counters.munmap_calls, 1);
            // SAFETY: p+len..p+whole is the unused end of a mapping the caller just made or
            // moved; no block or cached range includes it.
            let _ = unsafe { os::unmap(p.wrapping_add(len), whole - len) };
        }
    }
}

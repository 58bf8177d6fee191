//! The engine behind each [`PageAlloc`](crate::PageAlloc): the large-block paths (map, reuse,
//! release, grow, shrink), its cache and counters, decay and pressure.
//!
//! Engines live in a static pool rather than inside `PageAlloc`, so that the background thread
//! can reach them without a pointer to a value that might move or be dropped: an allocator claims
//! a pool slot on first use and gives it back when dropped. Slot 0 is the overflow engine, used by
//! allocators beyond the pool: it has no cache and unmaps at free.

use core::ffi::CStr;
use core::ptr;
use core::sync::atomic::Ordering::{Acquire, Relaxed, Release as Rel};
use core::sync::atomic::{AtomicBool, AtomicPtr, AtomicU32, AtomicU64, AtomicU8, AtomicUsize};

use crate::cache::{Cache, Pages, Range};
use crate::config::{env_pressure_path, Config, DEFAULT_PRESSURE_FILE, NEVER};
use crate::os::{self, Errno, HUGE, PAGE};
use crate::policy::{Prefetch, Release};
use crate::pressure::{self, Pressure};
use crate::stats::Counters;
use crate::{background, map_count, report};

/// Engines in the pool, the overflow engine included.
pub(crate) const POOL: usize = 65;

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

const FREE: u8 = 0;
const CLAIMED: u8 = 1;
const ACTIVE: u8 = 2;

pub(crate) struct Engine {
    state: AtomicU8,
    release: AtomicU8,
    prefetch: AtomicU8,
    background: AtomicBool,
    budget: AtomicUsize,
    decay_ms: AtomicU64,
    pressure_threshold: AtomicU32,
    /// Code-given pressure file, or null for the environment's or the default.
    pressure_file: AtomicPtr<core::ffi::c_char>,
    last_maintenance_ms: AtomicU64,
    /// The outcomes of the latest large allocations, newest in bit 0: 1 for a fresh mapping.
    recent_misses: AtomicU32,
    pub(crate) counters: Counters,
    cache: Cache,
    pressure: Pressure,
}

pub(crate) static ENGINES: [Engine; POOL] = [const { Engine::new() }; POOL];

/// Rounds a block size to the length of its mapping: pages below 2 MiB, whole 2 MiB units from
/// there on, so that a huge-page mapping is fully covered by huge pages and the cache sees fewer
/// distinct lengths. Depends on the size only (never on the configuration), because `dealloc`
/// recomputes it. `None` on overflow.
#[inline]
pub(crate) fn map_len(size: usize) -> Option<usize> {
    let unit = if size >= HUGE { HUGE } else { PAGE };
    let len = size.checked_add(unit - 1)? & !(unit - 1);
    (len <= isize::MAX as usize).then_some(len)
}

impl Engine {
    const fn new() -> Engine {
        Engine {
            state: AtomicU8::new(FREE),
            release: AtomicU8::new(Release::Unmap.to_u8()),
            prefetch: AtomicU8::new(Prefetch::None.to_u8()),
            background: AtomicBool::new(false),
            budget: AtomicUsize::new(0),
            decay_ms: AtomicU64::new(NEVER),
            pressure_threshold: AtomicU32::new(1000),
            pressure_file: AtomicPtr::new(ptr::null_mut()),
            last_maintenance_ms: AtomicU64::new(0),
            recent_misses: AtomicU32::new(0),
            counters: Counters::new(),
            cache: Cache::new(),
            pressure: Pressure::new(),
        }
    }

    /// Claims a pool engine for a new allocator and configures it; the overflow engine (index 0)
    /// when the pool is exhausted. Returns the index.
    pub(crate) fn claim(config: &Config) -> usize {
        crate::fork::register();
        for (i, e) in ENGINES.iter().enumerate().skip(1) {
            if e.state.load(Relaxed) == FREE
                && e.state
                    .compare_exchange(FREE, CLAIMED, Acquire, Relaxed)
                    .is_ok()
            {
                // Counters describe this owner's activity, but the cache's byte counts describe
                // the cache, which may still hold a range that was BUSY (in the background
                // thread's hands) when the previous owner purged it.
                e.counters.reset_activity();
                e.recent_misses.store(0, Relaxed);
                e.configure(config);
                e.state.store(ACTIVE, Rel);
                return i;
            }
        }
        0
    }

    /// Gives a claimed engine back to the pool (its allocator was dropped), releasing its cache.
    pub(crate) fn unclaim(&self) {
        self.purge();
        self.pressure.reset();
        self.state.store(FREE, Rel);
    }

    /// Applies a configuration (threshold excepted: that belongs to the allocator).
    pub(crate) fn configure(&self, c: &Config) {
        self.release.store(c.release.to_u8(), Relaxed);
        self.prefetch.store(c.prefetch.to_u8(), Relaxed);
        self.background.store(c.background, Relaxed);
        self.budget.store(c.cache, Relaxed);
        self.decay_ms.store(c.decay_ms, Relaxed);
        self.pressure_threshold.store(c.pressure_threshold, Relaxed);
        // Environment, then code, then the default (the precedence of every setting).
        let env = if c.use_env { env_pressure_path() } else { None };
        let file = env.or(c.pressure_file).unwrap_or(DEFAULT_PRESSURE_FILE);
        self.pressure_file.store(file.as_ptr().cast_mut(), Relaxed);
        self.pressure.reset();
    }

    pub(crate) fn is_active(&self) -> bool {
        self.state.load(Acquire) == ACTIVE
    }

    pub(crate) fn release_policy(&self) -> Release {
        Release::from_u8(self.release.load(Relaxed))
    }

    fn prefetch(&self) -> Prefetch {
        Prefetch::from_u8(self.prefetch.load(Relaxed))
    }

    pub(crate) fn background_enabled(&self) -> bool {
        self.background.load(Relaxed)
    }

    pub(crate) fn decay(&self) -> u64 {
        self.decay_ms.load(Relaxed)
    }

    pub(crate) fn has_cached(&self) -> bool {
        !self.cache.is_empty()
    }

    /// The pressure file in force (resolved by `configure`).
    pub(crate) fn pressure_path(&self) -> &'static CStr {
        let p = self.pressure_file.load(Relaxed);
        if p.is_null() {
            return DEFAULT_PRESSURE_FILE;
        }
        // SAFETY: non-null values come from a `&'static CStr` in `configure`.
        unsafe { CStr::from_ptr(p) }
    }

    /// Whether the pressure signal is on (reads it at most every few milliseconds).
    pub(crate) fn pressure_on(&self, now: u64) -> bool {
        let on = self.pressure.is_on(
            self.pressure_path(),
            self.pressure_threshold.load(Relaxed),
            now,
        );
        self.counters.pressure_on.store(on as u64, Relaxed);
        on
    }

    /// What an allocator does once it owns this engine: `PAGEWISE_VERBOSE` and `PAGEWISE_STATS`.
    pub(crate) fn announce(&self, c: &Config) {
        if c.verbose {
            self.print_config(c);
        }
        if c.stats_at_exit {
            crate::fork::print_stats_at_exit();
        }
    }

    fn print_config(&self, c: &Config) {
        report::verbose(
            c,
            self.pressure_path(),
            if c.background {
                "background release thread on"
            } else {
                "background release thread off"
            },
        );
        // Read the source now (never blocks, see `pressure`), so the line says what is in force.
        let path = self.pressure_path();
        let threshold = self.pressure_threshold.load(Relaxed);
        let _ = self.pressure.read_now(path, threshold, os::now_ms());
        report::line(&pressure::Describe {
            path,
            status: self.pressure.status(),
        });
    }

    // ---------------------------------------------------------------------------------------
    // Allocation

    /// A large block of `size` bytes at `align`: from the cache if a range fits, else fresh.
    pub(crate) fn alloc(&self, size: usize, align: usize, zeroed: bool) -> *mut u8 {
        let Some(len) = map_len(size) else {
            return ptr::null_mut();
        };
        let now = os::now_ms();
        self.maintain_if_due(now);
        let align = align.max(PAGE);
        let c = &self.counters;
        let prefetch = self.prefetch();
        // Carve huge-page-sized blocks at 2 MiB boundaries, so that ranges that lost their pages
        // (dontneed, decay) fault back in as huge pages.
        let carve_align = if prefetch.huge_pages() && len >= HUGE {
            align.max(HUGE)
        } else {
            align
        };
        if let Some(r) = self.take_cached(len, carve_align).or_else(|| {
            (carve_align != align)
                .then(|| self.take_cached(len, align))
                .flatten()
        }) {
            Counters::add(&c.cache_hits, 1);
            self.note_outcome(false);
            Counters::add(&c.large_allocs, 1);
            Counters::add(&c.live_bytes, len as u64);
            let p = r.addr as *mut u8;
            match r.pages {
                // SAFETY: the range was just taken out of the cache: we own it and it is mapped
                // read-write for `len >= size` bytes.
                Pages::Resident | Pages::Lazy if zeroed => unsafe { ptr::write_bytes(p, 0, size) },
                Pages::Zero if prefetch.populates() => {
                    Counters::add(&c.populate_calls, 1);
                    // SAFETY: as above; populating keeps the (zero) contents.
                    unsafe { os::populate(p, len) };
                }
                _ => {}
            }
            return p;
        }
        // Nothing cached is big enough: grow the largest smaller range, if it is at least half
        // the request, rather than map fresh pages beside it. Its pages serve the head, only the
        // tail is new, and the cache does not pile up ranges of sizes the program has moved away
        // from. Smaller ranges are left alone: growing a table from the one before the previous
        // (HashMap's doubling) would eat every small range, so that the next round of the same
        // program finds only big ones, carves them, and faults again for its biggest table.
        if let Some(r) = self.cache.take_largest_below(len, len / 2) {
            self.uncount_cached(&r);
            // SAFETY: the range was just taken out of the cache; nothing else uses it.
            match unsafe { self.grow_by_moving(r.addr as *mut u8, r.len, len, align) } {
                Ok(p) => {
                    Counters::add(&c.grown_hits, 1);
                    self.note_outcome(false);
                    Counters::add(&c.large_allocs, 1);
                    Counters::add(&c.live_bytes, len as u64);
                    if zeroed && r.pages != Pages::Zero {
                        // SAFETY: p is our block of len >= size bytes; the head came from the
                        // cached range and may hold old bytes, the tail is fresh and zero.
                        unsafe { ptr::write_bytes(p, 0, size.min(r.len)) };
                    }
                    return p;
                }
                Err(_) => {
                    self.count_cached(&r);
                    self.put_back(r);
                }
            }
        }
        self.note_outcome(true);
        let mut p = self.fresh(len, align, prefetch);
        if p.is_null() && !self.cache.is_empty() {
            // The kernel refused (ENOMEM: out of memory, RLIMIT_AS, max_map_count; mmap fails
            // only that way here): give the cache back and try once more, so that freed memory
            // is never what makes an allocation fail.
            self.drain_pressure();
            p = self.fresh(len, align, prefetch);
        }
        if !p.is_null() {
            // Counted once the mapping exists: a refused one is no block (the caller may serve
            // it from its fallback, `Stats::fallback_allocs`).
            Counters::add(&c.cache_misses, 1);
            Counters::add(&c.large_allocs, 1);
            Counters::add(&c.live_bytes, len as u64);
        }
        p
    }

    /// Takes a fitting range out of the cache, putting back what is left on either side.
    fn take_cached(&self, len: usize, align: usize) -> Option<Range> {
        let (r, head, tail) = self.cache.take(len, align)?;
        self.uncount_cached(&r);
        for rest in [head, tail].into_iter().flatten() {
            self.put_back(rest);
        }
        Some(r)
    }

    /// Puts a range that is still counted as cached back in the cache, or unmaps it if no slot
    /// can take it.
    fn put_back(&self, rest: Range) {
        if let Err(rest) = self.cache.insert(rest) {
            self.uncount_cached(&rest);
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
        let c = &self.counters;
        if c.cached_resident_bytes.load(Relaxed) + c.cached_lazy_bytes.load(Relaxed) == 0 {
            return;
        }
        let window = (1u32 << RECYCLE_WINDOW) - 1;
        let missing = (self.recent_misses.load(Relaxed) & window).count_ones() >= RECYCLE_MISSES;
        let idle = if missing { 0 } else { RECYCLE_IDLE_MS };
        let freed_by = os::now_ms().saturating_sub(idle);
        let mut released = 0;
        while released < len {
            let Some(r) = self.cache.take_oldest_resident(freed_by) else {
                break;
            };
            released += r.len;
            self.uncount_cached(&r);
            if !self.unmap_range(&r) {
                break; // back in the cache: taking it again would not help
            }
            Counters::add(&c.recycle_releases, 1);
        }
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
        self.recycle(len);
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

    /// `mmap` of `len` bytes whose start is a multiple of `align`: over-map by `align - PAGE`
    /// and unmap the excess on both sides. Linux 6.7+ already returns 2 MiB-aligned addresses for
    /// lengths that are multiples of 2 MiB, so a plain mapping is tried first when that may help.
    fn map_aligned(&self, len: usize, align: usize, flags: libc::c_int) -> Option<*mut u8> {
        let c = &self.counters;
        if align <= HUGE {
            Counters::add(&c.mmap_calls, 1);
            let p = os::map(len, flags).ok()?;
            if p as usize & (align - 1) == 0 {
                return Some(p);
            }
            Counters::add(&c.munmap_calls, 1);
            // SAFETY: p..p+len was just mapped and is not handed out.
            let _ = unsafe { os::unmap(p, len) };
        }
        let over = len.checked_add(align - PAGE)?;
        Counters::add(&c.mmap_calls, 1);
        let raw = os::map(over, flags).ok()?;
        let start = (raw as usize + align - 1) & !(align - 1);
        let head = start - raw as usize;
        let tail = over - head - len;
        if head > 0 {
            Counters::add(&c.munmap_calls, 1);
            // SAFETY: raw..start is the unused head of our own fresh mapping.
            let _ = unsafe { os::unmap(raw, head) };
        }
        if tail > 0 {
            Counters::add(&c.munmap_calls, 1);
            // SAFETY: start+len..raw+over is the unused tail of our own fresh mapping.
            let _ = unsafe { os::unmap((start + len) as *mut u8, tail) };
        }
        Some(start as *mut u8)
    }

    // ---------------------------------------------------------------------------------------
    // Free

    /// Frees a large block of `size` bytes.
    ///
    /// # Safety
    /// `p` must be a live block of this engine allocated with `size`.
    pub(crate) unsafe fn free(&self, p: *mut u8, size: usize) {
        let Some(len) = map_len(size) else { return };
        let c = &self.counters;
        Counters::add(&c.large_frees, 1);
        Counters::sub(&c.live_bytes, len as u64);
        let now = os::now_ms();
        self.release_range(p as usize, len, now);
        self.maintain_if_due(now);
    }

    /// Applies the release policy to a range that no block uses any more.
    fn release_range(&self, addr: usize, len: usize, now: u64) {
        let c = &self.counters;
        let policy = self.release_policy();
        let budget = self.budget.load(Relaxed);
        if !policy.caches() || len > budget {
            self.unmap_range(&Range {
                addr,
                len,
                pages: Pages::Resident,
                since_ms: now,
            });
            return;
        }
        let pages = match policy {
            Release::Retain => Pages::Resident,
            Release::DontNeed => self.advise_dontneed(addr, len),
            Release::Free => self.advise_free(addr, len),
            _ if self.pressure_on(now) => {
                // Adaptive under pressure: drop at once and shrink the cache.
                self.drain_pressure();
                self.advise_dontneed(addr, len)
            }
            _ => self.advise_free(addr, len),
        };
        let r = Range {
            addr,
            len,
            pages,
            since_ms: now,
        };
        // What does not fit the budget goes, oldest first.
        while (c.cached_bytes.load(Relaxed) as usize).saturating_add(len) > budget {
            match self.cache.take_oldest() {
                Some(old) => {
                    self.uncount_cached(&old);
                    if !self.unmap_range(&old) {
                        break; // back in the cache: taking it again would not help
                    }
                }
                None => break,
            }
        }
        self.count_cached(&r);
        if let Err(r) = self.cache.insert(r) {
            // Every slot is in use: the smallest range goes, this one or a cached one.
            match self.cache.take_smallest() {
                Some(small) if small.len < r.len => {
                    self.uncount_cached(&small);
                    self.unmap_range(&small);
                    self.put_back(r);
                }
                other => {
                    if let Some(small) = other {
                        self.put_back(small);
                    }
                    self.uncount_cached(&r);
                    self.unmap_range(&r);
                }
            }
        }
        if self.background_enabled() && self.decay() != NEVER
            || policy == Release::Adaptive && self.background_enabled()
        {
            background::ensure_started();
        }
    }

    fn advise_dontneed(&self, addr: usize, len: usize) -> Pages {
        let c = &self.counters;
        Counters::add(&c.madvise_calls, 1);
        // SAFETY: the range belongs to no block; dropping its pages is what we want.
        match unsafe { os::advise(addr as *mut u8, len, libc::MADV_DONTNEED) } {
            Ok(()) => {
                Counters::add(&c.released_bytes, len as u64);
                Pages::Zero
            }
            Err(_) => Pages::Resident,
        }
    }

    fn advise_free(&self, addr: usize, len: usize) -> Pages {
        if !os::has_free() {
            return self.advise_dontneed(addr, len);
        }
        Counters::add(&self.counters.madvise_calls, 1);
        // SAFETY: the range belongs to no block; its contents may be discarded.
        match unsafe { os::advise(addr as *mut u8, len, libc::MADV_FREE) } {
            Ok(()) => Pages::Lazy,
            Err(_) => self.advise_dontneed(addr, len),
        }
    }

    /// Unmaps a range that belongs to no block and no cache slot. If the kernel refuses
    /// (unmapping part of a mapping needs a new VMA, so it can fail with ENOMEM at
    /// `vm.max_map_count`), the pages are dropped with `MADV_DONTNEED` instead and the range is
    /// kept as zero pages, so RSS falls either way and nothing is forgotten. Returns false if the
    /// range went back to the cache that way: a caller looping until the cache shrinks must stop
    /// then, or it would take the same range again forever.
    fn unmap_range(&self, r: &Range) -> bool {
        let c = &self.counters;
        Counters::add(&c.munmap_calls, 1);
        // SAFETY: ranges passed here belong to no block and to no cache slot any more.
        if unsafe { os::unmap(r.addr as *mut u8, r.len) }.is_ok() {
            map_count::note_unmapped();
            if r.pages != Pages::Zero {
                Counters::add(&c.released_bytes, r.len as u64);
            }
            return true;
        }
        let pages = if r.pages == Pages::Zero {
            Pages::Zero
        } else {
            self.advise_dontneed(r.addr, r.len)
        };
        let kept = Range { pages, ..*r };
        self.count_cached(&kept);
        match self.cache.insert(kept) {
            Ok(()) => false,
            Err(kept) => {
                // No slot either: the range stays mapped (its pages released if DONTNEED
                // worked) and is given up, a leak of address space rather than of memory.
                self.uncount_cached(&kept);
                true
            }
        }
    }

    fn count_cached(&self, r: &Range) {
        let c = &self.counters;
        Counters::add(&c.cached_bytes, r.len as u64);
        match r.pages {
            Pages::Resident => Counters::add(&c.cached_resident_bytes, r.len as u64),
            Pages::Lazy => Counters::add(&c.cached_lazy_bytes, r.len as u64),
            Pages::Zero => {}
        }
    }

    fn uncount_cached(&self, r: &Range) {
        let c = &self.counters;
        Counters::sub(&c.cached_bytes, r.len as u64);
        match r.pages {
            Pages::Resident => Counters::sub(&c.cached_resident_bytes, r.len as u64),
            Pages::Lazy => Counters::sub(&c.cached_lazy_bytes, r.len as u64),
            Pages::Zero => {}
        }
    }

    // ---------------------------------------------------------------------------------------
    // Realloc

    /// Resizes a large block to another large size, moving pages rather than bytes.
    ///
    /// # Safety
    /// `p` must be a live block of this engine allocated with `old_size` and `align`.
    pub(crate) unsafe fn realloc(
        &self,
        p: *mut u8,
        old_size: usize,
        align: usize,
        new_size: usize,
    ) -> *mut u8 {
        let (Some(old_len), Some(new_len)) = (map_len(old_size), map_len(new_size)) else {
            return ptr::null_mut();
        };
        let c = &self.counters;
        Counters::add(&c.reallocs, 1);
        let addr = p as usize;
        if new_len == old_len {
            Counters::add(&c.in_place_reallocs, 1);
            return p;
        }
        if new_len < old_len {
            // Shrink in place; the tail is freed like a block.
            Counters::add(&c.in_place_reallocs, 1);
            Counters::sub(&c.live_bytes, (old_len - new_len) as u64);
            self.release_range(addr + new_len, old_len - new_len, os::now_ms());
            return p;
        }
        let extra = new_len - old_len;
        // Grow into the cached range right after the block: no syscall, no copy.
        if let Some((pages, rest)) = self.cache.take_at(addr + old_len, extra) {
            if let Some(rest) = rest {
                self.put_back(rest);
            }
            self.uncount_cached(&Range {
                addr: addr + old_len,
                len: extra,
                pages,
                since_ms: 0,
            });
            Counters::add(&c.in_place_reallocs, 1);
            Counters::add(&c.live_bytes, extra as u64);
            return p;
        }
        // SAFETY: the caller gives us the live block p..p+old_len.
        let mut moved = unsafe { self.grow_by_moving(p, old_len, new_len, align) };
        if moved == Err(Errno(libc::ENOMEM)) && !self.cache.is_empty() {
            // As in `alloc`: the cache must not be what makes the kernel say no.
            self.drain_pressure();
            // SAFETY: as above; a failed move left the block untouched.
            moved = unsafe { self.grow_by_moving(p, old_len, new_len, align) };
        }
        if let Ok(q) = moved {
            Counters::add(&c.mremaps, 1);
            Counters::add(&c.live_bytes, extra as u64);
            return q;
        }
        // No move: the block needs more than page alignment, spans two mappings (blocks can grow
        // in place across the boundary of two adjacent mappings), or memory is short. Copy.
        let q = self.alloc(new_size, align, false);
        if !q.is_null() {
            Counters::add(&c.copied_reallocs, 1);
            // SAFETY: both blocks are live, distinct, and at least old_size long.
            unsafe {
                ptr::copy_nonoverlapping(p, q, old_size);
                self.free(p, old_size);
            }
        }
        q
    }

    /// Grows the range `p..p+old_len` to `new_len` bytes by moving its pages with
    /// `mremap(MREMAP_MAYMOVE)` (never copying). The new tail is prepared like a fresh mapping
    /// (huge pages, populate).
    ///
    /// Only plain `MREMAP_MAYMOVE` is used: it fails with nothing moved or unmapped. Moving into
    /// a reservation with `MREMAP_FIXED` would be unsound here, because kernels before 6.10
    /// unmap the destination *before* checking the source, so after a failure the reservation
    /// may already be gone and reused by another thread. Linux 6.7+ places 2 MiB-multiple
    /// lengths at 2 MiB-aligned addresses (a test in `tests/kernel_facts.rs` checks this), so huge
    /// pages still line up; a block that needs more than page alignment is grown by the caller
    /// with a copy instead (`Err(EINVAL)`).
    ///
    /// On failure (`EFAULT`: the range spans two mappings; `ENOMEM`) the range is untouched.
    ///
    /// # Safety
    /// `p..p+old_len` must be a range of this engine that nothing else uses during the call.
    unsafe fn grow_by_moving(
        &self,
        p: *mut u8,
        old_len: usize,
        new_len: usize,
        align: usize,
    ) -> Result<*mut u8, Errno> {
        if align > PAGE {
            return Err(Errno(libc::EINVAL));
        }
        let c = &self.counters;
        let prefetch = self.prefetch();
        // SAFETY: the caller owns p..p+old_len, which lies in our mappings.
        let q = unsafe { os::remap(p, old_len, new_len) }?;
        if prefetch.huge_pages() && new_len >= HUGE {
            Counters::add(&c.madvise_calls, 1);
            // SAFETY: q..q+new_len is the grown range; MADV_HUGEPAGE only changes faulting.
            let _ = unsafe { os::advise(q, new_len, libc::MADV_HUGEPAGE) };
        }
        if prefetch.populates() {
            Counters::add(&c.populate_calls, 1);
            // SAFETY: the new tail is part of the range; populating keeps contents.
            unsafe { os::populate(q.add(old_len), new_len - old_len) };
        }
        Ok(q)
    }

    // ---------------------------------------------------------------------------------------
    // Decay, pressure, purge

    /// Runs decay and the pressure check from the allocation path when the background thread is
    /// off, at most once per interval.
    #[inline]
    fn maintain_if_due(&self, now: u64) {
        if self.background_enabled() && background::running() {
            return;
        }
        let last = self.last_maintenance_ms.load(Relaxed);
        if now.saturating_sub(last) < pressure::READ_INTERVAL_MS {
            return;
        }
        if self
            .last_maintenance_ms
            .compare_exchange(last, now, Relaxed, Relaxed)
            .is_ok()
        {
            self.maintain(now);
        }
    }

    /// Releases ranges idle past the decay time, and the whole cache while pressure is on.
    /// Returns when the next cached range will be due for decay, if any.
    pub(crate) fn maintain(&self, now: u64) -> Option<u64> {
        if self.cache.is_empty() {
            return None;
        }
        if self.pressure_on(now) {
            self.drain_pressure();
            return None;
        }
        let decay = self.decay();
        if decay == NEVER {
            return None;
        }
        let mut next: Option<u64> = None;
        self.cache.drain(
            |r| {
                let due = r.since_ms.saturating_add(decay);
                if due > now {
                    next = Some(next.map_or(due, |n| n.min(due)));
                }
                due <= now
            },
            |r| {
                Counters::add(&self.counters.decay_releases, 1);
                self.uncount_cached(&r);
                self.unmap_range(&r);
            },
        );
        next
    }

    /// Releases every cached range because memory is short: the pressure signal is on, or the
    /// kernel refused a mapping.
    fn drain_pressure(&self) {
        self.cache.drain(
            |_| true,
            |r| {
                Counters::add(&self.counters.pressure_releases, 1);
                self.uncount_cached(&r);
                self.unmap_range(&r);
            },
        );
    }

    /// Releases every cached range now.
    pub(crate) fn purge(&self) {
        self.cache.drain(
            |_| true,
            |r| {
                Counters::add(&self.counters.purge_releases, 1);
                self.uncount_cached(&r);
                self.unmap_range(&r);
            },
        );
    }

    /// In a `fork` child: forget slots and reads that belonged to threads that are gone.
    pub(crate) fn after_fork_in_child(&self) {
        self.cache.reset_busy();
        self.pressure.after_fork();
    }
}

impl Engine {
    /// `base` with this engine's current settings (which `reconfigure` may have changed).
    pub(crate) fn overlay(&self, mut base: Config) -> Config {
        base.release = self.release_policy();
        base.prefetch = self.prefetch();
        base.background = self.background_enabled();
        base.cache = self.budget.load(Relaxed);
        base.decay_ms = self.decay();
        base.pressure_threshold = self.pressure_threshold.load(Relaxed);
        base
    }
}

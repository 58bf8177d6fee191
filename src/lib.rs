#![doc = include_str!("../README.md")]
#![deny(unsafe_op_in_unsafe_fn, missing_docs, missing_debug_implementations)]
#![warn(clippy::undocumented_unsafe_blocks)]

#[cfg(not(target_os = "linux"))]
compile_error!(
    "pagewise is Linux-only: it is built on mmap, mremap, madvise and /proc (see the README)"
);

#[cfg(feature = "allocator-api2")]
mod allocator_api;
mod background;
mod cache;
mod cgroup;
mod colour;
pub mod config;
mod decimal;
mod engine;
mod fallback;
mod fork;
mod map_count;
mod memory;
mod os;
mod policy;
mod pressure;
mod report;
mod stats;

use core::alloc::{GlobalAlloc, Layout};
use core::fmt;
use core::ptr;
use std::alloc::System;

pub use config::{parse_size, Config, ConfigError};
pub use memory::ProcessMemory;
pub use policy::{Cgroup, Limit, Prefetch, Release};
pub use stats::Stats;

use engine::Engine;
use once_cell::race::{OnceNonZeroUsize, OnceRef};

/// A global allocator that serves large allocations from their own anonymous mappings, with a
/// chosen prefetch mode and release policy, and passes small ones to the inner allocator `A`.
///
/// ```
/// #[global_allocator]
/// static GLOBAL: pagewise::PageAlloc = pagewise::PageAlloc::new();
/// # fn main() { let v = vec![0u8; 64 << 20]; assert_eq!(v[12345], 0); }
/// ```
///
/// The configuration is resolved the first time the allocator is used (see [`config`] for the
/// precedence of code and environment). Dropping an instance releases its cache; blocks it handed
/// out and that are still live stay mapped.
///
/// Nothing on the allocation path allocates, panics, or takes a lock: the cache is claimed slot by
/// slot with compare-and-swap and a busy slot is skipped, never waited for.
///
/// Where the kernel refuses a mapping even after the cache was given back (out of memory,
/// `RLIMIT_AS`, `vm.max_map_count`), the large block comes from `A` instead and
/// [`Stats::fallback_allocs`] counts it; `dealloc` and `realloc` hand such blocks back to `A`.
/// A fallback block with an alignment below 4 KiB is never page-aligned (every mapped block is),
/// which is how it is told apart; at most 64 page-aligned fallback blocks may be live at once
/// (beyond that such a request returns null).
///
/// # One collection at a time (feature `allocator-api2`)
///
/// With the cargo feature `allocator-api2`, `PageAlloc<A>` implements
/// `allocator_api2::alloc::Allocator` (the stable mirror of the unstable `Allocator` trait, used by
/// `hashbrown`, `bumpalo` and others), so one collection can have its own instance, policy and
/// counters while the global allocator stays what it is. `&PageAlloc` is an allocator too, so a
/// `static` serves many collections, and a local instance serves collections that it outlives:
///
/// ```
/// # #[cfg(feature = "allocator-api2")]
/// # fn main() {
/// use pagewise::{Config, PageAlloc, Release};
///
/// // Keeps its pages for the next round (the default policy, fixed here).
/// static TABLE: PageAlloc = PageAlloc::new().with_config(Config::DEFAULT.ignore_env());
///
/// let mut table: allocator_api2::vec::Vec<u64, _> = allocator_api2::vec::Vec::new_in(&TABLE);
/// table.extend(0..1_000_000u64); // 8 MiB: a mapping of TABLE's own
///
/// // Gives its pages back at every free, and is gone when the function returns.
/// let scratch_pages = PageAlloc::new()
///     .with_config(Config::DEFAULT.ignore_env().release(Release::DontNeed));
/// let mut scratch = allocator_api2::vec::Vec::new_in(&scratch_pages);
/// scratch.extend(table.iter().map(|x| x * 2));
/// assert_eq!(scratch_pages.stats().large_allocs, 1);
/// assert_eq!(TABLE.stats().large_allocs, 1);
/// # }
/// # #[cfg(not(feature = "allocator-api2"))]
/// # fn main() {}
/// ```
///
/// `allocate`, `allocate_zeroed`, `grow`, `grow_zeroed`, `shrink` and `deallocate` take the paths
/// of the global allocator: a large block is a mapping (from the cache where one fits), grows by
/// moving its pages with `mremap`, and falls back to `A` where the kernel refuses a mapping; a
/// request the kernel and `A` both refuse is `Err(AllocError)`, and a failed `grow` leaves the
/// block as it was. Where they differ from `GlobalAlloc`:
/// - a request is large when its size **or its alignment** reaches the threshold (alignments up to
///   1 GiB and more: the engine maps the excess and unmaps it at once, where glibc would hold the
///   whole alignment as address space for a small block). A block must be freed through the trait
///   that allocated it;
/// - size 0 is allowed: `allocate` returns a dangling pointer at the alignment and allocates
///   nothing; freeing it does nothing;
/// - `grow_zeroed` clears only bytes that may hold old data (the block's slack past its old
///   size, less than a page, and pages taken from the cache that are not zero pages):
///   pages that `mremap` adds are fresh zero pages and are not touched;
/// - the block returned is exactly `layout.size()` bytes long.
///
/// An instance may also be given by value (`Vec::new_in(PageAlloc::new())`) and moved after use:
/// its blocks stay valid, since its engine is a static, as long as `A`'s blocks do not live inside
/// `A` itself (`System`, jemalloc and mimalloc are zero-sized).
///
/// # How many instances
///
/// Every instance has its own cache, configuration and counters ([`PageAlloc::stats`]), held in
/// one of 64 engines in a static pool (the engine is adopted at the instance's first use and given
/// back when it is dropped; a `#[global_allocator]` takes one like any other, and instances never
/// used take none). An instance first used while all 64 are taken runs on the shared **overflow
/// engine**, for as long as it lives (even once others have been dropped): it still serves every
/// request, but has no cache (every free unmaps), does not prefetch, ignores its configuration's
/// release, prefetch, cache and decay settings and [`PageAlloc::reconfigure`] (its threshold still
/// applies), and its counters are those of every instance on the overflow engine together.
/// [`Stats::overflow_engine`] is 1 for such an instance.
pub struct PageAlloc<A = System> {
    inner: A,
    config: Config,
    /// The threshold in force, resolved at first use. Race-tolerant and never blocking: two
    /// threads that race both resolve it, one value is kept (both computed the same one).
    threshold: OnceNonZeroUsize,
    /// This allocator's engine in the pool, adopted at first use (see [`PageAlloc::init`]).
    engine: OnceRef<'static, Engine>,
}

impl PageAlloc<System> {
    /// An allocator over [`System`], configured from the environment over [`Config::DEFAULT`].
    pub const fn new() -> PageAlloc<System> {
        PageAlloc::with_inner(System)
    }
}

impl Default for PageAlloc<System> {
    fn default() -> Self {
        PageAlloc::new()
    }
}

impl<A> PageAlloc<A> {
    /// An allocator that passes small allocations to `inner`.
    pub const fn with_inner(inner: A) -> PageAlloc<A> {
        PageAlloc {
            inner,
            config: Config::DEFAULT,
            threshold: OnceNonZeroUsize::new(),
            engine: OnceRef::new(),
        }
    }

    /// Uses `config` in place of [`Config::DEFAULT`]; the environment still overrides it unless
    /// the config says [`Config::ignore_env`].
    pub const fn with_config(mut self, config: Config) -> PageAlloc<A> {
        self.config = config;
        self
    }

    #[inline]
    fn threshold(&self) -> usize {
        match self.threshold.get() {
            Some(t) => t.get(),
            None => self.init().0,
        }
    }

    #[inline]
    fn engine(&self) -> &'static Engine {
        match self.engine.get() {
            Some(e) => e,
            None => self.init().1,
        }
    }

    /// Resolves the configuration and adopts an engine. Race-tolerant, no thread waits: threads
    /// that race each resolve and adopt; one engine is kept, the others are retired at once.
    #[cold]
    fn init(&self) -> (usize, &'static Engine) {
        let config = self.config.resolve();
        // The threshold is at least Config::MIN_THRESHOLD, never zero.
        if let Some(t) = core::num::NonZeroUsize::new(config.threshold) {
            let _ = self.threshold.set(t);
        }
        let threshold = self.threshold.get().map_or(config.threshold, |t| t.get());
        if let Some(e) = self.engine.get() {
            return (threshold, e);
        }
        // The process-wide hooks go in before the first engine can cache anything: the
        // background thread's start (the engine calls it, never imports it), `fork`'s handler.
        engine::set_background_start(background::ensure_started);
        fork::register();
        let mine = Engine::adopt(&config);
        match self.engine.set(mine) {
            Ok(()) => {
                let mut shown = config;
                shown.threshold = threshold;
                if shown.verbose {
                    mine.print_config(&shown);
                }
                if shown.stats_at_exit {
                    fork::print_stats_at_exit();
                }
                (threshold, mine)
            }
            Err(()) => {
                mine.retire();
                let theirs = self.engine.get().unwrap_or(mine);
                (threshold, theirs)
            }
        }
    }

    /// The configuration in force (resolving it if this allocator was never used).
    pub fn config(&self) -> Config {
        let engine = self.engine();
        let mut base = self.config.resolve();
        base.threshold = self.threshold();
        engine.overlay(base)
    }

    /// A snapshot of this allocator's counters.
    pub fn stats(&self) -> Stats {
        self.engine().stats()
    }

    /// Checks the invariants of this allocator's cache: no two cached ranges overlap, every one
    /// is page-aligned and whole pages, and the cached byte counts equal the sum of the cached
    /// ranges. For tests: valid only while no other thread uses this allocator and its
    /// background thread is off (`Config::background(false)`). Not on any allocation path.
    #[doc(hidden)]
    pub fn check_cache(&self) -> Result<(), impl fmt::Display + fmt::Debug> {
        self.engine().check_cache()
    }

    /// Releases every cached range now (`munmap`), so that RSS falls at once.
    pub fn purge(&self) {
        self.engine().purge();
    }

    /// Switches release policy, prefetch mode, cache budget, decay and pressure settings at run
    /// time, after purging the cache. `config` is applied as given (the environment is not
    /// consulted); its threshold is ignored, because blocks already handed out are routed by it.
    /// Safe to call while other threads allocate: a block freed during the switch is released
    /// under the old or the new policy.
    pub fn reconfigure(&self, config: Config) {
        let engine = self.engine();
        if engine.is_overflow() {
            return; // the shared overflow engine keeps its fixed configuration
        }
        engine.purge();
        engine.configure(&config);
    }
}

impl<A> Drop for PageAlloc<A> {
    fn drop(&mut self) {
        if let Some(e) = self.engine.get() {
            e.retire();
        }
    }
}

impl<A> fmt::Debug for PageAlloc<A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PageAlloc")
            .field("config", &self.config)
            .field("threshold", &self.threshold.get())
            .finish_non_exhaustive()
    }
}

impl<A: GlobalAlloc> PageAlloc<A> {
    /// A large block: a mapping of the engine, or, where the kernel refuses one, a block of the
    /// inner allocator (see `fallback`).
    #[inline]
    fn alloc_large(&self, size: usize, align: usize, zeroed: bool) -> *mut u8 {
        let p = self.engine_alloc(size, align, zeroed);
        if !p.is_null() {
            return p;
        }
        self.alloc_fallback(size, align, zeroed)
    }

    /// A block of the engine, at its colour (see `colour`): the engine holds the block from the
    /// start of its first page, `colour` bytes longer than asked (still in the same pages).
    #[inline]
    fn engine_alloc(&self, size: usize, align: usize, zeroed: bool) -> *mut u8 {
        let c = colour::pick(size, align);
        // size + c stays within size's last page (colour::pick), so it cannot overflow.
        let base = self.engine().alloc(size + c, align, zeroed);
        if base.is_null() {
            return base;
        }
        // SAFETY: the engine's block holds size + c bytes from base.
        unsafe { base.add(c) }
    }

    /// Frees a block of the engine.
    ///
    /// # Safety
    /// `p` is a live block of [`Self::engine_alloc`] (or [`Self::engine_realloc`]) of `size` bytes.
    #[inline]
    unsafe fn engine_free(&self, p: *mut u8, size: usize) {
        let c = colour::of(p);
        // SAFETY: the engine's block starts c bytes before p and holds size + c bytes.
        unsafe { self.engine().free(p.sub(c), size + c) }
    }

    /// Resizes a block of the engine in place or by moving its pages (its colour stays); null
    /// when it could not, with the block untouched.
    ///
    /// # Safety
    /// `p` is a live block of [`Self::engine_alloc`] of `size` bytes at `align`; `zeroed` only if
    /// `new_size >= size`.
    unsafe fn engine_realloc(
        &self,
        p: *mut u8,
        size: usize,
        align: usize,
        new_size: usize,
        zeroed: bool,
    ) -> *mut u8 {
        let c = colour::of(p);
        let Some(new_len) = new_size.checked_add(c) else {
            return ptr::null_mut();
        };
        // SAFETY: the engine's block starts c bytes before p and holds size + c bytes at a page's
        // alignment (at least `align`: a coloured block has an alignment below a page); zeroed
        // only for growth (the caller's guarantee).
        let q = unsafe {
            self.engine()
                .realloc(p.sub(c), size + c, align, new_len, zeroed)
        };
        if q.is_null() {
            return q;
        }
        // SAFETY: the engine's new block holds new_size + c bytes from q.
        unsafe { q.add(c) }
    }

    #[cold]
    fn alloc_fallback(&self, size: usize, align: usize, zeroed: bool) -> *mut u8 {
        // SAFETY: size is at least the threshold (non-zero); align comes from a valid Layout.
        let p = unsafe { fallback::alloc(&self.inner, size, align, zeroed) };
        if !p.is_null() {
            self.engine().counters.note_fallback();
        }
        p
    }

    /// Frees a large block, whoever made it.
    ///
    /// # Safety
    /// `p` is a live large block of this allocator with `layout`.
    #[inline]
    unsafe fn dealloc_large(&self, p: *mut u8, layout: Layout) {
        if fallback::owns(p, layout) {
            self.engine().counters.note_fallback_free();
            // SAFETY: the block came from the fallback with this layout.
            return unsafe { fallback::dealloc(&self.inner, p, layout) };
        }
        // SAFETY: large blocks not from the fallback come from this engine with this size.
        unsafe { self.engine_free(p, layout.size()) }
    }

    /// Resizes a large block to another large size.
    ///
    /// # Safety
    /// `p` is a live large block of this allocator with `layout`; `new_size` is large.
    unsafe fn realloc_large(&self, p: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let from_fallback = fallback::owns(p, layout);
        if !from_fallback {
            // SAFETY: a large block of this engine with this size and alignment.
            let q =
                unsafe { self.engine_realloc(p, layout.size(), layout.align(), new_size, false) };
            if !q.is_null() || new_size <= layout.size() {
                return q;
            }
        }
        // A fallback block, or an engine block that could neither move nor find a new mapping:
        // copy into whatever `alloc_large` gives now (a mapping again, once the kernel allows).
        let q = self.alloc_large(new_size, layout.align(), false);
        if !q.is_null() {
            self.engine().counters.note_copied_realloc(from_fallback);
            // SAFETY: both blocks are live and distinct; the old one holds layout.size() bytes
            // and the new one new_size; the old one is freed by whoever made it.
            unsafe {
                ptr::copy_nonoverlapping(p, q, layout.size().min(new_size));
                self.dealloc_large(p, layout);
            }
        }
        q
    }
}

// SAFETY: large blocks are private anonymous mappings of at least `size` bytes at the requested
// alignment, owned by exactly one block until freed, or (where the kernel refused a mapping)
// blocks of the inner allocator that `fallback::owns` recognises from the pointer and layout;
// small blocks are the inner allocator's. Which of these a block is depends only on its size, the
// threshold (which never changes after the first call) and, for large ones, `fallback::owns`, so
// `dealloc` and `realloc` always reach the allocator that made the block.
unsafe impl<A: GlobalAlloc> GlobalAlloc for PageAlloc<A> {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if layout.size() < self.threshold() {
            // SAFETY: forwarded with the caller's guarantees.
            return unsafe { self.inner.alloc(layout) };
        }
        self.alloc_large(layout.size(), layout.align(), false)
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if layout.size() < self.threshold() {
            // SAFETY: forwarded with the caller's guarantees.
            return unsafe { self.inner.alloc_zeroed(layout) };
        }
        self.alloc_large(layout.size(), layout.align(), true)
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if layout.size() < self.threshold() {
            // SAFETY: small blocks come from the inner allocator with this layout.
            return unsafe { self.inner.dealloc(ptr, layout) };
        }
        // SAFETY: a large block of this allocator with this layout.
        unsafe { self.dealloc_large(ptr, layout) }
    }

    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let threshold = self.threshold();
        let old_large = layout.size() >= threshold;
        let new_large = new_size >= threshold;
        match (old_large, new_large) {
            // SAFETY: a small block of the inner allocator, resized within its range.
            (false, false) => unsafe { self.inner.realloc(ptr, layout, new_size) },
            // SAFETY: a large block of this allocator with this layout; new_size is large.
            (true, true) => unsafe { self.realloc_large(ptr, layout, new_size) },
            (false, true) => {
                let q = self.alloc_large(new_size, layout.align(), false);
                if !q.is_null() {
                    // SAFETY: both blocks are live and distinct; the old one holds layout.size()
                    // bytes, fewer than new_size; it came from the inner allocator.
                    unsafe {
                        ptr::copy_nonoverlapping(ptr, q, layout.size());
                        self.inner.dealloc(ptr, layout);
                    }
                }
                q
            }
            (true, false) => {
                // SAFETY: the caller guarantees new_size, rounded to layout.align(), fits isize.
                let small = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
                // SAFETY: new_size is non-zero (GlobalAlloc::realloc's contract).
                let q = unsafe { self.inner.alloc(small) };
                if !q.is_null() {
                    // SAFETY: both blocks are live and distinct; new_size < layout.size(); the
                    // old block is a large one of this allocator.
                    unsafe {
                        ptr::copy_nonoverlapping(ptr, q, new_size);
                        self.dealloc_large(ptr, layout);
                    }
                }
                q
            }
        }
    }
}

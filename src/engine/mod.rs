//! The engine behind each [`PageAlloc`](crate::PageAlloc): the large-block paths, its cache and
//! counters, decay and pressure. One file per job:
//!
//! | file | job |
//! |---|---|
//! | `mod.rs` | the pool of engines, an engine's settings, verbose start-up |
//! | `alloc.rs` | a large allocation: from the cache, by growing a smaller range, or fresh |
//! | `affinity.rs` | a thread's next allocation from the range it freed last, under threads |
//! | `release.rs` | a large free: the release policy, the cache limit, unmapping |
//! | `realloc.rs` | resizing a large block in place, by moving pages, or by copying |
//! | `maintain.rs` | decay, the pressure signal, purge |
//! | `budget.rs` | the cache's budget: resident cached bytes within a tenth over the live peak |
//! | `limit.rs` | the soft limit (`PAGEWISE_LIMIT`) |
//!
//! # Glossary
//!
//! - **block**: what `alloc` hands out; its *mapping length* is [`map_len`] of its size (whole
//!   pages); from 2 MiB on it starts on a 2 MiB boundary, so its body can take huge pages.
//! - **range**: page-aligned address space inside pagewise's own mappings that no block uses: a
//!   freed block, or the head or tail left when a block is carved out of a bigger range.
//! - **cache**: the slots that hold ranges for reuse (`crate::cache`); *cached bytes* are the
//!   sum of their lengths, by page state (resident, lazily freed, zero).
//! - **hit / grown hit / miss**: an allocation served by a cached range, by growing a smaller
//!   cached range with `mremap`, or by a fresh mapping.
//! - **release**: what a free does to the pages (the [`Release`] policy) and, for ranges that
//!   leave the cache, `munmap`.
//! - **recycle**: unmapping resident cached ranges just before a miss maps fresh pages, so the
//!   kernel hands those pages to the new block.
//! - **move**: a cached range's pages moved into the fresh part of a new or grown block with
//!   `mremap(MREMAP_FIXED)` (`fill_from_cache`): no fault, no copy.
//! - **budget**: the most resident bytes the cache may hold now: a tenth over the recent peak of
//!   the live large bytes, less what is live (at least 4 MiB); see `budget.rs`. While threads
//!   take turns, ranges freed in the last 100 ms are held from it (`affinity.rs`).
//! - **maintenance**: decay (unmap ranges idle too long) and the pressure check (unmap the whole
//!   cache while the kernel is reclaiming), run by the background thread or on the allocation
//!   path at most every 10 ms.
//!
//! # Invariants
//!
//! 1. Every page of address space pagewise mapped is in exactly one place: a live block, a
//!    cache slot (a range), or unmapped. A range taken out of the cache belongs to the thread
//!    that took it until it hands it on (to a block, back to the cache, or to `munmap`).
//! 2. `Stats::live_bytes` is the sum of the mapping lengths of the live blocks that came from
//!    mappings (fallback blocks are the inner allocator's and are not counted).
//! 3. An engine's state goes VACANT → CLAIMED (one thread configures it) → ACTIVE → VACANT
//!    (its allocator was dropped and its cache released); only ACTIVE engines are maintained by
//!    the background thread.
//! 4. The allocation path never blocks, allocates or panics: every shared value is an atomic, a
//!    busy cache slot is skipped, and a second thread that finds a read under way uses the
//!    previous answer.
//!
//! Engines live in a static pool rather than inside `PageAlloc`, so that the background thread
//! can reach them without a pointer to a value that might move or be dropped: an allocator adopts
//! a pool engine on first use and retires it when dropped. Engine 0 is the overflow engine, used
//! by allocators beyond the pool: it has no cache and unmaps at free.

mod affinity;
mod alloc;
mod budget;
mod limit;
mod maintain;
mod realloc;
mod release;

pub(crate) use limit::{background_poll, LIMIT_POLL_MS};
use maintain::Why;
pub(crate) use maintain::{set_background_running, set_background_start};

use core::ffi::CStr;
use core::ptr;
use core::sync::atomic::{AtomicBool, AtomicPtr, AtomicU32, AtomicU64, AtomicU8, AtomicUsize};
use core::sync::atomic::{Ordering, Ordering::Relaxed};

use crate::cache::Cache;
use crate::config::{env_cgroup, env_pressure_path, Config, DEFAULT_PRESSURE_FILE, NEVER};
use crate::os::{self, PAGE};
use crate::policy::{Prefetch, Release};
use crate::pressure::{self, Pressure};
use crate::report;
use crate::stats::{Counters, Stats};

/// Engines in the pool, the overflow engine included.
pub(crate) const POOL: usize = 65;

/// Engine states (invariant 3).
const VACANT: u8 = 0;
const CLAIMED: u8 = 1;
const ACTIVE: u8 = 2;

pub(crate) struct Engine {
    state: AtomicU8,
    release: AtomicU8,
    prefetch: AtomicU8,
    background: AtomicBool,
    /// The most bytes the cache may hold (`Config::cache`, `PAGEWISE_CACHE`).
    cache_limit: AtomicUsize,
    decay_ms: AtomicU64,
    pressure_threshold: AtomicU32,
    /// The pressure file in force (environment, code or default), resolved by `configure`.
    pressure_file: AtomicPtr<core::ffi::c_char>,
    last_maintenance_ms: AtomicU64,
    /// The outcomes of the latest large allocations, newest in bit 0: 1 for a fresh mapping.
    recent_misses: AtomicU32,
    /// The recent peak of the live large bytes, for the cache's budget (`budget.rs`).
    peak: budget::Peak,
    /// Whether threads take turns freeing here, for the thread affinity (`affinity.rs`).
    sharing: affinity::Sharing,
    pub(crate) counters: Counters,
    cache: Cache,
    pressure: Pressure,
    limit: limit::SoftLimit,
}

pub(crate) static ENGINES: [Engine; POOL] = [const { Engine::new() }; POOL];

/// Rounds a block size to the length of its mapping: whole pages, whatever the size (issue #12).
///
/// A block of 2 MiB and more still starts on a 2 MiB boundary in a `MADV_HUGEPAGE` mapping (see
/// `Engine::fresh`), so its 2 MiB-aligned body faults in as huge pages; the kernel gives a huge
/// page only to an aligned 2 MiB range the mapping covers whole, so the tail past the last
/// boundary takes 4 KiB pages, and the block's RSS is its size rounded to a page
/// (`tests/kernel_facts.rs` checks this). Rounding to whole 2 MiB units instead cost up to 2 MiB
/// of RSS per block once its last byte was touched: a 4.1 MiB `Vec` held 6 MiB.
///
/// Depends on the size only (never on the configuration), because `dealloc` recomputes it.
/// `None` on overflow.
#[inline]
pub(crate) fn map_len(size: usize) -> Option<usize> {
    let len = size.checked_next_multiple_of(PAGE)?;
    (len <= isize::MAX as usize).then_some(len)
}

impl Engine {
    const fn new() -> Engine {
        Engine {
            state: AtomicU8::new(VACANT),
            release: AtomicU8::new(Release::Unmap.to_u8()),
            prefetch: AtomicU8::new(Prefetch::None.to_u8()),
            background: AtomicBool::new(false),
            cache_limit: AtomicUsize::new(0),
            decay_ms: AtomicU64::new(NEVER),
            pressure_threshold: AtomicU32::new(1000),
            pressure_file: AtomicPtr::new(ptr::null_mut()),
            last_maintenance_ms: AtomicU64::new(0),
            recent_misses: AtomicU32::new(0),
            peak: budget::Peak::new(),
            sharing: affinity::Sharing::new(),
            counters: Counters::new(),
            cache: Cache::new(),
            pressure: Pressure::new(),
            limit: limit::SoftLimit::new(),
        }
    }

    /// Adopts a vacant pool engine for a new allocator and configures it; the overflow engine
    /// when the pool is exhausted.
    pub(crate) fn adopt(config: &Config) -> &'static Engine {
        for e in ENGINES.iter().skip(1) {
            if e.state.load(Relaxed) == VACANT
                && e.state
                    .compare_exchange(VACANT, CLAIMED, Ordering::Acquire, Relaxed)
                    .is_ok()
            {
                // Counters describe this owner's activity (the cache keeps its own byte counts).
                e.counters.reset();
                e.recent_misses.store(0, Relaxed);
                // So are the live peak and which threads free here: a former owner's are not
                // this one's.
                e.peak.reset();
                e.sharing.reset();
                e.configure(config);
                e.state.store(ACTIVE, Ordering::Release);
                return e;
            }
        }
        &ENGINES[0]
    }

    /// Whether this is the shared overflow engine (no cache, fixed configuration).
    pub(crate) fn is_overflow(&self) -> bool {
        ptr::eq(self, &ENGINES[0])
    }

    /// Gives an adopted engine back to the pool (its allocator was dropped or lost the race to
    /// initialise), releasing its cache.
    pub(crate) fn retire(&self) {
        if self.is_overflow() {
            return;
        }
        self.purge();
        self.pressure.reset();
        self.state.store(VACANT, Ordering::Release);
    }

    /// Applies a configuration (threshold excepted: that belongs to the allocator).
    pub(crate) fn configure(&self, c: &Config) {
        self.release.store(c.release.to_u8(), Relaxed);
        self.prefetch.store(c.prefetch.to_u8(), Relaxed);
        self.background.store(c.background, Relaxed);
        self.cache_limit.store(c.cache, Relaxed);
        self.decay_ms.store(c.decay_ms, Relaxed);
        self.pressure_threshold.store(c.pressure_threshold, Relaxed);
        // Environment, then code, then the default (the precedence of every setting). The
        // cgroup's memory.pressure (v2) is the default pressure file where there is one.
        let cgroup = c.use_env.then(env_cgroup).flatten().unwrap_or(c.cgroup);
        self.limit.configure(c.limit, cgroup);
        let env = if c.use_env { env_pressure_path() } else { None };
        let file = env
            .or(c.pressure_file)
            .or_else(|| self.limit.cgroup().and_then(|g| g.pressure_file()))
            .unwrap_or(DEFAULT_PRESSURE_FILE);
        self.pressure_file.store(file.as_ptr().cast_mut(), Relaxed);
        self.pressure.reset();
    }

    /// `base` with this engine's current settings (which `reconfigure` may have changed).
    pub(crate) fn overlay(&self, mut base: Config) -> Config {
        base.release = self.release_policy();
        base.prefetch = self.prefetch();
        base.background = self.background_enabled();
        base.cache = self.cache_limit.load(Relaxed);
        base.decay_ms = self.decay();
        base.pressure_threshold = self.pressure_threshold.load(Relaxed);
        base.limit = self.limit.limit_setting();
        base
    }

    pub(crate) fn is_active(&self) -> bool {
        self.state.load(Ordering::Acquire) == ACTIVE
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

    /// Whether a soft limit is in force (the background thread then checks it every
    /// [`LIMIT_POLL_MS`] while something is cached).
    pub(crate) fn has_limit(&self) -> bool {
        self.limit.bytes() != 0
    }

    /// Whether this engine's soft limit could appear or change while the program runs (a limit
    /// or a share of a watched cgroup's): the background thread then runs while anything is
    /// cached (issue #19).
    pub(crate) fn watches_limit(&self) -> bool {
        self.has_limit() || self.limit.watches_cgroup()
    }

    /// A snapshot of the counters, and whether this is the overflow engine.
    pub(crate) fn stats(&self) -> Stats {
        // The soft limit in force now: it changes with the cgroup's (issue #19).
        self.counters.limit_bytes.store(self.limit_now(), Relaxed);
        let lost = crate::cache::lost_holds();
        self.counters.lost_holds.store(lost, Relaxed);
        let mut s = self.counters.snapshot(self.cache.bytes());
        s.overflow_engine = self.is_overflow() as u64;
        s
    }

    /// Checks the cache's invariants (see `Cache::check`); valid only while no other thread
    /// uses this engine (the background thread off, no allocation in flight).
    pub(crate) fn check_cache(&self) -> Result<(), crate::cache::CacheFault> {
        self.cache.check()
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

    /// `PAGEWISE_VERBOSE`: what an allocator says once it owns this engine.
    pub(crate) fn print_config(&self, c: &Config) {
        let path = self.pressure_path();
        let shown = Config {
            pressure_file: Some(path),
            cgroup: self.limit.cgroup_setting(),
            ..*c
        };
        crate::config::verbose(
            &shown,
            if c.background {
                "background release thread on"
            } else {
                "background release thread off"
            },
        );
        // Read the sources now (never blocking, see `pressure` and `cgroup`), so that the lines
        // say what is in force.
        let now = os::now_ms();
        let threshold = self.pressure_threshold.load(Relaxed);
        let _ = self.pressure.read_now(path, threshold, now);
        report::line(&pressure::Describe {
            path,
            status: self.pressure.status(),
        });
        let (_, soft) = self.limit.state(now, true);
        let usage = match self.limit.cgroup() {
            Some(g) => g.usage_at(g.chain().usage_level()).bytes(),
            None => os::resident_bytes(),
        };
        report::line(&limit::Describe {
            cgroup: crate::cgroup::resolution(self.limit.cgroup_setting()),
            setting: self.limit.limit_setting(),
            from: c.source(crate::config::Setting::Limit),
            soft,
            usage,
        });
    }

    /// In a `fork` child: forget slots and reads that belonged to threads that are gone.
    pub(crate) fn after_fork_in_child(&self) {
        self.cache.reset_busy();
        self.pressure.after_fork();
        limit::after_fork_in_child();
    }
}

//! `pagewise_stats` and `pagewise_purge`: the counters and the purge of `PageAlloc`, for C
//! (`include/pagewise.h` declares them; the struct below is its `struct pagewise_stats`, field
//! for field).

use crate::engine;

/// `struct pagewise_stats` of `include/pagewise.h`.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct PagewiseStats {
    pub large_allocs: u64,
    pub large_frees: u64,
    pub reallocs: u64,
    pub mremaps: u64,
    pub copied_reallocs: u64,
    pub in_place_reallocs: u64,
    pub cache_hits: u64,
    pub grown_hits: u64,
    pub moved_ranges: u64,
    pub cache_misses: u64,
    pub fallback_allocs: u64,
    pub live_bytes: u64,
    pub cached_bytes: u64,
    pub cached_resident_bytes: u64,
    pub cached_lazy_bytes: u64,
    pub released_bytes: u64,
    pub mmap_calls: u64,
    pub munmap_calls: u64,
    pub madvise_calls: u64,
    pub populate_calls: u64,
    pub decay_releases: u64,
    pub pressure_releases: u64,
    pub purge_releases: u64,
    pub recycle_releases: u64,
    pub pressure_on: u64,
    pub limit_bytes: u64,
    pub limit_releases: u64,
    pub budget_releases: u64,
    pub threshold: u64,
}

/// The counters now: the engine's, with the large requests glibc served as `fallback_allocs`.
pub(crate) fn now() -> PagewiseStats {
    let (s, glibc_fallbacks, threshold) = engine::stats();
    PagewiseStats {
        large_allocs: s.large_allocs,
        large_frees: s.large_frees,
        reallocs: s.reallocs,
        mremaps: s.mremaps,
        copied_reallocs: s.copied_reallocs,
        in_place_reallocs: s.in_place_reallocs,
        cache_hits: s.cache_hits,
        grown_hits: s.grown_hits,
        moved_ranges: s.moved_ranges,
        cache_misses: s.cache_misses,
        fallback_allocs: glibc_fallbacks,
        live_bytes: s.live_bytes,
        cached_bytes: s.cached_bytes,
        cached_resident_bytes: s.cached_resident_bytes,
        cached_lazy_bytes: s.cached_lazy_bytes,
        released_bytes: s.released_bytes,
        mmap_calls: s.mmap_calls,
        munmap_calls: s.munmap_calls,
        madvise_calls: s.madvise_calls,
        populate_calls: s.populate_calls,
        decay_releases: s.decay_releases,
        pressure_releases: s.pressure_releases,
        purge_releases: s.purge_releases,
        recycle_releases: s.recycle_releases,
        pressure_on: s.pressure_on,
        limit_bytes: s.limit_bytes,
        limit_releases: s.limit_releases,
        budget_releases: s.budget_releases,
        threshold: threshold as u64,
    }
}

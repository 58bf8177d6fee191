//! A large free: the release policy decides what happens to the pages, the cache limit and the
//! slots decide whether the range is kept, and what is not kept is unmapped.

use core::sync::atomic::Ordering::Relaxed;

use super::{map_len, Engine, Why};
use crate::cache::{Pages, Range};
use crate::config::NEVER;
use crate::map_count;
use crate::os;
use crate::policy::Release;
use crate::stats::Counters;

impl Engine {
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
        self.note_freed(p as usize, len, now);
        self.maintain_if_due(now);
    }

    /// Applies the release policy to a range that no block uses any more.
    pub(super) fn release_range(&self, addr: usize, len: usize, now: u64) {
        let policy = self.release_policy();
        let limit = self.cache_limit.load(Relaxed);
        let range = Range {
            addr,
            len,
            pages: Pages::Resident,
            since_ms: now,
        };
        // Over the soft limit nothing more is cached: `adaptive` keeps the range with its pages
        // dropped, the other policies give it back.
        let over = policy.caches() && len <= limit && self.over_limit(now);
        if !policy.caches() || len > limit || over && policy != Release::Adaptive {
            self.unmap_range(&range);
            return;
        }
        let pages = if over {
            self.advise_dontneed(addr, len)
        } else {
            self.apply_policy(policy, addr, len, now)
        };
        self.make_room(len, limit);
        self.cache_range(Range { pages, ..range });
        self.fit_budget(0, now);
        // The background thread applies decay, the pressure signal under `adaptive`, and the
        // soft limit, even when the program allocates nothing more: also a limit that is not in
        // force yet but may appear on a watched cgroup (issue #19).
        if self.background_enabled()
            && (self.decay() != NEVER
                || policy == Release::Adaptive
                || self.watches_limit()
                || super::limit::any_engine_has_limit())
        {
            super::maintain::start_background();
        }
    }

    /// What the policy does to the pages of a range about to be cached; returns what they hold.
    fn apply_policy(&self, policy: Release, addr: usize, len: usize, now: u64) -> Pages {
        match policy {
            Release::Retain => Pages::Resident,
            Release::DontNeed => self.advise_dontneed(addr, len),
            Release::Free => self.advise_free(addr, len),
            _ if self.pressure_on(now) => {
                // Adaptive under pressure: drop at once and shrink the cache.
                self.release_cache(Why::Pressure);
                self.advise_dontneed(addr, len)
            }
            _ => self.advise_free(addr, len),
        }
    }

    /// Unmaps cached ranges, oldest first, until `len` more bytes fit under the cache limit.
    fn make_room(&self, len: usize, limit: usize) {
        while (self.cache.bytes().total as usize).saturating_add(len) > limit {
            let Some(old) = self.cache.take_oldest() else {
                break;
            };
            if !self.unmap_range(&old) {
                break; // back in the cache: taking it again would not help
            }
        }
    }

    /// Puts a freed range in the cache; when every slot is in use, the smallest range goes
    /// (this one or a cached one).
    fn cache_range(&self, r: Range) {
        let Err(r) = self.cache.insert(r) else {
            return;
        };
        match self.cache.take_smallest() {
            Some(small) if small.len < r.len => {
                self.unmap_range(&small);
                self.put_back(r);
            }
            other => {
                if let Some(small) = other {
                    self.put_back(small);
                }
                self.unmap_range(&r);
            }
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
    pub(super) fn unmap_range(&self, r: &Range) -> bool {
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
        match self.cache.insert(kept) {
            Ok(()) => false,
            Err(_) => {
                // No slot either: the range stays mapped (its pages released if DONTNEED
                // worked) and is given up, a leak of address space rather than of memory.
                true
            }
        }
    }
}
